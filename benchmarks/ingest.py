"""Ingestion speed on a generated 300-page PDF: `python benchmarks/ingest.py [--pages N] [--repeat N] [--compare]`.

The PDF is built with fpdf2 in a temporary folder: A4, a running header, a "Page N of M" footer,
chapter headings and justified paragraphs of real prose (examples/sample.md, cycled). The
timing covers `distillqa.ingest.ingest_files` end to end (read, extract, rebuild paragraphs,
normalise) and is the best of `--repeat` runs. Target: under 30 s for 300 pages on a 2-core
machine.

`--compare` also times raw text extraction with pypdfium2 (what we use) and pypdf (if
installed) on the same PDF, and scores both against the gold text of the devset PDFs
(../shared/devset, when present) as the word-sequence similarity of difflib.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from fpdf import FPDF

from distillqa.config import IngestConfig
from distillqa.ingest import ingest_files

REPO = Path(__file__).resolve().parents[1]
DEVSET = REPO.parent / "shared" / "devset"


def make_pdf(path: Path, pages: int) -> None:
    paragraphs = [
        " ".join(b.split())
        for b in (REPO / "examples" / "sample.md").read_text(encoding="utf-8").split("\n\n")
        if b.strip() and not b.startswith("#")
    ]

    class Book(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "I", 8)
            self.cell(0, 8, "A Benchmark Book of Lighthouses", align="R", new_x="LMARGIN", new_y="NEXT")

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")

    pdf = Book(format="A4")
    pdf.set_auto_page_break(True, margin=22)
    pdf.add_page()
    chapter = 0
    while True:
        chapter += 1
        pdf.set_font("Helvetica", "B", 14)
        pdf.multi_cell(0, 8, f"Chapter {chapter}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        for text in paragraphs:
            if pdf.page_no() >= pages and pdf.get_y() > 220:
                pdf.output(str(path))
                return
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 5.5, text, align="J", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)


def best_time(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def extract_pdfium(path: Path) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    try:
        return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()


def extract_pypdf(path: Path) -> str:
    import pypdf

    return "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)


def similarity(gold: str, text: str) -> float:
    words = lambda s: re.sub(r"[\ufffe\u00ad]", "", s).split()  # noqa: E731 - pdfium's line-end hyphen mark
    return difflib.SequenceMatcher(None, words(gold), words(text), autojunk=False).ratio()


def compare(pdf_path: Path, repeat: int) -> None:
    extractors = {"pypdfium2": extract_pdfium}
    try:
        import pypdf  # noqa: F401

        extractors["pypdf"] = extract_pypdf
    except ImportError:
        print("pypdf is not installed: comparing pypdfium2 only")
    for name, extract in extractors.items():
        version = importlib.metadata.version(name)
        print(f"raw extraction, {name} {version}: {best_time(lambda: extract(pdf_path), repeat):.2f} s for the benchmark PDF")
        if DEVSET.is_dir():
            for gold in sorted(DEVSET.glob("*.txt")):
                pdf = gold.with_suffix(".pdf")
                seconds = best_time(lambda: extract(pdf), repeat)
                score = similarity(gold.read_text(encoding="utf-8"), extract(pdf))
                print(f"  devset {pdf.name}: {seconds * 1000:.0f} ms, word similarity to the gold text {score:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--compare", action="store_true", help="also compare pypdfium2 and pypdf")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "benchmark.pdf"
        start = time.perf_counter()
        make_pdf(pdf, args.pages)
        print(f"made a {pdf.stat().st_size / 2**20:.1f} MB PDF in {time.perf_counter() - start:.1f} s (not timed below)")
        documents: list[dict] = []

        def ingest() -> None:
            documents[:] = ingest_files([pdf], IngestConfig(), quiet=True)[0]

        seconds = best_time(ingest, args.repeat)
        pages = len(documents[0]["pages"])
        print(f"ingest_files: {pages} pages, {len(documents[0]['text']):,} characters in {seconds:.2f} s = {pages / seconds:.0f} pages/s (best of {args.repeat})")
        if args.compare:
            compare(pdf, args.repeat)
    if seconds > 30:
        sys.exit(f"slower than the 30 s target for {args.pages} pages")


if __name__ == "__main__":
    main()

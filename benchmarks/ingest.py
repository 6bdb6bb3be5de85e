"""Ingestion speed: one long PDF, `python benchmarks/ingest.py [--pages N] [--repeat N] [--compare]`,
and many small documents, `python benchmarks/ingest.py --docs N [--workers 1 2] [--repeat N]`.

One long PDF: the PDF is built with fpdf2 in a temporary folder: A4, a running header, a "Page N
of M" footer, chapter headings and justified paragraphs of real prose (examples/sample.md,
cycled). The timing covers `distillqa.ingest.ingest_files` end to end (read, extract, rebuild
paragraphs, normalise) and is the best of `--repeat` runs. Target: under 30 s for 300 pages on a
2-core machine.

`--compare` also times raw text extraction with pypdfium2 (what we use) and pypdf (if
installed) on the same PDF, and scores both against the gold text of the devset PDFs
(../shared/devset, when present) as the word-sequence similarity of difflib.

Many documents (#13): `--docs N` small documents (one to four paragraphs of examples/sample.md,
each with a line of its own so no two are alike: 70% .txt, 20% .md, 8% .html, 1% .pdf, 1% .docx)
are made in a temporary folder (not timed), then ingested (`ingest_files`) and chunked (the
chunk stage, with the default tokenizer: the bundled teacher's GGUF vocabulary) with each
`--workers` count, the counts taking turns `--repeat` times. Each measurement runs in a fresh
process, so the times include starting the pool and its tokenizers, as in a `distillqa run`, and
the peaks are that measurement's own: the parent's from getrusage(RUSAGE_SELF); the workers'
sampled every 50 ms with psutil (the workers are the forkserver's children, which
RUSAGE_CHILDREN of the parent never sees), alone and summed with the parent (shared pages
counted in each process). CPU seconds (the parent's, the forkserver's and the workers', less
the sampling's own) tell the work done apart from the wall time, which on a shared machine
depends on the other jobs. Every run must give every document back (count in = count out, none
skipped) and the same documents and chunks, byte for byte, whatever the worker count.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import docx
import psutil
from fpdf import FPDF

from distillqa.chunk import run_stage as chunk_stage
from distillqa.config import ChunkConfig, Config, IngestConfig
from distillqa.ingest import expand_paths, ingest_files
from distillqa.io import write_jsonl
from distillqa.layout import CHUNKS, DOCUMENTS, RunFolder

REPO = Path(__file__).resolve().parents[1]
DEVSET = REPO.parent / "shared" / "devset"


def sample_paragraphs() -> list[str]:
    """The prose paragraphs of examples/sample.md, each on one line."""
    return [
        " ".join(b.split())
        for b in (REPO / "examples" / "sample.md").read_text(encoding="utf-8").split("\n\n")
        if b.strip() and not b.startswith("#")
    ]


def make_pdf(path: Path, pages: int) -> None:
    paragraphs = sample_paragraphs()

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


def make_corpus(folder: Path, n: int) -> None:
    """`n` small documents of the five formats (see the module doc), the same for the same n."""
    paragraphs = sample_paragraphs()
    rng = random.Random(13)
    for i in range(n):
        title = f"Note {i}: lighthouse record {rng.randrange(10**6)}"
        body = rng.sample(paragraphs, rng.randint(1, 4))
        kind = i % 100
        if kind == 0:
            pdf = FPDF(format="A4")
            pdf.add_page()
            pdf.set_font("Helvetica", "", 11)
            for text in [title, *body]:
                pdf.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(3)
            pdf.output(str(folder / f"doc{i:05d}.pdf"))
        elif kind == 1:
            document = docx.Document()
            document.add_heading(title, 1)
            for text in body:
                document.add_paragraph(text)
            document.save(str(folder / f"doc{i:05d}.docx"))
        elif kind < 10:
            html = "".join(f"<p>{text}</p>" for text in body)
            (folder / f"doc{i:05d}.html").write_text(f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{html}</body></html>", encoding="utf-8")
        elif kind < 30:
            (folder / f"doc{i:05d}.md").write_text(f"# {title}\n\n" + "\n\n".join(body) + "\n", encoding="utf-8")
        else:
            (folder / f"doc{i:05d}.txt").write_text(title + "\n\n" + "\n\n".join(body) + "\n", encoding="utf-8")


class TreeSampler:
    """This process's children, sampled every 50 ms while the block runs: the largest RSS of one
    child, of all the processes together, and each child's CPU seconds as last seen (a child's
    last 50 ms are missed). `own_cpu`: the sampling's CPU seconds (~3% of a core), to take off
    this process's."""

    def __init__(self) -> None:
        self.worker_rss = self.total_rss = 0
        self.own_cpu = 0.0
        self._cpu: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def children_cpu(self) -> float:
        return sum(list(self._cpu.values()))

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.05):
            sizes = []
            for child in me.children(recursive=True):
                try:
                    sizes.append(child.memory_info().rss)
                    cpu = child.cpu_times()
                except psutil.Error:  # ended meanwhile
                    continue
                self._cpu[child.pid] = cpu.user + cpu.system
            self.worker_rss = max([self.worker_rss, *sizes])
            self.total_rss = max(self.total_rss, me.memory_info().rss + sum(sizes))
            self.own_cpu = time.thread_time()


def measure(folder: Path, workers: int) -> dict:
    """One ingest + chunk of the corpus with `workers` processes (run in a fresh process)."""
    paths = expand_paths([str(folder)])
    with TreeSampler() as tree, tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time() - tree.own_cpu
        documents, skipped = ingest_files(paths, IngestConfig(workers=workers))
        ingest_s, ingest_parent_cpu_s = time.perf_counter() - start, time.process_time() - tree.own_cpu - cpu
        ingest_cpu_s = ingest_parent_cpu_s + tree.children_cpu()
        run = RunFolder(Path(tmp), quiet=True)
        write_jsonl(run.path(DOCUMENTS), documents)
        start, cpu, children_cpu = time.perf_counter(), time.process_time() - tree.own_cpu, tree.children_cpu()
        chunk_summary = chunk_stage(run, Config(chunk=ChunkConfig(workers=workers)))
        chunk_s = time.perf_counter() - start
        time.sleep(0.1)  # a last sample of the children's CPU
        chunk_parent_cpu_s = time.process_time() - tree.own_cpu - cpu
        chunk_cpu_s = chunk_parent_cpu_s + tree.children_cpu() - children_cpu
        documents_sha = hashlib.sha256(run.path(DOCUMENTS).read_bytes()).hexdigest()
        chunks_sha = hashlib.sha256(run.path(CHUNKS).read_bytes()).hexdigest()
    return {
        "workers": workers,
        "files_in": len(paths),
        "documents_out": len(documents),
        "skipped": skipped,
        "chunked_documents": chunk_summary["documents"],
        "chunks": chunk_summary["chunks"],
        "ingest_s": round(ingest_s, 2),
        "ingest_cpu_s": round(ingest_cpu_s, 2),
        "ingest_parent_cpu_s": round(ingest_parent_cpu_s, 2),
        "chunk_s": round(chunk_s, 2),
        "chunk_cpu_s": round(chunk_cpu_s, 2),
        "chunk_parent_cpu_s": round(chunk_parent_cpu_s, 2),
        "ingest_docs_per_s": round(len(paths) / ingest_s, 1),
        "chunk_docs_per_s": round(len(documents) / chunk_s, 1),
        "parent_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # KiB on Linux
        "worker_peak_mb": round(tree.worker_rss / 2**20, 1),
        "all_processes_peak_mb": round(tree.total_rss / 2**20, 1),
        "load_average": round(os.getloadavg()[0], 2),
        "documents_sha256": documents_sha,
        "chunks_sha256": chunks_sha,
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def many_documents(n: int, worker_counts: list[int], repeat: int) -> None:
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        make_corpus(folder, n)
        print(f"made {n} documents in {time.perf_counter() - start:.1f} s (not timed below)")
        for _ in range(repeat):
            for workers in worker_counts:  # the counts take turns: a shared machine's drift hits all alike
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", str(folder), "--workers", str(workers)],
                    check=True, capture_output=True, text=True,
                ).stdout
                runs.append(json.loads(out))
                print(json.dumps(runs[-1]))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    print("| workers | runs | ingest docs/s | ingest CPU s | chunk docs/s | chunk CPU s | parent peak MB | largest child MB | all processes MB | docs in / out | chunks |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in worker_counts:
        mine = [r for r in runs if r["workers"] == workers]

        def spread(key: str, form: str = ",.0f", mine: list[dict] = mine) -> str:
            values = [r[key] for r in mine]
            return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"

        print(
            f"| {workers} | {len(mine)} | {spread('ingest_docs_per_s')} | {spread('ingest_cpu_s', '.1f')} "
            f"| {spread('chunk_docs_per_s')} | {spread('chunk_cpu_s', '.1f')} "
            f"| {max(r['parent_peak_mb'] for r in mine):.0f} | {max(r['worker_peak_mb'] for r in mine):.0f} "
            f"| {max(r['all_processes_peak_mb'] for r in mine):.0f} | {mine[0]['files_in']} / {mine[0]['documents_out']} | {mine[0]['chunks']} |"
        )
    lost = [r for r in runs if not r["files_in"] == r["documents_out"] == r["chunked_documents"] == n or r["skipped"]]
    if lost:
        sys.exit(f"documents lost: {lost}")
    if len({(r["documents_sha256"], r["chunks_sha256"]) for r in runs}) != 1:
        sys.exit("the worker counts gave different documents or chunks")
    print(f"\nnothing lost: {n} files in, {n} documents out and chunked in every run; the same documents and chunks with every worker count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--compare", action="store_true", help="also compare pypdfium2 and pypdf")
    parser.add_argument("--docs", type=int, help="many small documents instead of one long PDF (#13)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="with --docs: worker counts to compare")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # one --docs measurement, in its own process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.workers[0])))
        return
    if args.docs:
        many_documents(args.docs, args.workers, args.repeat)
        return
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

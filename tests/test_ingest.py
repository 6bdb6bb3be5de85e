"""Ingestion: every format, normalisation, bad input, multi-file behaviour, the shipped sample and
the devset PDFs. All documents are made here (fpdf2, python-docx, strings)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from distillqa.config import Config, IngestConfig, load_config
from distillqa.errors import DistillqaError
from distillqa.ingest import expand_paths, ingest_file, ingest_files
from distillqa.ingest.normalize import Page, assemble, line_key, normalise_paragraph, repeated_edge_lines, vocabulary
from distillqa.ingest.plaintext import decode_text
from distillqa.layout import DOCUMENTS
from distillqa.pipeline import STAGE_BY_NAME, Run
from tests.helpers import encrypted_pdf

REPO = Path(__file__).resolve().parents[1]

# Source paragraphs of the test PDF. "geo-\nlogy" and "well-\nknown" are forced line-end hyphens;
# "geology" and "well-known" appear elsewhere, which tells the ingester how to join them.
PDF_PARAGRAPHS = [
    "Rivers shape the land they cross. The Danube flows through ten countries before it reaches "
    "the Black Sea, and its delta is one of the largest wetlands in Europe.",
    "The study of rocks along a river is part of geo-\nlogy. Engineers who build dams rely on "
    "geology to judge whether a valley floor can bear the weight of a reservoir.",
    "It is a well-\nknown fact that floods deposit fertile silt. The well-known floods of the Nile "
    "fed Egyptian farms for thousands of years until the Aswan High Dam was finished in 1970.",
] + [
    f"Survey number {k} measured the river at {k * 3} stations over {k + 2} weeks. The teams "
    f"recorded depth, speed and temperature every hour, and sent the results to the office in "
    f"Vienna, where clerks copied them into ledgers that are still kept in the archive today. "
    f"Later surveys compared their figures with those of survey {k}, which made it a reference."
    for k in range(1, 28)
]


def make_pdf(path: Path, paragraphs: list[str], header: str | None = "Field Notes on Rivers") -> Path:
    """A multi-page A4 report: running header, 'Page N of M' footer, justified paragraphs."""

    class Report(FPDF):
        def header(self) -> None:
            if header:
                self.set_font("Helvetica", "I", 8)
                self.cell(0, 8, header, new_x="LMARGIN", new_y="NEXT")

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")

    pdf = Report(format="A4")
    pdf.add_page()
    for text in paragraphs:
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 5.5, text, align="J", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.output(str(path))
    return path


def flat(text: str) -> str:
    return " ".join(text.split())


def check_record(doc: dict) -> None:
    """The documents.jsonl contract of docs/design.md."""
    assert set(doc) == {"doc_id", "source", "sha256", "format", "title", "text", "pages"}
    text, pages = doc["text"], doc["pages"]
    assert pages and pages[0]["start"] == 0 and pages[-1]["end"] == len(text)
    for a, b in zip(pages, pages[1:]):
        assert text[a["end"] : b["start"]] in {"", " ", "\n\n"}, "pages are separated by a separator only"
        assert a["number"] < b["number"]
    assert "\n\n\n" not in text and text == text.strip()
    assert all(p == flat(p) for p in text.split("\n\n")), "paragraphs are single clean lines"


# --- PDF -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_pdf(tmp_path_factory) -> Path:
    return make_pdf(tmp_path_factory.mktemp("pdf") / "rivers.pdf", PDF_PARAGRAPHS)


def test_pdf_paragraphs_pages_and_offsets(report_pdf: Path):
    doc = ingest_file(report_pdf, IngestConfig())
    check_record(doc)
    assert doc["format"] == "pdf" and doc["doc_id"].startswith("rivers-") and len(doc["doc_id"]) == len("rivers-") + 8
    assert [p["number"] for p in doc["pages"]] == [1, 2, 3]
    expected = [flat(p.replace("geo-\nlogy", "geology").replace("well-\nknown", "well-known")) for p in PDF_PARAGRAPHS]
    assert doc["text"].split("\n\n") == expected
    seps = [doc["text"][a["end"] : b["start"]] for a, b in zip(doc["pages"], doc["pages"][1:])]
    assert " " in seps, "a paragraph running across a page break stays one paragraph"
    page2 = doc["text"][doc["pages"][1]["start"] : doc["pages"][1]["end"]]
    assert "Survey number" in page2


@pytest.mark.parametrize("layout", ["first-line-indent", "ragged-right"])
def test_pdf_paragraphs_without_vertical_gaps(tmp_path: Path, layout: str):
    """No space between paragraphs: a first-line indent marks them (the paragraphs here end
    without a full stop, so nothing else can), or a line ending a sentence well before the margin."""
    expected = [flat(p.replace("geo-\nlogy", "geology").replace("well-\nknown", "well-known")) for p in PDF_PARAGRAPHS]
    if layout == "first-line-indent":
        expected = [p.rstrip(".") for p in expected]
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Times", size=11)
    for text in expected:
        if layout == "first-line-indent":
            pdf.multi_cell(0, 5, "      " + text, align="J", new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.multi_cell(0, 5, text, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "tight.pdf"))
    doc = ingest_file(tmp_path / "tight.pdf", IngestConfig())
    assert len(doc["pages"]) >= 2 and doc["text"].split("\n\n") == expected


def test_pdf_header_and_footer_removed(report_pdf: Path):
    text = ingest_file(report_pdf, IngestConfig())["text"]
    assert "Field Notes" not in text and "Page 1 of" not in text and "of 3" not in text


def test_header_footer_kept_below_the_fraction(report_pdf: Path):
    text = ingest_file(report_pdf, IngestConfig(header_footer_min_fraction=1.0))["text"]
    assert "Field Notes" not in text  # on every page: still removed
    two_pages = make_pdf(report_pdf.with_name("short.pdf"), PDF_PARAGRAPHS[:9])
    assert "Field Notes on Rivers" in ingest_file(two_pages, IngestConfig())["text"]  # < 3 pages


def test_pdf_without_text_layer_needs_ocr(tmp_path: Path):
    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.rect(20, 20, 100, 60, style="F")
    pdf.output(str(tmp_path / "scan.pdf"))
    with pytest.raises(DistillqaError, match=r"scan\.pdf: no text layer on pages 1-2: .*OCR") as e:
        ingest_file(tmp_path / "scan.pdf", IngestConfig())
    assert "\n" not in str(e.value)


def mixed_pdf(path: Path) -> Path:
    """A text page followed by a page with only a picture (as a scan has)."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "A page with real text on it.")
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.output(str(path))
    return path


def test_pdf_with_some_scanned_pages_warns(tmp_path: Path, caplog):
    mixed_pdf(tmp_path / "mixed.pdf")
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        doc = ingest_file(tmp_path / "mixed.pdf", IngestConfig())
    assert doc["text"] == "A page with real text on it."
    assert "no text layer on page 2" in caplog.text


def test_encrypted_pdf_needs_the_password(tmp_path: Path):
    encrypted_pdf(tmp_path / "locked.pdf", "The vault code is written here.", "secret")
    with pytest.raises(DistillqaError, match=r"locked\.pdf: the PDF is encrypted: .*--pdf-password"):
        ingest_file(tmp_path / "locked.pdf", IngestConfig())
    with pytest.raises(DistillqaError, match="wrong PDF password"):
        ingest_file(tmp_path / "locked.pdf", IngestConfig(pdf_password="guess"))
    assert ingest_file(tmp_path / "locked.pdf", IngestConfig(pdf_password="secret"))["text"] == "The vault code is written here."


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_corrupt_pdf(report_pdf: Path, tmp_path: Path, cut: float):
    data = report_pdf.read_bytes()
    (tmp_path / "broken.pdf").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(DistillqaError, match=r"broken\.pdf: not a readable PDF .*corrupt"):
        ingest_file(tmp_path / "broken.pdf", IngestConfig())


def test_shipped_sample_pdf():
    doc = ingest_file(REPO / "examples" / "sample.pdf", IngestConfig())
    check_record(doc)
    assert (REPO / "examples" / "sample.pdf").stat().st_size < 200_000
    assert 3 <= len(doc["pages"]) <= 4
    blocks = [b for b in (REPO / "examples" / "sample.md").read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert doc["text"].split("\n\n") == [flat(b.lstrip("# ")) for b in blocks]
    assert doc["title"] == flat(blocks[0].lstrip("# "))
    assert "Page 2 of" not in doc["text"]
    assert 1200 <= len(doc["text"].split()) <= 1600


@pytest.mark.parametrize("name", ["geology", "1973_oil_crisis", "pharmacy"])
def test_devset_pdfs_recover_every_paragraph(devset: Path, name: str):
    doc = ingest_file(devset / f"{name}.pdf", IngestConfig())
    check_record(doc)
    gold = [flat(p) for p in (devset / f"{name}.txt").read_text(encoding="utf-8").split("\n\n")]
    paragraphs = iter(doc["text"].split("\n\n"))
    assert all(any(g == p for p in paragraphs) for g in gold), "each gold paragraph, in order"
    assert len(doc["text"].split("\n\n")) == len(gold) + 1  # plus the title line


# --- DOCX, HTML, Markdown, TXT ---------------------------------------------------------------


def test_docx_headings_sections_and_tables(tmp_path: Path):
    d = docx.Document()
    d.core_properties.title = "Harbour Handbook"
    d.add_heading("Harbour Handbook", 0)
    d.add_paragraph("The harbour opened in 1887.\nIt has two basins.")
    d.add_heading("Tides", 1)
    d.add_paragraph("Spring tides reach 4.2 metres.")
    table = d.add_table(rows=2, cols=2)
    for r, row in enumerate([("Basin", "Depth"), ("North", "9 m")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_heading("Details", 4)  # below level 3: a paragraph, not a section
    d.add_heading("Pilots", 2)
    d.add_paragraph("Pilots board at the outer buoy.")
    d.save(str(tmp_path / "harbour.docx"))
    doc = ingest_file(tmp_path / "harbour.docx", IngestConfig())
    check_record(doc)
    assert doc["format"] == "docx" and doc["title"] == "Harbour Handbook"
    assert doc["text"].split("\n\n") == [
        "Harbour Handbook",
        "The harbour opened in 1887. It has two basins.",
        "Tides",
        "Spring tides reach 4.2 metres.",
        "Basin | Depth",
        "North | 9 m",
        "Details",
        "Pilots",
        "Pilots board at the outer buoy.",
    ]
    sections = [doc["text"][p["start"] : p["end"]].split("\n\n")[0] for p in doc["pages"]]
    assert sections == ["Harbour Handbook", "Tides", "Pilots"]
    assert [p["number"] for p in doc["pages"]] == [1, 2, 3]


def test_corrupt_docx(tmp_path: Path):
    (tmp_path / "bad.docx").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DistillqaError, match=r"bad\.docx: not a readable DOCX"):
        ingest_file(tmp_path / "bad.docx", IngestConfig())


HTML = """<!doctype html><html><head><title>Lighthouse Keepers</title><style>p {color: red}</style>
<script>var tracking = "SECRET-SCRIPT";</script></head><body>
<header>SITE HEADER</header><nav><a href="/">NAV LINK</a></nav>
<h1>Keepers</h1><!-- a COMMENT -->
<p>Keepers trimmed the <b>wicks</b> every night.<br>They also polished the lens.</p>
<aside>ASIDE BOX</aside><noscript>NOSCRIPT TEXT</noscript>
<h2>Duties</h2><ul><li>Log the weather</li><li>Wind the clock</li></ul>
<table><tr><th>Station</th><th>Keepers</th></tr><tr><td>Bell Rock</td><td>3</td></tr></table>
<h4>Minor note</h4><div>Loose text in a div.</div>
<footer>SITE FOOTER</footer></body></html>"""


def test_html_drops_furniture_and_keeps_structure(tmp_path: Path):
    (tmp_path / "keepers.html").write_text(HTML, encoding="utf-8")
    doc = ingest_file(tmp_path / "keepers.html", IngestConfig())
    check_record(doc)
    assert doc["title"] == "Lighthouse Keepers" and doc["format"] == "html"
    for furniture in ("SECRET", "SITE HEADER", "NAV LINK", "COMMENT", "ASIDE", "NOSCRIPT", "SITE FOOTER", "color"):
        assert furniture not in doc["text"]
    assert doc["text"].split("\n\n") == [
        "Keepers",
        "Keepers trimmed the wicks every night. They also polished the lens.",
        "Duties",
        "Log the weather",
        "Wind the clock",
        "Station | Keepers",
        "Bell Rock | 3",
        "Minor note",
        "Loose text in a div.",
    ]
    assert [doc["text"][p["start"] : p["end"]].split("\n\n")[0] for p in doc["pages"]] == ["Keepers", "Duties"]


def test_html_title_falls_back_to_h1(tmp_path: Path):
    (tmp_path / "page.htm").write_bytes("<h1>Caf\u00e9 Lights</h1><p>Text.</p>".encode("latin-1"))
    doc = ingest_file(tmp_path / "page.htm", IngestConfig())
    assert doc["title"] == "Café Lights"


def test_markdown_markup_stripped_and_sections(tmp_path: Path):
    (tmp_path / "notes.md").write_text(
        "---\ntitle: front matter\n---\n# Fog Signals\n\nA *diaphone* gives a `two-tone` blast, see "
        "[the museum](https://example.org/fog).\n\n## Bells\n\n- Bells came first\n- Then cannons\n\n"
        "```\ncode block line\n```\n",
        encoding="utf-8",
    )
    doc = ingest_file(tmp_path / "notes.md", IngestConfig())
    check_record(doc)
    assert doc["format"] == "markdown" and doc["title"] == "Fog Signals"
    assert doc["text"].split("\n\n") == [
        "Fog Signals",
        "A diaphone gives a two-tone blast, see the museum.",
        "Bells",
        "Bells came first",
        "Then cannons",
        "code block line",
    ]
    assert len(doc["pages"]) == 2


def test_txt_paragraphs_and_wrapped_lines(tmp_path: Path):
    (tmp_path / "plain.txt").write_text(
        "Tides and Currents\n\nThe tide rises twice\na day in most places.\n\n\nCurrents follow   the tide.\n",
        encoding="utf-8",
    )
    doc = ingest_file(tmp_path / "plain.txt", IngestConfig())
    check_record(doc)
    assert doc["text"] == "Tides and Currents\n\nThe tide rises twice a day in most places.\n\nCurrents follow the tide."
    assert doc["pages"] == [{"number": 1, "start": 0, "end": len(doc["text"])}]
    assert doc["title"] == "Tides and Currents"


def test_txt_unwrapped_lines_are_paragraphs(tmp_path: Path):
    lines = [f"Line {i} " + "is a long unwrapped paragraph of plain text. " * 5 for i in range(3)]
    (tmp_path / "long.txt").write_text("\n".join(lines), encoding="utf-8")
    assert len(ingest_file(tmp_path / "long.txt", IngestConfig())["text"].split("\n\n")) == 3


@pytest.mark.parametrize(
    "text",
    [
        "Le phare de Cordouan, à l'embouchure de la Gironde, fut achevé en 1611. " * 3,
        "Grüße aus München: der Leuchtturm steht seit 1897 an der Küste, sagt Jürgen Weiß.",
    ],
)
def test_latin1_txt_is_detected(tmp_path: Path, text: str):
    (tmp_path / "latin1.txt").write_bytes(text.encode("latin-1"))
    assert ingest_file(tmp_path / "latin1.txt", IngestConfig())["text"] == flat(text)


def test_utf16_txt_with_bom_is_text(tmp_path: Path):
    (tmp_path / "wide.txt").write_bytes("Wide text, café.".encode("utf-16"))
    assert ingest_file(tmp_path / "wide.txt", IngestConfig())["text"] == "Wide text, café."


@pytest.mark.parametrize(
    "data",
    [random.Random(0).randbytes(4096), b"header\x01\x02\x03\x04\x05\x06\x07\x08" * 50],
    ids=["random-bytes", "control-characters"],
)
def test_binary_txt_is_refused(tmp_path: Path, data: bytes):
    (tmp_path / "blob.txt").write_bytes(data)
    with pytest.raises(DistillqaError, match=r"blob\.txt: binary data, not text"):
        ingest_file(tmp_path / "blob.txt", IngestConfig())


@pytest.mark.parametrize("name,data", [("empty.txt", b""), ("blank.md", b" \n\n\t\n"), ("empty.pdf", b"")])
def test_empty_files(tmp_path: Path, name: str, data: bytes):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DistillqaError, match="the file is empty"):
        ingest_file(tmp_path / name, IngestConfig())


def test_html_without_text(tmp_path: Path):
    (tmp_path / "bare.html").write_text("<html><body><script>x()</script></body></html>")
    with pytest.raises(DistillqaError, match=r"bare\.html: no text found"):
        ingest_file(tmp_path / "bare.html", IngestConfig())


def test_file_over_size_limit(tmp_path: Path):
    (tmp_path / "big.txt").write_text("Big file. " * 300)
    with pytest.raises(DistillqaError, match=r"big\.txt: .* over ingest\.max_file_mb=0\.001"):
        ingest_file(tmp_path / "big.txt", IngestConfig(max_file_mb=0.001))


# --- normalisation -------------------------------------------------------------------------


def test_normalise_paragraph():
    vocab = vocabulary(["a well-known fact about geology"])
    assert normalise_paragraph("geo-\nlogy and well-\nknown", vocab) == "geology and well-known"
    assert normalise_paragraph("a well-known  mid-line\thyphen", vocab) == "a well-known mid-line hyphen"
    assert normalise_paragraph("hydro-\nthermal and Anglo-\nSaxon and 1973-\n1974", set()) == "hydrothermal and Anglo-Saxon and 1973-1974"
    assert normalise_paragraph("soft\u00adhy\u00ad\nphen", set()) == "softhyphen"
    assert normalise_paragraph("Cafe\u0301 \ufb01sh\u200b\x07 done", set()) == "Café fish done"  # NFC, ligature, invisibles


def test_repeated_edge_lines():
    pages = [["Annual Report", f"body {c} one", f"body {c} two", f"Page {i} of 4"] for i, c in enumerate("abcd", 1)]
    drop = repeated_edge_lines([[line_key(x) for x in p] for p in pages], 0.5)
    assert drop == [{0, 3}] * 4
    assert repeated_edge_lines([[line_key(x) for x in p] for p in pages[:2]], 0.5) == [set(), set()]


def test_assemble_joins_a_word_hyphenated_across_pages():
    text, pages = assemble([Page(1, ["First para.", "The river geo-"]), Page(2, ["logy is old. Geology."], continues=True)])
    assert text == "First para.\n\nThe river geology is old. Geology."
    assert pages == [{"number": 1, "start": 0, "end": 26}, {"number": 2, "start": 26, "end": len(text)}]


def test_decode_text_prefers_utf8(tmp_path: Path):
    assert decode_text(tmp_path / "x.txt", "naïve café".encode()) == "naïve café"


# --- paths and the stage -------------------------------------------------------------------


def test_expand_paths(tmp_path: Path, monkeypatch):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / ".hidden").mkdir()
    for name in ["docs/b.txt", "docs/a.md", "docs/sub/c.PDF", "docs/skip.xyz", "docs/.secret.txt", "docs/~$lock.docx", "docs/.hidden/d.txt"]:
        (tmp_path / name).write_text("x")
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    assert expand_paths(["docs"]) == [docs / "a.md", docs / "b.txt", docs / "sub" / "c.PDF"]
    assert expand_paths(["docs/*.txt", "docs/b.txt"]) == [docs / "b.txt"]  # named twice, read once
    assert expand_paths(["docs/**/*.PDF"]) == [docs / "sub" / "c.PDF"]
    for args, message in [
        (["nope.pdf"], "nope.pdf: no such file or folder"),
        (["docs/*.rtf"], r"docs/\*.rtf: the pattern matches no files"),
        (["docs/*.docx"], "matches no .* files"),  # only an Office lock file
        (["docs/*.xyz"], "matches no .* files"),
        (["docs/skip.xyz"], "unsupported file type '.xyz'"),
        (["docs/sub/../.hidden/../skip.xyz"], "unsupported"),
    ]:
        with pytest.raises(DistillqaError, match=message):
            expand_paths(args)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistillqaError, match="no .* files in this folder"):
        expand_paths(["empty"])


def _run_with(tmp_path: Path, files: list[Path], **ingest) -> tuple[Run, Config]:
    run = Run(tmp_path / "run", quiet=True)
    run.root.mkdir()
    run.set_inputs(files)
    return run, Config(ingest=IngestConfig(**ingest))


@pytest.fixture
def good_and_bad(tmp_path: Path) -> list[Path]:
    (tmp_path / "good.txt").write_text("A good document. It has text.")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / "also.md").write_text("# Also good\n\nMore text.")
    return [tmp_path / "good.txt", tmp_path / "bad.pdf", tmp_path / "also.md"]


def test_bad_file_stops_before_anything_is_written(tmp_path: Path, good_and_bad: list[Path]):
    run, cfg = _run_with(tmp_path, good_and_bad)
    with pytest.raises(DistillqaError, match=r"bad\.pdf: not a readable PDF"):
        run.run_stage(STAGE_BY_NAME["ingest"], cfg)
    assert not run.path(DOCUMENTS).exists()


def test_skip_bad_continues(tmp_path: Path, good_and_bad: list[Path], caplog):
    run, cfg = _run_with(tmp_path, good_and_bad, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        summary = run.run_stage(STAGE_BY_NAME["ingest"], cfg)
    docs = [json.loads(line) for line in run.path(DOCUMENTS).read_text().splitlines()]
    assert [d["title"] for d in docs] == ["good", "Also good"]
    assert summary == {"documents": 2, "pages": 2, "characters": sum(len(d["text"]) for d in docs), "skipped": 1}
    assert "skipped" in caplog.text and "bad.pdf" in caplog.text


def test_all_bad_is_an_error_even_with_skip_bad(tmp_path: Path, good_and_bad: list[Path]):
    with pytest.raises(DistillqaError, match="none of the 1 input files could be read"):
        ingest_files(good_and_bad[1:2], IngestConfig(skip_bad=True))


def test_duplicate_content_is_read_once(tmp_path: Path, caplog):
    for name in ("one.txt", "two.txt"):
        (tmp_path / name).write_text("Same words in both files.")
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        docs, skipped = ingest_files([tmp_path / "one.txt", tmp_path / "two.txt"], IngestConfig())
    assert len(docs) == 1 and skipped == 1 and "same content" in caplog.text


# --- worker processes (ingest.workers) -----------------------------------------------------


def _many_formats(tmp_path: Path, report_pdf: Path) -> list[Path]:
    """Every format, a PDF with a scanned page (a warning), an encrypted PDF (password "pw"), a
    duplicate (note3.txt, after copy.txt), and two bad files (bad.pdf, empty.txt)."""
    files = [tmp_path / f"note{i}.txt" for i in range(6)]
    for i, path in enumerate(files):
        path.write_text(f"Note {i}.\n\nThe keeper wrote entry {i} in the log.")
    (tmp_path / "copy.txt").write_text("Note 3.\n\nThe keeper wrote entry 3 in the log.")
    (tmp_path / "page.html").write_text(HTML)
    (tmp_path / "notes.md").write_text("# Notes\n\nSome *marked up* text.")
    document = docx.Document()
    document.add_paragraph("A Word document about fog signals.")
    document.save(str(tmp_path / "fog.docx"))
    mixed_pdf(tmp_path / "mixed.pdf")
    encrypted_pdf(tmp_path / "locked.pdf", "The vault code is written here.", "pw")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / "empty.txt").write_bytes(b"")
    names = ["page.html", "bad.pdf", "notes.md", "fog.docx", "copy.txt", "mixed.pdf", "empty.txt", "locked.pdf"]
    return files[:3] + [tmp_path / n for n in names[:4]] + [report_pdf] + [tmp_path / n for n in names[4:]] + files[3:]


def test_workers_read_the_same_documents_in_the_same_order(tmp_path: Path, report_pdf: Path, caplog):
    files = _many_formats(tmp_path, report_pdf)
    runs, logs = [], []
    for workers in (1, 2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="distillqa"):
            runs.append(ingest_files(files, IngestConfig(workers=workers, skip_bad=True, pdf_password="pw")))
        logs.append([(r.levelname, r.getMessage()) for r in caplog.records if "worker processes" not in r.getMessage()])
    assert runs[0] == runs[1]
    documents, skipped = runs[1]
    assert skipped == 3 and len(documents) == len(files) - 3
    assert [d["source"] for d in documents] == [str(f) for f in files if f.name not in ("bad.pdf", "empty.txt", "note3.txt")]
    locked = next(d for d in documents if d["source"].endswith("locked.pdf"))
    assert locked["text"] == "The vault code is written here.", "the password reaches the workers"
    assert logs[0] == logs[1], "the same warnings, in the same order"
    assert "no text layer on page 2" in caplog.text and "same content as" in caplog.text  # a worker's, and this process's


@pytest.mark.parametrize("bad", ["bad.pdf", "empty.txt"])
def test_a_bad_file_in_a_worker_stops_with_the_same_error(tmp_path: Path, report_pdf: Path, bad: str):
    files = [f for f in _many_formats(tmp_path, report_pdf) if f.name in (bad, "locked.pdf") or f.name not in ("bad.pdf", "empty.txt")]
    errors = []
    for workers in (1, 2):
        with pytest.raises(DistillqaError) as e:
            ingest_files(files, IngestConfig(workers=workers, pdf_password="pw"))
        errors.append(str(e.value))
    assert errors[0] == errors[1] and bad in errors[0] and "\n" not in errors[0]


def test_workers_setting_is_checked():
    assert load_config(None, ["ingest.workers=0", "chunk.workers=2"]).chunk.workers == 2
    for change, message in [("ingest.workers=-1", "greater than or equal to 0"), ("chunk.workers=all", "valid integer")]:
        with pytest.raises(DistillqaError, match=rf"invalid config at {change.partition('=')[0]}: .*{message}"):
            load_config(None, [change])

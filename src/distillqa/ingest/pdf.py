"""PDF reading with pypdfium2: text lines with their geometry, rebuilt into paragraphs.

Why pypdfium2 rather than pypdf (measured on this project's shared 2-core machine with
pypdfium2 5.15.2 and pypdf 7.1.1; `python benchmarks/ingest.py --compare` reruns it):

- speed: raw text extraction of a generated 300-page PDF took 0.42-0.62 s with pypdfium2 and
  2.0-3.0 s with pypdf (about 5x); the devset PDFs (5-6 pages) took 6-13 ms against 54-78 ms.
- text quality: the same. On the devset both give word sequences matching the gold text at
  0.9995-0.9998 (difflib ratio; the title line is the only difference).
- geometry: PDF text has no blank lines between paragraphs (the devset PDFs separate them
  only by extra vertical space), so paragraphs must be rebuilt from the layout, and pdfium
  gives any character's box in one call. pypdf's layout mode is slower still.
- it is already a dependency; pypdf would be a second PDF stack.

Paragraph breaks, between two lines of a page, in order of evidence:
1. the font size changes (a heading, a caption, a footnote);
2. the vertical gap is clearly larger than the document's usual line spacing;
3. the line is indented relative to the previous one (first-line indentation);
4. the previous line ends a sentence and stops short of the right margin by more than the next
   line's first word would need: a line broken although the word would have fitted.
Across a page break, the paragraph continues on the next page unless rule 1 or 3 (against the
page's left margin) applies or the page's last line ends a sentence. The last is a guess the
layout cannot settle: such a line is usually a paragraph's last line, but not always (every
such break in the devset PDFs is a paragraph end; in a 100-page PDF made by
benchmarks/ingest.py, 2 of 834 paragraphs are split this way).

Running headers and footers (lines repeating at the top or bottom of most pages, in the same
font size at the same height) are removed first, so they neither show up in the text nor break a paragraph that
runs across pages.
"""

from __future__ import annotations

import logging
import re
import statistics
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from distillqa.config import IngestConfig
from distillqa.errors import DistillqaError
from distillqa.ingest.normalize import Extracted, Page, line_key, repeated_edge_lines
from distillqa.text import ENDS_WITH_STOP

log = logging.getLogger("distillqa")

_LINE_END_HYPHEN = "\ufffe"  # what pdfium puts in place of a hyphen that ends a line
_SEGMENT = re.compile(rf"[^\r\n{_LINE_END_HYPHEN}]+{_LINE_END_HYPHEN}?")

_LIST_MARKER = re.compile(r"^(?:[•◦▪‣∙·*–-]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s")
_SIZE_CHANGE = 0.15  # relative font height difference that marks a different kind of text
_GAP_FACTOR = 1.25  # a gap this much above the usual line spacing separates paragraphs
_INDENT = 0.8  # indentation, in line heights, that starts a paragraph


@dataclass(frozen=True)
class Line:
    """One physical line of text and its box (PDF units, y grows upwards)."""

    text: str
    left: float
    right: float
    bottom: float
    top: float

    @property
    def height(self) -> float:
        return self.top - self.bottom


def read_pdf(path: Path, data: bytes, cfg: IngestConfig) -> Extracted:
    """Text of every page as paragraphs; fails clearly for corrupt, encrypted or scanned PDFs."""
    try:
        pdf = pdfium.PdfDocument(data, password=cfg.pdf_password)
    except pdfium.PdfiumError as e:
        if e.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            if cfg.pdf_password is None:
                raise DistillqaError(f"{path}: the PDF is encrypted: give its password with --pdf-password") from None
            raise DistillqaError(f"{path}: wrong PDF password: check the value of --pdf-password") from None
        raise DistillqaError(f"{path}: not a readable PDF ({e}): the file is corrupt or truncated; export or download it again") from None
    try:
        lines, without_text = _read_lines(path, pdf)
        metadata_title = pdf.get_metadata_dict().get("Title", "")
    finally:
        pdf.close()
    if without_text and not any(lines):
        raise DistillqaError(f"{path}: no text layer on {_page_list(without_text)}: it is a scan; run OCR on it first (e.g. `ocrmypdf in.pdf out.pdf`)")
    if without_text:
        log.warning("%s: no text layer on %s (scanned?): left out; run OCR on the PDF to include them", path, _page_list(without_text))
    # A running header or footer repeats its text, font size and height on the page; a title
    # page's title or a short body line ("reference.") that happens to repeat does not.
    keys = [[(line_key(ln.text), round(ln.height), round(ln.bottom / 2)) for ln in page] for page in lines]
    drop = repeated_edge_lines(keys, cfg.header_footer_min_fraction)
    lines = [[ln for i, ln in enumerate(page) if i not in d] for page, d in zip(lines, drop)]
    return Extracted(_useful_title(metadata_title), _paragraphs(lines))


def _read_lines(path: Path, pdf: pdfium.PdfDocument) -> tuple[list[list[Line]], list[int]]:
    """Lines of every page, and the numbers of pages that hold something but no text."""
    lines: list[list[Line]] = []
    without_text: list[int] = []
    for number in range(1, len(pdf) + 1):
        try:
            page = pdf[number - 1]
            textpage = page.get_textpage()
            page_lines = _page_lines(textpage)
            if not page_lines and pdfium_c.FPDFPage_CountObjects(page) > 0:
                without_text.append(number)
            textpage.close()
            page.close()
        except pdfium.PdfiumError as e:
            raise DistillqaError(f"{path}: page {number} cannot be read ({e}): the file is damaged; export it again") from None
        lines.append(page_lines)
    return lines, without_text


def _page_lines(textpage: pdfium.PdfTextPage) -> list[Line]:
    """Split the page text into physical lines and measure each from its first and last character."""
    text = textpage.get_text_range()
    out = []
    for m in _SEGMENT.finditer(text):
        segment = m.group()
        content = segment.strip()
        if not content:
            continue
        first = m.start() + segment.index(content[0])
        last = first + len(content) - 1
        left, bottom, _, top = textpage.get_charbox(_char_index(textpage, first, +1), loose=True)
        _, _, right, _ = textpage.get_charbox(_char_index(textpage, last, -1), loose=True)
        out.append(Line(content.replace(_LINE_END_HYPHEN, "-"), left, right, bottom, top))
    return out


def _char_index(textpage: pdfium.PdfTextPage, text_index: int, step: int) -> int:
    """The page character behind a position of the extracted text.

    pdfium may insert characters into the text that have no box; then the nearest real one
    (searching in `step` direction, at most a few places) stands in.
    """
    for i in range(text_index, text_index + 4 * step, step):
        index = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, i)
        if index >= 0:
            return index
    raise pdfium.PdfiumError(f"no character box for text position {text_index}")


def _paragraphs(pages: list[list[Line]]) -> list[Page]:
    spacing = _line_spacing(pages)
    out: list[Page] = []
    previous: Line | None = None  # the last line of the previous page with text
    for number, lines in enumerate(pages, 1):
        if not lines:
            continue
        right_margin = max(ln.right for ln in lines)
        left_margin = min(ln.left for ln in lines)
        groups = [[lines[0]]]
        for prev, cur in pairwise(lines):
            if _breaks(prev, cur, spacing, right_margin):
                groups.append([cur])
            else:
                groups[-1].append(cur)
        continues = previous is not None and not (
            _size_changes(previous, lines[0])
            or lines[0].left - left_margin > _INDENT * lines[0].height
            or ENDS_WITH_STOP.search(previous.text)
        )
        out.append(Page(number, ["\n".join(ln.text for ln in g) for g in groups], continues))
        previous = lines[-1]
    return out


def _line_spacing(pages: list[list[Line]]) -> float | None:
    """The usual baseline-to-baseline distance between lines of a paragraph, in line heights."""
    ratios = [
        (prev.bottom - cur.bottom) / prev.height
        for lines in pages
        for prev, cur in pairwise(lines)
        if prev.bottom > cur.bottom and prev.height > 0 and not _size_changes(prev, cur)
    ]
    return statistics.median(ratios) if ratios else None


def _breaks(prev: Line, cur: Line, spacing: float | None, right_margin: float) -> bool:
    """Whether `cur` starts a new paragraph (rules 1-4 of the module doc)."""
    if _size_changes(prev, cur):
        return True
    height = max(prev.height, cur.height)
    if spacing is not None and prev.bottom - cur.bottom > _GAP_FACTOR * spacing * height:
        return True
    if cur.left - prev.left > _INDENT * height and not _LIST_MARKER.match(prev.text):
        return True
    return _ended_early(prev, cur, right_margin)


def _size_changes(a: Line, b: Line) -> bool:
    return abs(a.height - b.height) > _SIZE_CHANGE * max(a.height, b.height, 1e-6)


def _ended_early(prev: Line, cur: Line, right_margin: float) -> bool:
    """`prev` ends a sentence and the first word of `cur` (plus a space) would have fitted after it."""
    if not ENDS_WITH_STOP.search(prev.text):
        return False
    char_width = (prev.right - prev.left) / len(prev.text)
    first_word = cur.text.split(maxsplit=1)[0]
    return right_margin - prev.right > char_width * (len(first_word) + 2)


def _useful_title(title: str) -> str | None:
    """The metadata title, unless it is empty or a leftover such as a file name or 'untitled'."""
    title = " ".join(title.split())
    if not title or title.lower() in {"untitled", "title"} or re.search(r"\.\w{2,4}$", title):
        return None
    return title


def _page_list(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> 'pages 1-3, 7'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs]
    return ("page " if numbers == [numbers[0]] else "pages ") + ", ".join(parts)

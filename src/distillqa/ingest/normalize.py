"""Text normalisation shared by every format, and assembly of a document's text and page spans.

Readers hand over raw paragraphs grouped into pages (PDF) or sections (headings). Here every
paragraph becomes one line of clean text: Unicode NFC, ligatures and invisible characters
removed, words hyphenated across line ends joined again, whitespace collapsed. Paragraphs are
then joined with "\\n\\n", so downstream code (chunking, answer grounding) can rely on exactly
one kind of break.

Line-end hyphens are ambiguous ("geo-\\nlogy" is one word, "well-\\nknown" keeps its hyphen).
Without a dictionary the document itself is the best judge: if the joined word appears elsewhere
in it, join; if the hyphenated form appears, keep the hyphen; otherwise join, unless the second
part is capitalised ("Anglo-\\nSaxon"). A hyphen next to a digit always stays ("1973-\\n1974").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
# Control characters (other than whitespace), C1 controls, zero-width space, BOM and stray soft
# hyphens carry no text; whitespace is collapsed separately.
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b\u2060\ufeff]")
_LETTERS = r"[^\W\d_]+"
_LINE_END_HYPHEN = re.compile(r"(\w+)([-\u2010\u00ad])[ \t]*\n[ \t]*(?=\w)")
_VOCAB_WORD = re.compile(rf"{_LETTERS}(?:[-\u2010]{_LETTERS})*")
_TRAILING_HYPHEN = re.compile(r"(\w+)[-\u2010]$")
_LEADING_WORD = re.compile(r"\w+")


@dataclass
class Page:
    """Raw paragraphs of one PDF page or one section; `continues`: the first paragraph carries on
    the previous page's last one (a paragraph broken by a page break)."""

    number: int
    paragraphs: list[str]
    continues: bool = False


@dataclass
class Extracted:
    """What a format reader found: a title, if the file names one, and the raw pages."""

    title: str | None
    pages: list[Page]


def sections(blocks: list[tuple[bool, str]]) -> list[Page]:
    """Group (starts_section, paragraph) blocks into numbered sections; a heading opens one."""
    out: list[Page] = []
    for heading, text in blocks:
        if not text.strip():
            continue
        if heading or not out:
            out.append(Page(len(out) + 1, []))
        out[-1].paragraphs.append(text)
    return out


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Lower-cased words and hyphenated compounds written on one line somewhere in the texts."""
    return {w.lower() for t in texts for w in _VOCAB_WORD.findall(t)}


def keep_hyphen(left: str, right: str, vocab: set[str]) -> bool:
    """Whether `left-` at a line end followed by `right` is a real hyphen (see the module doc)."""
    if any(c.isdigit() for c in left[-1:] + right[:1]):  # "1973-1974", "COVID-19"
        return True
    if (left + right).lower() in vocab:
        return False
    if f"{left}-{right}".lower() in vocab:
        return True
    return right[:1].isupper()


def dehyphenate(text: str, vocab: set[str]) -> str:
    """Join words split by a hyphen at a line end; soft hyphens always join."""

    def fix(m: re.Match) -> str:
        left, hyphen = m.group(1), m.group(2)
        right = _LEADING_WORD.match(text, m.end()).group()  # type: ignore[union-attr]
        return left + ("-" if hyphen != "\u00ad" and keep_hyphen(left, right, vocab) else "")

    return _LINE_END_HYPHEN.sub(fix, text)


def _canonical(text: str) -> str:
    """NFC, no ligatures, "\n" line ends: the form words are compared in."""
    return unicodedata.normalize("NFC", text).translate(_LIGATURES).replace("\r\n", "\n").replace("\r", "\n")


def normalise_paragraph(text: str, vocab: set[str]) -> str:
    """One raw paragraph (possibly several lines) -> one clean line of text ('' if nothing is left)."""
    return " ".join(_INVISIBLE.sub("", dehyphenate(_canonical(text), vocab)).split())


def line_key(line: str) -> str:
    """What makes two header/footer lines "the same": case, spacing and numbers ignored."""
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())


def repeated_edge_lines(pages: list[list[Hashable]], min_fraction: float, edge: int = 2) -> list[set[int]]:
    """Indices of running header/footer lines on each page, given a key per line (see `line_key`).

    A line among the first or last `edge` lines of a page is a header/footer when the same key
    sits at an edge of at least `min_fraction` of the pages, so "Page 3 of 10" repeats if the
    key masks digits. Needs at least 3 pages: with fewer, repetition proves nothing.
    """
    if len(pages) < 3:
        return [set() for _ in pages]

    def edges(lines: list[Hashable]) -> set[int]:
        return {*range(min(edge, len(lines))), *range(max(len(lines) - edge, 0), len(lines))}

    where: dict[Hashable, set[int]] = defaultdict(set)
    for p, lines in enumerate(pages):
        for i in edges(lines):
            where[lines[i]].add(p)
    needed = max(2, math.ceil(min_fraction * len(pages)))
    return [{i for i in edges(lines) if len(where[lines[i]]) >= needed} for lines in pages]


def assemble(pages: list[Page]) -> tuple[str, list[dict]]:
    """Normalise and join all paragraphs; return the text and its page spans.

    Paragraphs are separated by "\\n\\n". A paragraph continued across a page break is joined with
    a space (or nothing, when a word was hyphenated across the break), so the page boundary falls
    inside it. Pages without text get no span; the spans cover the text in order, separated only
    by the separators.
    """
    vocab = vocabulary(_canonical(p) for page in pages for p in page.paragraphs)
    parts: list[str] = []  # page bodies and separators, joined once at the end
    length = 0
    spans: list[dict] = []
    last_paragraph = ""
    for page in pages:
        paragraphs = [q for q in (normalise_paragraph(p, vocab) for p in page.paragraphs) if q]
        if not paragraphs:
            continue
        sep = "\n\n" if spans else ""
        if spans and page.continues:
            sep = " "
            hyphen = _TRAILING_HYPHEN.search(last_paragraph)
            right = _LEADING_WORD.match(paragraphs[0])
            if hyphen and right:
                sep = ""
                if not keep_hyphen(hyphen.group(1), right.group(), vocab):
                    parts[-1] = parts[-1][:-1]
                    length -= 1
                    spans[-1]["end"] -= 1
        body = "\n\n".join(paragraphs)
        parts += [sep, body]
        spans.append({"number": page.number, "start": length + len(sep), "end": length + len(sep) + len(body)})
        length += len(sep) + len(body)
        last_paragraph = paragraphs[-1]
    return "".join(parts), spans

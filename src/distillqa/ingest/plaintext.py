"""Plain text: encoding detection, refusing binary data, and paragraphs from blank lines."""

from __future__ import annotations

import codecs
import re
import statistics
from pathlib import Path

import charset_normalizer

from distillqa.config import IngestConfig
from distillqa.errors import DistillqaError
from distillqa.ingest.normalize import Extracted, Page

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_TIE_ORDER = {"cp1252": 0, "latin_1": 1, "iso8859_15": 2}
_MAX_CONTROL_SHARE = 0.02  # text has almost no control characters; binary data has many
_NOISE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ufffd]")  # controls that are not whitespace, U+FFFD
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_UNWRAPPED = 150  # lines longer than this (median) were not hard-wrapped: one paragraph per line


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file: a BOM wins, then UTF-8, then charset-normalizer's best guess.

    Refuses data that is not text: NUL bytes (outside UTF-16/32), no plausible encoding, or more
    than 2% control or replacement characters.
    """
    binary = DistillqaError(f"{path}: binary data, not text: give the original document (PDF, DOCX, ...) instead")
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if encoding is None and b"\x00" in data:
        raise binary
    try:
        text = data.decode(encoding or "utf-8")
    except UnicodeDecodeError:
        matches = charset_normalizer.from_bytes(data)
        best = matches.best()
        if best is None:
            raise binary from None
        # Short texts often score the same in several code pages (French text reads as well in
        # cp1250 as in cp1252 to a statistical detector); the Western ones are by far the most
        # common, so they win a tie.
        ties = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
        text = str(min(ties, key=lambda m: _TIE_ORDER.get(m.encoding, len(_TIE_ORDER))))
    if len(_NOISE.findall(text)) > _MAX_CONTROL_SHARE * len(text):
        raise binary
    return text


def read_txt(path: Path, data: bytes, cfg: IngestConfig) -> Extracted:
    """Paragraphs are separated by blank lines; a file of long unwrapped lines has one per line."""
    text = decode_text(path, data).replace("\r\n", "\n").replace("\r", "\n")
    paragraphs: list[str] = []
    for block in _BLANK_LINE.split(text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if len(lines) > 1 and statistics.median(len(ln) for ln in lines) > _UNWRAPPED:
            paragraphs.extend(lines)
        elif lines:
            paragraphs.append("\n".join(lines))
    return Extracted(None, [Page(1, paragraphs)])

"""DOCX with python-docx: paragraphs and table rows in document order, headings open sections."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table

from distillqa.config import IngestConfig
from distillqa.errors import DistillqaError
from distillqa.ingest.normalize import Extracted, sections

# Word's built-in "Title" and "Heading 1-3" styles open a section, like h1-h3 in HTML.
_SECTION_STYLE = re.compile(r"^(Title|Heading [1-3])$")


def read_docx(path: Path, data: bytes, cfg: IngestConfig) -> Extracted:
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise DistillqaError(f"{path}: not a readable DOCX ({type(e).__name__}): save it again from Word or LibreOffice") from None
    blocks: list[tuple[bool, str]] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks.extend((False, row) for row in _table_rows(item))
        else:
            style = item.style.name if item.style is not None else ""
            blocks.append((bool(_SECTION_STYLE.match(style or "")), item.text))
    title = (document.core_properties.title or "").strip()
    if not title:
        title = next((text for heading, text in blocks if heading and text.strip()), "")
    return Extracted(title or None, sections(blocks))


def _table_rows(table: Table) -> list[str]:
    """Each row as 'cell | cell | ...'; a merged cell (python-docx repeats it) counts once."""
    rows = []
    for row in table.rows:
        cells, previous = [], None
        for cell in row.cells:
            if cell._tc is not previous and (text := " ".join(cell.text.split())):
                cells.append(text)
            previous = cell._tc
        rows.append(" | ".join(cells))
    return rows

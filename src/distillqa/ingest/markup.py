"""HTML and Markdown: block elements become paragraphs, h1-h3 headings open sections.

Markdown is rendered to HTML with markdown-it-py (CommonMark plus tables) and then read like
any HTML page, so emphasis, links, lists and code lose their markup the same way in both.
"""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString
from markdown_it import MarkdownIt

from distillqa.config import IngestConfig
from distillqa.ingest.normalize import Extracted, sections
from distillqa.ingest.plaintext import decode_text

# Page furniture and non-text: never part of the document's content.
_DROP = {"script", "style", "nav", "header", "footer", "aside", "noscript", "template", "svg", "iframe", "head"}
_SECTION_HEADINGS = {"h1", "h2", "h3"}
_BLOCKS = {
    "address", "article", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "form", "h4", "h5", "h6", "hr", "html", "li", "main",
    "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "ul",
}  # fmt: skip
_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)


def read_html(path: Path, data: bytes, cfg: IngestConfig) -> Extracted:
    """An HTML file; BeautifulSoup detects the encoding (BOM, <meta charset>, content)."""
    return _from_soup(BeautifulSoup(data, "lxml"))


def read_markdown(path: Path, data: bytes, cfg: IngestConfig) -> Extracted:
    """A Markdown file; YAML front matter (a leading `---` block) is metadata, not text."""
    text = _FRONT_MATTER.sub("", decode_text(path, data).replace("\r\n", "\n"))
    html = MarkdownIt("commonmark").enable("table").render(text)
    return _from_soup(BeautifulSoup(html, "lxml"))


def _from_soup(soup: BeautifulSoup) -> Extracted:
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else ""
    if not title and (h1 := soup.find("h1")):
        title = " ".join(h1.get_text().split())
    blocks: list[tuple[bool, str]] = []
    _walk(soup, blocks, [])
    return Extracted(title or None, sections(blocks))


def _walk(node: Tag, blocks: list[tuple[bool, str]], buffer: list[str]) -> None:
    """Collect text in document order; block elements flush the running paragraph."""

    def flush(heading: bool = False) -> None:
        if buffer:
            blocks.append((heading, "".join(buffer)))
            buffer.clear()

    for child in node.children:
        if isinstance(child, NavigableString):
            if not isinstance(child, PreformattedString):  # comments, doctypes, CDATA
                buffer.append(str(child))
        elif child.name in _DROP:
            continue
        elif child.name == "br":
            buffer.append("\n")
        elif child.name == "tr":
            flush()
            cells = [" ".join(c.get_text(" ").split()) for c in child.find_all(["td", "th"], recursive=False)]
            buffer.append(" | ".join(c for c in cells if c))
            flush()
        elif child.name in _SECTION_HEADINGS:
            flush()
            _walk(child, blocks, buffer)
            flush(heading=True)
        elif child.name in _BLOCKS:
            flush()
            _walk(child, blocks, buffer)
            flush()
        else:
            _walk(child, blocks, buffer)

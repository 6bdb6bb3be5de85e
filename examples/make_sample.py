"""Regenerate examples/sample.pdf from examples/sample.md: `python examples/make_sample.py`.

The PDF is the demo input of the README. It is laid out like an ordinary report (A4, title,
headings, justified paragraphs, a running header and a "Page N of M" footer) so that it also
exercises header/footer removal and paragraph reconstruction. The Markdown uses only "# " and
"## " headings and plain paragraphs, in Latin-1 characters (Helvetica is a core PDF font).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent


class _Report(FPDF):
    running_title = ""

    def header(self) -> None:
        if self.page_no() > 1:
            self.set_font("Helvetica", "I", 8)
            self.cell(0, 8, self.running_title, align="R", new_x="LMARGIN", new_y="NEXT")
            self.ln(2)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", "", 8)
        self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")


def render(markdown: str, out: Path) -> None:
    blocks = [b.strip() for b in markdown.split("\n\n") if b.strip()]
    title = blocks[0].removeprefix("# ").strip()
    pdf = _Report(format="A4")
    pdf.running_title = title
    pdf.set_title(title)
    pdf.set_author("distillqa")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=timezone.utc))  # same bytes on every run
    pdf.set_margins(22, 20, 22)
    pdf.set_auto_page_break(True, margin=22)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(0, 9, title, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for block in blocks[1:]:
        if block.startswith("## "):
            pdf.ln(3)
            pdf.set_font("Helvetica", "B", 13)
            pdf.multi_cell(0, 7, block[3:], align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        else:
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 5.5, " ".join(block.split()), align="J", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(out))


if __name__ == "__main__":
    render((HERE / "sample.md").read_text(encoding="utf-8"), HERE / "sample.pdf")
    print(f"wrote {HERE / 'sample.pdf'}")

"""Records shared across stages and front ends: the answer a user gets, and where a text offset
falls in a document's pages."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from pydantic import BaseModel, Field

MAX_TOP_K = 20  # most answers one question may ask for, in `ask --top-k` and `POST /ask`


class AnswerRecord(BaseModel):
    """One answer, the same in `ask --json`, `POST /ask` and the web page: `passage[start:end] == answer`."""

    answer: str
    score: float = Field(description="Reader probability × relative retrieval score, in [0, 1].")
    document: str | None = Field(description="Source file name; null for a given context.")
    page: int | None = Field(description="Page (or section) holding the answer.")
    passage: str
    start: int = Field(description="passage[start:end] == answer")
    end: int


def page_at(pages: Sequence[dict], offset: int) -> int | None:
    """The number of the page holding character `offset` of a document (`documents.jsonl` pages:
    `{"number", "start"}` in order); a separator between two pages counts for the first. None
    for a document without pages."""
    if not pages:
        return None
    return pages[max(bisect_right(pages, offset, key=lambda p: p["start"]) - 1, 0)]["number"]

"""Records shared across stages and front ends: the answer a user gets, and where a text offset
falls in a document's pages."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from pydantic import BaseModel, Field

MAX_TOP_K = 20  # most answers one question may ask for, in `ask --top-k` and `POST /ask`
LIKELY_RIGHT = 0.7  # from this confidence an answer is called "likely right" (the web UI's app.js says the same)


class AnswerRecord(BaseModel):
    """One answer, the same in `ask --json`, `POST /ask` and the web page: `passage[start:end] == answer`."""

    answer: str
    score: float = Field(description="Ranking score (reader probability × rules × sentence × retrieval), in [0, 1]: orders answers.")
    confidence: float = Field(
        description="Estimated probability that the answer is right (the score calibrated on the run's validation questions; the score itself when the run has no calibration)."
    )
    document: str | None = Field(description="Source file name; null for a given context.")
    page: int | None = Field(description="Page (or section) holding the answer.")
    passage: str
    start: int = Field(description="passage[start:end] == answer")
    end: int


class AskResult(BaseModel):
    """What `ask --json` prints and `POST /ask` returns: the answers, and whether the best is
    confident enough to call the question answered by the documents."""

    found: bool = Field(description="False when no answer reaches `not_found_below`: the documents do not seem to answer the question.")
    not_found_below: float = Field(description="The confidence threshold (answer.not_found_below).")
    answers: list[AnswerRecord] = Field(description="Best first; shown as best guesses when `found` is false.")


def ask_result(answers: list[dict], not_found_below: float) -> dict:
    """An `AskResult` as a dict, from the answers of `Asker.ask` or `read_context`."""
    found = bool(answers) and answers[0]["confidence"] >= not_found_below
    return {"found": found, "not_found_below": not_found_below, "answers": answers}


def confidence_words(confidence: float, not_found_below: float) -> tuple[str, str]:
    """How a confidence is said to a user, and its colour: "likely right" from LIKELY_RIGHT,
    "may be right" from `not_found_below`, else "unlikely"."""
    if confidence >= max(LIKELY_RIGHT, not_found_below):
        return "likely right", "green"
    if confidence >= not_found_below:
        return "may be right", "yellow"
    return "unlikely", "red"


def page_at(pages: Sequence[dict], offset: int) -> int | None:
    """The number of the page holding character `offset` of a document (`documents.jsonl` pages:
    `{"number", "start"}` in order); a separator between two pages counts for the first. None
    for a document without pages."""
    if not pages:
        return None
    return pages[max(bisect_right(pages, offset, key=lambda p: p["start"]) - 1, 0)]["number"]

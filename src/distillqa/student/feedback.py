"""Corrections from the web UI: the feedback record, RUN/feedback.jsonl, and its gold pairs.

In the web page a user marks a shown answer right or wrong and, when it is wrong, selects the
right span in the shown passage or says the answer is not in these passages. `POST /feedback`
(`distillqa.app.serve`) checks that `Judgement`, adds what only the server knows (the passage's
document and the answer's page, from its index, and the time) and appends the `Feedback` to
RUN/feedback.jsonl, the one file the server writes. Like the teacher cache, the file is
append-only and fsynced line by line (`append_feedback`): a kill mid-write tears at most the last
line, which the next append cuts off and every reader skips, as it skips a line edited out of
shape, with a warning, never an error. `feedback.max_bytes` caps the file: past it the server
refuses new feedback (`FeedbackFull`) and writes nothing.

Gold pairs (`feedback_examples`): a "right" verdict makes the shown span gold; a "wrong" one with
a correction makes the corrected span gold; of several judgements of one question about one
passage, the latest counts. "Not in these passages" is kept and listed, but gives no pair: the
student is trained on SQuAD v1.1, which has no unanswerable questions, and its reader always
answers with some span, so there is nothing right to teach it there.

The train stage adds the pairs to the training set (`feedback.weight` copies each), never to
validation; the evaluate stage scores them before (the answer the user was shown) and after
(the retrained student, reading each question with its passage). `distillqa feedback RUN` lists
the records and exports the pairs as SQuAD v1.1 (`feedback_command`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, model_validator

from distillqa.errors import DistillqaError
from distillqa.io import append_jsonl, repair_jsonl_tail, write_json
from distillqa.layout import FEEDBACK

log = logging.getLogger("distillqa")
NOT_IN_PASSAGES = "not in these passages"  # how the web page, the listing and the report say it


def _check_span(passage: str, start: int, end: int, names: str) -> None:
    if not 0 <= start < end <= len(passage):
        raise ValueError(f"{names} must be offsets in the passage: 0 <= start < end <= {len(passage)}")
    if not passage[start:end].strip():
        raise ValueError(f"{names}: the span is blank")


class Judgement(BaseModel):
    """What a user says about one shown answer, `passage[start:end] == answer`: right, or wrong
    with the right span `passage[correct_start:correct_end]` or `not_in_passages`. Offsets
    count characters (code points), as those of `POST /ask`'s answers do."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str
    passage: str
    answer: str
    start: int
    end: int
    verdict: Literal["right", "wrong"]
    correct_start: int | None = None
    correct_end: int | None = None
    not_in_passages: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Judgement:
        if not self.question.strip():
            raise ValueError("the question is blank")
        _check_span(self.passage, self.start, self.end, "start and end")
        if self.passage[self.start : self.end] != self.answer:
            raise ValueError("answer is not passage[start:end]: send the answer as /ask returned it")
        corrected = self.correct_start is not None or self.correct_end is not None
        if self.verdict == "right" and (corrected or self.not_in_passages):
            raise ValueError('a "right" verdict takes no correction and no not_in_passages')
        if self.verdict == "wrong" and corrected == self.not_in_passages:
            raise ValueError('a "wrong" verdict takes either correct_start and correct_end, or not_in_passages: true')
        if corrected:
            if self.correct_start is None or self.correct_end is None:
                raise ValueError("give both correct_start and correct_end")
            _check_span(self.passage, self.correct_start, self.correct_end, "correct_start and correct_end")
            if self.passage[self.correct_start : self.correct_end] == self.answer:
                raise ValueError("the correction is the shown answer: mark it right instead")
        return self


class Feedback(Judgement):
    """One line of RUN/feedback.jsonl: the judgement, the passage's document and the shown
    answer's page (from the server's index, not from the request), and when it was made (UTC)."""

    document: str
    page: int | None
    time: AwareDatetime

    @property
    def gold(self) -> tuple[int, int] | None:
        """The right span's offsets in the passage; None when it is not in these passages."""
        if self.verdict == "right":
            return self.start, self.end
        if self.not_in_passages:
            return None
        return self.correct_start, self.correct_end  # type: ignore[return-value]  # checked: both set

    @property
    def record_id(self) -> str:
        """A stable id made from the record itself (its line number could change when a damaged
        line before it is skipped)."""
        return "feedback-" + hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class FeedbackFull(DistillqaError):
    """The feedback file would pass `feedback.max_bytes`; nothing was written."""


def append_feedback(path: Path, record: Feedback, max_bytes: int) -> None:
    """Append one record for good (fsynced), unless the file would pass `max_bytes`.

    An exclusive flock on the file is held meanwhile, so requests on several threads (or two
    servers on one run) never interleave or pass the limit together; a line torn by a kill is
    cut off first, so the new line never follows it.
    """
    data = record.model_dump(mode="json")
    size = len(json.dumps(data, ensure_ascii=False).encode()) + 1  # as append_jsonl writes it
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        repair_jsonl_tail(path)
        held = os.fstat(f.fileno()).st_size
        if held + size > max_bytes:
            raise FeedbackFull(
                f"{path.name} is full ({held} bytes; feedback.max_bytes is {max_bytes}): export it with "
                "`distillqa feedback RUN --export FILE` and remove it, or raise feedback.max_bytes"
            )
        append_jsonl(f, data)


def read_feedback(path: Path) -> tuple[list[Feedback], int]:
    """The records of a feedback file (none without one) and how many lines were skipped: a last
    line torn by a kill (or still being written) and lines that are not a valid record. The file
    is never repaired here: the server may be appending to it."""
    if not path.exists():
        return [], 0
    records: list[Feedback] = []
    damaged = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                damaged += 1
            elif line.strip():
                try:
                    records.append(Feedback.model_validate_json(line))
                except ValidationError:
                    damaged += 1
    return records, damaged


def load_feedback(path: Path) -> list[Feedback]:
    """`read_feedback` for a stage: skipped lines are a warning in the log."""
    records, damaged = read_feedback(path)
    if damaged:
        log.warning("%s: %d damaged lines ignored (torn by a kill, or edited)", path, damaged)
    return records


def feedback_examples(records: list[Feedback]) -> list[dict]:
    """The gold pairs as flattened SQuAD examples (`squad_examples`' `{id, question, context,
    answers}`, plus `shown`, the answer the user was shown, and `document`): the latest
    judgement of each question about a passage, less those not in these passages."""
    latest = {(r.question.strip(), r.passage): r for r in records}  # a later judgement replaces an earlier one
    examples = []
    for r in latest.values():
        if r.gold is None:
            continue
        start, end = r.gold
        examples.append(
            {
                "id": r.record_id,
                "question": r.question,
                "context": r.passage,
                "answers": [{"text": r.passage[start:end], "answer_start": start}],
                "shown": r.answer,
                "document": r.document,
            }
        )
    return examples


def to_squad(examples: list[dict]) -> dict:
    """SQuAD v1.1 of `feedback_examples`: one article per document, one paragraph per passage."""
    articles: dict[str, dict[str, list[dict]]] = {}
    for e in examples:
        qa = {"id": e["id"], "question": e["question"], "answers": e["answers"]}
        articles.setdefault(e["document"], {}).setdefault(e["context"], []).append(qa)
    return {
        "version": "1.1",
        "data": [
            {"title": title, "paragraphs": [{"context": context, "qas": qas} for context, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()
        ],
    }


def _correction(r: Feedback) -> str:
    if r.verdict == "right":
        return ""
    return NOT_IN_PASSAGES if r.not_in_passages else r.passage[r.correct_start : r.correct_end]


def feedback_command(run_dir: Path, export: Path | None = None) -> None:
    """`distillqa feedback RUN [--export FILE]`: list the run's feedback as a table (stdout), or
    write its gold pairs to FILE as SQuAD v1.1 (atomically)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    path = Path(run_dir) / FEEDBACK
    if not Path(run_dir).is_dir():
        raise DistillqaError(f"{run_dir}: no such run folder")
    if export is not None and Path(export).is_dir():
        raise DistillqaError(f"{export}: is a folder: give --export a file name, e.g. {Path(export) / 'feedback.json'}")
    records, damaged = read_feedback(path)
    if damaged:
        print(f"warning: {path}: {damaged} damaged lines ignored (torn by a kill, or edited)", file=sys.stderr)
    examples = feedback_examples(records)
    if export is not None:
        if not examples:
            raise DistillqaError(f"{path}: no question with a right answer to export ({len(records)} records)")
        write_json(Path(export), to_squad(examples))
        print(f"wrote {len(examples)} questions to {export} (SQuAD v1.1)")
        return
    if not records:
        print(f"No feedback in {run_dir} yet: mark answers right or wrong in `distillqa serve {run_dir}`'s web page.")
        return
    table = Table("time (UTC)", "question", "verdict", "answer shown", "correction", "document, page")
    for r in records:
        where = r.document + (f", page {r.page}" if r.page is not None else "")
        cells = (r.time.strftime("%Y-%m-%d %H:%M"), r.question, r.verdict, r.answer, _correction(r), where)
        table.add_row(*(Text(c) for c in cells))  # Text: document words like "[bold]" are not markup
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"{len(records)} records; {len(examples)} training pairs (the latest judgement of each question about a"
        f" passage; {NOT_IN_PASSAGES} gives none). Export them: distillqa feedback {run_dir} --export FILE",
        markup=False,
    )

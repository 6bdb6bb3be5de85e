"""Shared records: page lookup by character offset, and the one answer record."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from distillqa.records import AnswerRecord, page_at


def test_page_at_counts_a_separator_as_the_page_before() -> None:
    pages = [{"number": 3, "start": 0}, {"number": 4, "start": 12}]
    assert [page_at(pages, i) for i in (0, 9, 10, 11, 12, 19)] == [3, 3, 3, 3, 4, 4]
    assert page_at([], 5) is None


def test_answer_record_fields_are_the_documented_shape() -> None:
    record = AnswerRecord(answer="1821", score=0.5, document="a.pdf", page=2, passage="Built in 1821.", start=9, end=13)
    assert record.passage[record.start : record.end] == record.answer
    assert list(record.model_dump()) == ["answer", "score", "document", "page", "passage", "start", "end"]
    with pytest.raises(ValidationError):
        AnswerRecord(answer="x", score=0.1, document=None, page=None, passage="x", start=0)  # no end

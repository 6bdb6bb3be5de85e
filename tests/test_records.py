"""Shared records: page lookup by character offset, and the one answer record."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from distillqa.records import AnswerRecord, ask_result, page_at


def test_page_at_counts_a_separator_as_the_page_before() -> None:
    pages = [{"number": 3, "start": 0}, {"number": 4, "start": 12}]
    assert [page_at(pages, i) for i in (0, 9, 10, 11, 12, 19)] == [3, 3, 3, 3, 4, 4]
    assert page_at([], 5) is None


def test_answer_record_fields_are_the_documented_shape() -> None:
    record = AnswerRecord(answer="1821", score=0.5, confidence=0.4, document="a.pdf", page=2, passage="Built in 1821.", start=9, end=13)
    assert record.passage[record.start : record.end] == record.answer
    assert list(record.model_dump()) == ["answer", "score", "confidence", "document", "page", "passage", "start", "end"]
    with pytest.raises(ValidationError):
        AnswerRecord(answer="x", score=0.1, confidence=0.1, document=None, page=None, passage="x", start=0)  # no end


def test_ask_result_is_found_from_the_threshold_on() -> None:
    answers = [{"confidence": 0.3}, {"confidence": 0.1}]
    assert ask_result(answers, 0.3) == {"found": True, "not_found_below": 0.3, "answers": answers}
    assert ask_result(answers, 0.31)["found"] is False
    assert ask_result([], 0.0)["found"] is False  # nothing to show is never "found"

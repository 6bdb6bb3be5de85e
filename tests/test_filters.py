"""Quality filters: every drop reason, question clean-up, duplicates and near-duplicates."""

from __future__ import annotations

import pytest

from distillqa.config import DatasetConfig
from distillqa.dataset.filters import PairFilter, as_question, contains_answer, copies_passage, is_placeholder

PASSAGE = (
    "Granite is an intrusive igneous rock that cools slowly deep underground. "
    "Basalt forms when lava cools quickly at the surface of the Earth."
)


def reason(question: str, answer: str = "Granite", passage: str = PASSAGE, cfg: DatasetConfig | None = None) -> str | None:
    return PairFilter(cfg or DatasetConfig()).check(question, answer, passage, "doc-1").reason


def test_a_good_pair_is_kept():
    verdict = PairFilter(DatasetConfig()).check("Which rock cools slowly underground?", "Granite", PASSAGE, "doc-1")
    assert verdict.reason is None
    assert verdict.question == "Which rock cools slowly underground?"


@pytest.mark.parametrize(
    "question",
    ["Question 1", "question", "Question 2: Which rock cools slowly?", "What is <answer>?", "What is {answer}?",
     "Which rock ...?", "Which rock is ____?", "Q1: Which rock cools slowly?"],
)
def test_placeholder_questions(question):
    assert reason(question) == "placeholder"


def test_placeholder_answer():
    assert reason("Which rock cools slowly underground?", answer="Answer") == "placeholder"
    assert is_placeholder("Which rock cools slowly underground?", "unknown")
    assert not is_placeholder("Which rock cools slowly underground?", "x < 5")  # answers are source text


@pytest.mark.parametrize(
    ("question", "fixed"),
    [
        ("Which rock cools slowly underground", "Which rock cools slowly underground?"),
        ("does basalt cool quickly.", "does basalt cool quickly?"),
        ("In which layer does basalt cool", "In which layer does basalt cool?"),
        ('"Where does basalt form?"', "Where does basalt form?"),
    ],
)
def test_missing_question_mark_is_added_to_real_questions(question, fixed):
    assert as_question(question) == fixed
    verdict = PairFilter(DatasetConfig()).check(question, "Granite", PASSAGE, "doc-1")
    assert verdict == type(verdict)(fixed, None)


@pytest.mark.parametrize("question", ["Name the rock that cools slowly", "Granite cools slowly underground.", "Explain basalt"])
def test_statements_and_commands_are_not_questions(question):
    assert as_question(question) is None
    assert reason(question) == "not_a_question"


def test_question_length_limits():
    cfg = DatasetConfig(min_question_words=4, max_question_words=8)
    assert reason("Which rock cools?", cfg=cfg) == "question_too_short"
    assert reason("Which rock cools slowly?", cfg=cfg) is None
    assert reason("Which of these igneous rocks cools very slowly deep underground?", cfg=cfg) == "question_too_long"


def test_answer_too_long():
    cfg = DatasetConfig(max_answer_words=3)
    assert reason("Which rock cools slowly?", answer="an intrusive igneous rock", cfg=cfg) == "answer_too_long"
    assert reason("Which rock cools slowly?", answer="intrusive igneous rock", cfg=cfg) is None


def test_question_containing_its_answer():
    assert reason("Is granite the rock that cools slowly?") == "answer_in_question"
    assert contains_answer("Where does the lava cool?", "lava")
    assert not contains_answer("Where does lava-flow cool?", "lava flows")
    assert not contains_answer("Which rocks are igneous?", "rock")  # whole words only


def test_question_copying_the_passage():
    copied = "Why does basalt form when lava cools quickly at the surface of the Earth?"
    assert copies_passage(copied, PASSAGE, 8)
    assert reason(copied) == "copies_passage"
    assert not copies_passage("Where does lava cool quickly to form basalt?", PASSAGE, 8)


def test_exact_duplicates_are_dropped_even_across_documents():
    f = PairFilter(DatasetConfig())
    assert f.check("Which rock cools slowly?", "Granite", PASSAGE, "doc-1").reason is None
    assert f.check("which rock cools  slowly", "Granite", PASSAGE, "doc-2").reason == "duplicate"


def test_near_duplicates_within_a_document():
    f = PairFilter(DatasetConfig())
    assert f.check("Which rock cools slowly deep underground?", "Granite", PASSAGE, "doc-1").reason is None
    assert f.check("Which rock cools so slowly deep underground?", "Granite", PASSAGE, "doc-1").reason == "near_duplicate"
    assert f.check("Underground, which rock cools slowly?", "Granite", PASSAGE, "doc-1").reason == "near_duplicate"
    # The same question about another document is not redundant.
    assert f.check("Which rock cools so slowly deep underground?", "Granite", PASSAGE, "doc-2").reason is None
    # A different question about the same document is kept.
    assert f.check("Where does basalt form?", "at the surface", PASSAGE, "doc-1").reason is None


@pytest.mark.parametrize(("threshold", "expected"), [(92.0, "near_duplicate"), (99.0, None)])
def test_near_duplicate_threshold_is_configurable(threshold, expected):
    f = PairFilter(DatasetConfig(near_duplicate_threshold=threshold))
    assert f.check("Which rock cools slowly deep underground?", "Granite", PASSAGE, "doc-1").reason is None
    # token_set_ratio 97.5: two words differ by one letter each.
    assert f.check("Which rocks cool slowly deep underground?", "Granite", PASSAGE, "doc-1").reason == expected


def test_dropped_questions_are_not_remembered():
    f = PairFilter(DatasetConfig())
    assert f.check("Is granite the rock that cools slowly?", "Granite", PASSAGE, "doc-1").reason == "answer_in_question"
    assert f.check("Is granite the rock that cools slowly?", "an intrusive igneous rock", PASSAGE, "doc-1").reason is None


def test_similar_questions_with_different_answers_are_both_kept():
    """Clozes of one sentence look alike but teach different spans: not near-duplicates."""
    f = PairFilter(DatasetConfig())
    assert f.check("Who built the harbour light in 1854?", "Margaret Hale", "", "d").reason is None
    assert f.check("When did Margaret Hale build the harbour light?", "1854", "", "d").reason is None
    assert f.check("Who was it that built the harbour light in 1854?", "Margaret Hale", "", "d").reason == "near_duplicate"

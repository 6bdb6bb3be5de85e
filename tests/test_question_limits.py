"""The `questions.*` limits reach every rule that makes pairs: answer candidates, cloze questions,
span clozes and the qa prompt, so one setting means the same everywhere."""

from __future__ import annotations

from distillqa.config import QuestionsConfig
from distillqa.questions.candidates import PERSON, extract_candidates
from distillqa.questions.cloze import cloze_question
from distillqa.questions.span_clozes import chunk_pairs, sentence_clozes
from distillqa.teacher.prompts import qa_messages

SENTENCE = "In 1830, Charles Lyell published the first volume of Principles of Geology in London."
SHORT = "Marie Curie discovered polonium there."  # five words


def test_max_answer_words_bounds_candidates_and_span_clozes() -> None:
    one = QuestionsConfig(max_answer_words=1)
    default_answers = [SENTENCE[s:e] for s, e, _ in sentence_clozes(SENTENCE)]
    assert max(len(a.split()) for a in default_answers) > 1
    assert all(len(SENTENCE[s:e].split()) == 1 for s, e, _ in sentence_clozes(SENTENCE, one))
    assert max(len(c.text.split()) for c in extract_candidates(SENTENCE, 10, use_spacy=False)) > 1
    assert all(len(c.text.split()) == 1 for c in extract_candidates(SENTENCE, 10, use_spacy=False, limits=one))


def test_max_question_words_bounds_cloze_questions() -> None:
    start = SENTENCE.index("Charles Lyell")
    question = cloze_question(SENTENCE, start, start + len("Charles Lyell"), PERSON)
    assert question is not None
    n = len(question.split())
    shorter = cloze_question(SENTENCE, start, start + len("Charles Lyell"), PERSON, QuestionsConfig(max_question_words=n - 1))
    assert shorter is None or len(shorter.split()) < n


def test_min_sentence_words_applies_to_candidates_and_span_clozes_alike() -> None:
    chunk = {"doc_id": "d", "start": 0, "text": SHORT}
    five, six = QuestionsConfig(min_sentence_words=5), QuestionsConfig(min_sentence_words=6)
    assert extract_candidates(SHORT, 5, use_spacy=False, limits=five)
    assert chunk_pairs(chunk, set(), five)
    assert extract_candidates(SHORT, 5, use_spacy=False, limits=six) == []
    assert chunk_pairs(chunk, set(), six) == []


def test_the_qa_prompt_asks_for_the_same_answer_length() -> None:
    assert "(1 to 8 words)" in qa_messages("Some passage.", 3)[0]["content"]
    assert "(1 to 5 words)" in qa_messages("Some passage.", 3, max_answer_words=5)[0]["content"]

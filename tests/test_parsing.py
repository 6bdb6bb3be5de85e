"""Tolerant parsing of teacher output and the checks on generated questions."""

from __future__ import annotations

import pytest

from distillqa.questions.candidates import DATE, NUMBER, PERSON, PHRASE
from distillqa.teacher.parsing import ParseError, load_json, parse_pairs, parse_question, question_problem

PAIR = {"question": "Who patented dynamite?", "answer": "Alfred Nobel"}


@pytest.mark.parametrize(
    "text",
    [
        '{"pairs": [{"question": "Who patented dynamite?", "answer": "Alfred Nobel"}]}',
        '```json\n{"pairs": [{"question": "Who patented dynamite?", "answer": "Alfred Nobel"}]}\n```',
        'Sure! Here are the pairs:\n{"pairs": [{"question": "Who patented dynamite?", "answer": "Alfred Nobel"}]} Hope it helps.',
        '[{"question": "Who patented dynamite?", "answer": "Alfred Nobel"}]',  # a bare list
        '{"pairs": [{"question": "Who patented dynamite?", "answer": "Alfred Nobel"',  # cut off: repaired
        "{'pairs': [{'Question': 'Who patented dynamite?', 'Answer': 'Alfred Nobel',}]}",  # quotes, case, comma
        '{"question": "Who patented dynamite?", "answer": "Alfred Nobel"}',  # one object
        '{"qa": [{"q": "Who patented dynamite?", "a": "Alfred Nobel"}]}',  # other key names
    ],
)
def test_parse_pairs_accepts_common_shapes(text: str) -> None:
    assert parse_pairs(text) == [PAIR]


@pytest.mark.parametrize("text", ["", "I cannot help with that.", "{}", '{"pairs": []}', '{"pairs": [{"question": "x"}]}'])
def test_parse_pairs_rejects_output_without_pairs(text: str) -> None:
    with pytest.raises(ParseError):
        parse_pairs(text)


def test_load_json_keeps_the_first_value_before_trailing_prose() -> None:
    assert load_json('Answer: [1, 2] and {"a": 1}') == [1, 2]


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("When did Nobel patent dynamite?", "When did Nobel patent dynamite?"),
        ("Question: When did Nobel patent dynamite?\nAnswer: 1867", "When did Nobel patent dynamite?"),
        ('  "When did Nobel patent dynamite?"  ', "When did Nobel patent dynamite?"),
        ('{"question": "When did Nobel patent dynamite?"}', "When did Nobel patent dynamite?"),
        ('```json\n{"question": "When did Nobel patent dynamite?"}\n```', "When did Nobel patent dynamite?"),
        ('{"question": "When did Nobel patent dynamite?', "When did Nobel patent dynamite?"),
    ],
)
def test_parse_question(text: str, question: str) -> None:
    assert parse_question(text) == question


@pytest.mark.parametrize("text", ["", "   \n  ", '{"answer": "1867"}'])
def test_parse_question_failures(text: str) -> None:
    with pytest.raises(ParseError):
        parse_question(text)


SENTENCE = "In 1867, Alfred Nobel patented dynamite in Sweden after years of work."


@pytest.mark.parametrize(
    ("question", "answer", "kind", "problem"),
    [
        ("When did Alfred Nobel patent dynamite?", "1867", DATE, None),
        ("Who patented dynamite in Sweden?", "Alfred Nobel", PERSON, None),
        ("When did Alfred Nobel patent dynamite", "1867", DATE, "does not end with '?'"),
        ("When? Nobel?", "1867", DATE, "fewer than 3 words"),
        ("What did Alfred Nobel patent in 1867?", "1867", DATE, "contains the answer"),
        ("Did Alfred Nobel patent dynamite?", "1867", DATE, "yes/no question"),
        ("What is <your question here>?", "1867", DATE, "placeholder text"),
        ("When was the Eiffel Tower completed?", "1867", DATE, "copied a prompt example"),
        ("In 1867, Alfred Nobel patented dynamite in Sweden after what?", "years of work", PHRASE, "copies the sentence"),
        ("What is the capital of France today?", "Sweden", PHRASE, "unrelated to the passage"),
        ("What did Alfred Nobel patent?", "1867", DATE, "does not ask for a date"),
        ("What did Alfred Nobel patent in Sweden?", "1867", DATE, "does not ask for a date"),
        ("How many things did Alfred Nobel patent?", "dynamite", PHRASE, "asks for a count, the answer is a phrase"),
        ("What did Nobel patent in Sweden?", "Alfred Nobel", PERSON, "does not ask for a person"),
        ("How many kilometres long is Sweden?", "1867", NUMBER, "not about the answer's context"),
    ],
)
def test_question_problem(question: str, answer: str, kind: str, problem: str | None) -> None:
    forbidden = ["When was the Eiffel Tower completed?"]
    assert question_problem(question, answer, SENTENCE, kind, forbidden) == problem


def test_number_answers_need_a_quantity_question() -> None:
    sentence = "Mid-ocean ridges were explained as divergent boundaries, where two plates move apart."
    assert question_problem("How many plates move apart at divergent boundaries?", "two", sentence, NUMBER) is None
    bad = "How does the idea of plates moving apart relate to divergent boundaries?"
    assert question_problem(bad, "two", sentence, NUMBER) == "does not ask for a number"

"""Span clozes: a question for every answer-like span of every sentence, no teacher involved."""

from __future__ import annotations

from distillqa.config import QuestionsConfig
from distillqa.questions.span_clozes import ROUTE, chunk_pairs, identity_cloze, sentence_clozes

SENTENCE = "In 1830, Charles Lyell published the first volume of Principles of Geology in London."


def test_every_span_of_a_sentence_gets_a_question_that_hides_it():
    clozes = list(sentence_clozes(SENTENCE))
    answers = [SENTENCE[s:e] for s, e, _ in clozes]
    assert {"1830", "Charles Lyell", "London"} <= set(answers)
    assert len(answers) == len(set(answers)) >= 5  # several answers per sentence: the point of it
    for start, end, question in clozes:
        answer = SENTENCE[start:end]
        assert question.endswith("?") and question[0].isupper()
        assert answer.lower() not in question.lower(), (answer, question)
    by_answer = {SENTENCE[s:e]: q for s, e, q in clozes}
    assert by_answer["1830"].lower().startswith(("what year", "when"))
    assert by_answer["Charles Lyell"].lower().startswith("who")


def test_spans_do_not_overlap_and_stay_short():
    clozes = list(sentence_clozes(SENTENCE))
    spans = sorted((s, e) for s, e, _ in clozes)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))
    assert all(len(SENTENCE[s:e].split()) <= 8 for s, e in spans)


def test_an_answer_twice_in_its_sentence_is_not_asked():
    sentence = "The river feeds the lake, and the lake feeds the river delta in spring."
    answers = {sentence[s:e].lower() for s, e, _ in sentence_clozes(sentence)}
    assert "river" not in answers and "lake" not in answers and "spring" in answers


def test_identity_cloze_keeps_the_sentence_around_the_wh_word():
    s = SENTENCE.index("London")
    assert identity_cloze(SENTENCE, s, s + len("London"), "phrase") == (
        "In 1830, Charles Lyell published the first volume of Principles of Geology in what?"
    )


def test_chunk_pairs_are_verbatim_and_each_sentence_is_used_once():
    text = (
        "Basalt forms when lava cools quickly at the surface. Granite cools slowly deep underground "
        "over thousands of years. A heading\n\nSandstone is made mostly of quartz grains and cement."
    )
    first = {"doc_id": "d", "start": 0, "text": text[:107]}  # ends inside the second sentence
    second = {"doc_id": "d", "start": 53, "text": text[53:]}  # overlaps the first chunk
    done: set[tuple[str, int]] = set()
    pairs_1, pairs_2 = chunk_pairs(first, done), chunk_pairs(second, done)
    for chunk, pairs in ((first, pairs_1), (second, pairs_2)):
        for p in pairs:
            assert chunk["text"][p["answer_start"] : p["answer_start"] + len(p["answer"])] == p["answer"]
            assert p["route"] == ROUTE
    absolute = [
        (chunk["start"] + p["answer_start"], len(p["answer"])) for chunk, pairs in ((first, pairs_1), (second, pairs_2)) for p in pairs
    ]
    assert len(absolute) == len(set(absolute))  # no span asked twice through the overlap
    answers_1 = {p["answer"] for p in pairs_1}
    assert "Basalt" in answers_1 and "Granite" not in answers_1  # the cut sentence waits for the next chunk
    answers_2 = {p["answer"] for p in pairs_2}
    assert {"Granite", "quartz grains and cement"} <= answers_2 and "heading" not in answers_2


def test_span_answer_modes():
    sentence = "Pharmacists advise patients on the proper use of prescription drugs."

    def answers(mode: str) -> list[str]:
        return [sentence[s:e] for s, e, _ in sentence_clozes(sentence, QuestionsConfig(span_answers=mode))]

    words, phrases, every = answers("words"), answers("phrases"), answers("all")
    assert "proper use of prescription drugs" in phrases and "advise" not in phrases  # noun phrases only
    assert "advise" in words and all(len(a.split()) <= 2 for a in words)  # every content word, no overlap
    # all: the phrases, the parts they join and the content words left, overlapping
    assert {"proper use of prescription drugs", "proper use", "prescription drugs", "advise", "drugs"} <= set(every)
    assert len(every) == len(set(every))


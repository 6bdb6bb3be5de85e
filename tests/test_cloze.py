"""Rule-based cloze-to-question translation on the common sentence patterns."""

from __future__ import annotations

import re

import pytest

from distillqa.questions.candidates import DATE, MONEY, NUMBER, PERCENT, PERSON, PHRASE, PLACE, TERM
from distillqa.questions.cloze import cloze_question, wh_phrase
from distillqa.questions.span_clozes import sentence_clozes, sentence_spans_to_ask


def ask(sentence: str, answer: str, kind: str) -> str | None:
    start = sentence.index(answer)
    return cloze_question(sentence, start, start + len(answer), kind)


@pytest.mark.parametrize(
    ("sentence", "answer", "kind", "question"),
    [
        # subject answers: the wh-word takes the answer's place, a fronted adverbial moves to the end
        ("In 1867, Alfred Nobel patented dynamite.", "Alfred Nobel", PERSON, "Who patented dynamite in 1867?"),
        # answers in a fronted time adverbial and after "in": do-support
        ("In 1867, Alfred Nobel patented dynamite.", "1867", DATE, "When did Alfred Nobel patent dynamite?"),
        ("Alfred Nobel patented dynamite in 1867.", "1867", DATE, "When did Alfred Nobel patent dynamite?"),
        ("In 1867, Alfred Nobel patented dynamite.", "dynamite", PHRASE, "What did Alfred Nobel patent in 1867?"),
        # auxiliary inversion
        ("The fault was formed in 1906 by a large earthquake.", "1906", DATE, "When was the fault formed by a large earthquake?"),
        ("The treaty was signed in Paris after the war.", "Paris", PLACE, "Where was the treaty signed after the war?"),
        ("The company earned $5 million in 2010.", "$5 million", MONEY, "How much did the company earn in 2010?"),
        # counts take their noun along; "there are" becomes "are there"
        ("There are three major types of rock: igneous, sedimentary, and metamorphic.", "three", NUMBER,
         "How many major types of rock are there?"),
        ("There are three major types of rock: igneous, sedimentary, and metamorphic.",
         "igneous, sedimentary, and metamorphic", PHRASE, "What are the three major types of rock?"),
        # in place when fronting would be ungrammatical
        ("About 40% of the land is covered by forest.", "40%", PERCENT, "About what percentage of the land is covered by forest?"),
        ("The boundary lies at a depth of 660 kilometers below the surface.", "660 kilometers", NUMBER,
         "The boundary lies at a depth of how many kilometers below the surface?"),
        ("Plate tectonics provided a mechanism for Alfred Wegener's theory of continental drift.", "Alfred Wegener",
         PERSON, "Plate tectonics provided a mechanism for whose theory of continental drift?"),
        # the clause holding the answer is kept, the rest of a long sentence dropped
        ("Rocks melt deep underground; the molten rock that rises is called magma by geologists.", "magma", TERM,
         "The molten rock that rises is called what by geologists?"),
        ("Plates move apart at ridges, while the oceanic lithosphere is the rigid upper layer of the mantle.",
         "oceanic lithosphere", PHRASE, "What is the rigid upper layer of the mantle?"),
    ],
)
def test_patterns(sentence: str, answer: str, kind: str, question: str) -> None:
    assert ask(sentence, answer, kind) == question


def test_questions_never_contain_the_answer() -> None:
    sentence = "The rock cycle links the rock types, and the rock cycle never stops."
    question = ask(sentence, "rock types", PHRASE)
    assert question is not None and not re.search(r"(?<!\w)rock types(?!\w)", question, re.IGNORECASE)
    start = sentence.rindex("rock cycle")
    assert cloze_question(sentence, start, start + len("rock cycle"), PHRASE) is None  # it would leak


SWEEP = [
    "In 1867, Alfred Nobel patented dynamite in Sweden after years of experiments.",
    "The Danube flows through ten countries before it reaches the Black Sea.",
    "Marie Curie discovered polonium in 1898 together with her husband Pierre.",
    "About 40% of the basin lies in Romania, where the river forms a wide delta.",
    "The rock cycle links igneous rocks, sedimentary rocks and metamorphic rocks.",
    "Geologists date the oldest minerals on Earth to about 4.4 billion years ago.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Pharmacists check prescriptions and advise patients on the safe use of medicines.",
]


@pytest.mark.parametrize("sentence", SWEEP)
def test_no_span_cloze_question_contains_its_answer(sentence: str) -> None:
    """Every question made for every askable span of a sentence leaves its answer out."""
    made = 0
    for start, end, kind in sentence_spans_to_ask(sentence):
        question = cloze_question(sentence, start, end, kind)
        answer = sentence[start:end]
        if question is not None:
            made += 1
            assert not re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", question, re.IGNORECASE), (answer, question)
    for start, end, question in sentence_clozes(sentence):
        answer = sentence[start:end]
        assert not re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", question, re.IGNORECASE), (answer, question)
    assert made > 0  # the sweep really asks something of each sentence


def test_no_question_when_no_rule_fits() -> None:
    assert ask("The Earth's crust is thin under the oceans.", "Earth", "name") is None  # non-person possessor
    assert ask("Granite.", "Granite", TERM) is None  # nothing left to ask with


def test_no_fronting_out_of_a_relative_clause() -> None:
    sentence = "The plates ride on the upper mantle, which is called the asthenosphere."
    assert ask(sentence, "asthenosphere", TERM) == "The plates ride on the upper mantle, which is called what?"


def test_long_sentences_are_cut_and_end_with_a_question_mark() -> None:
    sentence = (
        "Seafloor spreading was confirmed in the 1960s, the ridges being mapped by ships that crossed the "
        "Atlantic many times over many years, collecting soundings, samples, magnetic records and photographs."
    )
    question = ask(sentence, "Seafloor spreading", PHRASE)
    assert question is not None and question.endswith("?") and len(question.split()) <= 30
    assert question.startswith("What was confirmed in the 1960s")


def test_wh_phrase_by_kind() -> None:
    assert wh_phrase(PERSON, "Nobel", " patented") == "who"
    assert wh_phrase(DATE, "1867", "") == "what year"
    assert wh_phrase(DATE, "the 1960s", "") == "what decade"
    assert wh_phrase(NUMBER, "660 kilometers", "") == "how many kilometers"
    assert wh_phrase(NUMBER, "three", " types") == "how many"
    assert wh_phrase(PLACE, "Paris", "") == "where"
    assert wh_phrase(TERM, "magma", "") == "what"

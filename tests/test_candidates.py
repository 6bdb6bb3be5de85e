"""Answer candidates: verbatim spans of the chunk, typed, deduplicated and spread over sentences."""

from __future__ import annotations

from types import SimpleNamespace

from distillqa.questions.candidates import (
    DATE,
    MONEY,
    NUMBER,
    PERCENT,
    PERSON,
    PHRASE,
    PLACE,
    TERM,
    extract_candidates,
    heuristic_spans,
    sentence_spans,
    spacy_spans,
)

TEXT = (
    "In 1867, Alfred Nobel patented dynamite in Sweden. The company earned $5 million in its first year. "
    "About 40% of the rock is quartz. The boundary lies at a depth of 660 kilometers below the surface. "
    "This coupling between the plates and the mantle is called plate tectonics. "
    "There are three major types of rock: igneous, sedimentary, and metamorphic. "
    "Dr. Smith visited the old mine near Lake Baikal. This last sentence is cut off by the chunk"
)


def spans(sentence: str) -> dict[str, str]:
    return {sentence[s:e]: kind for s, e, kind in heuristic_spans(sentence)}


def test_dates_numbers_money_and_percentages_are_typed() -> None:
    assert spans("In 1867, Alfred Nobel patented dynamite.")["1867"] == DATE
    assert spans("The rocks formed in the 1960s and on March 5, 1901.")["the 1960s"] == DATE
    assert spans("The rocks formed in the 1960s and on March 5, 1901.")["March 5, 1901"] == DATE
    assert spans("The company earned $5 million last year.")["$5 million"] == MONEY
    assert spans("About 40% of the rock is quartz.")["40%"] == PERCENT
    assert spans("It lies at a depth of 660 kilometers below us.")["660 kilometers"] == NUMBER
    assert spans("There are three major types of rock here.")["three"] == NUMBER


def test_capitalised_names_skip_sentence_initial_words_and_possessives() -> None:
    found = spans("The Alps rose when Africa pushed north, as Alfred Wegener's theory says.")
    assert "Alps" in found and "The Alps" not in found
    assert found["Alfred Wegener"] == PERSON  # possessive "'s" stays outside the span
    assert "The" not in found
    assert spans("Dr. Smith visited the old mine near Lake Baikal.")["Lake Baikal"] == PLACE


def test_definitions_and_noun_phrases() -> None:
    found = spans("This coupling between the plates and the mantle is called plate tectonics.")
    assert found["plate tectonics"] == TERM
    found = spans("The rock cycle is an important concept in geology.")
    assert found["rock cycle"] == PHRASE
    assert "important concept" not in found  # vague adjective dropped, "concept" alone is too short


def test_sentence_spans_respect_abbreviations() -> None:
    text = "Dr. Smith visited Lake Baikal. It is deep! Is it old? Yes."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Dr. Smith visited Lake Baikal.", "It is deep!", "Is it old?", "Yes."
    ]


def test_candidates_are_verbatim_unique_and_bounded() -> None:
    cands = extract_candidates(TEXT, limit=12, use_spacy=False)
    assert 0 < len(cands) <= 12
    for c in cands:
        assert TEXT[c.start:c.end] == c.text
        assert c.sentence[c.start_in_sentence:c.start_in_sentence + len(c.text)] == c.text
        assert len(c.text.split()) <= 8
    assert len({c.text.lower() for c in cands}) == len(cands)
    assert not any("chunk" in c.sentence for c in cands)  # the unfinished last sentence is skipped
    assert [c.start for c in cands] == sorted(c.start for c in cands)


def test_candidates_spread_over_sentences_first() -> None:
    cands = extract_candidates(TEXT, limit=6, use_spacy=False)
    assert len({c.sentence_start for c in cands}) == 6  # one per sentence before a second one anywhere
    assert any(c.text == "1867" for c in cands)  # a date outranks the names in its sentence


def test_ambiguous_answers_are_skipped() -> None:
    text = "The rock is older than the rock cycle itself, and the rock is hard. Granite is common here too."
    assert "rock" not in {c.text for c in extract_candidates(text, limit=10, use_spacy=False)}


def test_spacy_entities_and_noun_chunks_are_mapped() -> None:
    ent = SimpleNamespace(label_="PERSON", start_char=9, end_char=21)
    np = SimpleNamespace(start_char=31, end_char=39)
    doc = SimpleNamespace(ents=[ent, SimpleNamespace(label_="ORDINAL", start_char=0, end_char=2)], noun_chunks=[np])
    assert list(spacy_spans(doc)) == [(9, 21, PERSON), (31, 39, PHRASE)]

    sentence = "In 1867, Alfred Nobel patented dynamite in Sweden."
    nlp_doc = SimpleNamespace(
        ents=[SimpleNamespace(label_="PERSON", start_char=9, end_char=21)], noun_chunks=[]
    )
    cands = extract_candidates(sentence, limit=5, nlp=lambda s: nlp_doc)
    assert [(c.text, c.kind) for c in cands] == [("Alfred Nobel", PERSON)]

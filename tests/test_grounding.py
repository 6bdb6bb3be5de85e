"""Grounding teacher answers as exact source spans: exact, normalized and fuzzy matches, and failures."""

from __future__ import annotations

import unicodedata

import pytest

from distillqa.dataset.grounding import GroundedSpan, ground, ground_with_reason

TEXT = "Geology is the study of the Earth. It describes rocks, minerals and the processes that shape them."


def grounded(answer: str, text: str, **kwargs) -> tuple[str | None, str]:
    """The source characters an answer grounds to (None if it does not) and the match/reason."""
    span, reason = ground_with_reason(answer, text, **kwargs)
    return (text[span.start : span.end] if span else None), reason


def test_exact_match_returns_source_offsets():
    span = ground("the study of the Earth", TEXT)
    assert span == GroundedSpan(11, 33, "exact")
    assert TEXT[span.start : span.end] == "the study of the Earth"


@pytest.mark.parametrize(
    "answer",
    ['"the study of the Earth."', "the study of the Earth.", "**the study of the Earth**", "“the study of the Earth”"],
)
def test_surrounding_quotes_and_trailing_period_are_stripped(answer):
    assert grounded(answer, TEXT) == ("the study of the Earth", "exact")


@pytest.mark.parametrize("answer", ["", "   ", "...", '""', "?!"])
def test_answers_empty_after_cleaning_are_ungroundable(answer):
    assert grounded(answer, TEXT) == (None, "empty")


def test_case_difference_returns_the_source_casing():
    assert grounded("THE STUDY OF THE EARTH", TEXT) == ("the study of the Earth", "normalized")


def test_curly_quotes_in_source_match_straight_quotes():
    text = "He said “don’t panic” and left."
    assert grounded("don't panic", text) == ("don’t panic", "normalized")


def test_accents_match_across_nfc_and_nfd_and_keep_the_combining_mark():
    nfd_text = unicodedata.normalize("NFD", "Le café crème est servi.")
    value, match = grounded("café crème", nfd_text)  # answer is NFC
    assert match == "normalized"
    assert value == unicodedata.normalize("NFD", "café crème")  # ends after the combining accent
    nfc_text = "Le café crème est servi."
    assert grounded(unicodedata.normalize("NFD", "café"), nfc_text) == ("café", "normalized")
    # A span ending in a decomposed accent includes the combining mark.
    assert grounded("café", nfd_text) == (unicodedata.normalize("NFD", "café"), "normalized")


def test_accents_and_case_are_compared_insensitively():
    assert grounded("ECOLE NORMALE", "Elle a étudié à l’École normale supérieure.") == ("École normale", "normalized")


def test_non_breaking_space_in_source():
    assert grounded("New York City", "She moved to New\u00a0York City in 1990.") == ("New\u00a0York City", "normalized")


def test_ligature_in_source():
    assert grounded("financial crisis", "The ﬁnancial crisis began in 2008.") == ("ﬁnancial crisis", "normalized")


def test_dashes_are_interchangeable():
    assert grounded("1973–74", "During the 1973-74 oil crisis prices rose.") == ("1973-74", "normalized")


@pytest.mark.parametrize("source", ["geo-\nlogy", "geo- logy", "geo-logy"])
def test_hyphenation_across_a_removed_line_break(source):
    text = f"The science of {source} is old."
    assert grounded("geology", text) == (source, "normalized")


def test_repeated_span_nearest_to_hint():
    text = "Paris is large. " + "Filler words here. " * 20 + "Paris again."
    second = text.rindex("Paris")
    assert ground("Paris", text, hint=len(text)).start == second
    assert ground("Paris", text, hint=0).start == 0


def test_repeated_span_prefers_the_occurrence_near_the_question_words():
    text = (
        "Paris hosted the 1900 World Fair. "
        + "Unrelated filler sentence about weather. " * 10
        + "The capital of France is Paris."
    )
    span = ground("Paris", text, hint=0, question="What is the capital of France?")
    assert span.start == text.rindex("Paris")
    span = ground("Paris", text, hint=len(text), question="Which city hosted the 1900 World Fair?")
    assert span.start == 0


def test_fuzzy_hit_returns_the_exact_source_words():
    text = "Dinosaurs vanished at the end of the Late Cretaceous period, about 66 million years ago."
    value, match = grounded("the late Cretacious period", text)
    assert match == "fuzzy"
    assert value == "the Late Cretaceous period"


def test_fuzzy_snaps_to_whole_words():
    text = "The Himalayas formed when India collided with Asia."
    value, match = grounded("India colided", text)
    assert (value, match) == ("India collided", "fuzzy")


def test_paraphrase_below_threshold_is_rejected():
    text = "Dinosaurs vanished at the end of the Late Cretaceous period, about 66 million years ago."
    assert grounded("the final part of the Cretaceous era", text) == (None, "below_threshold")


def test_threshold_is_respected():
    text = "The Himalayas formed when India collided with Asia."
    assert grounded("India colided", text, fuzzy_threshold=99.0) == (None, "below_threshold")


def test_unrelated_answer_is_not_found():
    assert grounded("banana smoothie recipe", TEXT) == (None, "not_found")


def test_no_match_inside_a_longer_word():
    assert ground("cat", "Use concatenate to join strings.") is None


def test_normalized_match_does_not_join_two_sentences():
    assert ground("Earth science", "It orbits the Earth. Science explains why.") is None


def test_answer_longer_than_the_text():
    assert grounded("a much longer answer than the text", "short text") == (None, "longer_than_text")


def test_fuzzy_can_be_turned_off():
    text = "The Himalayas formed when India collided with Asia."
    assert grounded("India colided", text, allow_fuzzy=False) == (None, "not_found")


def test_every_span_is_verbatim_source_text():
    text = "Le ﬁnancier “Jean-Luc” a payé 1 000\u00a0€ en 2008 – trop cher."
    for answer in ["financier", '"Jean Luc"', "paye 1 000", "2008 - trop cher.", "JEAN-LUC A PAYÉ"]:
        span = ground(answer, text)
        assert span is not None, answer
        assert 0 <= span.start < span.end <= len(text)
        assert not text[span.start].isspace() and not text[span.end - 1].isspace()

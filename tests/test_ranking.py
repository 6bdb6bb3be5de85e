"""The answer ranker: answer-type rules and question-sentence selection over a reader's n-best."""

import numpy as np
import pytest

from distillqa.config import AnswerConfig
from distillqa.student.features import Answer
from distillqa.student.ranking import (
    CachedEncoder,
    CROSSES_SENTENCE_FACTOR,
    DATE,
    NAME,
    NUMBER,
    SHARED_WORDS_FACTOR,
    AnswerRanker,
    asked_type,
    has_type,
    rule_factor,
)

CONTEXT = "The lighthouse was finished in 1871. Margaret Hale designed its burner. It burns oil."


def span(text: str, score: float, context: str = CONTEXT) -> Answer:
    start = context.index(text)
    return Answer(text, score, start, start + len(text))


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("When was the lighthouse finished?", DATE),
        ("In what year did it open?", DATE),
        ("How many keepers were there?", NUMBER),
        ("What percentage of ships passed?", NUMBER),
        ("Who designed the burner?", NAME),
        ("Where is the light?", NAME),
        ("What does it burn?", None),
    ],
)
def test_asked_type(question, kind):
    assert asked_type(question) == kind


def test_has_type():
    assert has_type("1871", DATE) and has_type("the 19th century", DATE) and has_type("March", DATE)
    assert not has_type("oil", DATE)
    assert has_type("three", NUMBER) and has_type("40%", NUMBER) and not has_type("oil", NUMBER)
    assert has_type("Margaret Hale", NAME) and not has_type("its burner", NAME)


def test_rule_factor_orders_candidates():
    question = "When was the lighthouse finished?"
    assert rule_factor(question, "1871") == 1.0
    assert rule_factor(question, "Margaret Hale") < 1.0  # not a date
    assert rule_factor(question, "lighthouse") < rule_factor(question, "Margaret Hale")  # the question's word, lone lower-case
    assert rule_factor("What does it burn?", "oil") == 0.5  # a lone lower-case word: mild
    assert rule_factor("What does it burn?", "kerosene oil") == 1.0
    # repeating some of the question's words: mild (people's answers do for ~1 question in 5)
    assert rule_factor("Who designed the burner?", "burner maker Margaret Hale") == SHARED_WORDS_FACTOR


def test_spans_over_a_sentence_end_are_discounted():
    question = "Who designed its burner?"
    spans = [span("1871. Margaret Hale", 0.6), span("Margaret Hale", 0.4)]
    ranked = AnswerRanker(AnswerConfig(sentence_sharpness=0, reader_weight=1)).rank(question, [CONTEXT], [spans])
    assert [r.answer.text for r in ranked] == ["Margaret Hale", "1871. Margaret Hale"]
    assert ranked[1].score == pytest.approx(0.6 * CROSSES_SENTENCE_FACTOR)


def test_rules_pick_the_answer_of_the_asked_type():
    ranker = AnswerRanker(AnswerConfig(sentence_sharpness=0))
    spans = [span("burner", 0.6), span("1871", 0.3), span("Margaret Hale", 0.1)]
    ranked = ranker.rank("When was the lighthouse finished?", [CONTEXT], [spans])
    assert ranked[0].answer.text == "1871"
    assert [r.context for r in ranked] == [0, 0, 0]
    assert all(0 <= r.score <= 1 for r in ranked)
    assert sorted((r.score for r in ranked), reverse=True) == [r.score for r in ranked]
    ranked = AnswerRanker(AnswerConfig(type_rules=False, sentence_sharpness=0)).rank("When?", [CONTEXT], [spans])
    assert ranked[0].answer.text == "burner"  # without rules: the reader's order



def test_reader_weight_sets_how_much_the_reader_counts():
    question = "What does it burn?"  # only the lone lower-case rule (x0.5) applies, to "oil"
    spans = [span("oil", 0.9), span("Margaret Hale", 0.1)]
    weighted = AnswerRanker(AnswerConfig(sentence_sharpness=0, reader_weight=1.0)).rank(question, [CONTEXT], [spans])
    halved = AnswerRanker(AnswerConfig(sentence_sharpness=0, reader_weight=0.5)).rank(question, [CONTEXT], [spans])
    flat = AnswerRanker(AnswerConfig(sentence_sharpness=0, reader_weight=0.0)).rank(question, [CONTEXT], [spans])
    assert [r.answer.text for r in weighted] == ["oil", "Margaret Hale"] and weighted[0].score == pytest.approx(0.45)
    assert halved[0].score == pytest.approx(0.9**0.5 * 0.5) and halved[1].score == pytest.approx(0.1**0.5)
    assert flat[0].answer.text == "Margaret Hale" and flat[0].score == 1.0  # the rules alone

def fake_encoder(favourite: str):
    """Embeds the question as [1, 0] and each sentence as [1, 0] if it contains `favourite`, else [0, 1]."""

    def encode(texts: list[str]) -> np.ndarray:
        rows = [[1.0, 0.0]] + [[1.0, 0.0] if favourite in t else [0.0, 1.0] for t in texts[1:]]
        return np.array(rows, dtype=np.float32)

    return encode


def test_sentence_selection_prefers_the_question_sentence():
    spans = [span("1871", 0.7), span("Margaret Hale", 0.3)]
    question = "What did she make?"  # no type asked: only the sentence decides
    ranker = AnswerRanker(AnswerConfig(sentence_sharpness=50), fake_encoder("designed"))
    assert ranker.rank(question, [CONTEXT], [spans])[0].answer.text == "Margaret Hale"
    off = AnswerRanker(AnswerConfig(sentence_sharpness=0), fake_encoder("designed"))
    assert off.encode is None and off.rank(question, [CONTEXT], [spans])[0].answer.text == "1871"


def test_similarities_compare_across_contexts_and_weights_apply():
    other = "Tom Quill kept the light for forty years."
    spans = [[span("1871", 0.9)], [span("Tom Quill", 0.5, other)]]
    ranker = AnswerRanker(AnswerConfig(type_rules=False, sentence_sharpness=50), fake_encoder("Quill"))
    ranked = ranker.rank("Who kept it?", [CONTEXT, other], spans)
    assert (ranked[0].context, ranked[0].answer.text) == (1, "Tom Quill")
    plain = AnswerRanker(AnswerConfig(type_rules=False, sentence_sharpness=0))
    assert plain.rank("Who?", [CONTEXT, other], spans, weights=[0.1, 1.0])[0].context == 1
    assert plain.rank("Who?", [CONTEXT, other], [[], []]) == []


def test_cached_encoder_embeds_each_text_once_and_stays_bounded():
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)

    cached = CachedEncoder(encode, size=3)
    first = cached(["a", "bb", "a"])
    assert calls == [["a", "bb"]]  # deduplicated, one call
    assert np.array_equal(first, encode(["a", "bb", "a"]))
    calls.clear()
    assert np.array_equal(cached(["bb", "ccc"]), encode(["bb", "ccc"]))
    assert calls[0] == ["ccc"]
    cached(["dddd"])  # the least recently used text ("a") goes
    calls.clear()
    cached(["a", "dddd"])
    assert calls == [["a"]]

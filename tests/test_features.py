"""Windows, labels and span search shared by training and the reader (distillqa.student.features)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from transformers import AutoTokenizer

from distillqa.dataset.squad import squad_examples
from distillqa.errors import DistillqaError
from distillqa.models import bundled_encoder
from distillqa.student.features import (
    MAX_QUESTION_TOKENS,
    check_tokenizer,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
)

FILLER = "Rocks form slowly over many years in layers of sand and mud. "


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(bundled_encoder())


def example(question: str, context: str, answer: str, occurrence: int = 0) -> dict:
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(answer, start + 1)
    return {"id": question, "question": question, "context": context, "answers": [{"text": answer, "answer_start": start}]}


def labelled_text(feature: dict, context: str, tokenizer, offsets) -> tuple[str, str]:
    """The labelled span as context characters and as decoded tokens."""
    s, e = feature["start_positions"], feature["end_positions"]
    return context[offsets[s][0] : offsets[e][1]], tokenizer.decode(feature["input_ids"][s : e + 1])


def test_labels_decode_back_to_the_answer(tokenizer):
    examples = [
        example("Who founded the society?", "The Geological Society was founded by William Smith in 1807.", "William Smith"),
        example("When?", "It happened in 1807. Later, in 1815, the map was printed.", "1815"),
        example("What is it called?", "Its name is Sedimentary-Rock Hall, near the river.", "Sedimentary-Rock Hall"),
    ]
    features = prepare_train_features(examples, tokenizer)
    assert len(features) == 3
    # unpadded: the collator pads each batch to its longest window, not every window to 384
    assert all(tokenizer.pad_token_id not in f["input_ids"] and len(f["input_ids"]) < 40 for f in features)
    eval_features = prepare_eval_features([e["question"] for e in examples], [e["context"] for e in examples], tokenizer)
    for ex, feat, ev in zip(examples, features, eval_features):
        assert feat["start_positions"] > 0 and feat["end_positions"] >= feat["start_positions"]
        text, decoded = labelled_text(feat, ex["context"], tokenizer, ev["offset_mapping"])
        assert text == ex["answers"][0]["text"]
        assert decoded.replace(" - ", "-") == text.lower()


def test_long_context_windows_without_the_answer_point_to_cls(tokenizer):
    context = FILLER * 60 + "The oldest rock is the Acasta Gneiss. " + FILLER * 60
    ex = example("What is the oldest rock?", context, "Acasta Gneiss")
    features = prepare_train_features([ex], tokenizer, max_length=128, doc_stride=32)
    eval_features = prepare_eval_features([ex["question"]], [context], tokenizer, max_length=128, doc_stride=32)
    assert len(features) > 5
    assert all(len(f["input_ids"]) <= 128 for f in features)
    labelled = [i for i, f in enumerate(features) if f["start_positions"] != 0]
    assert labelled, "some window must contain the answer"
    for i, f in enumerate(features):
        if i in labelled:
            assert labelled_text(f, context, tokenizer, eval_features[i]["offset_mapping"])[0] == "Acasta Gneiss"
        else:
            assert f["start_positions"] == f["end_positions"] == 0
            assert f["input_ids"][0] == tokenizer.cls_token_id


def test_answer_cut_by_a_window_edge_is_labelled_cls_there(tokenizer):
    # a 40-word answer never fits a 48-token window entirely; every window must say "not here"
    answer = " ".join(["granite"] * 40)
    context = FILLER * 3 + answer + ". " + FILLER * 3
    features = prepare_train_features([example("Which rock?", context, answer)], tokenizer, max_length=48, doc_stride=8)
    assert len(features) > 2
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in features)


def test_eval_offsets_mask_question_and_special_tokens(tokenizer):
    question, context = "What forms slowly?", "Rocks form slowly."
    (feature,) = prepare_eval_features([question], [context], tokenizer)
    offsets, type_ids = feature["offset_mapping"], feature["token_type_ids"]
    assert feature["example_index"] == 0
    for offset, type_id, token in zip(offsets, type_ids, feature["input_ids"]):
        if offset is None:
            assert type_id == 0 or token == tokenizer.sep_token_id  # question, CLS or SEP
        else:
            assert type_id == 1 and token not in (tokenizer.cls_token_id, tokenizer.sep_token_id)
    kept = [o for o in offsets if o is not None]
    assert context[kept[0][0] : kept[-1][1]] == context


def test_leading_whitespace_of_questions_is_stripped(tokenizer):
    a = prepare_eval_features(["   \n What forms?"], ["Rocks form."], tokenizer)
    b = prepare_eval_features(["What forms?"], ["Rocks form."], tokenizer)
    assert a[0]["input_ids"] == b[0]["input_ids"]


@pytest.mark.parametrize("max_length,doc_stride", [(384, 128), (64, 128), (96, 64)])
def test_question_longer_than_the_window_is_truncated_not_fatal(tokenizer, max_length, doc_stride):
    question = "Which layer " + "of the old red sandstone " * 200 + "is oldest?"
    context = FILLER * 20 + "The lowest layer is oldest."
    features = prepare_eval_features([question], [context], tokenizer, max_length, doc_stride)
    train = prepare_train_features([example(question, context, "lowest layer")], tokenizer, max_length, doc_stride)
    assert len(features) == len(train) >= 1
    for f in features:
        assert len(f["input_ids"]) <= max_length
        question_tokens = f["token_type_ids"].count(0) - 2  # minus CLS and the first SEP
        assert question_tokens <= MAX_QUESTION_TOKENS
        assert any(o is not None for o in f["offset_mapping"])  # room for context is left
    assert any(f["start_positions"] != 0 for f in train)


def test_left_padding_tokenizer_puts_the_question_second(tokenizer):
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    ex = example("Who founded it?", "It was founded by William Smith in 1807.", "William Smith")
    (feat,) = prepare_train_features([ex], left)
    (ev,) = prepare_eval_features([ex["question"]], [ex["context"]], left)
    assert feat["input_ids"][1 : 1 + 3] == left(ex["context"], add_special_tokens=False)["input_ids"][:3]
    assert labelled_text(feat, ex["context"], left, ev["offset_mapping"])[0] == "William Smith"
    context_types = {t for o, t in zip(ev["offset_mapping"], ev["token_type_ids"]) if o is not None}
    assert context_types == {0}


def test_no_examples_no_features(tokenizer):
    assert prepare_train_features([], tokenizer) == [] and prepare_eval_features([], [], tokenizer) == []


def test_example_without_answers_is_labelled_cls(tokenizer):
    (feat,) = prepare_train_features([{"id": "x", "question": "Why?", "context": "Because.", "answers": []}], tokenizer)
    assert feat["start_positions"] == feat["end_positions"] == 0


def test_squad_examples_flattens_every_question():
    data = {"data": [{"title": "t", "paragraphs": [
        {"context": "c1", "qas": [{"id": "a", "question": "q1", "answers": [{"text": "c", "answer_start": 0}]}]},
        {"context": "c2", "qas": [{"id": "b", "question": "q2", "answers": []}, {"id": "c", "question": "q3", "answers": []}]},
    ]}]}
    flat = squad_examples(data)
    assert [(e["id"], e["context"]) for e in flat] == [("a", "c1"), ("b", "c2"), ("c", "c2")]
    assert flat[0]["answers"] == [{"text": "c", "answer_start": 0}]


# -- postprocessing with hand-made windows and logits ------------------------------------------

CONTEXT = "alpha beta gamma delta"  # words at 0-5, 6-10, 11-16, 17-22
WORDS = [(0, 5), (6, 10), (11, 16), (17, 22)]


def window(offsets: list, example_index: int = 0) -> dict:
    return {"example_index": example_index, "offset_mapping": offsets}


def logits(n: int, high: dict[int, float]) -> np.ndarray:
    out = np.zeros(n)
    for i, v in high.items():
        out[i] = v
    return out


def test_postprocess_picks_the_best_span_and_masks_question_tokens():
    # token 0 = CLS, 1 = a question token, 2-5 = context words, 6 = SEP
    offsets = [None, None, *WORDS, None]
    start = logits(7, {0: 50, 1: 40, 3: 5, 4: 3})
    end = logits(7, {0: 50, 1: 40, 4: 6, 3: 1})
    (answers,) = postprocess_predictions([CONTEXT], [window(offsets)], [start], [end], top_k=3)
    assert answers[0].text == "beta gamma" and (answers[0].start, answers[0].end) == (6, 16)
    assert [a.text for a in answers] == [CONTEXT[a.start : a.end] for a in answers]
    assert answers[0].score > answers[1].score >= answers[2].score
    assert 0 < sum(a.score for a in answers) <= 1 + 1e-9


def test_postprocess_respects_max_answer_length_and_order():
    offsets = [None, *WORDS, None]
    start = logits(6, {1: 10})  # alpha
    end = logits(6, {4: 10, 2: 4})  # delta (4 words) beats beta (2 words) on logits
    (long,) = postprocess_predictions([CONTEXT], [window(offsets)], [start], [end], max_answer_length=4)
    (short,) = postprocess_predictions([CONTEXT], [window(offsets)], [start], [end], max_answer_length=2)
    assert long[0].text == "alpha beta gamma delta"
    assert short[0].text == "alpha beta"
    backwards = postprocess_predictions([CONTEXT], [window(offsets)], [logits(6, {4: 10})], [logits(6, {1: 10})], top_k=20)[0]
    assert all(a.start < a.end for a in backwards)  # end before start is never proposed


def test_postprocess_joins_windows_of_one_example_and_merges_duplicates():
    # two overlapping windows of the same context both see "gamma"; a second example has no context tokens
    first = window([None, WORDS[0], WORDS[1], WORDS[2], None])
    second = window([None, WORDS[2], WORDS[3], None])
    empty = window([None, None, None], example_index=1)
    starts = [logits(5, {3: 8}), logits(4, {1: 8}), logits(3, {})]
    ends = [logits(5, {3: 8}), logits(4, {1: 8}), logits(3, {})]
    answers = postprocess_predictions([CONTEXT, "unused"], [first, second, empty], starts, ends, top_k=50)
    gamma = [a for a in answers[0] if a.text == "gamma"]
    assert len(gamma) == 1 and answers[0][0] == gamma[0]
    assert len({(a.start, a.end) for a in answers[0]}) == len(answers[0])
    assert sum(a.score for a in answers[0]) == pytest.approx(1.0)
    assert answers[1] == []


def test_nan_logits_give_no_answer_instead_of_a_crash():
    offsets = [None, *WORDS, None]
    nan = np.full(6, np.nan)
    assert postprocess_predictions([CONTEXT], [window(offsets)], [nan], [nan]) == [[]]


def test_tokenizers_that_cannot_window_are_refused(tokenizer, monkeypatch):
    check_tokenizer(tokenizer, "minilm")
    with pytest.raises(DistillqaError, match="fast tokenizer"):
        check_tokenizer(SimpleNamespace(is_fast=False), "slow")
    monkeypatch.setattr("tokenizers.__version__", "0.23.2")
    with pytest.raises(DistillqaError, match=r"tokenizers>=0\.23\.3"):
        check_tokenizer(tokenizer, "minilm")

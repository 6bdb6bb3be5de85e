"""The Reader: windows over long contexts, span search, batching, edge cases, model folders."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from distillqa.errors import DistillqaError
from distillqa.models import bundled_encoder
from distillqa.student.features import prepare_eval_features
from distillqa.student.reader import Reader, resolve_model_dir, save_window
from tests.helpers import tiny_bert

FILLER = "Rocks form slowly over many years in layers of sand and mud. "
QUESTIONS = ["What forms slowly?", "Where are the layers?", "What is it made of?"]
CONTEXTS = [
    "Rocks form slowly over many years.",
    FILLER * 3 + "The layers lie under the sea.",
    "It is made of quartz, feldspar and mica, which are minerals.",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def reader(tiny_dir) -> Reader:
    return Reader.load(tiny_dir, device="cpu")


class TokenPointer(torch.nn.Module):
    """A stand-in QA model whose start logits peak on one token id and end logits on another,
    so the right answer is known and the windowing and offset code can be checked exactly."""

    def __init__(self, start_id: int, end_id: int):
        super().__init__()
        self.start_id, self.end_id = start_id, end_id
        self.config = SimpleNamespace(max_position_embeddings=512)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        start = (input_ids == self.start_id).float() * 10 - 5
        end = (input_ids == self.end_id).float() * 10 - 5
        return SimpleNamespace(start_logits=start, end_logits=end)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(bundled_encoder())


def pointer_reader(tokenizer, start_word: str, end_word: str, **window) -> Reader:
    ids = [tokenizer.convert_tokens_to_ids(w) for w in (start_word, end_word)]
    return Reader(TokenPointer(*ids), tokenizer, device="cpu", **window)


def test_spans_are_context_slices_with_probabilities(reader):
    results = reader.answer(QUESTIONS, CONTEXTS, top_k=5)
    assert len(results) == len(QUESTIONS)
    for context, answers in zip(CONTEXTS, results):
        assert 1 <= len(answers) <= 5
        for a in answers:
            assert a.text == context[a.start : a.end] and a.text.strip()
            assert 0 < a.score <= 1
        assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
        assert sum(a.score for a in answers) <= 1 + 1e-6


def test_top_k_extends_the_best_answer(reader):
    best = reader.answer(QUESTIONS, CONTEXTS, top_k=1)
    many = reader.answer(QUESTIONS, CONTEXTS, top_k=10)
    for one, ten in zip(best, many):
        assert len(one) == 1 and one[0] == ten[0]
        assert len({(a.start, a.end) for a in ten}) == len(ten)


def test_batching_and_padding_do_not_change_answers(reader):
    together = reader.answer(QUESTIONS * 3, CONTEXTS * 3, top_k=3, batch_size=4)
    alone = [reader.answer([q], [c], top_k=3)[0] for q, c in zip(QUESTIONS * 3, CONTEXTS * 3)]
    for a, b in zip(together, alone):
        assert [(x.start, x.end) for x in a] == [(x.start, x.end) for x in b]
        assert [x.score for x in a] == pytest.approx([x.score for x in b], rel=1e-4, abs=1e-6)


def test_answer_in_a_later_window_of_a_long_context_is_found(tokenizer):
    context = FILLER * 80 + "The zebra stone is oldest. " + FILLER * 20
    reader = pointer_reader(tokenizer, "zebra", "stone", max_length=128, doc_stride=32)
    assert len(prepare_eval_features(["Which is oldest?"], [context], tokenizer, 128, 32)) > 10
    (answers,) = reader.answer(["Which is oldest?"], [context])
    assert answers[0].text == "zebra stone"
    assert answers[0].start == context.index("zebra stone")
    assert answers[0].score > 0.5


def test_question_tokens_are_never_answers(tokenizer):
    reader = pointer_reader(tokenizer, "zebra", "zebra")
    (with_it, without_it) = reader.answer(["Where is the zebra?"] * 2, ["A zebra sleeps here.", "A lion sleeps here."], top_k=50)
    assert with_it[0].text == "zebra" and with_it[0].start == 2
    assert all(a.text != "zebra" and "zebra" not in a.text for a in without_it)


def test_max_answer_length_bounds_the_span(tokenizer):
    reader = pointer_reader(tokenizer, "alpha", "omega")
    context = "alpha " + "rock " * 40 + "omega"
    (long,) = reader.answer(["Which?"], [context], max_answer_length=60)
    (short,) = reader.answer(["Which?"], [context], top_k=20, max_answer_length=10)
    assert long[0].text == context
    assert all(len(reader.tokenizer(a.text, add_special_tokens=False)["input_ids"]) <= 10 for a in short)


def test_empty_and_blank_contexts_give_no_answers(reader):
    results = reader.answer(["Why?", "Why?", "What forms slowly?", "Why?"], ["", "  \n\t ", CONTEXTS[0], ""])
    assert results[0] == [] and results[1] == [] and results[3] == []
    assert results[2] and results[2][0].text == CONTEXTS[0][results[2][0].start : results[2][0].end]
    assert reader.answer([], []) == []
    assert reader.answer(["Why?"], [""]) == [[]]


def test_question_longer_than_the_window(reader):
    question = "Which " + "very old red sandstone layer " * 300 + "is oldest?"
    (answers,) = reader.answer([question], [CONTEXTS[1]], top_k=3)
    assert answers and all(a.text == CONTEXTS[1][a.start : a.end] for a in answers)


def test_mismatched_inputs_are_rejected(reader):
    with pytest.raises(ValueError):
        reader.answer(["a", "b"], ["only one context"])


def test_resolve_model_dir(tmp_path, tiny_dir):
    assert resolve_model_dir(tiny_dir) == tiny_dir
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    with pytest.raises(DistillqaError, match="distillqa train"):
        resolve_model_dir(run)
    (run / "student" / "config.json").write_text("{}")
    assert resolve_model_dir(run) == run / "student"
    with pytest.raises(DistillqaError, match="not a run folder"):
        resolve_model_dir(tmp_path / "nothing")


def test_load_accepts_a_run_folder_and_reports_bad_folders(tmp_path, tiny_dir):
    run = tmp_path / "run"
    tiny_bert(run / "student")
    loaded = Reader.load(run, device="cpu")
    assert loaded.answer(QUESTIONS[:1], CONTEXTS[:1])[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(DistillqaError, match="cannot load"):
        Reader.load(broken)


def test_load_reads_with_the_windows_the_student_was_trained_with(tmp_path):
    model = tiny_bert(tmp_path / "model")
    plain = Reader.load(model, device="cpu")  # no window file: run_qa.py's windows
    assert (plain.max_length, plain.doc_stride) == (384, 128)
    save_window(model, 192, 64)
    saved = Reader.load(model, device="cpu")
    assert (saved.max_length, saved.doc_stride) == (192, 64)
    assert Reader.load(model, device="cpu", max_length=256).max_length == 256  # an explicit window wins

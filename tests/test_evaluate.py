"""Official SQuAD v1.1 EM/F1, SQuAD file checks, evaluate_file and the evaluate stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

from distillqa.config import Config, TrainConfig
from distillqa.errors import DistillqaError
from distillqa.models import bundled_encoder
from distillqa.pipeline import Run
from distillqa.dataset.squad import load_squad
from distillqa.student.evaluate import evaluate_file, run_stage
from distillqa.student.metrics import exact_match, f1_score, squad_scores
from distillqa.text import normalize_answer
from distillqa.dataset.squad import squad_examples
from distillqa.student.reader import Reader


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("The Cat!", "cat"),
        ("  an   apple,  a pear and THE plum. ", "apple pear and plum"),
        ("theatre anthem", "theatre anthem"),  # articles only as whole words
        ("U.S.-based", "usbased"),  # punctuation is deleted, not turned into spaces
        ("a an the", ""),
        ("Élan\tvital\n", "élan vital"),
    ],
)
def test_normalize_answer_official_cases(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_and_f1_numbers():
    assert exact_match("the Eiffel Tower.", "Eiffel tower")
    assert not exact_match("Eiffel", "Eiffel Tower")
    assert f1_score("Eiffel", "Eiffel Tower") == pytest.approx(2 / 3)  # p=1, r=1/2
    assert f1_score("the cat sat on", "a cat sat on the mat") == pytest.approx(2 * 1 * 0.75 / 1.75)  # p=1, r=3/4
    assert f1_score("dog dog", "dog") == pytest.approx(2 * 0.5 * 1 / 1.5)  # repeated tokens count once each
    assert f1_score("dog", "cat") == 0.0
    assert f1_score("", "cat") == 0.0
    assert f1_score("the", "a") == 0.0  # both normalise to nothing: v1.1 scores 0


def squad(qas: list[tuple[str, list[str]]], context: str = "Paris is the capital of France, on the Seine.") -> dict:
    return {
        "version": "1.1",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
            {"id": qid, "question": "q?", "answers": [{"text": g, "answer_start": max(0, context.find(g))} for g in golds]}
            for qid, golds in qas
        ]}]}],
    }


def test_squad_scores_take_the_best_gold_and_count_missing_as_zero():
    data = squad([("a", ["Paris", "the city of Paris"]), ("b", ["France"]), ("c", ["the Seine", "Seine river"]), ("d", ["Paris"])])
    predictions = {"a": "city of Paris", "b": "Spain", "c": "Seine", "unknown": "ignored"}
    scores = squad_scores(data, predictions)
    # a: EM 1 via gold 2; b: 0; c: EM 1 via gold 1 (article dropped); d: missing -> 0
    assert scores == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(50.0), "n": 4}
    partial = squad_scores(data, {"a": "Paris France", "b": "France", "c": "Seine river banks", "d": "Paris"})
    f1_c = 2 * (2 / 3) * 1 / (2 / 3 + 1)  # "seine river banks" vs best gold "seine river"
    assert partial["exact_match"] == pytest.approx(50.0)
    assert partial["f1"] == pytest.approx(100 * (2 / 3 + 1 + f1_c + 1) / 4)
    assert squad_scores(squad([]), {}) == {"exact_match": 0.0, "f1": 0.0, "n": 0}


def test_load_squad_rejects_bad_files_in_one_line(tmp_path):
    with pytest.raises(DistillqaError, match="not found"):
        load_squad(tmp_path / "missing.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{oops")
    not_squad = tmp_path / "list.json"
    not_squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x"}]}]}]}))
    for path in (bad_json, not_squad):
        with pytest.raises(DistillqaError) as e:
            load_squad(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(squad([("a", ["Paris"])])))
    assert squad_examples(load_squad(good))[0]["id"] == "a"


def save_tiny_bert(path: Path, seed: int = 0) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder())
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(tokenizer))
    torch.manual_seed(seed)
    BertForQuestionAnswering(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_evaluate_file_matches_the_readers_own_answers(tmp_path):
    model = save_tiny_bert(tmp_path / "model")
    data = squad([("a", ["Paris"]), ("b", ["France"]), ("c", ["Seine"])])
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    scores = evaluate_file(model, path)
    reader = Reader.load(model, device="cpu")
    answers = reader.answer(["q?"] * 3, [data["data"][0]["paragraphs"][0]["context"]] * 3)
    expected = squad_scores(data, {qid: a[0].text for qid, a in zip("abc", answers)})
    assert {k: scores[k] for k in ("exact_match", "f1", "n")} == pytest.approx(expected)
    assert scores["ms_per_question"] > 0
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(squad([])))
    with pytest.raises(DistillqaError, match="no questions"):
        evaluate_file(model, empty)


def test_evaluate_stage_writes_baseline_and_distilled(tmp_path):
    base = save_tiny_bert(tmp_path / "base", seed=1)
    run = Run(tmp_path / "run", quiet=True)
    save_tiny_bert(run.path("student"), seed=2)
    run.path("validation.json").write_text(json.dumps(squad([("a", ["Paris"]), ("b", ["France"])])))
    cfg = Config(train=TrainConfig(student=str(base)))
    summary = run_stage(run, cfg)
    written = json.loads(run.path("eval.json").read_text())
    assert written["validation_questions"] == summary["validation_questions"] == 2
    for name in ("baseline", "distilled"):
        assert set(written[name]) == {"exact_match", "f1", "n", "ms_per_question"}
        assert written[name]["n"] == 2
        assert summary[f"{name}_f1"] == pytest.approx(written[name]["f1"], abs=0.01)


def test_evaluate_stage_with_no_validation_questions(tmp_path):
    run = Run(tmp_path / "run", quiet=True)
    save_tiny_bert(run.path("student"))
    run.path("validation.json").write_text(json.dumps(squad([])))
    assert run_stage(run, Config()) == {"validation_questions": 0}
    written = json.loads(run.path("eval.json").read_text())
    assert written["validation_questions"] == 0 and written["baseline"] is None and written["distilled"] is None

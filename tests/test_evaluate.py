"""Official SQuAD v1.1 EM/F1, SQuAD file checks, evaluate_file, the evaluate stage and the
`evaluate` command (the stage, reader mode, --open, --predictions and their errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillqa.app.ask import Asker, score_open
from distillqa.cli import app
from distillqa.config import Config, TrainConfig
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.errors import DistillqaError
from distillqa.pipeline import Run
from distillqa.student.evaluate import evaluate_file, load_ranker, predict, run_stage
from distillqa.student.metrics import exact_match, f1_score, score_examples, squad_scores
from distillqa.student.reader import Reader
from distillqa.text import normalize_answer
from tests.helpers import HARBOUR, ORCHARD, tiny_bert


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


def test_evaluate_file_matches_the_readers_own_answers(tmp_path):
    model = tiny_bert(tmp_path / "model")
    data = squad([("a", ["Paris"]), ("b", ["France"]), ("c", ["Seine"])])
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data))
    scores = evaluate_file(model, path)
    answers, _ = predict(Reader.load(model, device="cpu"), squad_examples(data), ranker=load_ranker(Config()))
    expected = squad_scores(data, answers)
    assert {k: scores[k] for k in ("exact_match", "f1", "n")} == pytest.approx(expected)
    assert scores["ms_per_question"] > 0
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(squad([])))
    with pytest.raises(DistillqaError, match="no questions"):
        evaluate_file(model, empty)


def test_evaluate_stage_writes_baseline_and_distilled(tmp_path):
    base = tiny_bert(tmp_path / "base", seed=1)
    run = Run(tmp_path / "run", quiet=True)
    tiny_bert(run.path("student"), seed=2)
    run.path("validation.json").write_text(json.dumps(squad([("a", ["Paris"]), ("b", ["France"])])))
    cfg = Config(train=TrainConfig(student=str(base)))
    summary = run_stage(run, cfg)
    written = json.loads(run.path("eval.json").read_text())
    assert written["validation_questions"] == summary["validation_questions"] == 2
    assert written["reader_runtime"] == summary["reader_runtime"] == "torch"  # no export in this run
    for name in ("baseline", "distilled"):
        assert set(written[name]) == {"exact_match", "f1", "n", "ms_per_question"}
        assert written[name]["n"] == 2
        assert summary[f"{name}_f1"] == pytest.approx(written[name]["f1"], abs=0.01)
    # eval_predictions.json: each question's gold and both answers, the ones eval.json's totals score
    answers = json.loads(run.path("eval_predictions.json").read_text())
    assert set(answers) == {"a", "b"}
    assert answers["a"]["question"] == "q?" and answers["a"]["answers"] == ["Paris"] and answers["b"]["answers"] == ["France"]
    examples = squad_examples(load_squad(run.path("validation.json")))
    for name in ("baseline", "distilled"):
        rescored = score_examples(examples, {qid: a[name] for qid, a in answers.items()})
        assert rescored["f1"] == pytest.approx(written[name]["f1"]) and rescored["exact_match"] == pytest.approx(written[name]["exact_match"])
    context = json.loads(run.path("validation.json").read_text())["data"][0]["paragraphs"][0]["context"]
    assert all(a[name] in context for a in answers.values() for name in ("baseline", "distilled"))


def test_evaluate_stage_with_no_validation_questions(tmp_path):
    run = Run(tmp_path / "run", quiet=True)
    tiny_bert(run.path("student"))
    run.path("validation.json").write_text(json.dumps(squad([])))
    assert run_stage(run, Config()) == {"validation_questions": 0}
    written = json.loads(run.path("eval.json").read_text())
    assert written["validation_questions"] == 0 and written["baseline"] is None and written["distilled"] is None
    assert json.loads(run.path("eval_predictions.json").read_text()) == {}


# -- the `evaluate` command: the stage, reader mode, open mode, predictions, errors -----------

runner = CliRunner()

HARBOUR_QUESTIONS = [
    ("built", "Who built the harbour light of Port Elwin?", "Margaret Hale"),
    ("keeper", "Who was the last keeper of the tower?", "Edward Vance"),
    ("museum", "Who runs the museum in the building?", "the Port Elwin Historical Society"),
]


def harbour_squad(path: Path) -> Path:
    """Questions about HARBOUR, each with the paragraph holding its answer as context."""
    paragraphs = []
    for paragraph in HARBOUR.split("\n\n"):
        qas = [
            {"id": qid, "question": q, "answers": [{"text": a, "answer_start": paragraph.index(a)}]}
            for qid, q, a in HARBOUR_QUESTIONS
            if a in paragraph
        ]
        paragraphs.append({"context": paragraph, "qas": qas})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "Harbour", "paragraphs": paragraphs}]}))
    return path


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_evaluate_run_runs_the_stage(tmp_path):
    base = tiny_bert(tmp_path / "base", seed=1)
    run = tmp_path / "run"
    tiny_bert(run / "student", seed=2)
    (run / "manifest.json").write_text(json.dumps({"stages": {}, "inputs": []}))
    (run / "validation.json").write_text(json.dumps(squad([("a", ["Paris"]), ("b", ["France"])])))
    result = runner.invoke(app, ["evaluate", str(run), "--set", f"train.student={base}", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval.json").read_text())["validation_questions"] == 2
    assert set(json.loads((run / "eval_predictions.json").read_text())) == {"a", "b"}
    assert json.loads((run / "manifest.json").read_text())["stages"]["evaluate"]["status"] == "done"


def test_reader_mode_writes_run_qa_predictions(tmp_path):
    model = tiny_bert(tmp_path / "model")
    data = harbour_squad(tmp_path / "dev.json")
    predictions = tmp_path / "out" / "predictions.json"
    result = runner.invoke(app, ["evaluate", str(model), str(data), "--predictions", str(predictions), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["mode"] == "reader" and scores["n"] == 3
    written = json.loads(predictions.read_text())
    examples = squad_examples(load_squad(data))
    # {id: answer text}: the reader's n-best, chosen by the default answer ranker
    expected, _ = predict(Reader.load(model, device="cpu"), examples, ranker=load_ranker(Config()))
    assert written == expected
    assert {k: scores[k] for k in ("exact_match", "f1", "n")} == pytest.approx(score_examples(examples, written))
    plain = runner.invoke(app, ["evaluate", str(model), str(data), "--quiet"])
    assert plain.exit_code == 0 and plain.stdout.strip().endswith("questions 3  (reader mode)")


def test_reader_mode_reads_with_the_runs_settings_and_leaves_the_run_alone(tmp_path):
    run = tmp_path / "run"
    tiny_bert(run / "student")
    saved = "train:\n  max_answer_length: 1\n"
    (run / "config.yaml").write_text(saved)
    data = harbour_squad(tmp_path / "dev.json")
    predictions = tmp_path / "predictions.json"
    result = runner.invoke(app, ["evaluate", str(run), str(data), "--predictions", str(predictions), "--quiet"])
    assert result.exit_code == 0, result.output
    answers = json.loads(predictions.read_text()).values()
    assert answers and all(len(a.split()) <= 1 for a in answers)  # answers of at most one token
    assert (run / "config.yaml").read_text() == saved


def test_open_mode_scores_the_top_answer_a_user_sees(small_run, tmp_path):
    data = harbour_squad(tmp_path / "dev.json")
    predictions = tmp_path / "predictions.json"
    args = ["evaluate", str(small_run), str(data), "--open", "--predictions", str(predictions), "--json", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["mode"] == "open" and scores["n"] == len(HARBOUR_QUESTIONS)
    written = json.loads(predictions.read_text())
    asker = Asker(small_run)
    assert written == {qid: asker.ask(q, top_k=1)[0]["answer"] for qid, q, _ in HARBOUR_QUESTIONS}
    assert all(answer and (answer in HARBOUR or answer in ORCHARD) for answer in written.values())  # the run's documents
    examples = squad_examples(load_squad(data))
    assert {k: scores[k] for k in ("exact_match", "f1", "n")} == pytest.approx(score_examples(examples, written))


def test_open_mode_gives_a_blank_question_no_answer(small_run):
    examples = [{"id": "blank", "question": "  ", "context": "", "answers": [{"text": "Hale", "answer_start": 0}]}]
    scores, predictions = score_open(Asker(small_run), examples)
    assert predictions == {"blank": ""} and scores["f1"] == 0.0 and scores["n"] == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--open"], "--open and --predictions score a SQuAD file"),
        (["--predictions", "p.json"], "--open and --predictions score a SQuAD file"),
        (["--json"], "--json prints the scores of a SQuAD file"),
    ],
)
def test_file_options_without_a_file_are_errors(tmp_path, args, message):
    result = runner.invoke(app, ["evaluate", str(tmp_path), *args])
    assert result.exit_code == 2
    assert len(error_lines(result)) == 1 and message in error_lines(result)[0]


def test_open_mode_and_file_errors_are_one_line(tmp_path):
    data = harbour_squad(tmp_path / "dev.json")
    model = tiny_bert(tmp_path / "model")
    no_index = tmp_path / "run"
    tiny_bert(no_index / "student")
    (no_index / "manifest.json").write_text(json.dumps({"stages": {}, "inputs": []}))
    cases = [
        (["evaluate", str(model), str(data), "--open"], "--open needs a run folder with an index"),
        (["evaluate", str(no_index), str(data), "--open"], f"no passage index: run `distillqa index {no_index}` first"),
        (["evaluate", str(model), str(tmp_path / "missing.json")], "missing.json: file not found"),
        (["evaluate", str(model), str(data), "--predictions", str(tmp_path)], "is a folder"),
        (["evaluate", str(model), str(data), "--force"], "--force reruns the evaluate stage"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert len(error_lines(result)) == 1 and message in error_lines(result)[0], (args, result.stderr)

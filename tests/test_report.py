"""The run report: numbers gathered from a run folder's files, the Markdown, the few misses, and
runs without the optional files (no training log, no per-question answers, no validation set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillqa.app.report import (
    CURVE,
    MISSES,
    collect,
    misses,
    render_markdown,
    run_stage,
)
from distillqa.config import Config
from distillqa.io import write_json, write_jsonl
from distillqa.layout import RunFolder

DOCUMENTS = [
    {"doc_id": "harbour", "title": "The Harbour Light", "text": "…", "pages": [{"number": 1}, {"number": 2}]},
    {"doc_id": "notes-md", "title": None, "text": "…", "pages": [{"number": 1}]},
]
DATASET_SUMMARY = {
    "chunks": 3,
    "generations": 3,
    "pairs_proposed": 40,
    "grounded": {"exact": 30, "normalized": 4, "fuzzy": 2},
    "dropped": {"not grounded": 4, "too long": 2},
    "kept": 34,
    "kept_per_route": {"span-cloze": 30, "answer-first": 4},
    "train": {"questions": 28, "paragraphs": 9, "chunks": 2},
    "validation": {"questions": 6, "paragraphs": 2, "chunks": 1},
    "dropped_examples": [],
}
GENERATE_SUMMARY = {
    "chunks": 3,
    "mode": "answer-first",
    "teacher": "scripted:test",
    "generations": 12,
    "pairs": 10,
    "routes": {
        "answer-first": {"attempts": 12, "parse_failures": 1, "rejected": 5, "pairs": 6},
        "teacher-qa": {"attempts": 0, "parse_failures": 0, "rejected": 0, "pairs": 0},
    },
}
EVAL = {
    "baseline": {"exact_match": 0.0, "f1": 4.25, "n": 6, "ms_per_question": 3.0},
    "distilled": {"exact_match": 50.0, "f1": 61.5, "n": 6, "ms_per_question": 2.5},
    "validation_questions": 6,
}


def answer(question: str, golds: list[str], distilled: str) -> dict:
    return {"question": question, "answers": golds, "baseline": "x", "distilled": distilled}


PREDICTIONS = {
    "right": answer("Who built the light?", ["Margaret Hale"], "Margaret Hale"),
    "partial": answer("When was it built?", ["in 1854"], "1854 by"),  # F1 > 0: not a miss
    "other-gold": answer("Where is it?", ["Elwin", "the mouth of the Elwin River"], "mouth"),  # overlaps the 2nd gold
    "wrong": answer("Who was the last keeper?", ["Edward Vance"], "Thomas Quill"),
    "empty": answer("What does the museum show?", ["lamps"], ""),
    "pipes": answer("Which | reefs?", ["the Sisters"], "a | b"),
}


def fixture_run(root: Path, predictions: dict | None = PREDICTIONS, training_log: bool = True, evaluation: dict = EVAL) -> RunFolder:
    """A finished run folder as the stages leave it, written from the constants above."""
    run = RunFolder(root)
    (root / "student").mkdir(parents=True)
    (root / "student" / "model.safetensors").write_bytes(b"\0" * 250_000)
    if training_log:
        log = {"train": [{"step": s, "epoch": s / 4, "loss": 3.0 / s} for s in (1, 2, 3, 4)], "eval": [{"epoch": 1.0, "f1": 61.5}]}
        write_json(root / "student" / "training_log.json", log)
    config = Config().model_dump(mode="json")
    stages = {
        "ingest": {"status": "done", "seconds": 0.5},
        "train": {"status": "done", "seconds": 12.5, "summary": {"parameters": 1234, "best_f1": 61.5}},
        "evaluate": {"status": "done", "seconds": 1.75},
    }
    write_json(root / "manifest.json", {"config": config, "stages": stages, "inputs": []})
    write_jsonl(root / "documents.jsonl", DOCUMENTS)
    write_jsonl(root / "chunks.jsonl", [{"chunk_id": f"c{i}"} for i in range(3)])
    write_json(root / "generate_summary.json", GENERATE_SUMMARY)
    write_json(root / "dataset_summary.json", DATASET_SUMMARY)
    write_json(root / "eval.json", evaluation)
    if predictions is not None:
        write_json(root / "eval_predictions.json", predictions)
    return run


def test_misses_are_answers_sharing_no_word_with_any_gold():
    assert [m["id"] for m in misses(PREDICTIONS)] == ["wrong", "empty", "pipes"]
    assert misses(PREDICTIONS)[0] == {
        "id": "wrong", "question": "Who was the last keeper?", "answers": ["Edward Vance"], "distilled": "Thomas Quill"
    }
    many = {f"q{i}": answer(f"Question {i}?", ["yes"], "no") for i in range(MISSES + 3)}
    assert [m["id"] for m in misses(many)] == [f"q{i}" for i in range(MISSES)]  # the first few, in file order
    assert misses({}) == []


def test_collect_reads_every_number_from_the_run_folder(tmp_path):
    report = collect(fixture_run(tmp_path / "run"))
    assert [d["pages"] for d in report["documents"]] == [2, 1]
    assert report["chunks"] == 3
    assert report["evaluation"] == EVAL and report["dataset"] == DATASET_SUMMARY and report["generation"] == GENERATE_SUMMARY
    assert report["training"]["seconds"] == 12.5 and report["training"]["parameters"] == 1234
    assert report["training"]["disk_mb"] == pytest.approx(0.3, abs=0.05)
    assert report["training"]["student"] == "all-MiniLM-L6-v2 (bundled)"
    assert [m["id"] for m in report["misses"]] == ["wrong", "empty", "pipes"]


def test_markdown_shows_scores_misses_and_says_what_they_measure(tmp_path):
    report = collect(fixture_run(tmp_path / "run"))
    md = render_markdown(report, curve=True)
    assert "| The Harbour Light | 2 |" in md and "| notes-md | 1 |" in md  # a document without a title: its id
    assert "| untrained student (baseline) | 0.0 | 4.2 |" in md
    assert "| distilled student | 50.0 | 61.5 |" in md
    assert "answer-first: 12, 1, 5" in md and "teacher-qa" not in md  # routes never tried are left out
    assert "not a score on questions people ask" in md and "--open" in md
    misses_section = md.split("## A few misses", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in misses_section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [
        "| Who was the last keeper? | Edward Vance | Thomas Quill |",
        "| What does the museum show? | lamps | (no answer) |",
        "| Which \\| reefs? | the Sisters | a \\| b |",  # pipes escaped: one row, three cells
    ]
    assert f"![training curve]({CURVE})" in md
    assert "- train: 12.5" in md and "- evaluate: 1.8" in md


def test_run_stage_writes_report_files_and_the_curve(tmp_path):
    run = fixture_run(tmp_path / "run")
    summary = run_stage(run, Config())
    assert summary == {"baseline_f1": 4.25, "distilled_f1": 61.5, "report": str(run.path("report.md"))}
    written = json.loads(run.path("report.json").read_text())
    assert written["training_curve"] == CURVE and run.path(CURVE).read_bytes().startswith(b"\x89PNG")
    assert [m["id"] for m in written["misses"]] == ["wrong", "empty", "pipes"]
    assert "## A few misses" in run.path("report.md").read_text()


def test_a_run_without_optional_files_still_reports(tmp_path):
    """Evaluated before eval_predictions.json existed, no training log, no validation questions."""
    empty_eval = {"baseline": None, "distilled": None, "validation_questions": 0, "note": "nothing was scored"}
    run = fixture_run(tmp_path / "run", predictions=None, training_log=False, evaluation=empty_eval)
    summary = run_stage(run, Config())
    assert summary["baseline_f1"] is None and summary["distilled_f1"] is None
    written = json.loads(run.path("report.json").read_text())
    assert written["misses"] is None and written["training_curve"] is None and not run.path(CURVE).exists()
    md = run.path("report.md").read_text()
    assert "## A few misses" not in md and "## Training curve" not in md
    assert "| distilled student | - | - |" in md and "Questions scored: 0." in md


def test_no_misses_is_said_plainly(tmp_path):
    run = fixture_run(tmp_path / "run", predictions={"right": PREDICTIONS["right"], "partial": PREDICTIONS["partial"]})
    md = render_markdown(collect(run), curve=False)
    assert "answered every validation question at least in part" in md


def _calibration(method: str = "platt") -> dict:
    way = {
        "questions": 40, "right": 12, "ece": 0.061, "ece_raw_score": 0.31,
        "calibrator": {"method": method, "a": 1.2, "b": 0.3, "questions": 40, "right": 12, "note": "Platt scaling on 40 validation questions"},
        "reliability": [{"low": 0.1, "high": 0.2, "n": 30, "confidence": 0.15, "accuracy": 0.2},
                        {"low": 0.7, "high": 0.8, "n": 10, "confidence": 0.74, "accuracy": 0.6}],
        "questions_scored": [{"id": "q1", "answer": "x", "score": 0.1, "confidence": 0.15, "right": False}],
    }
    return {"right": "SQuAD F1 >= 0.5 against a gold answer", "student_sha256": None, "open": way, "context": way}


def test_report_shows_the_calibration_and_its_reliability_diagram(tmp_path):
    run = fixture_run(tmp_path / "run")
    write_json(run.path("calibration.json"), _calibration())
    run_stage(run, Config())
    written = json.loads(run.path("report.json").read_text())
    assert written["calibration"]["open"]["ece"] == 0.061 and "questions_scored" not in written["calibration"]["open"]
    assert written["reliability_diagram"] == "reliability.png" and run.path("reliability.png").read_bytes().startswith(b"\x89PNG")
    md = run.path("report.md").read_text()
    section = md.split("## Confidence", 1)[1].split("\n## ", 1)[0]
    assert "| question alone (ask, serve) | 40 | 12 | 0.061 | 0.310 | Platt scaling on 40 validation questions |" in section
    assert "| 0.7-0.8 | 10 | 60% | 10 | 60% |" in section and "![reliability diagram](reliability.png)" in section


def test_a_run_without_calibration_has_no_confidence_section(tmp_path):
    run = fixture_run(tmp_path / "run")
    run_stage(run, Config())
    assert "## Confidence" not in run.path("report.md").read_text() and not run.path("reliability.png").exists()

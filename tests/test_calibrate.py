"""The `calibrate` stage on a tiny run: the validation questions asked both ways, calibration.json
with each question's verdict, and the Asker's confidences taken from it."""

import json
import logging
import shutil
from pathlib import Path

import pytest

from distillqa.app.ask import Asker, read_context
from distillqa.app.calibrate import run_stage
from distillqa.config import AnswerConfig
from distillqa.layout import RunFolder
from distillqa.student.calibration import Calibrator
from tests.helpers import HARBOUR, ORCHARD

QUESTIONS = [  # (question, answer, context)
    ("Who built the harbour light?", "Margaret Hale", HARBOUR),
    ("When was the harbour light built?", "1854", HARBOUR),
    ("Who designed the paraffin burner?", "Thomas Quill", HARBOUR),
    ("Who was the last keeper?", "Edward Vance", HARBOUR),
    ("Who planted the apple trees?", "Ada Brook", ORCHARD),
    ("When is the cider festival?", "October", ORCHARD),
]


def _validation() -> dict:
    paragraphs = [
        {"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": c.index(a)}]}]}
        for i, (q, a, c) in enumerate(QUESTIONS)
    ]
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}


@pytest.fixture(scope="module")
def calibrated(small_run: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calibrate") / "run"
    shutil.copytree(small_run, root)
    (root / "validation.json").write_text(json.dumps(_validation()))
    run = RunFolder(root)
    cfg = run.config(overrides=["answer.calibration_min_questions=4"])
    summary = run_stage(run, cfg)
    assert summary["validation_questions"] == len(QUESTIONS)
    return root


def test_calibration_file_scores_every_question_both_ways(calibrated: Path):
    data = json.loads((calibrated / "calibration.json").read_text())
    assert data["right"].startswith("SQuAD F1 >= 0.5")
    for way in ("open", "context"):
        result = data[way]
        assert result["questions"] == len(QUESTIONS) and result["calibrator"]["method"] == "platt"
        rows = result["questions_scored"]
        assert [r["id"] for r in rows] == [f"q{i}" for i in range(len(QUESTIONS))]
        assert result["right"] == sum(r["right"] for r in rows)
        assert all(0 <= r["score"] <= 1 and 0 <= r["confidence"] <= 1 for r in rows)
        assert sum(b["n"] for b in result["reliability"]) == len(QUESTIONS) and 0 <= result["ece"] <= 1
    assert all(r["answer"] in HARBOUR + ORCHARD for r in data["context"]["questions_scored"])


def test_answers_carry_the_calibrated_confidence(calibrated: Path):
    data = json.loads((calibrated / "calibration.json").read_text())
    asker = Asker(calibrated)
    people = AnswerConfig().people_correction
    fitted = Calibrator.model_validate({**data["open"]["calibrator"], "people": people["open"]})
    assert asker.calibrator == fitted
    for a in asker.ask("Who built the harbour light?", top_k=3):
        assert a["confidence"] == pytest.approx(fitted(a["score"]), abs=1e-3)
    context = Calibrator.model_validate({**data["context"]["calibrator"], "people": people["context"]})
    for a in read_context(calibrated, "Who planted the trees?", ORCHARD):
        assert a["confidence"] == pytest.approx(context(a["score"]), abs=1e-3)


def test_too_few_questions_leave_the_score_as_confidence(small_run: Path, tmp_path: Path, caplog):
    root = tmp_path / "run"
    shutil.copytree(small_run, root)
    (root / "validation.json").write_text(json.dumps(_validation()))
    run = RunFolder(root)
    run_stage(run, run.config())  # default minimum: 30 questions
    data = json.loads((root / "calibration.json").read_text())
    assert data["open"]["calibrator"]["method"] == "none" and data["open"]["ece"] is None
    a = Asker(root).ask("Who built the harbour light?", top_k=1)[0]
    assert a["confidence"] == pytest.approx(a["score"], abs=1e-4)
    # recalibrating after a retrain replaces the old file without warning that it is stale
    (root / "calibration.json").write_text(json.dumps({**data, "student_sha256": "an earlier student"}))
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        run_stage(run, run.config())
    assert "earlier student" not in caplog.text

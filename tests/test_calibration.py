"""Confidence calibration as pure functions: Platt scaling, out-of-fold ECE, the reliability table,
and loading a run's calibrator (ignored when fitted for an earlier student)."""

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from distillqa.student.calibration import (
    Calibrator,
    calibration_summary,
    expected_calibration_error,
    fit_platt,
    is_right,
    load_calibrator,
    out_of_fold,
    reliability,
)


def _synthetic(n: int, a: float, b: float, seed: int = 0) -> tuple[list[float], list[bool]]:
    """Scores whose chance of being right is exactly sigmoid(a log s + b)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.001, 1.0, n)
    p = 1 / (1 + np.exp(-(a * np.log(scores) + b)))
    return scores.tolist(), (rng.uniform(size=n) < p).tolist()


def test_platt_recovers_the_true_mapping_and_calibrates():
    scores, right = _synthetic(5000, a=3.0, b=-1.0)
    fit = fit_platt(scores, right)
    assert fit.method == "platt" and fit.questions == 5000
    assert abs(fit.a - 3.0) < 0.3 and abs(fit.b + 1.0) < 0.25
    held_out = out_of_fold(scores, right)
    assert expected_calibration_error(held_out, right) < 0.03
    # the raw score is no probability here: far worse calibrated
    assert expected_calibration_error(scores, right) > 0.1


def test_platt_is_monotone_and_finite_on_one_class():
    wrong = fit_platt([0.1, 0.5, 0.9], [False, False, False])
    assert all(0 < wrong(s) < 0.5 for s in (0.0, 0.5, 1.0))
    right = fit_platt([0.1, 0.5, 0.9], [True, True, True])
    assert all(0.5 < right(s) < 1 for s in (0.0, 0.5, 1.0))
    # a higher score is never less likely right, even when the data say so (a >= 0)
    inverted = fit_platt([0.9, 0.8, 0.1, 0.2] * 10, [False, False, True, True] * 10)
    assert inverted.a == 0 and inverted(0.9) == pytest.approx(inverted(0.1))


def test_reliability_and_ece():
    conf = [0.05, 0.15, 0.15, 0.95, 0.95]
    right = [False, True, False, True, True]
    table = reliability(conf, right)
    assert [(b["low"], b["n"]) for b in table] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert table[1]["accuracy"] == 0.5 and table[1]["confidence"] == pytest.approx(0.15)
    assert reliability([1.0], [True])[0]["low"] == 0.9  # a confidence of 1 falls in the last bin
    expected = (1 * 0.05 + 2 * 0.35 + 2 * 0.05) / 5
    assert expected_calibration_error(conf, right) == pytest.approx(expected)
    assert expected_calibration_error([], []) == 0.0


def test_right_means_f1_of_a_half():
    assert is_right("the Roman Empire", ["Roman Empire"])
    assert is_right("Margaret Hale", ["engineer Margaret Hale"])  # F1 0.8
    assert not is_right("Hale", ["engineer Margaret Hale in 1871"])  # F1 0.33
    assert not is_right("", ["x"]) and not is_right("x", [])


def test_unfitted_calibrator_passes_the_score_through():
    c = Calibrator()
    assert c(0.3) == 0.3 and c(1.7) == 1.0 and c(-1) == 0.0
    assert Calibrator(method="platt", a=1, b=0)(0.25) == pytest.approx(0.2)  # 1 / (1 + 1/0.25)


def test_people_correction_scales_the_log_odds():
    fitted = Calibrator(method="platt", a=2, b=1)
    corrected = fitted.model_copy(update={"people": (0.5, -1.0)})
    logit = 2 * math.log(0.3) + 1
    assert corrected(0.3) == pytest.approx(1 / (1 + math.exp(-(0.5 * logit - 1.0))))
    assert corrected(0.3) < fitted(0.3)
    assert Calibrator(people=(0.5, -1.0))(0.3) == 0.3  # an unfitted calibrator is not corrected


def test_summary_needs_enough_questions():
    scores, right = _synthetic(40, a=1, b=0)
    few = calibration_summary(scores[:10], right[:10], min_questions=30)
    assert few["calibrator"]["method"] == "none" and few["ece"] is None and "fewer than" in few["calibrator"]["note"]
    enough = calibration_summary(scores, right, min_questions=30)
    assert enough["calibrator"]["method"] == "platt" and 0 <= enough["ece"] <= 1
    assert len(enough["out_of_fold"]) == 40 and sum(b["n"] for b in enough["reliability"]) == 40


def _run_with_calibration(root: Path, fitted_for: str, trained: str) -> Path:
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"stages": {"train": {"outputs": {"student": {"sha256": trained}}}}}))
    fitted = {"calibrator": Calibrator(method="platt", a=2, b=1).model_dump()}
    (root / "calibration.json").write_text(json.dumps({"student_sha256": fitted_for, "open": fitted, "context": fitted}))
    return root


def test_load_calibrator_only_for_the_student_it_was_fitted_for(tmp_path: Path, caplog):
    current = load_calibrator(_run_with_calibration(tmp_path / "a", "abc", "abc"), "open")
    assert current.method == "platt" and current(1.0) == pytest.approx(1 / (1 + math.exp(-1)))
    corrections = {"open": (0.5, 0.0), "context": (2.0, 0.0)}
    assert load_calibrator(tmp_path / "a", "open", corrections)(1.0) == pytest.approx(1 / (1 + math.exp(-0.5)))
    with caplog.at_level(logging.WARNING, logger="distillqa"):
        stale = load_calibrator(_run_with_calibration(tmp_path / "b", "abc", "def"), "context")
    assert stale.method == "none" and "earlier student" in caplog.text
    assert load_calibrator(tmp_path, "open").method == "none"  # no calibration.json

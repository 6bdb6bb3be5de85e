"""Confidence: the probability that an answer is right, from its ranking score (pure functions).

The ranker's score (`distillqa.student.ranking`) orders answers well but is no probability: a
right answer can score 0.02 and a wrong one 0.3, depending on the passage and the question.
Platt scaling maps it to one, fitted on the run's held-back validation questions:

    confidence = sigmoid(a × log(score) + b),   a >= 0 (a higher score is never less likely right)

An answer counts as right when its SQuAD F1 against a gold answer is at least RIGHT_F1 (0.5:
about what a reader checking the passage accepts; exact match would call "the Roman Empire" for
"Roman Empire" wrong). Two parameters, with Platt's smoothed targets, because a run has tens to
hundreds of validation questions: isotonic regression would need more and overfits fewer.

Calibration is measured honestly: the reliability table and the expected calibration error
(ECE) are computed on out-of-fold confidences (each question's confidence from a fit that did
not see it), next to the raw score's ECE as if it were a probability.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from distillqa.io import read_json
from distillqa.layout import CALIBRATION, MANIFEST, STUDENT
from distillqa.student.metrics import f1_score

log = logging.getLogger("distillqa")

RIGHT_F1 = 0.5  # an answer with at least this F1 against a gold answer counts as right
BINS = 10  # equal-width confidence bins of the reliability table
FOLDS = 5  # out-of-fold confidences for the reported ECE
_FLOOR = 1e-6  # log(score) of a zero score


def is_right(prediction: str, golds: Sequence[str]) -> bool:
    """Does the answer count as right (F1 >= RIGHT_F1 against one of the gold answers)?"""
    return max((f1_score(prediction, g) for g in golds), default=0.0) >= RIGHT_F1


class Calibrator(BaseModel):
    """score -> confidence. Unfitted (`method` "none"), the confidence is the score itself.
    `people` (scale, offset), when set, maps the fitted log-odds on to people's questions
    (`answer.people_correction`): logit -> scale × logit + offset."""

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    questions: int = 0
    right: int = 0
    note: str = "not calibrated: the confidence is the ranking score"
    people: tuple[float, float] | None = None

    def __call__(self, score: float) -> float:
        if self.method == "none":
            return float(min(max(score, 0.0), 1.0))
        logit = self.a * math.log(max(score, _FLOOR)) + self.b
        if self.people is not None:
            logit = self.people[0] * logit + self.people[1]
        return 1.0 / (1.0 + math.exp(-logit))


def fit_platt(scores: Sequence[float], right: Sequence[bool]) -> Calibrator:
    """Platt scaling (Platt 1999, with his smoothed targets, so all-right or all-wrong questions
    give a finite fit) of `right` on log(score), `a` kept >= 0."""
    from scipy.optimize import minimize

    x = np.log(np.maximum(np.asarray(scores, dtype=float), _FLOOR))
    y = np.asarray(right, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (pos + 1) / (pos + 2), 1 / (neg + 2))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * x + params[1]
        p = 1 / (1 + np.exp(-z))
        # log(1 + e^z) - t z, stable for large |z|
        value = float(np.sum(np.logaddexp(0, z) - target * z))
        grad = p - target
        return value, np.array([float(grad @ x), float(grad.sum())])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0, None), (None, None)])
    a, b = (float(v) for v in result.x)
    return Calibrator(method="platt", a=a, b=b, questions=len(y), right=pos, note=f"Platt scaling on {len(y)} validation questions")


def out_of_fold(scores: Sequence[float], right: Sequence[bool], folds: int = FOLDS, seed: int = 0) -> list[float]:
    """Each question's confidence from a fit on the other folds: what calibration does for a
    question it has not seen."""
    n = len(scores)
    order = np.random.default_rng(seed).permutation(n)
    out = [0.0] * n
    for k in range(min(folds, n)):
        held = set(order[k::folds].tolist())
        fit = fit_platt([scores[i] for i in range(n) if i not in held], [right[i] for i in range(n) if i not in held])
        for i in held:
            out[i] = fit(scores[i])
    return out


def reliability(confidences: Sequence[float], right: Sequence[bool], bins: int = BINS) -> list[dict]:
    """The reliability table: per non-empty equal-width bin of confidence, its range, the number
    of answers, their mean confidence and the share that were right."""
    table = []
    c, y = np.asarray(confidences, dtype=float), np.asarray(right, dtype=float)
    which = np.minimum((c * bins).astype(int), bins - 1)
    for k in range(bins):
        mask = which == k
        if mask.any():
            table.append(
                {"low": k / bins, "high": (k + 1) / bins, "n": int(mask.sum()),
                 "confidence": float(c[mask].mean()), "accuracy": float(y[mask].mean())}
            )
    return table


def expected_calibration_error(confidences: Sequence[float], right: Sequence[bool], bins: int = BINS) -> float:
    """ECE: the answers' share in each bin times |accuracy - mean confidence| there, summed (0 =
    perfectly calibrated; Guo et al. 2017)."""
    n = len(confidences)
    return sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability(confidences, right, bins)) if n else 0.0


def calibration_summary(scores: Sequence[float], right: Sequence[bool], min_questions: int) -> dict:
    """The fitted calibrator (or an unfitted one, with the reason, below `min_questions`) and its
    measured calibration: {"calibrator", "questions", "right", "ece", "ece_raw_score",
    "reliability", "out_of_fold"}; `out_of_fold` lists each question's held-out confidence."""
    n = len(scores)
    summary: dict = {"questions": n, "right": int(sum(right))}
    raw = [min(max(s, 0.0), 1.0) for s in scores]
    summary["ece_raw_score"] = round(expected_calibration_error(raw, right), 4)
    if n < min_questions:
        note = f"not calibrated: {n} validation questions, fewer than answer.calibration_min_questions ({min_questions}); the confidence is the ranking score"
        return {**summary, "calibrator": Calibrator(note=note).model_dump(), "ece": None, "reliability": reliability(raw, right), "out_of_fold": raw}
    held_out = out_of_fold(scores, right)
    return {
        **summary,
        "calibrator": fit_platt(scores, right).model_dump(),
        "ece": round(expected_calibration_error(held_out, right), 4),
        "reliability": reliability(held_out, right),
        "out_of_fold": [round(c, 4) for c in held_out],
    }


def trained_student_sha256(run_dir: Path) -> str | None:
    """The sha256 the manifest recorded for the run's student/ when `train` wrote it."""
    manifest = run_dir / MANIFEST
    if not manifest.is_file():
        return None
    return read_json(manifest).get("stages", {}).get("train", {}).get("outputs", {}).get(STUDENT, {}).get("sha256")


def load_calibrator(run_dir: Path, mode: str, corrections: dict[str, tuple[float, float]] | None = None) -> Calibrator:
    """The run's calibrator for `mode` ("open": question alone; "context": a given passage), with
    that mode's correction of `corrections` (`answer.people_correction`). Unfitted when the run has
    no calibration.json, or has one fitted for an earlier student."""
    path = Path(run_dir) / CALIBRATION
    if not path.is_file():
        return Calibrator()
    data = read_json(path)
    if data.get("student_sha256") != trained_student_sha256(Path(run_dir)):
        log.warning("%s was fitted for an earlier student: confidences are raw scores until `distillqa calibrate %s`", path, run_dir)
        return Calibrator()
    return Calibrator.model_validate({**data[mode]["calibrator"], "people": (corrections or {}).get(mode)})

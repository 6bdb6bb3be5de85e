"""How far the confidence holds on people's questions: calibration on the devset.

For each devset article, the distilled student of a finished `benchmarks/devset.py` variant
(WORK/ARTICLE/VARIANT/sSEED) is calibrated exactly as the `calibrate` stage does, on that run's
own validation questions, over the article's index (WORK/ARTICLE/base). The calibrators are then
applied to the article's human-written SQuAD questions, asked both ways (question alone over the
index; question with its gold paragraph). Printed per article and pooled: questions, share right
(F1 >= 0.5), mean confidence, ECE, and for thresholds of `answer.not_found_below`: the share of
questions called found and the share of those that were right.

The run's own questions are far easier than people's, so the confidence they give is too high on
people's questions. `--analyse RESULTS.json` fits the correction `answer.people_correction` (a
Platt fit of the human questions' verdicts on the log-odds of their confidence, per way of
asking) and measures it honestly, leaving one article out: the correction fitted on two articles
is scored on the third. Per seed (one results file each), it takes the held-out ECE, the share
of questions called found and how often those (and the others) were right per threshold, and
prints their mean and range over the seeds; then the fit on every article of every seed, the
shipped default.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/calibration.py --work runs/devset --variant defaults --seed 42 --json R.json
    .venv/bin/python benchmarks/calibration.py --analyse R42.json R43.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from distillqa.app.ask import Asker
from distillqa.app.calibrate import calibrate, context_answers, open_answers
from distillqa.config import Config
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.student.calibration import Calibrator, expected_calibration_error, fit_platt, is_right, reliability

sys.path.insert(0, str(Path(__file__).parent))
from devset import ARTICLES, DEVSET  # noqa: E402

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ANALYSIS_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def human_rows(examples: list[dict], answers: list[tuple[str, float]], calibrator: Calibrator) -> list[dict]:
    return [
        {"id": e["id"], "answer": answer, "score": score, "confidence": calibrator(score),
         "right": is_right(answer, [g["text"] for g in e["answers"]])}
        for e, (answer, score) in zip(examples, answers)
    ]


def auroc(confidences: list[float], right: list[bool]) -> float:
    """The chance that a right answer has a higher confidence than a wrong one (0.5 = no better
    than chance): how well the confidence separates them, whatever its calibration."""
    pos = [c for c, r in zip(confidences, right) if r]
    neg = [c for c, r in zip(confidences, right) if not r]
    if not pos or not neg:
        return float("nan")
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def describe(rows: list[dict]) -> dict:
    conf, right = [r["confidence"] for r in rows], [r["right"] for r in rows]
    out = {
        "questions": len(rows),
        "right": round(100 * statistics.mean(right), 1),
        "mean_confidence": round(100 * statistics.mean(conf), 1),
        "ece": round(expected_calibration_error(conf, right), 3),
        "reliability": reliability(conf, right),
        "auroc": round(auroc(conf, right), 3),
    }
    for t in THRESHOLDS:
        found = [r for r in rows if r["confidence"] >= t]
        out[f"found@{t}"] = round(100 * len(found) / len(rows), 1)
        out[f"right_if_found@{t}"] = round(100 * statistics.mean(r["right"] for r in found), 1) if found else None
    return out


def _as_score(confidence: float) -> float:
    """exp(logit(confidence)): `fit_platt` fits on log(score), so this fits on the log-odds."""
    confidence = min(max(confidence, 1e-6), 1 - 1e-6)
    return confidence / (1 - confidence)


def held_out(results: dict, way: str) -> tuple[list[float], list[bool], list[float]]:
    """One seed's human questions, each corrected by the fit on the other articles: (corrected
    confidences, verdicts, uncorrected confidences)."""
    articles = [a for a in ARTICLES if a in results]
    conf, right, before = [], [], []
    for held in articles:
        train = [r for a in articles if a != held for r in results[a][way]["human_questions"]]
        fit = fit_platt([_as_score(r["confidence"]) for r in train], [r["right"] for r in train])
        test = results[held][way]["human_questions"]
        conf += [fit(_as_score(r["confidence"])) for r in test]
        right += [r["right"] for r in test]
        before += [r["confidence"] for r in test]
    return conf, right, before


def _spread(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """Mean and range over seeds."""
    values = [scale * v for v in values]
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def analyse(seeds: list[dict]) -> None:
    """The people's-question correction, left-one-article-out per seed (mean and range over the
    seeds), and fitted on every article of every seed (the default)."""
    for way in ("open", "context"):
        rows = [held_out(results, way) for results in seeds]
        print(f"{way}: held-out ECE {_spread([expected_calibration_error(c, r) for c, r, _ in rows])}, "
              f"uncorrected {_spread([expected_calibration_error(b, r) for _, r, b in rows])}; "
              f"AUROC {_spread([auroc(c, r) for c, r, _ in rows])} over {len(seeds)} seeds")
        for t in ANALYSIS_THRESHOLDS:
            found = [100 * sum(x >= t for x in c) / len(c) for c, _, _ in rows]
            right_found = [statistics.mean([y for x, y in zip(c, r) if x >= t] or [float("nan")]) for c, r, _ in rows]
            right_rest = [statistics.mean([y for x, y in zip(c, r) if x < t] or [float("nan")]) for c, r, _ in rows]
            print(f"  not_found_below {t}: found {_spread(found, digits=0)}%, right when found "
                  f"{_spread(right_found, 100, 0)}%, right when not {_spread(right_rest, 100, 0)}%")
        everything = [r for results in seeds for a in ARTICLES if a in results for r in results[a][way]["human_questions"]]
        fit = fit_platt([_as_score(r["confidence"]) for r in everything], [r["right"] for r in everything])
        print(f"{way}: fitted on every article and seed (the default): ({fit.a:.3f}, {fit.b:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/devset"))
    parser.add_argument("--variant", default="defaults")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--analyse", type=Path, nargs="+", help="Fit and score the people's-question correction on these results (one file per seed).")
    args = parser.parse_args()
    if args.analyse:
        analyse([json.loads(path.read_text()) for path in args.analyse])
        return
    cfg = Config()
    results: dict = {}
    pooled: dict[str, list[dict]] = {"open": [], "context": []}
    for article in ARTICLES:
        base, run = args.work / article / "base", args.work / article / args.variant / f"s{args.seed}"
        validation = squad_examples(load_squad(run / "validation.json"))
        human = squad_examples(load_squad(DEVSET / f"{article}.squad.json"))
        asker = Asker(base, model_dir=run / "student", cfg=cfg)  # scores only: calibrated below
        batch = cfg.train.eval_batch_size
        results[article] = {}
        for way, answer in (("open", open_answers), ("context", context_answers)):
            fitted = calibrate(validation, answer(asker, validation, batch), cfg.answer.calibration_min_questions)
            calibrator = Calibrator.model_validate(fitted["calibrator"])
            rows = human_rows(human, answer(asker, human, batch), calibrator)
            pooled[way] += rows
            results[article][way] = {
                "validation": {k: fitted[k] for k in ("questions", "right", "ece", "ece_raw_score")},
                "calibrator": fitted["calibrator"],
                "human": describe(rows),
                "human_questions": rows,
                "validation_questions": fitted["questions_scored"],
            }
            print(article, way, json.dumps({"validation": results[article][way]["validation"], **{k: v for k, v in results[article][way]["human"].items() if k != "reliability"}}), flush=True)
    results["pooled"] = {way: describe(rows) for way, rows in pooled.items()}
    for way in pooled:
        print("pooled", way, json.dumps({k: v for k, v in results["pooled"][way].items() if k != "reliability"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""The `calibrate` stage: fit the answers' confidence on the run's held-back validation questions.

The validation questions (never trained on) are asked the two ways a user asks:

- "open": the question alone, over the run's index (`Asker`, what `ask` and `serve` do);
- "context": the question with its own passage (what `ask --context` does).

Each way gets its own calibrator (`distillqa.student.calibration`): the scores differ, since an
open question's answers are also weighted by retrieval. RUN/calibration.json holds, per way, the
calibrator, the out-of-fold ECE and reliability table, and each question's answer, score,
held-out confidence and whether it was right; plus the sha256 of the student it was fitted for
(`load_calibrator` ignores a calibration made for an earlier student).

The validation questions are the run's own, mostly rule-made span clozes: easier than people's
questions, so a calibration that holds on them can still be overconfident on people's. How far it
holds is measured on the devset's human questions (docs/benchmarks.md).
"""

from __future__ import annotations

from distillqa.app.ask import Asker
from distillqa.config import Config
from distillqa.console import track_batches
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.io import write_json
from distillqa.layout import CALIBRATION, INDEX, STUDENT, VALIDATION, RunFolder
from distillqa.student.calibration import RIGHT_F1, Calibrator, calibration_summary, is_right, trained_student_sha256


def open_answers(asker: Asker, examples: list[dict], batch_size: int, quiet: bool = True) -> list[tuple[str, float]]:
    """(best answer, its score) per example, the question asked alone over the index; ("", 0.0)
    when nothing is found."""
    out = []
    for batch in track_batches(examples, batch_size, "calibrate: questions alone", quiet):
        for answers in asker.ask_many([e["question"] for e in batch], [1] * len(batch)):
            out.append((answers[0]["answer"], answers[0]["score"]) if answers else ("", 0.0))
    return out


def context_answers(asker: Asker, examples: list[dict], batch_size: int, quiet: bool = True) -> list[tuple[str, float]]:
    """(best answer, its score) per example, read in its own passage and ranked as `ask
    --context` ranks (the first non-blank span of the ranker's order)."""
    out = []
    for batch in track_batches(examples, batch_size, "calibrate: with the passage", quiet):
        questions, contexts = [e["question"] for e in batch], [e["context"] for e in batch]
        spans = asker.reader.answer(questions, contexts, top_k=asker.ranker.cfg.n_best, batch_size=batch_size)
        for q, c, found in zip(questions, contexts, spans):
            best = next((r for r in asker.ranker.rank(q, [c], [found]) if r.answer.text.strip()), None)
            out.append((best.answer.text, best.score) if best else ("", 0.0))
    return out


def calibrate(examples: list[dict], answers: list[tuple[str, float]], min_questions: int) -> dict:
    """One way's calibration (`calibration_summary`) with each question's answer, score,
    held-out confidence and verdict under "questions"."""
    right = [is_right(a, [g["text"] for g in e["answers"]]) for e, (a, _) in zip(examples, answers)]
    summary = calibration_summary([s for _, s in answers], right, min_questions)
    held_out = summary.pop("out_of_fold")
    summary["questions_scored"] = [
        {"id": e["id"], "question": e["question"], "answer": a, "score": s, "confidence": c, "right": r}
        for e, (a, s), c, r in zip(examples, answers, held_out, right)
    ]
    return summary


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """RUN/validation.json + student/ + index/ -> RUN/calibration.json."""
    run.require(STUDENT, VALIDATION, INDEX)
    examples = [e for e in squad_examples(load_squad(run.path(VALIDATION))) if e["question"].strip()]
    asker = Asker(run.root, cfg=cfg, calibrator=Calibrator())  # scores only: the run's old calibration is being replaced
    batch = cfg.train.eval_batch_size
    minimum = cfg.answer.calibration_min_questions
    result = {
        "right": f"SQuAD F1 >= {RIGHT_F1} against a gold answer",
        "student_sha256": trained_student_sha256(run.root),
        "open": calibrate(examples, open_answers(asker, examples, batch, run.quiet), minimum),
        "context": calibrate(examples, context_answers(asker, examples, batch, run.quiet), minimum),
    }
    write_json(run.path(CALIBRATION), result)
    summary = {"validation_questions": len(examples)}
    for way in ("open", "context"):
        summary[f"{way}_right"] = result[way]["right"]
        summary[f"{way}_ece"] = result[way]["ece"]
        summary[f"{way}_ece_raw_score"] = result[way]["ece_raw_score"]
    return summary

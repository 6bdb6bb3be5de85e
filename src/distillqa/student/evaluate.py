"""Scoring a reader on SQuAD questions, and the `evaluate` stage.

The metrics are `student.metrics` (the official SQuAD v1.1 ones). The stage scores the untrained student (the base encoder with the same seeded, fresh QA head training
starts from) next to the distilled one, so the report shows what distillation bought.
"""

from __future__ import annotations

import time
from pathlib import Path

from distillqa.config import Config
from distillqa.console import track
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.errors import DistillqaError
from distillqa.io import write_json
from distillqa.layout import EVAL, STUDENT, VALIDATION, RunFolder
from distillqa.student.metrics import score_examples
from distillqa.student.reader import Reader, load_base_student


def predict(
    reader: Reader,
    examples: list[dict],
    batch_size: int = 32,
    max_answer_length: int = 30,
    quiet: bool = True,
    description: str = "reading",
) -> tuple[dict[str, str], float]:
    """Best answer text per example id, and milliseconds of reading per question."""
    predictions: dict[str, str] = {}
    started = time.perf_counter()
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in track(batches, len(batches), description, quiet):
        questions, contexts = [e["question"] for e in batch], [e["context"] for e in batch]
        found = reader.answer(questions, contexts, max_answer_length=max_answer_length, batch_size=batch_size)
        predictions.update((e["id"], spans[0].text if spans else "") for e, spans in zip(batch, found))
    ms = 1000 * (time.perf_counter() - started) / max(1, len(examples))
    return predictions, ms


def score_reader(
    reader: Reader,
    examples: list[dict],
    batch_size: int = 32,
    max_answer_length: int = 30,
    quiet: bool = True,
    description: str = "reading",
) -> dict:
    """{"exact_match", "f1", "n", "ms_per_question"} of `reader` on flattened SQuAD examples."""
    predictions, ms = predict(reader, examples, batch_size, max_answer_length, quiet, description)
    return {**score_examples(examples, predictions), "ms_per_question": round(ms, 2)}


def evaluate_file(model_dir: Path, squad_path: Path, batch_size: int = 32) -> dict:
    """Score a trained reader (model folder or run folder) on any SQuAD v1.1 file."""
    examples = squad_examples(load_squad(squad_path))
    if not examples:
        raise DistillqaError(f"{squad_path}: the file has no questions to score")
    return score_reader(Reader.load(model_dir), examples, batch_size)


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """Score the untrained baseline and the distilled student on RUN/validation.json -> eval.json."""
    run.require(STUDENT, VALIDATION)
    examples = squad_examples(load_squad(run.path(VALIDATION)))
    n = len(examples)
    if n == 0:
        note = "validation.json has no questions: nothing was scored"
        write_json(run.path(EVAL), {"baseline": None, "distilled": None, "validation_questions": 0, "note": note})
        run.log.warning("evaluate: %s has no questions; skipped scoring", run.path(VALIDATION))
        return {"validation_questions": 0}
    window = {"max_length": cfg.train.max_length, "doc_stride": cfg.train.doc_stride}
    model, tokenizer = load_base_student(cfg.train.student, cfg.train.seed)
    score = {"max_answer_length": cfg.train.max_answer_length, "quiet": run.quiet}
    baseline = score_reader(Reader(model, tokenizer, **window), examples, description="baseline", **score)
    distilled = score_reader(Reader.load(run.path(STUDENT), **window), examples, description="distilled", **score)
    write_json(run.path(EVAL), {"baseline": baseline, "distilled": distilled, "validation_questions": n})
    return {
        "validation_questions": n,
        "baseline_exact_match": round(baseline["exact_match"], 2),
        "baseline_f1": round(baseline["f1"], 2),
        "distilled_exact_match": round(distilled["exact_match"], 2),
        "distilled_f1": round(distilled["f1"], 2),
        "ms_per_question": distilled["ms_per_question"],
    }

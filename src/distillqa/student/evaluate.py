"""Scoring a reader on SQuAD questions, and the `evaluate` stage.

The metrics are `student.metrics` (the official SQuAD v1.1 ones). The stage scores the untrained
student (the base encoder with the same seeded, fresh QA head training starts from) next to the
distilled one, so the report shows what distillation bought. It writes the totals to `eval.json`
and each question's answers to `eval_predictions.json`:

    {id: {"question": str, "answers": [gold texts], "baseline": str, "distilled": str}}

With corrections from the web UI (RUN/feedback.jsonl, `distillqa.student.feedback`), `eval.json`
also scores their gold pairs, in reader mode, before and after (`score_feedback`):

    "feedback": {"n": int, "before": {EM, F1 of the answers the users were shown},
                 "after": {EM, F1 of the distilled student}, "questions": [{"id", "question",
                 "gold", "shown", "distilled"}, ...]}

`evaluate_file` scores any SQuAD v1.1 file in reader mode (question + gold paragraph) and can write
`{id: answer text}`, the format of transformers' run_qa.py `eval_predictions.json`. Open mode
(question alone, retrieval + reader) needs the passage index and lives in `app.ask`.
"""

from __future__ import annotations

import time
from typing import Any
from pathlib import Path


from distillqa.config import Config, TrainConfig
from distillqa.console import track_batches
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.errors import DistillqaError
from distillqa.io import write_json
from distillqa.layout import (
    EVAL,
    EVAL_PREDICTIONS,
    FEEDBACK,
    STUDENT,
    VALIDATION,
    RunFolder,
)
from distillqa.student.feedback import feedback_examples, load_feedback
from distillqa.student.metrics import score_examples
from distillqa.student.ranking import AnswerRanker, CachedEncoder, SentenceEncoder
from distillqa.student.reader import Reader, load_base_student, load_reader

# The default lives in config.py; these functions are also called without a config (tests, benchmarks).
DEFAULT_BATCH_SIZE: int = TrainConfig.model_fields["eval_batch_size"].default


def predict(
    reader: Reader,
    examples: list[dict],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_answer_length: int = 30,
    quiet: bool = True,
    description: str = "reading",
    ranker: AnswerRanker | None = None,
) -> tuple[dict[str, str], float]:
    """Best answer text per example id, and milliseconds of reading per question. With a `ranker`,
    the best of the reader's `n_best` spans by the ranker's score, else the reader's first."""
    predictions: dict[str, str] = {}
    top_k = ranker.cfg.n_best if ranker is not None else 1
    started = time.perf_counter()
    for batch in track_batches(examples, batch_size, description, quiet):
        questions, contexts = [e["question"] for e in batch], [e["context"] for e in batch]
        found = reader.answer(questions, contexts, top_k=top_k, max_answer_length=max_answer_length, batch_size=batch_size)
        if ranker is not None:
            found = [[r.answer for r in ranker.rank(q, [c], [spans])] for q, c, spans in zip(questions, contexts, found)]
        predictions.update((e["id"], spans[0].text if spans else "") for e, spans in zip(batch, found))
    ms = 1000 * (time.perf_counter() - started) / max(1, len(examples))
    return predictions, ms


def score_reader(reader: Reader, examples: list[dict], **predict_args: Any) -> tuple[dict, dict[str, str]]:
    """({"exact_match", "f1", "n", "ms_per_question"}, {id: answer text}) of `reader` on flattened
    SQuAD examples: the totals and the answers they were computed from (`predict_args` as `predict`)."""
    predictions, ms = predict(reader, examples, **predict_args)
    return {**score_examples(examples, predictions), "ms_per_question": round(ms, 2)}, predictions


def load_ranker(cfg: Config, encode: SentenceEncoder | None = None) -> AnswerRanker:
    """The answer ranker of `cfg.answer`; its sentence encoder is `encode`, else the retrieval
    embedder (loaded only when sentence selection is on)."""
    if encode is None and cfg.answer.sentence_sharpness > 0:
        from distillqa.retrieval.index import SentenceTransformerEncoder

        encode = CachedEncoder(SentenceTransformerEncoder(cfg.retrieval.embedder).encode)
    return AnswerRanker(cfg.answer, encode)


def load_examples(squad_path: Path) -> list[dict]:
    """The flattened questions of a SQuAD v1.1 file to score; a file without any is an error."""
    examples = squad_examples(load_squad(squad_path))
    if not examples:
        raise DistillqaError(f"{squad_path}: the file has no questions to score")
    return examples


def check_predictions_path(path: Path | None) -> None:
    """Fail before any reading (minutes on a big file) when the predictions cannot be written there."""
    if path is not None and Path(path).is_dir():
        raise DistillqaError(f"{path}: is a folder: give --predictions a file name, e.g. {Path(path) / 'predictions.json'}")


def write_predictions(path: Path, predictions: dict[str, str]) -> None:
    """`{id: answer text}`, as transformers' run_qa.py writes eval_predictions.json."""
    write_json(Path(path), predictions)


def evaluate_file(
    model_dir: Path,
    squad_path: Path,
    cfg: Config | None = None,
    predictions_path: Path | None = None,
    quiet: bool = True,
) -> dict:
    """Score a trained reader (model folder or run folder) on any SQuAD v1.1 file in reader mode:
    each question is read with its gold paragraph, answers chosen as `cfg.answer` says. Returns the
    totals and `"mode": "reader"`."""
    cfg = cfg or Config()
    check_predictions_path(predictions_path)
    examples = load_examples(squad_path)
    reader = load_reader(model_dir, cfg.answer.reader_runtime)
    scores, predictions = score_reader(
        reader, examples, batch_size=cfg.train.eval_batch_size, max_answer_length=cfg.train.max_answer_length,
        quiet=quiet, description="reader mode", ranker=load_ranker(cfg),
    )
    if predictions_path is not None:
        write_predictions(predictions_path, predictions)
    return {**scores, "mode": "reader", "reader_runtime": reader.runtime}


def score_feedback(reader: Reader, examples: list[dict], **predict_args: Any) -> dict:
    """Before and after on the gold pairs of the web UI's corrections (`feedback_examples`):
    the answers the users were shown, and `reader`'s, reading each question with its passage."""
    shown = {e["id"]: e["shown"] for e in examples}
    after, answers = score_reader(reader, examples, description="feedback", **predict_args)
    rows = [
        {"id": e["id"], "question": e["question"], "gold": e["answers"][0]["text"], "shown": e["shown"], "distilled": answers.get(e["id"], "")}
        for e in examples
    ]
    return {"n": len(examples), "before": score_examples(examples, shown), "after": after, "questions": rows}


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """Score the untrained baseline and the distilled student on RUN/validation.json -> eval.json
    (totals) and eval_predictions.json (each question's gold and both students' answers); and the
    distilled student on the corrections of RUN/feedback.jsonl, when there are any."""
    run.require(STUDENT, VALIDATION)
    examples = squad_examples(load_squad(run.path(VALIDATION)))
    feedback = feedback_examples(load_feedback(run.path(FEEDBACK)))
    n = len(examples)
    score = {
        "batch_size": cfg.train.eval_batch_size,
        "max_answer_length": cfg.train.max_answer_length,
        "quiet": run.quiet,
    }
    if n == 0:
        note = "validation.json has no questions: nothing was scored"
        totals = {"baseline": None, "distilled": None, "validation_questions": 0, "note": note}
        if feedback:
            totals["feedback"] = score_feedback(load_reader(run.root, cfg.answer.reader_runtime), feedback, ranker=load_ranker(cfg), **score)
        write_json(run.path(EVAL), totals)
        write_json(run.path(EVAL_PREDICTIONS), {})
        run.log.warning("evaluate: %s has no questions; skipped scoring", run.path(VALIDATION))
        return {"validation_questions": 0, **_feedback_summary(totals)}
    window = {"max_length": cfg.train.max_length, "doc_stride": cfg.train.doc_stride}
    model, tokenizer = load_base_student(cfg.train.student, cfg.train.seed)
    score["ranker"] = load_ranker(cfg)
    baseline, baseline_answers = score_reader(Reader(model, tokenizer, **window), examples, description="baseline", **score)
    reader = load_reader(run.root, cfg.answer.reader_runtime)
    distilled, distilled_answers = score_reader(reader, examples, description="distilled", **score)
    per_question = {
        e["id"]: {
            "question": e["question"],
            "answers": [a["text"] for a in e["answers"]],
            "baseline": baseline_answers.get(e["id"], ""),
            "distilled": distilled_answers.get(e["id"], ""),
        }
        for e in examples
    }
    write_json(run.path(EVAL_PREDICTIONS), per_question)
    totals = {"baseline": baseline, "distilled": distilled, "validation_questions": n, "reader_runtime": reader.runtime}
    if feedback:
        totals["feedback"] = score_feedback(reader, feedback, **score)
    write_json(run.path(EVAL), totals)
    return {
        "validation_questions": n,
        "baseline_exact_match": round(baseline["exact_match"], 2),
        "baseline_f1": round(baseline["f1"], 2),
        "distilled_exact_match": round(distilled["exact_match"], 2),
        "distilled_f1": round(distilled["f1"], 2),
        "ms_per_question": distilled["ms_per_question"],
        "reader_runtime": reader.runtime,
        **_feedback_summary(totals),
    }


def _feedback_summary(totals: dict) -> dict:
    """The stage summary's part for the corrections: their count and F1 before and after."""
    scored = totals.get("feedback")
    if scored is None:
        return {}
    return {"feedback_pairs": scored["n"], "feedback_f1_before": round(scored["before"]["f1"], 2), "feedback_f1_after": round(scored["after"]["f1"], 2)}

"""Fine-tune the student reader on the generated SQuAD files (the `train` stage).

The student is any encoder with a fast tokenizer (an HF id, a local folder, or the bundled
MiniLM) with a fresh, seeded span head. Training is the HF `Trainer` on the windows of
`distillqa.student.features` (padded per batch, not to 384: most windows are far shorter). After
every epoch the model reads the validation questions with the real `Reader` and is scored with
the official SQuAD EM/F1; the epoch with the best F1 is kept. With no validation questions the
last epoch is kept.

Corrections people made in the web UI (RUN/feedback.jsonl, `distillqa.student.feedback`) join the
training set as gold pairs, never the validation set: scoring the student on what it was just
taught would say nothing. Each counts `feedback.weight` times, as that many copies: a handful of
corrections among thousands of generated pairs would otherwise barely move the model, and copies
weight them inside the Trainer's own loss and shuffling (each copy is another draw, every window
of it included) with no custom loss, the same on one process or several.

`RUN/student/` ends up holding only the final model: weights (safetensors), config, tokenizer,
`README.md` (a model card with data statistics, settings and scores) and `training_log.json`:

    {"base_model": str, "precision": "fp32"|"bf16"|"fp16", "train_seconds": float,
     "best_epoch": float | null, "best_f1": float | null,
     "train": [{"step", "epoch", "loss", "learning_rate"}, ...],   # about 50 points
     "eval":  [{"step", "epoch", "exact_match", "f1"}, ...]}       # one per epoch

Checkpoints go to `RUN/.student.work/`, the result is assembled in `RUN/.student.tmp/` and
renamed into place, so a crash never leaves a half-written `student/`.

Launched by `torchrun --nproc_per_node N` or `accelerate launch` (`distillqa train RUN`), the
Trainer trains with DDP: `train.batch_size` stays the global batch (each process takes its
share), every process scores the validation set itself (so all agree on the best epoch), and
only rank 0 writes checkpoints and `student/`; the others wait for it before they exit.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorWithPadding,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainingArguments,
)

from distillqa.config import Config, TrainConfig
from distillqa.dataset.squad import load_squad, squad_examples
from distillqa.errors import DistillqaError
from distillqa.io import atomic_dir
from distillqa.layout import FEEDBACK, STUDENT, TRAIN, VALIDATION, RunFolder
from distillqa.models import cuda_precision
from distillqa.runtime import launch_world_size
from distillqa.student.evaluate import predict
from distillqa.student.feedback import feedback_examples, load_feedback
from distillqa.student.features import prepare_eval_features, prepare_train_features
from distillqa.student.metrics import score_examples
from distillqa.student.reader import Reader, load_base_student, quiet_transformers, save_window

log = logging.getLogger("distillqa")
LOG_POINTS = 50  # training-loss points in training_log.json, whatever the data size


class _SquadTrainer(Trainer):
    """A Trainer whose evaluation reads `eval_dataset` (SQuAD examples) with the real Reader.

    Scoring the actual answers, with the same postprocessing as inference, is what the best
    checkpoint should be chosen by; the Trainer's own loop only sees logits.
    """

    def __init__(self, *args: Any, window: dict[str, int], max_answer_length: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.window = window
        self.max_answer_length = max_answer_length

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        examples = self.eval_dataset if eval_dataset is None else eval_dataset
        reader = Reader(self.model, self.processing_class, device=self.args.device, **self.window)
        predictions, _ = predict(reader, examples, self.args.per_device_eval_batch_size, self.max_answer_length)
        scores = score_examples(examples, predictions)
        metrics = {f"{metric_key_prefix}_exact_match": scores["exact_match"], f"{metric_key_prefix}_f1": scores["f1"]}
        log.info("train: epoch %.2f: validation EM %.2f F1 %.2f", self.state.epoch or 0, scores["exact_match"], scores["f1"])
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class _EvalOnlyProgress(ProgressCallback):
    """The usual progress bar, printing only the per-epoch scores (losses go to training_log.json)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and "eval_f1" in logs:
            super().on_log(args, state, control, logs=logs, **kwargs)


def _training_log(history: list[dict], base_model: str, precision: str, seconds: float) -> dict:
    """The Trainer's log history reshaped into the loss and F1 curves (see the module doc)."""
    train = [
        {"step": h["step"], "epoch": h["epoch"], "loss": h["loss"], "learning_rate": h.get("learning_rate")}
        for h in history
        if "loss" in h
    ]
    evals = [
        {"step": h["step"], "epoch": h["epoch"], "exact_match": h["eval_exact_match"], "f1": h["eval_f1"]}
        for h in history
        if "eval_f1" in h
    ]
    best = max(evals, key=lambda e: e["f1"], default=None)  # first of equals, as the Trainer keeps it
    return {
        "base_model": base_model,
        "precision": precision,
        "train_seconds": round(seconds, 2),
        "best_epoch": best["epoch"] if best else None,
        "best_f1": best["f1"] if best else None,
        "train": train,
        "eval": evals,
    }


def _model_card(base_model: str, stats: dict[str, int], cfg: TrainConfig, training_log: dict, parameters: int) -> str:
    """README.md for the student folder: where it came from, on what data, with which settings."""
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: question-answering",
        "tags: [distillqa, extractive-qa, squad]",
        "---",
        "",
        "# distillqa student reader",
        "",
        f"An extractive question-answering reader ({parameters:,} parameters) fine-tuned by distillqa from "
        f"`{base_model}` on question/answer pairs that a teacher LLM wrote about the user's documents.",
        "Load it with `distillqa.student.reader.Reader.load(path)` or `AutoModelForQuestionAnswering.from_pretrained(path)`.",
        "",
        "## Data",
        "",
        "| split | questions | windows |",
        "|---|---:|---:|",
        f"| train | {stats['train_questions']} | {stats['train_windows']} |",
        f"| validation | {stats['validation_questions']} | {stats['validation_windows']} |",
        "",
        *(
            [f"Train also holds {stats['feedback_pairs']} corrections made in the web UI, {stats['feedback_copies']} copies of each.", ""]
            if stats["feedback_pairs"]
            else []
        ),
        f"Windows are {cfg.max_length} tokens with a {cfg.doc_stride}-token stride; a question can need several.",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
        f"| epochs | {cfg.epochs} |",
        f"| learning rate | {cfg.learning_rate} (linear decay, warmup ratio {cfg.warmup_ratio}) |",
        f"| batch size | {cfg.batch_size} |",
        f"| weight decay | {cfg.weight_decay} |",
        f"| seed | {cfg.seed} |",
        f"| precision | {training_log['precision']} |",
        f"| seconds | {training_log['train_seconds']} |",
        "",
        "## Validation (SQuAD v1.1 exact match / F1, %)",
        "",
    ]
    if training_log["eval"]:
        lines += ["| epoch | exact match | F1 |", "|---:|---:|---:|"]
        lines += [f"| {e['epoch']:g} | {e['exact_match']:.2f} | {e['f1']:.2f} |" for e in training_log["eval"]]
        lines += ["", f"Kept: epoch {training_log['best_epoch']:g} (best F1)."]
    else:
        lines += ["No validation questions: not scored; the last epoch is kept."]
    return "\n".join(lines) + "\n"


def _training_args(cfg: TrainConfig, work: Path, precision: str, scored: bool, quiet: bool) -> TrainingArguments:
    """Trainer settings: per-epoch scoring and keep-the-best when there is validation data."""
    return TrainingArguments(
        output_dir=str(work),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=per_process_batch(cfg.batch_size),
        per_device_eval_batch_size=cfg.eval_batch_size,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of all steps in transformers 5
        logging_strategy="steps",
        logging_steps=1 / LOG_POINTS,  # likewise a ratio
        eval_strategy="epoch" if scored else "no",
        save_strategy="best" if scored else "no",  # write a checkpoint only when F1 improves
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=scored,
        metric_for_best_model="f1" if scored else None,
        greater_is_better=True,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        seed=cfg.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # so a torchrun launch without GPUs is DDP over gloo
        ddp_find_unused_parameters=False,  # every parameter is used: no extra graph walk per step
        disable_tqdm=quiet or not sys.stderr.isatty(),  # no bar spam in logs and pipes
        report_to="none",
    )


def per_process_batch(batch_size: int) -> int:
    """Each process's share of the global `train.batch_size`, so N processes take the same steps
    as one and their scores stay comparable."""
    world = launch_world_size()
    if batch_size % world:
        log.warning("train: batch_size %d is not a multiple of %d processes: each takes %d", batch_size, world, max(1, batch_size // world))
    return max(1, batch_size // world)


def train_reader(
    train_file: Path,
    validation_file: Path,
    output_dir: Path,
    cfg: TrainConfig,
    quiet: bool = False,
    feedback: list[dict] | None = None,
    feedback_copies: int = 1,
) -> dict:
    """Fine-tune the student and save the best model to `output_dir`. Returns the stage summary.
    `feedback`: gold pairs (`feedback_examples`) trained on as `feedback_copies` copies each."""
    feedback = feedback or []
    generated = squad_examples(load_squad(train_file))
    train_examples = generated + [e for e in feedback for _ in range(feedback_copies)]
    if not train_examples:
        raise DistillqaError(f"{train_file}: no training questions; see dataset_summary.json for why pairs were dropped")
    validation = squad_examples(load_squad(validation_file))
    model, tokenizer = load_base_student(cfg.student, cfg.seed)
    base_model = cfg.student or "all-MiniLM-L6-v2 (bundled)"
    features = prepare_train_features(train_examples, tokenizer, cfg.max_length, cfg.doc_stride)
    stats = {
        "train_questions": len(generated),
        "feedback_pairs": len(feedback),
        "feedback_copies": feedback_copies,
        "train_windows": len(features),
        "validation_questions": len(validation),
        "validation_windows": len(
            prepare_eval_features([e["question"] for e in validation], [e["context"] for e in validation], tokenizer, cfg.max_length, cfg.doc_stride)
        ),
    }
    precision = cuda_precision()
    scored = bool(validation)
    work = output_dir.parent / f".{output_dir.name}.work"
    args = _training_args(cfg, work, precision, scored, quiet)
    trainer = _SquadTrainer(
        model=model,
        args=args,
        train_dataset=features,
        eval_dataset=validation or None,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=None if precision == "fp32" else 8),
        processing_class=tokenizer,
        window={"max_length": cfg.max_length, "doc_stride": cfg.doc_stride},
        max_answer_length=cfg.max_answer_length,
    )
    if args.disable_tqdm:  # quiet, or not a terminal: no bars and no loss dicts in logs and pipes
        trainer.remove_callback(PrinterCallback)
    else:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_EvalOnlyProgress)
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()  # no process starts before the old checkpoints are gone
    log.info(
        "train: %d questions + %d feedback pairs x %d (%d windows), %s epochs, %s on %s",
        stats["train_questions"], stats["feedback_pairs"], feedback_copies, stats["train_windows"], cfg.epochs, precision, args.device,
    )
    try:
        with quiet_transformers():  # the Trainer's own bar stays; checkpoint-writing bars go
            started = time.time()
            trainer.train()
            seconds = time.time() - started
        training_log = _training_log(trainer.state.log_history, base_model, precision, seconds)
        parameters = sum(p.numel() for p in trainer.model.parameters())
        if main:
            with atomic_dir(output_dir) as tmp, quiet_transformers():
                trainer.model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                # plain writes: the whole folder is renamed into place only once complete
                (tmp / "training_log.json").write_text(json.dumps(training_log, indent=2), encoding="utf-8")
                save_window(tmp, cfg.max_length, cfg.doc_stride)
                (tmp / "README.md").write_text(_model_card(base_model, stats, cfg, training_log, parameters), encoding="utf-8")
        trainer.accelerator.wait_for_everyone()  # the others exit once student/ is in place
    finally:
        if main:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "train_questions": stats["train_questions"],
        "feedback_pairs": stats["feedback_pairs"],
        "train_windows": stats["train_windows"],
        "epochs": cfg.epochs,
        "seconds": round(seconds, 1),
        "best_f1": None if training_log["best_f1"] is None else round(training_log["best_f1"], 2),
        "parameters": parameters,
    }


def run_stage(run: RunFolder, cfg: Config) -> dict:
    """The `train` stage: RUN/train.json + RUN/validation.json (+ RUN/feedback.jsonl) -> RUN/student/."""
    run.require(TRAIN, VALIDATION)
    feedback = feedback_examples(load_feedback(run.path(FEEDBACK))) if cfg.feedback.weight else []
    return train_reader(
        run.path(TRAIN), run.path(VALIDATION), run.path(STUDENT), cfg.train, quiet=run.quiet,
        feedback=feedback, feedback_copies=cfg.feedback.weight,
    )

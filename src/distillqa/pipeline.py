"""The pipeline: stage order, what each stage reads, writes and depends on, and resume.

A stage's fingerprint hashes the settings that change its output (its config sections, less the
settings config.py marks NOT_HASHED) and the content of the files it reads, so a finished stage
reruns only when an input or one of those settings changed, and everything after it follows
because its own inputs then change. When a stage finishes, the manifest records what it wrote
(bytes, sha256, line count: `layout.describe`); a file torn by a kill, cut short or edited no
longer matches, so the stage counts as not done and the next stage refuses it in one line.
Outputs are replaced only when the stage succeeds (atomic writes), so an interrupted rerun
keeps the previous model. Stage functions are named by "module:function" strings and imported
only when they run, so `distillqa ingest` never loads torch, and no stage module imports this one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from distillqa import __version__
from distillqa.config import TEACHER_SETTINGS, Config
from distillqa.console import UP_TO_DATE
from distillqa.runtime import launch_rank
from distillqa.layout import (
    CALIBRATION,
    CHUNKS,
    DATASET_SUMMARY,
    DOCUMENTS,
    EVAL,
    EVAL_PREDICTIONS,
    FEEDBACK,
    GENERATE_SUMMARY,
    GENERATIONS,
    INDEX,
    QA,
    REPORT_JSON,
    REPORT_MD,
    STUDENT,
    STUDENT_ONNX,
    TRAIN,
    VALIDATION,
    RunFolder,
    describe,
    hash_path,
)

_PACKAGES = ("torch", "transformers", "llama_cpp_python", "sentence-transformers", "pypdfium2", "bm25s")


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: what it reads, writes and depends on, and the function that runs it."""

    name: str
    target: str  # "module:function" taking (Run, Config) and returning a summary dict
    sections: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # Read when present, not required: the export, which evaluate reads with when there is one;
    # the web UI's feedback, which train learns from
    optional_inputs: tuple[str, ...] = ()
    # Runs in every process of a torchrun/accelerate launch (DDP training); other stages, and all
    # the run folder's bookkeeping, are rank 0's alone
    distributed: bool = False

    def func(self) -> Callable[[RunFolder, Config], dict]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "distillqa.ingest:run_stage", ("ingest",), (), (DOCUMENTS,)),
    Stage(
        "chunk",
        "distillqa.chunk:run_stage",
        ("chunk", "teacher.backend", "teacher.model"),  # the teacher's tokenizer sizes chunks
        (DOCUMENTS,),
        (CHUNKS,),
    ),
    # what the teacher writes for a chunk (TEACHER_SETTINGS: also its cache key) and which chunks;
    # unfinished work survives a kill in RUN/teacher_cache.jsonl, not in the stage's outputs
    Stage(
        "generate",
        "distillqa.teacher.generate:run_stage",
        (*TEACHER_SETTINGS, "generate.max_chunks"),
        (CHUNKS,),
        (GENERATIONS, GENERATE_SUMMARY),
    ),
    Stage(
        "build-dataset",
        "distillqa.dataset.build:run_stage",
        ("dataset", "questions"),  # questions: span clozes
        (DOCUMENTS, CHUNKS, GENERATIONS),
        (QA, TRAIN, VALIDATION, DATASET_SUMMARY),
    ),
    # feedback: the web UI's corrections (written by `serve`, no stage), trained on as gold pairs
    Stage(
        "train",
        "distillqa.student.train:run_stage",
        ("train", "feedback.weight"),
        (TRAIN, VALIDATION),
        (STUDENT,),
        optional_inputs=(FEEDBACK,),
        distributed=True,
    ),
    Stage("export", "distillqa.student.export:run_stage", ("export",), (STUDENT,), (STUDENT_ONNX,)),
    # answer: how answers are chosen (and read: answer.reader_runtime); retrieval.embedder: the
    # sentence encoder of the answer ranker
    Stage(
        "evaluate",
        "distillqa.student.evaluate:run_stage",
        ("train", "answer", "retrieval.embedder"),
        (STUDENT, VALIDATION),
        (EVAL, EVAL_PREDICTIONS),
        optional_inputs=(STUDENT_ONNX, FEEDBACK),  # feedback: scored before and after
    ),
    # retrieval's query-time settings (top_k, rrf_k, ...) are NOT_HASHED: `ask` reads them from config.yaml
    Stage("index", "distillqa.retrieval.index:run_stage", ("retrieval",), (DOCUMENTS,), (INDEX,)),
    # the confidence of answers, fitted on the validation questions asked as a user asks them
    Stage(
        "calibrate",
        "distillqa.app.calibrate:run_stage",
        ("answer", "retrieval"),
        (STUDENT, VALIDATION, INDEX),
        (CALIBRATION,),
        optional_inputs=(STUDENT_ONNX,),
    ),
    Stage(
        "report",
        "distillqa.app.report:run_stage",
        (),
        (DOCUMENTS, CHUNKS, DATASET_SUMMARY, GENERATE_SUMMARY, EVAL, EVAL_PREDICTIONS, STUDENT),
        (REPORT_MD, REPORT_JSON),
        optional_inputs=(CALIBRATION,),
    ),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}


class Run(RunFolder):
    """A run folder that runs stages: fingerprints, the up-to-date check, the manifest's records."""

    def fingerprint(self, stage: Stage, cfg: Config) -> str:
        """What the stage's output depends on: its hashed settings and its input files' content."""
        h = hashlib.sha256(stage.name.encode())
        h.update(cfg.section_hash(*stage.sections).encode() if stage.sections else b"")
        if stage.name == "ingest":
            for item in self.manifest.get("inputs", []):
                h.update(f"{item['path']}:{item['sha256']}".encode())
        for name in (*stage.inputs, *stage.optional_inputs):
            h.update(name.encode())
            hash_path(self.path(name), h)
        return h.hexdigest()[:16]

    def is_current(self, stage: Stage, cfg: Config, fingerprint: str | None = None) -> bool:
        """Done with the same fingerprint, and every output still what the stage wrote."""
        rec = self.manifest["stages"].get(stage.name)
        if rec is None or rec.get("status") != "done" or rec.get("fingerprint") != (fingerprint or self.fingerprint(stage, cfg)):
            return False
        for name in stage.outputs:
            problem = "is missing" if not self.path(name).exists() else self.output_problem(name, stage.name)
            if problem:
                self.log.warning("%s %s: running `%s` again", self.path(name), problem, stage.name)
                return False
        return True

    def run_stage(self, stage: Stage, cfg: Config, force: bool = False) -> dict:
        """Run one stage unless it is already done with the same inputs and settings."""
        self.require(*stage.inputs)
        fp = self.fingerprint(stage, cfg)
        manifest = self.manifest
        rec = manifest["stages"].get(stage.name, {})
        if not force and self.is_current(stage, cfg, fp):
            self.log.info("stage %s: up to date, skipped", stage.name)
            return {UP_TO_DATE: True, **rec.get("summary", {})}
        if launch_rank() > 0:  # rank 0 of the launch records the stage; this process only trains
            return (stage.func()(self, cfg) or {}) if stage.distributed else {}
        started = time.time()
        manifest["stages"][stage.name] = {
            "status": "running",
            "fingerprint": fp,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        manifest.setdefault("created", manifest["stages"][stage.name]["started"])
        manifest["distillqa_version"] = __version__
        manifest["python"] = platform.python_version()
        manifest["packages"] = package_versions()
        manifest["config"] = cfg.model_dump(mode="json")
        self.save_manifest(manifest)
        self.log.info("stage %s: started", stage.name)
        try:
            summary = stage.func()(self, cfg) or {}
        except BaseException as e:
            manifest = self.manifest
            manifest["stages"][stage.name].update(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
            self.save_manifest(manifest)
            self.log.error("stage %s: failed: %s", stage.name, e)
            raise
        manifest = self.manifest
        manifest["stages"][stage.name].update(
            status="done",
            seconds=round(time.time() - started, 2),
            summary=summary,
            outputs={name: describe(self.path(name)) for name in stage.outputs if self.path(name).exists()},
        )
        self.save_manifest(manifest)
        self.log.info("stage %s: done in %.1fs", stage.name, time.time() - started)
        return summary


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out

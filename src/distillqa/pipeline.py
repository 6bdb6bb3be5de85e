"""The pipeline: stage order, what each stage reads, writes and depends on, and resume.

A stage's fingerprint hashes the settings that change its output (its config sections, less the
settings config.py marks NOT_HASHED) and the content of the files it reads, so a finished stage
reruns only when an input or one of those settings changed, and everything after it follows
because its own inputs then change. A resumable stage's scope (which chunks generate covers) is
kept apart: changing it reruns the stage on top of its output. Stage functions are named by
"module:function" strings and imported only when they run, so `distillqa ingest` never loads
torch, and no stage module imports this one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from distillqa import __version__
from distillqa.config import Config
from distillqa.layout import (
    CHUNKS,
    DATASET_SUMMARY,
    DOCUMENTS,
    EVAL,
    EVAL_PREDICTIONS,
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
    # Read when present, not required: the export, which evaluate reads with when there is one
    optional_inputs: tuple[str, ...] = ()
    resumable: bool = False  # keeps partial output across a crash (generation)
    # Settings that choose which items a resumable stage covers, not what it writes for each
    # (generate.max_chunks): changing one reruns the stage, which keeps its output and resumes.
    scope: tuple[str, ...] = ()

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
    Stage(
        "generate",
        "distillqa.teacher.generate:run_stage",
        # the question limits of answer candidates and the cloze fallback (span_answers: build-dataset's)
        (
            "teacher",
            "generate",
            "questions.max_answer_words",
            "questions.max_question_words",
            "questions.min_sentence_words",
        ),
        (CHUNKS,),
        (GENERATIONS, GENERATE_SUMMARY),
        resumable=True,
        scope=("generate.max_chunks",),
    ),
    Stage(
        "build-dataset",
        "distillqa.dataset.build:run_stage",
        # questions: span clozes; generate.max_chunks: only generations of chunks in generate's scope
        ("dataset", "questions", "generate.max_chunks"),
        (DOCUMENTS, CHUNKS, GENERATIONS),
        (QA, TRAIN, VALIDATION, DATASET_SUMMARY),
    ),
    Stage("train", "distillqa.student.train:run_stage", ("train",), (TRAIN, VALIDATION), (STUDENT,)),
    Stage("export", "distillqa.student.export:run_stage", ("export",), (STUDENT,), (STUDENT_ONNX,)),
    # answer: how answers are chosen (and read: answer.reader_runtime); retrieval.embedder: the
    # sentence encoder of the answer ranker
    Stage(
        "evaluate",
        "distillqa.student.evaluate:run_stage",
        ("train", "answer", "retrieval.embedder"),
        (STUDENT, VALIDATION),
        (EVAL, EVAL_PREDICTIONS),
        optional_inputs=(STUDENT_ONNX,),
    ),
    Stage(
        "report",
        "distillqa.app.report:run_stage",
        (),
        (DOCUMENTS, CHUNKS, DATASET_SUMMARY, GENERATE_SUMMARY, EVAL, EVAL_PREDICTIONS, STUDENT),
        (REPORT_MD, REPORT_JSON),
    ),
    # retrieval's query-time settings (top_k, rrf_k, ...) are NOT_HASHED: `ask` reads them from config.yaml
    Stage("index", "distillqa.retrieval.index:run_stage", ("retrieval",), (DOCUMENTS,), (INDEX,)),
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

    def scope_hash(self, stage: Stage, cfg: Config) -> str | None:
        """Which items the stage covers (see `Stage.scope`); None for a stage without a scope."""
        return cfg.section_hash(*stage.scope) if stage.scope else None

    def is_current(self, stage: Stage, cfg: Config, fingerprint: str | None = None) -> bool:
        """Done with the same fingerprint and scope, and every output still there."""
        rec = self.manifest["stages"].get(stage.name)
        return (
            rec is not None
            and rec.get("status") == "done"
            and rec.get("fingerprint") == (fingerprint or self.fingerprint(stage, cfg))
            and rec.get("scope") == self.scope_hash(stage, cfg)
            and all(self.path(o).exists() for o in stage.outputs)
        )

    def run_stage(self, stage: Stage, cfg: Config, force: bool = False) -> dict:
        """Run one stage unless it is already done with the same inputs and settings."""
        self.require(*stage.inputs)
        fp = self.fingerprint(stage, cfg)
        manifest = self.manifest
        rec = manifest["stages"].get(stage.name, {})
        if not force and self.is_current(stage, cfg, fp):
            self.log.info("stage %s: up to date, skipped", stage.name)
            return {"skipped": True, **rec.get("summary", {})}
        # A resumable stage keeps its output (finished or not) while its fingerprint holds: only
        # its scope or unhashed settings changed. Anything else made it from other settings.
        if not stage.resumable or rec.get("fingerprint") != fp or force:
            for out in stage.outputs:
                p = self.path(out)
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        started = time.time()
        scope = self.scope_hash(stage, cfg)
        manifest["stages"][stage.name] = {
            "status": "running",
            "fingerprint": fp,
            **({"scope": scope} if scope is not None else {}),
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
            status="done", seconds=round(time.time() - started, 2), summary=summary
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

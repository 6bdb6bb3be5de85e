"""Stage order, the run folder, its manifest, and resume.

A run folder holds every stage's artefacts plus `manifest.json` (config, package versions,
input hashes, per-stage status, timings, fingerprints) and `log.txt`. A stage's fingerprint
hashes the config sections it depends on and the content of the files it reads, so a finished
stage reruns only when an input or one of its settings changed, and everything after it follows
because its own inputs then change.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import logging
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from distillqa import __version__
from distillqa.config import Config, load_config
from distillqa.errors import DistillqaError
from distillqa.io import read_json, write_json

# Run-folder file names, shared by every stage.
CONFIG = "config.yaml"
MANIFEST = "manifest.json"
LOG = "log.txt"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
GENERATIONS = "generations.jsonl"
GENERATE_SUMMARY = "generate_summary.json"
QA = "qa.jsonl"
TRAIN = "train.json"
VALIDATION = "validation.json"
DATASET_SUMMARY = "dataset_summary.json"
STUDENT = "student"
EVAL = "eval.json"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
INDEX = "index"

_PACKAGES = ("torch", "transformers", "llama_cpp_python", "sentence-transformers", "pypdfium2", "bm25s")


class _StderrWarnings(logging.StreamHandler):
    """Prints WARNING records as `warning: ...` to whatever sys.stderr is at the time."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("warning: %(message)s"))
        self.addFilter(lambda record: record.levelno == logging.WARNING)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; sys.stderr is used instead
        pass


_CONSOLE_WARNINGS = _StderrWarnings()


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: what it reads, writes and depends on, and the function that runs it."""

    name: str
    target: str  # "module:function" taking (Run, Config) and returning a summary dict
    sections: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    resumable: bool = False  # keeps partial output across a crash (generation)

    def func(self) -> Callable[[Run, Config], dict]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "distillqa.ingest:run_stage", ("ingest",), (), (DOCUMENTS,)),
    Stage(
        "chunk",
        "distillqa.chunking:run_stage",
        ("chunk", "teacher.backend", "teacher.model"),  # the teacher's tokenizer sizes chunks
        (DOCUMENTS,),
        (CHUNKS,),
    ),
    Stage(
        "generate",
        "distillqa.teacher.generate:run_stage",
        ("teacher", "generate"),
        (CHUNKS,),
        (GENERATIONS, GENERATE_SUMMARY),
        resumable=True,
    ),
    Stage(
        "build-dataset",
        "distillqa.dataset.build:run_stage",
        ("dataset",),
        (DOCUMENTS, CHUNKS, GENERATIONS),
        (QA, TRAIN, VALIDATION, DATASET_SUMMARY),
    ),
    Stage("train", "distillqa.train:run_stage", ("train",), (TRAIN, VALIDATION), (STUDENT,)),
    Stage("evaluate", "distillqa.evaluate:run_stage", ("train",), (STUDENT, VALIDATION), (EVAL,)),
    Stage(
        "report",
        "distillqa.report:run_stage",
        (),
        (DOCUMENTS, CHUNKS, DATASET_SUMMARY, GENERATE_SUMMARY, EVAL, STUDENT),
        (REPORT_MD, REPORT_JSON),
    ),
    Stage("index", "distillqa.retrieval:run_stage", ("retrieval",), (DOCUMENTS,), (INDEX,)),
)
STAGE_BY_NAME = {s.name: s for s in STAGES}


def _hash_path(path: Path, h: "hashlib._Hash") -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                _hash_file(p, h)
    elif path.exists():
        _hash_file(path, h)


def _hash_file(path: Path, h: "hashlib._Hash") -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    _hash_file(path, h)
    return h.hexdigest()


class Run:
    """A run folder: paths, manifest, effective config and log."""

    def __init__(self, root: Path, quiet: bool = False):
        self.root = root
        self.quiet = quiet
        self.log = logging.getLogger("distillqa")

    # -- paths and state -------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def manifest(self) -> dict:
        p = self.path(MANIFEST)
        return read_json(p) if p.exists() else {"stages": {}, "inputs": []}

    def save_manifest(self, manifest: dict) -> None:
        write_json(self.path(MANIFEST), manifest)

    def config(self, config_file: Path | None = None, overrides: list[str] | None = None) -> Config:
        """The run's saved config, updated by a config file and overrides, then saved back."""
        saved = self.path(CONFIG)
        base = yaml.safe_load(saved.read_text(encoding="utf-8")) if saved.exists() else None
        cfg = load_config(config_file, overrides, base=base)
        if self.root.exists():
            self.save_config(cfg)
        return cfg

    def save_config(self, cfg: Config) -> None:
        from distillqa.io import atomic_open

        with atomic_open(self.path(CONFIG)) as f:
            yaml.safe_dump(cfg.model_dump(mode="json"), f, sort_keys=False)

    def require(self, *names: str) -> None:
        """Fail clearly when a stage is run before the stage that makes its input."""
        for name in names:
            if not self.path(name).exists():
                maker = next((s.name for s in STAGES if name in s.outputs), "an earlier stage")
                raise DistillqaError(f"{self.path(name)} not found: run `distillqa {maker} {self.root}` first")

    def setup_logging(self) -> None:
        """Log to RUN/log.txt (always, at INFO) in addition to the console."""
        self.root.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger("distillqa")
        logger.setLevel(logging.INFO)
        target = str(self.path(LOG).resolve())
        if not any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
            handler = logging.FileHandler(target, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        # Warnings (skipped files, pages without text) also go to the terminal unless --quiet;
        # errors are not: the CLI prints those itself, as one line.
        if _CONSOLE_WARNINGS not in logger.handlers:
            logger.addHandler(_CONSOLE_WARNINGS)
        _CONSOLE_WARNINGS.setLevel(logging.CRITICAL + 1 if self.quiet else logging.WARNING)

    # -- inputs ----------------------------------------------------------------------------
    def set_inputs(self, files: list[Path]) -> None:
        """Record the input documents (path, size, sha256) that `ingest` will read."""
        manifest = self.manifest
        manifest["inputs"] = [
            {"path": str(p.resolve()), "size": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        ]
        self.save_manifest(manifest)

    def input_files(self) -> list[Path]:
        inputs = self.manifest.get("inputs") or []
        if not inputs:
            raise DistillqaError(f"{self.root}: no input documents recorded: run `distillqa ingest PATH... --out {self.root}`")
        return [Path(i["path"]) for i in inputs]

    # -- stages ----------------------------------------------------------------------------
    def fingerprint(self, stage: Stage, cfg: Config) -> str:
        h = hashlib.sha256(stage.name.encode())
        h.update(cfg.section_hash(*stage.sections).encode() if stage.sections else b"")
        if stage.name == "ingest":
            for item in self.manifest.get("inputs", []):
                h.update(f"{item['path']}:{item['sha256']}".encode())
        for name in stage.inputs:
            h.update(name.encode())
            _hash_path(self.path(name), h)
        return h.hexdigest()[:16]

    def is_current(self, stage: Stage, cfg: Config) -> bool:
        rec = self.manifest["stages"].get(stage.name)
        return (
            rec is not None
            and rec.get("status") == "done"
            and rec.get("fingerprint") == self.fingerprint(stage, cfg)
            and all(self.path(o).exists() for o in stage.outputs)
        )

    def run_stage(self, stage: Stage, cfg: Config, force: bool = False) -> dict:
        """Run one stage unless it is already done with the same inputs and settings."""
        self.require(*stage.inputs)
        fp = self.fingerprint(stage, cfg)
        manifest = self.manifest
        rec = manifest["stages"].get(stage.name, {})
        if not force and self.is_current(stage, cfg):
            self.log.info("stage %s: up to date, skipped", stage.name)
            return {"skipped": True, **rec.get("summary", {})}
        if not stage.resumable or rec.get("fingerprint") != fp or force:
            for out in stage.outputs:  # stale partial output from other settings
                p = self.path(out)
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
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

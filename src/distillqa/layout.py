"""The run folder: its file names, which stage makes each, and the `RunFolder` every stage gets.

Stage modules import this module, never `pipeline` (which imports them by name), so the package
has no import cycle. `pipeline.Run` adds fingerprints and stage running on top of `RunFolder`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from distillqa.config import Config, load_config
from distillqa.errors import DistillqaError
from distillqa.io import atomic_open, read_json, write_json
from distillqa.runtime import launch_rank

# Run-folder file names, shared by every stage.
CONFIG = "config.yaml"
MANIFEST = "manifest.json"
LOG = "log.txt"
LOCK = ".lock"  # holds the PID of the process working in the run folder (see `RunFolder.lock`)
TEACHER_CACHE = "teacher_cache.jsonl"  # every chunk's teacher output, kept across stage reruns
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
GENERATIONS = "generations.jsonl"
GENERATE_SUMMARY = "generate_summary.json"
QA = "qa.jsonl"
TRAIN = "train.json"
VALIDATION = "validation.json"
DATASET_SUMMARY = "dataset_summary.json"
STUDENT = "student"
STUDENT_ONNX = "student_onnx"
EVAL = "eval.json"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
INDEX = "index"
EVAL_PREDICTIONS = "eval_predictions.json"
# corrections from the web UI: appended by `serve` (its only write), read by train and evaluate;
# made by no stage, so not in MADE_BY
FEEDBACK = "feedback.jsonl"
CALIBRATION = "calibration.json"  # score -> confidence, fitted on the validation questions

# The stage that writes each file, for "run `distillqa STAGE RUN` first" hints (test_imports
# checks it against pipeline.STAGES).
MADE_BY = {
    DOCUMENTS: "ingest",
    CHUNKS: "chunk",
    GENERATIONS: "generate",
    GENERATE_SUMMARY: "generate",
    QA: "build-dataset",
    TRAIN: "build-dataset",
    VALIDATION: "build-dataset",
    DATASET_SUMMARY: "build-dataset",
    STUDENT: "train",
    STUDENT_ONNX: "export",
    EVAL: "evaluate",
    EVAL_PREDICTIONS: "evaluate",
    REPORT_MD: "report",
    REPORT_JSON: "report",
    INDEX: "index",
    CALIBRATION: "calibrate",
}


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


def hash_path(path: Path, h: "hashlib._Hash") -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                hash_file(p, h)
    elif path.exists():
        hash_file(path, h)


def hash_file(path: Path, h: "hashlib._Hash") -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    hash_file(path, h)
    return h.hexdigest()


def describe(path: Path) -> dict:
    """What a stage wrote, as the manifest keeps it: bytes and sha256 of a file (and its line
    count, for a JSONL file), or of every file in a folder. `RunFolder.output_problem` compares."""
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        h = hashlib.sha256()
        hash_path(path, h)
        return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "sha256": h.hexdigest()}
    out = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            out["lines"] = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    return out


def _difference(found: dict, wrote: dict) -> str:
    """How a file or folder differs from what its stage recorded, in a few words."""
    for key, unit in (("lines", "complete lines"), ("files", "files"), ("bytes", "bytes")):
        if key in wrote and found.get(key) != wrote[key]:
            return f"has {found.get(key)} {unit} where the stage wrote {wrote[key]}"
    return "was changed after the stage wrote it"


class RunFolder:
    """A run folder: paths, manifest, effective config and log. What every stage function gets."""

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
        if not p.exists():
            return {"stages": {}, "inputs": []}
        try:
            manifest = read_json(p)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DistillqaError(f"{p} is damaged ({e}): restore it, or start again in a new run folder") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
            raise DistillqaError(f"{p} is damaged (not a distillqa manifest): restore it, or start again in a new run folder")
        return manifest

    def save_manifest(self, manifest: dict) -> None:
        write_json(self.path(MANIFEST), manifest)

    def config(self, config_file: Path | None = None, overrides: list[str] | None = None) -> Config:
        """The run's saved config, updated by a config file and overrides, then saved back."""
        cfg = self.saved_config(config_file, overrides)
        if self.root.exists() and launch_rank() == 0:
            self.save_config(cfg)
        return cfg

    def saved_config(self, config_file: Path | None = None, overrides: list[str] | None = None) -> Config:
        """The run's saved config.yaml (defaults where the run has none), updated by a config file
        and overrides, read only: what `ask`, `serve` and `evaluate DATA` read, writing nothing back."""
        saved = self.path(CONFIG)
        if not saved.is_file():
            return load_config(config_file, overrides)
        try:
            base = yaml.safe_load(saved.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise DistillqaError(f"{saved}: not valid YAML: {e}".splitlines()[0]) from None
        if not isinstance(base, dict):
            raise DistillqaError(f"{saved} is damaged (not a mapping of sections): fix it or delete it to use the defaults")
        try:
            load_config(base=base)  # the saved file alone, so a hand-broken one is named as such
        except DistillqaError as e:
            raise DistillqaError(f"{saved}: {e}: fix it, or delete it to use the defaults") from None
        return load_config(config_file, overrides, base=base)

    def save_config(self, cfg: Config) -> None:
        with atomic_open(self.path(CONFIG)) as f:
            yaml.safe_dump(cfg.model_dump(mode="json"), f, sort_keys=False)

    def require(self, *names: str) -> None:
        """Fail clearly when a stage's input is missing, or is not what the stage that makes it
        wrote (torn by a kill, cut short, edited): then that stage must run again."""
        for name in names:
            maker = MADE_BY.get(name, "an earlier stage")
            if not self.path(name).exists():
                raise DistillqaError(f"{self.path(name)} not found: run `distillqa {maker} {self.root}` first")
            problem = self.output_problem(name)
            if problem:
                raise DistillqaError(f"{self.path(name)} {problem}: run `distillqa {maker} {self.root} --force`")

    def output_problem(self, name: str, stage: str | None = None) -> str | None:
        """Why the file `name` is not what `stage` (by default the stage that makes it) recorded
        in the manifest, or None when it is, or when the stage recorded nothing (a run folder
        made by hand or by an older version)."""
        stage = stage or MADE_BY.get(name, "")
        rec = self.manifest["stages"].get(stage)
        if rec is None or "outputs" not in rec and rec.get("status") == "done":
            return None
        if rec.get("status") != "done":
            return f"comes from an unfinished `{stage}` stage ({rec.get('status')})"
        wrote = rec["outputs"].get(name)
        if wrote is None:
            return None
        if not self.path(name).exists():
            return "is missing"
        found = describe(self.path(name))
        return None if found["sha256"] == wrote["sha256"] else _difference(found, wrote)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for this process, so two commands never write it at once.

        An flock on RUN/.lock, which also holds the holder's PID for the error message. The
        kernel drops the lock when its process dies (even by SIGKILL), so a stale lock file
        from a dead process is simply taken over. The other processes of a torchrun/accelerate
        launch (rank > 0) share rank 0's hold: they write nothing.
        """
        if launch_rank() > 0:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(LOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise DistillqaError(
                    f"{self.root} is in use by process {holder}: wait for it to finish, or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def setup_logging(self) -> logging.Handler:
        """Log to RUN/log.txt (always, at INFO) in addition to the console. Returns the file's handler."""
        self.root.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger("distillqa")
        logger.setLevel(logging.INFO)
        target = str(self.path(LOG).resolve())
        handler = next((h for h in logger.handlers if getattr(h, "baseFilename", None) == target), None)
        if handler is None:
            handler = logging.FileHandler(target, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        # Warnings (skipped files, pages without text) also go to the terminal unless --quiet;
        # errors are not: the CLI prints those itself, as one line.
        if _CONSOLE_WARNINGS not in logger.handlers:
            logger.addHandler(_CONSOLE_WARNINGS)
        _CONSOLE_WARNINGS.setLevel(logging.CRITICAL + 1 if self.quiet else logging.WARNING)
        return handler

    @contextmanager
    def logging_to_log(self) -> Iterator[None]:
        """`setup_logging` for one command: RUN/log.txt is let go when the block ends, so a run
        folder removed after a failure (or a later command in the same process) keeps no handler.
        Processes of rank > 0 of a torchrun/accelerate launch leave the log to rank 0."""
        if launch_rank() > 0:
            yield
            return
        handler = self.setup_logging()
        try:
            yield
        finally:
            logging.getLogger("distillqa").removeHandler(handler)
            handler.close()

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

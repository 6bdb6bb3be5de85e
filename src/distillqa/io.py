"""Atomic file writing and JSONL helpers shared by every stage.

Stages talk through files, so a reader must never see a half-written file: everything is
written to a temporary sibling and renamed into place. The exceptions are append-only JSONL
files (the teacher cache, the web UI's feedback), whose torn last line is cut off before
appending again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from distillqa.errors import DistillqaError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary sibling folder to fill; it replaces `path` only if the block succeeds, so a
    reader never sees a half-written model or index and a failed rewrite keeps the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; outputs get the usual permissions
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: Any) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, ensure_ascii=False, indent=2)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records atomically, one JSON object per line, flushed line by line. Returns the count."""
    n = 0
    with atomic_open(path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSONL file. A damaged line (torn by a kill, edited) is an error naming
    the file and line: reading on would silently lose records."""
    out = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("the last line is cut off")
                if line.strip():
                    out.append(json.loads(line))
            except ValueError as e:  # json.JSONDecodeError is one
                raise DistillqaError(f"{path}: line {number} is damaged ({e})".splitlines()[0]) from None
    return out


def repair_jsonl_tail(path: Path) -> None:
    """Cut a resumable JSONL back to its last complete line, so appends never follow a torn line."""
    if not path.exists():
        return
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return  # the usual case, known without reading the whole file (the server appends often)
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)


def append_jsonl(f: IO, record: dict) -> None:
    """Append one record and push it to disk, so a SIGKILL loses at most the line being written."""
    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())

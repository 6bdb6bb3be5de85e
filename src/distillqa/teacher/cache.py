"""The teacher cache: every chunk's generation, kept across crashes, settings changes and reruns.

Teacher time is the pipeline's most expensive step, so whatever the teacher wrote for a chunk is
appended (and fsynced) to RUN/teacher_cache.jsonl the moment the chunk is finished, keyed by
what the output depends on: the chunk's id and text, the prompts, and the settings in
`config.TEACHER_SETTINGS` (mode, model, sampling, limits; not speed or transport settings). A
rerun after a kill, after changing `teacher.timeout_s`, or after adding a document generates
only the chunks whose key is not there yet. The file is append-only: a line torn by a kill is
cut off before the next append, and a damaged line only means that chunk is generated again.
To regenerate everything (a new version of the question rules), delete the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from distillqa.config import TEACHER_SETTINGS, Config
from distillqa.io import append_jsonl, repair_jsonl_tail
from distillqa.teacher.prompts import prompts_digest

log = logging.getLogger("distillqa")


def cache_key(chunk: dict, cfg: Config) -> str:
    """The key of one chunk's teacher output: what that output is a function of."""
    h = hashlib.sha256()
    for part in (prompts_digest(), cfg.section_hash(*TEACHER_SETTINGS), chunk["chunk_id"], chunk["text"]):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


class TeacherCache:
    """The chunk records of RUN/teacher_cache.jsonl by key; `add` appends one for good."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        self.damaged = 0
        if path.exists():
            repair_jsonl_tail(path)
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self.records[entry["key"]] = entry["record"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        self.damaged += 1
        if self.damaged:
            log.warning("%s: %d damaged lines ignored: their chunks are generated again", path, self.damaged)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict:
        return self.records[key]

    def add(self, key: str, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            append_jsonl(f, {"key": key, "record": record})
        self.records[key] = record

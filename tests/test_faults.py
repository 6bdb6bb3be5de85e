"""Fault injection: every way issue #12 found to lose work, do it twice or go silently wrong, done
again through the CLI. Each case must end in the right behaviour or one `error:` line and a
non-zero exit, never a traceback or a half-written file. (The server's cases are in test_serve.py.)

One finished run (scripted teacher, tiny student) is built per module; each test changes a copy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import distillqa.teacher.generate as gen
from distillqa.cli import app
from distillqa.layout import CHUNKS, CONFIG, GENERATIONS, INDEX, MANIFEST, STUDENT, TEACHER_CACHE
from tests.helpers import HARBOUR, ORCHARD, SlowEchoTeacher, encrypted_pdf, tiny_bert

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str):
    return runner.invoke(app, [*args])


def one_error_line(result, code: int = 2) -> str:
    """The result is a failure whose stderr is one `error:` line (after any `warning:` lines, each
    one line too); returns it."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    *warnings, last = result.stderr.strip().splitlines()
    assert last.startswith("error: ") and all(w.startswith("warning: ") for w in warnings), result.stderr
    return last


class CountingTeacher(SlowEchoTeacher):
    """The test teacher without its delay, counting the requests it was sent."""

    requests = 0

    def __init__(self) -> None:
        super().__init__(delay_s=0)

    def generate(self, requests):
        CountingTeacher.requests += len(requests)
        return super().generate(requests)


@pytest.fixture(autouse=True)
def scripted_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "load_teacher", lambda cfg: CountingTeacher())
    CountingTeacher.requests = 0


def settings(student: Path) -> list[str]:
    return [f"--set={s}" for s in (f"train.student={student}", "train.epochs=1", "chunk.max_tokens=64", "chunk.overlap_tokens=8",
                                   "generate.answers_per_chunk=3", "generate.retries=1",
                                   "retrieval.onnx_query_encoder=false")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """(run folder, the `run` arguments that made it): two documents through every stage."""
    root = tmp_path_factory.mktemp("finished")
    docs = root / "docs"
    docs.mkdir()
    (docs / "harbour.txt").write_text(HARBOUR, encoding="utf-8")
    (docs / "orchard.md").write_text(ORCHARD, encoding="utf-8")
    args = ["run", str(docs), "--out", str(root / "run"), "-q", *settings(tiny_bert(root / "tiny"))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gen, "load_teacher", lambda cfg: CountingTeacher())
        result = cli(*args)
    assert result.exit_code == 0, result.output
    yield root / "run", args


@pytest.fixture
def run(finished: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the finished run, and the `run` arguments that update it."""
    source, args = finished
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    return copy, [str(copy) if a == str(source) else a for a in args]


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def stage_record(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / MANIFEST).read_text())["stages"][stage]


# -- 1. the output folder inside the input folder -------------------------------------------------
def test_a_run_folder_inside_its_input_folder_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "harbour.txt").write_text(HARBOUR, encoding="utf-8")
    monkeypatch.chdir(project)
    for _ in range(2):
        result = cli("run", ".", "--out", "run", "--until", "chunk")
        assert result.exit_code == 0, result.output
    assert lines(project / "run" / "documents.jsonl") == 1  # not log.txt, nor report.md
    assert "ingest: up to date" in result.stderr and "chunk: up to date" in result.stderr
    assert "left out" in result.stderr and "run folder" in result.stderr
    # naming a file inside the run folder is an error, not a document
    message = one_error_line(cli("ingest", "run/log.txt", "--out", "run"))
    assert "inside the run folder" in message


# -- 2. torn, short or edited stage files ---------------------------------------------------------
def test_a_torn_chunks_file_is_refused_then_rerun(run: tuple[Path, list[str]]) -> None:
    run_dir, args = run
    data = (run_dir / CHUNKS).read_bytes()
    (run_dir / CHUNKS).write_bytes(data[: len(data) // 2])  # cut mid-line, as a kill would
    message = one_error_line(cli("generate", str(run_dir)))
    assert str(run_dir / CHUNKS) in message and f"distillqa chunk {run_dir}" in message
    result = cli(*args)  # `run` again: chunk reruns, the rest is what it was
    assert result.exit_code == 0, result.output
    assert (run_dir / CHUNKS).read_bytes() == data
    assert CountingTeacher.requests == 0  # the same chunks: generate and the rest are up to date


def test_a_short_generations_file_is_refused_then_rebuilt_from_the_cache(run: tuple[Path, list[str]]) -> None:
    run_dir, args = run
    data = (run_dir / GENERATIONS).read_bytes()
    (run_dir / GENERATIONS).write_bytes(data[: data.index(b"\n") + 1])  # one whole line of several
    message = one_error_line(cli("build-dataset", str(run_dir)))
    assert "has 1 complete lines where the stage wrote" in message and "distillqa generate" in message
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert (run_dir / GENERATIONS).read_bytes() == data and CountingTeacher.requests == 0
    summary = stage_record(run_dir, "generate")["summary"]
    assert summary["chunks_reused"] == summary["chunks"] > 1


def test_a_damaged_middle_line_is_one_error_line(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    rows = (run_dir / GENERATIONS).read_bytes().splitlines(keepends=True)
    (run_dir / GENERATIONS).write_bytes(rows[0] + b'{"chunk_id": oops\n' + b"".join(rows[2:]))
    message = one_error_line(cli("build-dataset", str(run_dir)))
    assert str(run_dir / GENERATIONS) in message and "where the stage wrote" in message and "distillqa generate" in message


def test_a_truncated_model_is_refused_by_every_reader_and_retrained_by_run(run: tuple[Path, list[str]]) -> None:
    run_dir, args = run
    weights = run_dir / STUDENT / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert "distillqa train" in one_error_line(cli("evaluate", str(run_dir)))
    for command in (["ask", str(run_dir), "Who built the harbour light?"], ["ask", str(run_dir / STUDENT), "Who?", "--context", HARBOUR]):
        assert "cannot load the reader" in one_error_line(cli(*command))
    started = stage_record(run_dir, "train")["started"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert stage_record(run_dir, "train")["started"] != started  # retrained, not "up to date"
    assert cli("ask", str(run_dir), "Who built the harbour light?", "--json").exit_code == 0


# -- 3. finished teacher work is kept -------------------------------------------------------------
def test_adding_a_document_generates_only_its_chunks(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour.txt").write_text(HARBOUR, encoding="utf-8")
    until = ["--until", "generate", "-q", "--set", "chunk.max_tokens=64", "--set", "chunk.overlap_tokens=8"]
    assert cli("run", str(docs), "--out", str(tmp_path / "run"), *until).exit_code == 0
    first = stage_record(tmp_path / "run", "generate")["summary"]
    (docs / "orchard.md").write_text(ORCHARD, encoding="utf-8")
    result = cli("run", str(docs), "--out", str(tmp_path / "run"), *until, "--set", "teacher.timeout_s=300")
    assert result.exit_code == 0, result.output
    second = stage_record(tmp_path / "run", "generate")["summary"]
    assert second["chunks_reused"] == first["chunks"] and second["chunks_generated"] == second["chunks"] - first["chunks"] >= 1
    assert lines(tmp_path / "run" / TEACHER_CACHE) == second["chunks"]


# -- 4. one process at a time ---------------------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from distillqa.layout import RunFolder
with RunFolder(Path(sys.argv[1])).lock():
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(run: tuple[Path, list[str]]) -> None:
    run_dir, args = run
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["chunk", str(run_dir), "--force"], args):
            message = one_error_line(cli(*command))
            assert f"in use by process {holder.pid}" in message
        assert "started" not in stage_record(run_dir, "chunk") or stage_record(run_dir, "chunk")["status"] == "done"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run_dir / ".lock").read_text().strip() == str(holder.pid)  # the dead process's lock file
    assert cli("chunk", str(run_dir), "-q", "--force").exit_code == 0


# -- 6. smaller ones ------------------------------------------------------------------------------
def test_the_pdf_password_is_never_written_to_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encrypted_pdf(tmp_path / "locked.pdf", "Locked text about the harbour light.", "s3cret-pw")
    assert cli("ingest", str(tmp_path / "locked.pdf"), "--out", str(tmp_path / "run"), "--pdf-password", "s3cret-pw", "-q").exit_code == 0
    monkeypatch.setenv("DISTILLQA_PDF_PASSWORD", "s3cret-pw")  # the other way to give it
    assert cli("ingest", str(tmp_path / "locked.pdf"), "--out", str(tmp_path / "run2"), "-q").exit_code == 0
    for folder in ("run", "run2"):
        files = [p for p in (tmp_path / folder).rglob("*") if p.is_file()]
        assert files and not [p for p in files if b"s3cret-pw" in p.read_bytes()]


def test_skip_bad_says_what_it_did_not_up_to_date(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(HARBOUR, encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    result = cli("ingest", str(tmp_path / "good.txt"), str(tmp_path / "empty.txt"), "--skip-bad", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0 and "ingest: documents=1" in result.stderr and "skipped=1" in result.stderr
    assert "up to date" not in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (CONFIG, "train: {epochs: [", "config.yaml: not valid YAML"),
        (CONFIG, "- a list\n- of things\n", "config.yaml is damaged"),
        (CONFIG, "dataset: {fuzzy_threshold: high}\n", "config.yaml: invalid config at dataset.fuzzy_threshold"),
        (MANIFEST, '{"stages": {"ingest": ', "manifest.json is damaged"),
        (MANIFEST, "[]", "manifest.json is damaged"),
    ],
)
def test_a_hand_broken_config_or_manifest_is_one_error_line(run: tuple[Path, list[str]], name: str, content: str, expected: str) -> None:
    run_dir, args = run
    (run_dir / name).write_text(content, encoding="utf-8")
    for command in (["chunk", str(run_dir)], args):
        assert expected in one_error_line(cli(*command))


def test_a_broken_index_meta_is_one_error_line(run: tuple[Path, list[str]]) -> None:
    run_dir, _ = run
    (run_dir / INDEX / "meta.json").write_text("{", encoding="utf-8")
    message = one_error_line(cli("ask", str(run_dir), "Who built the harbour light?"))
    assert "meta.json is damaged" in message and "distillqa index" in message


def test_an_out_that_is_a_file_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text(HARBOUR, encoding="utf-8")
    (tmp_path / "out").write_text("not a folder")
    for command in ("ingest", "run"):
        assert "is a file" in one_error_line(cli(command, str(tmp_path / "doc.txt"), "--out", str(tmp_path / "out")))
    assert (tmp_path / "out").read_text() == "not a folder"


def test_a_full_disk_is_one_error_line_and_keeps_the_old_output(run: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, _ = run
    before = (run_dir / CHUNKS).read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("distillqa.io.os.fsync", full)
    message = one_error_line(cli("chunk", str(run_dir), "--force"), code=1)
    assert "No space left on device" in message
    assert (run_dir / CHUNKS).read_bytes() == before
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_an_interrupted_retrain_keeps_the_old_model(run: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, _ = run
    from transformers import Trainer

    weights = (run_dir / STUDENT / "model.safetensors").read_bytes()

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train", ctrl_c)
    assert one_error_line(cli("train", str(run_dir), "--force"), code=130) == "error: interrupted"
    assert (run_dir / STUDENT / "model.safetensors").read_bytes() == weights
    result = cli("ask", str(run_dir), "Who built the harbour light?", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["answers"]
    # the stage itself is not done, and the stages after it say so
    assert stage_record(run_dir, "train")["status"] == "failed"
    assert "unfinished `train` stage" in one_error_line(cli("evaluate", str(run_dir), "--force"))


APPENDER = """
import sys
from datetime import datetime, timezone
from pathlib import Path

from distillqa.student.feedback import Feedback, append_feedback

passage = "The harbour light was built in 1854 by Margaret Hale. " * 400  # ~20 kB lines: long writes to kill
record = Feedback(question="Who built it?", passage=passage, answer="1854", start=31, end=35, verdict="right",
                  document="harbour.txt", page=1, time=datetime.now(timezone.utc))
while True:
    append_feedback(Path(sys.argv[1]), record, 10**9)
"""


def test_feedback_survives_a_kill_mid_append(tmp_path: Path) -> None:
    """A process appending feedback as fast as it can (as the server does, line by line with
    fsync) is SIGKILLed: every complete line is a record, at most the last line is torn and
    skipped, and the next append cuts that line off and leaves whole lines only."""
    from distillqa.student.feedback import append_feedback, read_feedback

    path = tmp_path / "feedback.jsonl"
    process = subprocess.Popen([sys.executable, "-c", APPENDER, str(path)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not path.exists() or path.stat().st_size < 200_000:
            assert process.poll() is None and time.monotonic() < deadline, "the appender did not get going"
            time.sleep(0.01)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    data = path.read_bytes()
    records, damaged = read_feedback(path)
    assert len(records) == data.count(b"\n") >= 10 and damaged == (0 if data.endswith(b"\n") else 1)
    append_feedback(path, records[0], 10**9)
    after, damaged = read_feedback(path)
    assert after == [*records, records[0]] and damaged == 0
    assert path.read_bytes() == data[: data.rfind(b"\n") + 1] + data[: data.index(b"\n") + 1]

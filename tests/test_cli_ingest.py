"""`distillqa ingest` and `distillqa chunk` from the command line: outputs, and clean failures
(exit 2, one `error:` line, no traceback, no run folder left behind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillqa.cli import app
from distillqa.models import bundled_encoder
from tests.helpers import encrypted_pdf

runner = CliRunner()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    files = {
        "good": tmp_path / "good.txt",
        "empty": tmp_path / "empty.txt",
        "corrupt": tmp_path / "corrupt.pdf",
        "other": tmp_path / "other.md",
    }
    files["good"].write_text("The keeper lit the lamp at dusk.\n\nThe lamp burned until dawn.", encoding="utf-8")
    files["empty"].write_bytes(b"")
    files["corrupt"].write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    files["other"].write_text("# Other\n\nA second document.", encoding="utf-8")
    return files


def test_ingest_devset_geology_recovers_every_paragraph(devset: Path, tmp_path: Path):
    """The issue's "done when": all 25 paragraphs of geology.txt, in order (plus the title)."""
    result = runner.invoke(app, ["ingest", str(devset / "geology.pdf"), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    (doc,) = read_jsonl(tmp_path / "run" / "documents.jsonl")
    gold = [" ".join(p.split()) for p in (devset / "geology.txt").read_text(encoding="utf-8").split("\n\n")]
    assert len(gold) == 25
    paragraphs = [" ".join(p.split()) for p in doc["text"].split("\n\n")]
    assert paragraphs[0] == "Geology" and paragraphs[1:] == gold
    assert doc["title"] == "Geology" and doc["format"] == "pdf" and [p["number"] for p in doc["pages"]] == list(range(1, 7))


def test_ingest_then_chunk(inputs: dict[str, Path], tmp_path: Path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["ingest", str(inputs["good"]), str(inputs["other"]), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "ingest: documents=2" in result.stderr
    docs = read_jsonl(run / "documents.jsonl")
    assert [d["title"] for d in docs] == ["good", "Other"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["ingest"]["summary"]["documents"] == 2
    result = runner.invoke(app, ["chunk", str(run), "--quiet", "--set", f"chunk.tokenizer={bundled_encoder()}"])
    assert result.exit_code == 0, result.output
    chunks = read_jsonl(run / "chunks.jsonl")
    assert [c["doc_id"] for c in chunks] == [d["doc_id"] for d in docs]  # short documents: one chunk each
    assert all(c["text"] == d["text"] for c, d in zip(chunks, docs))


@pytest.mark.parametrize("bad", ["empty", "corrupt"])
def test_bad_file_fails_cleanly_and_leaves_nothing(inputs: dict[str, Path], tmp_path: Path, bad: str):
    run = tmp_path / "run"
    result = runner.invoke(app, ["ingest", str(inputs["good"]), str(inputs[bad]), "--out", str(run), "--quiet"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == error_lines(result)
    assert len(error_lines(result)) == 1 and inputs[bad].name in error_lines(result)[0]
    assert "Traceback" not in result.output and not run.exists()


def test_bad_file_in_an_existing_run_folder_writes_no_documents(inputs: dict[str, Path], tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    result = runner.invoke(app, ["ingest", str(inputs["good"]), str(inputs["corrupt"]), "--out", str(run)])
    assert result.exit_code == 2 and len(error_lines(result)) == 1
    assert error_lines(result)[-1] == result.stderr.strip().splitlines()[-1], "the error is the last word"
    assert not (run / "documents.jsonl").exists()


def test_skip_bad_continues_and_logs(inputs: dict[str, Path], tmp_path: Path):
    run = tmp_path / "run"
    args = ["ingest", str(inputs["good"]), str(inputs["empty"]), str(inputs["corrupt"]), "--out", str(run), "--skip-bad", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [d["source"] for d in read_jsonl(run / "documents.jsonl")] == [str(inputs["good"])]
    log = (run / "log.txt").read_text()
    assert "skipped" in log and "empty.txt" in log and "corrupt.pdf" in log


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.pdf"], "missing.pdf: no such file or folder"),
        (["*.nothing"], "the pattern matches no files"),
        (["notes.rtf"], "unsupported file type '.rtf'"),
    ],
)
def test_bad_paths_fail_before_a_run_folder_exists(tmp_path: Path, monkeypatch, args: list[str], message: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.rtf").write_text("{\\rtf1}")
    result = runner.invoke(app, ["ingest", *args, "--out", "run"])
    assert result.exit_code == 2 and error_lines(result) == result.stderr.strip().splitlines()
    assert message in error_lines(result)[0] and not (tmp_path / "run").exists()


def test_encrypted_pdf_password_flag(tmp_path: Path):
    encrypted_pdf(tmp_path / "locked.pdf", "Locked text.", "pw")
    result = runner.invoke(app, ["ingest", str(tmp_path / "locked.pdf"), "--out", str(tmp_path / "r1"), "--quiet"])
    assert result.exit_code == 2 and "--pdf-password" in error_lines(result)[0]
    result = runner.invoke(app, ["ingest", str(tmp_path / "locked.pdf"), "--out", str(tmp_path / "r2"), "--pdf-password", "pw", "-q"])
    assert result.exit_code == 0 and read_jsonl(tmp_path / "r2" / "documents.jsonl")[0]["text"] == "Locked text."


def test_real_process_prints_one_line_and_exits_2(inputs: dict[str, Path], tmp_path: Path):
    """Through a real interpreter: nothing but the error line on stderr, nothing on stdout."""
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "distillqa", "ingest", str(inputs["corrupt"]), "--out", str(run), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "corrupt.pdf" in proc.stderr
    assert not run.exists()


def test_worker_processes_real_process(inputs: dict[str, Path], tmp_path: Path):
    """With worker processes (ingest.workers=2), through a real interpreter: a bad file is still
    the one error line, with nothing else on stderr; with --skip-bad, the workers' warnings are
    in log.txt as in one process."""
    files = [str(inputs[name]) for name in ("good", "corrupt", "other")]

    def ingest(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "distillqa", "ingest", *files, "--quiet", "--set", "ingest.workers=2", *args]
        return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)

    proc = ingest("--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "corrupt.pdf" in proc.stderr
    assert not (tmp_path / "run").exists()
    proc = ingest("--out", str(tmp_path / "run2"), "--skip-bad")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert [d["source"] for d in read_jsonl(tmp_path / "run2" / "documents.jsonl")] == [files[0], files[2]]
    log = (tmp_path / "run2" / "log.txt").read_text()
    assert "ingest: 2 worker processes" in log and "skipped" in log and "corrupt.pdf" in log

"""The teacher worker process: results cross the pipe unchanged, and a native crash (a signal that
kills the worker) becomes one clear error that keeps every finished chunk."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillqa.cli import app
from distillqa.config import Config, TeacherConfig
from distillqa.errors import DistillqaError
from distillqa.io import read_jsonl, write_jsonl
from distillqa.layout import CHUNKS, GENERATIONS, TEACHER_CACHE
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.teacher import backends
from distillqa.teacher import generate as gen
from distillqa.teacher.base import GenerationRequest, GenerationResult
from distillqa.teacher.worker import IsolatedTeacher, TeacherCrashed, signal_name

SENTENCES = [
    "In 1867, Alfred Nobel patented dynamite in Sweden.",
    "The Danube flows through ten countries before reaching the Black Sea.",
    "Marie Curie discovered polonium in 1898 with her husband Pierre.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "About 40% of the Danube basin lies in Romania.",
]


class EchoTeacher:
    """Answers every request with its seed and prompt; kills its own process on call `crash_on`."""

    name = "echo:test"
    supports_json_schema = True

    def __init__(self, crash_on: int | None = None, sig: int = signal.SIGSEGV):
        self.crash_on, self.sig, self.calls = crash_on, sig, 0

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls += 1
        if self.calls == self.crash_on:
            os.kill(os.getpid(), self.sig)  # what a segfault in native code does to a process
        return [GenerationResult(text=f"{r.seed}|{r.messages[-1]['content']}") for r in requests]

    def close(self) -> None:
        pass


def echo(crash_on: int | None = None, sig: int = signal.SIGSEGV) -> EchoTeacher:
    return EchoTeacher(crash_on, sig)


def refuse_to_load() -> EchoTeacher:
    raise DistillqaError("model.gguf: GGUF file not found: check teacher.model")


def crash_while_loading() -> EchoTeacher:
    os.kill(os.getpid(), signal.SIGABRT)
    raise AssertionError("unreachable")


def request(seed: int, text: str) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": text}], seed=seed)


def test_results_come_back_in_order_with_the_backend_name() -> None:
    teacher = IsolatedTeacher(echo, "llamacpp")
    try:
        assert teacher.name == "echo:test" and teacher.supports_json_schema
        for _ in range(2):  # the worker stays up between batches
            results = teacher.generate([request(i, f"q{i}") for i in range(5)])
            assert [r.text for r in results] == [f"{i}|q{i}" for i in range(5)]
    finally:
        teacher.close()
    assert teacher._proc.poll() is not None
    teacher.close()  # a second close does nothing


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGILL])
def test_a_native_crash_is_one_clear_error(sig: int) -> None:
    teacher = IsolatedTeacher(partial(echo, crash_on=2, sig=sig), "llamacpp")
    assert teacher.generate([request(1, "fine")])[0].text == "1|fine"
    with pytest.raises(TeacherCrashed) as info:
        teacher.generate([request(2, "boom")])
    teacher.close()
    assert info.value.signal == signal.Signals(sig).name
    assert str(info.value) == f"the llamacpp teacher backend crashed ({signal.Signals(sig).name}) in its worker process"


def test_load_errors_pass_through_and_a_crash_while_loading_is_named() -> None:
    with pytest.raises(DistillqaError, match="GGUF file not found"):
        IsolatedTeacher(refuse_to_load, "llamacpp")
    with pytest.raises(TeacherCrashed, match="SIGABRT"):
        IsolatedTeacher(crash_while_loading, "llamacpp")


def test_signal_names() -> None:
    assert signal_name(-11) == "SIGSEGV" and signal_name(3) == "exit code 3"


def test_native_backends_are_isolated_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_teacher wraps llamacpp/transformers in a worker unless teacher.isolate is off."""
    started: list[str] = []
    monkeypatch.setattr("distillqa.teacher.worker.IsolatedTeacher", lambda factory, backend: started.append(backend))
    backends.load_teacher(TeacherConfig(backend="llamacpp"))
    backends.load_teacher(TeacherConfig(backend="transformers", model="m"))
    assert started == ["llamacpp", "transformers"]
    assert not TeacherConfig(backend="llamacpp", isolate=False).isolate


# -- the generate stage and the CLI ---------------------------------------------------------------
def crashing_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_on: int | None) -> tuple[Run, Config]:
    """A run of one-sentence chunks whose teacher (in a real worker process) dies on call `crash_on`.

    One chunk's requests per teacher call and no retries, so chunks finish one call at a time.
    The echo replies are not questions, so every pair comes from the cloze fallback.
    """
    run = Run(tmp_path / "run", quiet=True)
    run.root.mkdir(exist_ok=True)
    chunks = [{"chunk_id": f"doc-0000-{i:04d}", "doc_id": "doc-0000", "index": i, "text": t} for i, t in enumerate(SENTENCES)]
    write_jsonl(run.path(CHUNKS), chunks)
    cfg = run.config(overrides=["generate.wave_requests=1", "generate.retries=0"])
    run.save_config(cfg)
    monkeypatch.setattr(gen, "load_teacher", lambda tcfg: IsolatedTeacher(partial(echo, crash_on=crash_on), tcfg.backend))
    return run, cfg


def test_generate_stage_keeps_finished_chunks_and_resumes_after_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, cfg = crashing_run(tmp_path, monkeypatch, crash_on=3)
    with pytest.raises(DistillqaError) as info:
        run.run_stage(STAGE_BY_NAME["generate"], cfg)
    message = str(info.value)
    assert "\n" not in message
    assert "llamacpp teacher backend crashed (SIGSEGV)" in message
    assert "2 finished chunks are kept" in message and "distillqa doctor" in message
    kept = [line["record"] for line in read_jsonl(run.path(TEACHER_CACHE))]
    assert [r["chunk_id"] for r in kept] == ["doc-0000-0000", "doc-0000-0001"]
    assert not run.path(GENERATIONS).exists()
    assert run.manifest["stages"]["generate"]["status"] == "failed"

    run, cfg = crashing_run(tmp_path, monkeypatch, crash_on=None)  # the same settings, a healthy teacher
    summary = run.run_stage(STAGE_BY_NAME["generate"], cfg)
    assert summary["chunks_reused"] == 2 and summary["chunks_generated"] == 3
    assert [r["chunk_id"] for r in read_jsonl(run.path(GENERATIONS))] == [f"doc-0000-{i:04d}" for i in range(5)]


def test_cli_generate_crash_is_one_line_and_a_nonzero_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = crashing_run(tmp_path, monkeypatch, crash_on=1)
    run.save_manifest({"stages": {}, "inputs": []})
    result = CliRunner().invoke(app, ["generate", str(run.root), "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the llamacpp teacher backend crashed (SIGSEGV)")
    assert "0 finished chunks are kept" in lines[0]

"""`distillqa doctor`: every check reports OK, FAIL or SKIP; any FAIL makes the exit non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillqa.app import doctor
from distillqa.app.doctor import FAIL, OK, Check, cpu_info, run_checks
from distillqa.cli import app


def test_a_check_that_raises_is_a_failure_not_a_crash() -> None:
    def check_broken() -> Check:
        raise RuntimeError("boom\nsecond line")

    results = run_checks((check_broken, lambda: Check("fine", OK, "yes")))
    assert [(r.name, r.status) for r in results] == [("broken", FAIL), ("fine", OK)]
    assert results[0].detail == "RuntimeError: boom" and results[0].fix


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 fma avx512f amx_int8 amx_tile\n")
    assert cpu_info(info) == ("Intel(R) Xeon(R) Platinum 8480+", ["avx2", "fma", "avx512f", "amx_int8"])


def test_doctor_on_this_machine_checks_everything_and_exits_0() -> None:
    """Needs what `make install` installs; the teacher check really generates in a worker process."""
    pytest.importorskip("llama_cpp")
    result = CliRunner().invoke(app, ["doctor"])
    out = result.stdout
    for name in ("python", "packages", "torch", "cpu", "llama.cpp build", "teacher", "student/embedder", "onnxruntime"):
        assert f"OK    {name}:" in out, out
    assert result.exit_code == 0 and "0 failed" in out


def test_any_failure_makes_doctor_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "CHECKS", (lambda: Check("teacher", FAIL, "crashed (SIGSEGV)", "try the transformers backend"),))
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "FAIL  teacher: crashed (SIGSEGV)\n      fix: try the transformers backend" in result.stdout
    assert "1 failed: teacher" in result.stdout

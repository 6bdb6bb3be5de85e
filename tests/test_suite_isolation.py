"""The test suite's own configuration survives a native crash: it fails one test, not the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_a_segfaulting_test_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "test_native.py").write_text(
        "import os, signal\n\n"
        "def test_crashes():\n    os.kill(os.getpid(), signal.SIGSEGV)\n\n"
        "def test_runs_after_the_crash():\n    assert True\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", str(tmp_path / "test_native.py")],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out and "crashed" in out, out

"""Shared fixtures: the devset beside the checkout, and one small run with an index and a tiny
student for every test that asks questions (built once per test worker: it exports the embedder
to ONNX, which takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEVSET = REPO.parent / "shared" / "devset"


@pytest.fixture
def devset() -> Path:
    if not DEVSET.is_dir():
        pytest.skip("../shared/devset is not beside this checkout")
    return DEVSET


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two documents (harbour, orchard; two pages each), index/ with 40-token passages, a random
    tiny student/. Tests must not change it: copy it first (shutil.copytree)."""
    from tests.helpers import tiny_run

    return tiny_run(tmp_path_factory.mktemp("small") / "run")

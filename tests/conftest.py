"""Shared fixtures: the devset beside the checkout, and a fresh run folder per test."""

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

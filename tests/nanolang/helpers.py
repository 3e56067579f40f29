"""Paths and golden-file comparison shared by the nanolang tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PROGRAMS = HERE / "programs"
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("NANOLANG_UPDATE_GOLDEN") == "1"


def golden(name: str, actual: str) -> None:
    """Compare with tests/nanolang/golden/NAME (rewrite it with NANOLANG_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with NANOLANG_UPDATE_GOLDEN=1")
    assert actual == path.read_text(encoding="utf-8")

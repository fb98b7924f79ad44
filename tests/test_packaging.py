"""The Python version the package requires is the one CI, README and the tools say."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_python_version_is_required_consistently():
    """config.py reads TOML with tomllib (Python 3.11+): the package says so, and ruff
    checks for that version."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["requires-python"] == ">=3.11"
    assert meta["tool"]["ruff"]["target-version"] == "py311"

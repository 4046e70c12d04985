"""Lint: pyflakes, pycodestyle and bugbear over the whole repository (rules in pyproject.toml).

Unused imports, undefined names, loop variables captured late, zips that silently truncate:
cheap to catch here, expensive to find in a night's run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed: pip install -e '.[test]' (setup.sh does)")
    return [found]


def test_ruff_finds_nothing() -> None:
    r = subprocess.run([*ruff(), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]

"""Run ids name folders (reports/<run-id>/, the jobs' folders on the nodes): one that is not a
plain name is refused where it is given, before the run connects to anything (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD = ["x\n", "../../x", "a/b", "..", "", "-x", "a b", "x" * 101]


@pytest.mark.parametrize("run_id", BAD)
def test_bad_run_id_is_refused_with_the_rule(run_id: str) -> None:
    from testbed.runid import RunIdError, check_run_id
    with pytest.raises(RunIdError) as info:
        check_run_id(run_id)
    assert repr(run_id) in str(info.value) and "fix: " in str(info.value)


@pytest.mark.parametrize("run_id", ["r-1", "nightly_2026", "x" * 100])
def test_good_run_id_passes(run_id: str) -> None:
    from testbed.pytest_plugin import new_run_id
    from testbed.runid import check_run_id
    assert check_run_id(run_id) == run_id
    assert check_run_id(new_run_id())


def _pytest(tmp_path: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    """A run of the plugin on one trivial test: the run id is checked when pytest is configured."""
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n", encoding="utf-8")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}   # the plugin named below, whether installed or not
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "testbed.pytest_plugin", "-p", "no:cacheprovider",
                           str(tmp_path), "--run-id", run_id, "--report-dir", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


@pytest.mark.parametrize("run_id", ["x\n", "../../x", "a/b"])
def test_pytest_refuses_a_bad_run_id_as_bad_input(tmp_path: Path, run_id: str) -> None:
    r = _pytest(tmp_path, run_id)
    assert r.returncode == 4, r.stdout + r.stderr          # pytest's usage error: `dcilab trial` passes it on
    assert f"--run-id {run_id!r}" in r.stderr
    assert "test_one" not in r.stdout                        # nothing collected, nothing run


def test_pytest_accepts_a_good_run_id(tmp_path: Path) -> None:
    r = _pytest(tmp_path, "r-1")
    assert r.returncode == 0, r.stdout + r.stderr

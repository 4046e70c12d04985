"""The `dcilab` command: clear messages and exit codes, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import main

DCILAB = [sys.executable, "-m", "testbed.cli"]


def test_inventory_check_accepts_the_shipped_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "check", "inventory/emulated.yaml"]) == 0
    assert "OK: emulated-dci (emulated)" in capsys.readouterr().out


def test_a_missing_inventory_file_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run([*DCILAB, "lab", "status", "-i", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert res.returncode == 1
    assert "cannot read the file" in res.stderr and "Traceback" not in res.stderr + res.stdout


def test_lab_commands_refuse_real_gear_inventories() -> None:
    res = subprocess.run([*DCILAB, "lab", "status", "-i", "inventory/lab.example.yaml"], capture_output=True, text=True)
    assert res.returncode == 1
    assert "has no 'emulation' block" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop to an unprivileged user (setpriv)")
def test_lab_up_as_a_normal_user_says_root_is_needed() -> None:
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *DCILAB, "lab", "up"],
                         capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"})
    assert res.returncode == 1, res.stderr
    assert "needs root" in res.stderr and "Traceback" not in res.stderr


def test_status_of_a_lab_that_is_not_built_exits_non_zero() -> None:
    if Path("/run/dcilab/emulated-dci/lab.json").exists():
        pytest.skip("an emulated lab is up on this machine; its status would be 'up'")
    res = subprocess.run([*DCILAB, "lab", "status", "--json"], capture_output=True, text=True)
    assert res.returncode == 1
    assert '"built": false' in res.stdout

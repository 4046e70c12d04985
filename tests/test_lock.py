"""One run at a time on a testbed (testbed/lock.py): a second run is refused with who holds the
testbed, before it connects to anything; a holder killed with SIGKILL frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.inventory import load_inventory
from testbed.lock import EXIT_BUSY, TestbedBusy, TestbedLock, lock_path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "inventory" / "lab.example.yaml"
EMULATED = ROOT / "inventory" / "emulated.yaml"

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}]
    from testbed.inventory import load_inventory
    from testbed.lock import TestbedLock
    TestbedLock(load_inventory({inv!r}), "nightly-0001", command="dcilab trial --profile nightly").acquire()
    print("holding", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    p = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), inv=str(REAL))],  # noqa: S603
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    yield p
    p.kill()
    p.wait()


def test_a_second_run_is_refused_with_the_holder_and_a_killed_holder_frees_the_testbed(holder) -> None:  # type: ignore[no-untyped-def]
    inv = load_inventory(REAL)
    with pytest.raises(TestbedBusy) as e:
        TestbedLock(inv, "engineer-0002").acquire()
    msg = str(e.value)
    assert "run nightly-0001" in msg and f"pid {holder.pid}" in msg and "dcilab trial --profile nightly" in msg
    assert str(lock_path(inv)) in msg and e.value.holder is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with TestbedLock(inv, "engineer-0003") as lock:         # the kernel dropped the dead holder's lock
        assert lock.holder.run_id == "engineer-0003"
    with TestbedLock(inv, "engineer-0004"):                 # and released on exit
        pass


def test_dcilab_trial_on_a_held_testbed_exits_busy_before_connecting(holder, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The template's gear (192.0.2.0/24, documentation addresses) does not exist: a run that got
    past the lock would fail on connecting, not exit busy.  Its OTN terminals opt in to faults
    here, so that the bandwidth-drop case is not skipped before the testbed is needed."""
    inv = tmp_path / "lab.yaml"
    text = REAL.read_text().replace("    fault_injection: false            # the default, written out: no fault is "
                                    "ever sent here", "    fault_injection: true")
    inv.write_text(text.replace("  - name: dc-b-otn\n    kind: otn_terminal\n",
                                "  - name: dc-b-otn\n    kind: otn_terminal\n    fault_injection: true\n"))
    for f in ("keys", "secrets"):            # what the template refers to, relative to its folder
        if (REAL.parent / f).exists():
            (tmp_path / f).symlink_to(REAL.parent / f)
    rc = main(["trial", "--inventory", str(inv), "--profile", "quick", "-k", "bandwidth_drop and pp-remote",
               "--run-id", "busy-1", "--report-dir", str(tmp_path / "r"), "--no-compare"])
    out = capsys.readouterr()
    assert rc == EXIT_BUSY
    assert "is in use by run nightly-0001" in out.out + out.err


def test_an_emulated_labs_lock_is_outside_what_lab_down_removes_or_must_leave_empty() -> None:
    """`lab down` removes the state folder and must leave /run/dcilab/ empty (tests/test_lab.py):
    a lock file there would outlive the lab."""
    inv = load_inventory(EMULATED)
    path = lock_path(inv)
    assert path.name == "dcilab-emulated-dci.lock" and not str(path).startswith("/run/dcilab")

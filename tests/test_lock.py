"""One run at a time on a testbed (testbed/lock.py): a second run is refused with who holds the
testbed, before it connects to anything; a holder killed with SIGKILL frees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from testbed.cli import main
from testbed.inventory import load_inventory
from testbed.lock import EXIT_BUSY, HolderDied, TestbedBusy, TestbedLock, lease_state, lock_path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "inventory" / "lab.example.yaml"
EMULATED = ROOT / "inventory" / "emulated.yaml"

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}]
    from testbed.inventory import load_inventory
    from testbed.lock import TestbedLock
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # as dcilab trial: SIGTERM ends it cleanly
    with TestbedLock(load_inventory({inv!r}), "nightly-0001", command="dcilab trial --profile nightly") as lease:
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


# ------------------------------------------------------------------ a holder that died; waiting; dcilab lease

def _die_holding(tmp_path: Path, inv_file: Path = REAL, undo_steps: int = 1) -> int:
    """A run that takes the lease, journals ``undo_steps`` faults and is killed with SIGKILL."""
    journal = textwrap.indent(textwrap.dedent(f"""
        from testbed.faults.journal import Journal, Step, journal_dir
        for i in range({undo_steps}):
            Journal(journal_dir(lease.inv)).add("BandwidthDrop", "dci-1", [], [Step("dc-a-otn", "set_line_rate",
                {{"service": "dci-1", "rate": "800G"}})], str(lease.inv.source))
        print("holding", flush=True)"""), "    ")
    code = HOLDER.format(root=str(ROOT), inv=str(inv_file)).replace('    print("holding", flush=True)', journal)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,  # noqa: S603
                         env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    return p.pid


def test_a_dead_holders_lease_is_taken_over_only_by_a_command_that_restores(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    inv = load_inventory(REAL)
    pid = _die_holding(tmp_path)
    with pytest.raises(HolderDied) as e:                    # lab up would build on what the dead run left
        TestbedLock(inv, "", command="dcilab lab up", restores=False).acquire(wait_s=5)   # no waiting: it is final
    assert e.value.pending == 1 and f"pid {pid}" in str(e.value) and "dcilab lab restore" in str(e.value)
    st = lease_state(inv)
    assert (st.held, st.holder.pid if st.holder else None, st.pending) == (False, pid, 1)
    assert "ended without releasing it" in st.describe(inv) and "dcilab lab restore" in st.describe(inv)
    with TestbedLock(inv, "restore-1", command="dcilab lab restore") as lease:    # restore may take it over
        assert lease.took_over is not None and lease.took_over.pid == pid
        assert lease_state(inv).held
    st = lease_state(inv)
    assert (st.held, st.holder) == (False, None)            # a clean release leaves no record


def test_a_dead_holder_with_nothing_to_undo_is_taken_over_by_anyone(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    inv = load_inventory(REAL)
    pid = _die_holding(tmp_path, undo_steps=0)
    with TestbedLock(inv, "", command="dcilab lab up", restores=False) as lease:
        assert lease.took_over is not None and lease.took_over.pid == pid


def test_a_second_run_waits_with_progress_lines_until_the_holder_ends(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    inv = load_inventory(REAL)
    code = HOLDER.format(root=str(ROOT), inv=str(REAL)).replace("time.sleep(600)", "time.sleep(3)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "holding"
        said: list[str] = []
        with TestbedLock(inv, "engineer-0005").acquire(wait_s=120, progress=said.append, every_s=1) as lease:
            assert lease.took_over is None                  # the holder released it cleanly
            assert p.wait(timeout=30) == 0
        assert said and all("held by run nightly-0001" in m and "--wait-lease" in m for m in said)
        p.kill()
    finally:
        p.kill()
        p.wait()
    with pytest.raises(TestbedBusy):                        # and a holder that outlasts the wait is still refused
        with TestbedLock(inv, "a"):
            TestbedLock(inv, "b").acquire(wait_s=1.5, progress=said.append, every_s=10)


def test_dcilab_lease_shows_the_holder_and_break_stops_it(holder, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["lease", "--inventory", str(REAL)]) == 0
    assert f"held by run nightly-0001 (pid {holder.pid}" in capsys.readouterr().out
    assert main(["lease", "--inventory", str(REAL), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["held"] and shown["holder"]["run_id"] == "nightly-0001"
    assert main(["lease", "break", "--inventory", str(REAL), "--timeout", "60"]) == 0
    assert "stopped (SIGTERM) and released the lease" in capsys.readouterr().out
    assert holder.wait(timeout=10) == 143
    assert main(["lease", "--inventory", str(REAL)]) == 0
    assert capsys.readouterr().out.strip() == "testbed field-trial: free"


def test_dcilab_lab_restore_on_a_held_testbed_exits_busy_before_connecting(holder,  # type: ignore[no-untyped-def]
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The template's gear does not exist (documentation addresses): a restore past the lease would
    fail on connecting, not exit busy."""
    assert main(["lab", "restore", "--inventory", str(REAL)]) == EXIT_BUSY
    assert "is in use by run nightly-0001" in capsys.readouterr().err


def test_a_lease_dir_in_the_inventory_is_where_every_controller_looks(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two controllers with their own state folders see one lease through the shared folder."""
    shared = tmp_path / "share"
    inv_file = tmp_path / "lab.yaml"
    inv_file.write_text(REAL.read_text().replace("\nsites:", f"\nlease:\n  dir: {shared}\nsites:", 1))
    for f in ("keys", "secrets"):
        if (REAL.parent / f).exists():
            (tmp_path / f).symlink_to(REAL.parent / f)
    inv = load_inventory(inv_file)
    assert lock_path(inv) == shared / f"dcilab-{inv.name}.lease"
    p = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), inv=str(inv_file))],  # noqa: S603
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "c1")})
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "holding"
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "c2"))   # the other controller's own state
        with pytest.raises(TestbedBusy, match="run nightly-0001"):
            TestbedLock(inv, "engineer-0006").acquire()
    finally:
        p.kill()
        p.wait()
    assert oct(lock_path(inv).stat().st_mode & 0o777) == "0o660"


def test_a_lease_folder_that_cannot_be_used_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-folder").write_text("")
    inv_file = tmp_path / "lab.yaml"
    inv_file.write_text(REAL.read_text().replace("\nsites:", "\nlease:\n  dir: not-a-folder/share\nsites:", 1))
    assert main(["lab", "restore", "--inventory", str(inv_file)]) == 1
    err = capsys.readouterr().err
    assert "cannot open the lease of testbed 'field-trial'" in err and str(tmp_path / "not-a-folder") in err
    assert "lease.dir" in err and "Traceback" not in err

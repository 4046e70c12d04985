"""One run at a time on a testbed.

Two trials against the same gear both inject faults into it and both results are wrong; on the
emulated lab the first run to finish brings the lab down under the other.  A run holds the
testbed's lock (``flock`` on a file of this controller host) from before the lab comes up until
the lab is restored and down; a second run is refused at once with who holds it.  The kernel
drops the lock when its holder dies, even by SIGKILL, so a crashed run never blocks the next one.

The lock is per controller host: two controllers driving the same real gear do not see each
other's locks (the lab's booking system is the place for that).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from testbed.faults.journal import journal_dir
from testbed.inventory import Inventory

EXIT_BUSY = 75
"""Exit code of a run refused because another holds the testbed (sysexits' EX_TEMPFAIL: retry later)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a testbed: written into the lock file for the run that is refused."""

    run_id: str
    pid: int
    host: str
    since: str
    command: str

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since}: {self.command})"


class TestbedBusy(RuntimeError):
    """Another run holds the testbed."""

    __test__ = False    # not a pytest test class

    def __init__(self, inv: Inventory, path: Path, holder: Holder | None) -> None:
        self.holder = holder
        who = holder.describe() if holder else "another process (its details are unreadable)"
        super().__init__(f"testbed {inv.name!r} ({inv.source}) is in use by {who}; wait for it to end or stop "
                         f"it (its faults are undone on Ctrl-C/SIGTERM), then run again. Lock file: {path}")


LOCK_DIR = Path("/run/lock")
"""Where an emulated lab's lock lives (the FHS place for lock files): not under /run/dcilab/, which
`lab down` must leave empty, nor in the lab's state folder, which it removes."""


def lock_path(inv: Inventory) -> Path:
    """``/run/lock/dcilab-<lab>.lock`` for an emulated lab, or beside the journal of a real testbed
    (``$XDG_STATE_HOME/dcilab/<name>/testbed.lock``)."""
    if inv.emulation is not None:
        return (LOCK_DIR if LOCK_DIR.is_dir() else Path("/run")) / f"dcilab-{Path(inv.emulation.state_dir).name}.lock"
    return journal_dir(inv).parent / "testbed.lock"


class TestbedLock:
    """``with TestbedLock(inv, run_id):`` holds the testbed for one run; TestbedBusy if taken."""

    __test__ = False

    def __init__(self, inv: Inventory, run_id: str, command: str | None = None) -> None:
        self.inv, self.path = inv, lock_path(inv)
        self.holder = Holder(run_id, os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             command if command is not None else " ".join(sys.argv)[:300])
        self._fd: int | None = None

    def acquire(self) -> TestbedLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise TestbedBusy(self.inv, self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(self.holder)).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)            # closing drops the flock
        self._fd = None

    def __enter__(self) -> TestbedLock:
        return self.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> Holder | None:
    try:
        d = json.loads(os.pread(fd, 4096, 0).decode())
        return Holder(str(d["run_id"]), int(d["pid"]), str(d["host"]), str(d["since"]), str(d["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None

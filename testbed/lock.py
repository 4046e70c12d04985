"""One run at a time on a testbed: its lease.

Two trials against the same gear both inject faults into it and both results are wrong; on the
emulated lab the first run to finish brings the lab down under the other.  Every command that
changes the testbed (``dcilab trial``, ``lab up``, ``lab down``, ``lab restore``) holds the
testbed's lease, an ``flock`` on a file, from before it touches anything until it is done; a
second one is refused with who holds it since when, or waits (``--wait-lease``) with a progress
line.  The file says who holds it; a clean release empties it.

The kernel drops the lock when its holder dies, even by SIGKILL, but the holder's record stays in
the file: a later command sees that a run died holding the testbed.  If that run's journal still
holds undo steps, the lease is taken over only by a command that restores first (``lab restore``,
a trial, whose readiness check restores, or ``lab down``, which removes the emulated lab with its
journal); anything else is refused until ``dcilab lab restore`` has run.

By default the lease file lives on this controller host; an inventory's ``lease.dir`` names a
folder every controller of the testbed mounts (a file system with POSIX locks: NFSv4, CephFS), so
that two controllers driving the same real gear see each other's leases.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
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
        super().__init__(f"testbed {inv.name!r} ({inv.source}) is in use by {who}; wait for it to end "
                         f"(--wait-lease SECONDS) or stop it (`dcilab lease break`: its faults are undone on "
                         f"SIGTERM), then run again. Lease file: {path}")


class LeaseUnavailable(RuntimeError):
    """The lease file cannot be opened (permissions, a read-only or missing shared folder)."""


class HolderDied(TestbedBusy):
    """The last holder died holding the testbed and its journal still has undo steps."""

    def __init__(self, inv: Inventory, path: Path, holder: Holder, pending: int) -> None:
        self.pending = pending
        RuntimeError.__init__(
            self, f"testbed {inv.name!r} ({inv.source}) was held by {holder.describe()}, which ended without "
                  f"releasing it and left {pending} journal entr{'y' if pending == 1 else 'ies'} to undo; run "
                  f"`dcilab lab restore --inventory {inv.source}` first. Lease file: {path}")
        self.holder = holder


LOCK_DIR = Path("/run/lock")
"""Where an emulated lab's lock lives (the FHS place for lock files): not under /run/dcilab/, which
`lab down` must leave empty, nor in the lab's state folder, which it removes."""


def lock_path(inv: Inventory) -> Path:
    """``<lease.dir>/dcilab-<name>.lease`` when the inventory names a shared folder; else
    ``/run/lock/dcilab-<lab>.lock`` for an emulated lab, or beside the journal of a real testbed
    (``$XDG_STATE_HOME/dcilab/<name>/testbed.lock``)."""
    if inv.lease is not None:
        return inv.resolve_path(inv.lease.dir) / f"dcilab-{inv.name}.lease"
    if inv.emulation is not None:
        return (LOCK_DIR if LOCK_DIR.is_dir() else Path("/run")) / f"dcilab-{Path(inv.emulation.state_dir).name}.lock"
    return journal_dir(inv).parent / "testbed.lock"


def pending_undo(inv: Inventory) -> int:
    """Journal entries (readable or not) a restore would have to deal with."""
    from testbed.faults.journal import Journal

    d = journal_dir(inv)
    if not d.is_dir():
        return 0
    entries, broken = Journal(d).scan()
    return len(entries) + len(broken)


class TestbedLock:
    """``with TestbedLock(inv, run_id):`` holds the testbed's lease; TestbedBusy if taken.

    ``restores``: this command restores the testbed before it changes anything, so it may take over
    the lease of a holder that died with undo steps in the journal (``took_over`` names it)."""

    __test__ = False

    def __init__(self, inv: Inventory, run_id: str, command: str | None = None, restores: bool = True) -> None:
        self.inv, self.path, self.restores = inv, lock_path(inv), restores
        self.holder = Holder(run_id, os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             command if command is not None else " ".join(sys.argv)[:300])
        self.took_over: Holder | None = None
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0, progress: Callable[[str], None] | None = None,
                every_s: float = 30.0) -> TestbedLock:
        """Take the lease, waiting up to ``wait_s`` for a live holder (``progress`` every ``every_s``)."""
        deadline, next_say = time.monotonic() + wait_s, 0.0
        while True:
            try:
                return self._try()
            except HolderDied:
                raise
            except TestbedBusy as busy:
                now = time.monotonic()
                if now >= deadline:
                    raise
                if progress is not None and now >= next_say:
                    who = busy.holder.describe() if busy.holder else "another process"
                    progress(f"waiting for testbed {self.inv.name}: held by {who}; "
                             f"{deadline - now:.0f} s left of --wait-lease")
                    next_say = now + every_s
                time.sleep(min(1.0, max(0.0, deadline - now)))

    def _try(self) -> TestbedLock:
        shared = self.inv.lease is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o770 if shared else 0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o660 if shared else 0o600)
        except OSError as exc:
            fix = ("run it as the lease file's owner, or make lease.dir writable by every controller's user "
                   "(inventory/README.md#lease)" if shared else "run it as the user that owns it (root for an "
                   "emulated lab)")
            raise LeaseUnavailable(f"cannot open the lease of testbed {self.inv.name!r} ({self.inv.source}): "
                                   f"{exc.strerror}: {self.path}; {fix}") from None
        if shared and os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o660)          # past the umask: the other controllers' users share the group
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise TestbedBusy(self.inv, self.path, holder) from None
        dead = _read_holder(fd) if os.fstat(fd).st_size else None
        if os.fstat(fd).st_size and dead is None:
            dead = Holder("?", 0, "?", "?", "an unreadable lease record")
        if dead is not None and not self.restores:
            pending = pending_undo(self.inv)
            if pending:
                os.close(fd)
                raise HolderDied(self.inv, self.path, dead, pending)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(self.holder)).encode(), 0)
        os.fsync(fd)
        self.took_over, self._fd = dead, fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)            # closing drops the flock
        self._fd = None

    def __enter__(self) -> TestbedLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> Holder | None:
    try:
        d = json.loads(os.pread(fd, 4096, 0).decode())
        return Holder(str(d["run_id"]), int(d["pid"]), str(d["host"]), str(d["since"]), str(d["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class LeaseState:
    """What ``dcilab lease`` shows: held (by whom), free, or free with a dead holder's record."""

    path: Path
    held: bool
    holder: Holder | None
    pending: int

    def describe(self, inv: Inventory) -> str:
        if self.held:
            return f"testbed {inv.name}: held by {self.holder.describe() if self.holder else 'an unknown process'}"
        if self.holder is not None:
            tail = (f"; {self.pending} journal entries to undo: run `dcilab lab restore --inventory {inv.source}`"
                    if self.pending else "; nothing left in its journal, the next run takes it over")
            return f"testbed {inv.name}: free, but {self.holder.describe()} ended without releasing it{tail}"
        return f"testbed {inv.name}: free"


def lease_state(inv: Inventory) -> LeaseState:
    """Read the lease without taking it (a shared flock probe, dropped at once)."""
    path = lock_path(inv)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return LeaseState(path, False, None, 0)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        holder = _read_holder(fd) if os.fstat(fd).st_size else None
    finally:
        os.close(fd)
    return LeaseState(path, held, holder, 0 if held else pending_undo(inv))


class LeaseBreakError(RuntimeError):
    """The lease could not be broken from here (another host's holder, a holder that will not end)."""


def break_lease(inv: Inventory, timeout_s: float = 120.0) -> str:
    """Stop the lease's holder with SIGTERM, which undoes its faults as Ctrl-C does, and wait until
    the lease is free; clear a dead holder's record once nothing is left in its journal.

    A holder on another host is not signalled from here (its pid means nothing on this one)."""
    st = lease_state(inv)
    if not st.held:
        if st.holder is None:
            return f"testbed {inv.name}: free; nothing to break"
        if st.pending:
            raise LeaseBreakError(st.describe(inv))
        with TestbedLock(inv, "", command="dcilab lease break"):
            pass                                     # taking and releasing it clears the record
        return f"testbed {inv.name}: cleared the record of {st.holder.describe()}, which ended without releasing it"
    h = st.holder
    if h is None or h.pid <= 0:
        raise LeaseBreakError(f"testbed {inv.name} is held by a process whose record is unreadable ({st.path}); "
                              "find it with `fuser -v` and stop it")
    if h.host != socket.gethostname():
        raise LeaseBreakError(f"testbed {inv.name} is held by {h.describe()}: stop it on {h.host}")
    try:
        os.kill(h.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise LeaseBreakError(f"cannot signal {h.describe()}: {exc}") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not lease_state(inv).held:
            return f"testbed {inv.name}: {h.describe()} stopped (SIGTERM) and released the lease"
        time.sleep(0.2)
    raise LeaseBreakError(f"{h.describe()} still holds testbed {inv.name} {timeout_s:.0f} s after SIGTERM; "
                          f"it may be undoing its faults: wait, or `kill -KILL {h.pid}` and run "
                          f"`dcilab lab restore --inventory {inv.source}`")

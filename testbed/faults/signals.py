"""SIGINT/SIGTERM as an exception, so that ``with fault.applied(...)`` blocks undo their faults
when a test run is interrupted or stopped (a CI timeout, systemd, kill)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread on SIGINT/SIGTERM while :func:`interrupts_as_exceptions` is active.
    A KeyboardInterrupt, so ``except Exception`` does not swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Install handlers raising :class:`Interrupted`; the previous handlers come back on exit.
    Outside the main thread (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while an undo runs; they are delivered, and raise, once the block is
    left.  Every device call has a timeout, so this cannot hang forever.

    The handlers themselves are swapped for one that only records the signal: blocking it in the
    main thread (pthread_sigmask) is not enough, because the kernel then delivers a process-directed
    signal to another thread (paramiko's, the metrics writer's, a job's log reader) and CPython still
    runs the Python handler in the main thread, in the middle of the undo."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, record) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        for s in dict.fromkeys(pending):      # each once, in the order they came
            signal.raise_signal(s)             # the previous handler: Interrupted, the default, or ignored

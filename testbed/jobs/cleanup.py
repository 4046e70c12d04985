"""Stopping a run's processes on a node by its id: what the launcher does at the end of a job and
what ``dcilab lab restore`` does for a job whose controller died (SIGKILL, a crash, a reboot):
the job is journaled with the faults (testbed/faults/journal.py) until it is stopped for sure."""

from __future__ import annotations

import shlex
from typing import Any


def run_pattern(run_id: str) -> str:
    """``pgrep -f`` pattern of every process started for ``run_id`` (workload.train's
    ``--run-id``); the [r] keeps pgrep's own shell out of the match."""
    return "[r]un-id[= ]" + run_id + "( |$)"


def stop_run(node: Any, run_id: str, grace_s: float = 5.0) -> list[str]:
    """TERM (and CONT, so a frozen one acts on it) every process of the run on ``node``, KILL what
    is left after ``grace_s``; returns what is still there (``pgrep -af`` lines, empty when gone)."""
    pat = shlex.quote(run_pattern(run_id))
    node.run(f"pkill -TERM -f {pat}; pkill -CONT -f {pat}; true", timeout=15)
    node.run(f"for i in $(seq {max(1, int(grace_s * 10))}); do pgrep -f {pat} >/dev/null || exit 0; sleep 0.1; "
             f"done; pkill -KILL -f {pat}; sleep 0.2; true", timeout=30 + grace_s)
    r = node.run(f"pgrep -af {pat}; true", timeout=15)
    return [x for x in r.stdout.splitlines() if x.strip()]

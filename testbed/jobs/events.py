"""What a training job says, turned into facts the controller can act on.

* :class:`IterationEvent`: one finished iteration, parsed from a line of a rank's output by a
  parser: :class:`JsonLineParser` (``workload.train``'s JSON lines) or :class:`MegatronParser`
  (Megatron-LM's ``training_log`` with ``--log-interval 1``: ``elapsed time per iteration (ms)``).
* :func:`scan_line`: the evidence of an interruption in a log line (gloo/NCCL timeout, connection
  reset, a worker that exited, a rendezvous that failed, a node that cannot start torch).
* :func:`evidence_complete`: whether every node has said what it will say (no need to wait longer).
* :func:`classify`: the cause of an interruption from every node's evidence and exit code.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from workload.timing import parse_megatron_line

# ------------------------------------------------------------------------------------ causes

PG_TIMEOUT = "pg-timeout"              # gloo/NCCL collective or p2p timed out
CONNECTION_RESET = "connection-reset"  # a peer's socket closed or reset
RANK_EXIT = "rank-exit"                # a worker exited (signal or error) on its own
RENDEZVOUS = "rendezvous-failed"       # the c10d rendezvous did not complete
NODE_START = "node-start-failed"       # torch / the workload could not start on a node
STALLED = "stalled"                    # no iteration within the watchdog's bound, no evidence
STARTUP = "startup-deadline"           # no first iteration within the startup deadline
STOPPED = "stopped"                    # stopped by the controller (stop() / Ctrl-C)
SCHEDULER = "scheduler"                # the workload manager refused, timed out, preempted or failed the job

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (RENDEZVOUS, re.compile(r"RendezvousTimeoutError|RendezvousClosedError|RendezvousConnectionError|"
                            r"rendezvous .*(timed out|did not complete)", re.I)),
    (NODE_START, re.compile(r"No module named|ModuleNotFoundError|command not found|"
                            r"can't open file|cannot execute|ImportError", re.I)),
    (PG_TIMEOUT, re.compile(r"Timed out waiting \d+ ?ms|Watchdog caught collective operation timeout|"
                            r"operation timed out|DistBackendError.*[Tt]ime(d)? ?out|Socket Timeout|"
                            r"wait timeout after \d+ms", re.I)),
    (CONNECTION_RESET, re.compile(r"Connection reset by peer|Connection closed by peer|ECONNRESET|"
                                  r"Broken pipe|Connection refused|NCCL.*remote process exited", re.I)),
]
_EXITCODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")
_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_SIGNAL = re.compile(r"Signal (\d+) \((SIG\w+)\) received by PID (\d+)")
_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")
_PEER = re.compile(r"\[(\d{1,3}(?:\.\d{1,3}){3})\]:\d+")


@dataclass
class Evidence:
    kind: str
    line: str
    mono: float = field(default_factory=time.monotonic)


@dataclass
class NodeEvidence:
    """What one node's log has shown so far."""

    node: str
    items: list[Evidence] = field(default_factory=list)
    worker_exitcode: int | None = None   # torchrun's failure report: exitcode of the failed worker
    worker_rank: int | None = None
    worker_signal: str | None = None
    exit_code: int | None = None         # the node's command (torchrun) exit code, when known

    def kinds(self) -> set[str]:
        return {e.kind for e in self.items}

    def first(self, kind: str) -> Evidence | None:
        return next((e for e in self.items if e.kind == kind), None)


def scan_line(ev: NodeEvidence, line: str) -> str | None:
    """Record the evidence in ``line`` (if any) and return its kind."""
    m = _EXITCODE.match(line)
    if m:
        ev.worker_exitcode = int(m.group(1))
        ev.items.append(Evidence(RANK_EXIT, line.strip()))
        return RANK_EXIT
    m = _FAILED.search(line)
    if m:
        ev.worker_exitcode = int(m.group(1))
        ev.items.append(Evidence(RANK_EXIT, line.strip()[:500]))
        return RANK_EXIT
    m = _RANK.match(line)
    if m:
        ev.worker_rank = int(m.group(1))
        return None
    m = _SIGNAL.search(line)
    if m:
        ev.worker_signal = m.group(2)
        return None
    if line.startswith("{"):   # an iteration line is never evidence
        return None
    for kind, pat in _PATTERNS:
        if pat.search(line):
            ev.items.append(Evidence(kind, line.strip()[:500]))
            return kind
    return None


COMM = (PG_TIMEOUT, CONNECTION_RESET)


def evidence_complete(nodes: Sequence[NodeEvidence], exited: Mapping[str, bool], started: bool = False) -> bool:
    """Whether waiting longer can add nothing to :func:`classify`'s input: every node has exited
    (``exited``: its output read to the end), or has shown evidence that ``classify`` weighs (not
    a rendezvous or start error once the loop ``started``: torchrun logs those while it winds down,
    also after a run that completed) while its torchrun is still up and has reported no failed
    worker.  A torchrun that has reported one exits in a moment, so its node is waited for: its
    exit code belongs in the outcome.  A silent node may still say it was the root cause (a killed
    rank's torchrun reports after the others' resets)."""
    ignored = {NODE_START, RENDEZVOUS} if started else set()
    return all(exited.get(n.node, False) or (bool(n.kinds() - ignored) and n.worker_exitcode is None)
               for n in nodes)


def classify(nodes: list[NodeEvidence], started: bool = False,
             addresses: dict[str, str] | None = None) -> tuple[str, str]:
    """(cause, detail) of an interruption.

    Root causes first: a node that could not start, a rendezvous that failed (only before the
    training loop ``started``: afterwards torchrun's agents log rendezvous errors as they react
    to a lost rank, a consequence), then a worker that exited with no communication error of
    its own (it was killed, or crashed: the other ranks' resets and timeouts are consequences),
    then a process-group timeout anywhere, then a connection reset, then any non-zero exit.
    """
    for kind in () if started else (NODE_START, RENDEZVOUS):
        for n in nodes:
            e = n.first(kind)
            if e:
                return kind, f"{n.node}: {e.line}"
    for n in nodes:
        if n.worker_exitcode is not None and not (n.kinds() & set(COMM)):
            how = f"signal {n.worker_signal}" if n.worker_signal else f"exit code {n.worker_exitcode}"
            rank = f"rank {n.worker_rank}" if n.worker_rank is not None else "a rank"
            return RANK_EXIT, f"{rank} on {n.node} exited ({how})"
    if addresses:
        by_addr = {a: n for n in nodes for nn, a in addresses.items() if nn == n.node}
        for n in nodes:
            for e in n.items:
                if e.kind != CONNECTION_RESET:
                    continue
                for a in _PEER.findall(e.line):
                    peer = by_addr.get(a)
                    if peer is not None and peer is not n and not (peer.kinds() & set(COMM)):
                        return RANK_EXIT, (f"a rank on {peer.node} went away without an error of its own "
                                           f"({n.node} saw: {e.line[:200]})")
    for kind in COMM:
        hits = [(e.mono, n.node, e.line) for n in nodes for e in n.items if e.kind == kind]
        if hits:
            _, node, line = min(hits)
            return kind, f"{node}: {line}"
    for n in nodes:
        if n.exit_code not in (None, 0):
            return RANK_EXIT, f"{n.node}: torchrun exited {n.exit_code}"
    return RANK_EXIT, "a node exited without a reason in its log"


# ------------------------------------------------------------------------------------ iterations


@dataclass(frozen=True)
class IterationEvent:
    """One finished iteration as the controller learnt it (``step`` is 0-based)."""

    step: int
    start_ns: int
    end_ns: int
    duration_s: float
    tokens_per_s: float
    loss: float | None
    warmup: bool
    node: str
    received_ns: int
    layout: str | None = None
    placement: str | None = None
    model: str | None = None
    raw: str = ""


class IterationParser(Protocol):
    def parse(self, line: str, node: str) -> IterationEvent | None: ...


class JsonLineParser:
    """``workload.train``'s JSON lines (rank 0's stdout)."""

    def parse(self, line: str, node: str) -> IterationEvent | None:
        s = line.strip()
        if not (s.startswith("{") and '"step"' in s and '"duration_s"' in s):
            return None
        try:
            d = json.loads(s)
            return IterationEvent(step=int(d["step"]), start_ns=int(d["start_ns"]), end_ns=int(d["end_ns"]),
                                  duration_s=float(d["duration_s"]), tokens_per_s=float(d.get("tokens_per_s") or 0.0),
                                  loss=d.get("loss"), warmup=bool(d.get("warmup", False)), node=node,
                                  received_ns=time.time_ns(), layout=d.get("layout"), placement=d.get("placement"),
                                  model=d.get("model"), raw=s)
        except (ValueError, KeyError, TypeError):
            return None


class MegatronParser:
    """Megatron-LM's iteration lines (``--log-interval 1``)::

        [2025-01-01 10:00:00] iteration        3/     100 | consumed samples: ... |
        elapsed time per iteration (ms): 1234.5 | ... | lm loss: 3.25E+00 | ...

    Megatron numbers iterations from 1; the event's step is ``iteration - 1``.  Megatron's own
    timestamp has second resolution, so the times come from the controller's clock: the end is
    when the line arrived, the start is the end minus the elapsed time.  ``tokens_per_iteration``
    (global batch x sequence length) gives tokens/s; ``warmup`` marks the first iterations.
    """

    def __init__(self, tokens_per_iteration: int = 0, warmup: int = 0, layout: str | None = None,
                 placement: str | None = None, model: str | None = None) -> None:
        self.tokens, self.warmup = tokens_per_iteration, warmup
        self.layout, self.placement, self.model = layout, placement, model

    def parse(self, line: str, node: str) -> IterationEvent | None:
        d = parse_megatron_line(line)
        if d is None:
            return None
        now = time.time_ns()
        dur = d["elapsed_ms"] / 1000.0
        loss = d.get("lm_loss")
        if loss is not None and loss != loss:  # nan
            loss = None
        step = d["iteration"] - 1
        return IterationEvent(step=step, start_ns=now - int(dur * 1e9), end_ns=now, duration_s=dur,
                              tokens_per_s=self.tokens / dur if dur > 0 and self.tokens else 0.0, loss=loss,
                              warmup=step < self.warmup, node=node, received_ns=now, layout=self.layout,
                              placement=self.placement, model=self.model, raw=line.strip())

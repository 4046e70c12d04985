"""Per-iteration timing done right, and its output.

Per iteration (Megatron's ``interval-time`` timer with ``barrier=True``, less its barrier at the stop):

1. barrier over the group, device sync, then ``t0`` (``time.time_ns()`` for the timestamp,
   ``perf_counter_ns()`` for the duration): every rank starts the step together;
2. the training step;
3. device sync, then ``t1`` (``perf_counter_ns()``): each rank's own duration, ended by its sync;
4. ``all_reduce(MAX)`` of ``[duration, loss]``: the recorded duration is the slowest rank's, and the
   loss reaches rank 0 (ranks without a loss contribute -inf);
5. rank 0 emits one JSON line (stdout and ``--out``, flushed), or a Megatron-style line.

No barrier between 3 and 4: the all_reduce cannot complete before every rank has finished its step,
and the next iteration's barrier (1) re-aligns the start after rank 0's emit and whatever the caller
does between iterations.  So per iteration the timer adds one barrier and one all_reduce of two
doubles, plus ~10-20 us of Python (record, JSON, two flushed writes); over gloo the two collectives
dominate (``bench/bench_workload.py`` measures the cost with this very code).

Timestamps are rank 0's ``time.time_ns()``, one clock for every point: ``start_ns`` is rank 0's
``t0``; ``end_ns`` is taken when rank 0's all_reduce returns, once every rank has finished the step,
so iterations never overlap (``end_ns`` <= the next ``start_ns``).  ``end_ns - start_ns`` differs
from ``duration_s`` by the all_reduce's latency and by how far apart the ranks left the barrier
(``start_ns + duration_s`` would not do: the slowest rank may have left the barrier, and so
finished, before rank 0, and the next iteration may then start before ``start_ns + duration_s``).

Iterations ``step < warmup`` are marked ``"warmup": true`` (still run, timed and logged).
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = ["IterationRecord", "IterationTimer", "megatron_line", "parse_megatron_line"]


@dataclass
class IterationRecord:
    step: int
    start_ns: int
    end_ns: int
    duration_s: float
    tokens_per_s: float
    loss: float | None
    layout: str
    placement: str
    warmup: bool
    model: str
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in ("step", "start_ns", "end_ns", "duration_s", "tokens_per_s",
                                           "loss", "layout", "placement", "warmup", "model")}
        d.update(self.extra)
        return json.dumps(d, separators=(",", ":"))


def megatron_line(rec: IterationRecord, total_steps: int, *, consumed_samples: int, global_batch: int,
                  lr: float, tflops_per_gpu: float | None = None) -> str:
    """A line in Megatron-LM's ``training_log`` format (``--log-interval 1``); steps 1-based."""
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.end_ns / 1e9))
    s = f" [{ts}] iteration {rec.step + 1:8d}/{total_steps:8d} |"
    s += f" consumed samples: {consumed_samples:12d} |"
    s += f" elapsed time per iteration (ms): {rec.duration_s * 1000.0:.1f} |"
    if tflops_per_gpu is not None:
        s += f" throughput per GPU (TFLOP/s/GPU): {tflops_per_gpu:.1f} |"
    s += f" learning rate: {lr:.6E} |"
    s += f" global batch size: {global_batch:5d} |"
    if rec.loss is not None:
        s += f" lm loss: {rec.loss:.6E} |"
    s += " loss scale: 1.0 |"
    s += f" number of skipped iterations: {0:3d} |"
    s += f" number of nan iterations: {int(rec.loss is not None and math.isnan(rec.loss)):3d} |"
    return s


def parse_megatron_line(line: str) -> dict | None:
    """Minimal reference parser (iteration, total, elapsed ms, lm loss) for the format above."""
    import re
    m = re.search(r"iteration\s+(\d+)/\s*(\d+)\s*\|.*?elapsed time per iteration \(ms\):\s*([0-9.]+)", line)
    if not m:
        return None
    out = {"iteration": int(m.group(1)), "total": int(m.group(2)), "elapsed_ms": float(m.group(3))}
    lm = re.search(r"lm loss:\s*([0-9.eE+-]+|nan)", line)
    out["lm_loss"] = float(lm.group(1)) if lm else None
    return out


class IterationTimer:
    """Times iterations over a process group (see the module docstring); rank 0 writes the records.

    Every rank of ``group`` must time the same iterations: the barrier and the all_reduce are
    collectives.  ``sync()`` waits for the device (``torch.cuda.synchronize`` on GPU, nothing on CPU).
    """

    def __init__(self, *, rank: int, layout: str, placement: str, model: str, tokens_per_step: int,
                 warmup: int = 0, out_path: str | None = None, log_format: str = "json",
                 total_steps: int = 0, global_batch: int = 0, lr: float = 0.0, group=None,
                 device: str | torch.device = "cpu", stream=None, extra: dict | None = None):
        self.rank, self.layout, self.placement, self.model = rank, layout, placement, model
        self.tokens_per_step, self.warmup = tokens_per_step, warmup
        self.log_format, self.total_steps = log_format, total_steps
        self.global_batch, self.lr, self.group = global_batch, lr, group
        self.device = torch.device(device)
        self.stream = sys.stdout if stream is None else stream
        self.extra = dict(extra or {})
        self._out = open(out_path, "a", buffering=1) if (out_path and rank == 0) else None  # noqa: SIM115
        # [duration ns, loss], written through a numpy view (a tensor __setitem__ costs ~1.5 us each);
        # the reduced tensor lives on the device the backend wants (NCCL: the GPU).
        self._host = torch.zeros(2, dtype=torch.float64)
        self._vals = self._host.numpy()
        self._buf = self._host if self.device.type == "cpu" else torch.zeros(2, dtype=torch.float64,
                                                                              device=self.device)
        self.records: list[IterationRecord] = []

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _barrier(self):
        if dist.is_initialized():
            if self.device.type == "cuda":
                dist.barrier(group=self.group, device_ids=[self.device.index or 0])
            else:
                dist.barrier(group=self.group)

    @contextmanager
    def iteration(self, step: int):
        """``with timer.iteration(step) as it: it.loss = train_step()``"""
        self._barrier()
        self.sync()
        t0_ns, p0 = time.time_ns(), time.perf_counter_ns()
        box = _Box()
        yield box
        self.sync()
        p1 = time.perf_counter_ns()
        self.record(step, t0_ns, p1 - p0, box.loss)

    def record(self, step: int, start_ns: int, duration_ns: int, loss: float | None) -> IterationRecord | None:
        """Reduce this rank's ``duration_ns`` and ``loss`` over the group (MAX); rank 0 emits and returns
        the record.  Every rank of the group must call it (it is a collective)."""
        vals = self._vals
        vals[0] = duration_ns
        vals[1] = -math.inf if loss is None else float(loss)
        if dist.is_initialized():
            if self._buf is not self._host:
                self._buf.copy_(self._host)
            dist.all_reduce(self._buf, op=dist.ReduceOp.MAX, group=self.group)
        if self.rank != 0:
            return None
        dur_ns, lv = self._buf.tolist()  # float64 holds integer ns exactly up to 104 days
        end_ns = time.time_ns()          # after tolist(): on GPU that waits for the reduction too
        dur = dur_ns / 1e9
        rec = IterationRecord(step=step, start_ns=start_ns, end_ns=end_ns, duration_s=dur,
                              tokens_per_s=self.tokens_per_step / dur if dur > 0 else 0.0,
                              loss=None if lv == -math.inf else lv, layout=self.layout,
                              placement=self.placement, warmup=step < self.warmup, model=self.model,
                              extra=self.extra)
        self.emit(rec)
        return rec

    def emit(self, rec: IterationRecord):
        self.records.append(rec)
        line = rec.to_json()
        if self._out is not None:
            self._out.write(line + "\n")
            self._out.flush()
        if self.log_format == "megatron":
            text = megatron_line(rec, self.total_steps, consumed_samples=(rec.step + 1) * self.global_batch,
                                 global_batch=self.global_batch, lr=self.lr)
        elif self.log_format == "none":
            return
        else:
            text = line
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self._out is not None:
            self._out.close()
            self._out = None


class _Box:
    loss: float | None = None

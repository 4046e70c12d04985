"""Shared training jobs: one long-lived job per model/layout/placement hosts many cases.

Why: two thirds of a per-case job was fixed cost (torchrun start, rendezvous, model build and
stop: ~26 s on the emulated lab; a checkpoint load and NCCL start-up on real gear), and the
machine's speed drifts 10-20 % over minutes, so a baseline measured in another job minutes
earlier was the weakest part of every verdict.  The trial trained continuously and changed the
network under the running job; so does this.  A case is a stretch of the job's iterations::

    reference | conditions set | steady under them | fault held | fault undone, settle | after | conditions undone

and is judged against the unimpaired windows right before and after it in the same job
(interleaved A/B/A).  Windows are whole iterations: an iteration that was in progress while the
network changed belongs to no window; after a fault's undo (whose own hit, a revert or a rate
restore, is not the fault's), iterations are set aside until one is back inside the reference's
noise band, at most ``settle_max``.

The lab is at its baseline between cases (every case undoes its conditions), so the checks the
session makes after each case stay as they were.  A job a case interrupts (a QP error at BER
1e-8) is gone; the next case on that placement starts a new one, and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import DriverError
from testbed.faults import Fault, FaultError
from testbed.faults.ops import UndoFailed
from testbed.jobs import JobEnded, JobError, TrainingJob
from testbed.jobs.events import IterationEvent
from testbed.jobs.slurm import job_class

from . import analysis
from .analysis import Point
from .probe import ProbeFailed
from .runner import CaseRun, CaseRunner, FaultWindow, HeldFault, JobSpec, ProbePlan, _slug

ENDLESS = 100_000
"""The shared job's ``--steps``: more than any run needs; the pool ends the job when its cases are done."""


@dataclass
class Window:
    """A stretch of a shared job's iterations and what it was for."""

    role: str                # "reference" | "steady" | "fault" | "after"
    case: str
    conditions: tuple[str, ...]
    steps: list[int]


@dataclass
class CasePlan:
    """What a case asks of the shared job."""

    case: str
    scenario: str
    conditions: list[Fault]
    fault: Fault | None
    hold: int                # iterations the fault stays on
    steady: int              # iterations per window
    probe: ProbePlan | None
    timeout_s: float


@dataclass
class Paired:
    """A case's reference windows in its own job (what its verdict compares against)."""

    before: list[Point]
    after: list[Point]
    set_aside: list[int] = field(default_factory=list)     # iterations in no window (changes, settling)
    settled: bool = True               # after the undo, an iteration came back inside the band

    def to_dict(self) -> dict[str, Any]:
        def med(ps: list[Point]) -> float | None:
            return round(statistics.median(p.duration_s for p in ps), 6) if ps else None
        return {"before_steps": [p.step for p in self.before], "after_steps": [p.step for p in self.after],
                "before_s": med(self.before), "after_s": med(self.after), "set_aside_steps": self.set_aside,
                "settled": self.settled}


def condition_key(conditions: list[Fault], inv: Any) -> tuple[str, ...]:
    """The conditions that change something (the physical 4:1 ratio has no step): two cases with
    the same key run under the same network."""
    out = []
    for c in conditions:
        apply, _undo = c.plan(inv)
        if apply:
            out.append(f"{c.KIND} {c.target}")
    return tuple(out)


class SharedJob:
    """One training job and the windows its cases took from it."""

    def __init__(self, runner: CaseRunner, spec: JobSpec, job_id: str, job_dir: Path, job: TrainingJob) -> None:
        self.runner, self.spec, self.job_id, self.dir, self.job = runner, spec, job_id, job_dir, job
        self.windows: list[Window] = []
        self.clean_from = 0          # first iteration since the last change to the network
        self.current_case: str | None = None
        self.current_phase = ""
        self.cases: list[str] = []
        self.wan_bytes_per_iteration: float | None = None

    # ---------------------------------------------------------------------------------- iterations

    @property
    def alive(self) -> bool:
        return self.job.outcome is None

    def in_progress(self) -> int:
        """The iteration the job is in now (iterations finish in order)."""
        return len(self.job.events)

    def point(self, step: int) -> Point:
        e = next(e for e in self.job.events if e.step == step)
        return CaseRunner._point(e)

    def changed(self) -> None:
        """The network was just changed: the iteration in progress is mixed, the next is clean."""
        self.clean_from = self.in_progress() + 1

    def collect(self, n: int, timeout: float, first: int | None = None) -> list[int]:
        """``n`` whole iterations from ``first`` (default: the next one to start after the last
        change); waits for them."""
        first = max(self.clean_from, self.in_progress() + 1) if first is None else first
        self.job.wait_for_iteration(first + n - 1, timeout)
        return list(range(first, first + n))

    def clean(self, n: int, timeout: float, *, fresh: bool = False) -> list[int]:
        """``n`` iterations since the last change: the latest ones already finished when there are
        enough (and ``fresh`` is not asked), otherwise newly collected."""
        done = self.in_progress()
        if not fresh and done - self.clean_from >= n:
            return list(range(done - n, done))
        return self.collect(n, timeout)

    def at_start_after(self, window: list[int], timeout: float) -> int:
        """Wait for the iteration right after ``window`` to start (the next one to start, if that
        one is already under way); returns its step."""
        k = window[-1] + 1 if window else self.in_progress() + 1
        if self.in_progress() > k:
            k = self.in_progress() + 1
        self.job.wait_for_iteration_start(k, timeout)
        return k

    def unimpaired(self) -> list[Point]:
        steps = sorted({s for w in self.windows if w.role in ("reference", "after") and not w.conditions
                        for s in w.steps})
        return [self.point(s) for s in steps]


class JobPool:
    """The shared jobs of a trial run, one at a time on the GPU nodes: a case on another
    placement (or a job that ended) starts a new one."""

    def __init__(self, runner: CaseRunner, *, warmup: int, settle_max: int, noise: Any,
                 wan_bytes: Callable[[], int | None] = lambda: None) -> None:
        self.runner = runner
        self.warmup, self.settle_max, self.noise = warmup, settle_max, noise
        self.wan_bytes = wan_bytes
        self.current: SharedJob | None = None
        self.jobs: list[SharedJob] = []
        self.stopped: dict[tuple[Any, ...], str] = {}   # placements whose job a failed undo stopped, and why
        self.on_job_end: Callable[[SharedJob], None] = lambda _j: None

    # ---------------------------------------------------------------------------------- jobs

    def job_for(self, spec: JobSpec, case: str, steady: int, timeout: float) -> SharedJob:
        cur = self.current
        if cur is not None and cur.spec.baseline_key() == spec.baseline_key() and cur.alive:
            return cur
        if cur is not None:
            why = ("it ended: " + str(cur.job.outcome.status) + (f" ({cur.job.outcome.cause})"
                                                                 if cur.job.outcome.cause else "")
                   if not cur.alive else f"{case} trains {spec.placement}")
            self.end(f"a new job for {spec.placement}: {why}")
        return self._start(spec, case, steady, timeout)

    def _start(self, spec: JobSpec, case: str, steady: int, timeout: float) -> SharedJob:
        r = self.runner
        r._seq += 1
        job_id = f"{r.run_id}-{r._seq:02d}-shared-{_slug(spec.placement)}"[:100]
        job_dir = r.report_dir / "cases" / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        spec = dataclasses.replace(spec, steps=ENDLESS)
        job = job_class(r.inv)(r.inv, list(spec.nodes), spec.workload_args(), job_id, case=f"shared-{spec.placement}",
                          scenario="shared", report_dir=job_dir, metrics=r.writer, pg_timeout_s=spec.pg_timeout_s,
                          startup_timeout_s=spec.startup_timeout_s, min_stall_s=spec.min_stall_s,
                          rdzv_port=r._rdzv_port(), nproc_per_node=spec.nproc_per_node)
        job.tags["run_id"] = r.run_id
        sj = SharedJob(r, spec, job_id, job_dir, job)
        job.on_event = self._on_event(sj)
        r.progress(f"{case}: starting a shared job {job_id}: {spec.layout} {spec.placement} on "
                   f"{', '.join(spec.nodes)}; it hosts every case on {spec.placement} until one ends it")
        self.current = sj
        self.jobs.append(sj)
        job.start()
        sj.current_case, sj.current_phase = case, "reference"
        sj.clean_from = self.warmup
        try:         # the job's first unimpaired window, with the WAN bytes it put on the line
            job.wait_for_iteration_start(self.warmup, timeout)
            w0 = self.wan_bytes()
            steps = sj.collect(steady, timeout, first=self.warmup)
            w1 = self.wan_bytes()
            if w0 is not None and w1 is not None and w1 >= w0:
                sj.wan_bytes_per_iteration = (w1 - w0) / len(steps)
            sj.windows.append(Window("reference", case, (), steps))
        finally:
            sj.current_case = None
        return sj

    def end(self, why: str = "its cases are done") -> None:
        sj, self.current = self.current, None
        if sj is None:
            return
        out = sj.job.end(why)
        self.runner.progress(f"shared job {sj.job_id}: {out.status}"
                             f"{' (' + out.cause + ')' if out.cause and out.cause != 'ended' else ''} after "
                             f"{len(sj.job.events)} iterations, {len(sj.cases)} case(s): {why}")
        self._save_iterations(sj)
        self.on_job_end(sj)

    def close(self) -> None:
        self.end("the run is over")

    def _on_event(self, sj: SharedJob) -> Callable[[IterationEvent], None]:
        r = self.runner

        def cb(e: IterationEvent) -> None:
            who = sj.current_case or f"shared job {sj.spec.placement}"
            phase = f" ({sj.current_phase})" if sj.current_case and sj.current_phase else ""
            if sj.current_case and e.step < sj.clean_from and e.step >= self.warmup:
                phase = " (set aside: the network changed during it)"
            fault = f", fault: {r.current_fault}" if r.current_fault else ""
            r.progress(f"{who}: iteration {e.step} {e.duration_s:.3f} s{' (warm-up)' if e.warmup else phase}{fault}")
            if r.on_iteration is not None and sj.current_case:
                r.on_iteration(sj.current_case, CaseRunner._point(e))
        return cb

    def _save_iterations(self, sj: SharedJob) -> None:
        owner = {s: w.case for w in sj.windows for s in w.steps}
        with contextlib.suppress(OSError), open(self.runner.report_dir / "iterations.jsonl", "a") as f:
            for e in sorted(sj.job.events, key=lambda e: e.step):
                try:
                    raw = json.loads(e.raw) if e.raw.strip().startswith("{") else {"line": e.raw}
                except ValueError:
                    raw = {"line": e.raw}
                f.write(json.dumps({"run_id": self.runner.run_id, "case": owner.get(e.step), "job_id": sj.job_id,
                                    "node": e.node, "received_ns": e.received_ns, **raw},
                                   separators=(",", ":")) + "\n")

    # ---------------------------------------------------------------------------------- a case

    def run_case(self, spec: JobSpec, plan: CasePlan) -> tuple[CaseRun, Paired | None]:
        """The case's windows on the shared job for ``spec``; everything it changed is undone on
        any way out, and a job a failure leaves in doubt is ended."""
        r = self.runner
        deadline = time.monotonic() + plan.timeout_s
        r.partial = None

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        cond_w: list[FaultWindow] = []
        fault_w: list[FaultWindow] = []
        probe_rep: dict[str, Any] | None = None
        probe_err: str | None = None
        error: str | None = None
        started = time.time_ns()
        sj: SharedJob | None = None
        paired: Paired | None = None
        series: list[int] = []
        key = condition_key(plan.conditions, r.inv)
        why_not = self.stopped.get(spec.baseline_key())
        if why_not is not None:
            r.progress(f"{plan.case}: not run: {why_not}")
            return self._result(None, spec, plan, [], [], [], None, None, started, f"not run: {why_not}"), None
        try:
            sj = self.job_for(spec, plan.case, plan.steady, left())
            if plan.case not in sj.cases:       # a case measured again (too noisy) is still one case
                sj.cases.append(plan.case)
            sj.current_case = plan.case
            sj.job.tags.update(case=plan.case, scenario=plan.scenario)   # the store files its iterations under it
            with contextlib.ExitStack() as stack:
                a_before: list[int] = []
                if plan.fault is None and key:       # a setting: the unimpaired job right before it
                    sj.current_phase = "reference"
                    a_before = sj.clean(plan.steady, left())
                    sj.windows.append(Window("reference", plan.case, (), a_before))
                for c in plan.conditions:
                    r.progress(f"{plan.case}: condition {c.KIND} {c.target}")
                    stack.enter_context(r._condition(c, plan.case, plan.scenario, cond_w))
                for w in cond_w:
                    w.applied_step = sj.in_progress()
                if key:
                    sj.changed()
                pr = None
                if plan.probe is not None and plan.fault is not None:
                    pr = r._start_probe(plan.probe, sj.dir, sj.job)
                    if isinstance(pr, str):
                        probe_err, pr = pr, None
                    else:
                        stack.callback(pr.close)
                        sj.changed()       # the steady window carries the probe's load like the faulted one
                sj.current_phase = "steady" if plan.fault is not None else "under the conditions"
                # A setting that changes something is measured from its change on; one that changes
                # nothing (the physical 4:1) is the job as it runs: its latest clean iterations.
                before = sj.clean(plan.steady, left())
                sj.windows.append(Window("reference" if plan.fault is not None else "steady", plan.case, key, before))
                series += before
                if plan.fault is None:
                    sj.current_phase = ""
                    stack.close()               # the conditions undone: back to the unimpaired job
                    for w in cond_w:
                        w.undone_step = sj.in_progress()
                    sj.current_phase = "reference after"
                    if key:
                        sj.changed()
                        a_after = sj.clean(plan.steady, left(), fresh=True)
                    else:        # nothing changed: the iteration under way is clean too
                        a_after = sj.collect(plan.steady, left(), first=max(sj.in_progress(), before[-1] + 1))
                    sj.windows.append(Window("reference", plan.case, (), a_after))
                    paired = Paired([sj.point(s) for s in a_before], [sj.point(s) for s in a_after])
                else:
                    fault = plan.fault
                    applied, job = sj.at_start_after(before, left()), sj.job
                    w = FaultWindow(fault.KIND, fault.target, "fault", applied_step=applied)
                    hf = HeldFault(w)
                    fault_w.append(w)
                    sj.current_phase = "fault"
                    try:
                        r.hold_fault(plan.case, plan.scenario, fault, hf,
                                     lambda: job.wait_for_iteration(applied + plan.hold - 1, left()), pr, sj.in_progress)
                    finally:
                        probe_rep, probe_err = hf.probe_report, hf.probe_error or probe_err
                    assert w.undone_step is not None
                    held = list(range(applied, w.undone_step))
                    sj.windows.append(Window("fault", plan.case, key, held))
                    series += held
                    sj.changed()
                    sj.current_phase = "settling"
                    if pr is not None:     # the after window carries the probe's load like the others
                        pr2 = r._start_probe(plan.probe, sj.dir / f"{_slug(plan.case)}-after", sj.job) \
                            if plan.probe is not None else None
                        if pr2 is not None and not isinstance(pr2, str):
                            stack.callback(pr2.close)
                    ref = [sj.point(s).duration_s for s in before]
                    band = analysis.noise_band(ref, self.noise.mad_k, self.noise.floor)
                    first, settled = self._settle(sj, band.high_s, left)
                    sj.clean_from = first
                    sj.current_phase = "after"
                    after = sj.collect(plan.steady, left(), first=first)
                    sj.windows.append(Window("after", plan.case, key, after))
                    series += after
                    paired = Paired([sj.point(s) for s in before], [sj.point(s) for s in after], settled=settled)
                    sj.current_phase = ""
                for w in cond_w:
                    w.undone_step = w.undone_step or sj.in_progress()
            if plan.fault is not None and (key or plan.probe is not None):
                sj.changed()        # its conditions undone, or the probe's load gone: the next case's window is new
        except JobEnded as exc:
            error = None if fault_w else f"the job ended before the case could go on: {exc}"
            r.progress(f"{plan.case}: the shared job ended: {exc}")
            w0 = fault_w[0] if fault_w else None
            if sj is not None and w0 is not None and w0.applied_step is not None and w0.undone_step is None:
                series += list(range(w0.applied_step, sj.in_progress()))    # what the fault's iterations did
        except (FaultError, JobError, TimeoutError, ProbeFailed, DriverError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            r.progress(f"{plan.case}: stopped: {error}")
            if sj is not None and isinstance(exc, (FaultError, TimeoutError)):
                self.end(f"{plan.case} stopped: {error}")     # the job's state is in doubt
            if isinstance(exc, UndoFailed):     # the cases left on this job are not run (the lab is restored)
                self.stopped[spec.baseline_key()] = f"the undo failed in {plan.case} on this job's placement: {exc}"
        except BaseException as exc:     # Ctrl-C, a test timeout: keep what happened (all undone by now)
            r.partial = self._result(sj, spec, plan, series, fault_w, cond_w, probe_rep, probe_err, started,
                                     f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise
        finally:
            if sj is not None:
                sj.current_case, sj.current_phase = None, ""
                sj.job.tags.update(case=f"shared-{sj.spec.placement}", scenario="shared")
        if paired is not None and sj is not None:
            paired.set_aside = sorted(set(range(min(series or [0]), max(series or [0]) + 1)) - set(series))
        return self._result(sj, spec, plan, series, fault_w, cond_w, probe_rep, probe_err, started, error), paired

    def _settle(self, sj: SharedJob, high_s: float, left: Callable[[], float]) -> tuple[int, bool]:
        """After a fault's undo: the first iteration of the after window, the undo's own hit set
        aside (iterations above the reference band, at most ``settle_max``)."""
        k = sj.clean_from
        for _ in range(self.settle_max):
            e = sj.job.wait_for_iteration(k, left())
            if e.duration_s <= high_s:
                return k, True
            k += 1
        return k, False

    def _result(self, sj: SharedJob | None, spec: JobSpec, plan: CasePlan, steps: list[int],
                fault_w: list[FaultWindow], cond_w: list[FaultWindow], probe_rep: dict[str, Any] | None,
                probe_err: str | None, started: int, error: str | None) -> CaseRun:
        have = {e.step: e for e in sj.job.events} if sj is not None else {}
        series = [CaseRunner._point(have[s]) for s in steps if s in have]
        oc = sj.job.outcome if sj is not None else None
        if oc is not None and oc.cause != "ended":      # the job ended during this case: the case's outcome
            outcome = {"status": oc.status, "cause": oc.cause, "detail": oc.detail, "iterations": oc.iterations,
                       "exit_codes": oc.exit_codes, "elapsed_s": round(oc.elapsed_s, 3),
                       "detected_s": oc.detected_s, "leftovers": oc.leftovers}
        elif sj is not None and not error:
            outcome = {"status": "completed", "cause": None, "iterations": len(series),
                       "detail": f"{len(series)} iterations of shared job {sj.job_id}"}
        else:
            outcome = {"status": "not-run", "cause": None, "detail": error or ""}
        job_id = sj.job_id if sj is not None else ""
        return CaseRun(job_id, spec, series, outcome, fault_w, cond_w, probe_rep, probe_err,
                       str(sj.dir if sj is not None else self.runner.report_dir), started, time.time_ns(), error)


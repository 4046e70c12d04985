"""Run one training job under the trial's conditions, with a fault at a chosen iteration.

The sequence a case needs, waiting on conditions with deadlines (never a fixed sleep):

1. apply the standing conditions (e.g. the gateways' convergence ratio), verified;
2. start the job on the GPU nodes; wait for warm-up;
3. (optionally) start the service probe with the first iteration, so that its start-up cost falls
   in warm-up and the steady iterations carry the probe's load like the faulted ones;
4. when iteration ``fault_at`` starts, apply the fault (verified by reading the devices back);
5. hold it for ``hold`` iterations, or until the job ends;
6. stop the probe and collect its report, undo the fault (verified), wait for the job's outcome;
7. on any way out (failure, timeout, Ctrl-C) the job is stopped on every node, the probe
   stopped, the fault and the conditions undone, in that order.

The result is a :class:`CaseRun`: the per-iteration series, the fault windows (in iterations
and on the controller's clock), the job outcome and the probe report.  ``dry_run`` returns the
plan (commands and fault steps) without connecting to anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import DriverError
from testbed.faults import Fault, FaultError, FaultRecord, Testbed
from testbed.inventory import DeviceKind, Inventory
from testbed.jobs import JobEnded, JobError, TrainingJob
from testbed.jobs.events import IterationEvent
from testbed.jobs.slurm import SlurmTrainingJob, job_class

from .analysis import Point
from .probe import ProbeFailed, ServiceProbe

logger = logging.getLogger("dcilab.trial")
RDZV_PORT_BASE, RDZV_PORTS = 29500, 16      # 29500-29515 must be open between the GPU nodes


@dataclass(frozen=True)
class JobSpec:
    """What to train: the same spec gives the same job (and the same cached baseline)."""

    model: str
    tp: int
    pp: int
    dp: int
    placement: str
    steps: int
    warmup: int
    nodes: tuple[str, ...]
    extra: tuple[str, ...] = ()
    pg_timeout_s: float = 120.0
    startup_timeout_s: float = 180.0
    min_stall_s: float = 30.0           # the watchdog's least "no iteration for" bound (above any QP retry budget)
    nproc_per_node: int = 1             # ranks per node (torchrun --nproc-per-node)

    @property
    def layout(self) -> str:
        return f"tp{self.tp}-pp{self.pp}-dp{self.dp}"

    def workload_args(self) -> list[str]:
        return ["--model", self.model, "--tp", str(self.tp), "--pp", str(self.pp), "--dp", str(self.dp),
                "--placement", self.placement, "--steps", str(self.steps), "--warmup", str(self.warmup),
                *self.extra]

    def baseline_key(self) -> tuple[Any, ...]:
        return (self.model, self.layout, self.placement, self.nodes, self.nproc_per_node, self.extra)


@dataclass
class HeldFault:
    """A fault being held on a running job: its window and what the probe said before the undo."""

    window: FaultWindow
    probe_report: dict[str, Any] | None = None
    probe_error: str | None = None


@dataclass
class ProbePlan:
    """Probe traffic from the first iteration to the fault's undo, so that the steady
    iterations carry the same probe load as the faulted ones (on a small emulated lab the probe's
    frames cost the line emulator CPU)."""

    src: str
    dst: str
    rate_pps: float = 500.0
    size: int = 128
    max_s: float = 900.0        # the stream's length if nobody stops it (the job's end stops it)


@dataclass
class FaultWindow:
    """A fault (or a standing condition) as it happened: iterations and controller-clock instants."""

    kind: str
    target: str
    role: str                                  # "fault" | "condition"
    applied_step: int | None = None            # iteration in progress when it was applied
    undone_step: int | None = None             # iteration in progress when its hold ended and the undo began (None: after the job)
    applied_ns: int | None = None              # wall clock (time.time_ns) on the controller
    verified_ns: int | None = None
    undone_ns: int | None = None
    held_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def update(self, rec: FaultRecord) -> None:
        self.applied_ns = rec.applied_at.wall_ns if rec.applied_at else None
        self.verified_ns = rec.verified_at.wall_ns if rec.verified_at else None
        self.undone_ns = rec.undone_at.wall_ns if rec.undone_at else None
        self.held_s = rec.held_s
        self.details = {k: v for k, v in rec.details.items() if k != "replies"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CaseRun:
    job_id: str
    spec: JobSpec
    series: list[Point]
    outcome: dict[str, Any]
    faults: list[FaultWindow]
    conditions: list[FaultWindow]
    probe: dict[str, Any] | None
    probe_error: str | None
    report_dir: str
    started_ns: int
    ended_ns: int
    error: str | None = None                   # what stopped the case early (timeout, device, ...)

    @property
    def status(self) -> str:
        return str(self.outcome.get("status", "not-run"))

    @property
    def fault(self) -> FaultWindow | None:
        return self.faults[0] if self.faults else None


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-")[:60] or "case"


class NodeChoiceError(ValueError):
    """The inventory has no GPU nodes for a placement (the message names the fix)."""


def default_nodes(inv: Inventory, placement: str, world: int, nproc_per_node: int = 1) -> tuple[str, ...]:
    """The GPU nodes a job of ``world`` ranks, ``nproc_per_node`` on each node, trains on, in
    inventory order and only nodes with that many ``gpus``: ``local`` puts every rank in the first
    site with enough nodes (the trial's single-site run); the remote placements put half in each
    of the first two sites that have such nodes."""
    n = max(1, nproc_per_node)
    by_site: dict[str, list[str]] = {}
    for d in inv.devices:
        if d.kind == DeviceKind.GPU_NODE:
            by_site.setdefault(d.site or "", [])
            if inv.node_gpus(d) >= n:
                by_site[d.site or ""].append(d.name)
    what = "GPU nodes" if n == 1 else f"GPU nodes with {n} gpus"
    have = ", ".join(f"{k or '(no site)'}: {len(v)}" for k, v in by_site.items()) or "none"
    ranks = f"{world} ranks" + ("" if n == 1 else f", {n} per node")
    if world % n:
        raise NodeChoiceError(f"{inv.source}: {world} ranks do not fill nodes of {n} ranks: change the profile's "
                              "nproc_per_node or layout")
    if placement == "local":
        need = world // n
        for names in by_site.values():
            if len(names) >= need:
                return tuple(names[:need])
        raise NodeChoiceError(f"{inv.source}: placement 'local' needs {need} {what} in one site ({ranks}), the "
                              f"inventory has {have}: add GPU nodes to a site, or name them in the profile's "
                              "single_site_nodes, or set single_site: false")
    sites = [v for v in by_site.values() if v][:2]
    half = world // 2 // n
    if len(sites) < 2 or world % (2 * n) or any(len(v) < half for v in sites):
        raise NodeChoiceError(f"{inv.source}: placement {placement!r} needs {half or 1} {what} in each of two sites "
                              f"({ranks}), the inventory has {have}: add GPU nodes, or name them in the "
                              "profile's nodes")
    return tuple(name for v in sites for name in v[:half])


class CaseRunner:
    """Runs jobs for a trial run: one per case, plus the cached baselines."""

    def __init__(self, tb: Testbed, run_id: str, report_dir: Path, *, writer: Any = "inventory",
                 progress: Callable[[str], None] = lambda _m: None, on_iteration: Callable[[str, Point], None]
                 | None = None) -> None:
        self.tb, self.inv = tb, tb.inv
        self.run_id, self.report_dir = run_id, Path(report_dir)
        self.writer = writer
        self.progress = progress
        self.on_iteration = on_iteration
        self.current_fault: str | None = None
        self.partial: CaseRun | None = None      # the run a Ctrl-C or a timeout cut short
        self._seq = 0

    def plan(self, case: str, spec: JobSpec, conditions: list[Fault], fault: Fault | None) -> dict[str, Any]:
        """The dry run: allow-list checks and steps of every fault, the job's command; nothing sent."""
        out: dict[str, Any] = {"case": case, "job": {"nodes": list(spec.nodes), "workload_args": spec.workload_args()},
                               "conditions": [], "fault": None}
        for f, role in [(c, "condition") for c in conditions] + ([(fault, "fault")] if fault else []):
            apply, undo = f.plan(self.inv)
            d = {"kind": f.KIND, "target": f.target, "apply": [str(s) for s in apply], "undo": [str(s) for s in undo]}
            if role == "condition":
                out["conditions"].append(d)
            else:
                out["fault"] = d
        return out

    def _write_fault(self, case: str, scenario: str, w: FaultWindow) -> None:
        if self.writer in (None, False, "inventory") or w.applied_ns is None:
            return
        from testbed.metrics import FaultEvent
        with contextlib.suppress(Exception):     # the store never stops a case (the writer spools)
            self.writer.write(FaultEvent(start_ns=w.applied_ns, end_ns=w.undone_ns, kind=w.kind, target=w.target,
                                         run_id=self.run_id, case=case, scenario=scenario,
                                         testbed=self.inv.name))

    def _write_probe(self, case: str, scenario: str, rep: dict[str, Any] | None) -> None:
        """The probe's figures (service disruption, loss) beside the iterations on dashboards."""
        if self.writer in (None, False, "inventory") or not rep:
            return
        from testbed.metrics import ProbeResult

        def count(k: str) -> int | None:
            v = rep.get(k)
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
        with contextlib.suppress(Exception):     # the store never stops a case
            self.writer.write(ProbeResult(time_ns=time.time_ns(), sdt_loss_ms=rep.get("sdt_loss_ms"),
                                          sdt_gap_ms=rep.get("sdt_gap_ms"), lost=count("lost"),
                                          dup=count("duplicates"), ooo=count("out_of_order"), tx=count("expected"),
                                          rx=count("received"), run_id=self.run_id, case=case, scenario=scenario,
                                          testbed=self.inv.name, probe="service"))

    def hold_fault(self, case: str, scenario: str, fault: Fault, held: HeldFault, hold: Callable[[], None],
                   probe: ServiceProbe | None, undone_step: Callable[[], int | None]) -> None:
        """Apply ``fault``, keep it on while ``hold()`` waits for the iterations it holds, stop the
        probe before the undo (the revert is another event), undo it.  ``held`` is filled as it
        goes (the caller keeps it on any way out: a Ctrl-C still reports the fault's window), and
        the fault's window reaches the store whatever happens."""
        w = held.window
        self.current_fault = f"{fault.KIND} {fault.target}"
        self.progress(f"{case}: applying {self.current_fault} at iteration {w.applied_step}")
        rec: FaultRecord | None = None
        try:
            with fault.applied(self.tb) as rec:
                w.update(rec)
                self.progress(f"{case}: {self.current_fault} in effect")
                try:
                    hold()
                    # The held iterations end here: stopping the probe (commands on two nodes, its
                    # analysis on this controller) takes part of the next iteration, which is
                    # then neither clean nor the fault's alone; it is set aside with the undo's.
                    w.undone_step = undone_step()
                finally:
                    if probe is not None:
                        try:
                            held.probe_report = probe.finish(early=True)
                            self._write_probe(case, scenario, held.probe_report)
                        except ProbeFailed as exc:
                            held.probe_error = str(exc)
        finally:
            self.current_fault = None
            if rec is not None:
                w.update(rec)
            self._write_fault(case, scenario, w)

    def run(self, case: str, scenario: str, spec: JobSpec, *, conditions: list[Fault] = (),  # type: ignore[assignment]
            fault: Fault | None = None, fault_at: int | None = None, hold: int | None = None,
            probe: ProbePlan | None = None, timeout_s: float = 900.0) -> CaseRun:
        if fault is not None and (fault_at is None or not 1 <= fault_at < spec.steps):
            raise ValueError(f"{case}: fault_at must be an iteration between 1 and {spec.steps - 1}, got {fault_at}")
        self._seq += 1
        self.partial = None
        job_id = f"{self.run_id}-{self._seq:02d}-{_slug(case)}"[:100]
        case_dir = self.report_dir / "cases" / job_id
        case_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        cond_w: list[FaultWindow] = []
        fault_w: list[FaultWindow] = []
        probe_rep: dict[str, Any] | None = None
        probe_err: str | None = None
        error: str | None = None
        job: TrainingJob | None = None
        started = time.time_ns()

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        try:
            with contextlib.ExitStack() as stack:
                for c in conditions:
                    self.progress(f"{case}: condition {c.KIND} {c.target}")
                    stack.enter_context(self._condition(c, case, scenario, cond_w))
                job = job_class(self.inv)(self.inv, list(spec.nodes), spec.workload_args(), job_id, case=case,
                                  scenario=scenario, report_dir=case_dir,
                                  metrics=self.writer, pg_timeout_s=spec.pg_timeout_s,
                                  startup_timeout_s=spec.startup_timeout_s, min_stall_s=spec.min_stall_s,
                                  rdzv_port=self._rdzv_port(), nproc_per_node=spec.nproc_per_node)
                job.tags["run_id"] = self.run_id          # one run id per trial run in the store
                job.on_event = self._on_event(case, spec)
                self.progress(f"{case}: starting {spec.layout} {spec.placement} x {spec.steps} iterations on "
                              f"{', '.join(spec.nodes)}")
                stack.enter_context(job)
                if fault is not None:
                    assert fault_at is not None
                    pr = None
                    if probe is not None:
                        job.wait_for_iteration_start(0, left())     # its start-up cost lands in warm-up
                        pr = self._start_probe(probe, case_dir, job)
                        if isinstance(pr, str):
                            probe_err, pr = pr, None
                        else:
                            stack.callback(pr.close)
                    job.wait_for_iteration_start(fault_at, left())
                    applied, running = len(job.events), job
                    held = HeldFault(FaultWindow(fault.KIND, fault.target, "fault", applied_step=applied))
                    fault_w.append(held.window)

                    def hold_it() -> None:     # held `hold` iterations, or (None) to the job's end
                        with contextlib.suppress(JobEnded):
                            if hold is not None:
                                running.wait_for_iteration(applied + hold - 1, left())
                            else:
                                running.wait(left())
                    try:
                        self.hold_fault(case, scenario, fault, held, hold_it, pr,
                                        lambda: len(running.events) if running.outcome is None else None)
                    finally:
                        probe_rep, probe_err = held.probe_report, held.probe_error or probe_err
                outcome = job.wait(left())
                self.progress(f"{case}: job {outcome.status}{' (' + outcome.cause + ')' if outcome.cause else ''} "
                              f"after {len(job.events)} iterations")
        except JobEnded as exc:
            error = f"the job ended before the case could go on: {exc}"
            self.progress(f"{case}: stopped: {error}")
        except (FaultError, JobError, TimeoutError, ProbeFailed, DriverError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.progress(f"{case}: stopped: {error}")
        except BaseException as exc:     # Ctrl-C, a test timeout: keep what happened (all undone by now)
            self.partial = self._result(job_id, spec, job, fault_w, cond_w, probe_rep, probe_err, case_dir,
                                        started, f"{type(exc).__name__}: {exc}".rstrip(": "), case)
            raise
        return self._result(job_id, spec, job, fault_w, cond_w, probe_rep, probe_err, case_dir, started, error, case)

    def _result(self, job_id: str, spec: JobSpec, job: TrainingJob | None, fault_w: list[FaultWindow],
                cond_w: list[FaultWindow], probe_rep: dict[str, Any] | None, probe_err: str | None, case_dir: Path,
                started: int, error: str | None, case: str) -> CaseRun:
        series = [self._point(e) for e in sorted(job.events, key=lambda e: e.step)] if job is not None else []
        oc = job.outcome if job is not None else None
        outcome = ({"status": oc.status, "cause": oc.cause, "detail": oc.detail, "iterations": oc.iterations,
                    "exit_codes": oc.exit_codes, "elapsed_s": round(oc.elapsed_s, 3),
                    "detected_s": oc.detected_s, "leftovers": oc.leftovers}
                   if oc is not None else {"status": "not-run", "cause": None, "detail": error or ""})
        self._save_iterations(case, job)
        return CaseRun(job_id, spec, series, outcome, fault_w, cond_w, probe_rep, probe_err, str(case_dir),
                       started, time.time_ns(), error)

    def _rdzv_port(self) -> int:
        """A rendezvous port per job, rotating over RDZV_PORTS: a job started right after another
        found 29500 still bound on the first node (EADDRINUSE from the c10d store), so
        back-to-back cases do not reuse the last job's port."""
        return RDZV_PORT_BASE + (self._seq % RDZV_PORTS)

    @contextlib.contextmanager
    def _condition(self, c: Fault, case: str, scenario: str, windows: list[FaultWindow]) -> Iterator[FaultWindow]:
        """A standing condition for the whole job; its window (with the undo's time) goes to the
        store once it is undone."""
        w = FaultWindow(c.KIND, c.target, "condition", applied_step=0)
        windows.append(w)
        rec: FaultRecord | None = None
        try:
            with c.applied(self.tb) as rec:
                w.update(rec)
                yield w
        finally:
            if rec is not None:
                w.update(rec)
            self._write_fault(case, scenario, w)

    def _start_probe(self, p: ProbePlan, case_dir: Path, job: TrainingJob | None = None) -> ServiceProbe | str:
        """The probe beside ``job``: over SSH, or through Slurm as steps of the job's own allocation
        when the job runs there (the nodes are the scheduler's)."""
        try:
            connect, ship = None, None
            if isinstance(job, SlurmTrainingJob):
                from testbed.jobs.slurm_step import StepNode
                client, slurm_id = job.client, job.slurm_job_id
                if slurm_id is None:
                    raise ProbeFailed(f"the probe runs as a step of Slurm job {job.job_name}, whose id Slurm has "
                                      "not given yet")
                connect, ship = (lambda inv, n: StepNode(client, slurm_id, n)), False
            return ServiceProbe(self.inv, p.src, p.dst, duration_s=p.max_s, rate_pps=p.rate_pps,
                                size=p.size, log_dir=case_dir, log=self.progress, connect=connect,  # type: ignore[arg-type]
                                ship=ship).start()
        except ProbeFailed as exc:
            logger.warning("%s", exc)
            return str(exc)

    def _on_event(self, case: str, spec: JobSpec) -> Callable[[IterationEvent], None]:
        def cb(e: IterationEvent) -> None:
            fault = f", fault: {self.current_fault}" if self.current_fault else ""
            self.progress(f"{case}: iteration {e.step + 1}/{spec.steps} {e.duration_s:.3f} s"
                          f"{' (warm-up)' if e.warmup else ''}{fault}")
            if self.on_iteration is not None:
                self.on_iteration(case, self._point(e))
        return cb

    @staticmethod
    def _point(e: IterationEvent) -> Point:
        return Point(step=e.step, duration_s=e.duration_s, warmup=e.warmup, start_ns=e.start_ns, end_ns=e.end_ns,
                     received_ns=e.received_ns, loss=e.loss, tokens_per_s=e.tokens_per_s)

    def _save_iterations(self, case: str, job: TrainingJob | None) -> None:
        """The raw iteration lines as the controller received them, one file for the whole run."""
        if job is None:
            return
        with contextlib.suppress(OSError), open(self.report_dir / "iterations.jsonl", "a") as f:
            for e in sorted(job.events, key=lambda e: e.step):
                try:
                    raw = json.loads(e.raw) if e.raw.strip().startswith("{") else {"line": e.raw}
                except ValueError:
                    raw = {"line": e.raw}
                f.write(json.dumps({"run_id": self.run_id, "case": case, "job_id": job.run_id, "node": e.node,
                                    "received_ns": e.received_ns, **raw}, separators=(",", ":")) + "\n")

"""One trial run: the testbed held at its baseline, the cached baselines, the report, and per case
a :class:`CaseContext` that runs the case's job and turns its series into a verdict.

The pytest plugin builds these (fixtures ``trial`` and ``case``); nothing here knows vendor syntax.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.errors import DriverError
from emulator.line import roce
from testbed.faults import Fault, Testbed, check_baseline, registry, restore
from testbed.inventory import DeviceKind, Inventory

from . import analysis
from .analysis import Point
from .capabilities import probe_pair, service
from .profile import Profile, Trial
from .report import RunReport
from .runner import CaseRun, CaseRunner, JobSpec, NodeChoiceError, ProbePlan, default_nodes
from .shared import CasePlan, JobPool, Paired, SharedJob
from .transport import transport_in_force
from .verdict import FAIL, check, verdict

logger = logging.getLogger("dcilab.trial")


class TestbedNotReady(RuntimeError):
    __test__ = False


STALL_MARGIN_S = 15.0
"""How much longer than the transport's QP retry budget a job may go without an iteration before
the watchdog calls it stalled: a QP error (BER 1e-8, a long outage) must end the job first, as
NCCL would, and be reported as what it is, not as a stall."""


def min_stall_s(inv: Inventory) -> float:
    """The watchdog's least stall bound for jobs on ``inv``: above the QP retry budget of the
    emulated line's transport model, or of NCCL's defaults on real gear (NCCL_IB_TIMEOUT 20,
    NCCL_IB_RETRY_CNT 7: 30 s); 30 s over plain TCP."""
    t = transport_in_force(inv)
    if t["model"] == "none":
        return 30.0
    budget = t.get("retry_budget_s") or roce.retry_budget_s(roce.ack_timeout_s(20), 7)
    return max(30.0, float(budget) + STALL_MARGIN_S)


BAND_FREE_METRICS = ("outcome", "disruption_ms")
"""Metrics that need neither a baseline nor a quiet steady window: a case judged only on them (BER
1e-8: was training interrupted?) is not refused for a noisy window or a missing baseline."""

BASELINE_TRIES = 3
"""Baseline jobs per model/layout/placement in one run: one refused as too noisy is measured again
(a busy few seconds should not leave every case that needs it unmeasured), at most this many."""


@dataclass
class Baseline:
    """The same job over the unimpaired testbed: the reference for equivalent compute."""

    key: str
    spec: JobSpec
    series: list[Point]
    median_s: float | None
    band: analysis.Band | None
    outcome: dict[str, Any]
    job_id: str
    error: str | None = None
    measured_at: float = 0.0          # time.monotonic() when it was measured
    wan_bytes_per_iteration: float | None = None
    """Bytes both gateways sent onto the WAN per iteration of the job (their WAN ports' counters over
    the whole job, warm-up and rendezvous included): what ``dcilab predict`` scales loss events by."""
    noisy: bool = False               # refused only because its steady window was too noisy

    @property
    def ok(self) -> bool:
        return self.median_s is not None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "job_id": self.job_id, "median_s": self.median_s,
                "band": self.band.to_dict() if self.band else None, "outcome": self.outcome, "error": self.error,
                "series": [p.to_dict() for p in self.series], "workload_args": self.spec.workload_args(),
                "nodes": list(self.spec.nodes), "nproc_per_node": self.spec.nproc_per_node,
                "placement": self.spec.placement, "wan_bytes_per_iteration": self.wan_bytes_per_iteration}


class Faults:
    """The fault catalogue bound to the inventory's DCI service (the ``faults`` fixture):
    ``faults.bandwidth_drop(400)``, ``faults.convergence(8)``, ... one name per factory a
    registered fault kind offers (its ``TRIAL``)."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        s = service(inv)
        self.service = s.name if s else None

    def __getattr__(self, name: str) -> Callable[..., Fault]:
        if name.startswith("_"):
            raise AttributeError(name)
        factories = registry.trial_factories()
        make = factories.get(name)
        if make is None:
            raise AttributeError(f"no fault {name!r} in the catalogue (the faults fixture offers: "
                                 f"{', '.join(factories)}; a kind of your own is one module, see README 'Extending dcilab')")

        def build(*args: Any, **kwargs: Any) -> Fault:
            s = service(self.inv)
            if s is None:
                raise TestbedNotReady(f"inventory {self.inv.name!r} has no service to act on")
            return make(s, self.inv, *args, **kwargs)
        build.__name__ = name
        return build


class TrialSession:
    """Everything one run shares.  ``dry_run``: nothing is connected or sent."""

    def __init__(self, inv: Inventory, trial: Trial, profile: Profile, run_id: str, report_dir: Path, *,
                 dry_run: bool = False, writer: Any = None, progress: Callable[[str], None] = lambda _m: None,
                 options: dict[str, Any] | None = None) -> None:
        self.inv, self.trial, self.profile = inv, trial, profile
        self.run_id, self.report_dir, self.dry_run = run_id, Path(report_dir), dry_run
        self.progress = progress
        self.writer = writer
        self.tb = Testbed(inv, log=lambda m: logger.info("%s", m))
        self.runner = CaseRunner(self.tb, run_id, self.report_dir, writer=writer if writer is not None else False,
                                 progress=progress)
        self.baselines: dict[tuple[Any, ...], Baseline] = {}
        self._tries: dict[tuple[Any, ...], int] = {}      # baseline jobs run per key
        self.unreachable: dict[str, str] = {}
        self.report = RunReport(self.report_dir, run_id, profile=profile.model_dump(mode="json"),
                                testbed={"name": inv.name, "source": str(inv.source), "emulated": inv.is_emulated,
                                         "transport": transport_in_force(inv),
                                         "launcher": ({"kind": "slurm", "partition": inv.scheduler.partition,
                                                       "account": inv.scheduler.account}
                                                      if inv.scheduler is not None else {"kind": "ssh"})},
                                options={**(options or {}), "dry_run": dry_run})
        self.faults = Faults(inv)
        self.pool = JobPool(self.runner, warmup=profile.warmup, settle_max=profile.settle_max, noise=profile.noise,
                            wan_bytes=self.wan_bytes)
        self.pool.on_job_end = self._job_reference
        self.job_plan: list[dict[str, Any]] = []      # the dry run's jobs: which cases share which job
        self.single: Baseline | None = None            # the single-site job (profile.single_site)

    @property
    def shared(self) -> bool:
        return self.profile.jobs == "shared"

    def close_jobs(self) -> None:
        """End the shared job still training (its cases are done), before the lab is checked."""
        self.pool.close()

    def _job_reference(self, sj: SharedJob) -> None:
        """A shared job's unimpaired windows, in the report's baselines (what ``dcilab predict`` reads)."""
        b = self.job_baseline(sj)
        if b.series:
            self.report.add_baseline(b.key, b.to_dict())

    def job_baseline(self, sj: SharedJob, points: list[Point] | None = None) -> Baseline:
        """The reference a case's equivalent compute uses on a shared job: its unimpaired windows
        (``points``: the case's own A/B/A windows), measured in the same job as the case."""
        pts = sj.unimpaired() if points is None else points
        p = self.profile
        band = analysis.noise_band([x.duration_s for x in pts], p.noise.mad_k, p.noise.floor) if pts else None
        n = next((i for i, j in enumerate(self.pool.jobs, 1) if j is sj), 0)
        name = f"unimpaired-{sj.spec.model}-{sj.spec.layout}-{sj.spec.placement}-job{n}"
        return Baseline(name, sj.spec, pts, band.center_s if band else None, band, {}, sj.job_id,
                        None if band else "no unimpaired window in the job yet", time.monotonic(),
                        sj.wan_bytes_per_iteration)

    def plan_case(self, case: str, spec: JobSpec, iterations: int) -> None:
        """The dry run's job plan: cases on one placement share a job, in the order they run."""
        p = self.profile
        last = self.job_plan[-1] if self.job_plan else None
        if not self.shared or last is None or last["placement"] != spec.placement:
            first = p.warmup + p.steady if self.shared else 0
            last = {"placement": spec.placement, "nodes": list(spec.nodes), "nproc_per_node": spec.nproc_per_node,
                    "cases": [], "iterations": first}
            self.job_plan.append(last)
        last["cases"].append(case)
        last["iterations"] += iterations
        last["duration_s"] = round(p.job_start_s + last["iterations"] * p.iteration_s)

    # ---------------------------------------------------------------------------------- the testbed

    def check_ready(self) -> None:
        """Every device answers and the testbed is at its baseline (restored from the journal if a
        crashed run left a fault); TestbedNotReady with every reason otherwise."""
        if self.dry_run:
            return
        self.unreachable = self.reachability()
        if self.unreachable:
            self.report.set(unreachable=self.unreachable)
            self.progress("devices not answering: " + "; ".join(f"{k}: {v}" for k, v in self.unreachable.items()))
        off = self.off_baseline()
        entries, broken = self.tb.journal.scan()
        if off or entries or broken:   # a dead run's faults, or its job still training on the nodes
            why = off + [f"journaled {e.kind} {e.target}" for e in entries] + [f"unreadable {p}" for p, _ in broken]
            self.progress("testbed off its baseline: " + "; ".join(why) + " -> restoring from the journal")
            restore(self.inv, log=self.progress)
            off = self.off_baseline()
        if off:
            raise TestbedNotReady("the testbed is not at its baseline and restore did not bring it back: "
                                  + "; ".join(off) + f" (run `dcilab lab restore --inventory {self.inv.source}`)")

    def reachability(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for d in self.inv.devices:
            try:
                drv = self.tb.driver(d.name)
                if hasattr(drv, "run"):
                    drv.run("true", timeout=20)
            except (DriverError, OSError) as exc:
                out[d.name] = str(exc)
                self.tb.forget(d.name)
        return out

    def off_baseline(self) -> list[str]:
        """How the testbed differs from its baseline.  A device that cannot be read is not a
        difference: it goes to ``unreachable`` (the cases that need it fail with that reason, the
        others run); one that answers again is taken off that list."""
        names = {d.name for d in self.inv.devices}

        def check() -> tuple[list[str], dict[str, str]]:
            try:
                diffs = check_baseline(self.tb)
            except BaseException:
                self.tb.close()
                raise
            out, silent = [], {}
            for d in diffs:
                dev = d.split(" ", 1)[0].rstrip(":")
                if ": cannot read: " in d and dev in names:      # check_baseline's "<device> <what>: cannot read: ..."
                    silent.setdefault(dev, d)
                else:
                    out.append(d)
            return out, silent

        # The sessions stay open from case to case (closing and opening them cost a second or
        # more per case).  A device read through a session kept from before that fails is read
        # again on a new session before it counts as not answering (the device may have timed
        # the idle session out, or restarted); one that failed on a new session is not retried.
        kept = self.tb.connected()
        out, silent = check()
        for dev in silent:
            self.tb.forget(dev)
        if set(silent) & kept:
            out, silent = check()
            for dev in silent:
                self.tb.forget(dev)
        for dev in [n for n in self.unreachable if n not in silent and not self._gpu(n)]:
            del self.unreachable[dev]
        self.unreachable.update(silent)
        return out

    def _gpu(self, name: str) -> bool:
        return self.inv.device(name).kind == DeviceKind.GPU_NODE

    def snapshot(self) -> None:
        from testbed.snapshot import snapshot, write_snapshot
        if self.dry_run:
            snap = {"inventory": self.inv.model_dump(mode="json"), "devices": {}, "note": "dry run: devices not read"}
        else:
            self.progress("reading device versions for the testbed snapshot")
            snap = snapshot(self.inv, timeout_s=60.0)
        write_snapshot(snap, self.report_dir / "testbed.json")

    # ---------------------------------------------------------------------------------- jobs

    def spec(self, placement: str, steps: int) -> JobSpec:
        p = self.profile
        chosen = p.single_site_nodes if placement == "local" else p.nodes
        nodes = tuple(chosen) if chosen else default_nodes(self.inv, placement, p.layout.world, p.nproc_per_node)
        return JobSpec(model=p.model, tp=p.layout.tp, pp=p.layout.pp, dp=p.layout.dp, placement=placement,
                       steps=steps, warmup=p.warmup, nodes=nodes, extra=tuple(p.workload_args),
                       pg_timeout_s=p.pg_timeout_s, startup_timeout_s=p.startup_timeout_s,
                       min_stall_s=min_stall_s(self.inv), nproc_per_node=p.nproc_per_node)

    def baseline(self, placement: str) -> Baseline:
        """Measured once per run per model/layout/placement: the job over the unimpaired testbed.
        One refused as too noisy (a busy machine for a few seconds) is measured again, up to
        BASELINE_TRIES jobs per run, before the cases that need it are reported as not measured."""
        p = self.profile
        spec = self.spec(placement, p.warmup + p.baseline_steady)
        if self.shared:      # each case's reference comes from its own job's windows (CaseContext.reference)
            return Baseline(f"paired-{placement}", spec, [], None, None, {}, "",
                            "shared jobs: each case is judged against the unimpaired windows of its own job")
        return self._measured(spec, placement)

    def _measured(self, spec: JobSpec, placement: str) -> Baseline:
        key = spec.baseline_key()
        while True:
            b = self._baseline(spec, placement)
            if not b.noisy or self._tries.get(key, 0) >= BASELINE_TRIES:
                return b
            self.progress(f"{b.key}: {b.error}; measuring it again ({self._tries[key]} of {BASELINE_TRIES} jobs)")
            b.measured_at = -math.inf          # stale: the next call measures anew

    def measure_single_site(self) -> Baseline | None:
        """The trial's own baseline: the same layout with every rank in one site (placement
        ``local``), measured once per run before the first case (no shared job runs then: they
        would share nodes and CPUs).  Each case reports equivalent compute against it beside the
        paired one; verdicts stay on the paired figures, measured minutes apart from it at most
        seconds.  A single-site job that fails, or an inventory without the nodes for it, is
        reported in the run's errors; the cases go on."""
        p = self.profile
        if not p.single_site or self.single is not None:
            return self.single
        try:
            spec = self.spec("local", p.warmup + p.baseline_steady)
        except NodeChoiceError as exc:
            self.report.add_error(f"single-site baseline not measured: {exc}")
            self.progress(f"single-site baseline not measured: {exc}")
            return None
        if self.dry_run:
            self.job_plan.append({"placement": "local", "nodes": list(spec.nodes),
                                  "nproc_per_node": spec.nproc_per_node, "cases": ["single-site baseline"],
                                  "iterations": spec.steps, "duration_s": round(p.job_start_s + spec.steps * p.iteration_s)})
        self.single = b = self._measured(spec, "local")
        if not self.dry_run:
            if not b.ok:
                self.report.add_error(f"single-site baseline not measured: {b.error}")
            self.report.set(single_site={"key": b.key, "median_s": b.median_s, "job_id": b.job_id,
                                         "nodes": list(spec.nodes), "error": b.error})
            self.progress(f"single-site baseline ({', '.join(spec.nodes)}): "
                          + (f"median {b.median_s:.3f} s" if b.median_s else f"not measured: {b.error}"))
        return self.single

    def _baseline(self, spec: JobSpec, placement: str) -> Baseline:
        p = self.profile
        key = spec.baseline_key()
        old = self.baselines.get(key)
        if old is None or time.monotonic() - old.measured_at > p.baseline_max_age_s:
            name = f"baseline-{spec.model}-{spec.layout}-{placement}"
            if old is not None:
                name += f"-{sum(1 for k in self.report.summary['baselines'] if k.startswith(name)) + 1}"
            if self.dry_run:  # planned, not measured: a dry run connects to nothing
                self.baselines[key] = Baseline(name, spec, [], None, None, {}, "", "dry run: not measured",
                                               time.monotonic())
                return self.baselines[key]
            self.progress(f"{name}: measuring the baseline over the unimpaired testbed")
            self._tries[key] = self._tries.get(key, 0) + 1
            wan0 = self.wan_bytes()
            run = self.runner.run(name, "baseline", spec, timeout_s=self._timeout(spec.steps))
            wan1 = self.wan_bytes()
            pts = analysis.steady(run.series)
            band = analysis.noise_band([x.duration_s for x in pts], p.noise.mad_k, p.noise.floor) if pts else None
            err = run.error or (None if run.status == "completed" else f"baseline job {run.status}: "
                                f"{run.outcome.get('detail')}")
            noisy = not err and band is not None and band.cv > p.noise.max_cv
            if noisy:
                err = (f"the baseline's steady window is too noisy (robust CV {band.cv:.2f} > {p.noise.max_cv:.2f}, "
                       "noise.max_cv): was the machine busy?")
            per_it = (wan1 - wan0) / len(run.series) if wan0 is not None and wan1 is not None \
                and wan1 >= wan0 and run.series and placement != "local" else None   # local: nothing crosses
            b = Baseline(name, spec, run.series, band.center_s if band and not err else None, band, run.outcome,
                         run.job_id, err, time.monotonic(), per_it, noisy=noisy)
            self.baselines[key] = b
            self.report.add_baseline(name, b.to_dict())
            self.off_baseline()
        return self.baselines[key]

    def wan_bytes(self) -> int | None:
        """Bytes both gateways of the service have sent onto the WAN (their WAN ports' tx counters);
        None when a gateway cannot be read (the baseline is then recorded without it)."""
        svc = self.inv.services[0] if self.inv.services else None
        if svc is None or {svc.a_end.gateway, svc.z_end.gateway} & set(self.unreachable):
            return None
        try:
            return sum(self.tb.driver(gw).counters().tx_bytes for gw in (svc.a_end.gateway, svc.z_end.gateway))
        except (DriverError, OSError, AttributeError) as exc:
            logger.info("WAN byte counters not read: %s", exc)
            return None

    def _timeout(self, steps: int) -> float:
        return self.profile.startup_timeout_s + steps * 60.0 + 120.0


class CaseContext:
    """One case (a test function with its parameters): run, measure, judge, record."""

    def __init__(self, session: TrialSession, case_id: str, name: str, scenario: str, params: dict[str, Any],
                 record_property: Callable[[str, Any], None]) -> None:
        self.s, self.id, self.name, self.scenario = session, case_id, name, scenario
        self.params = dict(params)
        self.record_property = record_property
        self.t0 = time.monotonic()
        self.runs: list[CaseRun] = []
        self.paired: Paired | None = None          # shared jobs: the case's reference windows
        self.reference: Baseline | None = None     # shared jobs: what equivalent compute divides
        self.recorded = False
        self._last_call: tuple[str, dict[str, Any]] | None = None   # the last run()'s arguments (a re-measure)

    @property
    def profile(self) -> Profile:
        return self.s.profile

    @property
    def fault_at(self) -> int:
        return self.profile.warmup + self.profile.steady

    def probe_plan(self) -> ProbePlan:
        src, dst = probe_pair(self.s.inv)
        pr = self.profile.probe
        return ProbePlan(src, dst, pr.rate_pps, pr.size, max_s=self.s._timeout(self.fault_at + self.profile.hold
                                                                              + self.profile.after))

    def _expected_iterations(self, steps: int, conditions: Any, fault: Fault | None, hold: int | None,
                             probe: bool) -> int:
        """The dry run's estimate of the iterations a case takes (a job of its own, or windows of a
        shared one: a change of the network sets one iteration aside)."""
        p = self.profile
        if not self.s.shared:
            return steps
        changes = bool(conditions) or (probe and fault is not None)
        if fault is None:
            return 3 * p.steady + 2
        return (1 + p.steady if changes else 0) + (hold or p.after) + 1 + p.steady

    def run(self, placement: str, *, conditions: list[Fault] = (), fault: Fault | None = None,  # type: ignore[assignment]
            hold: int | None = None, probe: bool = False) -> CaseRun:
        """The case's job: conditions for the whole run, ``fault`` when iteration ``fault_at``
        starts, held ``hold`` iterations (None: to the end), then ``after`` more iterations."""
        p = self.profile
        steps = self.fault_at + (hold or 0) + p.after if fault is not None else self.fault_at
        spec = self.s.spec(placement, steps)
        if self.s.dry_run:
            import pytest
            self.s.plan_case(self.name, spec, self._expected_iterations(steps, conditions, fault, hold, probe))
            plan = self.s.runner.plan(self.name, spec, list(conditions), fault)
            self._record({"status": "planned", "plan": plan}, verdict_="planned")
            job = (f"about {self._expected_iterations(steps, conditions, fault, hold, probe)} iterations of shared "
                   f"job {len(self.s.job_plan)} ({placement})" if self.s.shared else f"{steps} iterations")
            pytest.skip(f"dry run: {self.name}: {len(plan['conditions'])} condition(s), fault "
                        f"{plan['fault']['kind'] + ' ' + plan['fault']['target'] if plan['fault'] else 'none'}, {job}")
        for name in spec.nodes:
            if name in self.s.unreachable:
                raise TestbedNotReady(f"{name} does not answer: {self.s.unreachable[name]}")
        self._last_call = (placement, {"conditions": list(conditions), "fault": fault, "hold": hold, "probe": probe})
        if self.s.shared:
            plan_ = CasePlan(self.name, self.scenario, list(conditions), fault, hold or p.after, p.steady,
                             self.probe_plan() if probe and fault is not None else None, self.s._timeout(steps))
            run, self.paired = self.s.pool.run_case(spec, plan_)
            sj = next((j for j in self.s.pool.jobs if j.job_id == run.job_id), None)
            if sj is not None:
                own = self.paired.before + self.paired.after if self.paired and fault is None else None
                self.reference = self.s.job_baseline(sj, own)
            self._qp_error_cause(run)
            self.runs.append(run)
            self.s.report.add_faults(self.name, run.conditions + run.faults)
            return run
        run = self.s.runner.run(self.name, self.scenario, spec, conditions=list(conditions), fault=fault,
                                fault_at=self.fault_at if fault is not None else None, hold=hold,
                                probe=self.probe_plan() if probe else None,
                                timeout_s=self.s._timeout(steps))
        self._qp_error_cause(run)
        self.runs.append(run)
        self.s.report.add_faults(self.name, run.conditions + run.faults)
        return run

    def _qp_error_cause(self, run: CaseRun) -> None:
        """A job the emulated line's transport model interrupted: the cause is the line's QP error
        (what NCCL would have reported), the job's own symptom stays beside it."""
        if run.status != "interrupted" or not self.s.inv.is_emulated:
            return
        from testbed.emulated_lab import qp_errors

        errs = qp_errors(self.s.inv, run.started_ns / 1e9, run.ended_ns / 1e9 + 5.0)
        if not errs:
            return
        e = errs[0]
        o = run.outcome
        o["job_cause"], o["job_detail"] = o.get("cause"), o.get("detail")
        o["cause"] = "qp-error"
        o["detail"] = (f"the emulated line's transport model: QP error ({e.get('cause')}) on {e.get('direction')} "
                       f"after {float(e.get('stalled_ms') or 0) / 1000:.1f} s without progress (retry budget "
                       f"{float(e.get('retry_budget_ms') or 0) / 1000:.1f} s); the job: {o['job_cause']}: {o['job_detail']}")
        o["line_events"] = errs
        self.s.progress(f"{self.name}: cause: {o['detail']}")

    # ---------------------------------------------------------------------------------- metrics

    def steady_metrics(self, run: CaseRun, baseline: Baseline) -> dict[str, Any]:
        """A setting without a fault (convergence): its steady median against the baseline's (on a
        shared job: the unimpaired windows right before and after it in the same job)."""
        baseline = self.reference or baseline
        pts = [x.duration_s for x in analysis.steady(run.series)]
        m: dict[str, Any] = {"outcome": run.status, "iterations": len(run.series), "baseline_s": baseline.median_s,
                             "median_s": statistics.median(pts) if pts else None,
                             "steady_cv": analysis.noise_band(pts).cv if pts else None}
        if pts and baseline.median_s:
            m["equivalent_compute"] = analysis.equivalent_compute(baseline.median_s, pts)
        if pts and self.paired is not None:
            for side, ref in (("before", self.paired.before), ("after", self.paired.after)):
                if ref:
                    r = statistics.median(x.duration_s for x in ref)
                    m[f"reference_{side}_s"] = r
                    m[f"equivalent_compute_{side}"] = analysis.equivalent_compute(r, pts)
        self._single_site(m, pts)
        return m

    def _single_site(self, m: dict[str, Any], pts: list[float]) -> None:
        """Equivalent compute as the trial defined it: the single-site job's median iteration over
        ``pts`` (a convergence case's shaped window; a fault case's window before the fault)."""
        ss = self.s.single
        if ss is None:
            return
        m["single_site_s"] = ss.median_s
        if ss.median_s and pts:
            m["equivalent_compute_single_site"] = analysis.equivalent_compute(ss.median_s, pts)

    def fault_metrics(self, run: CaseRun, baseline: Baseline) -> dict[str, Any]:
        baseline = self.reference or baseline
        m: dict[str, Any] = {"outcome": run.status, "cause": run.outcome.get("cause"), "iterations": len(run.series),
                             "baseline_s": baseline.median_s}
        w = run.fault
        n = self.profile.noise
        ref = None        # shared jobs: the band from the windows right before and after the fault
        pr = self.paired
        if pr is not None and pr.before:
            ref = [x.duration_s for x in pr.before + (pr.after if pr.settled else [])]
            m["reference_before_s"] = statistics.median(x.duration_s for x in pr.before)
            m["reference_after_s"] = statistics.median(x.duration_s for x in pr.after) if pr.after else None
        judged = run.series
        if pr is not None:      # the after window is the reference, not the fault's: the fault's iterations are its own
            after = {x.step for x in pr.after}
            judged = [x for x in run.series if x.step not in after]
        if w is not None and w.applied_step is not None and analysis.steady(judged, w.applied_step):
            imp = analysis.impact(judged, w.applied_step, undo_step=w.undone_step, baseline_s=baseline.median_s,
                                  applied_ns=w.applied_ns, mad_k=n.mad_k, floor=n.floor, reference=ref)
            m.update(imp.to_dict())
            m["steady_cv"] = imp.band.cv
            m["fault_step"] = w.applied_step
            m["fault_held_s"] = w.held_s
        if run.probe:
            # Service disruption time by the loss method (lost frames / rate), as transport test sets
            # report it: the gap method also counts queueing jitter, which a shaped WAN under training
            # load has plenty of (tens of ms) without losing anything.
            m["disruption_ms"] = run.probe.get("sdt_loss_ms")
            lossy = [e for e in (run.probe.get("disruptions") or {}).get("events", []) if e.get("missing")]
            m["disruption_gap_ms"] = max((e["ms"] for e in lossy), default=0.0)
            m["largest_gap_ms"] = run.probe.get("sdt_gap_ms")
            m["probe_lost"] = run.probe.get("lost")
            d = run.probe.get("delay_after") or {}
            m["delay_after_p50_ms"] = d.get("p50_ms")
            m["delay_before_p50_ms"] = (run.probe.get("delay_before") or {}).get("p50_ms")
        if w is not None and w.details.get("active_length_km") is not None:
            m["new_path_km"] = w.details["active_length_km"]
            m["moved_after_s"] = w.details.get("moved_after_s")
        if pr is not None and pr.before:
            self._single_site(m, [x.duration_s for x in pr.before])
        elif w is not None and w.applied_step is not None:
            self._single_site(m, [x.duration_s for x in analysis.steady(run.series, w.applied_step)])
        return m

    # ---------------------------------------------------------------------------------- verdict

    def _too_noisy(self, run: CaseRun, metrics: dict[str, Any]) -> bool:
        cv = metrics.get("steady_cv")
        return run.status == "completed" and not run.error and cv is not None and cv > self.profile.noise.max_cv

    def _remeasure_if_noisy(self, run: CaseRun, baseline: Baseline,
                            metrics: dict[str, Any]) -> tuple[CaseRun, dict[str, Any]]:
        """A run whose steady window is too noisy to judge (a busy few seconds, not the fault) is
        run again with the same conditions and fault, up to ``noise.retries`` times; the last one
        is judged, and the metrics say how many were set aside."""
        tries, retries = 0, self.profile.noise.retries
        noisy: list[float] = []
        while self._too_noisy(run, metrics) and tries < retries and self._last_call is not None:
            tries += 1
            noisy.append(round(float(metrics["steady_cv"]), 4))
            self.s.progress(f"{self.name}: the steady window is too noisy to judge (robust CV "
                            f"{metrics['steady_cv']:.2f} > {self.profile.noise.max_cv:.2f}): measuring the case "
                            f"again ({tries} of {retries})")
            placement, kw = self._last_call
            fault_case = kw["fault"] is not None
            run = self.run(placement, **kw)
            metrics = self.fault_metrics(run, baseline) if fault_case else self.steady_metrics(run, baseline)
        if noisy:
            metrics["noisy_runs_set_aside"] = len(noisy)
            metrics["noisy_runs_cv"] = noisy
        return run, metrics

    def conclude(self, run: CaseRun, baseline: Baseline, metrics: dict[str, Any]) -> str:
        """Check the criteria, record the case in the summary and junit; fail the test when a
        criterion fails or the case could not run as planned.  A run too noisy to judge is
        measured again first (``noise.retries``)."""
        run, metrics = self._remeasure_if_noisy(run, baseline, metrics)
        baseline = self.reference or baseline
        crits = self.s.trial.criteria_for(self.profile, self.scenario, self.params)
        checks = [check(c, metrics, self.s.inv.is_emulated) for c in crits]
        v = verdict(checks)
        problems = []
        if run.error:
            problems.append(run.error)
        needs_band = any(c.metric not in BAND_FREE_METRICS for c in crits)
        if not baseline.ok and needs_band and not (self.s.shared and run.error):
            problems.append(f"no baseline: {baseline.error}")
        if run.probe_error:
            problems.append(f"probe: {run.probe_error}")
        cv, max_cv = metrics.get("steady_cv"), self.profile.noise.max_cv
        if cv is not None and cv > max_cv and needs_band:
            problems.append(f"the steady window before the fault is too noisy to judge it (robust CV {cv:.2f} > "
                            f"{max_cv:.2f}, noise.max_cv): was the machine busy?")
        if run.outcome.get("leftovers"):
            problems.append(f"processes left on nodes: {run.outcome['leftovers']}")
        off = self.s.off_baseline()
        if off:
            restore(self.s.inv, log=self.s.progress)
            problems.append("testbed left off its baseline (restored): " + "; ".join(off))
        if problems:
            v = FAIL
        self._write_result(metrics, run.spec.placement, v)
        self._record({"status": run.status, "metrics": metrics, "criteria": [c.to_dict() for c in checks],
                      "baseline": {"key": baseline.key, "median_s": baseline.median_s, "job_id": baseline.job_id},
                      "series": [p.to_dict() for p in run.series], "outcome": run.outcome,
                      "faults": [w.to_dict() for w in run.faults], "conditions": [w.to_dict() for w in run.conditions],
                      "probe": run.probe, "job_id": run.job_id, "report_dir": run.report_dir,
                      **({"paired": self.paired.to_dict()} if self.paired is not None else {}),
                      "problems": problems}, verdict_=v)
        for k, val in metrics.items():
            if isinstance(val, (int, float, str)) or val is None:
                self.record_property(f"metric.{k}", val)
        for c in checks:
            self.record_property(f"criterion.{c.id}", f"{c.status}: {c.measured} ({c.op} {c.value}; "
                                                      f"trial {c.reference})")
        self.record_property("transport", self.s.report.summary["testbed"]["transport"]["model"])
        for c in checks:
            self.s.progress(f"{self.name}: {c.line()}")
        if v == FAIL:
            import pytest
            lines = [c.line() for c in checks if c.status in ("fail", "not-measured")] + problems
            pytest.fail(f"{self.name}: " + "; ".join(lines), pytrace=False)
        return v

    def _write_result(self, metrics: dict[str, Any], placement: str | None, verdict_: str) -> None:
        """The case's result to the store (dashboards show equivalent compute per case from it)."""
        w = self.s.runner.writer
        if w in (None, False, "inventory"):
            return
        from testbed.metrics import CaseResult
        # the store's median_s is the case's steady median: a fault case has it as pre_fault_s
        steady = metrics.get("median_s") if metrics.get("median_s") is not None else metrics.get("pre_fault_s")
        with contextlib.suppress(Exception):  # the store never fails a case (the writer spools)
            w.write(CaseResult.from_metrics({**metrics, "median_s": steady}, time_ns=time.time_ns(),
                                            run_id=self.s.run_id, case=self.name, scenario=self.scenario,
                                            placement=placement, testbed=self.s.inv.name, verdict=verdict_))

    def _record(self, extra: dict[str, Any], verdict_: str) -> None:
        self.recorded = True
        degraded = self.profile.degrade.get(self.scenario)  # type: ignore[call-overload]
        self.s.report.add_case({"id": self.id, "name": self.name, "scenario": self.scenario, "params": self.params,
                                **({"degraded": dict(degraded)} if degraded else {}), "verdict": verdict_,
                                "duration_s": round(time.monotonic() - self.t0, 3), **extra})

    def record_error(self, text: str) -> None:
        """A case that ended without concluding (exception, timeout, Ctrl-C)."""
        if not self.recorded:
            last = self.runs[-1] if self.runs else None
            part = self.s.runner.partial
            if part is not None and part.spec.steps and (last is None or part.started_ns > last.started_ns):
                last = part
                self.s.report.add_faults(self.name, part.conditions + part.faults)
                text = f"{text} ({part.error})" if part.error else text
            self._record({"status": last.status if last else "not-run", "error": text,
                          "series": [p.to_dict() for p in last.series] if last else [],
                          "faults": [w.to_dict() for w in last.faults] if last else [],
                          "conditions": [w.to_dict() for w in last.conditions] if last else [],
                          "outcome": last.outcome if last else None}, verdict_="error")


def close_quietly(session: TrialSession) -> None:
    with contextlib.suppress(Exception):
        session.tb.close()

"""The operations a fault's steps name, executed on the drivers (the only place that maps a
journal's data to driver calls), and the read-backs the faults verify with."""

from __future__ import annotations

from typing import Any

from .journal import Step


class FaultError(Exception):
    """Base of the fault catalogue's errors."""


class FaultRefused(FaultError):
    """The fault was not applied: nothing was sent (``supported`` lists what would be accepted)."""

    def __init__(self, reason: str, supported: tuple[Any, ...] = ()) -> None:
        self.reason = reason
        self.supported = tuple(supported)
        super().__init__(reason)


class FaultNotInEffect(FaultError):
    """The devices accepted the fault but reading them back does not show it (it is undone)."""


class UndoFailed(FaultError):
    """An undo step failed or the undo did not verify; the journal entry is kept for ``lab restore``."""


OPS: dict[str, Any] = {
    "stop_job": lambda d, run_id: _stop_job(d, run_id),
    "scancel_job": lambda client, run_id: _scancel_job(client, run_id),
}
"""Every operation a journaled step may name: the framework's own (ending the trial's jobs) and,
added by ``testbed.faults.registry.register``, each fault kind's ``OPS``."""
JOB_OPS = frozenset({"stop_job", "scancel_job"})
"""Operations that end the trial's own jobs: allowed without fault_injection."""
SCHEDULER_OPS = frozenset({"scancel_job"})
"""Sent to the inventory's workload manager (testbed/jobs/slurm.py), not to the step's device."""


def _stop_job(node: Any, run_id: str) -> list[str]:
    from testbed.jobs.cleanup import stop_run
    left = stop_run(node, str(run_id))
    if left:
        raise FaultError(f"processes of run {run_id} still there after TERM and KILL: {'; '.join(left)[:300]}")
    return left


def _scancel_job(client: Any, run_id: str) -> list[str]:
    from testbed.jobs.slurm import SlurmError, job_name
    try:
        return client.cancel_name(job_name(str(run_id)))
    except SlurmError as exc:
        raise FaultError(str(exc)) from None


def execute(step: Step, driver: Any) -> Any:
    fn = OPS.get(step.op)
    if fn is None:
        raise FaultError(f"unknown operation {step.op!r} in step {step} (known: {', '.join(OPS)}; a lab's own fault "
                         "kinds are loaded from the modules named in DCILAB_PLUGINS)")
    return fn(driver, **step.args)


def roadm_paths(roadm: Any) -> dict[str, dict[str, Any]]:
    """Per fiber path, as the ROADM's optical control plane reports it: up, ber, length_km."""
    if hasattr(roadm, "path_states"):          # fakes and future drivers
        return dict(roadm.path_states())
    from drivers.otn.netconf import children, first, text
    from drivers.roadm import BENCH
    data = roadm.nc.get(f'<optical-control-plane xmlns="{BENCH}"/>')
    out: dict[str, dict[str, Any]] = {}
    for p in children(first(data, "optical-control-plane"), "path"):
        ber, km = text(first(p, "ber")), text(first(p, "length-km"))
        out[text(first(p, "name"))] = {"up": text(first(p, "up")) == "true", "ber": float(ber) if ber else None,
                                       "length_km": float(km) if km else None}
    return out

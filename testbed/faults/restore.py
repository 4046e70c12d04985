"""``dcilab lab restore``: replay the undo steps of every journaled fault (a crashed or SIGKILLed
run's), clear the entries whose undo went through, then check the inventory's baseline: every
service at its line rate, traffic on the working path, no protection request, no bit errors,
every fiber path up."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import DriverError
from testbed.inventory import DeviceKind, Inventory
from testbed.runid import RunIdError, check_run_id

from .catalogue import BaselineView, Testbed
from .journal import Entry, Journal
from .ops import JOB_OPS, OPS, SCHEDULER_OPS, FaultError, execute


@dataclass
class RestoreReport:
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)       # undo steps that failed
    baseline: list[str] = field(default_factory=list)       # how the testbed differs from its baseline

    @property
    def ok(self) -> bool:
        return not self.problems and not self.baseline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def untrusted_steps(inv: Inventory, e: Entry) -> list[str]:
    """Why the entry's undo may not be sent to this inventory's gear (empty: it may): the journal
    is a file anyone with access to the state folder can edit, so each step is checked again against
    the inventory's allow-list and the known operations, as the fault was when it was applied."""
    out = []
    for s in e.undo:
        try:
            d = inv.device(s.device)
        except KeyError:
            out.append(f"{s.device}: no such device in inventory {inv.name!r}")
            continue
        if s.op in SCHEDULER_OPS and inv.scheduler is None:
            out.append(f"{s.device}: {s.op} needs the inventory's scheduler: block")
        if s.op in JOB_OPS:         # stopping the trial's own job on a GPU node: no fault
            if d.kind != DeviceKind.GPU_NODE:
                out.append(f"{s.device}: {s.op} is for GPU nodes, this is a {d.kind.value}")
            try:                    # it becomes a pkill pattern: a plain run id only
                check_run_id(s.args.get("run_id"), "run_id")  # type: ignore[arg-type]
            except RunIdError as exc:
                out.append(f"{s.device}: {str(exc).splitlines()[0]}")
        elif not d.fault_injection:
            out.append(f"{s.device}: not allowed for fault injection (fault_injection: false)")
        if s.op not in OPS:
            out.append(f"{s.device}: unknown operation {s.op!r}")
        path = s.args.get("path")
        if path is not None:
            fp = next((p for p in inv.fiber_paths if p.name == path), None)
            if fp is None or not fp.fault_injection:
                out.append(f"{s.device}: fiber path {path!r} is not in the inventory or not allowed for fault injection")
    return out


def _scheduler(inv: Inventory) -> Any:
    """The workload manager's client a scheduler step goes to (a job through Slurm is cancelled
    there: the controller does not log in to the nodes)."""
    from testbed.jobs.slurm import client_for
    return client_for(inv)


def replay(tb: Testbed, rep: RestoreReport, dry_run: bool = False, force: bool = False,
           log: Callable[[str], None] = print) -> None:
    entries, broken = tb.journal.scan()
    for path, why in broken:
        rep.problems.append(f"journal {path}: unreadable ({why}); nothing replayed from it: read it, undo by hand "
                            "what it names, then delete it")
        log(f"journal {path.name}: UNREADABLE ({why})")
    if not entries and not broken:
        log(f"journal {tb.journal.dir}: no active faults")
    here = str(tb.inv.source or tb.inv.name)
    for e in entries:
        owner_alive = e.host == socket.gethostname() and e.pid != os.getpid() and _alive(e.pid)
        log(f"journal {e.path.name}: {e.kind} {e.target}, state {e.state}, written by pid {e.pid} on {e.host}"
            f"{' (still running)' if owner_alive else ''}")
        if owner_alive and not force:
            rep.problems.append(f"{e.kind} {e.target}: its process {e.pid} is still running and will undo it "
                                "itself; stop it, or pass --force")
            continue
        if e.inventory and e.inventory != here and not force:
            rep.problems.append(f"{e.kind} {e.target}: journaled with inventory {e.inventory}, not {here}: run "
                                f"`dcilab lab restore --inventory {e.inventory}` (or pass --force)")
            continue
        refused = untrusted_steps(tb.inv, e)
        if refused:
            rep.problems.append(f"{e.kind} {e.target}: undo refused, nothing sent ({'; '.join(refused)}); journal "
                                f"entry kept at {e.path}")
            log(f"  REFUSED: {'; '.join(refused)}")
            continue
        failed = False
        for s in e.undo:
            if dry_run:
                log(f"  would send  {s}")
                continue
            try:
                execute(s, _scheduler(tb.inv) if s.op in SCHEDULER_OPS else tb.driver(s.device))
                rep.actions.append(f"{e.kind} {e.target}: {s}")
                log(f"  undo ok     {s}")
            except (DriverError, FaultError, OSError, TypeError, ValueError) as exc:
                failed = True
                rep.problems.append(f"{e.kind} {e.target}: {s}: {exc}")
                log(f"  undo FAILED {s}: {exc}")
        if not dry_run and not failed:
            tb.journal.remove(e)
            log(f"  cleared {e.path.name}")


def check_baseline(tb: Testbed) -> list[str]:
    """How the testbed differs from the inventory's baseline (empty: at baseline): each registered
    fault kind checks what it changes, every device read once."""
    from .registry import kinds
    view = BaselineView(tb)
    out = [d for k in kinds() for d in k.baseline(view)]
    return view.problems + out


def restore(inv: Inventory, connect: Callable[[Inventory, str], Any] | None = None,
            journal: Journal | None = None, dry_run: bool = False, force: bool = False,
            log: Callable[[str], None] = print) -> RestoreReport:
    rep = RestoreReport()
    with Testbed(inv, connect=connect, journal=journal) as tb:
        replay(tb, rep, dry_run=dry_run, force=force, log=log)
        if dry_run:
            return rep
        rep.baseline = check_baseline(tb)
    if rep.baseline:
        log("NOT at baseline:")
        for b in rep.baseline:
            log(f"  {b}")
    else:
        log(f"baseline reached: {', '.join(f'{s.name} {s.line_rate} on {s.working_path}' for s in inv.services)}, "
            "no protection request, no bit errors, every fiber path up")
    return rep

"""The fault catalogue: typed faults, each a context manager that refuses what the inventory does
not allow before anything is sent, journals its undo steps, applies, verifies by reading the
devices back, and undoes itself (and verifies the undo) however the block is left.

    tb = Testbed(inventory)
    with BandwidthDrop("dci-otn", 400).applied(tb) as rec:
        ...                                  # the line runs 400G here
    # back at 800G, verified; rec.applied_at / verified_at / undone_at on one clock

``fault.plan(tb)`` returns the steps it would send, connecting to nothing (``--dry-run``).

Each kind of fault is one module (``testbed/faults/kinds/``, or a user's module loaded through
``DCILAB_PLUGINS``): its class says its CLI form, the driver operations its steps name, what a
testbed needs to run it and how the testbed differs from its baseline after it, and
``@register`` (:mod:`testbed.faults.registry`) makes it known to the CLI, ``lab restore``, the
baseline check and the trial's ``faults`` fixture.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from drivers.errors import DriverError, Unsupported
from testbed.inventory import Inventory
from testbed.inventory.model import Service

from .journal import Journal, Step, journal_dir
from .ops import FaultRefused, UndoFailed, execute
from .signals import deferred_interrupts, interrupts_as_exceptions


@dataclass(frozen=True)
class Stamp:
    """One instant on both clocks: wall (time.time_ns) and monotonic (time.monotonic_ns)."""

    wall_ns: int
    mono_ns: int

    @classmethod
    def now(cls) -> Stamp:
        return cls(time.time_ns(), time.monotonic_ns())


@dataclass
class FaultRecord:
    kind: str
    target: str
    applied_at: Stamp | None = None      # just before the first apply step was sent
    verified_at: Stamp | None = None     # the devices read back showed the fault
    undone_at: Stamp | None = None       # the undo was read back and the journal entry cleared
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def held_s(self) -> float | None:
        if self.applied_at is None or self.undone_at is None:
            return None
        return (self.undone_at.mono_ns - self.applied_at.mono_ns) / 1e9


class Testbed:
    """What a fault acts on: the inventory, a driver per device (``connect(inv, name)``, cached)
    and the journal.  ``connect`` is replaceable (tests use fakes)."""

    __test__ = False   # not a pytest class

    def __init__(self, inventory: Inventory, connect: Callable[[Inventory, str], Any] | None = None,
                 journal: Journal | Path | str | None = None, log: Callable[[str], None] | None = None) -> None:
        if connect is None:
            from testbed.connect import connect as connect
        self.inv = inventory
        self._connect = connect
        self.journal = journal if isinstance(journal, Journal) else Journal(journal or journal_dir(inventory))
        self.log = log or (lambda _m: None)
        self._drivers: dict[str, Any] = {}

    def driver(self, name: str) -> Any:
        if name not in self._drivers:
            self._drivers[name] = self._connect(self.inv, name)
        return self._drivers[name]

    def connected(self) -> set[str]:
        """The devices with a cached driver (an open session)."""
        return set(self._drivers)

    def forget(self, name: str) -> None:
        """Drop a device's cached driver (it stopped answering: the next use reconnects)."""
        d = self._drivers.pop(name, None)
        if d is not None:
            with contextlib.suppress(Exception):
                d.close()

    def close(self) -> None:
        for d in self._drivers.values():
            with contextlib.suppress(Exception):
                d.close()
        self._drivers.clear()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(check: Callable[[], str | None], timeout: float, interval: float = 0.02) -> str | None:
    """Poll ``check`` (None = good, else the problem) until good or ``timeout``; the last problem."""
    deadline = time.monotonic() + timeout
    while True:
        problem = check()
        if problem is None or time.monotonic() >= deadline:
            return problem
        time.sleep(interval)


NO_SERVICE = "no DCI service (services:) in this inventory"
"""Why a capability is missing when the inventory has no service for the trial to act on."""


def first_service(inv: Inventory) -> Service | None:
    """The DCI service the trial runs over (the inventory's first)."""
    return inv.services[0] if inv.services else None


def not_allowed(inv: Inventory, devices: list[str], what: str) -> str | None:
    """Why a capability is missing when some of ``devices`` may not be disturbed, else None."""
    bad = [d for d in devices if not inv.device(d).fault_injection]
    if bad:
        return f"{what}: {', '.join(bad)} not allowed for fault injection in this inventory (fault_injection: true)"
    return None


def terminals(s: Service) -> list[str]:
    return [s.a_end.otn_terminal, s.z_end.otn_terminal]


def gateways(s: Service) -> list[str]:
    return [s.a_end.gateway, s.z_end.gateway]


def service_named(inv: Inventory, name: str) -> Service:
    for s in inv.services:
        if s.name == name:
            return s
    raise FaultRefused(f"no service {name!r} in inventory {inv.name!r} (services: "
                       f"{', '.join(s.name for s in inv.services) or 'none'})")


def path_named(inv: Inventory, name: str):  # type: ignore[no-untyped-def]
    try:
        return inv.fiber_path(name)
    except KeyError:
        raise FaultRefused(f"no fiber path {name!r} in inventory {inv.name!r} (paths: "
                           f"{', '.join(p.name for p in inv.fiber_paths) or 'none'})") from None


def check_allowed(inv: Inventory, kind: str, devices: list[str], paths: list[str]) -> None:
    """Refuse (nothing sent, nothing connected) unless every device and path allows fault injection."""
    bad = []
    for d in devices:
        try:
            if not inv.device(d).fault_injection:
                bad.append(f"device {d}")
        except KeyError:
            raise FaultRefused(f"{kind}: no device {d!r} in inventory {inv.name!r}") from None
    for p in paths:
        if not path_named(inv, p).fault_injection:
            bad.append(f"fiber path {p}")
    if bad:
        raise FaultRefused(f"{kind} refused: {', '.join(bad)} not allowed for fault injection in inventory "
                           f"{inv.name!r} ({inv.source}); add 'fault_injection: true' to "
                           f"{'it' if len(bad) == 1 else 'them'} only if {'it' if len(bad) == 1 else 'they'} "
                           "may be disturbed")


class BaselineView:
    """What the kinds' baseline checks read, each thing once per check (two kinds may look at the
    same ROADM); a read that fails is reported once, as a difference from the baseline."""

    def __init__(self, tb: Testbed) -> None:
        self.tb, self.inv = tb, tb.inv
        self.problems: list[str] = []
        self._cache: dict[str, Any] = {}

    def read(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or None after noting "WHAT: cannot read: ..." (driver or socket errors)."""
        if what not in self._cache:
            try:
                self._cache[what] = fn()
            except (DriverError, OSError) as exc:
                self.problems.append(f"{what}: cannot read: {exc}")
                self._cache[what] = None
        return self._cache[what]


Check = Callable[[Inventory], "str | None"]
"""A capability check: why this testbed cannot do something, or None if it can."""


class Fault(ABC):
    KIND: ClassVar[str] = "fault"

    # --- how a kind plugs in (registered with testbed.faults.registry.register) -----------------
    NAME: ClassVar[str] = ""
    """Its name on the command line (``dcilab fault plan NAME ARGS``), e.g. ``bandwidth-drop``."""
    USAGE: ClassVar[str] = ""
    """Its CLI arguments, e.g. ``SERVICE RATE``."""
    OPS: ClassVar[dict[str, Callable[..., Any]]] = {}
    """The driver operations its steps name (``op(driver, **step.args)``): what ``lab restore``
    replays from the journal."""
    CAPABILITIES: ClassVar[dict[str, Check]] = {}
    """What a case must have to use it (``@pytest.mark.needs(NAME)``), each a check of the inventory."""
    TRIAL: ClassVar[dict[str, Callable[..., Fault]]] = {}
    """The trial's ``faults`` fixture: ``faults.NAME(*args)`` calls ``TRIAL[NAME](service, inv, *args)``."""

    @classmethod
    def from_args(cls, args: list[str]) -> Fault:
        """The fault from its CLI arguments; ValueError when they do not parse."""
        raise ValueError(f"{cls.NAME or cls.__name__} has no command-line form")

    @classmethod
    def baseline(cls, view: BaselineView) -> list[str]:
        """How the testbed differs from the inventory's baseline in what this kind changes (empty:
        at baseline): ``dcilab lab restore`` and the trial check it between cases."""
        return []

    # --- what a fault defines ------------------------------------------------------------------
    @property
    @abstractmethod
    def target(self) -> str: ...

    @abstractmethod
    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        """(devices, fiber paths) this fault sends actions to; all must be allowed."""

    @abstractmethod
    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        """(apply, undo) steps; ``ctx`` holds what preflight read ({} for a dry run)."""

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        """Read-only: capabilities and state; raise FaultRefused before anything is sent."""
        return {}

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        """Read the devices back; raise FaultNotInEffect if the fault does not show; return details."""
        return {}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:  # noqa: B027 - optional: most undos are read back by verify
        """Read the devices back after the undo; raise UndoFailed if not back."""

    # --- shared machinery ----------------------------------------------------------------------------
    def check(self, inv: Inventory) -> None:
        devices, paths = self.touches(inv)
        check_allowed(inv, self.KIND, devices, paths)

    def plan(self, tb: Testbed | Inventory) -> tuple[list[Step], list[Step]]:
        """Dry run: the allow-list check and the steps, connecting to nothing and sending nothing."""
        inv = tb.inv if isinstance(tb, Testbed) else tb
        self.check(inv)
        return self.steps(inv, {})

    @contextlib.contextmanager
    def applied(self, tb: Testbed) -> Iterator[FaultRecord]:
        self.check(tb.inv)                                   # before any connection
        with interrupts_as_exceptions():
            try:
                ctx = self.preflight(tb)                     # reads only
            except Unsupported as exc:
                raise FaultRefused(f"{self.KIND} {self.target} refused: {exc}", exc.supported) from None
            apply, undo = self.steps(tb.inv, ctx)
            rec = FaultRecord(self.KIND, self.target)
            entry = None
            try:
                # Ctrl-C/SIGTERM held back until the entry is on disk *and* this try owns it: a signal
                # between the two left the entry (and maybe an edit) for `lab restore`.
                with deferred_interrupts():
                    entry = tb.journal.add(self.KIND, self.target, apply, undo, str(tb.inv.source or tb.inv.name))
                    rec.details["journal"] = str(entry.path)
                tb.log(f"{self.KIND} {self.target}: journaled {entry.path}")
                rec.applied_at = Stamp.now()
                for s in apply:
                    tb.log(f"{self.KIND}: apply {s}")
                    rec.details.setdefault("replies", []).append(repr(execute(s, tb.driver(s.device))))
                rec.details.update(self.verify(tb, ctx))
                rec.verified_at = Stamp.now()
                tb.journal.mark(entry, "applied")
                yield rec
            finally:
                if entry is not None:          # None: the journal could not be written, nothing was sent
                    with deferred_interrupts():
                        self._undo(tb, ctx, undo, entry, rec)

    def _undo(self, tb: Testbed, ctx: dict[str, Any], undo: list[Step], entry: Any, rec: FaultRecord) -> None:
        problems = []
        for s in undo:            # every step, whatever failed before: they are idempotent
            tb.log(f"{self.KIND}: undo {s}")
            try:
                execute(s, tb.driver(s.device))
            except (DriverError, OSError) as exc:
                problems.append(f"{s}: {exc}")
        if not problems:
            try:
                self.verify_undone(tb, ctx)
            except (UndoFailed, DriverError) as exc:
                problems.append(str(exc))
        if problems:
            raise UndoFailed(f"{self.KIND} {self.target}: undo incomplete ({'; '.join(problems)}); journal entry "
                             f"kept at {entry.path}: run `dcilab lab restore --inventory {tb.inv.source}`")
        tb.journal.remove(entry)
        rec.undone_at = Stamp.now()

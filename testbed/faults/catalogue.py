"""The fault catalogue: typed faults, each a context manager that refuses what the inventory does
not allow before anything is sent, journals its undo steps, applies, verifies by reading the
devices back, and undoes itself (and verifies the undo) however the block is left.

    tb = Testbed(inventory)
    with BandwidthDrop("dci-otn", 400).applied(tb) as rec:
        ...                                  # the line runs 400G here
    # back at 800G, verified; rec.applied_at / verified_at / undone_at on one clock

``fault.plan(tb)`` returns the steps it would send, connecting to nothing (``--dry-run``).
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
from .ops import FaultNotInEffect, FaultRefused, UndoFailed, execute, roadm_paths
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


def _service(inv: Inventory, name: str) -> Service:
    for s in inv.services:
        if s.name == name:
            return s
    raise FaultRefused(f"no service {name!r} in inventory {inv.name!r} (services: "
                       f"{', '.join(s.name for s in inv.services) or 'none'})")


def _path(inv: Inventory, name: str):  # type: ignore[no-untyped-def]
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
        if not _path(inv, p).fault_injection:
            bad.append(f"fiber path {p}")
    if bad:
        raise FaultRefused(f"{kind} refused: {', '.join(bad)} not allowed for fault injection in inventory "
                           f"{inv.name!r} ({inv.source}); add 'fault_injection: true' to "
                           f"{'it' if len(bad) == 1 else 'them'} only if {'it' if len(bad) == 1 else 'they'} "
                           "may be disturbed")


class Fault(ABC):
    KIND: ClassVar[str] = "fault"

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


# --- the catalogue ----------------------------------------------------------------------------------


def _terminals(s: Service) -> list[str]:
    return [s.a_end.otn_terminal, s.z_end.otn_terminal]


@dataclass(frozen=True)
class BandwidthDrop(Fault):
    """The service's line rate down to ``to_rate_gbps`` on both terminals (the trial's 800G -> 400G)."""

    service: str
    to_rate_gbps: int
    KIND: ClassVar[str] = "BandwidthDrop"

    @property
    def target(self) -> str:
        return f"{self.service}->{self.to_rate_gbps}G"

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        return _terminals(_service(inv, self.service)), []

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        s = _service(inv, self.service)
        if self.to_rate_gbps >= s.line_gbps or self.to_rate_gbps <= 0:
            raise FaultRefused(f"{self.KIND} {self.target} refused: a drop goes below the service's "
                               f"{s.line_rate} line rate")
        how = "edit-config candidate + confirmed-commit (running where the device has no candidate)"
        return ([Step(t, "set_line_rate", {"gbps": self.to_rate_gbps}, f"{how}: line rate {self.to_rate_gbps}G")
                 for t in _terminals(s)],
                [Step(t, "set_line_rate", {"gbps": s.line_gbps}, f"{how}: line rate {s.line_gbps}G")
                 for t in _terminals(s)])

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        s = _service(tb.inv, self.service)
        self.steps(tb.inv, {})
        before = {}
        for t in _terminals(s):
            d = tb.driver(t)
            sup = tuple(d.supported_rates_gbps())
            if self.to_rate_gbps not in sup:
                raise FaultRefused(f"{self.KIND} {self.target} refused: {t} cannot run {self.to_rate_gbps}G "
                                   f"(supported: {', '.join(f'{r}G' for r in sup)})", tuple(f"{r}G" for r in sup))
            before[t] = d.line_rate_gbps()
        return {"before_gbps": before}

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        got = {t: tb.driver(t).line_rate_gbps() for t in _terminals(_service(tb.inv, self.service))}
        if any(g != self.to_rate_gbps for g in got.values()):
            raise FaultNotInEffect(f"{self.KIND}: terminals read back {got}, not {self.to_rate_gbps}G")
        return {"rate_gbps": got, "before_gbps": ctx["before_gbps"]}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:
        s = _service(tb.inv, self.service)
        got = {t: tb.driver(t).line_rate_gbps() for t in _terminals(s)}
        if any(g != s.line_gbps for g in got.values()):
            raise UndoFailed(f"{self.KIND}: terminals read back {got} after the undo, not {s.line_gbps}G")


@dataclass(frozen=True)
class BitErrors(Fault):
    """Post-FEC bit errors at ``ber`` on a fiber path, injected at its first ROADM (real lab: a VOA
    or noise loading, or a test set's error insertion)."""

    path: str
    ber: float
    KIND: ClassVar[str] = "BitErrors"

    @property
    def target(self) -> str:
        return f"{self.path}@{self.ber:g}"

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        return [_path(inv, self.path).roadms[0]], [self.path]

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        if not 0 < self.ber < 1:
            raise FaultRefused(f"{self.KIND} refused: BER {self.ber!r} is not between 0 and 1 (exclusive)",
                               ("0 < ber < 1",))
        r = _path(inv, self.path).roadms[0]
        return ([Step(r, "inject_ber", {"path": self.path, "ber": self.ber}, "rpc pm-interact set path/ber")],
                [Step(r, "clear_ber", {"path": self.path}, "rpc pm-interact clear path")])

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        self.steps(tb.inv, {})
        roadm = self.touches(tb.inv)[0][0]
        paths = roadm_paths(tb.driver(roadm))
        if self.path not in paths:
            raise FaultRefused(f"{self.KIND} refused: {roadm} does not carry path {self.path!r} "
                               f"(it carries {', '.join(paths)})", tuple(paths))
        return {"roadm": roadm}

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        got = roadm_paths(tb.driver(ctx["roadm"]))[self.path]["ber"]
        if got is None or abs(got - self.ber) > 1e-9 * self.ber + 1e-18:
            raise FaultNotInEffect(f"{self.KIND}: {ctx['roadm']} reads BER {got} on {self.path}, not {self.ber:g}")
        return {"ber_read_back": got}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:
        got = roadm_paths(tb.driver(ctx["roadm"]))[self.path]["ber"]
        if got:
            raise UndoFailed(f"{self.KIND}: {ctx['roadm']} still reads BER {got} on {self.path}")


SWITCH_KINDS = ("force", "manual", "lockout")
REQUEST_STATE = {"force": "forced", "manual": "manual", "lockout": "lockout"}


@dataclass(frozen=True)
class ProtectionSwitch(Fault):
    """An operator request on the service's 1+1 protection group: ``force`` / ``manual`` switch
    to the protection path, or ``lockout`` of protection (traffic stays on working, SNCP off)."""

    service: str
    kind: str = "force"
    timeout_s: float = 5.0
    KIND: ClassVar[str] = "ProtectionSwitch"

    @property
    def target(self) -> str:
        return f"{self.service}:{self.kind}"

    def _candidates(self, inv: Inventory) -> list[str]:
        s = _service(inv, self.service)
        if not s.protection_path:
            raise FaultRefused(f"{self.KIND} refused: service {self.service!r} has no protection path")
        if self.kind not in SWITCH_KINDS:
            raise FaultRefused(f"{self.KIND} refused: kind {self.kind!r} is not one of {', '.join(SWITCH_KINDS)}",
                               SWITCH_KINDS)
        return [t for t in _terminals(s) if inv.device(t).fault_injection]

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        c = self._candidates(inv)
        return (c or _terminals(_service(inv, self.service))[:1]), []

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        t = ctx.get("terminal") or self._candidates(inv)[0]
        if self.kind == "lockout":
            return ([Step(t, "request_switch", {"kind": "lockout", "to": "protection"}, "lockout of protection")],
                    [Step(t, "request_switch", {"kind": "release", "to": "working"}, "clear the request")])
        return ([Step(t, "request_switch", {"kind": self.kind, "to": "protection"},
                      f"{self.kind} switch to protection")],
                [Step(t, "request_switch", {"kind": "force", "to": "working"}, "forced switch back to working"),
                 Step(t, "request_switch", {"kind": "release", "to": "working"}, "clear the request")])

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        offered: dict[str, tuple[str, ...]] = {}
        need = {self.kind, "release"} | ({"force"} if self.kind != "lockout" else set())
        for t in self._candidates(tb.inv):
            kinds = tuple(tb.driver(t).SWITCH_KINDS)
            offered[t] = kinds
            if need <= set(kinds):
                p = tb.driver(t).protection()
                if (p.active_path, p.request_state) != ("working", "none"):
                    raise FaultRefused(f"{self.KIND} refused: {t} is not at baseline (active {p.active_path}, "
                                       f"request {p.request_state}); run dcilab lab restore")
                return {"terminal": t}
        raise FaultRefused(f"{self.KIND} {self.kind} refused: no allowed terminal of {self.service} offers "
                           f"{', '.join(sorted(need))} (" + "; ".join(f"{t}: {', '.join(k)}" for t, k in offered.items())
                           + ")", tuple(sorted({k for ks in offered.values() for k in ks})))

    def _state(self, tb: Testbed, ctx: dict[str, Any]) -> tuple[str, str]:
        p = tb.driver(ctx["terminal"]).protection()
        return p.active_path, p.request_state

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        want = ("working" if self.kind == "lockout" else "protection", REQUEST_STATE[self.kind])
        problem = wait_until(lambda: None if (st := self._state(tb, ctx)) == want else f"reads {st}", self.timeout_s)
        if problem:
            raise FaultNotInEffect(f"{self.KIND} {self.kind}: {ctx['terminal']} {problem}, not {want}")
        return {"terminal": ctx["terminal"], "active_path": want[0], "request_state": want[1]}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:
        problem = wait_until(lambda: None if (st := self._state(tb, ctx)) == ("working", "none") else f"reads {st}",
                             self.timeout_s)
        if problem:
            raise UndoFailed(f"{self.KIND}: {ctx['terminal']} {problem} after the undo, not (working, none)")


@dataclass(frozen=True)
class FiberCut(Fault):
    """Loss of signal on a path's fiber at its first ROADM degree (real lab: an optical switch port
    opened or a VOA at maximum).  If the path carries the traffic, 1+1 SNCP moves it to the
    protection path, or (protection locked out, cut or absent) ASON restores it on a restoration
    path; the fault waits for and verifies that outcome."""

    path: str
    timeout_s: float = 10.0
    KIND: ClassVar[str] = "FiberCut"

    @property
    def target(self) -> str:
        return self.path

    def _service(self, inv: Inventory) -> Service:
        for s in inv.services:
            if self.path in (s.working_path, s.protection_path, *s.restoration_paths):
                return s
        raise FaultRefused(f"{self.KIND} refused: no service uses fiber path {self.path!r}")

    def _terminal(self, inv: Inventory) -> str:
        ts = _terminals(self._service(inv))
        return next((t for t in ts if inv.device(t).fault_injection), ts[0])

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        return [_path(inv, self.path).roadms[0], self._terminal(inv)], [self.path]

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        r, t = _path(inv, self.path).roadms[0], ctx.get("terminal") or self._terminal(inv)
        apply = [Step(r, "cut_path_fiber", {"path": self.path}, "rpc pm-interact set degree-number (LOS)")]
        undo = [Step(r, "repair_path_fiber", {"path": self.path}, "rpc pm-interact clear degree-number")]
        if ctx.get("expect", "moves") != "stays":
            back = "lockout" if ctx.get("request_before") == "lockout" else "release"
            undo += [Step(t, "request_switch", {"kind": "force", "to": "working"}, "traffic back to working"),
                     Step(t, "request_switch", {"kind": back, "to": "working"},
                          "restore the request state from before the cut")]
        return apply, undo

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        inv = tb.inv
        s = self._service(inv)
        r = _path(inv, self.path).roadms[0]
        roadm = tb.driver(r)
        deg = roadm.degree_on(self.path)            # Unsupported if this ROADM has no degree on it
        st = roadm.restoration()
        up = dict(st.paths_up) or {k: v["up"] for k, v in roadm_paths(roadm).items()}
        req = st.request_state or tb.driver(self._terminal(inv)).protection().request_state
        need = {"force", "lockout" if req == "lockout" else "release"}
        allowed = [t for t in _terminals(s) if inv.device(t).fault_injection]
        terminal = next((t for t in allowed if need <= set(tb.driver(t).SWITCH_KINDS)), None)
        if terminal is None:
            raise FaultRefused(f"{self.KIND} {self.path} refused: no allowed terminal of {s.name} offers "
                               f"{', '.join(sorted(need))}, needed to put traffic back on working afterwards")
        ctx: dict[str, Any] = {"roadm": r, "degree": deg.number, "active_before": st.active_path,
                               "request_before": req, "terminal": terminal}
        if st.active_path != self.path:
            ctx.update(expect="stays", expect_path=st.active_path, mechanism=None)
            return ctx
        p = s.protection_path
        sncp = (st.mode or "sncp") == "sncp" and p and p != self.path and up.get(p) and req not in ("lockout", "forced")
        if sncp:
            ctx.update(expect="moves", expect_path=p, mechanism="sncp", wait_s=self.timeout_s)
            return ctx
        ason = st.raw.get("ason", "true") == "true"
        order = ([s.working_path] if self.path != s.working_path else []) + list(s.restoration_paths)
        target = next((x for x in order if x != self.path and up.get(x)), None)
        if not ason or target is None:
            raise FaultRefused(f"{self.KIND} {self.path} refused: it carries the traffic and neither SNCP nor ASON "
                               f"could move it (ason {ason}, paths up {up}, request {req}): the service would go down")
        rest_s = float(st.raw.get("restoration-time-ms") or 0) / 1e3
        ctx.update(expect="moves", expect_path=target, mechanism="ason", wait_s=rest_s + self.timeout_s)
        return ctx

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        roadm = tb.driver(ctx["roadm"])
        t0 = time.monotonic()

        def check() -> str | None:
            st = roadm.restoration()
            if st.paths_up.get(self.path, False):
                return f"path {self.path} still reads up"
            if st.active_path != ctx["expect_path"] or st.state == "restoring":
                return f"active path {st.active_path} (restoration {st.state})"
            return None
        problem = wait_until(check, ctx.get("wait_s", self.timeout_s), 0.05)
        if problem:
            raise FaultNotInEffect(f"{self.KIND} {self.path}: {ctx['roadm']} reads {problem}; expected traffic on "
                                   f"{ctx['expect_path']} ({ctx['mechanism'] or 'unchanged'})")
        new = _path(tb.inv, ctx["expect_path"])
        return {"degree": ctx["degree"], "mechanism": ctx["mechanism"], "active_path": ctx["expect_path"],
                "active_length_km": new.length_km, "moved_after_s": round(time.monotonic() - t0, 3)}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:
        roadm = tb.driver(ctx["roadm"])

        def check() -> str | None:
            st = roadm.restoration()
            if not st.paths_up.get(self.path, True):
                return f"path {self.path} still down"
            if st.active_path != ctx["active_before"]:
                return f"active path {st.active_path}, not {ctx['active_before']}"
            return None
        problem = wait_until(check, 5.0, 0.05)
        if problem:
            raise UndoFailed(f"{self.KIND} {self.path}: after the undo {ctx['roadm']} reads {problem}")


def _gateways(s: Service) -> list[str]:
    return [s.a_end.gateway, s.z_end.gateway]


def physical_ratio(inv: Inventory, service: str, site: str) -> float:
    """The site's convergence ratio without shaping: site fabric / the service's client capacity
    (the trial's 3200G fabric over 2 x 400G client ports = 4:1)."""
    s = _service(inv, service)
    return inv.site(site).fabric_gbps / s.client_ports.gbps


@dataclass(frozen=True)
class ConvergenceRatio(Fault):
    """The gateways of both ends shape the WAN to give each site a ``ratio``:1 convergence (site
    fabric / WAN bandwidth), as the trial's gateways did for 8:1 and 16:1.  A test condition
    rather than a failure, but it changes gear like a fault, so it is journaled, allow-listed and
    undone the same way.  The physical ratio (no shaping) needs no step; a smaller one is refused:
    shaping cannot add bandwidth."""

    service: str
    ratio: float
    KIND: ClassVar[str] = "ConvergenceRatio"

    @property
    def target(self) -> str:
        return f"{self.service}@{self.ratio:g}:1"

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        s = _service(inv, self.service)
        return [g for g in _gateways(s) if self._kbps(inv, g) is not None], []

    def _kbps(self, inv: Inventory, gateway: str) -> int | None:
        """The CIR for this gateway, None at the physical ratio."""
        from testbed.connect import wan_shaping_kbps
        site = inv.device(gateway).site
        phys = physical_ratio(inv, self.service, site)
        if not self.ratio > 0 or self.ratio < phys - 1e-9:
            raise FaultRefused(f"{self.KIND} {self.target} refused: site {site}'s physical convergence is "
                               f"{phys:g}:1 (fabric {inv.site(site).fabric_gbps:g}G over the service's client "
                               f"ports); shaping can only raise the ratio", (f">= {phys:g}",))
        if abs(self.ratio - phys) < 1e-9:
            return None
        return wan_shaping_kbps(inv, site, self.ratio)

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        before = ctx.get("before_kbps", {})
        apply, undo = [], []
        for g in self.touches(inv)[0]:
            k = self._kbps(inv, g)
            apply.append(Step(g, "set_wan_shaping", {"rate_kbps": k}, f"WAN shaping CIR {k} kbit/s ({self.ratio:g}:1)"))
            if before.get(g):
                undo.append(Step(g, "set_wan_shaping", {"rate_kbps": before[g]}, f"WAN shaping back to {before[g]}"))
            else:
                undo.append(Step(g, "clear_wan_shaping", {}, "WAN shaping removed (physical convergence)"))
        return apply, undo

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        self.steps(tb.inv, {})
        return {"before_kbps": {g: tb.driver(g).shaping_kbps() for g in self.touches(tb.inv)[0]}}

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        got = {g: tb.driver(g).shaping_kbps() for g in self.touches(tb.inv)[0]}
        want = {g: self._kbps(tb.inv, g) for g in got}
        if got != want:
            raise FaultNotInEffect(f"{self.KIND} {self.target}: gateways read back CIR {got} kbit/s, not {want}")
        return {"shaping_kbps": got, "before_kbps": ctx["before_kbps"]}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:
        got = {g: tb.driver(g).shaping_kbps() for g in self.touches(tb.inv)[0]}
        if got != ctx["before_kbps"]:
            raise UndoFailed(f"{self.KIND} {self.target}: gateways read back CIR {got} after the undo, "
                             f"not {ctx['before_kbps']}")


def fault_from_args(kind: str, args: list[str]) -> Fault:
    """CLI form: bandwidth-drop SERVICE RATE | bit-errors PATH BER | protection-switch SERVICE KIND |
    fiber-cut PATH | convergence-ratio SERVICE RATIO."""
    k = kind.lower().replace("_", "-")
    try:
        if k in ("bandwidth-drop", "bandwidthdrop"):
            service, rate = args
            return BandwidthDrop(service, int(rate.upper().rstrip("G")))
        if k in ("bit-errors", "biterrors"):
            path, ber = args
            return BitErrors(path, float(ber))
        if k in ("protection-switch", "protectionswitch"):
            service, how = args
            return ProtectionSwitch(service, how)
        if k in ("fiber-cut", "fibercut"):
            (path,) = args
            return FiberCut(path)
        if k in ("convergence-ratio", "convergenceratio"):
            service, ratio = args
            return ConvergenceRatio(service, float(ratio.split(":")[0]))
    except ValueError:
        raise FaultRefused(f"bad arguments for {kind}: {' '.join(args)} ({fault_from_args.__doc__})") from None
    raise FaultRefused(f"unknown fault kind {kind!r}: use bandwidth-drop, bit-errors, protection-switch, fiber-cut "
                       "or convergence-ratio")

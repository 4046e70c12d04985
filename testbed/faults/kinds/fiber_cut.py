"""Fiber cut: loss of signal on a fiber path at its first ROADM degree (real lab: an optical switch
port opened or a VOA at maximum); SNCP or ASON moves the traffic, and the undo repairs the fiber
and puts the traffic back on working."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.inventory import Inventory
from testbed.inventory.model import Service

from ..catalogue import NO_SERVICE, BaselineView, Fault, Testbed, first_service, not_allowed, path_named, terminals, wait_until
from ..journal import Step
from ..ops import FaultNotInEffect, FaultRefused, UndoFailed, roadm_paths
from ..registry import register
from .bit_errors import roadm_path_states


def _cut(d: Any, path: str) -> Any:
    return d.cut_fiber(d.degree_on(path).number)


def _repair(d: Any, path: str) -> Any:
    return d.repair_fiber(d.degree_on(path).number)


def _protection_path(inv: Inventory) -> str | None:
    s = first_service(inv)
    if s is None:
        return NO_SERVICE
    if not s.protection_path:
        return "no protection path in this inventory"
    p = inv.fiber_path(s.working_path)
    if not p.fault_injection:
        return f"fiber cut: working path {p.name} not allowed for fault injection in this inventory"
    return not_allowed(inv, [p.roadms[0]], "fiber cut")


def _restoration_path(inv: Inventory) -> str | None:
    s = first_service(inv)
    if s is None:
        return NO_SERVICE
    if not s.restoration_paths:
        return "no restoration path in this inventory"
    why = _protection_path(inv) if s.protection_path else None
    if why:
        return why
    if not any(inv.device(t).fault_injection for t in terminals(s)):
        return "ASON reroute: no OTN terminal allowed to lock out protection (fault_injection: true)"
    return None


@register
@dataclass(frozen=True)
class FiberCut(Fault):
    """Loss of signal on a path's fiber at its first ROADM degree (real lab: an optical switch port
    opened or a VOA at maximum).  If the path carries the traffic, 1+1 SNCP moves it to the
    protection path, or (protection locked out, cut or absent) ASON restores it on a restoration
    path; the fault waits for and verifies that outcome."""

    path: str
    timeout_s: float = 10.0
    KIND: ClassVar[str] = "FiberCut"
    NAME: ClassVar[str] = "fiber-cut"
    USAGE: ClassVar[str] = "PATH"
    OPS: ClassVar[dict[str, Any]] = {"cut_path_fiber": _cut, "repair_path_fiber": _repair}
    CAPABILITIES: ClassVar[dict[str, Any]] = {"protection_path": _protection_path,
                                              "restoration_path": _restoration_path}
    TRIAL: ClassVar[dict[str, Any]] = {"fiber_cut": lambda svc, inv, path=None: FiberCut(path or svc.working_path)}

    @classmethod
    def from_args(cls, args: list[str]) -> FiberCut:
        (path,) = args
        return cls(path)

    @classmethod
    def baseline(cls, view: BaselineView) -> list[str]:
        out = []
        for s in view.inv.services:
            roadm = view.inv.fiber_path(s.working_path).roadms[0]
            st = view.read(f"{roadm} restoration", lambda roadm=roadm: view.tb.driver(roadm).restoration())
            if st is not None and st.active_path != s.working_path:
                out.append(f"{roadm}: active path {st.active_path}, baseline {s.working_path}")
            for name, p in roadm_path_states(view, roadm).items():
                if not p["up"]:
                    out.append(f"{roadm}: fiber path {name} is down (cut)")
        return out

    @property
    def target(self) -> str:
        return self.path

    def service_named(self, inv: Inventory) -> Service:
        for s in inv.services:
            if self.path in (s.working_path, s.protection_path, *s.restoration_paths):
                return s
        raise FaultRefused(f"{self.KIND} refused: no service uses fiber path {self.path!r}")

    def _terminal(self, inv: Inventory) -> str:
        ts = terminals(self.service_named(inv))
        return next((t for t in ts if inv.device(t).fault_injection), ts[0])

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        return [path_named(inv, self.path).roadms[0], self._terminal(inv)], [self.path]

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        r, t = path_named(inv, self.path).roadms[0], ctx.get("terminal") or self._terminal(inv)
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
        s = self.service_named(inv)
        r = path_named(inv, self.path).roadms[0]
        roadm = tb.driver(r)
        deg = roadm.degree_on(self.path)            # Unsupported if this ROADM has no degree on it
        st = roadm.restoration()
        up = dict(st.paths_up) or {k: v["up"] for k, v in roadm_paths(roadm).items()}
        req = st.request_state or tb.driver(self._terminal(inv)).protection().request_state
        need = {"force", "lockout" if req == "lockout" else "release"}
        allowed = [t for t in terminals(s) if inv.device(t).fault_injection]
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
        new = path_named(tb.inv, ctx["expect_path"])
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

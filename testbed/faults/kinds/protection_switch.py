"""Protection switch: an operator request on the service's 1+1 protection group (force / manual
switch to protection, or lockout of protection), cleared on undo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.inventory import Inventory

from ..catalogue import BaselineView, Fault, Testbed, service_named, terminals, wait_until
from ..journal import Step
from ..ops import FaultNotInEffect, FaultRefused, UndoFailed
from ..registry import register

SWITCH_KINDS = ("force", "manual", "lockout")
REQUEST_STATE = {"force": "forced", "manual": "manual", "lockout": "lockout"}


@register
@dataclass(frozen=True)
class ProtectionSwitch(Fault):
    """An operator request on the service's 1+1 protection group: ``force`` / ``manual`` switch
    to the protection path, or ``lockout`` of protection (traffic stays on working, SNCP off)."""

    service: str
    kind: str = "force"
    timeout_s: float = 5.0
    KIND: ClassVar[str] = "ProtectionSwitch"
    NAME: ClassVar[str] = "protection-switch"
    USAGE: ClassVar[str] = "SERVICE force|manual|lockout"
    OPS: ClassVar[dict[str, Any]] = {
        "request_switch": lambda d, kind, to="protection": d.request_switch(kind, to)}
    TRIAL: ClassVar[dict[str, Any]] = {
        "protection_lockout": lambda svc, inv: ProtectionSwitch(svc.name, "lockout"),
        "protection_switch": lambda svc, inv, kind="force": ProtectionSwitch(svc.name, kind)}

    @classmethod
    def from_args(cls, args: list[str]) -> ProtectionSwitch:
        service, how = args
        return cls(service, how)

    @classmethod
    def baseline(cls, view: BaselineView) -> list[str]:
        out = []
        for s in view.inv.services:
            if not s.protection_path:
                continue
            for t in terminals(s):
                p = view.read(f"{t} protection", lambda t=t: view.tb.driver(t).protection())
                if p is not None and p.active_path != "working":
                    out.append(f"{t}: traffic on {p.active_path}, baseline working")
                if p is not None and p.request_state != "none":
                    out.append(f"{t}: protection request {p.request_state}, baseline none")
        return out

    @property
    def target(self) -> str:
        return f"{self.service}:{self.kind}"

    def _candidates(self, inv: Inventory) -> list[str]:
        s = service_named(inv, self.service)
        if not s.protection_path:
            raise FaultRefused(f"{self.KIND} refused: service {self.service!r} has no protection path")
        if self.kind not in SWITCH_KINDS:
            raise FaultRefused(f"{self.KIND} refused: kind {self.kind!r} is not one of {', '.join(SWITCH_KINDS)}",
                               SWITCH_KINDS)
        return [t for t in terminals(s) if inv.device(t).fault_injection]

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        c = self._candidates(inv)
        return (c or terminals(service_named(inv, self.service))[:1]), []

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

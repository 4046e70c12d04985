"""Bandwidth drop: the service's line rate down on both OTN terminals (the trial's 800G -> 400G,
a Flex-O step), undone by setting it back; the terminals read back each time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.inventory import Inventory

from ..catalogue import NO_SERVICE, BaselineView, Fault, Testbed, first_service, not_allowed, service_named, terminals
from ..journal import Step
from ..ops import FaultNotInEffect, FaultRefused, UndoFailed
from ..registry import register


def _rate_change(inv: Inventory) -> str | None:
    s = first_service(inv)
    if s is None:
        return NO_SERVICE
    return not_allowed(inv, terminals(s), "line rate change")


@register
@dataclass(frozen=True)
class BandwidthDrop(Fault):
    """The service's line rate down to ``to_rate_gbps`` on both terminals (the trial's 800G -> 400G)."""

    service: str
    to_rate_gbps: int
    KIND: ClassVar[str] = "BandwidthDrop"
    NAME: ClassVar[str] = "bandwidth-drop"
    USAGE: ClassVar[str] = "SERVICE RATE"
    OPS: ClassVar[dict[str, Any]] = {"set_line_rate": lambda d, gbps: d.set_line_rate(int(gbps))}
    CAPABILITIES: ClassVar[dict[str, Any]] = {"rate_change": _rate_change}
    TRIAL: ClassVar[dict[str, Any]] = {
        "bandwidth_drop": lambda svc, inv, to_gbps: BandwidthDrop(svc.name, int(to_gbps))}

    @classmethod
    def from_args(cls, args: list[str]) -> BandwidthDrop:
        service, rate = args
        return cls(service, int(rate.upper().rstrip("G")))

    @classmethod
    def baseline(cls, view: BaselineView) -> list[str]:
        out = []
        for s in view.inv.services:
            for t in terminals(s):
                rate = view.read(f"{t} line rate", lambda t=t: view.tb.driver(t).line_rate_gbps())
                if rate is not None and rate != s.line_gbps:
                    out.append(f"{t}: line rate {rate}G, baseline {s.line_rate}")
        return out

    @property
    def target(self) -> str:
        return f"{self.service}->{self.to_rate_gbps}G"

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        return terminals(service_named(inv, self.service)), []

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        s = service_named(inv, self.service)
        if self.to_rate_gbps >= s.line_gbps or self.to_rate_gbps <= 0:
            raise FaultRefused(f"{self.KIND} {self.target} refused: a drop goes below the service's "
                               f"{s.line_rate} line rate")
        how = "edit-config candidate + confirmed-commit (running where the device has no candidate)"
        return ([Step(t, "set_line_rate", {"gbps": self.to_rate_gbps}, f"{how}: line rate {self.to_rate_gbps}G")
                 for t in terminals(s)],
                [Step(t, "set_line_rate", {"gbps": s.line_gbps}, f"{how}: line rate {s.line_gbps}G")
                 for t in terminals(s)])

    def preflight(self, tb: Testbed) -> dict[str, Any]:
        s = service_named(tb.inv, self.service)
        self.steps(tb.inv, {})
        before = {}
        for t in terminals(s):
            d = tb.driver(t)
            sup = tuple(d.supported_rates_gbps())
            if self.to_rate_gbps not in sup:
                raise FaultRefused(f"{self.KIND} {self.target} refused: {t} cannot run {self.to_rate_gbps}G "
                                   f"(supported: {', '.join(f'{r}G' for r in sup)})", tuple(f"{r}G" for r in sup))
            before[t] = d.line_rate_gbps()
        return {"before_gbps": before}

    def verify(self, tb: Testbed, ctx: dict[str, Any]) -> dict[str, Any]:
        got = {t: tb.driver(t).line_rate_gbps() for t in terminals(service_named(tb.inv, self.service))}
        if any(g != self.to_rate_gbps for g in got.values()):
            raise FaultNotInEffect(f"{self.KIND}: terminals read back {got}, not {self.to_rate_gbps}G")
        return {"rate_gbps": got, "before_gbps": ctx["before_gbps"]}

    def verify_undone(self, tb: Testbed, ctx: dict[str, Any]) -> None:
        s = service_named(tb.inv, self.service)
        got = {t: tb.driver(t).line_rate_gbps() for t in terminals(s)}
        if any(g != s.line_gbps for g in got.values()):
            raise UndoFailed(f"{self.KIND}: terminals read back {got} after the undo, not {s.line_gbps}G")

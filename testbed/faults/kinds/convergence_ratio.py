"""Convergence ratio: both gateways shape the WAN so that each site gets ``ratio``:1 (site fabric /
WAN bandwidth), as the trial's gateways did for 8:1 and 16:1; undone by the shaping from before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.inventory import Inventory

from ..catalogue import NO_SERVICE, BaselineView, Fault, Testbed, first_service, gateways, not_allowed, service_named
from ..journal import Step
from ..ops import FaultNotInEffect, FaultRefused, UndoFailed
from ..registry import register


def _convergence_shaping(inv: Inventory) -> str | None:
    s = first_service(inv)
    if s is None:
        return NO_SERVICE
    return not_allowed(inv, gateways(s), "gateway WAN shaping")


def physical_ratio(inv: Inventory, service: str, site: str) -> float:
    """The site's convergence ratio without shaping: site fabric / the service's client capacity
    (the trial's 3200G fabric over 2 x 400G client ports = 4:1)."""
    s = service_named(inv, service)
    return inv.site(site).fabric_gbps / s.client_ports.gbps


@register
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
    NAME: ClassVar[str] = "convergence-ratio"
    USAGE: ClassVar[str] = "SERVICE RATIO"
    OPS: ClassVar[dict[str, Any]] = {"set_wan_shaping": lambda d, rate_kbps: d.set_wan_shaping(int(rate_kbps)),
                                     "clear_wan_shaping": lambda d: d.clear_wan_shaping()}
    CAPABILITIES: ClassVar[dict[str, Any]] = {"convergence_shaping": _convergence_shaping}
    TRIAL: ClassVar[dict[str, Any]] = {
        "convergence": lambda svc, inv, ratio: ConvergenceRatio(svc.name, float(ratio))}

    @classmethod
    def from_args(cls, args: list[str]) -> ConvergenceRatio:
        service, ratio = args
        return cls(service, float(ratio.split(":")[0]))

    @classmethod
    def baseline(cls, view: BaselineView) -> list[str]:
        out = []
        for s in view.inv.services:
            for g in gateways(s):
                cir = view.read(f"{g} WAN shaping", lambda g=g: view.tb.driver(g).shaping_kbps())
                if cir is not None:
                    out.append(f"{g}: WAN shaped to {cir} kbit/s, baseline unshaped (physical convergence)")
        return out

    @property
    def target(self) -> str:
        return f"{self.service}@{self.ratio:g}:1"

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        s = service_named(inv, self.service)
        return [g for g in gateways(s) if self._kbps(inv, g) is not None], []

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

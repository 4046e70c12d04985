"""Bit errors: a post-FEC BER on a fiber path, injected at its first ROADM (real lab: a VOA, noise
loading or a test set's error insertion), cleared on undo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.inventory import Inventory

from ..catalogue import NO_SERVICE, BaselineView, Fault, Testbed, first_service, not_allowed, path_named
from ..journal import Step
from ..ops import FaultNotInEffect, FaultRefused, UndoFailed, roadm_paths
from ..registry import register


def _bit_errors(inv: Inventory) -> str | None:
    s = first_service(inv)
    if s is None:
        return NO_SERVICE
    p = inv.fiber_path(s.working_path)
    if not p.fault_injection:
        return f"bit errors: fiber path {p.name} not allowed for fault injection in this inventory"
    return not_allowed(inv, [p.roadms[0]], "bit errors")


def roadm_path_states(view: BaselineView, roadm: str) -> dict[str, dict[str, Any]]:
    """The ROADM's fiber paths (up, ber, length), read once per baseline check."""
    return view.read(f"{roadm} paths", lambda: roadm_paths(view.tb.driver(roadm))) or {}


@register
@dataclass(frozen=True)
class BitErrors(Fault):
    """Post-FEC bit errors at ``ber`` on a fiber path, injected at its first ROADM (real lab: a VOA
    or noise loading, or a test set's error insertion)."""

    path: str
    ber: float
    KIND: ClassVar[str] = "BitErrors"
    NAME: ClassVar[str] = "bit-errors"
    USAGE: ClassVar[str] = "PATH BER"
    OPS: ClassVar[dict[str, Any]] = {
        "inject_ber": lambda d, path, ber: d.inject_ber(path, float(ber)),
        "clear_ber": lambda d, path: d.clear_ber(path)}
    CAPABILITIES: ClassVar[dict[str, Any]] = {"bit_errors": _bit_errors}
    TRIAL: ClassVar[dict[str, Any]] = {
        "bit_errors": lambda svc, inv, ber, path=None: BitErrors(path or svc.working_path, float(ber))}

    @classmethod
    def from_args(cls, args: list[str]) -> BitErrors:
        path, ber = args
        return cls(path, float(ber))

    @classmethod
    def baseline(cls, view: BaselineView) -> list[str]:
        out = []
        for s in view.inv.services:
            roadm = view.inv.fiber_path(s.working_path).roadms[0]
            for name, p in roadm_path_states(view, roadm).items():
                if p["ber"]:
                    out.append(f"{roadm}: fiber path {name} has bit errors injected (BER {p['ber']:g})")
        return out

    @property
    def target(self) -> str:
        return f"{self.path}@{self.ber:g}"

    def touches(self, inv: Inventory) -> tuple[list[str], list[str]]:
        return [path_named(inv, self.path).roadms[0]], [self.path]

    def steps(self, inv: Inventory, ctx: dict[str, Any]) -> tuple[list[Step], list[Step]]:
        if not 0 < self.ber < 1:
            raise FaultRefused(f"{self.KIND} refused: BER {self.ber!r} is not between 0 and 1 (exclusive)",
                               ("0 < ber < 1",))
        r = path_named(inv, self.path).roadms[0]
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

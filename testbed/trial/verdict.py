"""A case's verdict: each applicable criterion checked against the measured metrics, with the
trial's number beside the measured one, always (a deviation is reported, never hidden)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .profile import Criterion

PASS, FAIL, OBSERVED, NOT_MEASURED = "pass", "fail", "observed", "not-measured"


@dataclass
class Check:
    id: str
    metric: str
    op: str
    value: Any
    measured: Any
    reference: Any
    reference_text: str
    status: str                 # pass | fail | observed | not-measured
    deviation: str | None       # measured vs the trial's number, when they differ
    emulation: str | None       # what the emulated lab cannot reproduce (shown on an emulated testbed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        crit = "observed" if self.op == "observe" else f"{self.op} {_fmt(self.value)}"
        s = f"{self.id}: {self.metric} = {_fmt(self.measured)} ({crit}): {self.status}"
        if self.deviation:
            s += f"; {self.deviation}"
        return s


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _holds(op: str, measured: Any, value: Any) -> bool:
    if op == ">=":
        return measured >= value
    if op == "<=":
        return measured <= value
    if op == "==":
        return measured == value
    if op == "in":
        return measured in value
    raise ValueError(op)


def _deviation(measured: Any, ref: Any) -> str | None:
    if ref is None or measured is None:
        return None
    if isinstance(ref, (int, float)) and isinstance(measured, (int, float)) and not isinstance(ref, bool):
        if math.isclose(measured, ref, rel_tol=0.05, abs_tol=1e-9):
            return None
        return f"measured {_fmt(float(measured))}, the trial {_fmt(float(ref))}"
    if measured != ref:
        return f"measured {measured!r}, the trial {ref!r}"
    return None


def check(c: Criterion, metrics: dict[str, Any], emulated: bool) -> Check:
    measured = metrics.get(c.metric)
    if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
        status = OBSERVED if c.op == "observe" else NOT_MEASURED
    elif c.op == "observe":
        status = OBSERVED
    else:
        try:
            status = PASS if _holds(c.op, measured, c.value) else FAIL
        except TypeError:
            status = FAIL
    return Check(c.id, c.metric, c.op, c.value, measured, c.reference.value, c.reference.text, status,
                 _deviation(measured, c.reference.value), c.emulation if emulated else None)


def verdict(checks: list[Check]) -> str:
    """pass: every criterion with a threshold holds; fail: one does not or could not be measured."""
    if any(c.status in (FAIL, NOT_MEASURED) for c in checks):
        return FAIL
    return PASS

"""The fidelity table: each of the trial's effects as the emulated lab showed it, beside the trial's
figure and the target the emulated lab is held to (docs/field-trial.md, README "The transport
model").  Read from summary.json alone, so the report, ``dcilab report`` and bench/bench_trial.py
show the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Case = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One effect of the trial: which cases show it, the figure, the trial's, and the target."""

    effect: str
    select: Callable[[Case], bool]
    metric: str
    trial: str
    target: str
    met: Callable[[list[Case]], bool | None]


def _p(c: Case, k: str) -> Any:
    return (c.get("params") or {}).get(k)


def _m(c: Case, k: str) -> Any:
    return (c.get("metrics") or {}).get(k)


def _outcome(c: Case) -> str | None:
    o = c.get("outcome")
    return o.get("status") if isinstance(o, dict) else None


def _all(cases: list[Case], ok: Callable[[Case], bool | None]) -> bool | None:
    """Every case meets it; None when no case measured it."""
    got = [ok(c) for c in cases]
    got = [g for g in got if g is not None]
    return None if not got else all(got)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _between(lo: float, hi: float, metric: str) -> Callable[[Case], bool | None]:
    return lambda c: None if (v := _num(_m(c, metric))) is None else lo <= v <= hi


def _at_most(hi: float, metric: str) -> Callable[[Case], bool | None]:
    return lambda c: None if (v := _num(_m(c, metric))) is None else v <= hi


def _ber(lo: float, hi: float) -> Callable[[Case], bool]:
    return lambda c: c.get("scenario") == "bit_errors" and isinstance(_p(c, "ber"), (int, float)) \
        and lo <= _p(c, "ber") <= hi


ROWS: tuple[Row, ...] = (
    Row("BER 1e-10..1e-9, PP-remote 4:1", _ber(1e-10, 1e-9), "mean_efficiency",
        "0.70 (10.78 -> 15.42 s, BER fluctuating 1e-10..1e-9)", "mean efficiency 0.60..0.85",
        lambda cs: None if not (v := [x for c in cs if (x := _num(_m(c, "mean_efficiency"))) is not None])
        else 0.60 <= sum(v) / len(v) <= 0.85),
    Row("BER 1e-8", _ber(1e-8, 1e-8), "outcome", "interrupted", "interrupted",
        lambda cs: _all(cs, lambda c: None if _outcome(c) is None else _outcome(c) == "interrupted")),
    Row("50 ms 1+1 switchover", lambda c: c.get("scenario") == "switchover", "worst_efficiency",
        "one iteration hit, efficiency 0.44", "exactly 1 iteration affected, worst <= 0.75",
        lambda cs: _all(cs, lambda c: None if _m(c, "affected_iterations") is None else
                        _m(c, "affected_iterations") == 1 and bool(_at_most(0.75, "worst_efficiency")(c)))),
    Row("ASON reroute", lambda c: c.get("scenario") == "reroute", "affected_iterations",
        "one iteration hit, sometimes interrupted", "1 iteration affected, or interrupted",
        lambda cs: _all(cs, lambda c: True if _outcome(c) == "interrupted" else
                        None if _m(c, "affected_iterations") is None else _m(c, "affected_iterations") == 1)),
    Row("800G -> 400G, PP-remote", lambda c: c.get("scenario") == "bandwidth_drop" and _p(c, "placement") == "pp-remote",
        "mean_efficiency", "no impact (10.84 s)", "mean efficiency >= 0.95",
        lambda cs: _all(cs, lambda c: None if (v := _num(_m(c, "mean_efficiency"))) is None else v >= 0.95)),
    Row("800G -> 400G, DP-remote", lambda c: c.get("scenario") == "bandwidth_drop" and _p(c, "placement") == "dp-remote",
        "affected_iterations", "one iteration, efficiency 0.615", "1 iteration affected",
        lambda cs: _all(cs, lambda c: None if _m(c, "affected_iterations") is None else _m(c, "affected_iterations") == 1)),
)


def _figure(c: Case, metric: str) -> str:
    parts = []
    for k in dict.fromkeys((metric, "mean_efficiency", "affected_iterations", "worst_efficiency")):
        v = _m(c, k)
        if k == "outcome" and _outcome(c) and _outcome(c) != "completed":
            v = f"{_outcome(c)} ({(c.get('outcome') or {}).get('cause')})"
        if v is not None:
            parts.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
    out = _outcome(c)
    if out and out != "completed" and metric != "outcome":
        cause = (c.get("outcome") or {}).get("cause")
        parts.append(f"{out}{' (' + cause + ')' if cause else ''}")
    return ", ".join(parts) or str(c.get("verdict"))


def rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per effect: effect, cases (label: figures), trial, target, met (True/False/None)."""
    cases = [c for c in summary.get("cases") or [] if isinstance(c, dict)]
    out = []
    for r in ROWS:
        mine = [c for c in cases if r.select(c)]
        out.append({"effect": r.effect, "trial": r.trial, "target": r.target,
                    "cases": {str(c.get("name", c.get("id"))).split("[", 1)[-1].rstrip("]"): _figure(c, r.metric)
                              for c in mine},
                    "met": r.met(mine) if mine else None})
    return out


def text(summary: dict[str, Any]) -> str:
    """The table as plain text (bench_trial.py prints it)."""
    t = ((summary.get("testbed") or {}).get("transport") or {}).get("text", "not recorded")
    lines = [f"transport: {t}",
             f"{'effect':32} {'met':5} {'target':42} {'trial':50} emulated"]
    for r in rows(summary):
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        emu = "; ".join(f"{k}: {v}" for k, v in r["cases"].items()) or "not run"
        lines.append(f"{r['effect']:32} {met:5} {r['target']:42} {r['trial']:50} {emu}")
    return "\n".join(lines)

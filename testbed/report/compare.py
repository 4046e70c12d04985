"""Repeats and regressions: a nightly run's cases grouped across repeats (mean and spread, as the
trial averaged several runs), and a run compared with an earlier one case by case.

A regression is a statistically meaningful loss, not one noisy iteration.  The sample of a case is
its per-iteration efficiency in the window its criterion judges (after the fault: pre-fault median /
iteration time; a convergence case: baseline median / iteration time, i.e. equivalent compute per
iteration), pooled over its repeats.  A case regressed when all of these hold:

- Welch's one-sided t-test on the log efficiencies says this run's are lower (Holm-adjusted p
  over the run's comparable cases below ``alpha``);
- the median efficiency fell by more than ``min_change`` (smaller changes are within what this
  machine's speed drift produces between jobs; the median also keeps one wild iteration from
  making a regression on its own);
- with repeats on both sides, the fall exceeds ``spread_k`` times the spread of the per-repeat
  medians (iterations of one job are not independent, repeats are).

A fault that hits one iteration (switchover, reroute) hardly moves that median, so a case with probe
figures is also judged on its service disruption, one value per repeat: with at least
``DISRUPTION_MIN_REPEATS`` repeats on both sides, it regressed when Welch on the log disruption says
it rose (Holm over the same family as the efficiencies), its median rose by more than
``min_change``, by more than ``spread_k`` x the spread between repeats, and by more than two probe
frame intervals (what the probe cannot resolve).  A quick run (one repeat) shows the figures only.

Everything here reads summaries tolerantly (``testbed.report.summary``), so a run written by an
older dcilab still compares where its fields allow and says "not comparable" where they do not.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.report.stats import holm, median, spread, welch_less
from testbed.report.summary import case_label, cases, dct, lst, num

DEFAULTS = {"alpha": 0.01, "min_change": 0.10, "spread_k": 3.0}
DISRUPTION_MIN_REPEATS = 3  # Welch on one value per repeat: with fewer, p < 0.01 needs an absurd change
METRICS = ("equivalent_compute", "mean_efficiency", "worst_efficiency", "affected_iterations", "disruption_ms")
_REPEAT = re.compile(r"-run(\d+)(?=\]$)")


def group_key(case: dict[str, Any], index: int = 0) -> str:
    """The case's name without its repeat number: ``test_x[pp-remote-8to1-run2]`` -> ``test_x[pp-remote-8to1]``."""
    name = case_label(case, index)
    return _REPEAT.sub("", name).replace("[]", "")


def repeat_of(case: dict[str, Any]) -> int:
    r = dct(case.get("params")).get("repeat")
    if isinstance(r, int):
        return r
    m = _REPEAT.search(str(case.get("name") or ""))
    return int(m.group(1)) if m else 1


def efficiency_samples(case: dict[str, Any]) -> list[float]:
    """Per-iteration efficiency in the window the case is judged on (empty when not measurable)."""
    m = dct(case.get("metrics"))
    steps = [s for s in lst(m.get("window_steps")) if isinstance(s, int)]
    ref = num(m.get("pre_fault_s")) if steps else num(m.get("baseline_s"))
    if ref is None:
        return []
    out = []
    for p in lst(case.get("series")):
        p = dct(p)
        d, step = num(p.get("duration_s")), p.get("step")
        if d is None or d <= 0:
            continue
        if steps and step not in steps:
            continue
        if not steps and p.get("warmup"):
            continue
        out.append(ref / d)
    return out


@dataclass
class Group:
    """One case across its repeats."""
    key: str
    scenario: str | None
    repeats: list[int] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)  # per metric, one value per repeat
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # spread() of each of values
    samples: list[float] = field(default_factory=list)
    repeat_medians: list[float] = field(default_factory=list)
    probe_interval_ms: float | None = None  # the probe's frame spacing: its disruption resolution

    @property
    def disruption(self) -> list[float]:
        """Service disruption (ms), one per repeat that ran the probe."""
        return [d for d in self.values.get("disruption_ms", []) if d >= 0]


def groups(summary: dict[str, Any]) -> dict[str, Group]:
    """The run's cases grouped across repeats, in first-seen order, with mean and spread per metric."""
    out: dict[str, Group] = {}
    for i, c in enumerate(cases(summary)):
        key = group_key(c, i)
        g = out.setdefault(key, Group(key, c.get("scenario") if isinstance(c.get("scenario"), str) else None))
        g.repeats.append(repeat_of(c))
        v = str(c.get("verdict"))
        g.verdicts[v] = g.verdicts.get(v, 0) + 1
        outcome = str(dct(c.get("metrics")).get("outcome") or c.get("status"))
        g.outcomes[outcome] = g.outcomes.get(outcome, 0) + 1
        m = dct(c.get("metrics"))
        for k in METRICS:
            x = num(m.get(k))
            if x is not None:
                g.values.setdefault(k, []).append(x)
        rate = num(dct(c.get("probe")).get("rate_pps"))
        if rate and rate > 0:
            g.probe_interval_ms = max(g.probe_interval_ms or 0.0, 1000.0 / rate)
        s = efficiency_samples(c)
        g.samples.extend(s)
        if s:
            g.repeat_medians.append(median(s))
    for g in out.values():
        g.metrics = {k: spread(v) for k, v in g.values.items()}
    return out


@dataclass
class CaseChange:
    """One case of this run against the same case of the other run."""
    key: str
    status: str  # regression | improvement | unchanged | not-comparable
    reason: str
    n: tuple[int, int] = (0, 0)
    median: tuple[float | None, float | None] = (None, None)
    change: float | None = None  # relative change of the median efficiency, this run vs the other
    p: float | None = None  # one-sided, raw (lower for a regression, higher for an improvement)
    p_adjusted: float | None = None
    spread_limit: float | None = None
    metrics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    verdicts: tuple[dict[str, int], dict[str, int]] = ({}, {})
    outcomes: tuple[dict[str, int], dict[str, int]] = ({}, {})
    disruption: DisruptionChange | None = None


@dataclass
class DisruptionChange:
    """The case's service disruption (probe, one value per repeat) against the other run's."""
    status: str  # regression | improvement | unchanged | not-tested
    reason: str
    n: tuple[int, int] = (0, 0)
    median: tuple[float | None, float | None] = (None, None)  # ms
    change: float | None = None  # relative change of the median, this run vs the other
    p: float | None = None
    p_adjusted: float | None = None
    floor_ms: float | None = None  # smallest rise counted: min_change, spread and probe resolution


def _disruption(g: Group, o: Group, cfg: dict[str, float]) -> DisruptionChange | None:
    """The disruption figures side by side and, with enough repeats on both sides, the raw p."""
    if not g.disruption or not o.disruption:
        return None
    a, b = median(g.disruption), median(o.disruption)
    d = DisruptionChange("not-tested", "", (len(g.disruption), len(o.disruption)), (a, b))
    d.change = a / b - 1 if b > 0 else None
    if min(d.n) < DISRUPTION_MIN_REPEATS:
        d.reason = (f"service disruption {b:.1f} -> {a:.1f} ms (median, {d.n[1]} -> {d.n[0]} repeats): not "
                    f"tested, it needs {DISRUPTION_MIN_REPEATS} repeats on both sides (the nightly profile)")
        return d
    interval = max(g.probe_interval_ms or 0.0, o.probe_interval_ms or 0.0)
    lo = interval or 0.001  # a disruption of 0 ms is "under one frame interval": log needs a floor
    la, lb = [math.log(max(x, lo)) for x in g.disruption], [math.log(max(x, lo)) for x in o.disruption]
    d.p = welch_less(lb, la) if a > b else welch_less(la, lb)
    s = max(spread(g.disruption)["std"] or 0.0, spread(o.disruption)["std"] or 0.0)
    d.floor_ms = max(cfg["min_change"] * b, cfg["spread_k"] * s, 2 * interval)
    return d


def _judge_disruption(d: DisruptionChange, adj: float, family: int, cfg: dict[str, float]) -> None:
    d.p_adjusted = adj
    a, b = d.median
    assert a is not None and b is not None
    direction = "rose" if a > b else "fell"
    what = (f"service disruption {direction} {b:.1f} -> {a:.1f} ms (median over {d.n[1]} -> {d.n[0]} repeats), "
            f"p = {adj:.3g} (Holm over {family} tests)")
    if adj >= cfg["alpha"]:
        d.status, d.reason = "unchanged", f"{what}: not significant at {cfg['alpha']:g}"
    elif abs(a - b) <= (d.floor_ms or 0.0):
        d.status, d.reason = "unchanged", (f"{what}: significant but within {d.floor_ms:.1f} ms (noise floor, "
                                           f"{cfg['spread_k']:g} x the spread between repeats, probe resolution)")
    else:
        d.status, d.reason = ("regression" if a > b else "improvement"), what


def _settings(summary: dict[str, Any], override: dict[str, Any] | None) -> dict[str, float]:
    prof = dct(summary.get("profile"))
    out = dict(DEFAULTS)
    for k, v in {**dct(prof.get("regression")), **(override or {})}.items():
        if k in out and num(v) is not None:
            out[k] = float(v)
    return out


def compare(current: dict[str, Any], other: dict[str, Any], *, role: str = "previous",
            settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """This run against ``other``: per case the change and its status, and the run's regressions.

    Returns a JSON-ready dict (written to ``comparison.json`` and shown in the report)."""
    cfg = _settings(current, settings)
    mine, theirs = groups(current), groups(other)
    changes: list[CaseChange] = []
    for key, g in mine.items():
        o = theirs.get(key)
        ch = CaseChange(key, "not-comparable", "")
        ch.verdicts = (g.verdicts, o.verdicts if o else {})
        ch.outcomes = (g.outcomes, o.outcomes if o else {})
        if o is None:
            ch.reason = "not in the other run"
            changes.append(ch)
            continue
        ch.metrics = {k: (dct(g.metrics.get(k)).get("mean"), dct(o.metrics.get(k)).get("mean"))
                      for k in METRICS if k in g.metrics or k in o.metrics}
        ch.disruption = _disruption(g, o, cfg)
        ch.n = (len(g.samples), len(o.samples))
        if not g.samples or not o.samples:
            ch.reason = ("no efficiency samples in " + ("this run" if not g.samples else "the other run")
                         + " (no baseline or pre-fault median: see that case's problems)")
            changes.append(ch)
            continue
        a, b = median(g.samples), median(o.samples)
        ch.median = (a, b)
        ch.change = a / b - 1 if b else None
        if len(g.repeat_medians) > 1 and len(o.repeat_medians) > 1:
            s = max(spread(g.repeat_medians)["std"] or 0.0, spread(o.repeat_medians)["std"] or 0.0)
            ch.spread_limit = cfg["spread_k"] * s / b if b else None
        lower = ch.change is not None and ch.change < 0
        la, lb = [math.log(x) for x in g.samples], [math.log(x) for x in o.samples]
        ch.p = welch_less(la, lb) if lower else welch_less(lb, la)
        changes.append(ch)
    tested = [c for c in changes if c.p is not None]
    hits = [c.disruption for c in changes if c.disruption is not None and c.disruption.p is not None]
    family = len(tested) + len(hits)
    adjusted = holm([c.p for c in tested] + [d.p for d in hits])  # type: ignore[misc]
    for d, adj in zip(hits, adjusted[len(tested):], strict=True):
        _judge_disruption(d, adj, family, cfg)
    for c, adj in zip(tested, adjusted[:len(tested)], strict=True):
        c.p_adjusted = adj
        size = abs(c.change or 0.0)
        limit = max(cfg["min_change"], c.spread_limit or 0.0)
        direction = "fell" if (c.change or 0) < 0 else "rose"
        what = (f"median efficiency {direction} {size:.1%} ({c.median[1]:.3f} -> {c.median[0]:.3f}, "
                f"{c.n[1]} -> {c.n[0]} iterations), p = {adj:.3g} (Holm over {family} tests)")
        if adj >= cfg["alpha"]:
            c.status, c.reason = "unchanged", f"{what}: not significant at {cfg['alpha']:g}"
        elif size <= limit:
            c.status, c.reason = "unchanged", f"{what}: significant but within {limit:.1%} (noise floor" + (
                f" / {cfg['spread_k']:g} x the spread between repeats)" if c.spread_limit else ")")
        else:
            c.status = "regression" if (c.change or 0) < 0 else "improvement"
            c.reason = what
        if c.status == "unchanged" and min(c.n) < 4:
            c.reason += "; few iterations: the nightly profile (repeats) can show smaller changes"
    for c in changes:
        _merge_disruption(c)
    return {
        "role": role,
        "run_id": other.get("run_id"),
        "profile": dct(other.get("profile")).get("name") or other.get("profile"),
        "started": other.get("started"),
        "settings": cfg,
        "cases": [_jsonable(c) for c in changes],
        "regressions": [c.key for c in changes if c.status == "regression"],
        "improvements": [c.key for c in changes if c.status == "improvement"],
    }


def _merge_disruption(c: CaseChange) -> None:
    """The case's status is the worse of its efficiency's and its disruption's; the reason says both."""
    d = c.disruption
    if d is None:
        return
    c.reason = f"{c.reason}; {d.reason}" if c.reason else d.reason
    if d.status == "regression" or (d.status == "improvement" and c.status != "regression"):
        c.status = d.status


def _jsonable(c: CaseChange) -> dict[str, Any]:
    d = asdict(c)
    for k in ("n", "median", "verdicts", "outcomes"):
        d[k] = list(d[k])
    d["metrics"] = {k: list(v) for k, v in c.metrics.items()}
    if c.disruption is not None:
        d["disruption"] = {**d["disruption"], "n": list(c.disruption.n), "median": list(c.disruption.median)}
    return d

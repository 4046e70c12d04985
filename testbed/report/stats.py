"""The few statistics the nightly comparison needs, without scipy: Welch's one-sided t-test (with
the Student t distribution from the regularized incomplete beta function) and Holm's step-down
correction across the cases of a run.

Welch rather than a rank test: a quick run gives three iterations per case, and no rank test can
reach p < 0.01 with three against three (the smallest exact Mann-Whitney p is 1/20), while a fault
that doubles the iteration time is plainly significant.  Robustness to a single wild iteration
comes from the comparison's median guard (testbed/report/compare.py), not from the test.
"""

from __future__ import annotations

import math
from statistics import fmean, median, stdev

__all__ = ["fmean", "holm", "median", "spread", "student_t_sf", "welch_less"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbeta) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbeta) * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def welch_less(x: list[float], y: list[float]) -> float:
    """One-sided p-value that the mean of ``x`` is lower than the mean of ``y`` (Welch's t-test,
    unequal variances).  1.0 when a sample has fewer than two values; when both samples have no
    spread at all, 0.0 if the means differ in that direction, else 1.0."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return 1.0
    mx, my = fmean(x), fmean(y)
    vx, vy = stdev(x) ** 2 / m, stdev(y) ** 2 / n
    se2 = vx + vy
    if se2 == 0.0:
        return 0.0 if mx < my else 1.0
    t = (my - mx) / math.sqrt(se2)
    df = se2 ** 2 / ((vx ** 2 / (m - 1) if vx else 0.0) + (vy ** 2 / (n - 1) if vy else 0.0))
    return student_t_sf(t, df)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (same order): testing every case of a nightly run at alpha would
    flag one case in ten by chance on a run of a dozen cases; Holm keeps the run's family-wise
    error rate at alpha without assuming the cases independent."""
    k = len(pvalues)
    order = sorted(range(k), key=pvalues.__getitem__)
    out = [1.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * pvalues[i]))
        out[i] = running
    return out


def spread(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, standard deviation, min and max (what the nightly report prints per case)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(vals), "mean": fmean(vals), "std": stdev(vals) if len(vals) > 1 else None,
            "min": min(vals), "max": max(vals)}

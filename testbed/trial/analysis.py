"""What a case's per-iteration series says: the trial's metrics, computed from the data alone.

Definitions (the same for every scenario, so that cases compare):

* **steady window**: the non-warm-up iterations before the fault; its median is the run's normal
  iteration time (``pre_fault_s``), and its spread gives the **noise band**: median +-
  max(``mad_k`` x 1.4826 x MAD, ``floor`` x median).  MAD (median absolute deviation) rather than
  the standard deviation, so one odd iteration in the window does not widen the band.
* **equivalent compute** (the trial's metric): baseline iteration time / iteration time, with the
  baseline the median of the steady window of the same job over the unimpaired testbed.
* **efficiency** of an iteration: ``pre_fault_s`` / its duration (how much the fault cost against
  the same run's normal iterations; the trial's "one iteration ... about 56 % lower").
* **affected iterations**: from the one during which the fault was applied onwards, those slower
  than the band's upper edge.  Faster ones are not "affected".
* **recovery**: from the fault's application to the end of the last affected iteration, both on
  the controller's clock (the iteration's ``received_ns``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MAD_SIGMA = 1.4826      # MAD -> standard deviation of a normal distribution


@dataclass(frozen=True)
class Point:
    """One iteration of a series (a summary.json row)."""

    step: int
    duration_s: float
    warmup: bool = False
    start_ns: int = 0
    end_ns: int = 0
    received_ns: int = 0
    loss: float | None = None
    tokens_per_s: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Point:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Band:
    center_s: float
    low_s: float
    high_s: float
    mad_s: float

    @property
    def cv(self) -> float:
        """Robust coefficient of variation of the window (1.4826 x MAD / median)."""
        return MAD_SIGMA * self.mad_s / self.center_s if self.center_s > 0 else math.inf

    def to_dict(self) -> dict[str, float]:
        return {**{k: round(v, 6) for k, v in asdict(self).items()}, "cv": round(self.cv, 4)}


def steady(series: Sequence[Point], before_step: int | None = None) -> list[Point]:
    """The steady window: non-warm-up iterations before ``before_step`` (all of them if None)."""
    return [p for p in series if not p.warmup and (before_step is None or p.step < before_step)]


def noise_band(durations: Sequence[float], mad_k: float = 3.0, floor: float = 0.05) -> Band:
    if not durations:
        raise ValueError("no steady iterations to take a baseline from")
    med = statistics.median(durations)
    mad = statistics.median(abs(d - med) for d in durations)
    half = max(mad_k * MAD_SIGMA * mad, floor * med)
    return Band(med, med - half, med + half, mad)


@dataclass
class Impact:
    """What a fault did to the iterations from ``fault_step`` on."""

    pre_fault_s: float
    band: Band
    fault_step: int                      # the iteration during which the fault was applied
    window_steps: list[int]              # iterations while the fault was on
    affected_steps: list[int]
    worst_step: int | None
    worst_s: float | None
    worst_efficiency: float | None       # pre_fault_s / the slowest iteration from fault_step on
    mean_window_s: float | None
    mean_efficiency: float | None        # pre_fault_s / mean iteration while the fault was on
    equivalent_compute: float | None     # baseline_s / mean iteration while the fault was on
    worst_equivalent_compute: float | None
    recovery_s: float | None             # fault applied -> end of the last affected iteration
    noisy_before: list[int]              # steady-window iterations outside the band (for the reader)

    @property
    def affected_iterations(self) -> int:
        return len(self.affected_steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["band"] = self.band.to_dict()
        d["affected_iterations"] = self.affected_iterations
        return d


def impact(series: Sequence[Point], fault_step: int, *, undo_step: int | None = None, baseline_s: float | None = None,
           applied_ns: int | None = None, mad_k: float = 3.0, floor: float = 0.05,
           reference: Sequence[float] | None = None) -> Impact:
    """The fault's effect.  ``fault_step``: the iteration in progress when the fault was applied;
    ``undo_step``: the one in progress when it was undone (None: held to the end of the run);
    ``applied_ns``: the fault's application on the controller's wall clock (for recovery);
    ``reference``: the iteration times the band comes from (a shared job: the windows right
    before and after the fault), the steady window before the fault if None."""
    pre = steady(series, fault_step)
    band = noise_band(list(reference) if reference else [p.duration_s for p in pre], mad_k, floor)
    after = [p for p in series if p.step >= fault_step]
    window = [p for p in after if undo_step is None or p.step <= undo_step]
    affected = [p for p in after if p.duration_s > band.high_s]
    worst = max(after, key=lambda p: p.duration_s, default=None)
    mean_w = statistics.fmean(p.duration_s for p in window) if window else None
    recovery = None
    if applied_ns is not None and affected and affected[-1].received_ns:
        recovery = max(0.0, (affected[-1].received_ns - applied_ns) / 1e9)
    c = band.center_s
    return Impact(
        pre_fault_s=c, band=band, fault_step=fault_step, window_steps=[p.step for p in window],
        affected_steps=[p.step for p in affected],
        worst_step=worst.step if worst else None, worst_s=worst.duration_s if worst else None,
        worst_efficiency=_ratio(c, worst.duration_s) if worst else None,
        mean_window_s=mean_w, mean_efficiency=_ratio(c, mean_w),
        equivalent_compute=_ratio(baseline_s, mean_w),
        worst_equivalent_compute=_ratio(baseline_s, worst.duration_s if worst else None),
        recovery_s=recovery,
        noisy_before=[p.step for p in pre if not band.low_s <= p.duration_s <= band.high_s])


def equivalent_compute(baseline_s: float, durations: Sequence[float]) -> float:
    """The trial's metric for a setting: baseline / the setting's median iteration time."""
    if not durations:
        raise ValueError("no iterations to compare with the baseline")
    return baseline_s / statistics.median(durations)


def per_iteration(series: Sequence[Point], reference_s: float | None) -> list[float | None]:
    """reference / duration for every iteration (efficiency or equivalent compute)."""
    return [_ratio(reference_s, p.duration_s) for p in series]


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or not math.isfinite(num) or not math.isfinite(den):
        return None
    return num / den

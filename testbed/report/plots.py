"""The report's figures (matplotlib, Agg: no display needed on a lab controller or in CI).

Each figure is kept as PNG bytes (embedded in the HTML, small even for long runs) and as SVG
text (written beside it for slides and papers)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from PIL import Image

from testbed.report.summary import dct, lst, num, reference_s, series, windows

matplotlib.use("Agg")
# Text stays text in the SVG files (searchable, a third smaller and faster to write).
matplotlib.rcParams["svg.fonttype"] = "none"
import matplotlib.pyplot as plt  # noqa: E402 - after matplotlib.use, as pyplot picks its backend on import

FAULT_COLOR = "#d62728"
CONDITION_COLOR = "#9467bd"
BAND_COLOR = "#2ca02c"


@dataclass
class Plot:
    """One rendered figure: a file stem, a caption and both encodings."""
    name: str
    caption: str
    png: bytes
    svg: str


def _render(fig: Figure, name: str, caption: str) -> Plot:
    svg, png = io.StringIO(), io.BytesIO()
    fig.savefig(svg, format="svg")
    fig.set_dpi(90)
    fig.canvas.draw()
    # A 64-colour palette keeps line plots sharp at a quarter of the size: a nightly report
    # embeds a figure per case and must stay under 5 MB.
    rgba = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba())
    rgba.convert("RGB").quantize(64).save(png, format="PNG")
    plt.close(fig)
    return Plot(name, caption, png.getvalue(), svg.getvalue())


def _span(w: dict[str, Any], last_step: int) -> tuple[float, float] | None:
    """Iterations covered by a fault: applied_step to undone_step, or to the end of the series."""
    a = w.get("applied_step")
    if not isinstance(a, int):
        return None
    u = w.get("undone_step")
    end = u if isinstance(u, int) else last_step
    return a - 0.5, max(end, a) + 0.5


def case_plot(case: dict[str, Any], name: str, title: str) -> Plot | None:
    """Iteration time per iteration (warm-up, fault window, noise band) above efficiency per
    iteration: the trial's Fig. 7 view of one case.  None when the case has no iterations."""
    pts = series(case)
    if not pts:
        return None
    steps = [p[0] for p in pts]
    dur = [p[1] for p in pts]
    warm = [p[2] for p in pts]
    # Fixed margins, not layout="constrained": that re-solves the layout on every savefig and
    # made a nightly report (hundreds of figures) several times slower.
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=(3, 2))
    fig.subplots_adjust(left=0.09, right=0.8, top=0.93, bottom=0.1, hspace=0.08)
    m = dct(case.get("metrics"))
    band = dct(m.get("band"))
    lo, hi, center = num(band.get("low_s")), num(band.get("high_s")), num(band.get("center_s"))
    if lo is not None and hi is not None:
        ax.axhspan(lo, hi, color=BAND_COLOR, alpha=0.15, label="noise band")
    if center is not None:
        ax.axhline(center, color=BAND_COLOR, lw=0.8, ls="--")
    base = num(m.get("baseline_s"))
    if base is not None:
        ax.axhline(base, color="grey", lw=0.8, ls=":", label="baseline")
    labelled: set[str] = set()
    for w in windows(case):
        span = _span(w, steps[-1])
        if span is None:
            continue
        role = "fault" if w["role"] == "fault" else "condition"
        color = FAULT_COLOR if role == "fault" else CONDITION_COLOR
        label = f"{role} window" if role not in labelled else None
        labelled.add(role)
        for a in (ax, ax2):
            a.axvspan(*span, color=color, alpha=0.15 if role == "fault" else 0.07, label=label if a is ax else None)
    many = len(pts) > 60
    style: dict[str, Any] = {"lw": 0.8} if many else {"lw": 1, "marker": "o", "ms": 3}
    ax.plot(steps, dur, color="#1f77b4", label="iteration time", **style)
    ws = [(s, d) for s, d, w in pts if w]
    if ws:
        ax.scatter([s for s, _ in ws], [d for _, d in ws], color="orange", s=14, zorder=3, label="warm-up")
    ax.set_ylabel("iteration time (s)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ref, ref_name = reference_s(case)
    if ref is not None:
        eff = [ref / d if d > 0 else float("nan") for d in dur]
        ax2.plot(steps, eff, color="#1f77b4", **style)
        ax2.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax2.set_ylabel(f"efficiency\n({ref_name} / time)", fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no reference iteration time in the summary", ha="center", transform=ax2.transAxes)
    if any(warm):
        for a in (ax, ax2):
            a.axvspan(min(s for s, _, w in pts if w) - 0.5, max(s for s, _, w in pts if w) + 0.5,
                      color="orange", alpha=0.08)
    ax2.set_xlabel("iteration")
    return _render(fig, name, f"{title}: iteration time and efficiency per iteration")


def equivalent_compute_plot(cases: list[dict[str, Any]]) -> Plot | None:
    """Equivalent compute of the convergence cases, grouped by ratio, one bar per placement
    (the trial's Fig. 6).  None when no convergence case has a value."""
    rows: dict[tuple[int | float | str, str], float] = {}
    for c in cases:
        if c.get("scenario") != "convergence":
            continue
        ec = num(dct(c.get("metrics")).get("equivalent_compute"))
        p = dct(c.get("params"))
        if ec is None:
            continue
        rows[(p.get("ratio", "?"), str(p.get("placement", "?")))] = ec
    if not rows:
        return None
    ratios = sorted({r for r, _ in rows}, key=lambda r: (not isinstance(r, (int, float)), r if isinstance(r, (int, float)) else 0, str(r)))
    places = sorted({p for _, p in rows})
    fig, ax = plt.subplots(figsize=(7, 3.8))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.14)
    width = 0.8 / len(places)
    for j, place in enumerate(places):
        xs = [i + (j - (len(places) - 1) / 2) * width for i in range(len(ratios))]
        ys = [rows.get((r, place), float("nan")) for r in ratios]
        bars = ax.bar(xs, ys, width, label=place)
        ax.bar_label(bars, labels=[f"{y:.2f}" if math.isfinite(y) else "" for y in ys], fontsize=7)
    ax.set_xticks(range(len(ratios)), [f"{r}:1" for r in ratios])
    ax.set_xlabel("WAN convergence ratio")
    ax.set_ylabel("equivalent compute")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=8)
    ax.set_title("Equivalent compute by convergence ratio and placement (trial Fig. 6)", fontsize=9)
    return _render(fig, "equivalent-compute", "Equivalent compute across the convergence cases")


def probe_plot(case: dict[str, Any], name: str, title: str) -> Plot | None:
    """The probe's service disruptions (test-set view): each gap in ms against the time since
    the fault was applied.  None when the case has no probe events."""
    probe = dct(case.get("probe"))
    events = [dct(e) for e in lst(dct(probe.get("disruptions")).get("events"))]
    events = [e for e in events if num(e.get("ms")) is not None and isinstance(e.get("start_rx_ns"), int)]
    if not events:
        return None
    applied = [w.get("applied_ns") for w in windows(case) if w["role"] == "fault" and isinstance(w.get("applied_ns"), int)]
    t0 = min(applied) if applied else min(e["start_rx_ns"] for e in events)
    xs = [(e["start_rx_ns"] - t0) / 1e9 for e in events]
    ys = [num(e["ms"]) for e in events]
    fig, ax = plt.subplots(figsize=(9, 3))
    fig.subplots_adjust(left=0.09, right=0.8, top=0.88, bottom=0.17)
    ax.vlines(xs, 0, ys, color=FAULT_COLOR, lw=1.5)
    ax.scatter(xs, ys, color=FAULT_COLOR, s=12)
    ax.set_yscale("log")
    thr = num(dct(probe.get("disruptions")).get("threshold_ms"))
    if thr is not None:
        ax.axhline(thr, color="grey", lw=0.8, ls=":", label=f"threshold {thr:g} ms")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("time since fault applied (s)" if applied else "time since first disruption (s)")
    ax.set_ylabel("disruption (ms)")
    ax.set_title(f"{title}: probe service disruptions", fontsize=9)
    return _render(fig, name, f"{title}: probe service disruptions")

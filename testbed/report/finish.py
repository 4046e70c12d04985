"""What happens to a run folder once its suite has ended: compare it with the previous run of its
lineage and with the pinned reference, write ``comparison.json``, render the report, rebuild the
history index.  ``dcilab trial`` calls it; ``dcilab history compare`` calls it on an old run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.report.compare import compare
from testbed.report.history import atomic_write, baselines_for, reports_root, write_index
from testbed.report.summary import ReportError, load_json

COMPARISON = "comparison.json"


@dataclass
class Finished:
    """A finished run folder: its comparisons and regressions, the report and what went wrong."""
    run_dir: Path
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # "role: case key"
    report: Path | None = None
    problems: list[str] = field(default_factory=list)


def compare_run(run_dir: Path, *, with_run: Path | None = None,
                settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The run's comparisons: with ``with_run`` alone when given, else with the previous run of its
    lineage and with the pinned reference.  Written to ``comparison.json``."""
    run_dir = Path(run_dir)
    summary = load_json(run_dir / "summary.json")
    if with_run is not None:
        others = [("chosen", Path(with_run))]
    elif (reports := reports_root(run_dir)) is None:
        return []  # no history to compare with: no comparison.json, no section in the report
    else:  # reports/RUN, or reports/GROUP/NAME for one testbed of a group run
        others = [(role, reports / e.path) for role, e in baselines_for(reports, run_dir)]
    out = []
    for role, d in others:
        other = load_json(d / "summary.json")
        out.append(compare(summary, other, role=role, settings=settings))
    atomic_write(run_dir / COMPARISON, json.dumps({"run_id": summary.get("run_id"), "comparisons": out},
                                                   indent=1) + "\n")
    return out


def finish_run(run_dir: Path, *, compare_runs: bool = True, render: bool = True) -> Finished:
    """Compare, render, index; each step's failure is recorded and the next still runs (a run's
    report matters more than its comparison, and the index more than either's prettiness)."""
    run_dir = Path(run_dir)
    f = Finished(run_dir)
    if not (run_dir / "summary.json").exists():
        f.problems.append(f"{run_dir / 'summary.json'}: not written (the suite ended before the first case)")
        return f
    if compare_runs:
        try:
            f.comparisons = compare_run(run_dir)
        except ReportError as exc:
            f.problems.append(f"comparison: {exc}")
        f.regressions = [f"{c['role']} {c['run_id']}: {k}" for c in f.comparisons for k in c["regressions"]]
    if render:
        try:
            from testbed.report.render import render_run
            f.report = render_run(run_dir).html
        except (ReportError, OSError) as exc:
            f.problems.append(f"report: {exc}")
    try:
        if (reports := reports_root(run_dir)) is not None:
            write_index(reports)
    except (ReportError, OSError) as exc:
        f.problems.append(f"history index: {exc}")
    return f

"""``dcilab report RUN_DIR [--out DIR]``: re-render a run's report from its summary.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="render report.html and plots/ from a run folder's summary.json")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder, e.g. reports/<run-id>")
    p.add_argument("--out", type=Path, default=None, help="write report.html and plots/ here (default: RUN_DIR)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from testbed.report.render import render_run
    from testbed.report.summary import ReportError

    try:
        r = render_run(args.run_dir, args.out)
    except ReportError as exc:
        print(f"dcilab report: {exc}", file=sys.stderr)
        return 1
    print(f"{r.html} ({r.html.stat().st_size // 1024} KiB, {len(r.plot_files)} plot files in {r.html.parent / 'plots'})")
    return 0

"""``dcilab history``: the runs under reports/, the pinned reference per profile, comparisons.

    dcilab history                      list the runs (and rebuild reports/index.json, index.html)
    dcilab history pin RUN_ID           pin a run as its profile's reference (a run id, a folder
                                        under reports/, or GROUP/NAME: one testbed of a group run)
    dcilab history unpin PROFILE        forget a profile's reference
    dcilab history compare RUN_DIR [--with RUN_DIR]
                                        compare a run with its previous run and reference (or one
                                        chosen run), write comparison.json and re-render its report;
                                        exit 3 when a case regressed
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXIT_REGRESSION = 3


def add_parser(sub: Any) -> None:
    p = sub.add_parser("history", help="runs under reports/: list, pin a reference, compare",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--reports-dir", type=Path, default=ROOT / "reports", help="default: reports/ of the checkout")
    acts = p.add_subparsers(dest="action")
    pin = acts.add_parser("pin", help="pin a run as its profile's reference")
    pin.add_argument("run_id")
    unpin = acts.add_parser("unpin", help="forget a profile's pinned reference")
    unpin.add_argument("profile")
    cmp_ = acts.add_parser("compare", help="compare a run with its previous run and pinned reference")
    cmp_.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    cmp_.add_argument("--with", dest="with_run", type=Path, default=None, metavar="RUN_DIR",
                      help="compare with this run only")
    p.set_defaults(func=_history)


def print_comparisons(comparisons: list[dict[str, Any]], out: Any = sys.stdout) -> None:
    if not comparisons:
        print("comparison: no earlier run of this profile and no pinned reference", file=out)
    for c in comparisons:
        regs = c["regressions"]
        print(f"compared with the {c['role']} run {c['run_id']} ({c['profile']}): "
              + (f"{len(regs)} regression(s)" if regs else "no regression")
              + (f", {len(c['improvements'])} improvement(s)" if c["improvements"] else ""), file=out)
        for case in c["cases"]:
            if case["status"] in ("regression", "improvement"):
                print(f"  {case['status'].upper()} {case['key']}: {case['reason']}", file=out)


def _history(a: argparse.Namespace) -> int:
    from testbed.report import history
    from testbed.report.finish import compare_run
    from testbed.report.summary import ReportError

    try:
        if a.action == "pin":
            e = history.pin(a.reports_dir, a.run_id)
            history.write_index(a.reports_dir)
            print(f"pinned {e.path} as the reference of profile {e.profile}")
            return 0
        if a.action == "unpin":
            if not history.unpin(a.reports_dir, a.profile):
                print(f"dcilab history: profile {a.profile!r} has no pinned reference", file=sys.stderr)
                return 1
            history.write_index(a.reports_dir)
            return 0
        if a.action == "compare":
            comps = compare_run(a.run_dir, with_run=a.with_run)
            print_comparisons(comps)
            from testbed.report.render import render_run
            print(f"report: {render_run(a.run_dir).html}")
            if (root := history.reports_root(Path(a.run_dir))) is not None:
                history.write_index(root)
            return EXIT_REGRESSION if any(c["regressions"] for c in comps) else 0
        entries = history.write_index(a.reports_dir)
    except ReportError as exc:
        print(f"dcilab history: {exc}", file=sys.stderr)
        return 1
    refs = set(history.references(a.reports_dir).values())
    width = max([32] + [len(e.path) + 1 for e in entries])      # GROUP/NAME is longer than a run id
    for e in entries:
        regs = sum(len(v) for v in e.regressions.values())
        print(f"{e.path:{width}} {e.testbed!s:14} {e.profile!s:10} {e.status!s:11} "
              f"{' '.join(f'{k}={v}' for k, v in sorted(e.verdicts.items())):24} "
              f"{'REGRESSED ' if regs else ''}{'(reference) ' if e.path in refs else ''}{e.error or ''}")
    print(f"{len(entries)} run(s); index in {a.reports_dir / history.INDEX_HTML}")
    return 0

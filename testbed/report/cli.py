"""``dcilab report RUN_DIR [--out DIR] [--no-pdf] [--bundle [PATH]]``: re-render a run's report
from its summary.json, print it to PDF, and pack the run into one archive to mail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_BUNDLE = Path("<default>")   # --bundle given without a PATH


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="render report.html, report.pdf and plots/ from a run folder's summary.json",
                       description="Render report.html (self-contained), plots/*.png|svg and, when a headless "
                       "Chromium is installed (./setup.sh installs it), report.pdf from RUN_DIR/summary.json.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder, e.g. reports/<run-id>")
    p.add_argument("--out", type=Path, default=None,
                   help="write report.html, report.pdf and plots/ here (default: RUN_DIR)")
    p.add_argument("--no-pdf", action="store_true", help="do not print report.pdf")
    p.add_argument("--bundle", type=Path, nargs="?", const=DEFAULT_BUNDLE, default=None, metavar="PATH",
                   help="write one .tar.gz of the run instead: the report (re-rendered only if report.html is "
                   "missing or older than summary.json or testbed.json), summary.json, iterations.jsonl, faults.jsonl, "
                   "testbed.json, junit.xml and cases/, under a folder named after the run id, with a "
                   "MANIFEST.json (size and SHA-256 of each file, files the run did not write). Default PATH: "
                   "<run-id>.tar.gz beside RUN_DIR (reports/<run-id>.tar.gz); a folder: <run-id>.tar.gz in it. "
                   "Put --bundle after RUN_DIR")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from testbed.report.summary import ReportError

    try:
        return _bundle(args) if args.bundle is not None else _render(args)
    except ReportError as exc:
        print(f"dcilab report: {exc}", file=sys.stderr)
        return 1


def _render(args: argparse.Namespace) -> int:
    from testbed.report.render import render_run

    r = render_run(args.run_dir, args.out, pdf=not args.no_pdf)
    print(f"{r.html} ({r.html.stat().st_size // 1024} KiB, {len(r.plot_files)} plot files in {r.html.parent / 'plots'})")
    if r.pdf:
        print(f"{r.pdf} ({r.pdf.stat().st_size // 1024} KiB)")
    elif not args.no_pdf:
        print(f"dcilab report: {r.no_pdf}", file=sys.stderr)
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from testbed.report.bundle import make_bundle

    b = make_bundle(args.run_dir, None if args.bundle == DEFAULT_BUNDLE else args.bundle,
                    report_dir=args.out, pdf=not args.no_pdf)
    how = "report re-rendered" if b.rendered else "report up to date"
    print(f"{b.path} ({b.size // 1024} KiB, {len(b.members)} files under {b.run_id}/ + MANIFEST.json; {how})")
    if b.missing:
        print("missing (recorded in MANIFEST.json): " + "; ".join(
            f"{m.path}" + (f" ({m.why})" if m.path == "report.pdf" and not args.no_pdf else "") for m in b.missing))
    return 0

"""``python -m testbed.report.grafana [--check] [--root DIR]``: regenerate the Grafana files, or check them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.report.grafana.files import ROOT, render, stale, write


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.report.grafana",
                                 description="Write dcilab's Grafana dashboards and provisioning files.")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a checked-in file differs from the generator's output")
    ap.add_argument("--root", type=Path, default=ROOT, help=f"the folder to write (default: {ROOT})")
    a = ap.parse_args(argv)
    if a.check:
        bad = stale(a.root)
        for rel in bad:
            print(f"stale: {a.root / rel} (run: python -m testbed.report.grafana)", file=sys.stderr)
        if not bad:
            print(f"up to date: {len(render())} files under {a.root}")
        return 1 if bad else 0
    changed = write(a.root)
    for p in changed:
        print(f"wrote {p}")
    if not changed:
        print(f"up to date: {len(render())} files under {a.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

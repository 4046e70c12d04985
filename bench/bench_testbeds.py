"""Two emulated testbeds: one `dcilab trial` after the other vs both at once with one command
(``--inventory A --inventory B``), wall time from the command's start to its exit, lab up and down
included (each trial builds its lab and removes it).  Run it alone on a quiet machine, with no lab
up: both labs share its cores, which is what the figure is about.

    .venv/bin/python bench/bench_testbeds.py [--profile quick] [-k EXPR] [--inventories A,B]

Prints each run's wall time and exit code, the serial total, the parallel wall time and their
ratio, and whether each testbed's verdicts were the same both ways.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DCILAB = [sys.executable, "-m", "testbed.cli"]


def trial(args: list[str], report_dir: Path, a: argparse.Namespace) -> tuple[float, int]:
    cmd = [*DCILAB, "trial", *args, "--profile", a.profile, "--no-compare", "--report-dir", str(report_dir)]
    if a.k:
        cmd += ["-k", a.k]
    t0 = time.monotonic()
    with open(report_dir.parent / f"{report_dir.name}.log", "wb") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    return time.monotonic() - t0, rc


def verdicts(run_dir: Path) -> dict[str, str]:
    try:
        cases = json.loads((run_dir / "summary.json").read_text()).get("cases") or []
    except (OSError, ValueError):
        return {}
    return {str(c.get("id") or c.get("name")): str(c.get("verdict")) for c in cases if isinstance(c, dict)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inventories", default="inventory/emulated.yaml,inventory/emulated-2.yaml")
    p.add_argument("--profile", default="quick")
    p.add_argument("-k", default="convergence and pp-remote and 4",
                   help="pytest -k for both ways (default: one case, to keep the bench short; '' for the profile)")
    a = p.parse_args()
    invs = [s for s in a.inventories.split(",") if s]
    if len(invs) != 2:
        p.error("--inventories takes two files, comma-separated")
    from testbed.inventory import load_inventory
    names = [load_inventory(ROOT / f).name for f in invs]
    with tempfile.TemporaryDirectory(prefix="bench-testbeds-") as tmp:
        out = Path(tmp)
        serial: list[tuple[float, int]] = []
        for f, name in zip(invs, names, strict=True):
            serial.append(trial(["--inventory", f], out / f"serial-{name}", a))
            print(f"serial   {name:<16} {serial[-1][0]:7.1f} s  exit {serial[-1][1]}", flush=True)
        wall, rc = trial([x for f in invs for x in ("--inventory", f)], out / "parallel", a)
        print(f"parallel {'both':<16} {wall:7.1f} s  exit {rc}", flush=True)
        total = sum(s for s, _ in serial)
        print(f"\ntwo testbeds, profile {a.profile}, -k {a.k!r}:")
        print(f"  one after the other  {total:7.1f} s")
        print(f"  in parallel          {wall:7.1f} s   ({total / wall:.2f}x faster)" if wall else "")
        for name in names:
            one, two = verdicts(out / f"serial-{name}"), verdicts(out / "parallel" / name)
            same = "same verdicts" if one == two else f"verdicts differ: serial {one} vs parallel {two}"
            print(f"  {name}: {len(one)} cases serial, {len(two)} parallel, {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

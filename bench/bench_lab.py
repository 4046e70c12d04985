"""How long `lab up` and `lab down` take for inventory/emulated.yaml (targets: < 30 s, < 10 s).

Run as root: .venv/bin/python bench/bench_lab.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from emulator.lab import build
from testbed.emulated_lab import lab_plan
from testbed.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inventory", default=str(ROOT / "inventory" / "emulated.yaml"))
    args = ap.parse_args()
    plan = lab_plan(load_inventory(args.inventory))
    build.down(plan, quiet=True)
    ups, downs = [], []
    try:
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            build.up(plan, log=lambda *_: None)
            ups.append(time.perf_counter() - t0)
            assert build.status(plan).ok, "lab came up unhealthy"
            t0 = time.perf_counter()
            build.down(plan, quiet=True)
            downs.append(time.perf_counter() - t0)
    finally:
        build.down(plan, quiet=True)
    n = len(plan.nodes) + len(plan.fabrics)
    print(f"lab: {plan.name}, {n} namespaces, {args.rounds} rounds")
    print(f"lab up:   median {statistics.median(ups):.2f} s, max {max(ups):.2f} s  (target < 30 s) "
          f"{'PASS' if max(ups) < 30 else 'MISS'}")
    print(f"lab down: median {statistics.median(downs):.2f} s, max {max(downs):.2f} s  (target < 10 s) "
          f"{'PASS' if max(downs) < 10 else 'MISS'}")


if __name__ == "__main__":
    main()

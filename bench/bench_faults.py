"""Time to apply + verify, and to undo (+ verify), each fault kind on the emulated lab: median of
N (default 10).  Needs root; builds the lab if it is not up (and leaves it as it found it).

    .venv/bin/python bench/bench_faults.py [--trials 10] [--inventory inventory/emulated.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.faults import BandwidthDrop, BitErrors, FiberCut, ProtectionSwitch, Testbed, check_baseline  # noqa: E402
from testbed.inventory import load_inventory  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--inventory", type=Path, default=Path(__file__).resolve().parents[1] / "inventory/emulated.yaml")
    a = ap.parse_args()
    inv = load_inventory(a.inventory)
    from emulator.lab import build
    from testbed.emulated_lab import lab_plan
    plan = lab_plan(inv)
    was_up = build.status(plan).ok
    if not was_up:
        build.up(plan, log=lambda *_: None)
    faults = [BandwidthDrop("dci-otn", 400), BitErrors("working", 1e-6), ProtectionSwitch("dci-otn", "force"),
              ProtectionSwitch("dci-otn", "lockout"), FiberCut("working")]
    print(f"fault apply+verify and undo+verify on lab {inv.name}, median of {a.trials} (ms; min..max)")
    try:
        with Testbed(inv) as tb:
            tb.driver("dc-a-otn")          # sessions opened once, outside the timings
            for f in faults:
                ap_ms, un_ms = [], []
                for _ in range(a.trials):
                    cm = f.applied(tb)
                    t0 = time.monotonic()
                    cm.__enter__()
                    t1 = time.monotonic()
                    cm.__exit__(None, None, None)
                    t2 = time.monotonic()
                    ap_ms.append((t1 - t0) * 1e3)
                    un_ms.append((t2 - t1) * 1e3)
                print(f"  {f.KIND + ' ' + f.target:<34} apply+verify {statistics.median(ap_ms):7.1f} "
                      f"({min(ap_ms):.1f}..{max(ap_ms):.1f})   undo+verify {statistics.median(un_ms):7.1f} "
                      f"({min(un_ms):.1f}..{max(un_ms):.1f})")
            left = check_baseline(tb)
            print("baseline after the bench:", "OK" if not left else left)
    finally:
        if not was_up:
            build.down(plan, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark protection switchover on the emulated line (emulator.line): what a receiver sees.

Target (the field trial's 50 ms-class ODU 1+1 switch): the outage a receiver sees on the line is
hold-off + switch time within +-2 ms, over 20 trials. Series: (a) forced switches (expected:
switch_ms), (b) cuts of the working path with SNCP and hold-off 0, (c) the same with hold-off
20 ms (expected: hold_off + switch_ms). A paced sender at 10 kpps carries sequence numbers;
the receiver's largest arrival gap around each trigger, and the frames missing across it
(times the send interval), are both compared with the expectation.

Builds its own namespaces (dclb-swa, dclb-swb: never the lab's dcl-*), runs the line between
them as a subprocess (both through emulator.line.pair.LinePair) and always cleans up, including
leftovers of a crashed previous run.
Needs root. Run: .venv/bin/python bench/bench_switchover.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator.line.control import LineControl
from emulator.line.model import propagation_delay_s
from emulator.line.pair import LinePair, paced_sender, seq_receiver, spawn

PATHS = [{"name": "working", "length_km": 326.5}, {"name": "protection", "length_km": 352}]
PAIR = LinePair("dclb", suffixes=("swa", "swb"), addrs=("198.19.251.1", "198.19.251.2"),
                run_dir="/run/dclb-switchover", name="bench-switchover", paths=PATHS,
                protection={"mode": "sncp", "working": "working", "protection": "protection"})
NS_A, NS_B, IP_B = PAIR.ns_a, PAIR.ns_b, PAIR.ip_b
PORT = 7010
TOLERANCE_MS = 2.0
SPACING_S = 0.25  # between triggers
RESET_AFTER_S = 0.12  # put the line back (outside the measured window)


# --- one series ------------------------------------------------------------------------------------


def run_series(ctl: LineControl, trials: int, pps: float, trigger: Callable[[int], None],
               reset: Callable[[int], None], marks: Callable[[list[dict[str, Any]]], list[float]]
               ) -> tuple[list[float], list[float], list[float], list[dict[str, Any]]]:
    """Stream through ``trials`` triggers; returns per trial (arrival gap ms, loss-derived ms,
    line-reported outage ms) and the events. ``marks`` picks each trial's trigger instant from
    the line's events (exact: the line stamps it)."""
    secs = 0.4 + trials * SPACING_S + 0.2
    count = int(pps * secs)
    # The traffic source and sink are the instruments: SCHED_FIFO keeps them on time (see child_init).
    rx, rconn = spawn(seq_receiver, NS_B, (IP_B, PORT), 0.5, rcvbuf=16 << 20, realtime=True)
    rconn.recv()
    n0 = ctl.events()["next"]
    tx, tconn = spawn(paced_sender, NS_A, (IP_B, PORT), count, pps, 64, realtime=True)
    t0 = time.monotonic() + 0.4
    for k in range(trials):
        for at, fn in ((t0 + k * SPACING_S, trigger), (t0 + k * SPACING_S + RESET_AFTER_S, reset)):
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            fn(k)
    _, interval = tconn.recv()
    seqs, _, arr = rconn.recv()
    tx.join(5)
    rx.join(5)
    events = ctl.events(n0)["events"]
    starts = marks(events)
    if len(starts) != trials:
        raise RuntimeError(f"expected {trials} triggers in the line's events, found {len(starts)}")
    gaps, losses = [], []
    for t in starts:
        # the largest arrival gap that opens around the trigger (frames in flight still land)
        idx = [i for i in range(1, len(arr)) if t - 0.005 <= arr[i - 1] <= t + 0.1]
        if not idx:
            raise RuntimeError(f"no traffic around the trigger at {t:.4f}")
        i = max(idx, key=lambda j: arr[j] - arr[j - 1])
        gaps.append((arr[i] - arr[i - 1]) * 1e3)
        losses.append((seqs[i] - seqs[i - 1] - 1) * interval * 1e3)
    line_ms = [e["outage_ms"] for e in events if e["kind"] == "switch" and e["cause"] in ("force", "signal-fail")]
    return gaps, losses, line_ms, events


def report(label: str, expected: float, gaps: list[float], losses: list[float], line_ms: list[float]) -> bool:
    ok = True
    for name, xs in (("largest arrival gap", gaps), ("loss-derived", losses)):
        errs = [x - expected for x in xs]
        worst = max(errs, key=abs)
        good = all(abs(e) <= TOLERANCE_MS for e in errs)
        ok = ok and good
        print(f"  {name:20s} mean {statistics.fmean(xs):7.2f} ms  err mean {statistics.fmean(errs):+.2f} ms, "
              f"max |err| {abs(worst):.2f} ms ({worst:+.2f}), {sum(abs(e) <= TOLERANCE_MS for e in errs)}/{len(errs)}"
              f" within +-{TOLERANCE_MS:g} ms   {'PASS' if good else 'MISS'}")
    print(f"  line-reported outage_ms: {sorted(set(line_ms))}")
    print(f"{label}: expected {expected:g} ms   {'PASS' if ok else 'MISS'}")
    return ok


def bench_forced(ctl: LineControl, trials: int, pps: float, switch_ms: float) -> bool:
    ctl.configure_protection(mode="sncp", working="working", protection="protection", hold_off_ms=0,
                             switch_ms=switch_ms, revertive=False)
    targets = ("protection", "working")
    gaps, losses, line_ms, _ = run_series(
        ctl, trials, pps,
        trigger=lambda k: ctl.protection_switch("force", targets[k % 2]),
        reset=lambda k: ctl.protection_switch("release"),  # non-revertive: no switch
        marks=lambda evs: [e["start_mono"] for e in evs if e["kind"] == "switch" and e["cause"] == "force"])
    print(f"(a) forced switch, switch_ms {switch_ms:g}, {trials} trials (alternating to protection / working), "
          f"{pps / 1000:g} kpps")
    return report("(a) forced switch", switch_ms, gaps, losses, line_ms)


def bench_cut(ctl: LineControl, trials: int, pps: float, hold_off_ms: float, switch_ms: float, tag: str) -> bool:
    ctl.configure_protection(mode="sncp", working="working", protection="protection", hold_off_ms=hold_off_ms,
                             switch_ms=switch_ms, revertive=False)

    def reset(_k: int) -> None:
        ctl.set_path_up("working", True)
        ctl.set_active_path("working")  # instant, no outage: back for the next trial

    gaps, losses, line_ms, evs = run_series(
        ctl, trials, pps,
        trigger=lambda k: ctl.set_path_up("working", False),
        reset=reset,
        marks=lambda evs: [e["mono"] for e in evs if e["kind"] == "path-down" and e["path"] == "working"])
    switched = sum(1 for e in evs if e["kind"] == "switch" and e["cause"] == "signal-fail" and e["to"] == "protection")
    print(f"({tag}) cut of the working path, SNCP hold-off {hold_off_ms:g} ms + switch {switch_ms:g} ms, "
          f"{trials} trials, {pps / 1000:g} kpps ({switched} automatic switches logged)")
    return report(f"({tag}) working-path cut, hold-off {hold_off_ms:g}", hold_off_ms + switch_ms, gaps, losses,
                  line_ms) and switched == trials


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--pps", type=float, default=10000.0)
    ap.add_argument("--switch-ms", type=float, default=30.0)
    ap.add_argument("--hold-off-ms", type=float, action="append", help="cut series to run (default: 0 and 20)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_switchover: needs root (namespaces, TAPs)", file=sys.stderr)
        return 2
    results: list[bool] = []
    with PAIR as pair:
        ctl = pair.control
        d = {p["name"]: propagation_delay_s(p["length_km"]) * 1e3 for p in PATHS}
        print(f"switchover bench: {os.cpu_count()} CPUs, {NS_A} <-> {NS_B}, one-way working {d['working']:.3f} ms, "
              f"protection {d['protection']:.3f} ms (arrival gaps also include the delay difference, "
              f"{d['protection'] - d['working']:+.3f} ms, and one send interval)")
        results.append(bench_forced(ctl, args.trials, args.pps, args.switch_ms))
        for i, h in enumerate(args.hold_off_ms or [0.0, 20.0]):
            results.append(bench_cut(ctl, args.trials, args.pps, h, args.switch_ms, "bcdefgh"[i]))
        pair.check()
    print(f"summary: {sum(results)}/{len(results)} series within +-{TOLERANCE_MS:g} ms over all trials")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

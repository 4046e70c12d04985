#!/usr/bin/env python3
"""Benchmark the metrics writer (testbed.metrics) against its own VictoriaMetrics; prints figures.

(a) spool and replay: points written at a steady rate while the store is down for --down-s
    (default 60) seconds all arrive once it is back (counted in the store, duplicates too); a second
    writer to another store shares the spool folder during the outage: none of its points reach
    the first store, all reach its own once that is back;
(b) writer throughput to the local store, points per second (batching client; and the replay path);
(c) cost of write() on the caller's thread, p50/p99 in µs, store up and store down (target p99 < 1 ms).

Starts its own VictoriaMetrics on 127.0.0.1 with a free port (never the lab's 8428) and a temp
data dir, and always stops it.  Run: .venv/bin/python bench/bench_metrics.py [--down-s 60]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testbed.metrics import Iteration, MetricsWriter, Spool, replay, to_line
from testbed.metrics.localstore import LocalVictoriaMetrics


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def us(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50_us": round(pct(xs, 50) * 1e6, 1), "p99_us": round(pct(xs, 99) * 1e6, 1),
            "max_us": round(max(xs) * 1e6, 1)}


def rec(run_id: str, k: int, t_ns: int) -> Iteration:
    return Iteration(time_ns=t_ns, step=k, duration_s=0.95 + (k % 7) / 100, tokens_per_s=8192.0 + k, loss=3.0 / (1 + k),
                     warmup=k < 3, run_id=run_id, case="bench", scenario="store-outage", placement="pp-remote",
                     layout="tp1-pp2-dp1", model="tiny", testbed="bench")


def stored(vm: LocalVictoriaMetrics, run_id: str) -> tuple[int, int]:
    """(samples, distinct steps) of dcilab_iteration_step for a run."""
    steps: list[float] = []
    for s in vm.export(f'{{__name__="dcilab_iteration_step",run_id="{run_id}"}}'):
        steps += s["values"]
    return len(steps), len(set(steps))


def wait_drained(w: MetricsWriter, timeout: float) -> float:
    t0 = time.monotonic()
    while w.pending().total and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return time.monotonic() - t0


def bench_spool_replay(vm: LocalVictoriaMetrics, tmp: Path, down_s: float, rate: float, before_s: float,
                       after_s: float) -> dict[str, Any]:
    run_id = "spool-" + uuid.uuid4().hex[:8]
    costs: dict[str, list[float]] = {"up": [], "down": [], "back": []}
    peak_spooled = peak_segments = 0
    period = 1.0 / rate
    n = 0
    t_down = t_back = t_empty = None
    last_ns = 0
    # another store's writer shares the spool folder (a controller with a lab and a production
    # store): its store stays down until A has replayed, and none of its points may reach A
    other = LocalVictoriaMetrics(tmp / "vm-other")
    other_run = "other-" + uuid.uuid4().hex[:8]
    w_other = MetricsWriter(other.url, spool_dir=tmp / "spool-a")
    n_other = 0
    with MetricsWriter(vm.url, spool_dir=tmp / "spool-a") as w:
        start = time.monotonic()
        next_t = start
        total = before_s + down_s + after_s
        while (now := time.monotonic()) - start < total:
            el = now - start
            if t_down is None and el >= before_s:
                vm.stop()
                t_down = time.monotonic()
            if t_back is None and el >= before_s + down_s:
                vm.start()
                t_back = time.monotonic()
            phase = "up" if t_down is None else "down" if t_back is None else "back"
            last_ns = max(time.time_ns(), last_ns + 1_000_000)  # VM keeps ms: keep points >= 1 ms apart
            r = rec(run_id, n, last_ns)
            t0 = time.perf_counter()
            w.write(r)
            costs[phase].append(time.perf_counter() - t0)
            n += 1
            if phase == "down":
                w_other.write(rec(other_run, n_other, last_ns))
                n_other += 1
            if n % max(1, int(rate / 5)) == 0:
                p = w.pending()
                peak_spooled, peak_segments = max(peak_spooled, p.spooled), max(peak_segments, p.segments)
                if t_back is not None and t_empty is None and p.spooled == p.buffered == 0:
                    t_empty = time.monotonic()
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
        drain_s = wait_drained(w, 120)
        if t_empty is None:
            t_empty = time.monotonic()
        t0 = time.monotonic()
    close_s = time.monotonic() - t0
    left = w.pending()
    samples, distinct = stored(vm, run_id)
    in_wrong_store = stored(vm, other_run)[0]
    other.start()                       # the other store comes back: its writer replays its own
    try:
        wait_drained(w_other, 120)
        w_other.close()
        other_samples, other_distinct = stored(other, other_run)
    finally:
        other.stop()
    return {"written": n, "stored": samples, "distinct_steps": distinct, "lost": n - distinct,
            "other_store_written": n_other, "other_store_stored": other_distinct,
            "other_points_in_this_store": in_wrong_store,
            "duplicates": samples - distinct, "down_s": down_s, "rate_per_s": rate,
            "peak_spooled": peak_spooled, "peak_segments": peak_segments,
            "spool_empty_s_after_store_back": round(t_empty - t_back, 2), "drain_wait_after_last_write_s": round(drain_s, 2),
            "close_s": round(close_s, 3), "left_in_spool": left.spooled, "counters": dict(w.counters),
            "write_cost": {k: us(v) for k, v in costs.items() if v},
            "PASS": n == samples == distinct and n_other == other_samples == other_distinct and not in_wrong_store}


def bench_throughput(vm: LocalVictoriaMetrics, tmp: Path, n: int, batch_size: int, prebuilt: bool) -> dict[str, Any]:
    run_id = "tput-" + uuid.uuid4().hex[:8]
    t_base = time.time_ns() - 3600 * 10**9 - batch_size * 10**9 - prebuilt * 10**12
    recs = [rec(run_id, k, t_base + k * 1_000_000) for k in range(n)]
    lines = [to_line(r) for r in recs] if prebuilt else None
    with MetricsWriter(vm.url, spool_dir=tmp / f"spool-b{batch_size}{prebuilt}", batch_size=batch_size,
                       max_in_flight=10 * n) as w:
        t0 = time.perf_counter()
        if lines:
            for line in lines:
                w.write_line(line)
        else:
            for r in recs:
                w.write(r)
        t_submit = time.perf_counter() - t0
        while w.counters["delivered"] + w.counters["spooled"] < n and time.perf_counter() - t0 < 300:
            time.sleep(0.01)
        t_all = time.perf_counter() - t0
    samples, distinct = stored(vm, run_id)
    return {"points": n, "batch_size": batch_size, "input": "write_line(prebuilt)" if prebuilt else "write(Iteration)",
            "submit_s": round(t_submit, 3), "delivered_s": round(t_all, 3),
            "points_per_s": round(n / t_all), "caller_points_per_s": round(n / t_submit),
            "spooled": w.counters["spooled"], "stored": samples, "PASS": samples == distinct == n}


def bench_replay_throughput(vm: LocalVictoriaMetrics, tmp: Path, n: int) -> dict[str, Any]:
    run_id = "replay-" + uuid.uuid4().hex[:8]
    t_base = time.time_ns() - 2 * 3600 * 10**9
    sp = Spool(tmp / "spool-r")
    sp.write(to_line(rec(run_id, k, t_base + k * 1_000_000)).encode() for k in range(n))
    segs = sp.count().segments
    t0 = time.perf_counter()
    res = replay(sp.dir, vm.url)
    dt = time.perf_counter() - t0
    samples, _ = stored(vm, run_id)
    return {"points": n, "segments": segs, "replay_s": round(dt, 3), "points_per_s": round(n / dt),
            "stored": samples, "PASS": res.ok and samples == n}


def bench_write_cost(vm: LocalVictoriaMetrics, tmp: Path, n: int, gap_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    run_id = "cost-" + uuid.uuid4().hex[:8]
    t_base = time.time_ns() - 3 * 3600 * 10**9
    build = []
    for k in range(n):
        r = rec(run_id, k, t_base + k * 1_000_000)
        t0 = time.perf_counter()
        to_line(r)
        build.append(time.perf_counter() - t0)
    out["to_line_only"] = us(build)
    for label, url in (("store_up", vm.url), ("store_down", "http://127.0.0.1:1")):
        costs = []
        with MetricsWriter(url, spool_dir=tmp / f"spool-c-{label}") as w:
            time.sleep(0.7)  # let the first health check run (store_down: writes go straight to the spool)
            for k in range(n):
                r = rec(run_id + label, k, t_base + k * 1_000_000)
                t0 = time.perf_counter()
                w.write(r)
                costs.append(time.perf_counter() - t0)
                if gap_s:
                    time.sleep(gap_s)
        out[label] = us(costs)
    out["PASS_p99_under_1ms"] = all(out[k]["p99_us"] < 1000 for k in ("store_up", "store_down"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--down-s", type=float, default=60.0, help="how long the store is down in (a)")
    ap.add_argument("--rate", type=float, default=20.0, help="points per second written in (a)")
    ap.add_argument("--before-s", type=float, default=5.0)
    ap.add_argument("--after-s", type=float, default=5.0)
    ap.add_argument("--throughput-n", type=int, default=100_000)
    ap.add_argument("--cost-n", type=int, default=5000)
    ap.add_argument("--cost-gap-s", type=float, default=0.001, help="pause between write() calls in (c)")
    ap.add_argument("--only", default="spool,throughput,cost", help="comma list of: spool, throughput, cost")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    parts = set(a.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="dcilab-bench-metrics-"))
    vm = LocalVictoriaMetrics(tmp / "vm")
    results: dict[str, Any] = {}
    try:
        vm.start()
        print(f"VictoriaMetrics {vm.url} (data {vm.data_dir})", flush=True)
        if "cost" in parts:
            results["write_cost"] = r = bench_write_cost(vm, tmp, a.cost_n, a.cost_gap_s)
            print(f"(c) write() cost on the caller's thread: to_line only {r['to_line_only']}; store up "
                  f"{r['store_up']}; store down {r['store_down']}; p99 < 1 ms: "
                  f"{'PASS' if r['PASS_p99_under_1ms'] else 'FAIL'}", flush=True)
        if "throughput" in parts:
            for bs, prebuilt in ((1000, False), (5000, False), (5000, True)):
                results[f"throughput_b{bs}{'_lines' if prebuilt else ''}"] = r = bench_throughput(
                    vm, tmp, a.throughput_n, bs, prebuilt)
                print(f"(b) writer throughput, {r['input']}, batch_size={bs}: {r['points_per_s']} points/s "
                      f"({r['points']} points delivered in {r['delivered_s']} s; caller submitted at "
                      f"{r['caller_points_per_s']}/s; stored {r['stored']}) {'PASS' if r['PASS'] else 'FAIL'}",
                      flush=True)
            results["replay_throughput"] = r = bench_replay_throughput(vm, tmp, a.throughput_n)
            print(f"(b) replay throughput (spool -> store, synchronous): {r['points_per_s']} points/s "
                  f"({r['points']} points in {r['segments']} segments, {r['replay_s']} s; stored {r['stored']}) "
                  f"{'PASS' if r['PASS'] else 'FAIL'}", flush=True)
        if "spool" in parts:
            print(f"(a) spool and replay: {a.rate}/s for {a.before_s}+{a.down_s}+{a.after_s} s, store down "
                  f"{a.down_s} s ...", flush=True)
            results["spool_replay"] = r = bench_spool_replay(vm, tmp, a.down_s, a.rate, a.before_s, a.after_s)
            print(f"(a) written {r['written']}, in store {r['stored']} (lost {r['lost']}, duplicates "
                  f"{r['duplicates']}); peak spool {r['peak_spooled']} points in {r['peak_segments']} segments; "
                  f"spool empty {r['spool_empty_s_after_store_back']} s after the store came back; close "
                  f"{r['close_s']} s; write() cost {r['write_cost']}; another store's writer on the same spool: "
                  f"{r['other_store_written']} written, {r['other_store_stored']} in its store once back, "
                  f"{r['other_points_in_this_store']} in this one; {'PASS' if r['PASS'] else 'FAIL'}", flush=True)
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(results, indent=2))
    ok = all(v.get("PASS", v.get("PASS_p99_under_1ms", True)) for v in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

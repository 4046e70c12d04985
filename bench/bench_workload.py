"""Benchmarks for workload/ on loopback (gloo, CPU).

1. iteration time of a model (default ``tiny``) for ``local``, ``pp-remote`` and ``dp-remote``
   with the same TP x PP x DP layout; on loopback the placements only change which ranks are
   labelled with which site (no WAN here: the emulated-lab numbers come through the launcher);
2. timing overhead per iteration: barrier + sync + barrier + all_reduce(MAX) + JSON emit with an
   empty step, p50/p99 (target < 1 ms at p99).

    .venv/bin/python bench/bench_workload.py [--model tiny] [--nproc 4] [--pp 2] [--dp 2]
        [--steps 8] [--warmup 2] [--overhead-iters 500] [--overhead-nproc 2] [--skip-train]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(nproc, module_args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc-per-node", str(nproc), *module_args]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))]


def bench_train(a):
    sites = ",".join(["dc-a"] * (a.nproc // 2) + ["dc-b"] * (a.nproc - a.nproc // 2))
    rows = []
    for placement in ("local", "pp-remote", "dp-remote"):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "it.jsonl"
            args = ["-m", "workload.train", "--model", a.model, "--tp", "1", "--pp", str(a.pp), "--dp", str(a.dp),
                    "--placement", placement, "--steps", str(a.steps), "--warmup", str(a.warmup),
                    "--log-format", "none", "--threads", "1", "--out", str(out)]
            if placement != "local":
                args += ["--sites", sites]
            t0 = time.monotonic()
            p = subprocess.run(_torchrun(a.nproc, args), cwd=ROOT, env=_env(), capture_output=True, text=True)
            wall = time.monotonic() - t0
            if p.returncode != 0:
                print(f"{placement}: FAILED rc={p.returncode}\n{p.stderr[-2000:]}")
                continue
            recs = [json.loads(x) for x in out.read_text().splitlines()]
        steady = [r["duration_s"] for r in recs if not r["warmup"]]
        rows.append((placement, recs[0]["layout"], statistics.median(steady), min(steady), max(steady),
                     statistics.median([r["tokens_per_s"] for r in recs if not r["warmup"]]),
                     recs[0]["loss"], recs[-1]["loss"], wall))
    print(f"\n== iteration time, model={a.model}, {a.nproc} ranks on loopback (gloo, 1 thread/rank), "
          f"{a.steps} steps ({a.warmup} warm-up excluded), cpus={os.cpu_count()}")
    print(f"{'placement':<10} {'layout':<12} {'p50 s':>7} {'min s':>7} {'max s':>7} {'tok/s':>8} "
          f"{'loss0':>7} {'lossN':>7} {'wall s':>7}")
    for r in rows:
        print(f"{r[0]:<10} {r[1]:<12} {r[2]:7.3f} {r[3]:7.3f} {r[4]:7.3f} {r[5]:8.0f} {r[6]:7.3f} {r[7]:7.3f} {r[8]:7.1f}")


def overhead_worker(iters: int):
    """Runs under torchrun: an empty step timed by IterationTimer; rank 0 reports percentiles."""
    import torch.distributed as dist
    from workload.timing import IterationTimer
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    with tempfile.TemporaryDirectory() as d, open(os.devnull, "w") as devnull:
        t = IterationTimer(rank=rank, layout="tp1-pp1-dp%d" % dist.get_world_size(), placement="local",
                           model="none", tokens_per_step=1, warmup=10, out_path=os.path.join(d, "x.jsonl"),
                           stream=devnull)
        costs, record_only = [], []
        for s in range(iters):
            a = time.perf_counter_ns()
            with t.iteration(s) as it:
                it.loss = 1.0 if rank == 0 else None
            b = time.perf_counter_ns()
            costs.append((b - a) / 1e6)
            # the reduce + emit alone (the part that the recorded duration does not contain)
            c = time.perf_counter_ns()
            t.record(s, 0, 0, 0.0, 1.0)
            record_only.append((time.perf_counter_ns() - c) / 1e6)
        t.close()
    if rank == 0:
        c, r = costs[10:], record_only[10:]
        print(json.dumps({"world": dist.get_world_size(), "iters": len(c),
                          "total_ms_p50": pct(c, 50), "total_ms_p99": pct(c, 99), "total_ms_max": max(c),
                          "reduce_emit_ms_p50": pct(r, 50), "reduce_emit_ms_p99": pct(r, 99)}), flush=True)
    dist.destroy_process_group()


def bench_overhead(a):
    p = subprocess.run(_torchrun(a.overhead_nproc, [str(Path(__file__).resolve()), "--overhead-worker",
                                                     str(a.overhead_iters)]),
                       cwd=ROOT, env=_env(), capture_output=True, text=True)
    if p.returncode != 0:
        print(f"overhead: FAILED rc={p.returncode}\n{p.stderr[-2000:]}")
        return
    res = json.loads([x for x in p.stdout.splitlines() if x.startswith("{")][-1])
    print(f"\n== timing overhead per iteration (empty step), {res['world']} ranks, {res['iters']} iterations")
    print(f"barrier+sync+barrier+all_reduce(MAX)+JSON emit: p50 {res['total_ms_p50']:.3f} ms, "
          f"p99 {res['total_ms_p99']:.3f} ms, max {res['total_ms_max']:.3f} ms "
          f"(target p99 < 1 ms: {'OK' if res['total_ms_p99'] < 1.0 else 'MISSED'})")
    print(f"all_reduce(MAX)+JSON emit alone: p50 {res['reduce_emit_ms_p50']:.3f} ms, "
          f"p99 {res['reduce_emit_ms_p99']:.3f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--nproc", type=int, default=4)
    ap.add_argument("--pp", type=int, default=2)
    ap.add_argument("--dp", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--overhead-iters", type=int, default=500)
    ap.add_argument("--overhead-nproc", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--overhead-worker", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.overhead_worker is not None:
        sys.path.insert(0, str(ROOT))
        overhead_worker(a.overhead_worker)
        return
    bench_overhead(a)
    if not a.skip_train:
        bench_train(a)


if __name__ == "__main__":
    main()

"""Benchmarks for workload/ on loopback (gloo, CPU).

1. iteration time of a model (default ``tiny``) for ``local``, ``pp-remote`` and ``dp-remote``
   with the same TP x PP x DP layout; on loopback the placements only change which ranks are
   labelled with which site (no WAN here: the emulated-lab numbers come through the launcher);
2. timing overhead per iteration: what ``workload.timing.IterationTimer`` itself adds around an
   empty step (barrier + sync + all_reduce(MAX) + JSON emit), p50/p99/max (target p99 < 1 ms),
   next to the floors measured in the same processes (bare gloo collectives, a raw TCP round
   trip, a CPU spin showing scheduler noise) so that a missed target can be explained.

    .venv/bin/python bench/bench_workload.py [--model tiny] [--nproc 4] [--pp 2] [--dp 2]
        [--steps 8] [--warmup 2] [--overhead-iters 2000] [--overhead-warmup 10] [--overhead-nproc 2]
        [--skip-train]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
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
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


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
            p = subprocess.run(_torchrun(a.nproc, args), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           check=False)
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


def _stats(xs_us):
    """p50, p99, max of microsecond samples, in ms."""
    return [round(pct(xs_us, 50) / 1e3, 4), round(pct(xs_us, 99) / 1e3, 4), round(max(xs_us) / 1e3, 4)]


def _measure(fn, n):
    xs = []
    for _ in range(n):
        a = time.perf_counter_ns()
        fn()
        xs.append((time.perf_counter_ns() - a) / 1e3)
    return xs


def overhead_worker(iters: int, warmup: int):
    """Runs under torchrun (2 ranks): the real IterationTimer around an empty step; rank 0 reports.

    Measured on rank 0, per iteration: the whole ``with timer.iteration(s)`` minus the (empty) body,
    split into enter (barrier + sync + clocks) and exit (sync + clock + all_reduce + emit).  The timer
    writes its JSON lines where training does: ``--out`` (a file) and stdout (here a pipe to the
    bench, as torchrun's stdout is a pipe to the launcher).  Then, in the same processes, the floors:
    the timer with no process group (its Python part), bare gloo collectives, a raw TCP round trip
    between the two ranks and a fixed CPU spin (how often the scheduler preempts a busy thread here).
    """
    import socket

    import torch
    import torch.distributed as dist

    from workload.timing import IterationTimer

    rank = int(os.environ["RANK"])
    out_dir = tempfile.mkdtemp(prefix="bench-timing-")
    res = {}
    if rank == 0:  # the Python part alone: same timer, no process group yet (rank 1 waits in the rendezvous)
        solo = IterationTimer(rank=0, layout="tp1-pp1-dp1", placement="local", model="none", tokens_per_step=1,
                              warmup=warmup, out_path=os.path.join(out_dir, "solo.jsonl"),
                              extra={"run_id": "solo"})
        xs = []
        for s in range(warmup + iters):
            a = time.perf_counter_ns()
            with solo.iteration(s) as it:
                it.loss = 1.0
            xs.append((time.perf_counter_ns() - a) / 1e3)
        solo.close()
        res["python_part"] = _stats(xs[warmup:])

    dist.init_process_group("gloo")
    world = dist.get_world_size()
    out = os.path.join(out_dir, "it.jsonl")
    timer = IterationTimer(rank=rank, layout=f"tp1-pp1-dp{world}", placement="local", model="none",
                           tokens_per_step=1, warmup=warmup, out_path=out, extra={"run_id": "b"})
    enter, exit_, whole = [], [], []
    for s in range(warmup + iters):
        a = time.perf_counter_ns()
        with timer.iteration(s) as it:
            b = time.perf_counter_ns()
            it.loss = 1.0 if rank == world - 1 else None  # the last pipeline stage has the loss
            c = time.perf_counter_ns()
        d = time.perf_counter_ns()
        enter.append((b - a) / 1e3)
        exit_.append((d - c) / 1e3)
        whole.append((d - a - (c - b)) / 1e3)
    timer.close()

    buf = torch.zeros(2, dtype=torch.float64)
    res["gloo_barrier"] = _stats(_measure(dist.barrier, iters))
    res["gloo_all_reduce"] = _stats(_measure(lambda: dist.all_reduce(buf, op=dist.ReduceOp.MAX), iters))
    res["gloo_barrier_all_reduce"] = _stats(_measure(
        lambda: (dist.barrier(), dist.all_reduce(buf, op=dist.ReduceOp.MAX)), iters))
    store = dist.distributed_c10d._get_default_store()
    if rank == 0:
        ls = socket.create_server(("127.0.0.1", 0))
        store.set("bench-tcp-port", str(ls.getsockname()[1]))
        sock, _ = ls.accept()
        ls.close()
    else:
        sock = socket.create_connection(("127.0.0.1", int(store.get("bench-tcp-port"))))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rank == 0:
        res["tcp_rtt"] = _stats(_measure(lambda: (sock.sendall(b"x"), sock.recv(1)), iters))
    else:
        _measure(lambda: (sock.recv(1), sock.sendall(b"x")), iters)
    sock.close()

    def spin():
        end = time.perf_counter_ns() + 200_000
        while time.perf_counter_ns() < end:
            pass
    res["spin_200us"] = _stats(_measure(spin, iters))
    dist.barrier()

    if rank == 0:
        recs = [json.loads(x) for x in Path(out).read_text().splitlines()]
        problems = []
        if [r["step"] for r in recs] != list(range(warmup + iters)):
            problems.append("steps are not 0..N-1, once each")
        if [r["warmup"] for r in recs] != [s < warmup for s in range(warmup + iters)]:
            problems.append("warm-up marks wrong")
        if any(r["loss"] != 1.0 for r in recs):
            problems.append("loss not reduced to rank 0")
        if any(b["start_ns"] < a["end_ns"] for a, b in itertools.pairwise(recs)):
            problems.append("an iteration starts before the previous one ended")
        res.update(world=world, iters=iters, warmup=warmup, records=len(recs), record_problems=problems,
                   whole=_stats(whole[warmup:]), enter=_stats(enter[warmup:]), exit=_stats(exit_[warmup:]))
        print("BENCH-RESULT " + json.dumps(res), flush=True)
    dist.destroy_process_group()
    shutil.rmtree(out_dir, ignore_errors=True)


def bench_overhead(a):
    cmd = _torchrun(a.overhead_nproc, [str(Path(__file__).resolve()), "--overhead-worker", str(a.overhead_iters),
                                       "--warmup", str(a.overhead_warmup)])
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    if p.returncode != 0:
        print(f"overhead: FAILED rc={p.returncode}\n{p.stderr[-2000:]}")
        return
    res = json.loads([x for x in p.stdout.splitlines() if x.startswith("BENCH-RESULT ")][-1].split(" ", 1)[1])
    lines = sum(1 for x in p.stdout.splitlines() if x.startswith('{"step":') and '"run_id":"b"' in x)
    print(f"\n== timing overhead per iteration: workload.timing.IterationTimer around an empty step, "
          f"{res['world']} ranks (gloo, loopback), {res['iters']} iterations after {res['warmup']} warm-up; "
          f"cpus={os.cpu_count()}, load average {load:.2f} at start")
    rows = [("IterationTimer, whole iteration", "whole"),
            ("  enter: barrier + sync + clocks", "enter"),
            ("  exit: sync + clock + all_reduce(MAX) + emit", "exit"),
            ("its Python part alone (no process group)", "python_part"),
            ("floor: gloo barrier", "gloo_barrier"),
            ("floor: gloo all_reduce(MAX, 2 x f64)", "gloo_all_reduce"),
            ("floor: gloo barrier + all_reduce, no Python", "gloo_barrier_all_reduce"),
            ("floor: TCP round trip between the ranks", "tcp_rtt"),
            ("noise: 200 us CPU spin", "spin_200us")]
    print(f"{'':<46} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, key in rows:
        p50, p99, mx = res[key]
        print(f"{label:<46} {p50:8.3f} {p99:8.3f} {mx:8.3f}")
    ok = res["whole"][1] < 1.0
    print(f"target p99 < 1 ms: {'OK' if ok else 'MISSED'}; records: {res['records']} in --out, {lines} on stdout, "
          f"{'checked OK' if not res['record_problems'] else 'PROBLEMS: ' + '; '.join(res['record_problems'])}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--nproc", type=int, default=4)
    ap.add_argument("--pp", type=int, default=2)
    ap.add_argument("--dp", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--overhead-iters", type=int, default=2000)
    ap.add_argument("--overhead-warmup", type=int, default=10)
    ap.add_argument("--overhead-nproc", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--overhead-worker", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.overhead_worker is not None:
        sys.path.insert(0, str(ROOT))
        overhead_worker(a.overhead_worker, a.warmup)
        return
    bench_overhead(a)
    if not a.skip_train:
        bench_train(a)


if __name__ == "__main__":
    main()

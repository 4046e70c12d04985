"""The test model's iteration time for local, pp-remote and dp-remote on the emulated lab, launched
through testbed/jobs (4 nodes, 1 rank each, gloo over the fabric and the emulated line), plus the
launcher's own costs: start -> first iteration, and stop time.  Needs `dcilab lab up`.

    .venv/bin/python bench/bench_jobs.py [--model test] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.inventory import load_inventory  # noqa: E402
from testbed.jobs import TrainingJob  # noqa: E402

NODES = ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="test")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--inventory", default=str(Path(__file__).resolve().parents[1] / "inventory" / "emulated.yaml"))
    a = ap.parse_args()
    inv = load_inventory(a.inventory)
    print(f"{'placement':10} {'p50 s':>8} {'p90 s':>8} {'first-iter s':>12} {'stop s':>7}  status")
    for placement in ("local", "pp-remote", "dp-remote"):
        sites = "dc-a,dc-a,dc-a,dc-a" if placement == "local" else "dc-a,dc-a,dc-b,dc-b"
        with tempfile.TemporaryDirectory() as d:
            t0 = time.monotonic()
            job = TrainingJob(inv, NODES, ["--model", a.model, "--pp", "2", "--dp", "2", "--threads", "1",
                                           "--placement", placement, "--sites", sites, "--steps", str(a.steps),
                                           "--warmup", "2"],
                              f"bench-{placement}-{uuid.uuid4().hex[:6]}", report_dir=d, metrics=None,
                              pg_timeout_s=60)
            with job:
                first = job.wait_for_iteration(0, 120)
                t_first = time.monotonic() - t0
                out = job.wait(300)
            d_ = sorted(e.duration_s for e in job.events if not e.warmup)
            p50 = statistics.median(d_) if d_ else float("nan")
            p90 = d_[int(0.9 * (len(d_) - 1))] if d_ else float("nan")
            print(f"{placement:10} {p50:8.3f} {p90:8.3f} {t_first:12.1f} {out.stop_s:7.1f}  {out.status} "
                  f"({len(job.events)} iterations, first {first.duration_s:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The test model's iteration time for local, pp-remote and dp-remote on the emulated lab, launched
through testbed/jobs (4 nodes, 1 rank each, gloo over the fabric and the emulated line), plus the
launcher's own costs: start -> first iteration, and stop time.  Needs `dcilab lab up`.
``--launchers ssh,slurm`` runs each placement through both launchers, alternating which goes
first, and prints what Slurm adds to a job's start and stop (the emulated lab's real Slurm).

    .venv/bin/python bench/bench_jobs.py [--model test] [--steps 12] [--launchers ssh,slurm] [--rounds 3]
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
from testbed.jobs.slurm import job_class  # noqa: E402

NODES = ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]


def slurm_inventory(path: str, out: Path):  # type: ignore[no-untyped-def]
    """The same lab with jobs through its Slurm (a scheduler: block; the lab plan does not change)."""
    import os

    import yaml
    src = Path(path)
    data = yaml.safe_load(src.read_text())
    for d in data["devices"]:
        if d.get("python"):
            d["python"] = os.path.normpath(src.parent / d["python"])
    data["scheduler"] = {"kind": "slurm", "partition": "dci"}
    f = out / "emulated-slurm.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_inventory(f)


def one(inv, placement: str, a: argparse.Namespace) -> tuple[float, float, float, float, str]:  # type: ignore[no-untyped-def]
    sites = "dc-a,dc-a,dc-a,dc-a" if placement == "local" else "dc-a,dc-a,dc-b,dc-b"
    with tempfile.TemporaryDirectory() as d:
        t0 = time.monotonic()
        job = job_class(inv)(inv, NODES, ["--model", a.model, "--pp", "2", "--dp", "2", "--threads", "1",
                                          "--placement", placement, "--sites", sites, "--steps", str(a.steps),
                                          "--warmup", "2"],
                             f"bench-{placement}-{uuid.uuid4().hex[:6]}", report_dir=d, metrics=None, pg_timeout_s=60)
        with job:
            first = job.wait_for_iteration(0, 120)
            t_first = time.monotonic() - t0
            out = job.wait(300)
        d_ = sorted(e.duration_s for e in job.events if not e.warmup)
        p50 = statistics.median(d_) if d_ else float("nan")
        p90 = d_[int(0.9 * (len(d_) - 1))] if d_ else float("nan")
        return p50, p90, t_first, out.stop_s, (f"{out.status} ({len(job.events)} iterations, first "
                                              f"{first.duration_s:.3f} s)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="test")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--inventory", default=str(Path(__file__).resolve().parents[1] / "inventory" / "emulated.yaml"))
    ap.add_argument("--launchers", default="ssh", help="ssh, slurm or ssh,slurm")
    ap.add_argument("--rounds", type=int, default=1, help="times each placement runs through each launcher")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    invs = {"ssh": load_inventory(a.inventory)}
    if "slurm" in a.launchers:
        invs["slurm"] = slurm_inventory(a.inventory, tmp)
    names = [x for x in a.launchers.split(",") if x in invs]
    firsts: dict[str, list[float]] = {n: [] for n in names}
    stops: dict[str, list[float]] = {n: [] for n in names}
    print(f"{'launcher':8} {'placement':10} {'p50 s':>8} {'p90 s':>8} {'first-iter s':>12} {'stop s':>7}  status")
    for r in range(a.rounds):
        for placement in ("local", "pp-remote", "dp-remote"):
            for n in names if r % 2 == 0 else names[::-1]:     # alternate who goes first: the machine drifts
                p50, p90, t_first, stop_s, status = one(invs[n], placement, a)
                firsts[n].append(t_first)
                stops[n].append(stop_s)
                print(f"{n:8} {placement:10} {p50:8.3f} {p90:8.3f} {t_first:12.1f} {stop_s:7.1f}  {status}", flush=True)
    if len(names) == 2:
        f = {n: statistics.median(v) for n, v in firsts.items()}
        st = {n: statistics.median(v) for n, v in stops.items()}
        print(f"\nstart -> first iteration, median of {len(firsts['ssh'])} jobs each: ssh {f['ssh']:.2f} s, slurm "
              f"{f['slurm']:.2f} s: Slurm adds {f['slurm'] - f['ssh']:+.2f} s per job start; stop: ssh "
              f"{st['ssh']:.2f} s, slurm {st['slurm']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

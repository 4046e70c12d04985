"""Benchmarks of the field-trial suite on the emulated lab (needs root; run nothing else meanwhile).

1. wall time of the whole quick profile (target: under 15 minutes on a 2-core machine), from a run
   made here or from an existing report (``--report DIR``);
2. how it grows with the iterations per case: a subset of cases (``--growth-k``) with the quick
   profile's windows x1 and x2, wall time per case, per iteration and the fixed cost per job;
3. the fidelity table: each scenario's measured figure on the emulated lab beside the trial's.

    .venv/bin/python bench/bench_trial.py [--report reports/RUN] [--skip-growth] [--growth-k EXPR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_trial(report: Path, profile: str, keyword: str | None = None, profiles_file: Path | None = None) -> float:
    cmd = [sys.executable, "-m", "testbed.cli", "trial", "--profile", profile, "--report-dir", str(report)]
    if keyword:
        cmd += ["-k", keyword]
    if profiles_file:
        cmd += ["--profiles-file", str(profiles_file)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    took = time.monotonic() - t0
    if not (report / "summary.json").exists():
        sys.exit(f"no summary from {' '.join(cmd)} (exit {r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    return took


def _t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def iterations(summary: dict) -> int:
    n = sum(len(c.get("series") or []) for c in summary["cases"])
    return n + sum(len(b.get("series") or []) for b in summary["baselines"].values())


def jobs(summary: dict) -> int:
    return sum(1 for c in summary["cases"] if c.get("series")) + len(summary["baselines"])


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "-" if v is None else str(v)


FIDELITY = [  # scenario, metric, what the trial reports
    ("convergence", "equivalent_compute", {"pp-remote-16": "0.95 (>= 95 %)", "*": "Fig. 6, no number in the text"}),
    ("bandwidth_drop", "mean_efficiency", {"pp-remote": "~1.0 (10.84 s, no impact)", "dp-remote": "-"}),
    ("bandwidth_drop", "affected_iterations", {"pp-remote": "0", "dp-remote": "1"}),
    ("bandwidth_drop", "worst_efficiency", {"pp-remote": "-", "dp-remote": "0.615 (-38.5 %)"}),
    ("bit_errors", "mean_efficiency", {"1e-10": "0.70 (1e-10..1e-9: 43 % slower)", "1e-09": "0.70 (43 % slower)",
                                       "1e-08": "interrupted"}),
    ("bit_errors", "outcome", {"1e-10": "completed", "1e-09": "completed", "1e-08": "interrupted"}),
    ("switchover", "disruption_ms", {"*": "< 50"}),
    ("switchover", "affected_iterations", {"*": "1"}),
    ("switchover", "worst_efficiency", {"*": "0.44 (about 56 % lower)"}),
    ("reroute", "disruption_ms", {"*": "not given"}),
    ("reroute", "affected_iterations", {"*": "1"}),
    ("reroute", "outcome", {"*": "completed (sometimes interrupted)"}),
]


def fidelity(summary: dict) -> None:
    print("\n== fidelity: the emulated lab beside the trial")
    print(f"{'scenario':15} {'case':28} {'metric':22} {'emulated':>10}   trial")
    for scen, metric, ref in FIDELITY:
        for c in summary["cases"]:
            if c["scenario"] != scen or "metrics" not in c:
                continue
            p = c["params"]
            key = {"convergence": f"{p.get('placement')}-{p.get('ratio')}", "bandwidth_drop": p.get("placement"),
                   "bit_errors": f"{p.get('ber', 0):.0e}"}.get(scen, "*")
            trial = ref.get(key, ref.get(p.get("placement", ""), ref.get("*", "-")))
            label = c["name"].split("[", 1)[-1].rstrip("]")
            print(f"{scen:15} {label:28} {metric:22} {fmt(c['metrics'].get(metric)):>10}   {trial}")


def growth(keyword: str) -> None:
    base = (ROOT / "cases" / "profiles.yaml").read_text()
    extra = ("  bench-x1:\n    extends: quick\n"
             "  bench-x2:\n    extends: quick\n    steady: 8\n    baseline_steady: 10\n    hold: 6\n    after: 6\n")
    text = base.replace("\ncriteria:\n", "\n" + extra + "\ncriteria:\n", 1)
    with tempfile.TemporaryDirectory() as td:
        pf = Path(td) / "profiles.yaml"
        pf.write_text(text)
        print(f"\n== growth with iterations per case (-k {keyword!r})")
        rows = []
        for prof in ("bench-x1", "bench-x2"):
            rep = Path(td) / prof
            took = run_trial(rep, prof, keyword, pf)
            s = json.loads((rep / "summary.json").read_text())
            n, j = iterations(s), jobs(s)
            rows.append((took, n, j))
            print(f"{prof}: {len(s['cases'])} cases, {j} jobs, {n} iterations, wall {took:.1f} s "
                  f"({took / max(1, len(s['cases'])):.1f} s per case)")
        (t1, n1, j1), (t2, n2, _j2) = rows
        per_it = (t2 - t1) / max(1, n2 - n1)
        fixed = (t1 - per_it * n1) / max(1, j1)
        print(f"marginal cost per iteration {per_it:.2f} s; fixed cost per job (start, rendezvous, stop, checks) "
              f"{fixed:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", type=Path, help="an existing quick-profile report (skips the full run)")
    ap.add_argument("--skip-growth", action="store_true")
    ap.add_argument("--growth-k", default="convergence and pp-remote and 16 or bit_errors and 1e-9")
    a = ap.parse_args()
    if a.report is None:
        a.report = ROOT / "reports" / f"bench-quick-{int(time.time())}"
        took = run_trial(a.report, "quick")
        print(f"== quick profile: wall {took:.1f} s (dcilab trial, including lab up and down)")
    s = json.loads((a.report / "summary.json").read_text())
    wall = (_t(s["ended"]) - _t(s["started"])).total_seconds() if s.get("ended") else None
    print(f"== quick profile {s['run_id']}: {len(s['cases'])} cases, {jobs(s)} jobs, {iterations(s)} iterations, "
          f"suite wall {fmt(wall)} s (target < 900 s), verdicts {s.get('verdicts')}")
    fidelity(s)
    if not a.skip_growth:
        growth(a.growth_k)


if __name__ == "__main__":
    main()

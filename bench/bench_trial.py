"""Benchmarks of the field-trial suite on the emulated lab (needs root; run nothing else meanwhile).

1. wall time of the whole quick profile (target: under 15 minutes on a 2-core machine), from a run
   made here or from an existing report (``--report DIR``);
2. how it grows with the iterations per case: a subset of cases (``--growth-k``) with the quick
   profile's windows x1 and x2, wall time per case, per iteration and the fixed cost per job;
3. the fidelity table: each effect of the trial as the emulated lab showed it, beside the trial's
   figure and the target (testbed/report/fidelity.py; the run's report.html has the same table);
   with ``--tcp`` the quick profile runs a second time with the transport model off
   (``emulation.transport.model: none``) and that table is printed too.

    .venv/bin/python bench/bench_trial.py [--report reports/RUN] [--tcp | --tcp-report DIR] [--skip-growth] [--growth-k EXPR]
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

from testbed.report.fidelity import text as fidelity_text  # noqa: E402


def run_trial(report: Path, profile: str, keyword: str | None = None, profiles_file: Path | None = None,
              inventory: Path | None = None) -> float:
    cmd = [sys.executable, "-m", "testbed.cli", "trial", "--profile", profile, "--report-dir", str(report)]
    if inventory:
        cmd += ["--inventory", str(inventory)]
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


def fidelity(summary: dict, title: str = "") -> None:
    print(f"\n== fidelity: the emulated lab beside the trial{title}")
    print(fidelity_text(summary))


def tcp_inventory(td: Path) -> Path:
    """inventory/emulated.yaml with the transport model off (plain TCP), for the side-by-side run."""
    text = (ROOT / "inventory" / "emulated.yaml").read_text()
    text = text.replace("    model: roce-rc", "    model: none", 1)
    text = text.replace("python: ../.venv/bin/python", f"python: {ROOT / '.venv' / 'bin' / 'python'}")
    if "model: none" not in text:
        sys.exit("bench_trial: inventory/emulated.yaml has no 'model: roce-rc' to turn off")
    out = td / "emulated-tcp.yaml"
    out.write_text(text)
    return out


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
    ap.add_argument("--tcp", action="store_true", help="also run quick with the transport model off")
    ap.add_argument("--tcp-report", type=Path, help="an existing quick report made with the transport model off")
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
    fidelity(s, f" ({(s.get('testbed') or {}).get('transport', {}).get('model', 'model not recorded')})")
    if a.tcp and a.tcp_report is None:
        a.tcp_report = ROOT / "reports" / f"bench-quick-tcp-{int(time.time())}"
        with tempfile.TemporaryDirectory() as td:
            took = run_trial(a.tcp_report, "quick", inventory=tcp_inventory(Path(td)))
        print(f"\n== quick profile, transport model off: wall {took:.1f} s")
    if a.tcp_report is not None:
        fidelity(json.loads((a.tcp_report / "summary.json").read_text()), " (transport model off: plain TCP)")
    if not a.skip_growth:
        growth(a.growth_k)


if __name__ == "__main__":
    main()

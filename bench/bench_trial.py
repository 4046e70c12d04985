"""Benchmarks of the field-trial suite on the emulated lab (needs root; run nothing else meanwhile).

1. wall time of the whole quick profile, with shared jobs (one job per placement hosts its cases,
   the default; target: 5 minutes) and, in the same run of the bench, with a job per case
   (``jobs: per-case``, as before issue 17), from runs made here or an existing report
   (``--report DIR``);
2. how it grows with the iterations per case, for both: a subset of cases (``--growth-k``) with
   the quick profile's windows x1 and x2; the fixed cost per job and per case, the marginal cost
   per iteration;
3. verdict stability (``--stability N``): the quick profile N times on a quiet machine (every case
   the same verdict each time?), then once with one core kept busy by a CPU hog (``--hog``: no
   verdict may flip to the other of pass/fail; "not measured" with its reason is allowed);
4. the fidelity table: each effect of the trial as the emulated lab showed it, beside the trial's
   figure and the target (testbed/report/fidelity.py; the run's report.html has the same table);
   with ``--tcp`` the quick profile runs a second time with the transport model off
   (``emulation.transport.model: none``) and that table is printed too.

    .venv/bin/python bench/bench_trial.py [--report reports/RUN] [--no-per-case] [--tcp | --tcp-report DIR]
                                          [--skip-growth] [--growth-k EXPR] [--stability N [--hog]]
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


def iterations(report: Path) -> int:
    """Every iteration every job of the run trained (the run's iterations.jsonl: one line each)."""
    f = report / "iterations.jsonl"
    return sum(1 for _ in f.open()) if f.exists() else 0


def jobs(summary: dict) -> int:
    ids = {c.get("job_id") for c in summary["cases"]} | {b.get("job_id") for b in summary["baselines"].values()}
    return len(ids - {None, ""})


def profiles_with(extra: str, td: Path) -> Path:
    """cases/profiles.yaml with more profiles (YAML text under ``profiles:``)."""
    base = (ROOT / "cases" / "profiles.yaml").read_text()
    pf = td / "profiles.yaml"
    pf.write_text(base.replace("\ncriteria:\n", "\n" + extra + "\ncriteria:\n", 1))
    return pf


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


def growth(keyword: str, modes: list[str]) -> None:
    x2 = "    steady: 8\n    baseline_steady: 10\n    hold: 6\n    after: 6\n"
    extra = "".join(f"  bench-{m}-x1:\n    extends: quick\n    jobs: {m}\n"
                    f"  bench-{m}-x2:\n    extends: quick\n    jobs: {m}\n{x2}" for m in modes)
    with tempfile.TemporaryDirectory() as td:
        pf = profiles_with(extra, Path(td))
        print(f"\n== growth with iterations per case (-k {keyword!r})")
        for m in modes:
            rows = []
            for x in ("x1", "x2"):
                prof = f"bench-{m}-{x}"
                rep = Path(td) / prof
                took = run_trial(rep, prof, keyword, pf)
                s = json.loads((rep / "summary.json").read_text())
                n, j, c = iterations(rep), jobs(s), len(s["cases"])
                rows.append((took, n, j, c))
                print(f"{prof}: {c} cases, {j} jobs, {n} iterations, wall {took:.1f} s ({took / max(1, c):.1f} s per case)")
            (t1, n1, j1, c1), (t2, n2, _j2, _c2) = rows
            per_it = (t2 - t1) / max(1, n2 - n1)
            fixed = t1 - per_it * n1
            print(f"{m}: marginal cost per iteration {per_it:.2f} s; fixed cost {fixed:.1f} s in all: "
                  f"{fixed / max(1, j1):.1f} s per job, {fixed / max(1, c1):.1f} s per case "
                  f"(lab up and down, job start, rendezvous, stop, checks)")


def verdicts(report: Path) -> dict[str, str]:
    s = json.loads((report / "summary.json").read_text())
    out = {}
    for c in s["cases"]:
        v = c["verdict"]
        if v == "fail" and any("too noisy" in p or "not measured" in p for p in c.get("problems") or []):
            v = "not-measured"
        if v == "fail" and any(x.get("status") == "not-measured" for x in c.get("criteria") or []) \
                and not any(x.get("status") == "fail" for x in c.get("criteria") or []):
            v = "not-measured"
        out[c["name"]] = v
    return out


def stability(n: int, hog: bool) -> None:
    """The quick profile n times quiet (and once beside a CPU hog): the verdict of every case each time."""
    runs: list[tuple[str, dict[str, str], float]] = []
    stamp = int(time.time())
    for i in range(n):
        rep = ROOT / "reports" / f"bench-stability-{stamp}-{i + 1}"
        took = run_trial(rep, "quick")
        runs.append((f"quiet {i + 1}", verdicts(rep), took))
    if hog:
        rep = ROOT / "reports" / f"bench-stability-{stamp}-hog"
        p = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
        try:
            took = run_trial(rep, "quick")
        finally:
            p.kill()
            p.wait()
        runs.append(("one core busy", verdicts(rep), took))
    names = list(runs[0][1])
    print(f"\n== verdict stability: quick x {n} quiet" + (" + 1 beside a CPU hog on core 0" if hog else ""))
    print("| case | " + " | ".join(r[0] for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    flips = unstable = 0
    for name in names:
        vs = [r[1].get(name, "-") for r in runs]
        quiet = vs[:n]
        unstable += len(set(quiet)) > 1
        judged = {v for v in vs if v in ("pass", "fail")}
        flips += len(judged) > 1
        print(f"| {name} | " + " | ".join(vs) + " |")
    print("walls: " + ", ".join(f"{r[0]} {r[2]:.0f} s" for r in runs))
    print(f"cases whose quiet verdicts differ: {unstable} of {len(names)}; cases flipping between pass and fail "
          f"(any run): {flips}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", type=Path, help="an existing quick-profile report (skips the shared-jobs run)")
    ap.add_argument("--no-per-case", action="store_true", help="skip the quick run with a job per case")
    ap.add_argument("--tcp", action="store_true", help="also run quick with the transport model off")
    ap.add_argument("--tcp-report", type=Path, help="an existing quick report made with the transport model off")
    ap.add_argument("--skip-growth", action="store_true")
    ap.add_argument("--growth-k", default="convergence and pp-remote and 16 or bit_errors and 1e-9")
    ap.add_argument("--stability", type=int, default=0, metavar="N", help="run quick N times and compare verdicts")
    ap.add_argument("--hog", action="store_true", help="with --stability: one more run beside a CPU hog")
    a = ap.parse_args()
    walls: dict[str, float] = {}
    if a.report is None:
        a.report = ROOT / "reports" / f"bench-quick-{int(time.time())}"
        walls["shared"] = run_trial(a.report, "quick")
    s = json.loads((a.report / "summary.json").read_text())
    wall = (_t(s["ended"]) - _t(s["started"])).total_seconds() if s.get("ended") else None
    print(f"== quick profile {s['run_id']} ({s['profile'].get('jobs', 'per-case')} jobs): {len(s['cases'])} cases, "
          f"{jobs(s)} jobs, {iterations(a.report)} iterations, suite wall {fmt(wall)} s, dcilab trial "
          f"{fmt(walls.get('shared'))} s (lab up and down included; target 300 s), verdicts {s.get('verdicts')}")
    if not a.no_per_case:
        with tempfile.TemporaryDirectory() as td:
            pf = profiles_with("  quick-per-case:\n    extends: quick\n    jobs: per-case\n", Path(td))
            rep = ROOT / "reports" / f"bench-quick-per-case-{int(time.time())}"
            walls["per-case"] = run_trial(rep, "quick-per-case", profiles_file=pf)
        p = json.loads((rep / "summary.json").read_text())
        print(f"== quick profile {p['run_id']} (a job per case): {len(p['cases'])} cases, {jobs(p)} jobs, "
              f"{iterations(rep)} iterations, dcilab trial {walls['per-case']:.1f} s, verdicts {p.get('verdicts')}")
        if "shared" in walls:
            print(f"== shared jobs / a job per case: {walls['shared']:.0f} s / {walls['per-case']:.0f} s = "
                  f"{walls['shared'] / walls['per-case']:.2f}")
    fidelity(s, f" ({(s.get('testbed') or {}).get('transport', {}).get('model', 'model not recorded')})")
    if a.tcp and a.tcp_report is None:
        a.tcp_report = ROOT / "reports" / f"bench-quick-tcp-{int(time.time())}"
        with tempfile.TemporaryDirectory() as td:
            took = run_trial(a.tcp_report, "quick", inventory=tcp_inventory(Path(td)))
        print(f"\n== quick profile, transport model off: wall {took:.1f} s")
    if a.tcp_report is not None:
        fidelity(json.loads((a.tcp_report / "summary.json").read_text()), " (transport model off: plain TCP)")
    if not a.skip_growth:
        growth(a.growth_k, ["shared"] + ([] if a.no_per_case else ["per-case"]))
    if a.stability:
        stability(a.stability, a.hog)


if __name__ == "__main__":
    main()

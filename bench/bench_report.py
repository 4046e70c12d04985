"""Benchmark of ``dcilab report`` on a synthetic nightly run: 10,000 iterations in total (the
quick trial's 13 cases repeated, each with a longer series built from its own), timed from
reading summary.json to the last plot file written.  Targets (issue 7): under 10 s, HTML
under 5 MB.  No lab needed.  When a headless Chromium is installed it also prints the page to
report.pdf and reports that time and size (no target: the PDF is for mailing).

    .venv/bin/python bench/bench_report.py [--iterations 10000] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.report.pdf import PdfError, find_browser, print_pdf  # noqa: E402 - after the sys.path line
from testbed.report.render import render_run  # noqa: E402

QUICK = ROOT / "tests" / "data" / "summary-quick.json"
TARGET_S, TARGET_MB = 10.0, 5.0


def nightly(iterations: int, repeats: int) -> dict[str, Any]:
    """The quick summary with each case repeated ``repeats`` times; each copy's series is
    stretched (its own steady durations with noise, the fault moved to the middle) so that
    the run holds ``iterations`` iterations in all."""
    rnd = random.Random(7)
    s = json.loads(QUICK.read_text())
    base = s["cases"]
    n_cases = len(base) * repeats
    per_case = iterations // n_cases
    extra = iterations - per_case * n_cases
    out = []
    for r in range(repeats):
        for c in base:
            c = copy.deepcopy(c)
            n = per_case + (1 if extra > 0 else 0)
            extra -= 1
            fs = (c.get("metrics") or {}).get("fault_step")
            src = [p for p in c["series"] if not p["warmup"] and (fs is None or p["step"] < fs)] or c["series"]
            fault_at = n // 2
            series, t = [], 0
            for i in range(n):
                p = dict(src[i % len(src)])
                d = p["duration_s"] * rnd.uniform(0.97, 1.03) * (1.6 if fault_at <= i < fault_at + 3 else 1.0)
                p.update(step=i, duration_s=d, warmup=i < 2, start_ns=t, end_ns=t + int(d * 1e9))
                t = p["end_ns"]
                series.append(p)
            c["series"] = series
            for w in c["faults"]:
                w.update(applied_step=fault_at, undone_step=fault_at + 3 if r % 2 else None)
            c["id"] += f"#r{r + 1}"
            c["name"] += f" (repeat {r + 1})"
            out.append(c)
    s.update(cases=out, run_id="nightly-bench", profile={**s["profile"], "name": "nightly", "repeats": repeats})
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="render into this folder and keep it")
    a = ap.parse_args()
    s = nightly(a.iterations, a.repeats)
    total = sum(len(c["series"]) for c in s["cases"])
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text(json.dumps(s))
        t0 = time.perf_counter()
        r = render_run(d, pdf=False)
        took = time.perf_counter() - t0
        size = r.html.stat().st_size / 1e6
        plots = sum(f.stat().st_size for f in r.plot_files) / 1e6
        pdf_line = _pdf(r.html)
    print(f"nightly summary: {len(s['cases'])} cases, {total} iterations")
    print(f"render: {took:.2f} s (target < {TARGET_S:.0f} s) {'OK' if took < TARGET_S else 'OVER'}")
    print(f"report.html: {size:.2f} MB (target < {TARGET_MB:.0f} MB) {'OK' if size < TARGET_MB else 'OVER'}")
    print(f"plot files: {len(r.plot_files)}, {plots:.1f} MB")
    print(pdf_line)
    return 0 if took < TARGET_S and size < TARGET_MB else 1


def _pdf(page: Path) -> str:
    """The PDF of the same page, timed apart from the render (the browser's start included)."""
    if find_browser() is None:
        return "report.pdf: skipped (no chromium; ./setup.sh installs it)"
    pdf = page.with_name("report.pdf")
    try:
        took = print_pdf(page, pdf)
    except PdfError as exc:
        return f"report.pdf: FAILED: {exc}"
    data = pdf.read_bytes()
    pages = data.count(b"/Type /Page") - data.count(b"/Type /Pages")
    return f"report.pdf: {took:.2f} s, {len(data) / 1e6:.2f} MB, {pages} pages"


if __name__ == "__main__":
    sys.exit(main())

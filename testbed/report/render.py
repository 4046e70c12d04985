"""From a run folder to ``report.html`` plus ``plots/*.png|svg``, reading ``summary.json`` (and
``testbed.json`` when present) only, so an old run can be re-rendered at any time."""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.report import html, plots
from testbed.report.summary import ReportError, case_label, cases, load_json, load_optional


@dataclass
class Rendered:
    """What a render wrote: the page, every plot file, and the PDF or why there is none."""
    html: Path
    plot_files: list[Path]
    pdf: Path | None = None
    no_pdf: str | None = None     # "no PDF: chromium not found (...)": the report is fine without it


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "case"


def _case_figures(job: tuple[dict[str, Any], str, str]) -> list[plots.Plot]:
    """Both figures of one case (module level so that worker processes can run it)."""
    case, stem, label = job
    ps = [plots.case_plot(case, stem, label), plots.probe_plot(case, f"{stem}-probe", label)]
    return [p for p in ps if p is not None]


def _all_case_figures(jobs: list[tuple[dict[str, Any], str, str]]) -> list[list[plots.Plot]]:
    """Figures are CPU-bound and independent: a nightly run's dozens of cases are drawn on every
    core (the 10 s target for 10,000 iterations is not met on one core of the lab controller)."""
    workers = min(os.cpu_count() or 1, len(jobs))
    if workers < 2 or len(jobs) < 8:
        return [_case_figures(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_case_figures, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def render_run(run_dir: Path, out_dir: Path | None = None, *, pdf: bool = True) -> Rendered:
    """Render ``run_dir/summary.json`` into ``out_dir`` (default: the run folder itself), and
    ``report.pdf`` beside the page when ``pdf`` and a headless Chromium is installed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory (give the run folder that holds summary.json)")
    summary = load_json(run_dir / "summary.json")
    snapshot, snap_err = load_optional(run_dir / "testbed.json")
    if snap_err and not (run_dir / "testbed.json").exists():
        snap_err = "no testbed.json beside summary.json"
    out = Path(out_dir) if out_dir else run_dir
    plot_dir = out / "plots"
    try:
        plot_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{plot_dir}: cannot create the plot folder: {exc} (choose another --out)") from None
    all_cases = cases(summary)
    jobs = [(c, f"case-{i + 1:02d}-{_slug(case_label(c, i))}", case_label(c, i)) for i, c in enumerate(all_cases)]
    per_case = _all_case_figures(jobs)
    overview = [p for p in [plots.equivalent_compute_plot(all_cases)] if p is not None]
    files: list[Path] = []
    for p in overview + [p for ps in per_case for p in ps]:
        for suffix, data in ((".png", p.png), (".svg", p.svg.encode())):
            f = plot_dir / f"{p.name}{suffix}"
            f.write_bytes(data)
            files.append(f)
    page = out / "report.html"
    comparison, comp_err = load_optional(run_dir / "comparison.json")
    if comp_err and not (run_dir / "comparison.json").exists():
        comp_err = None  # never compared (dcilab history compare RUN_DIR does it): nothing to say
    page.write_text(html.render(summary, snapshot, snap_err, per_case, overview, comparison=comparison,
                                comparison_error=comp_err), encoding="utf-8")
    return Rendered(page, files, *write_pdf(page, pdf))


def write_pdf(page: Path, wanted: bool = True) -> tuple[Path | None, str | None]:
    """``report.pdf`` beside ``page``, or None and why not; never raises, since the HTML report
    stands on its own.  A PDF of an earlier render is removed rather than left to contradict
    the new page."""
    from testbed.report.pdf import PdfError, find_browser, not_found_reason, print_pdf

    target = page.with_name("report.pdf")
    if not wanted:
        why = "no PDF: not asked for (--no-pdf)"
    elif find_browser() is None:
        why = f"no PDF: {not_found_reason()}"
    else:
        try:
            print_pdf(page, target)
            return target, None
        except PdfError as exc:
            why = f"no PDF: {exc}"
    try:
        if target.is_file():
            target.unlink()
            why += f" (removed the outdated {target.name} of an earlier render)"
    except OSError as exc:
        why += f" (and the outdated {target} of an earlier render could not be removed: {exc})"
    return None, why

"""``dcilab report``: the quick trial's real summary renders into one offline HTML page with
the verdicts, the trial's reference numbers and valid plot files; an interrupted or oddly
shaped summary still renders and says so; a corrupt one is one clear error and exit 1."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from testbed.cli import main
from testbed.report.html import e
from testbed.report.plots import _span
from testbed.report.render import render_run
from testbed.report.summary import ReportError

DATA = Path(__file__).parent / "data"
QUICK = DATA / "summary-quick.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_dir(tmp_path: Path, summary: dict[str, Any] | None = None, snapshot: bool = False) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    if summary is None:
        shutil.copy(QUICK, d / "summary.json")
    else:
        (d / "summary.json").write_text(json.dumps(summary))
    if snapshot:
        shutil.copy(DATA / "testbed-quick.json", d / "testbed.json")
    return d


def quick() -> dict[str, Any]:
    return json.loads(QUICK.read_text())


def test_quick_report_has_every_case_verdict_and_reference(tmp_path: Path) -> None:
    d = run_dir(tmp_path, snapshot=True)
    r = render_run(d)
    page = r.html.read_text()
    s = quick()
    for c in s["cases"]:
        assert e(c["name"]) in page, c["name"]
        for crit in c["criteria"]:
            if isinstance(crit["reference"], (int, float)):
                assert f"<td>{e(crit['reference'])}<br>" in page or f"<td>{e(crit['reference'])}</td>" in page
            if crit["reference_text"]:
                assert e(crit["reference_text"]) in page
            if crit["emulation"]:
                assert e(crit["emulation"]) in page
    verdicts = {c["verdict"] for c in s["cases"]}
    assert verdicts == {"pass", "fail"}
    for v in verdicts:
        assert f"<td class='{v}'>{v}" in page
    assert s["run_id"] in page and s["dcilab"]["git_revision"] in page and "quick" in page
    assert "yes (emulated lab)" in page and "V200R022C00SPC500" in page   # gateway version from testbed.json
    assert "did not complete" not in page
    assert not re.search(r"https?://", page), "the report must open offline"
    assert not re.search(r"<(script|link|iframe)\b", page)
    assert page.count("data:image/png;base64,") == len(r.plot_files) // 2


def test_plot_files_are_valid_png_and_svg(tmp_path: Path) -> None:
    r = render_run(run_dir(tmp_path), tmp_path / "out")
    assert r.html == tmp_path / "out" / "report.html"
    names = {p.name for p in r.plot_files}
    s = quick()
    # one figure per case, one per case with probe events, one equivalent-compute chart
    probes = sum(1 for c in s["cases"] if (c.get("probe") or {}).get("disruptions", {}).get("events"))
    assert len(names) == 2 * (len(s["cases"]) + probes + 1)
    assert "equivalent-compute.png" in names and "equivalent-compute.svg" in names
    for f in r.plot_files:
        assert f.parent == tmp_path / "out" / "plots" and f.stat().st_size > 1000
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == PNG_MAGIC, f
        else:
            assert ET.parse(f).getroot().tag == "{http://www.w3.org/2000/svg}svg", f


def test_interrupted_run_renders_and_says_so(tmp_path: Path) -> None:
    s = quick()
    s.update(status="interrupted", ended=None, schema=99)
    s.pop("verdicts")
    s.pop("dcilab")
    s["errors"] = [{"at": "2026-11-28T02:00:00Z", "error": "KeyboardInterrupt"}]
    cut = s["cases"][-1]
    s["cases"][-1] = {"id": cut["id"], "name": cut["name"], "scenario": cut["scenario"], "params": cut["params"],
                      "verdict": "error", "status": "interrupted", "error": "interrupted <Ctrl-C> during the fault",
                      "series": cut["series"][:4], "faults": [], "conditions": [], "outcome": None}
    s["cases"][0].pop("metrics")
    s["cases"][1]["series"] = "garbage"
    page = render_run(run_dir(tmp_path, s)).html.read_text()
    assert "This run did not complete (status: interrupted)" in page
    assert f"{len(s['cases']) - 1} of {len(s['cases'])} recorded cases completed" in page
    assert "<td class='error'>error" in page
    assert "interrupted &lt;Ctrl-C&gt; during the fault" in page and "<Ctrl-C>" not in page
    assert "schema 99 is not one this renderer knows" in page
    assert "KeyboardInterrupt" in page
    assert "Device versions: missing (no testbed.json beside summary.json)" in page
    assert "No iterations recorded for this case." in page     # the case whose series is garbage


def test_text_from_the_summary_is_escaped(tmp_path: Path) -> None:
    s = quick()
    s["cases"][0]["name"] = "<img src=x onerror=alert(1)>"
    s["testbed"]["name"] = "<b>lab</b>"
    page = render_run(run_dir(tmp_path, s)).html.read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>lab</b>" not in page


@pytest.mark.parametrize("content, why", [
    ('{"schema": 1, "cases": [', "not valid JSON at line 1"),
    ("[1, 2]", "expected a JSON object"),
    (None, "no such file"),
])
def test_bad_summary_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        content: str | None, why: str) -> None:
    d = tmp_path / "run"
    d.mkdir()
    if content is not None:
        (d / "summary.json").write_text(content)
    assert main(["report", str(d)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(d / "summary.json") in err[0] and why in err[0]
    assert not (d / "report.html").exists()


def test_cli_renders_and_prints_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = run_dir(tmp_path)
    assert main(["report", str(d), "--out", str(tmp_path / "o")]) == 0
    assert str(tmp_path / "o" / "report.html") in capsys.readouterr().out
    with pytest.raises(ReportError, match="not a directory"):
        render_run(tmp_path / "nope")


def test_fault_window_runs_to_undone_step_or_the_end() -> None:
    assert _span({"applied_step": 6, "undone_step": 8}, 20) == (5.5, 8.5)
    assert _span({"applied_step": 6, "undone_step": None}, 20) == (5.5, 20.5)
    assert _span({"applied_step": None}, 20) is None

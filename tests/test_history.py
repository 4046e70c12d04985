"""Nightly acceptance without the lab: repeats (mean and spread), the history index, the pinned
reference, and the comparison that flags a regression (statistics checked against known values).

Runs are built from a real quick trial's summary (tests/data/summary-quick.json) with seeded
jitter on every iteration, so "two nights in a row" differ as real nights do."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.report import history
from testbed.report.compare import compare, efficiency_samples, group_key, groups
from testbed.report.finish import finish_run
from testbed.report.stats import holm, student_t_sf, welch_less
from testbed.report.summary import ReportError
from testbed.trial.profile import ProfileError, load_trial

DATA = Path(__file__).parent / "data"
QUICK = json.loads((DATA / "summary-quick.json").read_text())
ROOT = Path(__file__).resolve().parents[1]
DP_DROP = "test_bandwidth_drop[dp-remote-400G]"
SWITCH = "test_protection_switchover[pp-remote-8to1]"


def night(seed: int, *, repeats: int = 1, profile: str = "quick", started: str = "2026-11-20T01:00:00Z",
          slow: dict[str, float] | None = None, jitter: float = 0.02, sdt: dict[str, float] | None = None,
          sdt_jitter: float = 0.05) -> dict[str, Any]:
    """A run like the quick fixture: every iteration jittered; ``slow`` multiplies the judged
    window's iterations of the named cases (a real regression); ``repeats`` copies each case;
    the probe's service disruption is jittered per repeat (and multiplied by ``sdt``) and, like the
    probe's, a whole number of frame intervals."""
    rnd = random.Random(seed)
    rnd_sdt = random.Random(seed + 10_000)  # its own stream: the iteration jitter stays as it was
    s = copy.deepcopy(QUICK)
    s["run_id"], s["started"] = f"run-{seed}", started
    s["profile"] = {**s["profile"], "name": profile, "repeats": repeats}
    out = []
    for c in s["cases"]:
        for r in range(1, repeats + 1):
            c2 = copy.deepcopy(c)
            if repeats > 1:
                c2["name"] = c["name"][:-1] + f"-run{r}]"
                c2["params"] = {**c["params"], "repeat": r}
            window = c2["metrics"].get("window_steps") or []
            if c2["metrics"].get("disruption_ms") is not None:
                interval = 1000.0 / c2["probe"]["rate_pps"]
                d = c2["metrics"]["disruption_ms"] * (sdt or {}).get(group_key(c), 1.0) * rnd_sdt.gauss(1.0, sdt_jitter)
                c2["metrics"]["disruption_ms"] = round(d / interval) * interval
            if c2["metrics"].get("equivalent_compute") is not None:
                c2["metrics"]["equivalent_compute"] *= rnd.gauss(1.0, jitter)
            for p in c2["series"]:
                p["duration_s"] *= rnd.gauss(1.0, jitter)
                factor = (slow or {}).get(group_key(c))
                if factor and (p["step"] in window or (not window and not p["warmup"])):
                    p["duration_s"] *= factor
            out.append(c2)
    s["cases"] = out
    return s


def write_run(reports: Path, summary: dict[str, Any]) -> Path:
    d = reports / summary["run_id"]
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    return d


# ------------------------------------------------------------------------------------ statistics

def test_student_t_matches_tables():
    assert student_t_sf(2.0, 10) == pytest.approx(0.036694, abs=2e-6)
    assert student_t_sf(3.0, 4) == pytest.approx(0.019971, abs=2e-6)
    assert student_t_sf(-1.0, 5) == pytest.approx(1 - 0.181609, abs=2e-6)
    assert student_t_sf(1.5, 30) == pytest.approx(0.072033, abs=2e-6)


def test_welch_one_sided():
    lower, higher = [0.50, 0.52, 0.49], [0.98, 1.00, 1.02]
    assert welch_less(lower, higher) < 1e-4
    assert welch_less(higher, lower) > 0.999
    assert welch_less([1.0], higher) == 1.0  # one value has no spread to judge
    assert welch_less([1.0, 1.0], [2.0, 2.0]) == 0.0 and welch_less([2.0, 2.0], [1.0, 1.0]) == 1.0


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []


# --------------------------------------------------------------------------------------- repeats

def test_repeats_grouped_with_mean_and_spread():
    s = night(1, repeats=3)
    gs = groups(s)
    assert len(gs) == len(QUICK["cases"])
    g = gs[DP_DROP]
    assert sorted(g.repeats) == [1, 2, 3]
    eq = g.metrics["equivalent_compute"]
    assert eq["n"] == 3 and eq["std"] is not None and eq["min"] <= eq["mean"] <= eq["max"]
    assert len(g.samples) == 3 * 3 and len(g.repeat_medians) == 3  # three judged iterations per repeat


def test_efficiency_samples_use_the_judged_window():
    by_name = {c["name"]: c for c in QUICK["cases"]}
    drop = by_name[DP_DROP]
    m = drop["metrics"]
    want = [m["pre_fault_s"] / p["duration_s"] for p in drop["series"] if p["step"] in m["window_steps"]]
    assert efficiency_samples(drop) == pytest.approx(want)
    conv = by_name["test_convergence_ratio[dp-remote-16to1]"]
    steady = [p for p in conv["series"] if not p["warmup"]]
    assert efficiency_samples(conv) == pytest.approx([conv["metrics"]["baseline_s"] / p["duration_s"] for p in steady])
    assert efficiency_samples({"name": "x", "metrics": {}, "series": []}) == []


def test_report_shows_repeats(tmp_path):
    from testbed.report.render import render_run

    d = write_run(tmp_path, night(2, repeats=3))
    page = render_run(d, pdf=False).html.read_text()
    assert "Across repeats" in page and "n=3" in page


# ------------------------------------------------------------------------------------ comparison

def test_two_ordinary_nights_compare_without_regression():
    c = compare(night(2, repeats=3), night(1, repeats=3))
    assert c["role"] == "previous" and c["run_id"] == "run-1"
    assert len(c["cases"]) == len(QUICK["cases"])
    assert c["regressions"] == [] and c["improvements"] == []
    assert all(x["status"] == "unchanged" for x in c["cases"])


def test_a_slower_case_is_a_regression_and_only_that_case():
    c = compare(night(3, repeats=3, slow={DP_DROP: 1.6}), night(1, repeats=3))
    assert c["regressions"] == [DP_DROP]
    ch = next(x for x in c["cases"] if x["key"] == DP_DROP)
    assert ch["change"] == pytest.approx(1 / 1.6 - 1, abs=0.05) and ch["p_adjusted"] < 0.01
    assert "fell" in ch["reason"]


def test_faster_is_an_improvement_not_a_regression():
    c = compare(night(3, repeats=3, slow={DP_DROP: 0.6}), night(1, repeats=3))
    assert c["regressions"] == [] and c["improvements"] == [DP_DROP]


def test_one_noisy_iteration_is_not_a_regression():
    cur = night(4, repeats=3)
    case = next(x for x in cur["cases"] if group_key(x) == DP_DROP)
    step = case["metrics"]["window_steps"][0]
    next(p for p in case["series"] if p["step"] == step)["duration_s"] *= 4.0  # one iteration 4x slower
    c = compare(cur, night(1, repeats=3))
    assert c["regressions"] == []


def test_small_significant_change_within_the_noise_floor_is_unchanged():
    key = "test_convergence_ratio[dp-remote-16to1]"
    c = compare(night(5, repeats=3, slow={key: 1.06}, jitter=0.002), night(1, repeats=3, jitter=0.002))
    ch = next(x for x in c["cases"] if x["key"] == key)
    assert ch["p_adjusted"] < 0.01 and ch["status"] == "unchanged" and "within 10.0%" in ch["reason"]


def test_cases_missing_on_one_side_are_not_comparable():
    other = night(1)
    other["cases"] = [c for c in other["cases"] if c["name"] != DP_DROP]
    c = compare(night(2), other)
    ch = next(x for x in c["cases"] if x["key"] == DP_DROP)
    assert ch["status"] == "not-comparable" and ch["reason"] == "not in the other run"


def test_a_slower_switchover_is_a_regression_though_the_median_iteration_is_not():
    """A switchover that takes 300 ms instead of 30 hits one iteration: the efficiency median does
    not move, the probe's disruption across three repeats does."""
    c = compare(night(6, repeats=3, sdt={SWITCH: 10.0}), night(1, repeats=3))
    assert c["regressions"] == [SWITCH]
    ch = next(x for x in c["cases"] if x["key"] == SWITCH)
    d = ch["disruption"]
    assert d["status"] == "regression" and d["n"] == [3, 3] and d["p_adjusted"] < 0.01
    assert d["median"][0] == pytest.approx(300, rel=0.15) and d["median"][1] == pytest.approx(30, rel=0.15)
    assert "service disruption rose" in ch["reason"] and "median efficiency" in ch["reason"]
    reroute = next(x for x in c["cases"] if x["key"] == "test_ason_reroute[pp-remote-8to1]")
    assert reroute["disruption"]["status"] == "unchanged"


def test_a_shorter_switchover_is_an_improvement():
    c = compare(night(6, repeats=3, sdt={SWITCH: 0.3}), night(1, repeats=3))
    assert c["regressions"] == [] and c["improvements"] == [SWITCH]


def test_disruption_needs_three_repeats_on_both_sides():
    c = compare(night(6, repeats=1, sdt={SWITCH: 10.0}), night(1, repeats=1))
    ch = next(x for x in c["cases"] if x["key"] == SWITCH)
    assert c["regressions"] == [] and ch["disruption"]["status"] == "not-tested"
    assert ch["disruption"]["p"] is None and "needs 3 repeats" in ch["reason"]
    c = compare(night(6, repeats=3, sdt={SWITCH: 10.0}), night(1, repeats=2))
    assert next(x for x in c["cases"] if x["key"] == SWITCH)["disruption"]["status"] == "not-tested"


def test_a_disruption_rise_within_the_probe_resolution_is_unchanged():
    """30 -> 33 ms with no spread at all is 'significant', but the probe (500 frames/s) resolves
    2 ms: a rise of one or two frame intervals is not a regression."""
    c = compare(night(6, repeats=3, sdt={SWITCH: 1.1}, sdt_jitter=0.0), night(1, repeats=3, sdt_jitter=0.0))
    d = next(x for x in c["cases"] if x["key"] == SWITCH)["disruption"]
    assert d["median"] == [32.0, 30.0] and d["p_adjusted"] < 0.01
    assert d["status"] == "unchanged" and d["floor_ms"] == 4.0 and c["regressions"] == []


def test_disruption_tests_share_the_holm_family():
    c = compare(night(6, repeats=3, sdt={SWITCH: 10.0}), night(1, repeats=3))
    ch = next(x for x in c["cases"] if x["key"] == SWITCH)
    family = sum(1 for x in c["cases"] if x["p"] is not None) + sum(
        1 for x in c["cases"] if (x.get("disruption") or {}).get("p") is not None)
    assert family == len(QUICK["cases"]) + 2
    assert f"Holm over {family} tests" in ch["reason"]


def test_profile_settings_drive_the_decision():
    cur = night(3, repeats=3, slow={DP_DROP: 1.6})
    cur["profile"]["regression"] = {"alpha": 0.01, "min_change": 0.5, "spread_k": 3.0}
    assert compare(cur, night(1, repeats=3))["regressions"] == []


# --------------------------------------------------------------------------------------- history

def test_history_index_previous_and_pinned_reference(tmp_path):
    a = write_run(tmp_path, night(1, started="2026-11-20T01:00:00Z"))
    b = write_run(tmp_path, night(2, started="2026-11-21T01:00:00Z"))
    other = write_run(tmp_path, night(7, profile="full", started="2026-11-21T02:00:00Z"))
    c = write_run(tmp_path, night(3, started="2026-11-22T01:00:00Z", slow={DP_DROP: 1.8}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    entries = history.write_index(tmp_path)
    assert [e.path for e in entries if not e.error] == [a.name, b.name, other.name, c.name]
    broken = next(e for e in entries if e.path == "broken")
    assert "not valid JSON" in broken.error and not broken.comparable
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, c)] == [("previous", b.name)]
    history.pin(tmp_path, a.name)
    assert history.references(tmp_path) == {"quick": a.name}
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, c)] == [("previous", b.name), ("reference", a.name)]
    with pytest.raises(ReportError, match="no run folder"):
        history.pin(tmp_path, "nope")
    with pytest.raises(ReportError, match="cannot be a reference"):
        history.pin(tmp_path, "broken")
    assert history.unpin(tmp_path, "quick") and not history.unpin(tmp_path, "quick")


def test_finish_run_compares_renders_and_indexes(tmp_path):
    tmp_path = tmp_path / "reports"     # a history folder (named reports)
    write_run(tmp_path, night(1, repeats=3, started="2026-11-20T01:00:00Z"))
    d = write_run(tmp_path, night(3, repeats=3, started="2026-11-21T01:00:00Z", slow={DP_DROP: 1.6}))
    done = finish_run(d)
    assert done.problems == []
    assert done.regressions == [f"previous run-1: {DP_DROP}"]
    saved = json.loads((d / "comparison.json").read_text())
    assert saved["comparisons"][0]["regressions"] == [DP_DROP]
    page = done.report.read_text()
    assert "Compared with earlier runs" in page and "1 regression" in page
    index = json.loads((tmp_path / "index.json").read_text())
    last = index["runs"][-1]
    assert last["run_id"] == "run-3" and last["regressions"] == {"previous": [DP_DROP]}
    assert "1 regression(s)" in (tmp_path / "index.html").read_text()
    from testbed.report.bundle import make_bundle
    b = make_bundle(d, tmp_path / "out", pdf=False)     # the comparison travels with the report
    assert "comparison.json" in [m.path for m in b.members]


def test_a_run_outside_a_history_folder_is_neither_compared_nor_indexed(tmp_path):
    write_run(tmp_path, night(1, repeats=3, started="2026-11-20T01:00:00Z"))
    d = write_run(tmp_path, night(3, repeats=3, started="2026-11-21T01:00:00Z", slow={DP_DROP: 1.6}))
    done = finish_run(d)      # e.g. --report-dir /tmp/x: not compared with whatever lies in /tmp
    assert done.comparisons == [] and done.problems == [] and done.report is not None
    assert not (tmp_path / "index.json").exists() and not (d / "comparison.json").exists()
    assert "Compared with earlier runs" not in done.report.read_text()
    (tmp_path / "index.json").write_text("{}")      # a folder with an index is a history
    assert finish_run(d).regressions == [f"previous run-1: {DP_DROP}"]


def test_first_run_has_nothing_to_compare_with(tmp_path):
    tmp_path = tmp_path / "reports"     # a history folder (named reports)
    d = write_run(tmp_path, night(1))
    done = finish_run(d)
    assert done.comparisons == [] and done.regressions == [] and done.problems == []
    assert "nothing to compare with yet" in done.report.read_text()


def test_an_older_format_run_in_the_history_still_lists_compares_and_renders(tmp_path):
    tmp_path = tmp_path / "reports"     # a history folder (named reports)
    old = copy.deepcopy(night(1, started="2026-11-20T01:00:00Z"))
    # an early summary: no schema, the profile as a bare name, no probe/outcome, fewer metrics
    old.pop("schema")
    old["profile"] = "quick"
    for c in old["cases"]:
        for k in ("outcome", "probe", "conditions", "criteria"):
            c.pop(k, None)
    write_run(tmp_path, old)
    d = write_run(tmp_path, night(2, started="2026-11-21T01:00:00Z"))
    entries = history.write_index(tmp_path)
    assert entries[0].profile == "quick" and entries[0].schema is None and entries[0].error is None
    done = finish_run(d)
    assert done.problems == [] and done.comparisons[0]["run_id"] == "run-1"
    from testbed.report.render import render_run
    page = render_run(tmp_path / "run-1", pdf=False).html.read_text()
    assert "is not one this renderer knows" in page


def test_history_cli_exit_code_on_regression(tmp_path):
    tmp_path = tmp_path / "reports"     # a history folder (named reports)
    write_run(tmp_path, night(1, repeats=3, started="2026-11-20T01:00:00Z"))
    d = write_run(tmp_path, night(3, repeats=3, started="2026-11-21T01:00:00Z", slow={DP_DROP: 1.6}))
    cmd = [sys.executable, "-m", "testbed.cli", "history", "--reports-dir", str(tmp_path)]
    r = subprocess.run(cmd + ["compare", str(d)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"REGRESSION {DP_DROP}" in r.stdout
    r = subprocess.run(cmd + ["pin", "run-1"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0 and "pinned run-1 as the reference of profile quick" in r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0 and "REGRESSED" in r.stdout and "(reference)" in r.stdout
    r = subprocess.run(cmd[:-2] + ["--reports-dir", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 1 and "no such folder" in r.stderr


# ------------------------------------------------------------------------ several testbeds' runs

def on(testbed: str, summary: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """``summary`` as run on the testbed named ``testbed`` (under ``run_id``)."""
    summary["testbed"] = {**summary["testbed"], "name": testbed}
    if run_id:
        summary["run_id"] = run_id
    return summary


def write_group(reports: Path, group: str, runs: dict[str, dict[str, Any]]) -> Path:
    """A group folder as `dcilab trial --inventory A --inventory B` writes it: testbeds.json and
    a run folder per testbed, named by the testbed."""
    g = reports / group
    g.mkdir(parents=True)
    (g / history.GROUP).write_text(json.dumps({"run_id": group, "testbeds": [
        {"name": name, "run_dir": name} for name in runs]}))
    for name, summary in runs.items():
        d = g / name
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(summary))
    return g


def test_a_run_is_compared_only_with_runs_of_its_own_testbed(tmp_path):
    """Two testbeds sharing reports/: "previous" is the latest earlier run of the same testbed,
    not the other testbed's later one; a reference pinned on one testbed is not the other's."""
    a1 = write_run(tmp_path, on("lab-a", night(1, started="2026-11-20T01:00:00Z")))
    b1 = write_run(tmp_path, on("lab-b", night(2, started="2026-11-20T02:00:00Z")))
    a2 = write_run(tmp_path, on("lab-a", night(3, started="2026-11-21T01:00:00Z")))
    b2 = write_run(tmp_path, on("lab-b", night(4, started="2026-11-21T02:00:00Z")))
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, b2)] == [("previous", b1.name)]
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, a2)] == [("previous", a1.name)]
    assert history.baselines_for(tmp_path, a1) == [] and history.baselines_for(tmp_path, b1) == []
    history.pin(tmp_path, a1.name)
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, a2)] == [("previous", a1.name),
                                                                               ("reference", a1.name)]
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, b2)] == [("previous", b1.name)]
    history.pin(tmp_path, b1.name)      # one reference per profile: now lab-b's
    assert [r for r, _ in history.baselines_for(tmp_path, a2)] == ["previous"]
    assert [(r, e.path) for r, e in history.baselines_for(tmp_path, b2)] == [("previous", b1.name),
                                                                               ("reference", b1.name)]


def test_a_group_folder_lists_its_testbeds_runs_each_compared_with_its_own_testbed(tmp_path):
    reports = tmp_path / "reports"
    a1 = write_run(reports, on("lab-a", night(1, repeats=3, started="2026-11-20T01:00:00Z")))
    b1 = write_run(reports, on("lab-b", night(2, repeats=3, started="2026-11-20T02:00:00Z")))
    g1 = write_group(reports, "G1", {
        "lab-a": on("lab-a", night(3, repeats=3, started="2026-11-21T01:00:00Z", slow={DP_DROP: 1.6}), "G1-lab-a"),
        "lab-b": on("lab-b", night(4, repeats=3, started="2026-11-21T01:00:01Z"), "G1-lab-b")})
    g2 = write_group(reports, "G2", {
        "lab-a": on("lab-a", night(5, repeats=3, started="2026-11-22T01:00:00Z"), "G2-lab-a"),
        "lab-b": on("lab-b", night(6, repeats=3, started="2026-11-22T01:00:01Z"), "G2-lab-b")})
    entries = history.write_index(reports)
    assert [(e.path, e.run_id, e.testbed) for e in entries] == [
        (a1.name, "run-1", "lab-a"), (b1.name, "run-2", "lab-b"), ("G1/lab-a", "G1-lab-a", "lab-a"),
        ("G1/lab-b", "G1-lab-b", "lab-b"), ("G2/lab-a", "G2-lab-a", "lab-a"), ("G2/lab-b", "G2-lab-b", "lab-b")]
    assert not any(e.path in ("G1", "G2") for e in entries)      # a group folder is not a run
    assert history.reports_root(g1 / "lab-a") == reports and history.reports_root(a1) == reports
    assert history.reports_root(tmp_path / "elsewhere" / "G" / "x") is None
    # each testbed's run in a group: previous is its own testbed's, from a flat run or another group
    assert [(r, e.path) for r, e in history.baselines_for(reports, g1 / "lab-a")] == [("previous", a1.name)]
    assert [(r, e.path) for r, e in history.baselines_for(reports, g1 / "lab-b")] == [("previous", b1.name)]
    assert [(r, e.path) for r, e in history.baselines_for(reports, g2 / "lab-b")] == [("previous", "G1/lab-b")]
    # pinned by the child's run id (or its path), kept as its path; used for its testbed only
    assert history.pin(reports, "G1-lab-b").path == "G1/lab-b"
    assert history.references(reports) == {"quick": "G1/lab-b"}
    assert [(r, e.path) for r, e in history.baselines_for(reports, g2 / "lab-b")] == [("previous", "G1/lab-b"),
                                                                                       ("reference", "G1/lab-b")]
    assert [r for r, _ in history.baselines_for(reports, g2 / "lab-a")] == ["previous"]
    history.pin(reports, "G1/lab-a")
    assert history.references(reports) == {"quick": "G1/lab-a"}
    history.unpin(reports, "quick")
    # finishing a child run: compared within reports/ (the grandparent), indexed there
    done = finish_run(g2 / "lab-a")
    assert done.problems == [] and [c["run_id"] for c in done.comparisons] == ["G1-lab-a"]
    index = json.loads((reports / "index.json").read_text())
    assert next(r for r in index["runs"] if r["path"] == "G2/lab-a")["compared_with"] == {"previous": "G1-lab-a"}
    page = (reports / "index.html").read_text()
    assert "href='G2/lab-a/report.html'>G2/lab-a</a>" in page and "<td>lab-a</td>" in page
    assert not (g2 / "index.json").exists()
    done = finish_run(g1 / "lab-a", render=False)      # the slower one, against lab-a's flat run
    assert done.regressions == [f"previous run-1: {DP_DROP}"]


def test_history_cli_pins_and_lists_a_testbeds_run_of_a_group(tmp_path):
    reports = tmp_path / "reports"
    write_group(reports, "20261121T010000Z-ab12", {
        "lab-a": on("lab-a", night(1, started="2026-11-21T01:00:00Z"), "20261121T010000Z-ab12-lab-a"),
        "lab-b": on("lab-b", night(2, started="2026-11-21T01:00:01Z"), "20261121T010000Z-ab12-lab-b")})
    cmd = [sys.executable, "-m", "testbed.cli", "history", "--reports-dir", str(reports)]
    r = subprocess.run(cmd + ["pin", "20261121T010000Z-ab12-lab-b"], capture_output=True, text=True, cwd=ROOT,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pinned 20261121T010000Z-ab12/lab-b as the reference of profile quick" in r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0 and "2 run(s)" in r.stdout
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith("20261121T010000Z-ab12/")}
    assert set(lines) == {"20261121T010000Z-ab12/lab-a", "20261121T010000Z-ab12/lab-b"}
    assert "(reference)" in lines["20261121T010000Z-ab12/lab-b"] and "lab-b" in lines["20261121T010000Z-ab12/lab-b"]


# ---------------------------------------------------------------------------------- the profiles

def test_degraded_profile_is_a_canary_of_quick():
    t = load_trial()
    p = t.profile("degraded")
    assert p.compare_with == "quick" and p.degrade
    scen, over = next(iter(p.degrade.items()))
    planned = t.profile("quick").params(scen)[0]
    assert p.injected(scen, planned) == {**planned, **over} != planned


def test_bad_degrade_and_compare_with_name_the_field(tmp_path):
    src = (ROOT / "cases" / "profiles.yaml").read_text()
    bad = src.replace("    compare_with: quick\n", "    compare_with: quik\n").replace(
        "      convergence: {ratio: 64}", "      convergence: {ratoi: 64}")
    f = tmp_path / "profiles.yaml"
    f.write_text(bad)
    with pytest.raises(ProfileError) as exc:
        load_trial(f)
    text = str(exc.value)
    assert "profiles.degraded.compare_with: no profile 'quik'" in text
    assert "profiles.degraded.degrade.convergence.ratoi" in text and "use one of: ratio" in text
    assert f"{f}:" in text

"""`dcilab trial` on the emulated lab: one case end to end leaves a complete report (its windows of
the shared job, the fault window right after the before window, metrics, criteria beside the
trial's numbers, the faults journal, device versions read from the devices) and the lab at its baseline;
Ctrl-C in the middle of a fault undoes it and still writes the summary, marked interrupted."""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.line.control import LineControl
from testbed.faults import Testbed, check_baseline
from testbed.trial.profile import DEFAULT_FILE, load_trial
from testbed.trial.session import BASELINE_TRIES

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]


def trial_cmd(inventory, report: Path, keyword: str, single_site: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    """The single-site job (a job of its own before the cases) only where the test is about it."""
    return [sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(inventory.source), "--profile", "quick",
            "-k", keyword, "--report-dir", str(report), *([] if single_site else ["--no-single-site"])]


def profiles_with(tmp_path: Path, name: str, **settings: object) -> Path:
    """The shipped profiles file plus profile ``name`` (``extends=`` one of them)."""
    import yaml
    data = yaml.safe_load(DEFAULT_FILE.read_text())
    data["profiles"][name] = settings
    f = tmp_path / "profiles.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def at_baseline(inventory) -> None:  # type: ignore[no-untyped-def]
    with Testbed(inventory) as tb:
        assert check_baseline(tb) == []
    assert not list(Path(tb.journal.dir).glob("*.json"))


def test_one_case_leaves_a_complete_report_and_the_lab_at_baseline(emulated_lab, inventory, tmp_path):
    """One case on a shared job: its windows (before, the fault held, after) are whole iterations of
    the job, the fault applied when the iteration after the before window starts and undone after
    ``hold``; the verdict's band comes from the windows before and after it in the same job."""
    rep = tmp_path / "rep"
    r = subprocess.run(trial_cmd(inventory, rep, "bit_errors and 1e-9", single_site=True), cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]     # 1: a criterion failed (reported)
    assert re.search(r"\[trial\] test_bit_errors\[pp-remote-4to1-ber1e-9\]: iteration \d+ [\d.]+ s \(fault\), "
                     r"fault: BitErrors working@1e-09", r.stdout), r.stdout[-3000:]   # live progress
    assert re.search(r"shared job \S+-shared-pp-remote: completed after \d+ iterations, 1 case\(s\)", r.stdout)
    s = json.loads((rep / "summary.json").read_text())
    assert s["status"] == "completed" and s["testbed"]["emulated"] is True
    assert s["testbed"]["transport"]["model"] == "roce-rc" and s["testbed"]["transport"]["modelled"] is True
    (case,) = s["cases"]
    q = load_trial().profile("quick")
    assert case["status"] == "completed" and case["job_id"].endswith("-shared-pp-remote")
    pair = case["paired"]
    before, after = pair["before_steps"], pair["after_steps"]
    assert len(before) == len(after) == q.steady and before == list(range(before[0], before[0] + q.steady))
    assert before[0] >= q.warmup and not any(p["warmup"] for p in case["series"])
    (fault,) = case["faults"]
    held = list(range(fault["applied_step"], fault["undone_step"]))
    assert fault["kind"] == "BitErrors" and fault["applied_step"] > before[-1] and len(held) == q.hold
    assert after[0] > fault["undone_step"] and after == list(range(after[0], after[0] + q.steady))
    assert [p["step"] for p in case["series"]] == before + held + after        # whole iterations, in order
    assert set(pair["set_aside_steps"]) == set(range(before[0], after[-1] + 1)) - set(before + held + after)
    assert fault["details"]["ber_read_back"] == pytest.approx(1e-9)
    assert fault["applied_ns"] < fault["verified_ns"] < fault["undone_ns"]
    m = case["metrics"]
    assert m["fault_step"] == fault["applied_step"] and m["window_steps"] == held
    dur = {p["step"]: p["duration_s"] for p in case["series"]}
    if pair["settled"]:                 # the band is the median of the windows before and after the fault
        assert m["pre_fault_s"] == pytest.approx(statistics.median(dur[k] for k in before + after))
    assert m["reference_before_s"] == pytest.approx(statistics.median(dur[k] for k in before))
    if case["verdict"] == "fail" and m["steady_cv"] > q.noise.max_cv:   # a busy machine: said, not judged
        assert any("too noisy" in x for x in case["problems"]), case["problems"]
    (crit,) = case["criteria"]
    assert crit["id"] == "bit-errors.slowdown" and crit["reference"] == 0.699 and crit["measured"] == m["mean_efficiency"]
    assert case["verdict"] == ("pass" if crit["status"] == "pass" and not case["problems"] else "fail")
    assert (r.returncode == 0) == (case["verdict"] == "pass")
    # the single-site job (measured again when too noisy: a busy machine), then the case's job's windows
    *singles, b = s["baselines"].values()
    local = singles[-1]
    assert 1 <= len(singles) <= 2 and all(x["placement"] == "local" for x in singles), list(s["baselines"])
    assert b["job_id"] == case["job_id"] and b["median_s"] == m["baseline_s"] and b["wan_bytes_per_iteration"] > 0
    # issue 17 item 3: the trial's own baseline, the same four ranks in one site, before the case's job
    assert local["placement"] == "local" and local["wan_bytes_per_iteration"] is None
    assert {x for x in local["nodes"]} == {"dc-a-gpu1", "dc-a-gpu2", "dc-a-gpu3", "dc-a-gpu4"}
    assert s["single_site"]["key"] == local["key"] and s["single_site"]["median_s"] == local["median_s"]
    assert max(p["end_ns"] for p in local["series"]) < min(p["start_ns"] for p in case["series"])
    if local["median_s"] is not None:
        assert m["single_site_s"] == local["median_s"]
        assert m["equivalent_compute_single_site"] == pytest.approx(
            local["median_s"] / statistics.median(dur[k] for k in before))
    else:                                  # too noisy to judge, twice: said in the run's errors
        assert any("single-site baseline not measured" in x["error"] for x in s["errors"]), s["errors"]
    assert case["baseline"]["job_id"] == case["job_id"]
    runs = 1 + m.get("noisy_runs_set_aside", 0)   # a run too noisy to judge is measured again (noise.retries)
    every = [json.loads(x) for x in (rep / "iterations.jsonl").read_text().splitlines()]
    for x in singles:
        assert [y["step"] for y in every if y["job_id"] == x["job_id"]] == [p["step"] for p in x["series"]]
    lines = [x for x in every if x["job_id"] == case["job_id"]]
    assert {x["step"] for x in lines if x["case"] == case["name"]} >= set(before + held + after)
    assert [x["step"] for x in lines] == list(range(len(lines)))            # the whole job, once
    journal = [json.loads(x) for x in (rep / "faults.jsonl").read_text().splitlines()]
    assert [(j["role"], j["kind"]) for j in journal] == [("condition", "ConvergenceRatio"), ("fault", "BitErrors")] * runs
    assert all(j["applied_ns"] < j["undone_ns"] for j in journal)          # both undone, on the record
    snap = json.loads((rep / "testbed.json").read_text())
    assert set(snap["devices"]) == {d.name for d in inventory.devices}
    assert all("error" not in v for v in snap["devices"].values()), snap["devices"]
    props = {p.get("name"): p.get("value") for p in ET.parse(rep / "junit.xml").iter("property")}
    assert "metric.mean_efficiency" in props and "criterion.bit-errors.slowdown" in props
    assert props["transport"] == "roce-rc"
    at_baseline(inventory)


def test_ctrl_c_during_the_fault_undoes_it_and_the_summary_says_interrupted(emulated_lab, inventory, tmp_path):
    rep = tmp_path / "rep"
    t0 = int(time.time()) - 1
    p = subprocess.Popen(trial_cmd(inventory, rep, "switchover"), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        assert p.stdout is not None
        deadline = time.monotonic() + 600
        for line in p.stdout:
            out.append(line)
            if "FiberCut working in effect" in line:
                break
            assert time.monotonic() < deadline, "".join(out[-30:])
        else:
            pytest.fail("the fault never took effect:\n" + "".join(out[-30:]))
        assert LineControl(emulated_lab.line_socket).get()["active_path"] == "protection"
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=120)
        out.append(rest)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 2, "".join(out)[-3000:]             # pytest: interrupted
    s = json.loads((rep / "summary.json").read_text())
    assert s["status"] == "interrupted"
    (case,) = s["cases"]
    assert case["verdict"] == "error" and case["faults"] and case["faults"][0]["kind"] == "FiberCut"
    assert LineControl(emulated_lab.line_socket).get()["active_path"] == "working"
    at_baseline(inventory)
    from testbed.connect import connect_gpu_node
    for n in ("dc-a-gpu1", "dc-b-gpu1"):
        with connect_gpu_node(inventory, n) as node:
            assert node.run("pgrep -af '[w]orkload.train|[d]rivers.probe'; true").stdout.strip() == ""
            # the probe's private folders (its code and logs) are gone from the node too
            left = node.run(f"find /tmp -maxdepth 1 -name 'dcilab-probe-*' -newermt @{t0}").stdout.strip()
            assert left == "", left
    assert list((rep / "logs").glob("probe-*.log")) or list(rep.rglob("probe-*.log")), "the probe's logs were kept"


def test_a_silent_gateway_fails_the_cases_that_need_it_and_the_rest_run(emulated_lab, inventory, tmp_path):
    """dc-b-gw's CLI server is stopped (SIGSTOP: it accepts nothing, like a hung management
    plane; the forwarding in the kernel goes on).  The convergence case needs the gateway and
    fails naming it; the bandwidth drop does not and runs to its verdict."""
    gw = emulated_lab.node("dc-b-gw")
    pids = subprocess.run(["ip", "netns", "pids", gw.netns], capture_output=True, text=True).stdout.split()
    assert pids
    rep = tmp_path / "rep"
    subprocess.run(["kill", "-STOP", *pids], check=True)
    try:
        r = subprocess.run(trial_cmd(inventory, rep, "convergence and pp-remote and 16 or bandwidth_drop and pp-remote"),
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run(["kill", "-CONT", *pids], check=True)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    s = json.loads((rep / "summary.json").read_text())
    assert "dc-b-gw" in s["unreachable"]
    cases = {c["scenario"]: c for c in s["cases"]}
    conv, drop = cases["convergence"], cases["bandwidth_drop"]
    assert conv["verdict"] == "fail" and "dc-b-gw" in " ".join(conv["problems"])
    assert drop["status"] == "completed" and len(drop["series"]) > 0 and drop["criteria"]
    at_baseline(inventory)


def test_per_case_jobs_still_hold_the_fault_and_judge_against_a_baseline_job(emulated_lab, inventory, tmp_path):
    """``jobs: per-case`` (a job per case, a cached baseline job) runs the fault through the same
    hold as the shared jobs (CaseRunner.hold_fault): applied when iteration warmup + steady starts,
    held ``hold`` iterations, undone while the job runs, its window on the record."""
    f = profiles_with(tmp_path, "quick-per-case", extends="quick", jobs="per-case")
    rep = tmp_path / "rep"
    cmd = [sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(inventory.source), "--profile",
           "quick-per-case", "--profiles-file", str(f), "-k", "bit_errors and 1e-10", "--report-dir", str(rep),
           "--no-single-site", "--no-compare"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((rep / "summary.json").read_text())
    (case,) = s["cases"]
    q = load_trial().profile("quick")
    assert case["status"] == "completed" and "-shared-" not in case["job_id"] and "paired" not in case
    # the baseline job: a job of its own, before the case's (measured again when refused as too
    # noisy: a busy machine), the last one the case's reference
    *noisy, b = s["baselines"].values()
    assert len(noisy) <= BASELINE_TRIES - 1 and all("too noisy" in (x["error"] or "") for x in noisy), noisy
    assert b["placement"] == "pp-remote" and b["job_id"] != case["job_id"] and case["baseline"]["key"] == b["key"]
    assert max(p["end_ns"] for p in b["series"]) < min(p["start_ns"] for p in case["series"])
    (fault,) = case["faults"]
    assert fault["kind"] == "BitErrors" and fault["applied_step"] == q.warmup + q.steady
    assert fault["undone_step"] - fault["applied_step"] == q.hold
    assert fault["applied_ns"] < fault["verified_ns"] < fault["undone_ns"]
    assert [p["step"] for p in case["series"]] == list(range(q.warmup + q.steady + q.hold + q.after))
    assert case["metrics"]["fault_step"] == fault["applied_step"]
    journal = [json.loads(x) for x in (rep / "faults.jsonl").read_text().splitlines()]
    assert [(j["role"], j["kind"]) for j in journal][-2:] == [("condition", "ConvergenceRatio"), ("fault", "BitErrors")]
    assert all(j["applied_ns"] < j["undone_ns"] for j in journal)
    at_baseline(inventory)


def test_sixteen_ranks_per_site_train_and_are_judged(emulated_lab, inventory, tmp_path):
    """Issue 18 item 4: the scale profile's TP:PP:DP 4:4:2 (the trial's layout at the PP-remote 16:1
    criterion), 8 ranks on each of two nodes per site: one torchrun per node, 32 ranks, the
    pipeline's first two stages in dc-a and the last two in dc-b, and the case judged on its
    paired windows like any other (or, on a machine too busy for its windows, said to be so).
    The shortest windows a profile allows (warm-up 1, windows of 3): CI's time is budgeted."""
    f = profiles_with(tmp_path, "scale-short", extends="scale", warmup=1, steady=3)
    rep = tmp_path / "rep"
    cmd = [sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(inventory.source), "--profile",
           "scale-short", "--profiles-file", str(f), "-k", "convergence and pp-remote and 16", "--report-dir", str(rep),
           "--no-single-site", "--no-compare"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((rep / "summary.json").read_text())
    (case,) = s["cases"]
    assert case["status"] == "completed", case
    job_dir = rep / "cases" / case["job_id"]
    logs = sorted(p.name for p in job_dir.glob("*.log"))
    assert logs == ["dc-a-gpu1.rank0.log", "dc-a-gpu2.rank1.log", "dc-b-gpu1.rank2.log", "dc-b-gpu2.rank3.log"]
    info = json.loads((job_dir / logs[0]).read_text().split("workload.train: ", 1)[1].splitlines()[0])
    assert (info["world"], info["layout"], info["model"]) == (32, "tp4-pp4-dp2", "tiny-mha")   # 4 torchruns x 8
    assert info["stage_sites"] == [["dc-a"], ["dc-a"], ["dc-b"], ["dc-b"]] and info["cross_site"] == {
        "pp": 8, "dp": 0, "tp": 0}
    (b,) = [x for x in s["baselines"].values() if x["placement"] == "pp-remote"]
    assert b["nproc_per_node"] == 8 and b["nodes"] == ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]
    (crit,) = [c for c in case["criteria"] if c["id"] == "convergence.pp-remote.16"]
    if case["verdict"] in ("pass", "fail"):
        assert crit["status"] == case["verdict"] and 0.0 < case["metrics"]["equivalent_compute"] < 2.0
    else:                               # the honest "cannot judge" of a busy machine, with its reason
        assert any("too noisy" in p for p in case["problems"]), case
    at_baseline(inventory)

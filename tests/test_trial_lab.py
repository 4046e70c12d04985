"""`dcilab trial` on the emulated lab: one case end to end leaves a complete report (series one to
one with the plan, the fault window at the chosen iteration, metrics, criteria beside the trial's
numbers, the faults journal, device versions read from the devices) and the lab at its baseline;
Ctrl-C in the middle of a fault undoes it and still writes the summary, marked interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.line.control import LineControl
from testbed.faults import Testbed, check_baseline
from testbed.trial.profile import load_trial

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]


def trial_cmd(inventory, report: Path, keyword: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(inventory.source), "--profile", "quick",
            "-k", keyword, "--report-dir", str(report)]


def at_baseline(inventory) -> None:  # type: ignore[no-untyped-def]
    with Testbed(inventory) as tb:
        assert check_baseline(tb) == []
    assert not list(Path(tb.journal.dir).glob("*.json"))


def test_one_case_leaves_a_complete_report_and_the_lab_at_baseline(emulated_lab, inventory, tmp_path):
    rep = tmp_path / "rep"
    r = subprocess.run(trial_cmd(inventory, rep, "bit_errors and 1e-9"), cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]     # 1: a criterion failed (reported)
    assert "[trial] test_bit_errors[pp-remote-4to1-ber1e-9]: iteration 7/12" in r.stdout   # live progress
    s = json.loads((rep / "summary.json").read_text())
    assert s["status"] == "completed" and s["testbed"]["emulated"] is True
    assert s["testbed"]["transport"]["model"] == "roce-rc" and s["testbed"]["transport"]["modelled"] is True
    (case,) = s["cases"]
    q = load_trial().profile("quick")
    fault_at, steps = q.warmup + q.steady, q.warmup + q.steady + q.hold + q.after
    assert case["status"] == "completed" and [p["step"] for p in case["series"]] == list(range(steps))
    assert [p["warmup"] for p in case["series"]] == [i < q.warmup for i in range(steps)]
    (fault,) = case["faults"]
    assert fault["kind"] == "BitErrors" and fault["applied_step"] == fault_at
    assert fault["undone_step"] == fault_at + q.hold and fault["details"]["ber_read_back"] == pytest.approx(1e-9)
    assert fault["applied_ns"] < fault["verified_ns"] < fault["undone_ns"]
    m = case["metrics"]
    assert m["fault_step"] == fault_at and m["window_steps"][0] == fault_at
    if m["baseline_s"] is None:          # a busy machine: the case must say so, not judge on noise
        assert case["verdict"] == "fail" and any("too noisy" in x for x in case["problems"]), case["problems"]
    else:
        assert m["baseline_s"] > 0
    (crit,) = case["criteria"]
    assert crit["id"] == "bit-errors.slowdown" and crit["reference"] == 0.699 and crit["measured"] == m["mean_efficiency"]
    assert case["verdict"] == ("pass" if crit["status"] == "pass" and not case["problems"] else "fail")
    assert (r.returncode == 0) == (case["verdict"] == "pass")
    (b,) = s["baselines"].values()
    assert b["median_s"] == m["baseline_s"] and len(b["series"]) == q.warmup + q.baseline_steady
    runs = 1 + m.get("noisy_runs_set_aside", 0)   # a run too noisy to judge is measured again (noise.retries)
    lines = [json.loads(x) for x in (rep / "iterations.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x["case"] == case["name"]) == steps * runs
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

"""The transport model on the emulated lab, end to end: BER 1e-8 interrupts the job the way NCCL
aborts (the line's QP error resets the training's flows), the case records the line's event as the
cause, the fault is undone and the next case runs, on a new job, on a lab at its baseline."""

from __future__ import annotations

import json
import subprocess

import pytest

from emulator.line.control import LineControl
from testbed.emulated_lab import lab_plan
from tests.test_trial_lab import ROOT, at_baseline, trial_cmd

pytestmark = pytest.mark.lab


def test_ber_1e8_is_a_qp_error_that_interrupts_and_the_next_case_runs(emulated_lab, inventory, tmp_path):
    rep = tmp_path / "rep"
    r = subprocess.run(trial_cmd(inventory, rep, "ber1e-8 or (convergence and dp-remote and 4to1)"), cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((rep / "summary.json").read_text())
    ber, conv = s["cases"]                                   # pp-remote's job first
    assert ber["params"]["ber"] == 1e-8 and conv["scenario"] == "convergence"
    o = ber["outcome"]
    assert o["status"] == "interrupted" and o["cause"] == "qp-error", o
    (ev,) = o["line_events"]
    assert ev["kind"] == "qp-error" and ev["cause"] == "sustained-loss"
    assert ev["stalled_ms"] >= ev["retry_budget_ms"]        # no progress for the whole retry budget first
    assert "QP error (sustained-loss)" in o["detail"] and o["job_cause"]
    (fault,) = ber["faults"]
    assert fault["kind"] == "BitErrors" and fault["undone_ns"] > fault["applied_ns"]
    assert conv["status"] == "completed" and conv["outcome"]["status"] == "completed"   # the next case ran
    assert conv["job_id"] != ber["job_id"] and conv["metrics"]["equivalent_compute"] > 0   # on a job of its own
    # the physical 4:1 changes nothing: none of its job's iterations is set aside as changed under it
    assert not [ln for ln in r.stdout.splitlines() if "dp-remote-4to1]: iteration" in ln and "set aside" in ln]
    assert "a new job for dp-remote: it ended: interrupted" in r.stdout, r.stdout[-3000:]
    st = LineControl(lab_plan(inventory).line_socket).get()
    assert st["qp_errors"] >= 1 and st["transport"]["model"] == "roce-rc"
    assert sum(d["working"]["rc_resets"] for d in st["counters"].values()) >= 2   # both ends' flows were reset
    at_baseline(inventory)

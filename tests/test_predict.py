"""dcilab predict: the transport model without a lab (testbed/predict.py, testbed/predict_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.line import roce
from testbed import predict as pr
from testbed.cli import main

ROOT = Path(__file__).resolve().parents[1]
LINE = pr.Line(800, 329, roce.TransportConfig())
W = pr.Workload("pp-remote", 10.78, 7e9)


def test_ber_prediction_is_the_sum_of_its_loss_events() -> None:
    p = pr.at_ber(W, LINE, 1e-9)
    events = roce.packet_loss_probability(1e-9) * 7e9 * 8 / roce.wire_bits()
    per_event = (1 - roce.TAIL_LOSS) * LINE.rtt_s + roce.TAIL_LOSS * roce.ack_timeout_s(20)
    assert p.outcome == "completed" and p.iteration_s == pytest.approx(10.78 + events * per_event)
    assert p.efficiency == pytest.approx(10.78 / p.iteration_s)
    assert pr.at_ber(W, LINE, 0).efficiency == 1.0
    assert pr.at_ber(W, LINE, 1e-10).efficiency > pr.at_ber(W, LINE, 1e-9).efficiency   # monotonic in BER


def test_the_trials_1e8_is_predicted_interrupted_and_1e9_is_not() -> None:
    assert pr.at_ber(W, LINE, 1e-8).outcome == "interrupted"
    assert pr.at_ber(W, LINE, 1e-9).outcome == "completed"
    lim = pr.ber_limits(W, LINE, 0.95)
    assert lim["alarm"] is not None and lim["stop"] is not None and lim["alarm"] < lim["stop"]
    assert 1e-9 < lim["stop"] < 1e-8                       # the calibrated rule sits between the trial's two


def test_outages_wait_for_the_timer_and_exhaust_the_budget() -> None:
    assert pr.at_outage(W, LINE, 0.05).iteration_s == pytest.approx(10.78 + roce.ack_timeout_s(20))
    assert pr.at_outage(W, LINE, 40.0).outcome == "interrupted"
    t14 = pr.Line(800, 329, roce.TransportConfig(timeout=14))
    assert pr.at_outage(W, t14, 3.0).outcome == "interrupted"          # ASON's 3 s past a 0.47 s budget
    adaptive = pr.Line(800, 329, roce.TransportConfig(adaptive_retransmission=True))
    assert pr.at_outage(W, adaptive, 0.05).iteration_s == pytest.approx(10.78 + 0.062)


def test_a_halved_rate_halves_the_window_and_the_go_back_n_cost() -> None:
    at400 = pr.Line(400, 329, roce.TransportConfig())
    assert at400.efficiency(1e-9) == pytest.approx(1 / (1 + roce.packet_loss_probability(1e-9) * 77.2e3 / 2), rel=2e-3)
    assert pr.at_ber(W, at400, 3e-9).outcome == "completed" and pr.at_ber(W, LINE, 3.6e-9).outcome == "interrupted"


def summary(tmp: Path) -> Path:
    run = tmp / "run"
    run.mkdir()
    s = {"testbed": {"emulated": True, "source": str(ROOT / "inventory" / "emulated.yaml"),
                     "transport": {"model": "roce-rc", "modelled": True, "scale": 0.00125, "line_rate_gbps": 800,
                                   "path_km": 329, "timeout": 20, "text": "modelled"}},
         "baselines": {"baseline-tiny-tp1-pp2-dp2-pp-remote": {"median_s": 2.5, "placement": "pp-remote",
                                                               "wan_bytes_per_iteration": 8.4e6}},
         "cases": [{"name": "test_bit_errors[pp-remote-4to1-ber1e-9]", "scenario": "bit_errors",
                    "params": {"placement": "pp-remote", "ber": 1e-9}, "metrics": {"mean_efficiency": 0.6},
                    "outcome": {"status": "completed"}},
                   {"name": "test_bit_errors[pp-remote-4to1-ber1e-8]", "scenario": "bit_errors",
                    "params": {"placement": "pp-remote", "ber": 1e-8}, "metrics": {},
                    "outcome": {"status": "interrupted"}},
                   {"name": "test_protection_switchover[pp-remote-8to1]", "scenario": "switchover",
                    "params": {"placement": "pp-remote"}, "metrics": {"worst_efficiency": 0.4, "disruption_ms": 30},
                    "outcome": {"status": "completed"}}]}
    (run / "summary.json").write_text(json.dumps(s))
    return run


def test_predict_on_a_run_folder_compares_with_the_measured_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = summary(tmp_path)
    assert main(["predict", str(run), "--json", "--plot", str(tmp_path / "eff.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [w["wan_bytes"] for w in out["workloads"]] == [pytest.approx(8.4e6 / 0.00125)]   # scaled to the real line
    vs = {v["case"]: v for v in out["vs_measured"]}
    assert vs["test_bit_errors[pp-remote-4to1-ber1e-8]"]["predicted_outcome"] == "interrupted"
    sw = vs["test_protection_switchover[pp-remote-8to1]"]
    assert sw["predicted"] == pytest.approx(2.5 / (2.5 + roce.ack_timeout_s(20)))
    assert (tmp_path / "eff.png").stat().st_size > 1000


def test_predict_on_a_real_gear_inventory_needs_no_lab() -> None:
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "predict", "-i", "inventory/lab.example.yaml",
                        "--iteration-s", "10.78", "--wan-gb", "7", "--ber", "1e-9", "--outage-ms", "50",
                        "--timeout", "18"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "NCCL_IB_TIMEOUT 18 (ACK timeout 1.07 s)" in r.stdout and "training stops from BER" in r.stdout


@pytest.mark.parametrize("args,msg", [
    (["--iteration-s", "10"], "--iteration-s and --wan-gb go together"),
    (["--iteration-s", "10", "--wan-gb", "7", "--timeout", "40"], "--timeout: must be an integer in 0..31"),
    (["--iteration-s", "10", "--wan-gb", "7", "--rate-gbps", "-400"], "--rate-gbps: must be > 0"),
    (["--iteration-s", "10", "--wan-gb", "7", "--path", "nowhere"], "--path nowhere: no such fiber path"),
    (["/nonexistent/run"], "summary.json: no such file"),
    ([], "give a RUN_DIR"),
])
def test_bad_input_names_the_field(args: list[str], msg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "-i", str(ROOT / "inventory" / "lab.example.yaml"), *args]) == 4
    assert msg in capsys.readouterr().err


def test_a_remeasured_baseline_gives_one_workload_and_each_case_its_own(tmp_path: Path) -> None:
    s = json.loads((summary(tmp_path) / "summary.json").read_text())
    s["baselines"]["baseline-tiny-tp1-pp2-dp2-pp-remote-2"] = {"median_s": 5.0, "placement": "pp-remote",
                                                               "wan_bytes_per_iteration": 8.4e6}
    s["cases"][2]["baseline"] = {"key": "baseline-tiny-tp1-pp2-dp2-pp-remote-2"}
    loads = pr.per_placement(pr.workloads_from_summary(s))
    assert [(w.placement, w.iteration_s) for w in loads] == [("pp-remote", 5.0)]     # the latest
    line = pr.Line(800, 329, roce.TransportConfig())
    sw = [v for v in pr.predicted_vs_measured(s, line) if "switchover" in v["case"]][0]
    assert sw["predicted"] == pytest.approx(5.0 / (5.0 + roce.ack_timeout_s(20)))     # its own baseline

"""The fidelity table (testbed/report/fidelity.py): which effect each case shows, and whether the
emulated lab met the target it is held to; rendered in the report of an emulated run only."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from testbed.report import fidelity
from testbed.report.html import render

DATA = Path(__file__).parent / "data"


def case(name: str, scenario: str, params: dict, metrics: dict, status: str = "completed", cause: str | None = None) -> dict:
    return {"name": f"test_{scenario}[{name}]", "scenario": scenario, "params": params, "metrics": metrics,
            "outcome": {"status": status, "cause": cause}, "verdict": "pass"}


SUMMARY = {"testbed": {"emulated": True, "transport": {"model": "roce-rc", "text": "modelled RoCEv2 RC"}}, "cases": [
    case("ber1e-10", "bit_errors", {"placement": "pp-remote", "ber": 1e-10}, {"mean_efficiency": 0.9}),
    case("ber1e-9", "bit_errors", {"placement": "pp-remote", "ber": 1e-9}, {"mean_efficiency": 0.5}),
    case("ber1e-8", "bit_errors", {"placement": "pp-remote", "ber": 1e-8}, {"outcome": "interrupted"},
         "interrupted", "connection-reset"),
    case("sw", "switchover", {"placement": "pp-remote"}, {"affected_iterations": 1, "worst_efficiency": 0.42}),
    case("rr", "reroute", {"placement": "pp-remote"}, {"affected_iterations": 0}, "interrupted", "connection-reset"),
    case("pp", "bandwidth_drop", {"placement": "pp-remote"}, {"mean_efficiency": 0.97}),
    case("dp", "bandwidth_drop", {"placement": "dp-remote"}, {"affected_iterations": 3}),
]}


def test_each_effect_is_judged_against_its_target() -> None:
    met = {r["effect"]: r["met"] for r in fidelity.rows(SUMMARY)}
    assert met == {"BER 1e-10..1e-9, PP-remote 4:1": True,       # mean of 0.9 and 0.5 = 0.7
                   "BER 1e-8": True, "50 ms 1+1 switchover": True,
                   "ASON reroute": True,                           # interrupted counts: the timeout decides
                   "800G -> 400G, PP-remote": True, "800G -> 400G, DP-remote": False}


def test_a_missed_target_and_a_scenario_not_run() -> None:
    s = copy.deepcopy(SUMMARY)
    s["cases"][3]["metrics"] = {"affected_iterations": 1, "worst_efficiency": 0.9}   # switchover barely felt
    s["cases"] = [c for c in s["cases"] if c["scenario"] != "bandwidth_drop"]
    met = {r["effect"]: r["met"] for r in fidelity.rows(s)}
    assert met["50 ms 1+1 switchover"] is False
    assert met["800G -> 400G, PP-remote"] is None and met["800G -> 400G, DP-remote"] is None
    text = fidelity.text(s)
    assert "transport: modelled RoCEv2 RC" in text and "not run" in text
    assert "interrupted (connection-reset)" in text


def test_the_report_shows_the_table_and_the_transport_on_an_emulated_run_only() -> None:
    summary = json.loads((DATA / "summary-quick.json").read_text())
    summary["testbed"]["transport"] = {"model": "roce-rc", "text": "modelled RoCEv2 RC imposed on TCP"}
    n = len(summary["cases"])
    html = render(summary, None, None, [[] for _ in range(n)], [])
    assert "Fidelity to the field trial" in html
    assert html.count("modelled RoCEv2 RC imposed on TCP") >= 3        # testbed table, verdicts, fidelity
    summary["testbed"]["emulated"] = False
    summary["testbed"]["transport"] = {"model": "gear", "text": "the gear's own transport"}
    n = len(summary["cases"])
    html = render(summary, None, None, [[] for _ in range(n)], [])
    assert "Fidelity to the field trial" not in html and "the gear&#x27;s own transport" in html

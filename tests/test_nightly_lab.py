"""Nightly acceptance on the emulated lab: two nightly runs in a row produce a comparison, and a
deliberately degraded run (a stronger fault injected through a profile) is flagged as a
regression, in its report, in the history index and in `dcilab trial`'s exit code.

To fit CI the nightly is cut to one case (dp-remote at 16:1) repeated twice; the canary profile
runs the same case names with the WAN shaped to 64:1 instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
CASE = "test_convergence_ratio[dp-remote-16to1]"


def profiles_file(tmp_path: Path) -> Path:
    """cases/profiles.yaml (its criteria) plus a two-repeat nightly and its canary."""
    data = yaml.safe_load((ROOT / "cases" / "profiles.yaml").read_text())
    # max_cv: this test is about the comparison; a baseline refused as too noisy on a busy CI
    # machine (tests/test_trial_lab.py checks that refusal) would leave nothing to compare
    data["profiles"]["nightly-mini"] = {"extends": "quick", "repeats": 2, "noise": {"max_cv": 0.3},
                                        "description": "the nightly cut to one case, twice"}
    data["profiles"]["canary-mini"] = {"extends": "nightly-mini", "compare_with": "nightly-mini",
                                       "degrade": {"convergence": {"ratio": 64}},
                                       "description": "the same case names, the WAN at 64:1"}
    f = tmp_path / "profiles.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def trial(inventory, profiles: Path, reports: Path, profile: str, run_id: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    cmd = [sys.executable, "-m", "testbed.cli", "trial", "--inventory", str(inventory.source), "--profile", profile,
           "--profiles-file", str(profiles), "-k", "convergence and dp-remote-16to1", "--run-id", run_id,
           "--report-dir", str(reports / run_id), "--no-single-site"]
    r = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode in (0, 1, 3), r.stdout[-3000:] + r.stderr[-3000:]
    return r


def comparisons(reports: Path, run_id: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads((reports / run_id / "comparison.json").read_text())["comparisons"]


def test_two_nightly_runs_compare_and_the_degraded_canary_is_a_regression(emulated_lab, inventory, tmp_path):
    profiles, reports = profiles_file(tmp_path), tmp_path / "reports"
    r1 = trial(inventory, profiles, reports, "nightly-mini", "night-1")
    assert "nothing to compare" in r1.stdout or "no earlier run" in r1.stdout
    assert r1.returncode in (0, 1) and comparisons(reports, "night-1") == []
    s1 = json.loads((reports / "night-1" / "summary.json").read_text())
    assert [c["name"] for c in s1["cases"]] == [CASE[:-1] + "-run1]", CASE[:-1] + "-run2]"]
    assert all(c["status"] == "completed" for c in s1["cases"]), [c.get("problems") for c in s1["cases"]]

    # the second night: compared with the previous night, case by case over both repeats.  On a
    # busy machine a night can end "not-comparable" (its case had no efficiency samples: a baseline
    # refused as too noisy); that is the honest outcome, so the night is run again (at most twice
    # more) until the comparison can judge, and the test says which night it judged.
    nights = ["night-1"]
    for attempt in ("night-2", "night-2b", "night-2c"):
        r2 = trial(inventory, profiles, reports, "nightly-mini", attempt)
        (c2,) = comparisons(reports, attempt)
        assert c2["role"] == "previous" and c2["run_id"] == nights[-1]
        nights.append(attempt)
        (ch,) = c2["cases"]
        if ch["status"] != "not-comparable":
            break
        assert ch["reason"], ch                                   # never without saying why
    night2 = nights[-1]
    assert ch["key"] == CASE and ch["status"] in ("unchanged", "improvement", "regression"), ch
    assert min(ch["n"]) >= 2 * 4 and ch["p_adjusted"] is not None, ch      # 2 repeats x the steady window
    assert (r2.returncode == 3) == bool(c2["regressions"]), r2.stdout[-2000:]
    page = (reports / night2 / "report.html").read_text()
    assert "Compared with earlier runs" in page and "Across repeats" in page and nights[-2] in page

    # pin the first night; the canary compares with the lineage it names and must regress
    pin = subprocess.run([sys.executable, "-m", "testbed.cli", "history", "--reports-dir", str(reports), "pin",
                          "night-1"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert pin.returncode == 0, pin.stdout + pin.stderr
    r3 = trial(inventory, profiles, reports, "canary-mini", "canary")
    assert r3.returncode == 3, r3.stdout[-3000:]
    assert f"REGRESSION {CASE}" in r3.stdout and "dcilab trial: exit 3" in r3.stdout
    comps = {c["role"]: c for c in comparisons(reports, "canary")}
    assert comps["previous"]["run_id"] == night2 and comps["reference"]["run_id"] == "night-1"
    assert all(c["regressions"] == [CASE] for c in comps.values()), comps
    s3 = json.loads((reports / "canary" / "summary.json").read_text())
    assert all(c["degraded"] == {"ratio": 64} and c["params"]["ratio"] == 64 for c in s3["cases"])
    page = (reports / "canary" / "report.html").read_text()
    assert "Degraded (canary) run" in page and "regression" in page
    index = json.loads((reports / "index.json").read_text())
    assert [x["run_id"] for x in index["runs"]] == [*nights, "canary"]
    assert index["runs"][-1]["regressions"] == {"previous": [CASE], "reference": [CASE]}
    assert index["references"] == {"nightly-mini": "night-1"}

"""The trial framework without a lab: the metrics from a series, the profiles and criteria file
(and its errors), verdicts beside the trial's numbers, and the suite end to end as a dry run
(every case planned, `-k` selecting one scenario, capabilities skipping with their reason)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.trial import analysis
from testbed.trial.analysis import Point
from testbed.trial.profile import DEFAULT_FILE, ProfileError, load_trial
from testbed.trial.verdict import FAIL, NOT_MEASURED, OBSERVED, PASS, check, verdict

ROOT = Path(__file__).resolve().parents[1]
EMULATED = ROOT / "inventory" / "emulated.yaml"


def series(durations: list[float], warmup: int = 2, t0_ns: int = 10**18) -> list[Point]:
    out, t = [], t0_ns
    for i, d in enumerate(durations):
        end = t + int(d * 1e9)
        out.append(Point(step=i, duration_s=d, warmup=i < warmup, start_ns=t, end_ns=end, received_ns=end))
        t = end
    return out


# ------------------------------------------------------------------------------------ analysis


def test_noise_band_is_robust_to_one_odd_iteration() -> None:
    b = analysis.noise_band([1.0, 1.01, 0.99, 1.0, 3.0], mad_k=3.0, floor=0.05)
    assert b.center_s == 1.0 and b.high_s == pytest.approx(1.05)     # the 3.0 does not widen it
    wide = analysis.noise_band([1.0, 1.2, 0.8, 1.1, 0.9], mad_k=3.0, floor=0.05)
    assert wide.high_s == pytest.approx(1.0 + 3 * 1.4826 * 0.1)
    with pytest.raises(ValueError, match="no steady iterations"):
        analysis.noise_band([])


def test_one_slow_iteration_after_the_fault_is_the_only_affected_one() -> None:
    s = series([3.0, 2.0, 1.0, 1.02, 0.98, 1.0, 1.5, 1.0, 1.01, 0.99])
    applied = s[6].start_ns + 100_000_000
    imp = analysis.impact(s, fault_step=6, baseline_s=0.9, applied_ns=applied)
    assert imp.pre_fault_s == pytest.approx(1.0) and imp.affected_steps == [6] and imp.worst_step == 6
    assert imp.worst_efficiency == pytest.approx(1 / 1.5) and imp.worst_equivalent_compute == pytest.approx(0.6)
    assert imp.window_steps == [6, 7, 8, 9]                 # held to the end of the run
    assert imp.mean_efficiency == pytest.approx(1.0 / ((1.5 + 1.0 + 1.01 + 0.99) / 4))
    assert imp.recovery_s == pytest.approx((s[6].received_ns - applied) / 1e9)
    assert imp.noisy_before == []


def test_a_held_fault_counts_its_window_and_a_lasting_slowdown_is_every_iteration() -> None:
    s = series([2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.4, 1.4, 1.4, 1.0, 1.0])
    imp = analysis.impact(s, fault_step=6, undo_step=8)
    assert imp.window_steps == [6, 7, 8] and imp.affected_steps == [6, 7, 8]
    assert imp.mean_efficiency == pytest.approx(1 / 1.4) and imp.equivalent_compute is None   # no baseline given
    none = analysis.impact(series([2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.03, 0.97]), fault_step=6)
    assert none.affected_steps == [] and none.recovery_s is None


def test_equivalent_compute_is_baseline_over_the_median() -> None:
    assert analysis.equivalent_compute(1.0, [1.0, 1.25, 1.25, 4.0]) == pytest.approx(0.8)
    assert analysis.per_iteration(series([2.0, 0.0]), 1.0) == [0.5, None]


# ------------------------------------------------------------------------------------ profiles


def test_the_shipped_profiles_load_and_expand_to_the_trial_cases() -> None:
    t = load_trial()
    quick = t.profile("quick")
    assert [p["ratio"] for p in quick.params("convergence")] == [4, 8, 16, 4, 8, 16]
    assert [p["ber"] for p in quick.params("bit_errors")] == [1e-10, 1e-9, 1e-8]
    assert t.profile("nightly").repeats == 3 and t.profile("nightly").steady == t.profile("full").steady == 8
    ids = [c.id for c in t.criteria_for(quick, "convergence", {"placement": "pp-remote", "ratio": 16})]
    assert ids == ["convergence.pp-remote.16"]
    c = t.criteria_for(quick, "convergence", {"placement": "pp-remote", "ratio": 16})[0]
    assert (c.op, c.value, c.reference.value) == (">=", 0.95, 0.95)   # the trial's number is the default
    with pytest.raises(ProfileError, match="no profile 'weekly'"):
        t.profile("weekly")


def test_profile_errors_name_file_line_field_and_fix(tmp_path: Path) -> None:
    text = DEFAULT_FILE.read_text()
    bad = text.replace("    steady: 4\n", "    steady: 1\n    stedy: 4\n", 1).replace("extends: full", "extends: fulll")
    bad = bad.replace("    op: \">=\"\n    value: 0.95\n", "    op: \">=\"\n", 1)
    f = tmp_path / "profiles.yaml"
    f.write_text(bad)
    with pytest.raises(ProfileError) as e:
        load_trial(f)
    msg = str(e.value)
    assert f"{f}:" in msg
    assert "needs a value" in msg                               # criterion without threshold
    f.write_text(text.replace("    steady: 4\n", "    steady: 1\n    stedy: 4\n", 1))
    with pytest.raises(ProfileError) as e:
        load_trial(f)
    lines = str(e.value).splitlines()
    assert any("profiles.quick.stedy: unknown field" in x for x in lines)
    assert any("profiles.quick.steady: Input should be greater than or equal to 3" in x for x in lines)
    f.write_text(text.replace("extends: full", "extends: fulll"))
    with pytest.raises(ProfileError, match=r"profiles.nightly.extends: extends unknown profile 'fulll'\n    fix: name one of"):
        load_trial(f)
    for empty in ("", "# nothing\n", "- a list\n"):                  # no field to name: line 1 (found by fuzzing)
        f.write_text(empty)
        with pytest.raises(ProfileError) as e:
            load_trial(f)
        assert [(p.line, p.field) for p in e.value.problems] == [(1, "")], str(e.value)
        assert "must be a YAML mapping (version:, profiles:, criteria:)" in str(e.value)
    f.write_text(text.replace("extends: full", "extends: [full]"))   # a list: TypeError before (found by probing)
    with pytest.raises(ProfileError, match=r"profiles.nightly.extends: extends names one profile, not list \['full'\]"):
        load_trial(f)
    f.write_text(text + "  - id: switchover.affected\n    scenario: switchover\n    metric: x\n    op: observe\n"
                 "    reference: {text: t}\n")
    with pytest.raises(ProfileError, match="criterion id 'switchover.affected' is used twice"):
        load_trial(f)


def test_a_profile_overrides_a_criterion_by_id(tmp_path: Path) -> None:
    f = tmp_path / "profiles.yaml"
    f.write_text(DEFAULT_FILE.read_text().replace(
        "    repeats: 3\n", "    repeats: 3\n    criteria: [{id: switchover.disruption, value: 30}]\n"))
    t = load_trial(f)
    (c,) = [x for x in t.criteria_for(t.profile("nightly"), "switchover", {}) if x.id == "switchover.disruption"]
    assert c.value == 30 and c.reference.value == 50
    (q,) = [x for x in t.criteria_for(t.profile("quick"), "switchover", {}) if x.id == "switchover.disruption"]
    assert q.value == 50


# ------------------------------------------------------------------------------------ verdicts


def test_verdicts_report_the_trials_number_beside_the_measured_one() -> None:
    t = load_trial()
    q = t.profile("quick")
    (slow,) = t.criteria_for(q, "bit_errors", {"ber": 1e-9})
    ok = check(slow, {"mean_efficiency": 0.97}, emulated=True)
    assert ok.status == PASS and ok.deviation == "measured 0.97, the trial 0.699" and "goes back N" in ok.emulation
    assert check(slow, {"mean_efficiency": 0.97}, emulated=False).emulation is None
    bad = check(slow, {"mean_efficiency": 0.5}, emulated=False)
    assert bad.status == FAIL and verdict([ok, bad]) == FAIL
    missing = check(slow, {}, emulated=False)
    assert missing.status == NOT_MEASURED and verdict([missing]) == FAIL
    (obs,) = t.criteria_for(q, "bit_errors", {"ber": 1e-8})
    o = check(obs, {"outcome": "completed"}, emulated=True)
    assert o.status == OBSERVED and o.deviation == "measured 'completed', the trial 'interrupted'"
    assert verdict([o, ok]) == PASS


# ------------------------------------------------------------------------------------ the suite, dry


def dcilab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_dry_run_plans_every_case_of_the_quick_profile_and_writes_the_summary(tmp_path: Path) -> None:
    r = dcilab("trial", "--inventory", str(EMULATED), "--profile", "quick", "--dry-run", "--report-dir",
               str(tmp_path / "rep"))
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s["status"] == "completed" and s["profile"]["name"] == "quick"
    got = sorted((c["scenario"], c["verdict"]) for c in s["cases"])
    assert [x[0] for x in got].count("convergence") == 6 and len(got) == 13
    assert {x[1] for x in got} == {"planned"}
    cut = next(c for c in s["cases"] if c["scenario"] == "reroute")["plan"]
    assert [x["kind"] for x in cut["conditions"]] == ["ConvergenceRatio", "ProtectionSwitch"]
    assert cut["fault"]["kind"] == "FiberCut" and "--steps" in cut["job"]["workload_args"]
    assert (tmp_path / "rep" / "junit.xml").exists() and (tmp_path / "rep" / "testbed.json").exists()
    assert f"report in {tmp_path / 'rep'}" in r.stdout


def test_the_dry_run_prints_the_job_plan_one_shared_job_per_placement(tmp_path: Path) -> None:
    """Issue 17: cases of one placement share a job, placements in the order they first appear,
    BER 1e-8 (the trial saw it end training) last in its job; ``jobs: per-case`` plans a job each."""
    r = dcilab("trial", "--inventory", str(EMULATED), "--profile", "quick", "--dry-run", "--report-dir",
               str(tmp_path / "rep"))
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    local, pp, dp = s["job_plan"]        # issue 17 item 3: the single-site job first, four ranks in dc-a
    assert local["placement"] == "local" and local["cases"] == ["single-site baseline"]
    assert local["nodes"] == ["dc-a-gpu1", "dc-a-gpu2", "dc-a-gpu3", "dc-a-gpu4"]
    assert pp["placement"] == "pp-remote" and dp["placement"] == "dp-remote"
    assert pp["nodes"] == dp["nodes"] == ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]   # two per site
    assert len(pp["cases"]) == 9 and len(dp["cases"]) == 4 and pp["cases"][-1].endswith("ber1e-8]")
    assert [c["name"] for c in s["cases"]] == pp["cases"] + dp["cases"]          # the order they run in
    q = load_trial().profile("quick")
    assert pp["duration_s"] == round(q.job_start_s + pp["iterations"] * q.iteration_s)
    assert "job 2 (pp-remote on dc-a-gpu1, dc-a-gpu2, dc-b-gpu1, dc-b-gpu2): 9 case(s)" in r.stdout
    assert "planned: 3 job(s)" in r.stdout and "of shared job 2 (pp-remote)" in r.stdout

    data = json.loads(json.dumps(__import__("yaml").safe_load(DEFAULT_FILE.read_text())))
    data["profiles"]["quick-per-case"] = {"extends": "quick", "jobs": "per-case"}
    f = tmp_path / "profiles.yaml"
    f.write_text(__import__("yaml").safe_dump(data, sort_keys=False))
    r = dcilab("trial", "--inventory", str(EMULATED), "--profile", "quick-per-case", "--profiles-file", str(f),
               "--dry-run", "--report-dir", str(tmp_path / "rep2"))
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads((tmp_path / "rep2" / "summary.json").read_text())["job_plan"]
    assert len(plan) == 14 and all(len(j["cases"]) == 1 for j in plan)
    r = dcilab("trial", "--inventory", str(EMULATED), "--profile", "quick", "--dry-run", "--no-single-site",
               "--report-dir", str(tmp_path / "rep3"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [j["placement"] for j in json.loads((tmp_path / "rep3" / "summary.json").read_text())["job_plan"]] \
        == ["pp-remote", "dp-remote"]


def test_a_shared_jobs_fault_is_judged_against_the_windows_before_and_after_it() -> None:
    """The band comes from the unimpaired windows around the fault when they are given (a shared
    job): a slow machine before the fault and a fast one after do not both count as the fault."""
    pts = series([3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.5, 1.0, 1.0])
    before, after = [1.0, 1.0, 1.0, 1.0], [1.01, 0.99, 1.0, 1.0]
    imp = analysis.impact(pts, 6, undo_step=7, reference=before + after)
    assert imp.affected_steps == [6] and imp.pre_fault_s == pytest.approx(1.0)
    assert imp.worst_efficiency == pytest.approx(0.4) and imp.window_steps == [6, 7]
    drifted = analysis.impact(pts, 6, undo_step=7, reference=[1.2, 1.2, 1.2, 1.2] + after)
    assert drifted.pre_fault_s == pytest.approx(1.105) and drifted.band.cv > imp.band.cv


def test_k_selects_one_scenario_and_a_bad_profile_is_a_clear_error(tmp_path: Path) -> None:
    r = dcilab("trial", "--dry-run", "-k", "switchover", "--report-dir", str(tmp_path / "one"))
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert [c["scenario"] for c in s["cases"]] == ["switchover"]
    r = dcilab("trial", "--dry-run", "--profile", "weekly", "--report-dir", str(tmp_path / "bad"))
    assert r.returncode != 0 and "no profile 'weekly'" in r.stdout + r.stderr and "quick, full, nightly" in r.stdout + r.stderr


def test_a_testbed_without_restoration_path_skips_the_reroute_with_that_reason(tmp_path: Path) -> None:
    text = EMULATED.read_text().replace("    restoration_paths: [restoration]\n", "")
    f = tmp_path / "inv.yaml"
    f.write_text(text.replace("../.venv", str(ROOT / ".venv")))
    r = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "cases"), "--inventory", str(f), "--dry-run",
                        "-k", "reroute or switchover", "-rs", "-p", "no:cacheprovider", "--report-dir",
                        str(tmp_path / "rep")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SKIPPED [1] cases/test_reroute.py" in r.stdout and "no restoration path in this inventory" in r.stdout
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert [c["scenario"] for c in s["cases"]] == ["switchover"]   # the planned one; the skipped one never ran


# ------------------------------------------------------------------------------------ baselines


def per_case(t: Any) -> Any:
    """The quick profile with a job per case, judged against a cached baseline job (``jobs: per-case``)."""
    return t.profile("quick").model_copy(update={"jobs": "per-case"})


class ScriptedRunner:
    """Stands in for the job runner (no lab): returns the series it is given, counts the jobs."""

    writer = None    # no metrics store

    def __init__(self, durations: list[float]) -> None:
        self.durations, self.jobs = durations, []

    def run(self, case, scenario, spec, **kw):  # type: ignore[no-untyped-def]
        from testbed.trial.runner import CaseRun
        self.jobs.append((case, spec.placement))
        return CaseRun(f"job{len(self.jobs)}", spec, series(self.durations, warmup=spec.warmup),
                       {"status": "completed"}, [], [], None, None, "", 0, 0)


def test_the_baseline_is_cached_per_placement_refreshed_when_old_and_refused_when_noisy(tmp_path: Path) -> None:
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess
    inv, t = load_inventory(EMULATED), load_trial()
    s = sess.TrialSession(inv, t, per_case(t), "r1", tmp_path, dry_run=True)
    s.off_baseline = lambda: []                                       # type: ignore[method-assign]
    s.runner = ScriptedRunner([3.0, 2.0, 1.0, 1.02, 0.98, 1.0, 1.01])  # type: ignore[assignment]
    planned = s.baseline("pp-remote")                                 # a dry run plans, runs nothing
    assert not planned.ok and planned.error == "dry run: not measured" and s.runner.jobs == []
    s.baselines.clear()
    s.dry_run = False                                                 # the scripted runner from here
    b = s.baseline("pp-remote")
    assert b.ok and b.median_s == pytest.approx(1.0) and s.baseline("pp-remote") is b
    s.baseline("dp-remote")
    assert s.runner.jobs == [("baseline-tiny-tp1-pp2-dp2-pp-remote", "pp-remote"),
                             ("baseline-tiny-tp1-pp2-dp2-dp-remote", "dp-remote")]
    b.measured_at -= t.profile("quick").baseline_max_age_s + 1         # older than the profile allows
    again = s.baseline("pp-remote")
    assert again is not b and s.runner.jobs[-1][0] == "baseline-tiny-tp1-pp2-dp2-pp-remote-2"
    assert set(json.loads((tmp_path / "summary.json").read_text())["baselines"]) == {
        "baseline-tiny-tp1-pp2-dp2-pp-remote", "baseline-tiny-tp1-pp2-dp2-dp-remote",
        "baseline-tiny-tp1-pp2-dp2-pp-remote-2"}
    s.baselines.clear()
    s._tries.clear()
    s.runner = ScriptedRunner([3.0, 2.0, 1.0, 1.5, 0.7, 1.3, 0.8])   # type: ignore[assignment]
    noisy = s.baseline("pp-remote")                                   # noisy every time: 3 jobs, then refused
    assert not noisy.ok and "too noisy" in (noisy.error or "") and len(s.runner.jobs) == sess.BASELINE_TRIES
    assert s.baseline("pp-remote") is noisy and len(s.runner.jobs) == sess.BASELINE_TRIES   # no more in this run


def test_a_baseline_refused_as_too_noisy_is_measured_again_before_the_cases_give_up(tmp_path: Path) -> None:
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess
    inv, t = load_inventory(EMULATED), load_trial()
    s = sess.TrialSession(inv, t, per_case(t), "r1", tmp_path, dry_run=False)
    s.off_baseline = lambda: []                                       # type: ignore[method-assign]

    class Busy(ScriptedRunner):                                       # the machine was busy for the first job
        def run(self, case, scenario, spec, **kw):  # type: ignore[no-untyped-def]
            self.durations = [3.0, 2.0, 1.0, 1.5, 0.7, 1.3, 0.8] if not self.jobs else [3.0, 2.0, 1.0, 1.02, 0.98, 1.0, 1.01]
            return super().run(case, scenario, spec, **kw)
    s.runner = Busy([])                                               # type: ignore[assignment]
    b = s.baseline("pp-remote")
    assert b.ok and b.median_s == pytest.approx(1.0)
    assert [j[0] for j in s.runner.jobs] == ["baseline-tiny-tp1-pp2-dp2-pp-remote",
                                             "baseline-tiny-tp1-pp2-dp2-pp-remote-2"]
    kept = json.loads((tmp_path / "summary.json").read_text())["baselines"]
    assert "too noisy" in kept["baseline-tiny-tp1-pp2-dp2-pp-remote"]["error"]   # the refused one stays on record


def test_the_frameworks_own_tests_write_no_trial_report() -> None:
    reports = ROOT / "reports"
    before = set(reports.iterdir()) if reports.exists() else set()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_trial.py", "-k",
                        "noise_band"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (set(reports.iterdir()) if reports.exists() else set()) == before and "junit.xml" not in r.stdout


def test_a_case_too_noisy_to_judge_is_measured_again_and_gives_up_after_its_retries(tmp_path: Path) -> None:
    """Issue 17: a busy few seconds make one case's steady window too noisy; it is run again
    (noise.retries, 1 in quick) and the steady run is judged; noisy every time, it fails saying so."""
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess
    inv, t = load_inventory(EMULATED), load_trial()
    s = sess.TrialSession(inv, t, per_case(t), "r1", tmp_path, dry_run=False)
    s.off_baseline = lambda: []                                       # type: ignore[method-assign]
    steady, noisy = [3.0, 2.0, 1.0, 1.02, 0.98, 1.0, 1.01], [3.0, 2.0, 1.0, 1.5, 0.7, 1.3, 0.8]

    class Busy(ScriptedRunner):                                       # the first case job ran on a busy machine
        def run(self, case, scenario, spec, **kw):  # type: ignore[no-untyped-def]
            self.durations = noisy if case.startswith("conv") and self.busy else steady
            self.busy = self.busy - 1 if case.startswith("conv") else self.busy
            return super().run(case, scenario, spec, **kw)
    s.runner = Busy([])                                               # type: ignore[assignment]
    s.runner.busy = 1
    props: list[tuple[str, Any]] = []
    case = sess.CaseContext(s, "c1", "conv[pp-remote-4to1]", "convergence", {"placement": "pp-remote", "ratio": 4},
                            lambda k, v: props.append((k, v)))
    base = s.baseline("pp-remote")
    run = case.run("pp-remote")
    m = case.steady_metrics(run, base)
    assert m["steady_cv"] > t.profile("quick").noise.max_cv
    assert case.conclude(run, base, m) != "fail"
    got = json.loads((tmp_path / "summary.json").read_text())["cases"][0]
    assert got["metrics"]["noisy_runs_set_aside"] == 1 and got["metrics"]["steady_cv"] < 0.1
    assert [j[0] for j in s.runner.jobs].count("conv[pp-remote-4to1]") == 2 and got["problems"] == []

    s.runner.busy = 99                                                # noisy every time: 1 + retries runs, then it fails
    case = sess.CaseContext(s, "c2", "conv[pp-remote-8to1]", "convergence", {"placement": "pp-remote", "ratio": 8},
                            lambda k, v: None)
    run = case.run("pp-remote")
    with pytest.raises(pytest.fail.Exception, match="too noisy to judge"):
        case.conclude(run, base, case.steady_metrics(run, base))
    assert [j[0] for j in s.runner.jobs].count("conv[pp-remote-8to1]") == 1 + t.profile("quick").noise.retries


def test_the_watchdog_waits_longer_than_the_qp_retry_budget(tmp_path: Path) -> None:
    """A QP error (retry_cnt x ACK timeout without progress: 30 s at NCCL's defaults) must end a job
    before the watchdog calls it stalled (CI saw BER 1e-8 reported as 'stalled' at 30.1 s when the
    bound was 30 s and the QP error came a few hundred ms later)."""
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess
    from testbed.trial.transport import transport_in_force
    inv, t = load_inventory(EMULATED), load_trial()
    budget = transport_in_force(inv)["retry_budget_s"]
    s = sess.TrialSession(inv, t, per_case(t), "r1", tmp_path, dry_run=True)
    assert s.spec("pp-remote", 10).min_stall_s == pytest.approx(budget + sess.STALL_MARGIN_S) and budget > 30
    tcp = tmp_path / "tcp.yaml"
    tcp.write_text(EMULATED.read_text().replace("model: roce-rc", "model: none").replace("../.venv", str(ROOT / ".venv")))
    assert sess.min_stall_s(load_inventory(tcp)) == 30.0


def test_the_cases_left_on_a_job_whose_undo_failed_are_not_run_with_that_reason(tmp_path: Path) -> None:
    """Issue 17: a fault whose undo fails mid-job stops that job; the cases left on its placement
    are reported as not run, with the reason, instead of running on a lab in doubt."""
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess
    inv, t = load_inventory(EMULATED), load_trial()
    s = sess.TrialSession(inv, t, t.profile("quick"), "r1", tmp_path, dry_run=False)
    s.off_baseline = lambda: []                                       # type: ignore[method-assign]
    why = "the undo failed in bit_errors[1e-9] on this job's placement: UndoFailed: dci-a-roadm did not answer"
    s.pool.stopped[s.spec("pp-remote", 10).baseline_key()] = why
    case = sess.CaseContext(s, "c1", "conv[pp-remote-8to1]", "convergence", {"placement": "pp-remote", "ratio": 8},
                            lambda k, v: None)
    run = case.run("pp-remote", conditions=[s.faults.convergence(8)])
    assert run.status == "not-run" and run.error == f"not run: {why}" and run.series == []
    base = s.baseline("pp-remote")
    with pytest.raises(pytest.fail.Exception, match="undo failed in bit_errors"):
        case.conclude(run, base, case.steady_metrics(run, base))
    got = json.loads((tmp_path / "summary.json").read_text())["cases"][0]
    assert got["verdict"] == "fail" and got["problems"] == [f"not run: {why}"]


def test_a_case_judged_only_on_its_outcome_is_not_refused_as_too_noisy(tmp_path: Path) -> None:
    """BER 1e-8's only criterion is whether training was interrupted: a noisy window before the
    fault cannot make that unjudgeable (a quiet bench run reported it "not measured")."""
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess
    inv, t = load_inventory(EMULATED), load_trial()
    s = sess.TrialSession(inv, t, per_case(t), "r1", tmp_path, dry_run=False)
    s.off_baseline = lambda: []                                       # type: ignore[method-assign]
    noisy = [3.0, 2.0, 1.0, 1.5, 0.7, 1.3, 0.8, 9.0]

    class Interrupted(ScriptedRunner):
        def run(self, case, scenario, spec, **kw):  # type: ignore[no-untyped-def]
            r = super().run(case, scenario, spec, **kw)
            if case.startswith("ber"):
                r.outcome = {"status": "interrupted", "cause": "connection-reset", "detail": "reset"}
                r.faults = [__import__("testbed.trial.runner", fromlist=["FaultWindow"]).FaultWindow(
                    "BitErrors", "working@1e-08", "fault", applied_step=6)]
            return r
    s.runner = Interrupted(noisy)                                     # type: ignore[assignment]
    case = sess.CaseContext(s, "c1", "ber[pp-remote-4to1-ber1e-8]", "bit_errors",
                            {"placement": "pp-remote", "ratio": 4, "ber": 1e-8}, lambda k, v: None)
    base = s.baseline("pp-remote")
    run = case.run("pp-remote", fault=s.faults.bit_errors(1e-8), hold=3)
    m = case.fault_metrics(run, base)
    assert m["steady_cv"] > t.profile("quick").noise.max_cv and m["outcome"] == "interrupted"
    assert case.conclude(run, base, m) == "pass"          # an observed outcome, nothing refused
    got = json.loads((tmp_path / "summary.json").read_text())["cases"][0]
    assert got["problems"] == [] and got["criteria"][0]["measured"] == "interrupted"
    assert got["criteria"][0]["status"] == "observed"


def test_the_nodes_of_a_placement_come_from_the_sites_and_a_short_site_is_a_clear_error(tmp_path: Path) -> None:
    """Issue 17 item 3: ``local`` takes the layout's ranks from one site, the remote placements half
    from each of two sites; an inventory without four nodes in a site names the file and the fixes."""
    import yaml

    from testbed.inventory import load_inventory
    from testbed.trial.runner import NodeChoiceError, default_nodes
    inv = load_inventory(EMULATED)
    assert default_nodes(inv, "local", 4) == ("dc-a-gpu1", "dc-a-gpu2", "dc-a-gpu3", "dc-a-gpu4")
    assert default_nodes(inv, "pp-remote", 4) == ("dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2")
    assert default_nodes(inv, "dp-remote", 2) == ("dc-a-gpu1", "dc-b-gpu1")
    data = yaml.safe_load(EMULATED.read_text())
    data["devices"] = [d for d in data["devices"] if d["name"] not in ("dc-a-gpu3", "dc-a-gpu4")]
    for d in data["devices"]:
        if d.get("python"):
            d["python"] = str((EMULATED.parent / d["python"]).resolve())
    f = tmp_path / "two-per-site.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    small = load_inventory(f)
    with pytest.raises(NodeChoiceError) as e:
        default_nodes(small, "local", 4)
    assert str(f) in str(e.value) and "needs 4 GPU nodes in one site" in str(e.value)
    assert "dc-a: 2, dc-b: 2" in str(e.value) and "single_site: false" in str(e.value)
    with pytest.raises(NodeChoiceError, match="needs 4 GPU nodes in each of two sites"):
        default_nodes(small, "pp-remote", 8)
    r = dcilab("trial", "--inventory", str(f), "--profile", "quick", "--dry-run", "--report-dir", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stdout + r.stderr       # the cases are planned; the run says what it lacks
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert [j["placement"] for j in s["job_plan"]] == ["pp-remote", "dp-remote"]
    assert any("single-site baseline not measured" in x["error"] and "single_site: false" in x["error"]
               for x in s["errors"]), s["errors"]


def test_sixteen_ranks_per_site_fill_whole_nodes_of_eight(tmp_path: Path) -> None:
    """Issue 18 item 4: the scale profile's TP:PP:DP 4:4:2 takes two 8-rank nodes per site for the
    remote placements and four in one site for the single-site job; nodes with fewer gpus are
    passed over; a profile whose ranks do not fill whole nodes is refused with file, line and fix."""
    import yaml

    from testbed.inventory import load_inventory
    from testbed.trial.runner import NodeChoiceError, default_nodes
    inv = load_inventory(EMULATED)
    assert default_nodes(inv, "pp-remote", 32, 8) == ("dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2")
    assert default_nodes(inv, "local", 32, 8) == ("dc-a-gpu1", "dc-a-gpu2", "dc-a-gpu3", "dc-a-gpu4")
    data = yaml.safe_load(EMULATED.read_text())
    for d in data["devices"]:
        if d.get("python"):
            d["python"] = str((EMULATED.parent / d["python"]).resolve())
        if d["name"] == "dc-a-gpu1":
            d["gpus"] = 4
    f = tmp_path / "one-small-node.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    small = load_inventory(f)
    assert default_nodes(small, "pp-remote", 32, 8) == ("dc-a-gpu2", "dc-a-gpu3", "dc-b-gpu1", "dc-b-gpu2")
    with pytest.raises(NodeChoiceError, match=r"needs 4 GPU nodes with 8 gpus in one site \(32 ranks, 8 per node\)"):
        default_nodes(small, "local", 32, 8)
    with pytest.raises(NodeChoiceError, match="do not fill nodes of 3 ranks"):
        default_nodes(inv, "pp-remote", 32, 3)

    text = (ROOT / "cases" / "profiles.yaml").read_text()
    for bad, msg in (("nproc_per_node: 3", "does not divide the layout's 32 ranks"),
                     ("nproc_per_node: 32", "which do not fill nodes of 32 ranks"),
                     ("nproc_per_node: 8\n    nodes: [dc-a-gpu1, dc-b-gpu1]", "nodes: 2 node(s) x nproc_per_node 8")):
        pf = tmp_path / "profiles.yaml"
        pf.write_text(text.replace("nproc_per_node: 8", bad, 1))
        r = dcilab("trial", "--profiles-file", str(pf), "--profile", "scale", "--dry-run", "--report-dir", str(tmp_path / "r"))
        assert r.returncode != 0 and msg in r.stdout + r.stderr, (bad, r.stdout + r.stderr)
        assert f"{pf}:" in r.stdout + r.stderr and "profiles.scale" in r.stdout + r.stderr

    r = dcilab("trial", "--profile", "scale", "--dry-run", "--report-dir", str(tmp_path / "plan"))
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads((tmp_path / "plan" / "summary.json").read_text())["job_plan"]
    assert [(j["placement"], j["nproc_per_node"], len(j["nodes"])) for j in plan] == [
        ("local", 8, 4), ("pp-remote", 8, 4), ("dp-remote", 8, 4)]
    assert "dc-a-gpu2, dc-b-gpu1, dc-b-gpu2, 8 ranks each" in r.stdout
    assert "4 deselected" in r.stdout        # the scenarios the profile does not run: not collected, not skipped


def test_sessions_are_kept_between_cases_and_a_stale_one_is_replaced_before_a_device_counts_as_silent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """off_baseline runs after every case.  It keeps the devices' sessions open (closing and
    reopening them cost seconds per case); a kept session that fails (the device timed it out,
    or restarted) is replaced by a new one and read again before the device is called silent; a
    device that fails on a new session too is silent, and the next check does not try it twice."""
    from testbed.faults import Testbed
    from testbed.inventory import load_inventory
    from testbed.trial import session as sess

    class Session:
        def __init__(self, name: str) -> None:
            self.name, self.stale, self.closed = name, False, False

        def close(self) -> None:
            self.closed = True

    dead: set[str] = set()
    opened: list[str] = []

    def connect(_inv: Any, name: str) -> Session:
        opened.append(name)
        d = Session(name)
        d.stale = name in dead
        return d

    def check_baseline(tb: Testbed) -> list[str]:
        return [f"{n} shaping: cannot read: session gone" for n in ("dc-a-gw", "dc-b-gw")
                if tb.driver(n).stale]

    inv, t = load_inventory(EMULATED), load_trial()
    s = sess.TrialSession(inv, t, t.profile("quick"), "r1", tmp_path, dry_run=True)
    s.tb = Testbed(inv, connect=connect, journal=tmp_path / "journal")
    monkeypatch.setattr(sess, "check_baseline", check_baseline)

    assert s.off_baseline() == [] and s.unreachable == {} and opened == ["dc-a-gw", "dc-b-gw"]
    assert s.off_baseline() == [] and opened == ["dc-a-gw", "dc-b-gw"]          # kept: nothing reopened
    first = s.tb.driver("dc-a-gw")
    first.stale = True                                         # the device timed the idle session out
    assert s.off_baseline() == [] and s.unreachable == {}
    assert first.closed and opened == ["dc-a-gw", "dc-b-gw", "dc-a-gw"]
    dead.add("dc-b-gw")                                        # stops answering: its session fails, a new one too
    s.tb.driver("dc-b-gw").stale = True
    assert s.off_baseline() == [] and set(s.unreachable) == {"dc-b-gw"}
    assert opened[3:] == ["dc-b-gw"] and "dc-b-gw" not in s.tb.connected()
    s.off_baseline()                                           # silent, no session kept: tried once
    assert opened[4:] == ["dc-b-gw"] and set(s.unreachable) == {"dc-b-gw"}
    dead.clear()                                               # answers again: off the list
    assert s.off_baseline() == [] and s.unreachable == {}

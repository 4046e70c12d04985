"""dcilab's pytest plugin: the testbed options, markers and fixtures every suite shares.

Options: ``--inventory`` (default $DCILAB_INVENTORY or inventory/emulated.yaml), ``--profile``
(quick | full | nightly, from cases/profiles.yaml), ``--run-id``, ``--report-dir`` (default
reports/<run-id>), ``--dry-run`` (plan every case, connect to nothing).

Markers: ``lab`` (needs root: builds the emulated lab), ``scenario(name)`` (a trial case: its
``params`` come from the profile), ``needs(capability, ...)`` (skipped, with the reason, on a
testbed that cannot do it; see :mod:`testbed.trial.capabilities`).

Fixtures (scope): ``inventory`` (session), ``emulated_lab`` (session; built and removed),
``trial`` (session: the testbed checked at its baseline, the report, the cached baselines; an
emulated lab is brought up if it is not, and only then brought down), ``drivers`` (session: a
driver per device, ``drivers.driver(name)``), ``metrics_writer`` (session), ``faults``
(session: the catalogue bound to the inventory's service), ``baseline`` (session: a function of the
placement, measured once per run), ``probe`` (the probe's two nodes), ``case`` (function: runs the
case's job and judges it).  Registered by the root conftest.py and the ``pytest11`` entry point.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import astguard
from testbed.paths import REPO_ROOT, default_inventory
from testbed.inventory import Inventory, InventoryError, load_inventory
from testbed.runid import RunIdError, check_run_id

CASES_DIR = REPO_ROOT / "cases"
_SESSION_KEY = pytest.StashKey[Any]()
_INV_KEY = pytest.StashKey[Any]()

# before any thread of the run exists (`pytest cases/`, `dcilab trial` which runs pytest in its
# process, the tests): pytest rewrites every dcilab module it imports later, in the middle of a
# case, while a driver thread may be formatting a traceback
astguard.install()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dcilab")
    group.addoption("--inventory", type=Path, default=None,
                    help="testbed inventory (default: $DCILAB_INVENTORY or inventory/emulated.yaml)")
    group.addoption("--profile", default="quick", help="trial profile from cases/profiles.yaml (quick, full, nightly)")
    group.addoption("--profiles-file", type=Path, default=None, help="profiles and criteria (default cases/profiles.yaml)")
    group.addoption("--run-id", default=None, help="this run's id (default: UTC time + random suffix)")
    group.addoption("--report-dir", type=Path, default=None, help="where the run's report goes (default reports/<run-id>)")
    group.addoption("--wait-lease", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long for another run to release the testbed (default: refuse, exit 75)")
    group.addoption("--dry-run", action="store_true", default=False,
                    help="plan every case (faults' steps, jobs' commands) without connecting to the testbed")
    group.addoption("--no-single-site", action="store_true", default=False,
                    help="skip the profile's single-site baseline job (single_site: false): the cases are then "
                         "reported against their paired windows only")


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:4]


def _is_trial_invocation(config: pytest.Config) -> bool:
    if config.getoption("--report-dir") or config.getoption("--run-id"):
        return True
    for a in config.args:
        p = Path(a.split("::")[0])
        p = p if p.is_absolute() else Path(config.invocation_params.dir) / p
        try:
            p.resolve().relative_to(CASES_DIR)
            return True
        except ValueError:
            continue
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs root and Linux network namespaces (builds the emulated lab)")
    config.addinivalue_line("markers", "scenario(name): a field-trial case; its params come from the profile")
    config.addinivalue_line("markers", "needs(*capabilities): skipped on a testbed that cannot do it")
    from emulator.plugins import PluginError, load_plugins
    try:        # a lab's own fault kinds and drivers, before any inventory, profile or case is read
        load_plugins()
    except PluginError as exc:
        raise pytest.UsageError(str(exc)) from None
    trial_run = _is_trial_invocation(config)       # before the defaults below are filled in
    try:  # before anything connects or applies a condition: the run id names folders
        run_id = check_run_id(config.getoption("--run-id") or new_run_id())
    except RunIdError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.option.run_id = run_id
    if config.getoption("--report-dir") is None:
        config.option.report_dir = REPO_ROOT / "reports" / run_id
    if trial_run and not getattr(config.option, "xmlpath", None) and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(Path(config.option.report_dir) / "junit.xml")


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot build the emulated lab, or None if it can."""
    if os.geteuid() != 0:
        return "the emulated lab needs root (network namespaces, TAP devices); run the tests as root"
    if not Path("/proc/self/ns/net").exists() or not Path("/dev/net/tun").exists():
        return "this kernel lacks network namespaces or /dev/net/tun"
    return None


def _inventory_path(config: pytest.Config) -> Path:
    return Path(config.getoption("--inventory") or default_inventory())


def _config_inventory(config: pytest.Config) -> Inventory | None:
    """The inventory for collection-time decisions (None if it does not load: the fixture says why)."""
    if _INV_KEY not in config.stash:
        try:
            config.stash[_INV_KEY] = load_inventory(_inventory_path(config))
        except InventoryError:
            config.stash[_INV_KEY] = None
    return config.stash[_INV_KEY]


def _trial_spec(config: pytest.Config):  # type: ignore[no-untyped-def]
    from testbed.trial.profile import load_trial
    return load_trial(config.getoption("--profiles-file"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("scenario")
    if marker is None or "params" not in metafunc.fixturenames:
        return
    from testbed.trial.profile import ProfileError
    try:
        trial = _trial_spec(metafunc.config)
        profile = trial.profile(metafunc.config.getoption("--profile"))
    except ProfileError as exc:
        raise pytest.UsageError(str(exc)) from None
    params = profile.params(marker.args[0])
    if not params:   # the profile runs no case of this scenario: deselected at collection, not skipped
        metafunc.parametrize("params", [None], ids=["not-in-profile"])
        return
    if profile.repeats > 1:
        params = [{**p, "repeat": r + 1} for p in params for r in range(profile.repeats)]
    # A degraded (canary) profile injects other fault parameters under the planned case names, so
    # that its cases line up with the runs it is compared with; the summary records both.
    metafunc.parametrize("params", [profile.injected(marker.args[0], p) for p in params],
                         ids=[_param_id(p) for p in params])


def _param_id(p: dict[str, Any]) -> str:
    parts = []
    for k, v in p.items():
        if k == "ratio":
            parts.append(f"{v:g}to1")
        elif k == "ber":
            parts.append(f"ber{v:.0e}".replace("e-0", "e-"))
        elif k == "to_gbps":
            parts.append(f"{v}G")
        elif k == "repeat":
            parts.append(f"run{v}")
        else:
            parts.append(str(v))
    return "-".join(parts)


def _case_timeout_s(config: pytest.Config) -> float:
    """A case's safety net (its own waits have tighter deadlines): the baseline it may measure
    plus its run, each bounded like the runner bounds them, plus the clean-up."""
    try:
        p = _trial_spec(config).profile(config.getoption("--profile"))
    except Exception:  # noqa: BLE001 - reported by the trial fixture
        return 3600.0
    steps = p.warmup + p.baseline_steady + p.warmup + p.steady + p.hold + p.after
    return 2 * p.startup_timeout_s + steps * 60.0 + 600.0


def _share_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With shared jobs, the cases of one placement run one after the other (one job hosts them),
    placements in the order they first appear, and within a placement a case the trial saw end
    training (bit errors at 1e-8 and above) runs last, so the job it ends has hosted the others.
    Only the trial's cases move; every other test keeps its place."""
    try:
        if _trial_spec(config).profile(config.getoption("--profile")).jobs != "shared":
            return
    except Exception:  # noqa: BLE001 - reported by the trial fixture
        return
    slots = [i for i, it in enumerate(items) if it.get_closest_marker("scenario") is not None]
    cases = [items[i] for i in slots]
    order: dict[str, int] = {}

    def key(it: pytest.Item) -> tuple[int, int]:
        cs = getattr(it, "callspec", None)
        p = cs.params.get("params", {}) if cs is not None else {}
        placement = str(p.get("placement", ""))
        ends_job = float(p.get("ber") or 0.0) >= 1e-8
        return order.setdefault(placement, len(order)), int(ends_job)
    for it, i in zip(sorted(cases, key=key), slots, strict=True):
        items[i] = it


def _not_in_profile(item: pytest.Item) -> bool:
    cs = getattr(item, "callspec", None)
    return cs is not None and "params" in cs.params and cs.params["params"] is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gone = [it for it in items if _not_in_profile(it)]
    if gone:     # scenarios the profile has no parameters for (e.g. the scale profile's convergence only)
        config.hook.pytest_deselected(items=gone)
        items[:] = [it for it in items if not _not_in_profile(it)]
    _share_order(config, items)
    reason = lab_unavailable_reason()
    inv = None
    for item in items:
        if reason is not None and item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.skip(reason=reason))
        needs = item.get_closest_marker("needs")
        if needs is not None:
            inv = inv or _config_inventory(config)
            if inv is not None:
                from testbed.trial.capabilities import missing
                why = missing(inv, list(needs.args))
                if why:
                    item.add_marker(pytest.mark.skip(reason=why))
        if item.get_closest_marker("scenario") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(_case_timeout_s(config)))
        if item.get_closest_marker("scenario") and reason is not None and not config.getoption("--dry-run"):
            inv = inv or _config_inventory(config)
            if inv is not None and inv.is_emulated:
                item.add_marker(pytest.mark.skip(reason=reason))


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def inventory(pytestconfig: pytest.Config) -> Inventory:
    try:
        return load_inventory(_inventory_path(pytestconfig))
    except InventoryError as exc:
        pytest.exit(str(exc), returncode=4)


@pytest.fixture(scope="session")
def emulated_lab(inventory: Inventory) -> Iterator[object]:
    """The emulated lab, built once per session and always removed afterwards."""
    from emulator.lab import build
    from testbed.emulated_lab import lab_plan

    if not inventory.is_emulated:
        pytest.skip(f"inventory {inventory.name!r} describes real gear, not an emulated lab")
    plan = lab_plan(inventory)
    build.up(plan, log=lambda *_: None)
    try:
        yield plan
    finally:
        build.down(plan, quiet=True)


def _progress(config: pytest.Config):  # type: ignore[no-untyped-def]
    """Progress lines shown as they happen, through pytest's output capture (thread-safe)."""
    import threading
    tr = config.pluginmanager.get_plugin("terminalreporter")
    cap = config.pluginmanager.get_plugin("capturemanager")
    lock = threading.Lock()

    def say(msg: str) -> None:
        line = f"  [trial] {msg}"
        with lock:
            ctx = cap.global_and_fixture_disabled() if cap is not None else contextlib.nullcontext()
            with ctx:
                if tr is not None:
                    tr.write_line(line)
                else:
                    print(line, file=sys.stderr, flush=True)
    return say


def _make_writer(inventory: Inventory, run_id: str) -> Any:
    """The run's metrics writer (None without a metrics section); spools while the store is down."""
    if inventory.metrics is None:
        return None
    from testbed.connect import resolve_secret
    from testbed.metrics import MetricsWriter
    mc = inventory.metrics
    token = resolve_secret(inventory, "metrics", mc.token, "metrics.token") if mc.token else None
    return MetricsWriter(mc.url, mc.org, mc.bucket, token, default_tags={"run_id": run_id, "testbed": inventory.name})


@pytest.fixture(scope="session")
def metrics_writer(trial: Any) -> Any:
    """The run's metrics writer (None without a metrics section or in a dry run)."""
    return trial.writer


@pytest.fixture(scope="session")
def trial(request: pytest.FixtureRequest, inventory: Inventory) -> Iterator[Any]:
    """The trial run: testbed up, answering and at its baseline; report folder; cached baselines."""
    from testbed.trial.profile import ProfileError
    from testbed.trial.session import TestbedNotReady, TrialSession, close_quietly
    from testbed.trial.transport import transport_in_force

    config = request.config
    dry = config.getoption("--dry-run")
    try:
        spec = _trial_spec(config)
        profile = spec.profile(config.getoption("--profile"))
    except ProfileError as exc:
        pytest.exit(str(exc), returncode=4)
    if config.getoption("--no-single-site"):
        profile = profile.model_copy(update={"single_site": False})
    say = _progress(config)
    if not dry:      # one run at a time on a testbed, from before the lab comes up until it is down
        from testbed.lock import EXIT_BUSY, LeaseUnavailable, TestbedBusy, TestbedLock
        try:   # restores=True: check_ready below restores what a dead holder left, before any case
            lock = TestbedLock(inventory, config.option.run_id).acquire(config.getoption("--wait-lease"), say)
        except TestbedBusy as exc:
            pytest.exit(f"dcilab: {exc}", returncode=EXIT_BUSY)
        except LeaseUnavailable as exc:
            pytest.exit(f"dcilab: {exc}", returncode=4)
        config.add_cleanup(lock.release)
        if lock.took_over is not None:
            say(f"taking over the lease of {lock.took_over.describe()}, which ended without releasing it")
    plan = None
    was_up = True
    if inventory.is_emulated and not dry:
        from emulator.lab import build
        from testbed.emulated_lab import lab_plan
        plan = lab_plan(inventory)
        was_up = build.status(plan).built
        if not was_up:       # a lab that is up is used as it is: a device that is down is reported, not mended
            say(f"bringing up the emulated lab {inventory.name}")
            build.up(plan, log=lambda *_: None)
    writer = None if dry else _make_writer(inventory, config.option.run_id)
    s = TrialSession(inventory, spec, profile, config.option.run_id, Path(config.option.report_dir), dry_run=dry,
                     writer=writer, progress=say,
                     options={"inventory": str(inventory.source), "profile": profile.name,
                              "args": list(config.invocation_params.args)})
    config.stash[_SESSION_KEY] = s
    say(f"run {s.run_id}, profile {profile.name}, report {s.report_dir}")
    say(f"transport: {transport_in_force(inventory)['text']}")
    try:
        try:
            s.check_ready()
            s.snapshot()
            s.measure_single_site()
        except TestbedNotReady as exc:
            s.report.add_error(str(exc))
            pytest.fail(str(exc), pytrace=False)
        yield s
    finally:
        try:
            with contextlib.suppress(Exception):     # a shared job still training: its cases are done
                s.close_jobs()
            if s.job_plan:
                s.report.set(job_plan=s.job_plan)
            if not dry:
                off = s.off_baseline()
                if off:
                    from testbed.faults import restore
                    restore(inventory, log=say)
                    s.report.add_error("testbed off its baseline at the end of the run (restored): " + "; ".join(off))
        finally:
            close_quietly(s)
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
            if plan is not None and not was_up:
                from emulator.lab import build
                say(f"bringing down the emulated lab {inventory.name}")
                build.down(plan, quiet=True)


@pytest.fixture(scope="session")
def drivers(trial: Any) -> Any:
    """``drivers.driver(name)``: the connected driver of any inventory device (cached)."""
    return trial.tb


@pytest.fixture(scope="session")
def faults(trial: Any) -> Any:
    return trial.faults


@pytest.fixture(scope="session")
def baseline(trial: Any) -> Any:
    """``baseline(placement)``: the cached baseline of the profile's job with that placement."""
    return trial.baseline


@pytest.fixture(scope="session")
def probe(trial: Any) -> Any:
    """The probe's plan (two GPU nodes, one per site, and the profile's rate)."""
    from testbed.trial.capabilities import missing
    why = missing(trial.inv, ["probe"])
    if why:
        pytest.skip(why)
    from testbed.trial.capabilities import probe_pair
    return probe_pair(trial.inv)


@pytest.fixture
def case(request: pytest.FixtureRequest, trial: Any, record_property: Any) -> Iterator[Any]:
    """The running case: ``case.run(...)``, ``case.fault_metrics(...)``, ``case.conclude(...)``."""
    from testbed.trial.session import CaseContext

    marker = request.node.get_closest_marker("scenario")
    scenario = marker.args[0] if marker else request.node.originalname
    params = request.getfixturevalue("params") if "params" in request.fixturenames else {}
    ctx = CaseContext(trial, request.node.nodeid, request.node.name, scenario, params, record_property)
    trial.progress(f"case {request.node.name}")
    try:
        yield ctx
    finally:
        rep = getattr(request.node, "_dcilab_call_report", None)
        if not ctx.recorded:
            if rep is not None and rep.failed:
                ctx.record_error(str(rep.longrepr)[-2000:])
            elif rep is None:
                ctx.record_error("interrupted before the case finished")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._dcilab_call_report = rep  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    s = session.config.stash.get(_SESSION_KEY, None)
    if s is None:
        return
    status = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop else "completed"
    s.report.finish(status, int(exitstatus))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    s = config.stash.get(_SESSION_KEY, None)
    if s is None:
        return
    terminalreporter.write_sep("-", "dcilab trial")
    for i, j in enumerate(s.job_plan, 1):
        per = j.get("nproc_per_node") or 1
        ranks = f", {per} ranks each" if per > 1 else ""
        terminalreporter.write_line(f"job {i} ({j['placement']} on {', '.join(j.get('nodes') or [])}{ranks}): "
                                    f"{len(j['cases'])} case(s), about {j['iterations']} iterations, about "
                                    f"{j['duration_s']} s: {', '.join(j['cases'])}")
    if s.job_plan:
        total = sum(j["duration_s"] for j in s.job_plan)
        terminalreporter.write_line(f"planned: {len(s.job_plan)} job(s), about {total // 60:.0f} min {total % 60:.0f} s "
                                    f"of training (profile {s.profile.name}: {s.profile.jobs} jobs, "
                                    f"{s.profile.iteration_s:g} s per iteration, {s.profile.job_start_s:g} s per job start)")
    terminalreporter.write_line(f"report: {s.report.dir} (summary.json, junit.xml, iterations.jsonl, faults.jsonl, "
                                f"testbed.json)")

"""Extending dcilab is writing one module (issue 15): a fault kind, a scenario and a vendor's driver,
each written into a temporary folder as a lab would, loaded through ``DCILAB_PLUGINS`` (or, for a
scenario, found by its marker), and then used by the CLI, the journal and ``lab restore``, the
baseline check, the capabilities and the trial, with no other file touched.  No lab: the gear
is the fault tests' fakes, the trial a dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import registry as driver_registry
from emulator.plugins import load_plugins
from testbed.faults import Journal, check_baseline, fault_from_args, registry, restore
from testbed.faults import ops as fault_ops
from testbed.inventory import load_inventory
from testbed.trial import capabilities
from testbed.trial.profile import ProfileError, load_trial
from testbed.trial.session import Faults
from tests.test_faults import Lab

ROOT = Path(__file__).resolve().parents[1]
EMULATED = ROOT / "inventory" / "emulated.yaml"
REAL = ROOT / "inventory" / "lab.example.yaml"

TOY_FAULT = '''\
"""A toy fault kind: one site's gateway caps its WAN (a lab's own module)."""
from dataclasses import dataclass
from typing import Any, ClassVar

from testbed.faults import Fault, register
from testbed.faults.catalogue import not_allowed
from testbed.faults.journal import Step
from testbed.faults.ops import FaultNotInEffect, FaultRefused


def _one_site_shaping(inv):
    return not_allowed(inv, [inv.services[0].a_end.gateway], "one gateway's WAN cap") if inv.services else "no service"


@register
@dataclass(frozen=True)
class GatewayCap(Fault):
    """One gateway caps the WAN to ``kbps`` (a brown-out of one site's uplink)."""

    gateway: str
    kbps: int
    KIND: ClassVar[str] = "GatewayCap"
    NAME: ClassVar[str] = "gateway-cap"
    USAGE: ClassVar[str] = "GATEWAY KBPS"
    OPS: ClassVar[dict[str, Any]] = {"cap_wan": lambda d, kbps: d.set_wan_shaping(int(kbps)),
                                     "uncap_wan": lambda d: d.clear_wan_shaping()}
    CAPABILITIES: ClassVar[dict[str, Any]] = {"one_site_shaping": _one_site_shaping}
    TRIAL: ClassVar[dict[str, Any]] = {"gateway_cap": lambda svc, inv, kbps: GatewayCap(svc.a_end.gateway, int(kbps))}

    @classmethod
    def from_args(cls, args):
        gateway, kbps = args
        return cls(gateway, int(kbps))

    @classmethod
    def baseline(cls, view):
        out = []
        for s in view.inv.services:
            cir = view.read(f"{s.a_end.gateway} WAN shaping", lambda: view.tb.driver(s.a_end.gateway).shaping_kbps())
            if cir is not None:
                out.append(f"{s.a_end.gateway}: WAN capped at {cir} kbit/s")
        return out

    @property
    def target(self):
        return f"{self.gateway}@{self.kbps}"

    def touches(self, inv):
        return [self.gateway], []

    def steps(self, inv, ctx):
        if self.kbps <= 0:
            raise FaultRefused(f"{self.KIND}: a cap is a positive rate, not {self.kbps}")
        return ([Step(self.gateway, "cap_wan", {"kbps": self.kbps}, f"WAN cap {self.kbps} kbit/s")],
                [Step(self.gateway, "uncap_wan", {}, "WAN cap removed")])

    def verify(self, tb, ctx):
        got = tb.driver(self.gateway).shaping_kbps()
        if got != self.kbps:
            raise FaultNotInEffect(f"{self.KIND}: {self.gateway} reads {got}")
        return {"kbps": got}
'''

TOY_SCENARIO = '''\
"""Brown-out: one site's gateway caps the WAN during training (a lab's own scenario)."""
import pytest

pytestmark = [pytest.mark.scenario("brownout"), pytest.mark.needs("cross_site", "one_site_shaping")]


def test_brownout(case, params, baseline, faults):
    base = baseline(params["placement"])
    run = case.run(params["placement"], fault=faults.gateway_cap(params["kbps"]), hold=None)
    case.conclude(run, base, case.fault_metrics(run, base))
'''

TOY_PROFILES = '''\
version: 1
profiles:
  toy:
    model: tiny
    layout: {tp: 1, pp: 2, dp: 2}
    warmup: 2
    steady: 4
    scenarios:
      brownout: {placement: [pp-remote], kbps: [100000000]}
criteria:
  - id: brownout.affected
    scenario: brownout
    metric: affected_iterations
    op: "<="
    value: 1
    reference: {text: "a lab's own criterion: at most one iteration hit"}
'''

TOY_VENDOR = '''\
"""A vendor's OTN terminal driver (a lab's own module): registers itself on import."""
from drivers import registry


class AcmeTerminal:
    personality = "acme"

    def __init__(self, target, rpc_timeout_s=30.0, confirm_timeout_s=30):
        self.target = target


registry.register("otn_terminal", "acme", f"{__name__}:AcmeTerminal", "Acme OTN terminal (toy)")
'''


@pytest.fixture
def clean_registries() -> Iterator[None]:
    """The toy kind registers into process-wide registries: put them back afterwards."""
    kinds, owners, ops = dict(registry._KINDS), dict(registry._OP_OWNER), dict(fault_ops.OPS)
    drivers = {k: dict(v) for k, v in driver_registry._DRIVERS.items()}
    yield
    for live, saved in ((registry._KINDS, kinds), (registry._OP_OWNER, owners), (fault_ops.OPS, ops)):
        live.clear()
        live.update(saved)  # type: ignore[attr-defined]
    for k, v in drivers.items():
        driver_registry._DRIVERS[k] = v


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder / name


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DCILAB_PLUGINS"}
    return {**env, **extra}


def dcilab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_a_fault_kind_is_one_module_used_by_every_part_of_the_framework(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registries: None) -> None:
    module = _write(tmp_path / "lab_ext", "gateway_cap.py", TOY_FAULT)
    monkeypatch.setenv("DCILAB_PLUGINS", str(module))
    load_plugins()
    assert "gateway-cap" in registry.names() and "gateway-cap GATEWAY KBPS" in registry.usage()

    # the CLI form and the plan (dry run)
    fault = fault_from_args("gateway-cap", ["dc-a-gw", "5000"])
    inv = load_inventory(EMULATED)
    apply, undo = fault.plan(inv)
    assert [(s.device, s.op) for s in apply + undo] == [("dc-a-gw", "cap_wan"), ("dc-a-gw", "uncap_wan")]

    # applied on gear (the fault tests' fakes): journaled, verified, in the baseline check, undone
    lab = Lab(tmp_path)
    tb = lab.testbed(inv)
    with fault.applied(tb) as rec:
        assert lab.s["shaping"]["dc-a-gw"] == 5000 and len(list(lab.jdir.glob("*.json"))) == 1
        assert "dc-a-gw: WAN capped at 5000 kbit/s" in check_baseline(tb)
        assert rec.details["kbps"] == 5000
    assert lab.s["shaping"]["dc-a-gw"] is None and check_baseline(tb) == [] and rec.undone_at is not None

    # a run that died with the cap on: `lab restore` replays the kind's own undo operation
    tb.journal.add(fault.KIND, fault.target, apply, undo, str(inv.source))
    fault_ops.execute(apply[0], tb.driver("dc-a-gw"))
    assert check_baseline(tb)
    rep = restore(inv, connect=lab.connect, journal=Journal(lab.jdir), force=True, log=lambda _m: None)
    assert rep.ok and lab.s["shaping"]["dc-a-gw"] is None and not list(lab.jdir.glob("*.json")), rep

    # its capability, and the trial's faults fixture
    assert capabilities.missing(inv, ["one_site_shaping"]) is None
    assert "not allowed for fault injection" in (capabilities.missing(load_inventory(REAL), ["one_site_shaping"]) or "")
    built = Faults(inv).gateway_cap(7000)
    assert (built.gateway, built.kbps) == ("dc-a-gw", 7000)
    with pytest.raises(AttributeError, match="gateway_cap"):
        Faults(inv).no_such_fault()


def test_the_cli_lists_and_plans_a_kind_from_dcilab_plugins(tmp_path: Path) -> None:
    module = _write(tmp_path / "lab_ext", "gateway_cap.py", TOY_FAULT)
    env = _env(DCILAB_PLUGINS=str(module))
    r = dcilab("fault", "kinds", env=env)
    assert r.returncode == 0, r.stderr
    assert "gateway-cap GATEWAY KBPS" in r.stdout and "one_site_shaping" in r.stdout
    assert "bandwidth-drop SERVICE RATE" in r.stdout       # the built-in ones still there
    r = dcilab("fault", "plan", "--inventory", str(EMULATED), "gateway-cap", "dc-a-gw", "5000", env=env)
    assert r.returncode == 0, r.stderr
    assert "cap_wan" in r.stdout and "uncap_wan" in r.stdout
    r = dcilab("fault", "plan", "--inventory", str(EMULATED), "gateway-cap", "dc-a-gw", env=env)
    assert r.returncode == 1 and "usage: gateway-cap GATEWAY KBPS" in r.stderr
    r = dcilab("fault", "plan", "--inventory", str(EMULATED), "gateway-cap", "dc-a-gw", "5000", env=_env())
    assert r.returncode == 1 and "unknown fault kind 'gateway-cap'" in r.stderr and "DCILAB_PLUGINS" in r.stderr


def test_a_module_that_fails_to_import_is_named_with_the_variable_and_the_fix(tmp_path: Path) -> None:
    bad = _write(tmp_path / "lab_ext", "broken.py", "import no_such_package_here\n")
    for args in (("fault", "kinds"), ("inventory", "check", str(EMULATED))):
        r = dcilab(*args, env=_env(DCILAB_PLUGINS=str(bad)))
        assert r.returncode == 1, r.stdout
        assert f"DCILAB_PLUGINS: the plugin '{bad}' failed to import: ModuleNotFoundError" in r.stderr
        assert "fix:" in r.stderr and "Traceback" not in r.stderr
    r = dcilab("fault", "kinds", env=_env(DCILAB_PLUGINS=str(tmp_path / "missing.py")))
    assert r.returncode == 1 and "no such file" in r.stderr
    # two kinds may not claim one operation: the second module is refused, naming the first
    clash = _write(tmp_path / "lab_ext", "clash.py", TOY_FAULT.replace('"cap_wan"', '"set_line_rate"'))
    r = dcilab("fault", "kinds", env=_env(DCILAB_PLUGINS=str(clash)))
    assert r.returncode == 1 and "operation 'set_line_rate' is already defined by fault kind bandwidth-drop" in r.stderr


def test_a_scenario_is_one_case_module_found_by_its_marker(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    _write(suite, "test_brownout.py", TOY_SCENARIO)
    profiles = _write(suite, "profiles.yaml", TOY_PROFILES)
    module = _write(tmp_path / "lab_ext", "gateway_cap.py", TOY_FAULT)
    r = subprocess.run([sys.executable, "-m", "pytest", str(suite), "--inventory", str(EMULATED), "--profiles-file",
                        str(profiles), "--profile", "toy", "--dry-run", "-p", "no:cacheprovider", "--report-dir",
                        str(tmp_path / "rep")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=_env(DCILAB_PLUGINS=str(module)))
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert [(c["scenario"], c["params"]) for c in s["cases"]] == [
        ("brownout", {"placement": "pp-remote", "kbps": 100000000})]
    # a profile naming a scenario no case module declares is refused with the known ones
    (suite / "test_brownout.py").unlink()
    with pytest.raises(ProfileError) as e:
        load_trial(profiles)
    assert f"{profiles}:9: profiles.toy.scenarios.brownout: no scenario 'brownout'" in str(e.value)
    assert f"{profiles}:12: criteria[0].scenario: no scenario 'brownout'" in str(e.value)
    assert "@pytest.mark.scenario('brownout')" in str(e.value) and "reroute, switchover" in str(e.value)


def test_a_vendor_driver_is_one_module_named_by_the_inventory(tmp_path: Path) -> None:
    module = _write(tmp_path / "lab_ext", "acme_otn.py", TOY_VENDOR)
    text = REAL.read_text()
    i = text.index("name: dc-a-otn")
    j = text.index("driver:", i)
    k = text.index("\n", j)
    inv = tmp_path / "acme.yaml"
    inv.write_text(text[:j] + "driver: acme" + text[k:])
    r = dcilab("inventory", "check", str(inv), env=_env(DCILAB_PLUGINS=str(module)))
    assert r.returncode == 0, r.stdout + r.stderr
    r = dcilab("inventory", "check", str(inv), env=_env())
    assert r.returncode == 1 and "acme" in r.stderr and "openconfig" in r.stderr


def test_the_readme_examples_import_and_register(tmp_path: Path) -> None:
    """README's "Extending dcilab" modules, as printed there, load through DCILAB_PLUGINS and
    register what they say (the tests above exercise the same kinds of module in depth)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Extending dcilab"):text.index("## Tests and benchmarks")]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    modules = [b for b in blocks if "register" in b]
    assert len(modules) == 3, "the vendor, dialect and fault kind examples"
    paths = []
    for i, code in enumerate(modules):
        paths.append(_write(tmp_path / "readme_ext", f"example_{i}.py", code))
    script = textwrap.dedent(f"""
        from drivers import registry
        from emulator.gateway import dialects
        from emulator.plugins import load_plugins
        from testbed.faults import fault_from_args
        from testbed.inventory import load_inventory
        load_plugins()
        assert "acme" in registry.names("otn_terminal") and "acme" in registry.names("gateway")
        assert registry.load("gateway", "acme").name == "acme"
        assert dialects.get("acme").session.commands
        apply, undo = fault_from_args("gateway-cap", ["dc-a-gw", "5000"]).plan(load_inventory({str(EMULATED)!r}))
        print([s.op for s in apply + undo])
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=_env(DCILAB_PLUGINS=os.pathsep.join(map(str, paths))))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['cap_wan', 'uncap_wan']"

"""A gateway dialect of one's own runs in the emulated lab (issue 15): the second lab
(inventory/emulated-2.yaml) comes up beside the first with both gateways on ``driver: toy``, the
IOS-like toy dialect of tests/test_extend_gateway_dialect.py loaded through ``DCILAB_PLUGINS``;
the framework's convergence fault shapes the WAN through it over netmiko (real tc on the
gateway's WAN link), the baseline check sees it, the undo removes it.  Needs root."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.gateway import dialects
from emulator.lab import build
from emulator.lab.plan import LabPlan
from emulator.plugins import ENV, load_plugins
from testbed.emulated_lab import lab_plan
from testbed.faults import ConvergenceRatio, Testbed, check_baseline
from testbed.inventory import load_inventory
from tests.test_extend_gateway_dialect import TOY, isolated  # noqa: F401 - the fixture

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[1]


def wan_qdisc(plan: LabPlan, gateway: str) -> str:
    return subprocess.run(["ip", "netns", "exec", plan.node(gateway).netns, "tc", "qdisc", "show", "dev", "wan0"],
                          capture_output=True, text=True, timeout=10).stdout


@pytest.fixture
def toy_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: None,  # noqa: F811
            emulated_lab: LabPlan) -> Iterator[tuple[Path, LabPlan]]:
    module = tmp_path / "toy_gateway.py"
    module.write_text(TOY)
    monkeypatch.setenv(ENV, str(module))        # this process and the gateway servers the lab starts
    load_plugins()
    text = (ROOT / "inventory" / "emulated-2.yaml").read_text()
    assert text.count("    driver: vrp ") == 1
    inv = tmp_path / "toy-lab.yaml"
    inv.write_text(text.replace("    driver: vrp ", "    driver: toy ").replace("../", f"{ROOT}/"))
    plan = lab_plan(load_inventory(inv))
    try:
        assert build.up(plan, log=lambda *_: None) == "built"
        yield inv, plan
    finally:
        build.down(plan, quiet=True)


def test_the_lab_runs_a_plugin_dialect_and_the_framework_shapes_through_it(toy_lab: tuple[Path, LabPlan]) -> None:
    path, plan = toy_lab
    st = build.status(plan)
    assert st.ok, [(r.name, r.detail) for r in st.rows if not r.ok]
    gw_rows = [r for r in st.rows if r.name in ("dc-a-gw", "dc-b-gw")]
    assert [r.detail.split(":")[0] for r in gw_rows] == ["toy", "toy"]
    assert "toy" in dialects.names()
    inv = load_inventory(path)
    with Testbed(inv) as tb:
        assert type(tb.driver("dc-a-gw")).__name__ == "Gateway" and tb.driver("dc-a-gw").dialect.name == "toy"
        with ConvergenceRatio("dci-otn", 16).applied(tb) as rec:
            assert rec.details["shaping_kbps"] == {"dc-a-gw": 200_000_000, "dc-b-gw": 200_000_000}
            assert "rate-limit output 200000000" in tb.driver("dc-a-gw").running_config()
            for gw in ("dc-a-gw", "dc-b-gw"):
                assert "tbf" in wan_qdisc(plan, gw)         # the emulated toy gateway really shapes
            assert any("WAN shaped to 200000000" in d for d in check_baseline(tb))
        assert check_baseline(tb) == []
        assert all("tbf" not in wan_qdisc(plan, gw) for gw in ("dc-a-gw", "dc-b-gw"))

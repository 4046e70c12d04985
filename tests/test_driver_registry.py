"""Drivers chosen by the inventory (issue 15): ``driver:`` on each device, checked against the
registry of its kind; the emulated lab runs gear for each registered driver."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import yaml

import testbed.connect as tc
from drivers import registry
from drivers.gateway import DIALECTS
from drivers.otn import PERSONALITIES
from emulator.lab.devices import SERVERS, gateway_ports
from emulator.lab.plan import NodePlan
from testbed.emulated_lab import lab_plan
from testbed.inventory import DeviceKind, InventoryError, load_inventory
from testbed.inventory.model import DEFAULT_DRIVER, EMULATED_DRIVERS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventory" / "lab.example.yaml"
EMULATED = ROOT / "inventory" / "emulated.yaml"


def test_the_registry_names_what_the_driver_packages_implement() -> None:
    assert registry.names("otn_terminal") == list(PERSONALITIES)
    for name, cls in PERSONALITIES.items():
        assert registry.load("otn_terminal", name) is cls and cls.personality == name
    assert registry.load("gateway", "vrp") is DIALECTS["vrp"]
    assert registry.load("roadm", "openroadm").__name__ == "Roadm"
    assert registry.load("gpu_node", "openssh").__name__ == "GpuNode"
    with pytest.raises(Exception, match=r"otn_terminal driver ciena is not supported \(supported: openconfig, openroadm\)"):
        registry.load("otn_terminal", "ciena")


def test_every_registered_driver_has_emulated_gear_and_the_other_way_round() -> None:
    for kind in DeviceKind:
        assert set(registry.names(kind.value)) == set(EMULATED_DRIVERS[kind]), kind
        for name in EMULATED_DRIVERS[kind]:
            assert name in SERVERS or name == DEFAULT_DRIVER.get(kind), (kind, name)


@pytest.fixture
def toy_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A vendor's OTN driver living outside dcilab: its module registers itself on import."""
    (tmp_path / "toy_vendor_otn.py").write_text(
        "from drivers import registry\n"
        "class ToyTerminal:\n"
        "    personality = 'toy'\n"
        "    def __init__(self, target, rpc_timeout_s=30.0, confirm_timeout_s=30):\n"
        "        self.target = target\n"
        "registry.register('otn_terminal', 'toy', 'toy_vendor_otn:ToyTerminal', 'a toy vendor')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._DRIVERS, "otn_terminal", dict(registry._DRIVERS["otn_terminal"]))
    monkeypatch.delitem(sys.modules, "toy_vendor_otn", raising=False)
    __import__("toy_vendor_otn")
    return "toy"


def _with_driver(src: Path, dst: Path, device: str, driver: str) -> Path:
    """``src`` with ``device``'s driver: replaced (the file's other lines unchanged)."""
    text = src.read_text()
    m = re.search(rf"name: {device}\n(?:.*\n)*?\s+driver: (\S+)", text)
    assert m, device
    dst.write_text(text[:m.start(1)] + driver + text[m.end(1):])
    return dst


def test_a_registered_driver_is_accepted_and_connect_uses_it(toy_driver: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    inv = load_inventory(_copy_example(tmp_path, "dc-a-otn", toy_driver))
    monkeypatch.setattr(tc, "target_for", lambda inv, dev, timeout_s=10.0: f"target of {dev.name}")
    drv = tc.connect_otn(inv, "dc-a-otn")
    assert type(drv).__name__ == "ToyTerminal" and drv.target == "target of dc-a-otn"


def _copy_example(tmp_path: Path, device: str, driver: str) -> Path:
    """lab.example.yaml in a temporary folder (its relative key paths resolve there), one driver changed."""
    return _with_driver(EXAMPLE, tmp_path / "lab.yaml", device, driver)


def test_an_emulated_lab_refuses_a_driver_it_has_no_gear_for(toy_driver: str, tmp_path: Path) -> None:
    path = _with_driver(EMULATED, tmp_path / "emulated.yaml", "dc-a-otn", toy_driver)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    text = str(info.value)
    i = [d["name"] for d in yaml.safe_load(EMULATED.read_text())["devices"]].index("dc-a-otn")
    assert f"devices[{i}].driver: the emulated lab has no toy otn_terminal" in text
    assert "use one of: openconfig, openroadm (or run this inventory against real gear)" in text


def test_an_unknown_driver_names_the_known_ones(tmp_path: Path) -> None:
    path = _copy_example(tmp_path, "dc-b-otn", "ciena-waveserver")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    line = path.read_text().split("\n").index("    driver: ciena-waveserver") + 1
    text = str(info.value)
    assert f"{path}:{line}: devices[" in text and "].driver: 'ciena-waveserver' is not an otn_terminal driver" in text
    assert "use one of: openconfig, openroadm" in text


def test_the_emulated_gateway_names_its_wan_port_as_the_inventory_does(tmp_path: Path) -> None:
    text = EMULATED.read_text().replace("    driver: vrp ", "    wan_port: 400GE2/0/1\n    driver: vrp ", 1)
    (tmp_path / "emulated.yaml").write_text(text)
    inv = load_inventory(tmp_path / "emulated.yaml")
    gw = next(n for n in lab_plan(inv).nodes if n.name == "dc-a-gw")
    assert gw.wan_port == "400GE2/0/1"
    assert gateway_ports(gw) == {"400GE2/0/1": "wan0", "400GE1/0/2": "fab0", "MEth0/0/0": "mgmt0"}
    node = NodePlan(name="g", kind="gateway", site="dc-a", personality="vrp", mgmt_address="x/24", port=22)
    assert gateway_ports(node) == {"400GE1/0/1": "wan0", "400GE1/0/2": "fab0", "MEth0/0/0": "mgmt0"}
    node = dataclasses.replace(node, wan_port="400GE1/0/2")   # the fabric's usual name: it takes the other
    assert gateway_ports(node) == {"400GE1/0/2": "wan0", "400GE1/0/1": "fab0", "MEth0/0/0": "mgmt0"}

"""The emulated gateways in the lab, driven with plain netmiko as a lab engineer would.

The WAN shaping a gateway applies (the trial's convergence ratio) must show on traffic that
crosses the optical line, not only in the CLI's reply.
"""

from __future__ import annotations

import subprocess

import pytest
from netmiko import ConnectHandler

from emulator.lab.plan import LabPlan
from testbed.inventory import DeviceKind, Inventory
from tests.test_lab import iperf_gbps

pytestmark = pytest.mark.lab


def connect(inventory: Inventory, name: str):  # type: ignore[no-untyped-def]
    dev = inventory.device(name)
    return ConnectHandler(
        device_type="huawei", host=str(dev.mgmt.address), port=dev.port, username=dev.credentials.username,
        use_keys=True, key_file=str(inventory.resolve_path(dev.credentials.ssh_key.path)),  # type: ignore[union-attr]
        allow_agent=False, ssh_strict=True, system_host_keys=False, alt_host_keys=True,
        alt_key_file=str(inventory.resolve_path(dev.host_key.known_hosts)))  # type: ignore[union-attr]


def test_every_gateway_answers_netmiko_with_a_verified_host_key(emulated_lab: LabPlan, inventory: Inventory) -> None:
    for dev in inventory.devices_of(DeviceKind.GATEWAY):
        conn = connect(inventory, dev.name)
        try:
            brief = conn.send_command("display interface brief")
            wrong = conn.send_command("display nonsense")
        finally:
            conn.disconnect()
        assert "400GE1/0/1" in brief and "up" in brief
        assert "Error: Unrecognized command found at '^' position." in wrong


def test_gateway_shaping_sets_the_convergence_ratio_on_the_wan(emulated_lab: LabPlan, inventory: Inventory) -> None:
    site = inventory.site("dc-a")
    scale = inventory.emulation.bandwidth_scale  # type: ignore[union-attr]
    ratio = 16
    cir_kbps = int(site.fabric_gbps / ratio * 1e6)   # 3200G / 16 = 200G: the real CIR, as on real gear
    lab_kbps = cir_kbps * scale                      # what the emulated gateway's shaper runs at: 250 Mbit/s
    conn = connect(inventory, "dc-a-gw")
    try:
        conn.send_config_set(["interface 400GE1/0/1", f"qos lr outbound cir {cir_kbps}"])
        qdisc = subprocess.run(["tc", "-n", emulated_lab.node("dc-a-gw").netns, "qdisc", "show", "dev", "wan0"],
                               capture_output=True, text=True).stdout
        shaped = iperf_gbps(emulated_lab, "dc-a-gpu1", "dc-b-gpu1")
    finally:
        conn.send_config_set(["interface 400GE1/0/1", "undo qos lr outbound"])
        conn.disconnect()
    assert "tbf" in qdisc and "rate 250Mbit" in qdisc, qdisc
    assert 0.9 * lab_kbps / 1e6 <= shaped <= 1.05 * lab_kbps / 1e6, shaped
    unshaped = iperf_gbps(emulated_lab, "dc-a-gpu1", "dc-b-gpu1")
    assert unshaped > 1.5 * lab_kbps / 1e6, unshaped

"""The emulated optical gear in the lab, driven with plain ncclient as a lab engineer would.

Every test checks what happened on the optical line (rate, active path, delay), not only the
NETCONF reply, and leaves the lab at its baseline (800G on the working path, no requests).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree
from ncclient import manager

from emulator.lab.plan import LabPlan
from emulator.line.control import LineControl
from emulator.line.model import propagation_delay_s
from testbed.inventory import DeviceKind, Inventory
from tests.test_lab import iperf_gbps, on_fibre, ping_rtts_ms

pytestmark = pytest.mark.lab

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
DEV = "http://org/openroadm/device"
ODU = "http://org/openroadm/otn-odu-interfaces"
APS = "http://org/openroadm/prot/otn-linear-aps"
PLAT = "http://openconfig.net/yang/platform"
TD = "http://openconfig.net/yang/terminal-device"
BENCH = "urn:dcilab:emulator:bench"


@pytest.fixture
def netconf(inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable]:  # type: ignore[type-arg]
    """Open ncclient sessions with its defaults; host keys checked against the lab's known_hosts."""
    (tmp_path / ".ssh").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    sessions = []

    def connect(name: str) -> manager.Manager:
        dev = inventory.device(name)
        shutil.copy(inventory.resolve_path(dev.host_key.known_hosts), tmp_path / ".ssh" / "known_hosts")  # type: ignore[union-attr]
        m = manager.connect(host=str(dev.mgmt.address), port=dev.port, username=dev.credentials.username,
                            key_filename=str(inventory.resolve_path(dev.credentials.ssh_key.path)),  # type: ignore[union-attr]
                            hostkey_verify=True, allow_agent=False, look_for_keys=False, timeout=30)
        sessions.append(m)
        return m

    yield connect
    for m in sessions:
        if m.connected:
            m.close_session()


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def odu_rate(n: int) -> str:
    return (f'<config xmlns="{NC}"><org-openroadm-device xmlns="{DEV}"><interface><name>XPDR1-NETWORK1-ODUCn</name>'
            f'<odu xmlns="{ODU}"><oducn-n-rate>{n}</oducn-n-rate></odu></interface></org-openroadm-device></config>')


def oc_mode(mode: int) -> str:
    return (f'<config xmlns="{NC}"><components xmlns="{PLAT}"><component><name>och-1/0/1</name>'
            f'<optical-channel xmlns="{TD}"><config><operational-mode>{mode}</operational-mode></config>'
            f'</optical-channel></component></components></config>')


def test_every_optical_device_answers_ncclient(emulated_lab: LabPlan, inventory: Inventory, netconf) -> None:  # type: ignore[no-untyped-def]
    for dev in inventory.devices_of(DeviceKind.OTN_TERMINAL) + inventory.devices_of(DeviceKind.ROADM):
        m = netconf(dev.name)
        caps = set(m.server_capabilities)
        assert "urn:ietf:params:netconf:base:1.1" in caps
        assert "urn:ietf:params:netconf:capability:confirmed-commit:1.1" in caps
        assert len(m.get().data_xml) > 200


def test_openroadm_rate_edit_halves_the_line_and_an_unconfirmed_commit_rolls_back(
        emulated_lab: LabPlan, netconf) -> None:  # type: ignore[no-untyped-def]
    line = LineControl(emulated_lab.line_socket)
    full = emulated_lab.line.rate_bps
    m = netconf(emulated_lab.line.z_terminal)
    with m.locked("candidate"):
        m.edit_config(target="candidate", config=odu_rate(4))
        m.commit(confirmed=True, timeout="5")
    assert line.get()["rate_bps"] == full / 2
    at_400g = iperf_gbps(emulated_lab, "dc-a-gpu1", "dc-b-gpu1", seconds=1.5)
    assert 0.35 * full / 1e9 <= at_400g <= 0.53 * full / 1e9, at_400g
    # nobody confirms: the device rolls the running config, and with it the line, back to 800G
    assert wait_for(lambda: line.get()["rate_bps"] == full, 10)


def test_openconfig_operational_mode_sets_the_line_rate(emulated_lab: LabPlan, netconf) -> None:  # type: ignore[no-untyped-def]
    line = LineControl(emulated_lab.line_socket)
    full = emulated_lab.line.rate_bps
    m = netconf(emulated_lab.line.a_terminal)
    try:
        m.edit_config(target="running", config=oc_mode(4002))   # 400G
        assert line.get()["rate_bps"] == full / 2
    finally:
        m.edit_config(target="running", config=oc_mode(8001))   # back to 800G
    assert line.get()["rate_bps"] == full


def pm_interact(action: str, **fields: object) -> etree._Element:
    body = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in fields.items())
    return etree.fromstring(f'<pm-interact xmlns="{BENCH}"><rpc-action>{action}</rpc-action>{body}</pm-interact>')


def degree_on(m: manager.Manager, path: str) -> int:
    reply = etree.fromstring(m.get(filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><degree/>'
                                                     f'</org-openroadm-device>')).data_xml.encode())
    for deg in reply.iter(f"{{{DEV}}}degree"):
        if any(e.text == path for e in deg.iter() if etree.QName(e).localname == "path"):
            return int(deg.find(f"{{{DEV}}}degree-number").text)  # type: ignore[union-attr,arg-type]
    raise AssertionError(f"no degree on path {path}")


def test_fiber_cuts_trigger_sncp_then_ason_restoration(emulated_lab: LabPlan, inventory: Inventory, netconf) -> None:  # type: ignore[no-untyped-def]
    line = LineControl(emulated_lab.line_socket)
    a, b = emulated_lab.node("dc-a-gpu1"), emulated_lab.node("dc-b-gpu1")
    roadm = netconf("dc-a-roadm")
    terminal = netconf(emulated_lab.line.z_terminal)
    terminal.create_subscription()
    working, protection = degree_on(roadm, "working"), degree_on(roadm, "protection")
    try:
        roadm.dispatch(pm_interact("set", degree_number=working))          # cut the working fiber
        assert wait_for(lambda: line.get()["active_path"] == "protection", 2)
        expected = 2 * propagation_delay_s(inventory.fiber_path("protection").length_km) * 1e3
        rtts = ping_rtts_ms(a.netns, b.data_ip, count=10)  # type: ignore[arg-type]
        assert on_fibre(rtts, expected), (rtts, expected)
        note = terminal.take_notification(timeout=5)
        assert note is not None and "odu-sncp-pg-switch-event" in note.notification_xml

        roadm.dispatch(pm_interact("set", degree_number=protection))       # and then the protection fiber
        assert wait_for(lambda: line.get()["active_path"] == "restoration", emulated_lab.line.restoration_ms / 1e3 + 3)
        assert line.get()["protection"]["restoration_state"] == "restored"
        expected = 2 * propagation_delay_s(inventory.fiber_path("restoration").length_km) * 1e3
        rtts = ping_rtts_ms(a.netns, b.data_ip, count=10)  # type: ignore[arg-type]
        assert on_fibre(rtts, expected), (rtts, expected)
    finally:
        roadm.dispatch(pm_interact("clear", degree_number=working))
        roadm.dispatch(pm_interact("clear", degree_number=protection))
        line.protection_switch("force", to="working")
        line.protection_switch("release")
    assert wait_for(lambda: line.get()["active_path"] == "working", 2)
    assert all(p["up"] for p in line.get()["paths"])

"""Driver logic that needs no device: rate validation, dialect rendering and parsing, secret
resolution errors, normalisation of protection and PM."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from drivers import SshTarget, open_socket
from drivers.errors import DeviceUnreachable, Unsupported
from drivers.facts import modules_from_capabilities, parse_node_facts
from drivers.gpu_node import GpuNode, RunResult
from drivers.gateway import DIALECTS, shaping_kbps_for_ratio
from drivers.gateway.base import Gateway as GatewayDriver
from drivers.gateway.base import UnsafeCliText, cli_errors, parse, parse_counters, render
from drivers.otn import check_rate, q_from_ber
from drivers.otn import openconfig as oc
from drivers.otn import openroadm as orm
from testbed.connect import SecretUnavailable, resolve_secret, target_for, wan_shaping_kbps
from testbed.inventory import load_inventory
from testbed.inventory.model import SecretRef

VRP = DIALECTS["vrp"]
INV = Path(__file__).resolve().parent.parent / "inventory" / "emulated.yaml"


def test_unsupported_rate_is_refused_with_the_supported_values() -> None:
    check_rate(400, (200, 400, 600, 800))
    with pytest.raises(Unsupported) as e:
        check_rate(300, (200, 400, 600, 800), "dc-a-otn")
    assert e.value.supported == ("200G", "400G", "600G", "800G")
    assert "300G" in str(e.value) and "400G" in str(e.value) and "dc-a-otn" in str(e.value)


def test_openconfig_modes_and_protection_normalise() -> None:
    data = etree.fromstring(
        f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><terminal-device xmlns="{oc.TD}"><operational-modes>'
        '<mode><mode-id>8001</mode-id><state><description>bit-rate:TRIB_RATE_800G, fec</description></state></mode>'
        '<mode><mode-id>4002</mode-id><state><description>bit-rate:TRIB_RATE_400G</description></state></mode>'
        f'</operational-modes></terminal-device><aps xmlns="{oc.LP}"><aps-modules><aps-module><name>olp-1/3</name>'
        '<state><active-path>oc-line-protect:SECONDARY</active-path><force-to-port>SECONDARY</force-to-port></state>'
        '</aps-module></aps-modules></aps></data>')
    assert oc.parse_modes(data) == {400: 4002, 800: 8001}
    p = oc.parse_protection(data)
    assert (p.active_path, p.request_state, p.raw["force-to-port"]) == ("protection", "forced", "SECONDARY")
    # an identity in the leaf's own (default) namespace may come unprefixed, as the emulator sends it
    bare = etree.fromstring(etree.tostring(data).replace(b"oc-line-protect:SECONDARY", b"SECONDARY"))
    assert oc.parse_protection(bare).active_path == "protection"
    assert oc.rate_of_class("oc-opt-types:TRIB_RATE_800G") == 800


def test_openroadm_protection_pm_and_rate_normalise() -> None:
    pm_entry = "".join(
        f"<current-pm><type>{t}</type><measurement><pmParameterValue>{v}</pmParameterValue></measurement></current-pm>"
        for t, v in (("preFECbitErrorRate", "0.00200000000000000"), ("bitErrorRate", "0.00000001000000000"),
                     ("FECUncorrectableBlocks", "12"), ("erroredSeconds", "3")))
    data = etree.fromstring(
        f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><org-openroadm-device xmlns="{orm.DEV}">'
        f'<interface><name>XPDR1-NETWORK1-OTUCn</name><otu xmlns="{orm.OTU}"><otucn-n-rate>4</otucn-n-rate></otu></interface>'
        f'<interface><name>XPDR1-NETWORK2-OTUCn</name><otu xmlns="{orm.OTU}"><otucn-n-rate>8</otucn-n-rate></otu></interface>'
        f'<protection-grps><odu-sncp-pg xmlns="{orm.APS}"><name>ODU-SNCP-PG-1</name>'
        '<active-if>XPDR1-NETWORK2-ODUCn</active-if><request-state>LO-NE</request-state></odu-sncp-pg></protection-grps>'
        f'</org-openroadm-device><current-pm-list xmlns="{orm.PMNS}"><current-pm-entry><pm-resource-instance>'
        "/d:org-openroadm-device/d:interface[d:name='XPDR1-NETWORK2-OTUCn']</pm-resource-instance>"
        f"{pm_entry}</current-pm-entry></current-pm-list></data>")
    assert orm.parse_rate(data) == 400
    p = orm.parse_protection(data)
    assert (p.active_path, p.request_state, p.raw["request-state"]) == ("protection", "lockout", "LO-NE")
    pm = orm.parse_pm(data, "XPDR1-NETWORK2-OTUCn")
    assert (pm.pre_fec_ber, pm.post_fec_ber, pm.uncorrectable_blocks, pm.errored_seconds) == (2e-3, 1e-8, 12, 3)
    assert pm.q_db is not None and 8.5 < pm.q_db < 9.5 and "q_db" in pm.derived


def test_q_from_ber_matches_the_usual_values() -> None:
    assert q_from_ber(1e-3) == pytest.approx(9.8, abs=0.05)   # Q = 3.09 -> 9.8 dB
    assert q_from_ber(0) is None


VRP_INTERFACE = """100GE1/0/1 current state : UP (ifindex: 7)
Line protocol current state : UP
Outbound rate limit: CIR 250000 kbit/s
Last 300 seconds input rate: 1200 bits/sec, 3 packets/sec
Last 300 seconds output rate: 800 bits/sec, 2 packets/sec
Input:  1000 packets, 150000 bytes
  Unicast:             990,  Multicast:           10
  Total Error:         2,  CRC: 1
  Discard:             3
Output: 900 packets, 120000 bytes
  Total Error:         4
  Discard:             5
"""


def test_vrp_counters_parse_from_sample_text() -> None:
    c = parse_counters(VRP, "100GE1/0/1", VRP_INTERFACE)
    assert (c.state, c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes) == ("UP", 1000, 150000, 900, 120000)
    assert (c.rx_errors, c.tx_errors, c.rx_discards, c.tx_discards) == (2, 4, 3, 5)
    assert (c.in_rate_bps, c.out_rate_bps, c.shaping_kbps) == (1200, 800, 250000)


def test_vrp_templates_render_and_errors_are_found() -> None:
    assert render(VRP.config["shaping_set"], port="100GE1/0/1", cir_kbps=250000) == [
        "interface 100GE1/0/1", "qos lr outbound cir 250000"]
    lines = render(VRP.config["pfc_set"], port="P", priorities=[3, 4], remove=[5])
    assert lines[:4] == ["dcb pfc", "undo priority 5", "priority 3", "priority 4"]
    assert cli_errors(VRP, "   ^\nError: Wrong parameter found at '^' position.") == [
        "Error: Wrong parameter found at '^' position."]
    assert parse(" CIR(kbps): 250000, CBS(bytes): -", VRP.parsers["shaping_show"]) == {"cir_kbps": "250000"}
    assert parse("100GE1/0/1          manual    enable    3,4     0   0", VRP.parsers["pfc_show"])["priorities"] == "3,4"


class RecordingConn:
    """netmiko's place: records what would be sent and answers with an empty output."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_command(self, line: str, **_kw: object) -> str:
        self.sent.append(line)
        return ""


def _offline_gateway() -> tuple[GatewayDriver, RecordingConn]:
    gw = object.__new__(GatewayDriver)
    conn = RecordingConn()
    gw.dialect, gw.name, gw.wan_port, gw.read_timeout_s, gw.conn = VRP, "dc-a-gw", VRP.wan_port, 1.0, conn
    return gw, conn


# every break str.splitlines() honours, and the other control characters
@pytest.mark.parametrize("brk", ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
                                 "\x00", "\x1b"], ids=lambda c: f"U+{ord(c):04X}")
def test_the_gateway_driver_never_sends_a_line_that_holds_a_break(brk: str) -> None:
    gw, conn = _offline_gateway()
    line = f"description to dc-b{brk} qos lr outbound cir 8"
    with pytest.raises(UnsafeCliText) as info:
        gw.configure(["interface 100GE1/0/1", line])
    assert conn.sent == []                                       # not even system-view
    assert repr(line) in str(info.value) and "dc-a-gw" in str(info.value) and "nothing was sent" in str(info.value)
    with pytest.raises(UnsafeCliText):
        gw.show("counters", port=f"100GE1/0/1{brk}")
    assert conn.sent == []
    gw.configure(["interface 100GE1/0/1", "description to dc-b: d\u00e9j\u00e0 vu"])   # other text is sent
    assert conn.sent == ["system-view", "interface 100GE1/0/1", "description to dc-b: d\u00e9j\u00e0 vu", "return"]


def test_convergence_ratio_math() -> None:
    assert shaping_kbps_for_ratio(3200, 16) == 200_000_000           # 200G
    assert shaping_kbps_for_ratio(3200, 4) == 800_000_000            # 800G
    assert wan_shaping_kbps(load_inventory(INV), "dc-a", 8) == 400_000_000   # the emulated lab's too: real rates
    with pytest.raises(ValueError):
        shaping_kbps_for_ratio(3200, 0)


def test_secret_errors_name_the_device_and_the_variable_or_file(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    inv = load_inventory(INV)
    monkeypatch.delenv("DCILAB_NOPE", raising=False)
    with pytest.raises(SecretUnavailable, match="dc-a-gw: credentials.password: environment variable DCILAB_NOPE"):
        resolve_secret(inv, "dc-a-gw", SecretRef(env="DCILAB_NOPE"), "credentials.password")
    with pytest.raises(SecretUnavailable, match=r"dc-a-gw: .*cannot read secret file .*missing\.txt"):
        resolve_secret(inv, "dc-a-gw", SecretRef(file=str(tmp_path / "missing.txt")), "credentials.password")
    (tmp_path / "empty").write_text("")
    with pytest.raises(SecretUnavailable, match="is empty"):
        resolve_secret(inv, "dc-a-gw", SecretRef(file=str(tmp_path / "empty")), "credentials.password")
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("DCILAB_PW", "x")
    assert resolve_secret(inv, "d", SecretRef(file=str(tmp_path / "pw")), "p") == "s3cret"
    assert resolve_secret(inv, "d", SecretRef(env="DCILAB_PW"), "p") == "x"


def test_target_for_refuses_a_missing_key_file() -> None:
    inv = load_inventory(INV)
    dev = inv.device("dc-a-otn")
    if Path(inv.resolve_path(dev.credentials.ssh_key.path)).exists():  # type: ignore[union-attr]
        pytest.skip("the emulated lab is up: its key exists")
    with pytest.raises(SecretUnavailable, match="dc-a-otn: credentials.ssh_key.path"):
        target_for(inv, dev)


def test_ssh_target_needs_a_host_key_check_and_unreachable_is_quick() -> None:
    with pytest.raises(ValueError, match="known_hosts or fingerprint"):
        SshTarget("192.0.2.1", 22, "u", password="p")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now: refused at once
    with pytest.raises(DeviceUnreachable, match="cannot connect"):
        open_socket(SshTarget("127.0.0.1", port, "u", password="p", fingerprint="SHA256:" + "A" * 43, timeout_s=2))


# --- device facts (the testbed snapshot) from real-gear-shaped answers ----------------------------------
def test_modules_come_from_the_hello_capabilities() -> None:
    caps = ["urn:ietf:params:netconf:base:1.1", "urn:ietf:params:netconf:capability:candidate:1.0",
            "urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit",
            "http://org/openroadm/device?module=org-openroadm-device&revision=2020-05-29",
            ("http://openconfig.net/yang/platform?module=openconfig-platform&revision=2025-01-30"
             "&deviations=cisco-xr-openconfig-platform-deviations"),
            "urn:ietf:params:xml:ns:yang:ietf-yang-types?module=ietf-yang-types"]
    assert modules_from_capabilities(caps) == {"ietf-yang-types": "", "openconfig-platform": "2025-01-30",
                                               "org-openroadm-device": "2020-05-29"}


def _components(*comps: tuple[str, dict[str, str]]) -> etree._Element:
    body = "".join(f"<component><name>{n}</name><state><name>{n}</name>"
                   + "".join(f"<{k}>{v}</{k}>" for k, v in st.items()) + "</state></component>" for n, st in comps)
    return etree.fromstring(f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                            f'<components xmlns="{oc.PLAT}">{body}</components></data>')


def test_openconfig_facts_come_from_the_chassis_and_the_operating_system() -> None:
    data = _components(("port-1/1/1", {"type": "oc-platform-types:PORT"}),
                       ("CHASSIS-1", {"type": "oc-platform-types:CHASSIS", "mfg-name": "Acme", "part-no": "ACME-T800",
                                      "serial-no": "SN0042", "hardware-version": "B1"}),
                       ("OS-1", {"type": "oc-platform-types:OPERATING_SYSTEM", "software-version": "7.4.2"}))
    f = oc.parse_facts(data, {"openconfig-platform": "2025-01-30"})
    assert (f.vendor, f.model, f.software_version, f.serial) == ("Acme", "ACME-T800", "7.4.2", "SN0042")
    assert f.details == {"part-no": "ACME-T800", "hardware-version": "B1", "os-component": "OS-1"}
    assert f.modules == {"openconfig-platform": "2025-01-30"}
    only_chassis = oc.parse_facts(_components(("C", {"type": "CHASSIS", "model-name": "T8", "software-version": "1.2"})),
                                  {})
    assert (only_chassis.model, only_chassis.software_version) == ("T8", "1.2")
    nothing = oc.parse_facts(_components(("port-1/1/1", {"type": "oc-platform-types:PORT"})), {})
    assert (nothing.vendor, nothing.model, nothing.software_version, nothing.serial) == (None, None, None, None)


def test_openroadm_facts_come_from_the_info_container() -> None:
    data = etree.fromstring(   # as TransportPCE's 2.2.1 sample transponder answers
        f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><org-openroadm-device xmlns="{orm.DEV}"><info>'
        "<node-id>XPDR-A1</node-id><node-number>1</node-number><node-type>xpdr</node-type><clli>NodeA</clli>"
        "<vendor>vendorA</vendor><model>model2</model><serial-id>0</serial-id><softwareVersion>swversion1"
        "</softwareVersion><openroadm-version>2.2.1</openroadm-version><max-degrees>2</max-degrees></info>"
        "</org-openroadm-device></data>")
    f = orm.parse_info(data, {"org-openroadm-device": "2018-10-19"})
    assert (f.vendor, f.model, f.software_version, f.serial) == ("vendorA", "model2", "swversion1", "0")
    assert f.details == {"node-id": "XPDR-A1", "node-type": "xpdr", "openroadm-version": "2.2.1", "clli": "NodeA"}


VRP_VERSIONS = {
    "Huawei Versatile Routing Platform Software\nVRP (R) software, Version 8.180 (CE6857EI V200R005C10SPC800)\n"
    "Copyright (C) 2012-2018 Huawei Technologies Co., Ltd.\nHUAWEI CE6857-48S6CQ-EI uptime is 2 days, 1 hour, 41 minutes\n":
        ("HUAWEI", "CE6857-48S6CQ-EI", "V200R005C10SPC800", "8.180"),
    "Huawei Versatile Routing Platform Software\nVRP (R) software, Version 5.160 (AR2200 V200R009C00SPC500)\n"
    "Copyright (C) 2011-2018 HUAWEI TECH CO., LTD\nHuawei AR2220E Router uptime is 0 week, 0 day, 0 hour, 39 minutes\n":
        ("Huawei", "AR2220E", "V200R009C00SPC500", "5.160"),
}


@pytest.mark.parametrize("text", list(VRP_VERSIONS))
def test_vrp_version_and_esn_parse_from_device_output(text: str) -> None:
    v = parse(text, VRP.parsers["version"])
    assert (v["vendor"], v["model"], v["software_version"], v["vrp_version"]) == VRP_VERSIONS[text]
    assert parse("ESN of slot 1: 2102351931P0J1000123\n", VRP.parsers["serial"]) == {"serial": "2102351931P0J1000123"}
    assert VRP.commands["version"] == ["display version"] and VRP.commands["serial"] == ["display esn"]


def test_node_facts_parse_and_name_what_is_wrong() -> None:
    d = {"hostname": "gpu-a1", "kernel": "6.8.0-45-generic", "os": "Ubuntu 22.04.4 LTS", "python": "3.11.9",
         "python_executable": "/opt/venv/bin/python", "torch": "2.4.1+cu124", "cuda": "12.4", "cuda_available": True,
         "gpus": ["NVIDIA H100 80GB HBM3"] * 2, "nccl": "2.20.5", "gloo": True}
    f = parse_node_facts("UserWarning: something\nDCILAB-FACTS " + json.dumps(d) + "\n")
    assert (f.backend, f.gpus, f.nccl) == ("nccl", ("NVIDIA H100 80GB HBM3",) * 2, "2.20.5")
    assert f.to_dict()["gpus"] == d["gpus"]
    assert parse_node_facts("DCILAB-FACTS " + json.dumps({**d, "cuda_available": False, "nccl": None})).backend == "gloo"
    with pytest.raises(ValueError, match="no DCILAB-FACTS line"):
        parse_node_facts("Traceback (most recent call last):\n  ImportError: boom\n")
    with pytest.raises(ValueError, match="unreadable facts .*KeyError"):
        parse_node_facts('DCILAB-FACTS {"hostname": "x"}')


class LocalShellNode(GpuNode):
    """GpuNode.run through this machine's own shell: the real mktemp, not an SSH server."""

    def __init__(self) -> None:  # no connection
        self.name = "local"

    def run(self, cmd: str, timeout: float = 60.0) -> RunResult:
        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, check=False)
        return RunResult(p.returncode, p.stdout, p.stderr, 0.0)


def test_a_nodes_private_dir_is_new_unguessable_and_only_ours(tmp_path: Path) -> None:
    """Jobs and the probe unpack code into it: another user of the node who pre-creates the folder
    (or a symlink) at the name a fixed path would have used must not get our code run from theirs."""
    node = LocalShellNode()
    squatted = tmp_path / "dcilab-probe-abc"
    squatted.mkdir(mode=0o777)                                     # another user got there first
    a = node.private_dir("dcilab-probe-abc", parent=str(tmp_path))
    b = node.private_dir("dcilab-probe-abc", parent=str(tmp_path))
    assert a != b and Path(a).parent == tmp_path and Path(a) != squatted
    assert Path(a).name.startswith("dcilab-probe-abc.") and len(Path(a).name) == len("dcilab-probe-abc.") + 10
    st = os.stat(a)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid() and not os.path.islink(a)
    with pytest.raises(ValueError, match="prefix"):
        node.private_dir("../x", parent=str(tmp_path))

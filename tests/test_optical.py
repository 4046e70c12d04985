"""The emulated optical gear (emulator/optical) driven by plain ncclient.

Unit tests run each personality against a fake line implementing LineControl's contract
(including the protection ops); the ``lab`` tests at the end run the real line between two
namespaces dclo-<pid>-a/b (emulator.line.pair.LinePair; root only)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError

from emulator.line.pair import LinePair, sh, stop_process
from emulator.optical import make_device, parse_config

REPO = Path(__file__).resolve().parents[1]
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
PLAT = "http://openconfig.net/yang/platform"
TD = "http://openconfig.net/yang/terminal-device"
TT = "http://openconfig.net/yang/transport-types"
LP = "http://openconfig.net/yang/optical-transport-line-protection"
ATT = "http://openconfig.net/yang/optical-attenuator"
DEV = "http://org/openroadm/device"
APS = "http://org/openroadm/prot/otn-linear-aps"
ODU = "http://org/openroadm/otn-odu-interfaces"
PM = "http://org/openroadm/pm"
BENCH = "urn:dcilab:emulator:bench"
SCALE = 0.00125
PATHS = [
    {"name": "working", "kind": "working", "length_km": 329, "roadms": ["dc-a-roadm", "ila-roadm", "dc-b-roadm"]},
    {"name": "protection", "kind": "protection", "length_km": 412, "roadms": ["dc-a-roadm", "dc-b-roadm"]},
    {"name": "restoration", "kind": "restoration", "length_km": 611,
     "roadms": ["dc-a-roadm", "ila-roadm", "dc-b-roadm"]},
]


class FakeLine:
    """In-memory line with LineControl's methods and the protection contract."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rate_bps = int(800e9 * SCALE)
        self.paths = {p["name"]: {"name": p["name"], "length_km": p["length_km"], "ber": 0.0, "up": True}
                      for p in PATHS}
        self.active = "working"
        self.calls: list = []
        self.evs: list = []
        self.prot = {"mode": "none", "working": "working", "protection": None, "request_state": "none",
                     "hold_off_ms": 0, "switch_ms": 30, "revertive": False, "wtr_s": 300, "ason": False,
                     "restoration": [], "restoration_ms": 3000, "restoration_state": "idle", "last_switch": None}
        self.counters = {d: {p: {"rx_frames": 0, "rx_bytes": 0, "tx_frames": 0, "tx_bytes": 0,
                                 "errored_frames": 0, "dropped_frames": 0, "outage_dropped": 0, "cut_dropped": 0,
                                 "queue_dropped": 0, "tx_failed": 0} for p in self.paths}
                         for d in ("a_to_b", "b_to_a")}

    def _ev(self, kind, **kw):
        self.evs.append({"seq": len(self.evs), "time": time.time(), "mono": time.monotonic(), "kind": kind, **kw})

    def get(self):
        with self.lock:
            return {"rate_bps": self.rate_bps, "active_path": self.active,
                    "paths": [dict(p, active=n == self.active) for n, p in self.paths.items()],
                    "outage": {"active": False}, "counters": copy.deepcopy(self.counters),
                    "protection": dict(self.prot, active_path=self.active)}

    def set_rate(self, rate_bps):
        self.calls.append(("set_rate", rate_bps))
        self.rate_bps = rate_bps
        return {"ok": True}

    def set_ber(self, path, ber):
        self.calls.append(("set_ber", path, ber))
        self.paths[path]["ber"] = ber
        return {"ok": True}

    def set_active_path(self, path):
        self.active = path
        return {"ok": True}

    def set_path_up(self, path, up):
        self.calls.append(("set_path_up", path, up))
        self.paths[path]["up"] = up
        self._ev("path-up" if up else "path-down", **{"from": path, "to": None, "cause": "operator"})
        return {"ok": True}

    def configure_protection(self, **kw):
        self.calls.append(("configure_protection", kw))
        self.prot.update(kw)
        return {"ok": True}

    def protection_switch(self, request, to=None):
        self.calls.append(("protection_switch", request, to))
        prev = self.active
        if request in ("force", "manual"):
            self.active = to
        elif request in ("lockout", "release"):
            self.active = self.prot["working"]
        self.prot["request_state"] = {"force": "forced", "manual": "manual", "lockout": "lockout"}.get(request, "none")
        self._ev("switch", **{"from": prev, "to": self.active, "cause": request, "outage_ms": 30.0})
        return {"ok": True, "event": self.evs[-1]}

    def events(self, since=0):
        return {"events": [e for e in self.evs if e["seq"] >= since], "next": len(self.evs)}

    def carry(self, direction, path, frames, nbytes, errored=0):
        with self.lock:
            c = self.counters[direction][path]
            c["rx_frames"] += frames
            c["rx_bytes"] += nbytes
            c["errored_frames"] += errored
            c["tx_frames"] += frames - errored


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("okeys")
    host = paramiko.ECDSAKey.generate()
    host.write_private_key_file(str(d / "host_key"))
    client = paramiko.ECDSAKey.generate()
    client.write_private_key_file(str(d / "id_ecdsa"))
    (d / "authorized_keys").write_text(f"{client.get_name()} {client.get_base64()} tester\n")
    return d


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return h


def device_cfg(keys, personality, role="otn_terminal", name=None, **over):
    cfg = {"name": name or ("dc-a-otn" if role == "otn_terminal" else "ila-roadm"), "role": role,
           "personality": personality, "site": "dc-a", "listen": {"address": "127.0.0.1", "port": 0},
           "host_key": str(keys / "host_key"),
           "auth": {"username": "admin", "authorized_keys": str(keys / "authorized_keys")},
           "line_socket": "/nonexistent/line.sock", "paths": PATHS, "bandwidth_scale": SCALE, "pm_sample_s": 0.1}
    if role == "otn_terminal":
        cfg["service"] = {"name": "dci-otn", "line_rate_gbps": 800, "client_ports": {"count": 2, "rate_gbps": 400},
                          "working": "working", "protection": "protection", "restoration": ["restoration"],
                          "end": "a", "peer": "dc-b-otn"}
    cfg.update(over)
    return cfg


@pytest.fixture
def make(keys, home):
    started = []

    def _make(personality, role="otn_terminal", line=None, **over):
        line = line or FakeLine()
        dev = make_device(parse_config(device_cfg(keys, personality, role, **over)), line).start()
        hk = dev.server.host_key
        with open(home / ".ssh" / "known_hosts", "a") as f:
            f.write(f"[127.0.0.1]:{dev.port} {hk.get_name()} {hk.get_base64()}\n")
        started.append(dev)
        return dev, line

    yield _make
    for d in started:
        d.stop()


def connect(dev, keys):
    return manager.connect(host="127.0.0.1", port=dev.port, username="admin",
                           key_filename=str(keys / "id_ecdsa"), timeout=10)


def ele(reply):
    x = reply.data_xml if hasattr(reply, "data_xml") else reply.xml
    return etree.fromstring(x.encode() if isinstance(x, str) else x)


def first(root, local_name):
    for e in root.iter():
        if isinstance(e.tag, str) and etree.QName(e).localname == local_name:
            return e
    return None


def xpath(root, path, **ns):
    return root.xpath(path, namespaces={"nc": NC, "p": PLAT, "td": TD, "lp": LP, "att": ATT, "d": DEV, "a": APS,
                                        "odu": ODU, "pm": PM, "b": BENCH, **ns})


def identity(el) -> tuple[str | None, str]:
    """An identityref leaf's (namespace, name), its prefix resolved as libyang does (no prefix:
    the default namespace in effect)."""
    prefix, _, name = (el.text or "").strip().rpartition(":")
    return el.nsmap.get(prefix or None), name


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def calls(line, name):
    return [c for c in line.calls if c[0] == name]


HALF = int(400e9 * SCALE)
FULL = int(800e9 * SCALE)
# the reference's or_get_filter.xml
OR_FILTER = f"""<filter xmlns="{NC}" type="subtree">
  <org-openroadm-device xmlns="{DEV}"><protection-grps><odu-sncp-pg xmlns="{APS}"><name>ODU-SNCP-PG-1</name>
  <active-if/><request-state/></odu-sncp-pg></protection-grps></org-openroadm-device>
  <current-pm-list xmlns="{PM}"><current-pm-entry><pm-resource-type>interface</pm-resource-type></current-pm-entry>
  </current-pm-list></filter>"""


# --- OpenConfig terminal ------------------------------------------------------------------------------
def test_oc_get_pm_subtree(make, keys):
    dev, line = make("openconfig")
    flt = f"""<filter xmlns="{NC}" type="subtree">
      <terminal-device xmlns="{TD}"><logical-channels><channel><index>100</index><otn><state>
        <pre-fec-ber/><post-fec-ber/><q-value/><esnr/><fec-uncorrectable-blocks/><errored-seconds/>
      </state></otn></channel></logical-channels></terminal-device>
      <components xmlns="{PLAT}"><component><name>och-1/0/1</name>
        <optical-channel xmlns="{TD}"><state><osnr/><pre-fec-ber/><operational-mode/></state></optical-channel>
      </component></components>
      <aps xmlns="{LP}"><aps-modules><aps-module><name>olp-1/3</name><state><active-path/></state>
      </aps-module></aps-modules></aps></filter>"""
    with connect(dev, keys) as m:
        r = ele(m.get(filter=etree.fromstring(flt)))
    ots = xpath(r, "//td:channel[td:index='100']/td:otn/td:state")[0]
    pre = xpath(ots, "td:pre-fec-ber/td:instant")[0].text
    assert len(pre.split(".")[1]) == 18 and "e" not in pre.lower() and 1e-5 < float(pre) < 1e-2
    assert xpath(ots, "td:post-fec-ber/td:instant")[0].text == "0.000000000000000000"
    assert {etree.QName(e).localname for e in ots} == {"pre-fec-ber", "post-fec-ber", "q-value", "esnr",
                                                       "fec-uncorrectable-blocks", "errored-seconds"}
    q = xpath(ots, "td:q-value/td:instant")[0].text
    assert len(q.split(".")[1]) == 2 and float(q) > 9
    assert xpath(r, "//td:optical-channel/td:state/td:operational-mode")[0].text == "8001"
    assert identity(xpath(r, "//lp:aps-module/lp:state/lp:active-path")[0]) == (LP, "PRIMARY")
    assert not xpath(r, "//td:channel[td:index='11']")  # filtered out


def _oc_pm(m):
    r = ele(m.get(filter=("subtree", f'<terminal-device xmlns="{TD}"><logical-channels><channel><index>100</index>'
                                     f'<otn><state/></otn></channel></logical-channels></terminal-device>')))
    return xpath(r, "//td:otn/td:state")[0]


def test_oc_pm_from_line_counters(make, keys):
    dev, line = make("openconfig")
    with connect(dev, keys) as m:
        line.set_ber("working", 1e-8)
        s = _oc_pm(m)
        # idle line: the configured BER, and pre-FEC/Q follow it monotonically
        assert xpath(s, "td:post-fec-ber/td:instant")[0].text == "0.000000010000000000"
        q_bad = float(xpath(s, "td:q-value/td:instant")[0].text)
        line.set_ber("working", 0.0)
        q_good = float(xpath(_oc_pm(m), "td:q-value/td:instant")[0].text)
        assert q_good > q_bad
        # traffic with errors, received at end a (b_to_a): measured BER, blocks, errored seconds
        line.set_ber("working", 1e-6)
        time.sleep(0.25)
        line.carry("b_to_a", "working", 100000, 100000 * 1496, errored=1200)
        time.sleep(0.35)
        s = _oc_pm(m)
        assert int(xpath(s, "td:fec-uncorrectable-blocks")[0].text) == 1200
        assert int(xpath(s, "td:errored-seconds")[0].text) >= 1
        mx = float(xpath(s, "td:post-fec-ber/td:max")[0].text)
        assert 0.8e-6 < mx < 1.2e-6  # 1200 errored frames / (100000 x 12000 bits)
        # a direction this end does not receive does not count
        line.carry("a_to_b", "working", 1000, 1000 * 1000, errored=500)
        time.sleep(0.3)
        assert int(xpath(_oc_pm(m), "td:fec-uncorrectable-blocks")[0].text) == 1200


RATE_400 = f"""<config xmlns="{NC}"><terminal-device xmlns="{TD}" xmlns:oc-opt-types="{TT}"><logical-channels>
  <channel><index>100</index><config><index>100</index><rate-class>oc-opt-types:TRIB_RATE_400G</rate-class>
  <trib-protocol>oc-opt-types:PROT_ODUFLEX_CBR</trib-protocol></config></channel>
  <channel><index>12</index><config><index>12</index><admin-state>DISABLED</admin-state></config></channel>
  </logical-channels></terminal-device>
  <components xmlns="{PLAT}"><component><name>och-1/0/1</name><optical-channel xmlns="{TD}"><config>
  <operational-mode>4002</operational-mode></config></optical-channel></component></components></config>"""


def test_oc_rate_edit_halves_line(make, keys):
    dev, line = make("openconfig")
    with connect(dev, keys) as m:
        m.edit_config(target="candidate", config=RATE_400)
        assert line.rate_bps == FULL  # nothing before commit
        m.commit()
        assert calls(line, "set_rate")[-1] == ("set_rate", HALF)
        r = ele(m.get(filter=("subtree", f'<terminal-device xmlns="{TD}"><logical-channels><channel>'
                                         f'<index>100</index><state><rate-class/></state></channel>'
                                         f'</logical-channels></terminal-device>')))
        assert xpath(r, "//td:state/td:rate-class")[0].text.endswith("TRIB_RATE_400G")
        # the operational mode alone also sets the rate (back up needs all three restored)
        m.edit_config(target="running", config=f"""<config xmlns="{NC}"><terminal-device xmlns="{TD}"
          xmlns:oc-opt-types="{TT}"><logical-channels><channel><index>100</index><config><index>100</index>
          <rate-class>oc-opt-types:TRIB_RATE_800G</rate-class></config></channel><channel><index>12</index>
          <config><index>12</index><admin-state>ENABLED</admin-state></config></channel></logical-channels>
          </terminal-device></config>""")
        assert line.rate_bps == HALF
        m.edit_config(target="running", config=f"""<config xmlns="{NC}"><components xmlns="{PLAT}"><component>
          <name>och-1/0/1</name><optical-channel xmlns="{TD}"><config><operational-mode>8001</operational-mode>
          </config></optical-channel></component></components></config>""")
        assert line.rate_bps == FULL


def test_oc_confirmed_commit_rolls_line_back(make, keys):
    dev, line = make("openconfig")
    with connect(dev, keys) as m:
        m.edit_config(target="candidate", config=RATE_400)
        m.commit(confirmed=True, timeout="1")
        assert line.rate_bps == HALF
        assert wait_for(lambda: line.rate_bps == FULL, 4)
        assert calls(line, "set_rate")[-1] == ("set_rate", FULL)
        r = ele(m.get_config("running", filter=("subtree", f'<components xmlns="{PLAT}"><component>'
                                                           f'<name>och-1/0/1</name></component></components>')))
        assert first(r, "operational-mode").text == "8001"


def test_oc_aps_force_and_holdoff(make, keys):
    dev, line = make("openconfig")
    with connect(dev, keys) as m:
        m.create_subscription()
        m.edit_config(target="running", config=f"""<config xmlns="{NC}"><aps xmlns="{LP}"><aps-modules><aps-module>
          <name>olp-1/3</name><config><name>olp-1/3</name><revertive>true</revertive><hold-off-time>20</hold-off-time>
          <force-to-port>SECONDARY</force-to-port></config></aps-module></aps-modules></aps></config>""")
        kw = calls(line, "configure_protection")[-1][1]
        assert kw["hold_off_ms"] == 20 and kw["revertive"] is True and kw["mode"] == "sncp"
        assert kw["working"] == "working" and kw["protection"] == "protection" and kw["restoration"] == ["restoration"]
        assert calls(line, "protection_switch")[-1] == ("protection_switch", "force", "protection")
        r = ele(m.get(filter=("subtree", f'<aps xmlns="{LP}"/>')))
        assert identity(xpath(r, "//lp:state/lp:active-path")[0]) == (LP, "SECONDARY")
        n = m.take_notification(timeout=3)
        assert n is not None
        ne = etree.fromstring(n.notification_xml.encode())
        assert first(ne, "protection-switch-event") is not None and first(ne, "to").text == "protection"
        m.edit_config(target="running", config=f"""<config xmlns="{NC}"><aps xmlns="{LP}"><aps-modules><aps-module>
          <name>olp-1/3</name><config><force-to-port>NONE</force-to-port></config></aps-module></aps-modules></aps>
          </config>""")
        assert calls(line, "protection_switch")[-1][1] == "release"


BAD_OC = [
    ("rate-class", f'<terminal-device xmlns="{TD}" xmlns:t="{TT}"><logical-channels><channel><index>100</index>'
                   f'<config><rate-class>t:TRIB_RATE_450G</rate-class></config></channel></logical-channels>'
                   f'</terminal-device>'),
    ("operational-mode", f'<components xmlns="{PLAT}"><component><name>och-1/0/1</name><optical-channel xmlns="{TD}">'
                         f'<config><operational-mode>1234</operational-mode></config></optical-channel></component>'
                         f'</components>'),
    ("attenuation", f'<optical-attenuator xmlns="{ATT}"><attenuators><attenuator><name>voa-1/2/1</name><config>'
                    f'<attenuation>12.555</attenuation></config></attenuator></attenuators></optical-attenuator>'),
    ("force-to-port", f'<aps xmlns="{LP}"><aps-modules><aps-module><name>olp-1/3</name><config>'
                      f'<force-to-port>BOTH</force-to-port></config></aps-module></aps-modules></aps>'),
    ("hold-off-time", f'<aps xmlns="{LP}"><aps-modules><aps-module><name>olp-1/3</name><config>'
                      f'<hold-off-time>-5</hold-off-time></config></aps-module></aps-modules></aps>'),
    ("active-path", f'<aps xmlns="{LP}"><aps-modules><aps-module><name>olp-1/3</name><state>'
                    f'<active-path>SECONDARY</active-path></state></aps-module></aps-modules></aps>'),
    ("admin-state", f'<terminal-device xmlns="{TD}"><logical-channels><channel><index>11</index><config>'
                    f'<admin-state>OFF</admin-state></config></channel></logical-channels></terminal-device>'),
    ("channel", f'<terminal-device xmlns="{TD}"><logical-channels><channel operation="delete" '
                f'xmlns:nc="{NC}" nc:operation="delete"><index>100</index></channel></logical-channels>'
                f'</terminal-device>'),
    ("namespace", '<foo xmlns="urn:example:nothing"><bar>1</bar></foo>'),
]


@pytest.mark.parametrize("what,body", BAD_OC, ids=[b[0] for b in BAD_OC])
def test_oc_bad_edits_rejected_unchanged(make, keys, what, body):
    dev, line = make("openconfig")
    with connect(dev, keys) as m:
        before = m.get_config("running").data_xml
        for target in ("running", "candidate"):
            with pytest.raises(RPCError) as ei:
                m.edit_config(target=target, config=f'<config xmlns="{NC}">{body}</config>')
            assert ei.value.tag in ("invalid-value", "unknown-namespace", "operation-not-supported",
                                    "unknown-element"), ei.value.tag
            assert ei.value.type in ("application", "protocol")
        m.commit()
        assert m.get_config("running").data_xml == before
    assert not calls(line, "set_rate") and not calls(line, "protection_switch")


# --- OpenROADM terminal -----------------------------------------------------------------------------
def _odu_rate(n, ifname="XPDR1-NETWORK1-ODUCn"):
    return (f'<config xmlns="{NC}"><org-openroadm-device xmlns="{DEV}"><interface><name>{ifname}</name>'
            f'<odu xmlns="{ODU}"><oducn-n-rate>{n}</oducn-n-rate></odu></interface></org-openroadm-device></config>')


def test_or_rate_edit_and_confirmed_rollback(make, keys):
    dev, line = make("openroadm")
    with connect(dev, keys) as m:
        m.edit_config(target="candidate", config=_odu_rate(4))
        m.commit()
        assert calls(line, "set_rate")[-1] == ("set_rate", HALF)
        r = ele(m.get(filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><interface>'
                                         f'<name>XPDR1-NETWORK1-OTUCn</name></interface></org-openroadm-device>')))
        assert first(r, "otucn-n-rate").text == "4"
        m.edit_config(target="candidate", config=_odu_rate(8))
        m.commit(confirmed=True, timeout="1")
        assert line.rate_bps == FULL
        assert wait_for(lambda: line.rate_bps == HALF, 4)  # rolled back to n=4
        with pytest.raises(RPCError) as ei:
            m.edit_config(target="candidate", config=_odu_rate(9))
        assert ei.value.tag == "invalid-value"
        with pytest.raises(RPCError):
            m.edit_config(target="running", config=_odu_rate("eight"))
        assert line.rate_bps == HALF


def sncp_switch(command: str = "Force-Switch") -> str:
    """The OpenROADM ODU-SNCP switch RPC on the emulated terminal's protection group."""
    return (f'<odu-sncp-protection-switch xmlns="{APS}"><protection-group>ODU-SNCP-PG-1</protection-group>'
            f'<pg-interface>XPDR1-NETWORK2-ODUCn</pg-interface><switch-command>{command}</switch-command>'
            f'</odu-sncp-protection-switch>')


def test_or_sncp_switch_rpc_and_notification(make, keys):
    dev, line = make("openroadm")
    rpc = sncp_switch()
    with connect(dev, keys) as m:
        m.create_subscription()
        reply = m.dispatch(etree.fromstring(rpc))
        assert first(ele(reply), "status").text == "Successful"
        assert calls(line, "protection_switch")[-1] == ("protection_switch", "force", "protection")
        n = m.take_notification(timeout=3)
        ne = etree.fromstring(n.notification_xml.encode())
        assert first(ne, "odu-sncp-pg-switch-event") is not None
        assert first(ne, "switch-status").text == "switched-to-protect"
        assert first(ne, "odu-sncp-pg-name").text == "ODU-SNCP-PG-1"
        r = ele(m.get(filter=etree.fromstring(OR_FILTER)))
        assert first(r, "active-if").text == "XPDR1-NETWORK2-ODUCn"
        assert first(r, "request-state").text == "FS-NE"
        types = {e.text for e in r.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "type"}
        assert {"preFECbitErrorRate", "bitErrorRate", "FECUncorrectableBlocks", "erroredSeconds"} <= types
        release = rpc.replace("Force-Switch", "Release")
        assert first(ele(m.dispatch(etree.fromstring(release))), "status").text == "Successful"
        assert calls(line, "protection_switch")[-1][1] == "release"
        n = m.take_notification(timeout=3)
        assert first(etree.fromstring(n.notification_xml.encode()), "switch-status").text == \
            "switched-back-to-working"
        for bad in (rpc.replace("Force-Switch", "Jump"), rpc.replace("ODU-SNCP-PG-1", "PG-9"),
                    rpc.replace("XPDR1-NETWORK2-ODUCn", "XPDR1-CLIENT1-ETHERNET")):
            with pytest.raises(RPCError) as ei:
                m.dispatch(etree.fromstring(bad))
            assert ei.value.tag == "invalid-value"
        assert len(calls(line, "protection_switch")) == 2


def test_or_holdoff_and_pm(make, keys):
    dev, line = make("openroadm")
    pg = (f'<config xmlns="{NC}"><org-openroadm-device xmlns="{DEV}"><protection-grps><odu-sncp-pg xmlns="{APS}">'
          f'<name>ODU-SNCP-PG-1</name><holdoff-timer><holdoff>{{}}</holdoff></holdoff-timer></odu-sncp-pg>'
          f'</protection-grps></org-openroadm-device></config>')
    with connect(dev, keys) as m:
        m.edit_config(target="running", config=pg.format(20))
        assert calls(line, "configure_protection")[-1][1]["hold_off_ms"] == 20
        with pytest.raises(RPCError):
            m.edit_config(target="running", config=pg.format(30))
        assert len(calls(line, "configure_protection")) == 1
        line.set_ber("working", 1e-9)
        flt = (f'<current-pm-list xmlns="{PM}"><current-pm-entry><pm-resource-type>interface</pm-resource-type>'
               f'</current-pm-entry></current-pm-list>')
        r = ele(m.get(filter=("subtree", flt)))
        vals = {}
        for cp in xpath(r, "//pm:current-pm-entry[contains(pm:pm-resource-instance, 'NETWORK1-OTUCn')]/pm:current-pm"):
            vals[xpath(cp, "pm:type")[0].text] = xpath(cp, "pm:measurement/pm:pmParameterValue")[0].text
        assert vals["bitErrorRate"] == "0.00000000100000000"  # decimal64, 17 digits
        assert float(vals["preFECbitErrorRate"]) > 1e-3
        inst = xpath(r, "//pm:pm-resource-instance")[0]
        assert inst.text.startswith("/d:org-openroadm-device/d:interface[d:name=")
        assert inst.nsmap.get("d") == DEV


def test_or_pg_leaves_follow_the_models_when_conditions(make, keys):
    """holdoff-multiplier exists only with holdoff 100, wait-to-restore only when revertive (the
    published model's when): an edit breaking either is refused, one keeping them is applied."""
    dev, line = make("openroadm")
    pg = (f'<config xmlns="{NC}"><org-openroadm-device xmlns="{DEV}"><protection-grps><odu-sncp-pg xmlns="{APS}">'
          f'<name>ODU-SNCP-PG-1</name>{{}}</odu-sncp-pg></protection-grps></org-openroadm-device></config>')
    with connect(dev, keys) as m:
        for bad in ("<wait-to-restore>2</wait-to-restore>",
                    "<holdoff-timer><holdoff>20</holdoff><holdoff-multiplier>2</holdoff-multiplier></holdoff-timer>"):
            with pytest.raises(RPCError) as ei:
                m.edit_config(target="running", config=pg.format(bad))
            assert ei.value.tag == "invalid-value"
        assert not calls(line, "configure_protection")
        m.edit_config(target="running", config=pg.format(
            "<revertive>true</revertive><wait-to-restore>2</wait-to-restore><holdoff-timer><holdoff>100</holdoff>"
            "<holdoff-multiplier>3</holdoff-multiplier></holdoff-timer>"))
        kw = calls(line, "configure_protection")[-1][1]
        assert (kw["hold_off_ms"], kw["revertive"], kw["wtr_s"]) == (300, True, 120)


@pytest.mark.parametrize("role,pack", [("otn_terminal", "1/0/1-PLUG-NET"), ("roadm", "1/0")])
def test_or_supporting_circuit_pack_cannot_dangle(make, keys, role, pack):
    """An interface's supporting circuit pack is a leafref: removing the pack is refused."""
    dev, _ = make("openroadm", role=role)
    rm = (f'<config xmlns="{NC}" xmlns:nc="{NC}"><org-openroadm-device xmlns="{DEV}"><circuit-packs nc:operation="delete">'
          f'<circuit-pack-name>{pack}</circuit-pack-name></circuit-packs></org-openroadm-device></config>')
    with connect(dev, keys) as m:
        with pytest.raises(RPCError, match="no circuit pack") as ei:
            m.edit_config(target="running", config=rm)
        assert ei.value.tag == "invalid-value"
        r = ele(m.get_config("running", filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><circuit-packs>'
                                                          f'<circuit-pack-name>{pack}</circuit-pack-name>'
                                                          f'</circuit-packs></org-openroadm-device>')))
        assert first(r, "circuit-pack-name").text == pack


# --- ROADM ---------------------------------------------------------------------------------------------
def _pmi(action, **kw):
    body = "".join(f"<{k.replace('_', '-')}>{v}</{k.replace('_', '-')}>" for k, v in kw.items())
    return etree.fromstring(f'<pm-interact xmlns="{BENCH}"><rpc-action>{action}</rpc-action>{body}</pm-interact>')


def test_roadm_degrees_and_pm_interact(make, keys):
    dev, line = make("openroadm", role="roadm")
    with connect(dev, keys) as m:
        m.create_subscription()
        r = ele(m.get(filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><degree/></org-openroadm-device>')))
        fibers = [(xpath(d, "d:degree-number")[0].text, first(d, "path").text) for d in xpath(r, "//d:degree")]
        # ila-roadm: two degrees on the working fiber, two on the restoration fiber (protection skips it)
        assert fibers == [("1", "working"), ("2", "working"), ("3", "restoration"), ("4", "restoration")]
        reply = m.dispatch(_pmi("set", degree_number=1))
        assert first(ele(reply), "status").text == "Successful"
        assert calls(line, "set_path_up") == [("set_path_up", "working", False)]
        assert line.paths["restoration"]["up"] and not line.paths["working"]["up"]
        r = ele(m.get(filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><interface/></org-openroadm-device>')))
        ops = {xpath(i, "d:name")[0].text: xpath(i, "d:operational-state")[0].text for i in xpath(r, "//d:interface")}
        assert ops["OTS-DEG1-TTP-TXRX"] == "outOfService" and ops["OTS-DEG2-TTP-TXRX"] == "outOfService"
        assert ops["OTS-DEG3-TTP-TXRX"] == "inService"
        n = m.take_notification(timeout=3)
        ne = etree.fromstring(n.notification_xml.encode())
        assert first(ne, "fiber-event") is not None and first(ne, "event").text == "los"
        r = ele(m.get(filter=("subtree", f'<current-pm-list xmlns="{PM}"/>')))
        pin = [xpath(c, "pm:measurement/pm:pmParameterValue")[0].text for c in
               xpath(r, "//pm:current-pm-entry[contains(pm:pm-resource-instance,'DEG1')]/pm:current-pm"
                        "[pm:type='opticalPowerInput']")]
        assert pin == ["-40.00"]
        m.dispatch(_pmi("clear", interface="OTS-DEG1-TTP-TXRX"))
        assert line.paths["working"]["up"]
        m.dispatch(_pmi("set", path="working", ber="0.000000010000000000"))
        assert calls(line, "set_ber")[-1] == ("set_ber", "working", 1e-8)
        m.dispatch(_pmi("clear", path="working"))
        assert calls(line, "set_ber")[-1] == ("set_ber", "working", 0.0)
        n_calls = len(line.calls)
        for bad in (_pmi("set", degree_number=9), _pmi("set", path="protection", ber="0.1"),
                    _pmi("set", path="working", ber="1e-8"), _pmi("toggle", degree_number=1),
                    _pmi("set", interface="OTS-DEG7-TTP-TXRX")):
            with pytest.raises(RPCError) as ei:
                m.dispatch(bad)
            assert ei.value.tag == "invalid-value"
        assert len(line.calls) == n_calls


def test_roadm_restoration_state_and_notification(make, keys):
    dev, line = make("openroadm", role="roadm")
    with connect(dev, keys) as m:
        m.create_subscription()
        time.sleep(0.2)  # the poller has taken the line's event cursor
        line.active = "restoration"
        line.prot.update(restoration_state="restored", ason=True, mode="none")
        line._ev("restoration", **{"from": "working", "to": "restoration", "cause": "ason", "outage_ms": 3010.0})
        n = m.take_notification(timeout=3)
        ne = etree.fromstring(n.notification_xml.encode())
        assert first(ne, "restoration-event") is not None
        assert [e.text for e in ne.iter() if etree.QName(e).localname == "roadm"] == \
            ["dc-a-roadm", "ila-roadm", "dc-b-roadm"]
        r = ele(m.get(filter=("subtree", f'<optical-control-plane xmlns="{BENCH}"/>')))
        assert first(r, "restoration-state").text == "restored"
        assert first(r, "active-path").text == "restoration"


# --- identity: what a testbed snapshot reads ------------------------------------------------------------
@pytest.mark.parametrize("personality,role", [("openconfig", "otn_terminal"), ("openroadm", "otn_terminal"),
                                              ("openroadm", "roadm")])
def test_identity_is_in_the_datastore_and_the_hello_names_the_modules(make, keys, personality, role):
    from emulator.identity import VENDOR, serial_number, software_version
    dev, _ = make(personality, role=role)
    with connect(dev, keys) as m:
        mods = {c.split("module=")[1].split("&")[0]: c.split("revision=")[1] if "revision=" in c else ""
                for c in m.server_capabilities if "module=" in c}
        if personality == "openconfig":
            assert mods["openconfig-terminal-device"] == "2026-01-14" and mods["openconfig-platform"] == "2025-07-15"
            flt = (f'<components xmlns="{PLAT}"><component><name>chassis</name><state><mfg-name/><serial-no/>'
                   f'</state></component><component><name>os</name><state><software-version/></state></component>'
                   f'</components>')
            r = ele(m.get(filter=("subtree", flt)))
            assert [e.text for e in xpath(r, "//p:component[p:name='chassis']/p:state/*")] == [
                VENDOR, serial_number(dev.cfg.name)]
            assert xpath(r, "//p:component[p:name='os']/p:state/p:software-version")[0].text == software_version()
            assert not xpath(r, "//p:component[p:name='och-1/0/1']")   # filtered out
            return
        assert mods["org-openroadm-device"] == "2025-09-26" and "x" not in mods
        r = ele(m.get(filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><info/></org-openroadm-device>')))
        info = {etree.QName(e).localname: e.text for e in xpath(r, "//d:info/*")}
        assert (info["node-id"], info["vendor"], info["serial-id"], info["softwareVersion"]) == (
            dev.cfg.name, VENDOR, serial_number(dev.cfg.name), software_version())
        assert info["openroadm-version"] == "18.0.0" and not xpath(r, "//d:interface")
        with pytest.raises(RPCError, match="read-only"):   # config false: an edit is refused
            m.edit_config(target="candidate", config=f'<config xmlns="{NC}"><org-openroadm-device xmlns="{DEV}">'
                                                     f'<info><vendor>acme</vendor></info></org-openroadm-device></config>')


# --- config, CLI, persistence ----------------------------------------------------------------------------
@pytest.mark.parametrize("patch,msg", [
    ({"role": "switch"}, "role"), ({"personality": "openconfig", "role": "roadm"}, "personality"),
    ({"listen": {"address": "nowhere", "port": 830}}, "listen.address"), ({"host_key": "/nope"}, "host_key"),
    ({"bogus": 1}, "unknown key"), ({"paths": []}, "paths"),
])
def test_bad_config(keys, patch, msg):
    cfg = device_cfg(keys, "openconfig")
    cfg.update(patch)
    with pytest.raises(ValueError, match=msg):
        parse_config(cfg)


def test_cli_bad_config_exits_2(tmp_path, keys):
    cfg = device_cfg(keys, "openroadm")
    cfg["service"]["working"] = "nowhere"
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    r = subprocess.run([sys.executable, "-m", "emulator.optical", "--config", str(p)], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown path" in r.stderr


def test_restart_keeps_running_and_resyncs_line(make, keys, tmp_path):
    persist = str(tmp_path / "running.xml")
    dev, line = make("openroadm", persist_path=persist)
    with connect(dev, keys) as m:
        m.edit_config(target="running", config=_odu_rate(4))
    dev.stop()
    line2 = FakeLine()  # the line restarted at 800G
    dev2, _ = make("openroadm", line=line2, persist_path=persist)
    assert wait_for(lambda: line2.rate_bps == HALF, 3)
    with connect(dev2, keys) as m:
        r = ele(m.get_config("running", filter=("subtree", f'<org-openroadm-device xmlns="{DEV}"><interface>'
                                                           f'<name>XPDR1-NETWORK1-ODUCn</name></interface>'
                                                           f'</org-openroadm-device>')))
        assert first(r, "oducn-n-rate").text == "4"


# --- lab: the real line between two namespaces (root only) ---------------------------------------------
def _lab_skip() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (network namespaces, TAPs)"
    if not shutil.which("ip") or not os.path.exists("/dev/net/tun"):
        return "needs iproute2 and /dev/net/tun"
    if not shutil.which("iperf3") or not shutil.which("ping"):
        return "needs iperf3 and ping"
    return None


LAB_SCALE = 0.0001  # 800G -> 80 Mbit/s on the emulated line
LAB_PATHS = [{"name": "working", "kind": "working", "length_km": 329, "roadms": ["dc-a-roadm", "dc-b-roadm"]},
             {"name": "protection", "kind": "protection", "length_km": 1000, "roadms": ["dc-a-roadm", "dc-b-roadm"]}]
LAB_PAIR = LinePair(f"dclo-{os.getpid()}", addrs=("198.18.251.1", "198.18.251.2"), name="dclo-line",
                    rate_bps=int(800e9 * LAB_SCALE),
                    paths=[{"name": p["name"], "length_km": p["length_km"]} for p in LAB_PATHS])
LAB_NS = (LAB_PAIR.ns_a, LAB_PAIR.ns_b)
LAB_IP = (LAB_PAIR.ip_a, LAB_PAIR.ip_b)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_line():
    reason = _lab_skip()
    if reason:
        pytest.skip(reason)
    with LAB_PAIR as pair:
        iperf = subprocess.Popen(["ip", "netns", "exec", LAB_NS[1], "iperf3", "-s", "-B", LAB_IP[1]],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield {"tmp": pair.run_dir, "sock": pair.config["control_socket"], "ctl": pair.control}
        finally:
            stop_process(iperf)


@pytest.fixture
def lab_device(lab_line, keys, home):
    port = _free_port()
    cfg = device_cfg(keys, "openroadm", listen={"address": "127.0.0.1", "port": port},
                     line_socket=lab_line["sock"], paths=LAB_PATHS, bandwidth_scale=LAB_SCALE)
    cfg["service"]["restoration"] = []
    p = lab_line["tmp"] / "dev.json"
    p.write_text(json.dumps(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "emulator.optical", "--config", str(p)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hk = paramiko.PKey.from_path(str(keys / "host_key"))
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {hk.get_name()} {hk.get_base64()}\n")

    def up():
        import socket
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    assert wait_for(up, 15), "device did not listen"
    try:
        yield type("D", (), {"port": port})()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        lab_line["ctl"].set_rate(int(800e9 * LAB_SCALE))
        lab_line["ctl"].protection_switch("release")


def _udp_mbps(seconds=3) -> float:
    r = sh("ip", "netns", "exec", LAB_NS[0], "iperf3", "-c", LAB_IP[1], "-u", "-b", "200M", "-t", str(seconds),
           "-l", "1400", "-J")
    return json.loads(r.stdout)["end"]["sum"]["bits_per_second"] / 1e6 * \
        (1 - json.loads(r.stdout)["end"]["sum"]["lost_percent"] / 100)


def _rtt_ms() -> float:
    r = sh("ip", "netns", "exec", LAB_NS[0], "ping", "-c", "7", "-i", "0.05", "-q", LAB_IP[1])
    return float(r.stdout.strip().splitlines()[-1].split("=")[1].split("/")[0])  # min


@pytest.mark.lab
def test_lab_rate_edit_halves_udp_throughput(lab_device, keys):
    before = _udp_mbps()
    with connect(lab_device, keys) as m:
        m.edit_config(target="running", config=_odu_rate(4))
    after = _udp_mbps()
    assert 70 < before < 85 and 35 < after < 42.5, (before, after)


@pytest.mark.lab
def test_lab_forced_switch_changes_rtt(lab_device, keys):
    from emulator.line.model import propagation_delay_s
    w = _rtt_ms()
    rpc = (f'<odu-sncp-protection-switch xmlns="{APS}"><protection-group>ODU-SNCP-PG-1</protection-group>'
           f'<pg-interface>XPDR1-NETWORK2-ODUCn</pg-interface><switch-command>Force-Switch</switch-command>'
           f'</odu-sncp-protection-switch>')
    with connect(lab_device, keys) as m:
        assert first(ele(m.dispatch(etree.fromstring(rpc))), "status").text == "Successful"
        time.sleep(0.2)
        p = _rtt_ms()
        r = ele(m.get(filter=etree.fromstring(OR_FILTER)))
        assert first(r, "active-if").text == "XPDR1-NETWORK2-ODUCn"
    want_w, want_p = 2e3 * propagation_delay_s(329), 2e3 * propagation_delay_s(1000)
    assert want_w <= w < want_w + 1.0 and want_p <= p < want_p + 1.0, (w, p)

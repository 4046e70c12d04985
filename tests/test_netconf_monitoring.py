"""RFC 6022 on the emulated gear (issue 15 item 4): /netconf-state lists every advertised module,
<get-schema> returns each module's text, and the sessions, locks and statistics are the device's."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree
from ncclient.operations import RPCError

from emulator.netconf import NetconfServer
from emulator.netconf.monitoring import NCM_NS, schemas_of
from emulator.netconf.framing import BASE_10, Framer, build_hello
from tests.test_netconf_server import INITIAL, PASSWORD, USER, _raw_session
from tests.test_netconf_server import connect as nc_connect
from tests.test_optical import connect, home, keys, make  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
STATE = f'<netconf-state xmlns="{NCM_NS}"/>'


def _state(mgr) -> etree._Element:  # type: ignore[no-untyped-def]
    x = mgr.get(filter=("subtree", STATE)).data_xml
    root = etree.fromstring(x.encode() if isinstance(x, str) else x)
    (st,) = root.iter(f"{{{NCM_NS}}}netconf-state")
    return st


def _all(el: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in el.xpath(path, namespaces={"m": NCM_NS})]


@pytest.mark.parametrize("personality,role", [("openconfig", "otn_terminal"), ("openroadm", "otn_terminal"),
                                              ("openroadm", "roadm")])
def test_every_advertised_module_is_listed_and_its_text_is_served(make, keys, personality, role):  # noqa: F811
    dev, _ = make(personality, role=role)
    with connect(dev, keys) as m:
        advertised = schemas_of(m.server_capabilities)
        assert {s.identifier for s in advertised} >= {"ietf-netconf-monitoring", "dcilab-emulator-bench"}
        st = _state(m)
        listed = list(zip(_all(st, "m:schemas/m:schema/m:identifier"), _all(st, "m:schemas/m:schema/m:version"),
                          _all(st, "m:schemas/m:schema/m:namespace"), strict=True))
        assert sorted(listed) == sorted((s.identifier, s.version, s.namespace) for s in advertised)
        assert set(_all(st, "m:schemas/m:schema/m:format")) == {"ncm:yang"}
        for s in advertised:
            text = m.get_schema(s.identifier, version=s.version or None).data
            assert re.match(rf"\s*(/\*.*?\*/\s*|//[^\n]*\n\s*)*module {re.escape(s.identifier)}\s*{{", text, re.S), \
                (s.identifier, text[:200])
            assert f'namespace "{s.namespace}"' in text or f"namespace {s.namespace};" in text, s.identifier
            if s.version:
                revs = re.findall(r"^\s*revision\s+\"?(\d{4}-\d{2}-\d{2})", text, re.M)
                assert revs and revs[0] == s.version, (s.identifier, revs[:1])
        with pytest.raises(RPCError, match="no schema 'org-openroadm-nonexistent'"):
            m.get_schema("org-openroadm-nonexistent")
        with pytest.raises(RPCError, match="yang only"):
            m.get_schema("ietf-netconf-monitoring", format="xsd")


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A bare NetconfServer (password login) as tests/test_netconf_server.py starts it."""
    import paramiko
    host = paramiko.ECDSAKey.generate()
    host.write_private_key_file(str(tmp_path / "host_key"))
    home_dir = tmp_path / "home"
    (home_dir / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home_dir))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    srv = NetconfServer("127.0.0.1", 0, str(tmp_path / "host_key"),
                        password_checker=lambda u, p: (u, p) == (USER, PASSWORD), initial_config=INITIAL).start()
    (home_dir / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{srv.port} {host.get_name()} {host.get_base64()}\n")
    try:
        yield srv
    finally:
        srv.stop()


def test_sessions_locks_and_statistics_are_the_servers(server):
    with nc_connect(server) as a, nc_connect(server) as b:
        sid_a, sid_b = int(a.session_id), int(b.session_id)
        a.lock("candidate")
        with pytest.raises(RPCError):
            b.lock("candidate")                  # lock-denied: one rpc-error on b
        st = _state(b)
        assert sorted(int(x) for x in _all(st, "m:sessions/m:session/m:session-id")) == sorted([sid_a, sid_b])
        assert set(_all(st, "m:sessions/m:session/m:username")) == {USER}
        assert set(_all(st, "m:sessions/m:session/m:source-host")) == {"127.0.0.1"}
        assert set(_all(st, "m:sessions/m:session/m:transport")) == {"ncm:netconf-ssh"}
        b_errors = st.xpath(f"m:sessions/m:session[m:session-id='{sid_b}']/m:out-rpc-errors", namespaces={"m": NCM_NS})
        assert b_errors[0].text == "1"
        assert _all(st, "m:datastores/m:datastore[m:name='candidate']/m:locks/m:global-lock/m:locked-by-session") \
            == [str(sid_a)]
        assert not _all(st, "m:datastores/m:datastore[m:name='running']/m:locks/m:global-lock/m:locked-by-session")
        assert int(_all(st, "m:statistics/m:in-sessions")[0]) >= 2
        assert int(_all(st, "m:statistics/m:in-rpcs")[0]) >= 3
        assert set(_all(st, "m:capabilities/m:capability")) == set(server.capabilities)
        a.unlock("candidate")
    # both ended with <close-session>: no dropped session
    with nc_connect(server) as c:
        assert _all(_state(c), "m:statistics/m:dropped-sessions") == ["0"]
        t, ch = _raw_session(server)             # a client that says hello, then its transport closes
        Framer(ch).write_message(build_hello([BASE_10]))
        deadline = time.monotonic() + 10
        while int(_all(_state(c), "m:statistics/m:in-sessions")[0]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        t.close()
        while _all(_state(c), "m:statistics/m:dropped-sessions") != ["1"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _all(_state(c), "m:statistics/m:dropped-sessions") == ["1"]


@pytest.mark.skipif(shutil.which("yanglint") is None, reason="install libyang2-tools (yanglint)")
def test_netconf_state_is_valid_against_ietf_netconf_monitoring(server, tmp_path):
    with nc_connect(server) as m:
        m.lock("running")
        x = m.get(filter=("subtree", STATE)).data_xml
        m.unlock("running")
    root = etree.fromstring(x.encode() if isinstance(x, str) else x)
    doc = tmp_path / "state.xml"      # the data nodes, without the NETCONF <data> wrapper
    doc.write_bytes(b"".join(etree.tostring(e) for e in root))
    r = subprocess.run(["yanglint", "-i", "-i", "-p", str(ROOT / "yang" / "ietf"), "-f", "xml", "-t", "data",
                        str(ROOT / "yang" / "ietf" / "ietf-netconf-monitoring.yang"), str(doc)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout

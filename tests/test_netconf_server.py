"""The emulated NETCONF server (emulator/netconf) driven by plain ncclient and a raw paramiko client."""

from __future__ import annotations

import os
import socket
import time

import paramiko
import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError
from ncclient.transport.errors import SSHUnknownHostError

from emulator.netconf import Datastore, NetconfServer, RpcError
from emulator.netconf.framing import EOM, Framer, FramingError

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF_NS = "urn:example:interfaces"
SYS_NS = "urn:example:system"
INITIAL = f"""
<data xmlns="{NC}">
  <interfaces xmlns="{IF_NS}">
    <interface><name>eth0</name><mtu>1500</mtu><description>uplink</description></interface>
    <interface><name>eth1</name><mtu>9000</mtu></interface>
  </interfaces>
  <system xmlns="{SYS_NS}"><hostname>otn-a</hostname><location>site-a</location></system>
</data>
"""
USER, PASSWORD = "admin", "s3cret"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    host = paramiko.ECDSAKey.generate()  # see server._host_key: ncclient + ssh-rsa known_hosts fails
    host.write_private_key_file(str(d / "host_key"))
    client = paramiko.RSAKey.generate(2048)
    client.write_private_key_file(str(d / "id_rsa"))
    (d / "authorized_keys").write_text(f"{client.get_name()} {client.get_base64()} tester\n")
    return d


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty HOME, so ncclient's defaults (look_for_keys, ~/.ssh/known_hosts) see only what we write."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return h


@pytest.fixture
def server(keys, home):
    srv = NetconfServer(
        "127.0.0.1",
        0,
        str(keys / "host_key"),
        authorized_keys=str(keys / "authorized_keys"),
        password_checker=lambda u, p: (u, p) == (USER, PASSWORD),
        initial_config=INITIAL,
    )
    srv.start()
    host = srv.host_key
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{srv.port} {host.get_name()} {host.get_base64()}\n")
    try:
        yield srv
    finally:
        srv.stop()


def connect(srv, **kw):
    args = {"host": "127.0.0.1", "port": srv.port, "username": USER, "password": PASSWORD, "timeout": 10}
    args.update(kw)
    return manager.connect(**args)


@pytest.fixture
def m(server):
    with connect(server) as mgr:
        yield mgr


def ele(reply):
    return etree.fromstring(reply.xml.encode() if isinstance(reply.xml, str) else reply.xml)


def texts(reply, local):
    return [e.text for e in ele(reply).iter() if isinstance(e.tag, str) and etree.QName(e).localname == local]


def mtu_of(mgr, name, source="running"):
    f = f'<interfaces xmlns="{IF_NS}"><interface><name>{name}</name><mtu/></interface></interfaces>'
    got = texts(mgr.get_config(source, filter=("subtree", f)), "mtu")
    return got[0] if got else None


# --- hello, auth, framing ----------------------------------------------------------------------
def test_hello_capabilities_and_chunked(server, m):
    caps = list(m.server_capabilities)
    assert "urn:ietf:params:netconf:base:1.0" in caps and "urn:ietf:params:netconf:base:1.1" in caps
    assert ":candidate" in m.server_capabilities and ":confirmed-commit" in m.server_capabilities
    assert m.session_id is not None and int(m.session_id) > 0
    # both sides advertise base:1.1 -> chunked framing; a get-config round trip works over it
    assert mtu_of(m, "eth0") == "1500"
    # (checked after a round trip: connect() returns before the server has read the client's hello)
    assert server.sessions[int(m.session_id)].framer.chunked


def test_key_auth_and_host_key_verified(server, keys):
    with connect(server, password=None, key_filename=str(keys / "id_rsa")) as mgr:
        assert mtu_of(mgr, "eth1") == "9000"


def test_unknown_host_key_refused(server, home, keys):
    (home / ".ssh" / "known_hosts").write_text("")
    with pytest.raises(SSHUnknownHostError):
        connect(server)


def test_wrong_password_refused(server):
    with pytest.raises(Exception) as ei:
        connect(server, password="nope", hostkey_verify=False)
    assert "auth" in type(ei.value).__name__.lower() or "auth" in str(ei.value).lower()


@pytest.mark.parametrize("accepts", ["keys only", "password only"])
def test_the_driver_offers_its_key_then_its_password(keys, home, tmp_path, accepts):
    """Issue 15 item 6: with both a key and a password in the inventory, ncclient alone takes the
    password for the key's passphrase, never offers the key and fails on a device that accepts
    only keys. The driver offers the key first (unlocked with its own passphrase), then the password."""
    from drivers import SshTarget, sha256_fingerprint
    from drivers.errors import AuthFailed
    from drivers.otn.netconf import NetconfDevice
    srv = NetconfServer("127.0.0.1", 0, str(keys / "host_key"),
                        authorized_keys=str(keys / "authorized_keys") if accepts == "keys only" else None,
                        password_checker=(lambda u, p: (u, p) == (USER, PASSWORD)) if accepts == "password only" else None,
                        initial_config=INITIAL)
    srv.start()
    try:
        fp = sha256_fingerprint(srv.host_key)
        other = tmp_path / "other_key"   # a key the device does not know, protected by a passphrase
        paramiko.ECDSAKey.generate().write_private_key_file(str(other), password="pass phrase")
        key = str(keys / "id_rsa") if accepts == "keys only" else str(other)
        t = SshTarget("127.0.0.1", srv.port, USER, password=PASSWORD, key_path=key,
                      key_passphrase=None if accepts == "keys only" else "pass phrase", fingerprint=fp, timeout_s=10)
        dev = NetconfDevice(t)
        try:
            assert "urn:ietf:params:netconf:base:1.1" in dev.caps
        finally:
            dev.close()
        with pytest.raises(AuthFailed, match="wrong passphrase"):
            NetconfDevice(SshTarget("127.0.0.1", srv.port, USER, key_path=str(other), key_passphrase="nope",
                                    fingerprint=fp, timeout_s=10))
        with pytest.raises(AuthFailed, match="encrypted and no passphrase"):
            NetconfDevice(SshTarget("127.0.0.1", srv.port, USER, key_path=str(other), fingerprint=fp, timeout_s=10))
    finally:
        srv.stop()


def _raw_session(server):
    t = paramiko.Transport(socket.create_connection(("127.0.0.1", server.port)))
    t.connect(username=USER, password=PASSWORD)
    ch = t.open_session()
    ch.invoke_subsystem("netconf")
    ch.settimeout(10)
    return t, ch


def test_raw_base10_client_uses_eom_framing(server):
    t, ch = _raw_session(server)
    try:
        fr = Framer(ch)
        hello = etree.fromstring(fr.read_message())
        assert etree.QName(hello).localname == "hello"
        caps = [c.text for c in hello.iter(f"{{{NC}}}capability")]
        assert "urn:ietf:params:netconf:base:1.1" in caps
        ch.sendall(
            f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.0'
            f"</capability></capabilities></hello>".encode()
            + EOM
        )
        # send the rpc in two pieces to check partial reads
        rpc = (
            f'<rpc xmlns="{NC}" message-id="7"><get-config><source><running/></source>'
            f'<filter type="subtree"><system xmlns="{SYS_NS}"/></filter></get-config></rpc>'
        ).encode() + EOM
        ch.sendall(rpc[:20])
        time.sleep(0.1)
        ch.sendall(rpc[20:])
        raw = fr.read_message()
        assert not raw.lstrip().startswith(b"\n#")
        reply = etree.fromstring(raw)
        assert reply.get("message-id") == "7"
        assert reply.find(f".//{{{SYS_NS}}}hostname").text == "otn-a"
        assert reply.find(f".//{{{IF_NS}}}interfaces") is None
    finally:
        t.close()


def test_malformed_chunk_header_closes_session(server):
    t, ch = _raw_session(server)
    try:
        fr = Framer(ch)
        fr.read_message()
        ch.sendall(
            f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.1'
            f"</capability></capabilities></hello>".encode()
            + EOM
        )
        ch.sendall(b"\n#abc\n<rpc/>\n##\n")
        deadline = time.time() + 5
        while time.time() < deadline and not ch.closed and not ch.eof_received:
            time.sleep(0.05)
        assert ch.eof_received or ch.closed
    finally:
        t.close()


def test_framer_partial_and_bad_chunks():
    class S:
        def __init__(self, pieces):
            self.pieces = list(pieces)

        def recv(self, n):
            return self.pieces.pop(0) if self.pieces else b""

    fr = Framer(S([b"\n#", b"5\nhel", b"lo\n#1", b"\n!\n#", b"#\n"]))
    fr.use_chunked()
    assert fr.read_message() == b"hello!"
    assert fr.read_message() is None
    for bad in (b"\n#0\nx\n##\n", b"\n#012\n", b"xx", b"\n##\n", b"\n#99999999999\n"):
        fr = Framer(S([bad]))
        fr.use_chunked()
        with pytest.raises(FramingError):
            fr.read_message()


def test_a_flood_of_one_byte_chunks_is_refused_and_memory_is_the_payload():
    """1M one-byte chunks cost ~42 MB and seconds of CPU when each chunk was a bytes object and
    the input was trimmed per chunk; now the message is one buffer and the chunk count is capped."""
    class S:
        def __init__(self, data: bytes, piece: int = 65536):
            self.data, self.piece, self.at = data, piece, 0

        def recv(self, n):
            out = self.data[self.at:self.at + min(n, self.piece)]
            self.at += len(out)
            return out

    many = b"\n#1\nx" * 10_000 + b"\n##\n"
    fr = Framer(S(many))
    fr.use_chunked()
    assert fr.read_message() == b"x" * 10_000                       # a message of many chunks is fine
    fr = Framer(S(b"\n#1\nx" * 70_000 + b"\n##\n"), max_chunks=65536)
    fr.use_chunked()
    with pytest.raises(FramingError, match="more than 65536 chunks"):
        fr.read_message()
    assert isinstance(fr._msg, bytearray) and len(fr._msg) == 65536   # the payload, one buffer
    assert len(fr._buf) < 65536 + 6                                  # the input consumed as parsed


# --- subtree filtering --------------------------------------------------------------------------
def test_get_config_subtree_filter(m):
    # select one list entry by its key, with a selection node
    assert mtu_of(m, "eth1") == "9000"
    r = ele(
        m.get_config(
            "running",
            filter=(
                "subtree",
                f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu/></interface></interfaces>',
            ),
        )
    )
    ifs = r.findall(f".//{{{IF_NS}}}interface")
    assert len(ifs) == 1 and ifs[0].find(f"{{{IF_NS}}}description") is None
    assert ifs[0].find(f"{{{IF_NS}}}name").text == "eth0"
    # containment node only: the whole subtree; other namespaces excluded
    r = ele(m.get_config("running", filter=("subtree", f'<interfaces xmlns="{IF_NS}"/>')))
    assert len(r.findall(f".//{{{IF_NS}}}interface")) == 2 and r.find(f".//{{{SYS_NS}}}system") is None
    # content match only: whole entry returned
    r = ele(
        m.get_config(
            "running",
            filter=("subtree", f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name></interface></interfaces>'),
        )
    )
    assert r.find(f".//{{{IF_NS}}}description").text == "uplink"
    # wrong namespace selects nothing
    r = ele(m.get_config("running", filter=("subtree", '<interfaces xmlns="urn:other"/>')))
    assert len(r.find(f"{{{NC}}}data")) == 0
    # no match for a key
    assert mtu_of(m, "eth9") is None
    # two subtrees at once
    two = etree.fromstring(
        f'<filter xmlns="{NC}" type="subtree"><system xmlns="{SYS_NS}"><hostname/></system>'
        f'<interfaces xmlns="{IF_NS}"><interface><name>eth1</name></interface></interfaces></filter>'
    )
    r = ele(m.get(filter=two))
    assert r.find(f".//{{{SYS_NS}}}hostname").text == "otn-a" and r.find(f".//{{{SYS_NS}}}location") is None
    assert [e.text for e in r.iter(f"{{{IF_NS}}}name")] == ["eth1"]


# --- edit-config ------------------------------------------------------------------------------
def cfg(inner):
    return f'<config xmlns="{NC}" xmlns:nc="{NC}">{inner}</config>'


def test_edit_config_merge_replace_create_delete_remove(m):
    m.edit_config(
        target="running",
        config=cfg(
            f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>9100</mtu></interface>'
            f"<interface><name>eth2</name><mtu>1400</mtu></interface></interfaces>"
        ),
    )
    assert mtu_of(m, "eth0") == "9100" and mtu_of(m, "eth2") == "1400"
    assert texts(
        m.get_config(
            "running",
            filter=(
                "subtree",
                (f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><description/></interface></interfaces>'),
            ),
        ),
        "description",
    ) == ["uplink"]
    # replace drops the description
    m.edit_config(
        target="running",
        config=cfg(
            f'<interfaces xmlns="{IF_NS}"><interface nc:operation="replace"><name>eth0</name><mtu>1000</mtu>'
            f"</interface></interfaces>"
        ),
    )
    assert mtu_of(m, "eth0") == "1000"
    assert texts(m.get_config("running"), "description") == []
    # create of an existing entry: data-exists
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="running",
            config=cfg(
                f'<interfaces xmlns="{IF_NS}"><interface nc:operation="create"><name>eth1</name></interface></interfaces>'
            ),
        )
    assert ei.value.tag == "data-exists"
    m.edit_config(
        target="running",
        config=cfg(
            f'<interfaces xmlns="{IF_NS}"><interface nc:operation="create"><name>eth3</name><mtu>1300</mtu>'
            f"</interface></interfaces>"
        ),
    )
    assert mtu_of(m, "eth3") == "1300"
    # delete of a missing entry: data-missing; of an existing one works
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="running",
            config=cfg(
                f'<interfaces xmlns="{IF_NS}"><interface nc:operation="delete"><name>eth7</name></interface></interfaces>'
            ),
        )
    assert ei.value.tag == "data-missing" and ei.value.severity == "error" and ei.value.path
    m.edit_config(
        target="running",
        config=cfg(
            f'<interfaces xmlns="{IF_NS}"><interface nc:operation="delete"><name>eth3</name></interface></interfaces>'
        ),
    )
    assert mtu_of(m, "eth3") is None
    # remove of a missing entry is fine
    for _ in range(2):
        m.edit_config(
            target="running",
            config=cfg(
                f'<interfaces xmlns="{IF_NS}"><interface nc:operation="remove"><name>eth2</name></interface></interfaces>'
            ),
        )
    assert mtu_of(m, "eth2") is None


def test_merge_of_an_empty_container_changes_nothing():
    """Found by fuzzing: an empty <interfaces/> in a merge was taken for a leaf, and merging a leaf
    drops the node's children: every interface was deleted by an edit that named none."""
    ds = Datastore(INITIAL)
    ds.edit_config(1, "running", etree.fromstring(cfg(f'<interfaces xmlns="{IF_NS}"/>')))
    assert [e.text for e in ds.running.iter(f"{{{IF_NS}}}name")] == ["eth0", "eth1"]
    with pytest.raises(RpcError) as ei:                     # a value for a container is refused, not stored
        ds.edit_config(1, "running", etree.fromstring(cfg(f'<interfaces xmlns="{IF_NS}">x</interfaces>')))
    assert ei.value.tag == "invalid-value"
    assert [e.text for e in ds.running.iter(f"{{{IF_NS}}}name")] == ["eth0", "eth1"]


@pytest.mark.parametrize("op", ["replace", "create"])
def test_a_subtree_stored_whole_holds_no_two_entries_with_one_key(op):
    """Found by fuzzing: replace and create copy their subtree as sent, so two <interface> entries
    named eth0 (or one without its key) were stored side by side; merge meets each through its key."""
    ds = Datastore(f'<data xmlns="{NC}"><system xmlns="{SYS_NS}"/></data>', schema={f"{{{IF_NS}}}interface": ["name"]})
    twice = (f'<interfaces xmlns="{IF_NS}" nc:operation="{op}"><interface><name>eth0</name><mtu>1</mtu></interface>'
             "<interface><name>eth0</name><mtu>2</mtu></interface></interfaces>")
    with pytest.raises(RpcError) as ei:
        ds.edit_config(1, "running", etree.fromstring(cfg(twice)))
    assert ei.value.tag == "invalid-value" and "two interface entries with name='eth0'" in ei.value.message
    keyless = f'<interfaces xmlns="{IF_NS}" nc:operation="{op}"><interface><mtu>1</mtu></interface></interfaces>'
    with pytest.raises(RpcError) as ei:
        ds.edit_config(1, "running", etree.fromstring(cfg(keyless)))
    assert ei.value.tag == "missing-element"
    assert ds.running.find(f".//{{{IF_NS}}}interfaces") is None


def test_default_operation_none_and_replace(m):
    # none: only nodes with an operation change; the merge-style leaf is ignored
    m.edit_config(
        target="running",
        default_operation="none",
        config=cfg(
            f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>1</mtu>'
            f'<description nc:operation="delete"/></interface></interfaces>'
        ),
    )
    assert mtu_of(m, "eth0") == "1500"
    assert texts(m.get_config("running"), "description") == []
    # replace: the whole datastore becomes <config>
    m.edit_config(
        target="running",
        default_operation="replace",
        config=cfg(f'<system xmlns="{SYS_NS}"><hostname>otn-b</hostname></system>'),
    )
    r = m.get_config("running")
    assert texts(r, "hostname") == ["otn-b"] and texts(r, "interface") == []


def test_test_only_and_error_options(m):
    m.edit_config(
        target="running",
        test_option="test-only",
        config=cfg(f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>42</mtu></interface></interfaces>'),
    )
    assert mtu_of(m, "eth0") == "1500"
    bad = cfg(
        f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>42</mtu></interface>'
        f'<interface nc:operation="delete"><name>ethX</name></interface>'
        f'</interfaces><system xmlns="{SYS_NS}"><hostname>zz</hostname></system>'
    )
    for opt in ("rollback-on-error", "stop-on-error"):
        with pytest.raises(RPCError):
            m.edit_config(target="running", error_option=opt, config=bad)
        assert mtu_of(m, "eth0") == "1500"
    with pytest.raises(RPCError):
        m.edit_config(target="running", error_option="continue-on-error", config=bad)
    assert texts(m.get_config("running"), "hostname") == ["zz"]  # the good sibling was applied
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="running",
            config=cfg(f'<system xmlns="{SYS_NS}" nc:operation="frobnicate"><hostname>x</hostname></system>'),
        )
    assert ei.value.tag == "bad-attribute"


# --- candidate, commit, locks ---------------------------------------------------------------------
def test_candidate_commit_and_discard(m):
    m.edit_config(
        target="candidate",
        config=cfg(f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>4000</mtu></interface></interfaces>'),
    )
    assert mtu_of(m, "eth0", "candidate") == "4000" and mtu_of(m, "eth0") == "1500"
    m.discard_changes()
    assert mtu_of(m, "eth0", "candidate") == "1500"
    m.edit_config(
        target="candidate",
        config=cfg(f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>4000</mtu></interface></interfaces>'),
    )
    m.commit()
    assert mtu_of(m, "eth0") == "4000"


def test_on_commit_callback(server, m):
    seen = []
    server.on_commit(lambda old, new: seen.append((old, new)))
    m.edit_config(target="candidate", config=cfg(f'<system xmlns="{SYS_NS}"><hostname>new</hostname></system>'))
    m.commit()
    assert len(seen) == 1
    old, new = seen[0]
    assert old.find(f".//{{{SYS_NS}}}hostname").text == "otn-a"
    assert new.find(f".//{{{SYS_NS}}}hostname").text == "new"


def test_lock_denied_to_other_session(server, m):
    with connect(server) as m2:
        m.lock("running")
        with pytest.raises(RPCError) as ei:
            m2.lock("running")
        assert ei.value.tag == "lock-denied"
        assert f"<session-id>{m.session_id}</session-id>" in ei.value.info.replace("nc:", "")
        with pytest.raises(RPCError) as ei:
            m2.edit_config(target="running", config=cfg(f'<system xmlns="{SYS_NS}"><hostname>x</hostname></system>'))
        assert ei.value.tag == "in-use"
        with pytest.raises(RPCError):
            m2.unlock("running")
        m.unlock("running")
        m2.lock("running")
    # m2's session ended: its lock is released
    deadline = time.time() + 5
    while True:
        try:
            m.lock("running")
            break
        except RPCError:
            assert time.time() < deadline
            time.sleep(0.05)
    m.unlock("running")


def test_candidate_changes_of_dead_session_discarded(server, m):
    with connect(server) as m2:
        m2.lock("candidate")
        m2.edit_config(target="candidate", config=cfg(f'<system xmlns="{SYS_NS}"><hostname>half</hostname></system>'))
    deadline = time.time() + 5
    while texts(m.get_config("candidate"), "hostname") != ["otn-a"]:
        assert time.time() < deadline
        time.sleep(0.05)


# --- confirmed commit ------------------------------------------------------------------------
def set_mtu_candidate(mgr, mtu):
    mgr.edit_config(
        target="candidate",
        config=cfg(
            f'<interfaces xmlns="{IF_NS}"><interface><name>eth0</name><mtu>{mtu}</mtu></interface></interfaces>'
        ),
    )


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "condition not reached"
        time.sleep(0.05)


def test_confirmed_commit_rolls_back_after_timeout(server, m):
    rolled = []
    server.on_commit(lambda old, new: rolled.append(new.find(f".//{{{IF_NS}}}mtu").text))
    set_mtu_candidate(m, 2000)
    m.commit(confirmed=True, timeout="1")
    assert mtu_of(m, "eth0") == "2000"
    wait_for(lambda: mtu_of(m, "eth0") == "1500", 4)
    assert rolled == ["2000", "1500"]
    assert mtu_of(m, "eth0", "candidate") == "1500"


def test_confirmed_commit_confirmed(m):
    set_mtu_candidate(m, 2100)
    m.commit(confirmed=True, timeout="1")
    m.commit()
    time.sleep(1.5)
    assert mtu_of(m, "eth0") == "2100"


def test_cancel_commit(m):
    set_mtu_candidate(m, 2200)
    m.commit(confirmed=True, timeout="60")
    assert mtu_of(m, "eth0") == "2200"
    m.cancel_commit()
    assert mtu_of(m, "eth0") == "1500"
    with pytest.raises(RPCError):
        m.cancel_commit()


def test_confirmed_commit_cancelled_when_session_ends(server, m):
    with connect(server) as m2:
        set_mtu_candidate(m2, 2300)
        m2.commit(confirmed=True, timeout="60")
        assert mtu_of(m, "eth0") == "2300"
    wait_for(lambda: mtu_of(m, "eth0") == "1500")


def test_persist_confirmed_commit_across_sessions(server, m):
    with connect(server) as m2:
        set_mtu_candidate(m2, 2400)
        m2.commit(confirmed=True, timeout="60", persist="tok-1")
    time.sleep(0.3)
    assert mtu_of(m, "eth0") == "2400"  # survived the end of its session
    with pytest.raises(RPCError) as ei:
        m.commit(persist_id="wrong")
    assert ei.value.tag == "invalid-value"
    m.commit(persist_id="tok-1")  # confirming commit from another session
    with pytest.raises(RPCError):
        m.cancel_commit(persist_id="tok-1")
    assert mtu_of(m, "eth0") == "2400"


def test_persist_cancel_from_other_session(server, m):
    with connect(server) as m2:
        set_mtu_candidate(m2, 2500)
        m2.commit(confirmed=True, timeout="60", persist="tok-2")
    m.cancel_commit(persist_id="tok-2")
    assert mtu_of(m, "eth0") == "1500"


# --- sessions ------------------------------------------------------------------------------
def test_kill_session(server, m):
    m2 = connect(server)
    try:
        m2.lock("running")
        with pytest.raises(RPCError) as ei:
            m.kill_session(m.session_id)
        assert ei.value.tag == "invalid-value"
        with pytest.raises(RPCError) as ei:
            m.kill_session("9999")
        assert ei.value.tag == "invalid-value"
        m.kill_session(m2.session_id)
        m.lock("running")  # the killed session's lock went with it
        m.unlock("running")
        wait_for(lambda: not m2.connected)
    finally:
        if m2.connected:
            m2.close_session()


def test_close_session(server):
    mgr = connect(server)
    sid = int(mgr.session_id)
    mgr.close_session()
    wait_for(lambda: sid not in server.sessions)


# --- notifications -----------------------------------------------------------------------------
def test_create_subscription_and_notify(server, m):
    m.create_subscription()
    with pytest.raises(RPCError):
        m.create_subscription()  # one per session
    ev = etree.fromstring('<link-down xmlns="urn:example:events"><port>eth0</port></link-down>')
    assert server.notify(ev) == 1
    n = m.take_notification(timeout=5)
    assert n is not None
    root = n.notification_ele
    assert root.find("{urn:ietf:params:xml:ns:netconf:notification:1.0}eventTime") is not None
    assert root.find(".//{urn:example:events}port").text == "eth0"
    # RPCs still work on a subscribed session (interleave)
    assert mtu_of(m, "eth0") == "1500"


# --- errors ------------------------------------------------------------------------------
def test_unknown_rpc_unknown_element_bad_datastore(m):
    with pytest.raises(RPCError) as ei:
        m.dispatch(etree.fromstring('<frobnicate xmlns="urn:example:nothing"/>'))
    assert ei.value.tag == "operation-not-supported" and ei.value.type == "protocol"
    with pytest.raises(RPCError) as ei:
        m.dispatch(etree.fromstring(f'<get-config xmlns="{NC}"><source><running/></source><bogus/></get-config>'))
    assert ei.value.tag == "unknown-element" and "bogus" in ei.value.info
    with pytest.raises(RPCError) as ei:
        m.get_config("startup")
    assert ei.value.tag == "invalid-value"


def test_malformed_xml_gets_rpc_error_and_session_survives(server):
    t, ch = _raw_session(server)
    try:
        fr = Framer(ch)
        fr.read_message()
        ch.sendall(
            f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.1'
            f"</capability></capabilities></hello>".encode()
            + EOM
        )
        fr.use_chunked()
        fr.write_message(f'<rpc message-id="m1" xmlns="{NC}"><get><oops></rpc>'.encode())
        r = etree.fromstring(fr.read_message())
        assert r.get("message-id") == "m1"  # salvaged, so ncclient can match it
        assert r.findtext(f".//{{{NC}}}error-tag") == "malformed-message"
        assert r.findtext(f".//{{{NC}}}error-type") == "rpc"
        fr.write_message(b"not xml at all")
        r = etree.fromstring(fr.read_message())
        assert r.get("message-id") is None and r.findtext(f".//{{{NC}}}error-tag") == "malformed-message"
        fr.write_message(f'<rpc xmlns="{NC}"><get/></rpc>'.encode())
        r = etree.fromstring(fr.read_message())
        assert r.findtext(f".//{{{NC}}}error-tag") == "missing-attribute"
        fr.write_message(f'<rpc message-id="m2" xmlns="{NC}"><get/></rpc>'.encode())
        r = etree.fromstring(fr.read_message())
        assert r.get("message-id") == "m2" and r.find(f"{{{NC}}}data") is not None
    finally:
        t.close()


def test_a_message_id_that_is_not_xml_text_still_gets_an_rpc_error(server):
    """The message-id salvaged from malformed XML was put in the reply as is: a control character
    in it made lxml raise, the session's thread died and the client got no reply (found by fuzzing)."""
    t, ch = _raw_session(server)
    try:
        fr = _hello_11(ch)
        fr.write_message(f'<rpc xmlns="{NC}" message-id="a\x01b"><get/>'.encode())
        r = etree.fromstring(fr.read_message())
        assert r.get("message-id") is None and r.findtext(f".//{{{NC}}}error-tag") == "malformed-message"
        fr.write_message(f'<rpc message-id="m2" xmlns="{NC}"><get/></rpc>'.encode())
        assert etree.fromstring(fr.read_message()).get("message-id") == "m2"     # the session goes on
    finally:
        t.close()


def test_rpc_extension_hook(server, m):
    ns = "urn:example:ops"

    def ping(session, op):
        out = etree.Element(f"{{{ns}}}pong")
        out.text = op.findtext(f"{{{ns}}}token")
        return out

    server.register_rpc(f"{{{ns}}}ping", ping)
    r = m.dispatch(etree.fromstring(f'<ping xmlns="{ns}"><token>abc</token></ping>'))
    assert ele(r).find(f"{{{ns}}}pong").text == "abc"


def test_stop_is_prompt(keys):
    srv = NetconfServer("127.0.0.1", 0, str(keys / "host_key"), password_checker=lambda u, p: True).start()
    mgr = manager.connect(
        host="127.0.0.1",
        port=srv.port,
        username="u",
        password="p",
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    t0 = time.time()
    srv.stop()
    assert time.time() - t0 < 3
    wait_for(lambda: not mgr.connected)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1)


def test_an_entity_reference_behind_a_dtd_is_refused_and_running_stays_parseable(server, m):
    """An undeclared &x; passes lxml unresolved when a DOCTYPE is present; stored by a replace, it
    made every later get-config unparseable and the persisted datastore unloadable."""
    t, ch = _raw_session(server)
    try:
        fr = Framer(ch)
        fr.read_message()
        ch.sendall(f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.1'
                   f"</capability></capabilities></hello>".encode() + EOM)
        fr.use_chunked()
        fr.write_message(
            (f'<!DOCTYPE rpc SYSTEM "x.dtd"><rpc message-id="e1" xmlns="{NC}"><edit-config><target><running/></target>'
             f'<config><system xmlns="{SYS_NS}" xmlns:nc="{NC}" nc:operation="replace"><hostname>a&x;b</hostname>'
             f"</system></config></edit-config></rpc>").encode())
        r = etree.fromstring(fr.read_message())
        assert r.get("message-id") == "e1" and r.findtext(f".//{{{NC}}}error-tag") == "malformed-message"
    finally:
        t.close()
    reply = m.get_config(source="running")                   # ncclient parses it: nothing was stored
    assert texts(reply, "hostname") == ["otn-a"]


@pytest.fixture
def small_server(keys, home):
    made = []

    def make(**kw):
        srv = NetconfServer("127.0.0.1", 0, str(keys / "host_key"), authorized_keys=str(keys / "authorized_keys"),
                            password_checker=lambda u, p: (u, p) == (USER, PASSWORD), initial_config=INITIAL, **kw)
        made.append(srv.start())
        return srv
    try:
        yield make
    finally:
        for srv in made:
            srv.stop()


def _hello_11(ch):
    fr = Framer(ch)
    fr.read_message()
    ch.sendall(f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.1'
               f"</capability></capabilities></hello>".encode() + EOM)
    fr.use_chunked()
    return fr


def test_sessions_are_capped_at_the_devices_limit(small_server):
    """A device serves a bounded number of sessions (a thread each): the third is closed at accept."""
    srv = small_server(max_sessions=2)
    t1, _ = _raw_session(srv)
    t2, _ = _raw_session(srv)
    try:
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            _raw_session(srv)
    finally:
        t1.close()
        t2.close()
    wait_for(lambda: srv._connections == 0)
    t3, _ = _raw_session(srv)                                        # a slot is free again
    t3.close()


def test_a_silent_session_is_closed_and_a_notification_listener_is_kept(small_server):
    srv = small_server(idle_timeout_s=0.5)
    t1, ch1 = _raw_session(srv)
    t2, ch2 = _raw_session(srv)
    try:
        fr1, fr2 = _hello_11(ch1), _hello_11(ch2)
        fr1.write_message(f'<rpc message-id="1" xmlns="{NC}"><get/></rpc>'.encode())
        assert etree.fromstring(fr1.read_message()).find(f"{{{NC}}}data") is not None
        fr2.write_message(f'<rpc message-id="1" xmlns="{NC}"><create-subscription '
                          f'xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/></rpc>'.encode())
        assert etree.fromstring(fr2.read_message()).find(f"{{{NC}}}ok") is not None
        wait_for(lambda: len(srv.sessions) == 1)                     # the silent one went, after 0.5 s
        assert [s.subscribed for s in srv.sessions.values()] == [True]
        assert fr1.read_message() is None                            # its channel is closed
    finally:
        t1.close()
        t2.close()


def test_a_saved_datastore_is_fsynced_before_and_after_its_rename(tmp_path, monkeypatch):
    """A device's saved configuration survives a power cut whole: file fsynced, renamed, folder fsynced."""
    from emulator.netconf import datastore
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)
    monkeypatch.setattr(datastore.os, "fsync", fsync)
    path = tmp_path / "running.xml"
    datastore.save_durably(str(path), b"<data/>")
    assert path.read_bytes() == b"<data/>" and not (tmp_path / "running.xml.tmp").exists()
    assert calls == [str(tmp_path / "running.xml.tmp"), str(tmp_path)]

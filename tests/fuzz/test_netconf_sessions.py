"""Fuzz the NETCONF server over SSH on 127.0.0.1: a hostile session says hello in either framing
(or not at all, or wrongly), then sends real RPCs with random content, noise, forged chunk
headers, truncated frames and messages over the size limit, and hangs up; a witness session,
opened before and kept for the whole module, must keep working.

Properties: every reply the hostile session gets is a well-formed, correctly framed rpc-reply;
the server ends the hostile session (at its end of stream, or at once on a framing error) and
forgets it; the witness's get-config still answers; when nothing was accepted (no reply other
than rpc-errors), running and the saved datastore are as they were.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import paramiko
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from emulator.netconf import NetconfServer
from emulator.netconf.framing import BASE_10, BASE_11, EOM, Framer, FramingError

from .netconf_messages import INITIAL, NC, rpc_message
from .support import PASSWORD, USER, fuzz, ssh_transport, wait_for

MAX_MESSAGE = 256 * 1024
STRICT = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_ids = itertools.count(1)


def hello(*caps: str) -> bytes:
    return (f'<hello xmlns="{NC}"><capabilities>' + "".join(f"<capability>{c}</capability>" for c in caps)
            + "</capabilities></hello>").encode()


def open_session(port: int, client_hello: bytes | None, chunked: bool) -> tuple[Any, Any, Framer]:
    t = ssh_transport(port)
    ch = t.open_session()
    ch.settimeout(10)
    ch.invoke_subsystem("netconf")
    fr = Framer(ch)
    fr.read_message()                                   # the server's hello
    if client_hello is not None:
        ch.sendall(client_hello + EOM)
    if chunked:
        fr.use_chunked()
    return t, ch, fr


def get_config(fr: Framer) -> etree._Element:
    mid = str(next(_ids))
    fr.write_message(f'<rpc xmlns="{NC}" message-id="{mid}"><get-config><source><running/></source>'
                     "</get-config></rpc>".encode())
    reply = etree.fromstring(fr.read_message(), STRICT)
    assert reply.get("message-id") == mid and reply.find(f"{{{NC}}}data") is not None, etree.tostring(reply)
    return reply


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("netconf-sessions")
    srv = NetconfServer("127.0.0.1", 0, None, password_checker=lambda u, p: (u, p) == (USER, PASSWORD),
                        initial_config=INITIAL, persist_path=str(d / "running.xml"), max_message=MAX_MESSAGE)
    srv.start()
    t, ch, fr = open_session(srv.port, hello(BASE_11), chunked=True)
    try:
        get_config(fr)
        yield srv, fr, d / "running.xml"
    finally:
        t.close()
        srv.stop()


def frame(data: bytes, chunked: bool, cuts: list[int]) -> bytes:
    if not chunked:
        return data + EOM
    bounds = sorted({c % (len(data) + 1) for c in cuts} - {0, len(data)})
    parts = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    return b"".join(b"\n#%d\n" % len(p) + p for p in parts if p) + b"\n##\n"


no_kill = rpc_message().filter(lambda m: b"kill-session" not in m)     # the witness would be fair game
item = st.one_of(
    st.tuples(st.just("msg"), no_kill, st.lists(st.integers(0, 10**6), max_size=3)),
    st.tuples(st.just("msg"), no_kill, st.lists(st.integers(0, 10**6), max_size=3)),
    st.tuples(st.just("raw"), st.one_of(st.binary(max_size=300), st.sampled_from(
        [b"\n#0\n", b"\n#99999999999\n", b"\n##\n", b"\n#5\nab", b"]]>]]>", b"\n#4294967295\n", b"#"])), st.just([])),
    st.tuples(st.just("huge"), st.integers(MAX_MESSAGE - 64, 2 * MAX_MESSAGE).map(lambda n: str(n).encode()),
              st.just([])),                                           # the size: the bytes are made in the test
)
hellos = st.sampled_from(["1.0", "1.1", "1.1", "both", "none", "junk", "with-session-id", "no-base"])


@fuzz(30)
@given(how=hellos, items=st.lists(item, max_size=6), cut=st.booleans())
def test_a_hostile_session_gets_framed_replies_or_is_closed_and_the_witness_goes_on(
        server: Any, how: str, items: list[tuple[str, bytes, list[int]]], cut: bool) -> None:
    srv, witness, saved = server
    ds = srv.datastore
    running_before = etree.tostring(ds.running, method="c14n")
    saved_before = saved.read_bytes() if saved.exists() else None
    client_hello = {"1.0": hello(BASE_10), "1.1": hello(BASE_11), "both": hello(BASE_10, BASE_11), "none": None,
                    "junk": b"<hello><", "with-session-id": hello(BASE_11)[:-8] + b"<session-id>4</session-id></hello>",
                    "no-base": hello("urn:x")}[how]
    chunked = how in ("1.1", "both")
    t, ch, fr = open_session(srv.port, client_hello, chunked)
    replies: list[etree._Element] = []
    try:
        data = b"".join(m if kind == "raw" else frame(b"<a>" + b"x" * int(m) if kind == "huge" else m, chunked, cuts)
                        for kind, m, cuts in items)
        if cut and data:
            data = data[:len(data) // 2]
        try:
            ch.sendall(data)
            ch.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):  # the server may close first (a framing error)
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                msg = fr.read_message()
            except (OSError, EOFError, paramiko.SSHException):  # reset by the server as it closes
                break
            if msg is None:
                break
            reply = etree.fromstring(msg, STRICT)       # a server reply is always well-formed and framed
            assert reply.tag == f"{{{NC}}}rpc-reply", msg[:300]
            replies.append(reply)
        else:
            raise AssertionError("the server kept the hostile session open after its end of stream")
    except FramingError as exc:
        raise AssertionError(f"the server's reply was badly framed: {exc}") from None
    finally:
        t.close()
    wait_for(lambda: len(srv.sessions) == 1, what="the hostile session forgotten")
    get_config(witness)
    if all(r.find(f"{{{NC}}}rpc-error") is not None for r in replies):
        assert etree.tostring(ds.running, method="c14n") == running_before
        assert (saved.read_bytes() if saved.exists() else None) == saved_before

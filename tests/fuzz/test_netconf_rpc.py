"""Fuzz what a NETCONF session does with one message (``Session.handle``, in-process): random
XML in and around real RPCs, entities and DOCTYPEs, declared encodings, deep nesting, huge
text, truncated documents and random bytes.

Properties: every message gets one reply, a well-formed ``<rpc-reply>`` (no DTD, no entity
reference) holding rpc-errors or a result; running always serialises to XML that parses again,
and the saved datastore always loads (the device can restart); a refused request (an rpc-error
without continue-on-error) changes neither running nor the saved file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from lxml import etree

from emulator.netconf import Datastore, NetconfServer, Session

from .netconf_messages import INITIAL, NC, SYS_NS, rpc_message
from .support import fuzz

STRICT = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("netconf-rpc")
    srv = NetconfServer("127.0.0.1", 0, None, password_checker=lambda u, p: False, initial_config=INITIAL,
                        persist_path=str(d / "running.xml"))
    try:
        yield srv, Session(srv, 1, None, None, "fuzz"), d / "running.xml"
    finally:
        srv.datastore.close()


# ------------------------------------------------------------------------------- properties

def c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n")


@fuzz(500)
@given(msg=rpc_message())
def test_every_message_gets_one_well_formed_reply_and_nothing_refused_is_kept(device: Any, msg: bytes) -> None:
    srv, session, saved = device
    ds = srv.datastore
    running_before = c14n(ds.running)
    saved_before = saved.read_bytes() if saved.exists() else None
    reply = session.handle(msg)
    root = etree.fromstring(reply, STRICT)
    assert root.tag == f"{{{NC}}}rpc-reply" and root.getroottree().docinfo.doctype == ""
    assert next(root.iter(etree.Entity), None) is None
    errors = root.findall(f"{{{NC}}}rpc-error")
    assert errors or len(root), reply
    for e in errors:
        assert e.findtext(f"{{{NC}}}error-tag") and e.findtext(f"{{{NC}}}error-type") in (
            "transport", "rpc", "protocol", "application")
    etree.fromstring(etree.tostring(ds.running), STRICT)           # running stays well-formed XML
    etree.fromstring(etree.tostring(ds.candidate), STRICT)
    if saved.exists():
        Datastore(persist_path=str(saved))                         # the device would come back up
    if errors and b"continue-on-error" not in msg:
        assert c14n(ds.running) == running_before
        assert (saved.read_bytes() if saved.exists() else None) == saved_before
    session.closed = False                                          # a close-session ends nothing here
    ds.session_ended(session.id)                                    # locks and candidate of this "session"


def test_the_saved_datastore_is_there_to_load(device: Any) -> None:
    """The test above compares the saved file: make sure edits really reach it in this setup."""
    srv, session, saved = device
    reply = session.handle((f'<rpc xmlns="{NC}" message-id="1"><edit-config><target><running/></target>'
                            f'<config><system xmlns="{SYS_NS}"><location>fuzz</location></system></config>'
                            "</edit-config></rpc>").encode())
    assert etree.fromstring(reply).find(f"{{{NC}}}ok") is not None
    assert b"<location>fuzz</location>" in Path(saved).read_bytes()

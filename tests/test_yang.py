"""The emulated optical gear and the drivers against the published YANG models (``yang/``, or
``DCILAB_YANG_DIR``), validated by libyang's ``yanglint``: drivers written against data that only
our emulator accepts would misread real gear.

Each personality runs in-process against the fake line of tests/test_optical.py.  Validated with
zero errors: the full ``<get-config>`` (``-t config``: a state leaf there is an error), the full
``<get>`` (``-t data``: mandatory state, leafrefs, when conditions), every notification the
device sends on a protection switch or a fibre cut (``-t notif``), the hello's module revisions,
and what the drivers send: their edit-config content (``-t edit``), RPCs (``-t rpc``) and the
replies (``-t reply``).

Data in the emulator's own namespace (``urn:dcilab:emulator:bench``: the ROADM's ``fiber`` and
``optical-control-plane``, the bench notifications) is validated too, against the module that
describes it, ``emulator/yang/dcilab-emulator-bench.yang`` (no published model covers a test
bench); every other node against the published OpenROADM, OpenConfig and IETF modules."""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from lxml import etree

from drivers import SshTarget, sha256_fingerprint
from drivers.otn import connect_otn
from testbed.yang import validate
from tests.test_optical import APS, BENCH, LP, NC, TD, _pmi, connect, home, keys, make, sncp_switch  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
YANG_DIR = Path(os.environ.get("DCILAB_YANG_DIR") or REPO / "yang")
BENCH_YANG = REPO / "emulator" / "yang"   # the emulator's own bench module (not a published model)
YANGLINT = shutil.which("yanglint")
NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
PERSONALITIES = [("openconfig", "otn_terminal"), ("openroadm", "otn_terminal"), ("openroadm", "roadm")]

pytestmark = pytest.mark.skipif(YANGLINT is None, reason="install libyang2-tools (yanglint)")


# --- the published modules ------------------------------------------------------------------------
@functools.cache
def modules() -> dict[str, tuple[str, Path, str]]:
    """{namespace: (module, file, newest revision)} of every module under the YANG folder."""
    out = {}
    for f in [*sorted(YANG_DIR.rglob("*.yang")), *sorted(BENCH_YANG.glob("*.yang"))]:
        src = f.read_text(errors="replace")
        name = re.search(r"^\s*module\s+([\w.-]+)", src, re.M)
        ns = re.search(r'\bnamespace\s+"([^"]+)"', src)
        rev = re.search(r'\brevision\s+"?(\d{4}-\d{2}-\d{2})', src)
        if name and ns:
            out[ns.group(1)] = (name.group(1), f, rev.group(1) if rev else "")
    return out


def elements(nodes) -> list[etree._Element]:  # type: ignore[no-untyped-def]
    """Copies of the element nodes of ``nodes`` (no comments or text)."""
    return [etree.fromstring(etree.tostring(n)) for n in nodes if isinstance(n.tag, str)]


def yanglint_errors(kind: str, nodes, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    """libyang's complaint about ``nodes`` (top-level data nodes, no envelope) as a ``kind``
    document, or '' when valid; the modules loaded are those of the nodes' namespaces."""
    nss = {etree.QName(e).namespace for n in nodes for e in n.iter() if isinstance(e.tag, str)}
    unknown = sorted(ns for ns in nss if ns not in modules())
    assert not unknown, f"no module for namespace(s) {unknown} in {YANG_DIR} or {BENCH_YANG}"
    dirs = sorted({f.parent for _m, f, _r in modules().values()})
    return validate(b"".join(etree.tostring(n) for n in nodes), sorted({modules()[ns][1] for ns in nss}), dirs,
                    kind=kind) or ""


def assert_valid(kind: str, nodes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nodes = elements(nodes)
    assert nodes, f"nothing in a published namespace to validate as {kind}"
    err = yanglint_errors(kind, nodes, tmp_path)
    body = b"".join(etree.tostring(n) for n in nodes).decode()
    assert not err, f"{kind}: {err}\n--- document:\n{body[:4000]}"


def data_nodes(reply) -> list[etree._Element]:  # type: ignore[no-untyped-def]
    """The data nodes of a get/get-config reply, without the rpc-reply and data envelope."""
    data = etree.fromstring(reply.data_xml.encode())
    return [c for c in data if isinstance(c.tag, str)]


def without_otn_pm(nodes) -> list[etree._Element]:  # type: ignore[no-untyped-def]
    """The nodes less the logical channels' ``otn`` container.  Its when condition in the
    published openconfig-terminal-device, ``./config/logical-channel-type = 'PROT_OTN'``, compares
    an identity of openconfig-transport-types without its prefix: under RFC 7950 (and libyang)
    it is never true, so no OTN channel may hold its PM there (openconfig/public#206, #223).
    Real OpenConfig gear reports it all the same; the container is checked with ``-t get``
    (types, placement) instead."""
    out = [etree.fromstring(etree.tostring(n)) for n in nodes]
    for n in out:
        for el in list(n.iter(f"{{{TD}}}otn")):
            el.getparent().remove(el)
    return out


# --- get-config, get, hello ---------------------------------------------------------------------------
@pytest.mark.parametrize("personality,role", PERSONALITIES)
def test_get_config_validates(make, keys, tmp_path, personality, role):  # noqa: F811
    dev, _ = make(personality, role=role)
    with connect(dev, keys) as m:
        assert_valid("config", data_nodes(m.get_config("running")), tmp_path)


@pytest.mark.parametrize("personality,role", PERSONALITIES)
def test_get_validates(make, keys, tmp_path, personality, role):  # noqa: F811
    dev, line = make(personality, role=role)
    time.sleep(0.3)   # a PM sample has been taken: the state carries every PM leaf
    with connect(dev, keys) as m:
        nodes = data_nodes(m.get())
    if personality == "openconfig":
        assert any(True for n in nodes for _ in n.iter(f"{{{TD}}}otn")), "the OTN channel's PM is in the reply"
        assert_valid("get", nodes, tmp_path)
        nodes = without_otn_pm(nodes)
    assert_valid("data", nodes, tmp_path)


@pytest.mark.parametrize("personality,role", PERSONALITIES)
def test_get_validates_with_a_fibre_cut(make, keys, tmp_path, personality, role):  # noqa: F811
    """The state of a device whose paths are down (LOS powers, out-of-service interfaces)."""
    dev, line = make(personality, role=role)
    for p in ("working", "protection"):
        line.set_path_up(p, False)
    time.sleep(0.3)
    with connect(dev, keys) as m:
        nodes = data_nodes(m.get())
    assert_valid("data", without_otn_pm(nodes), tmp_path)


@pytest.mark.parametrize("personality,role", PERSONALITIES)
def test_hello_names_the_published_revisions(make, keys, personality, role):  # noqa: F811
    dev, _ = make(personality, role=role)
    with connect(dev, keys) as m:
        caps = list(m.server_capabilities)
    by_name = {name: rev for name, _f, rev in modules().values()}
    seen = {}
    for c in caps:
        q = re.match(r"([^?]+)\?module=([^&]+)(?:&revision=([\d-]+))?", c)
        if q:
            seen[q.group(2)] = q.group(3) or ""
    assert seen, caps
    assert {n: r for n, r in seen.items() if by_name.get(n) != r} == {}, \
        "modules advertised with a revision other than the published one (or not published at all)"


# --- notifications ------------------------------------------------------------------------------------------
def notif_payload(n) -> etree._Element:  # type: ignore[no-untyped-def]
    root = etree.fromstring(n.notification_xml.encode())
    return next(c for c in root if isinstance(c.tag, str) and etree.QName(c).localname != "eventTime")


def take_all(m, first_timeout: float = 3.0) -> list[etree._Element]:  # type: ignore[no-untyped-def]
    """The notifications that arrive: the first within ``first_timeout``, then while they come."""
    out = []
    n = m.take_notification(timeout=first_timeout)
    while n is not None:
        out.append(notif_payload(n))
        n = m.take_notification(timeout=0.5)
    return out


def assert_notifications_valid(payloads, tmp_path: Path) -> int:  # type: ignore[no-untyped-def]
    """Validates each notification; returns how many there were outside the bench namespace."""
    for p in payloads:
        assert_valid("notif", [p], tmp_path)
    return sum(1 for p in payloads if etree.QName(p).namespace != BENCH)


def test_openroadm_switch_rpc_reply_and_notifications_validate(make, keys, tmp_path):  # noqa: F811
    dev, _ = make("openroadm")
    rpc = sncp_switch()
    with connect(dev, keys) as m:
        m.create_subscription()
        payloads = []
        for req in (rpc, sncp_switch("Release")):
            assert_valid("rpc", [etree.fromstring(req)], tmp_path)
            reply = etree.fromstring(m.dispatch(etree.fromstring(req)).xml.encode())
            out = etree.Element(f"{{{APS}}}odu-sncp-protection-switch", nsmap={None: APS})
            out.extend(c for c in reply if isinstance(c.tag, str))
            assert_valid("reply", [out], tmp_path)
            payloads += take_all(m)
    assert [etree.QName(p).localname for p in payloads if etree.QName(p).namespace == APS] == \
        ["odu-sncp-pg-switch-event"] * 2
    assert assert_notifications_valid(payloads, tmp_path) == 2


def test_openconfig_and_roadm_notifications_validate(make, keys, tmp_path):  # noqa: F811
    """Their switch, restoration and fibre events are the emulator's own (bench namespace, its own
    module); they validate like anything else they send."""
    dev, line = make("openconfig")
    force = (f'<config xmlns="{NC}"><aps xmlns="{LP}"><aps-modules><aps-module><name>olp-1/3</name><config>'
             f'<force-to-port>SECONDARY</force-to-port></config></aps-module></aps-modules></aps></config>')
    with connect(dev, keys) as m:
        m.create_subscription()
        m.edit_config(target="running", config=force)
        payloads = take_all(m)
    assert any(etree.QName(p).namespace == BENCH for p in payloads)
    assert_notifications_valid(payloads, tmp_path)
    dev, line = make("openroadm", role="roadm")
    with connect(dev, keys) as m:
        m.create_subscription()
        m.dispatch(_pmi("set", degree_number=1))
        payloads = take_all(m)
    assert any(etree.QName(p).namespace == BENCH for p in payloads)
    assert_notifications_valid(payloads, tmp_path)


# --- what the drivers send ---------------------------------------------------------------------------------
def driver_for(dev, keys, personality: str):  # type: ignore[no-untyped-def]  # noqa: F811
    target = SshTarget("127.0.0.1", dev.port, "admin", key_path=str(keys / "id_ecdsa"),
                       fingerprint=sha256_fingerprint(dev.server.host_key), name=dev.cfg.name)
    return connect_otn(personality, target, confirm_timeout_s=5)


def recording(drv) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Records every edit and RPC the driver sends (they still go to the device)."""
    sent: list[tuple[str, str]] = []
    edit, rpc = drv.nc.edit, drv.nc.rpc

    def rec_edit(cfg, *a, **kw):  # type: ignore[no-untyped-def]
        sent.append(("edit", cfg))
        return edit(cfg, *a, **kw)

    def rec_rpc(req, *a, **kw):  # type: ignore[no-untyped-def]
        sent.append(("rpc", req))
        return rpc(req, *a, **kw)

    drv.nc.edit, drv.nc.rpc = rec_edit, rec_rpc
    return sent


def assert_sent_valid(sent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for kind, xml in sent:
        el = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
        if kind == "edit":   # the <config> wrapper's children are the edit's content
            assert etree.QName(el).localname == "config"
            assert_valid("edit", [c for c in el if isinstance(c.tag, str)], tmp_path)
        else:
            assert_valid("rpc", [el], tmp_path)


@pytest.mark.parametrize("personality", ["openconfig", "openroadm"])
def test_driver_edits_and_rpcs_validate(make, keys, tmp_path, personality):  # noqa: F811
    dev, line = make(personality)
    with driver_for(dev, keys, personality) as drv:
        sent = recording(drv)
        for gbps in (400, 800):
            drv.set_line_rate(gbps)
            assert drv.line_rate_gbps() == gbps
        drv.set_line_rate(400)
        drv.request_switch("force", "protection")
        assert drv.protection().active_path == "protection"
    assert {k for k, _ in sent} == ({"edit"} if personality == "openconfig" else {"edit", "rpc"})
    assert_sent_valid(sent, tmp_path)
    with connect(dev, keys) as m:   # what the edits left: a 400G line, forced to protection
        assert_valid("config", data_nodes(m.get_config("running")), tmp_path)
        assert_valid("data", without_otn_pm(data_nodes(m.get())), tmp_path)

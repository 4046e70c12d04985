"""Fuzz edit-config (RFC 6241 7.2) on the datastore, in-process: random stores, random edits with
merge/replace/create/delete/remove/none at the container, list-entry and leaf levels, every
default-operation, test-option and error-option, on running or candidate (then committed).

Properties, checked against the store before the edit: only RpcError/RpcErrors are raised; a
refused edit (stop- or rollback-on-error) and a test-only edit change nothing, in memory or in
the saved file; an edit changes only what it names (other containers and list entries are left
as they were); each entry-level operation does what RFC 6241 says (create: it did not exist
and now does, as sent; delete: it existed and is gone; remove: gone; replace: as sent; merge:
the leaves sent are set, the others kept); a list never holds two entries with one key; a
commit makes running what the candidate was.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from emulator.netconf import Datastore, RpcError, RpcErrors

from .support import fuzz

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF_NS, SYS_NS = "urn:example:interfaces", "urn:example:system"
IFACE = f"{{{IF_NS}}}interface"
SCHEMA = {IFACE: ("name",)}
OPS = ("merge", "replace", "create", "delete", "remove")
KEYS = ("eth0", "eth1", "eth2", "eth3")
LEAVES = ("mtu", "description")
_files = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edit-config")


value = st.text(alphabet="abcXYZ019 -&<>'\"", min_size=1, max_size=8).map(str.strip).filter(bool)
maybe_op = st.one_of(st.none(), st.sampled_from(OPS))


def op_attr(op: str | None) -> str:
    return f' nc:operation="{op}"' if op else ""


@st.composite
def store(draw: st.DrawFn) -> str:
    entries = []
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=4)):
        leaves = "".join(f"<{leaf}>{escape(draw(value))}</{leaf}>" for leaf in LEAVES if draw(st.booleans()))
        entries.append(f"<interface><name>{key}</name>{leaves}</interface>")
    parts = []
    if draw(st.booleans()):
        parts.append(f'<interfaces xmlns="{IF_NS}">{"".join(entries)}</interfaces>')
    if draw(st.booleans()):
        parts.append(f'<system xmlns="{SYS_NS}"><hostname>{escape(draw(value))}</hostname></system>')
    return f'<data xmlns="{NC}">{"".join(parts)}</data>'


@st.composite
def edit(draw: st.DrawFn) -> str:
    parts = []
    if draw(st.integers(0, 3)):
        entries = []
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.one_of(st.sampled_from(KEYS), st.none()))      # None: an entry without its key
            leaves = "".join(f"<{leaf}{op_attr(draw(maybe_op) if draw(st.integers(0, 3)) == 0 else None)}>"
                             f"{escape(draw(value))}</{leaf}>" for leaf in LEAVES if draw(st.booleans()))
            name = f"<name>{key}</name>" if key else ""
            entries.append(f"<interface{op_attr(draw(maybe_op))}>{name}{leaves}</interface>")
        top_op = draw(maybe_op) if draw(st.integers(0, 3)) == 0 else None
        parts.append(f'<interfaces xmlns="{IF_NS}"{op_attr(top_op)}>{"".join(entries)}</interfaces>')
    if draw(st.booleans()):
        parts.append(f'<system xmlns="{SYS_NS}"{op_attr(draw(maybe_op))}>'
                     f"<hostname{op_attr(draw(maybe_op))}>{escape(draw(value))}</hostname></system>")
    draw(st.randoms()).shuffle(parts)
    return f'<config xmlns="{NC}" xmlns:nc="{NC}">{"".join(parts)}</config>'


# ------------------------------------------------------------------------------------ views

def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def canon(el: etree._Element) -> tuple[Any, ...]:
    """Tag, text of a leaf, children in order: what a client reading the node sees."""
    kids = [c for c in el if isinstance(c.tag, str)]
    return (el.tag, (el.text or "") if not kids else None, tuple(canon(c) for c in kids))


def top(root: etree._Element, name: str) -> etree._Element | None:
    return next((c for c in root if isinstance(c.tag, str) and local(c) == name), None)


def entries(root: etree._Element) -> dict[str, tuple[Any, ...]]:
    """Interface entries by key; fails on a second entry with one key."""
    ifs = top(root, "interfaces")
    out: dict[str, tuple[Any, ...]] = {}
    for e in ifs.iterchildren(IFACE) if ifs is not None else ():
        key = e.findtext(f"{{{IF_NS}}}name")
        assert key is None or key.strip() not in out, f"two entries with key {key!r}"
        if key is not None:
            out[key.strip()] = canon(e)
    return out


def clean(el: etree._Element) -> etree._Element:
    c = etree.fromstring(etree.tostring(el))
    for e in c.iter():
        e.attrib.pop(f"{{{NC}}}operation", None)
    return c


# ------------------------------------------------------------------------------- properties

@fuzz(400)
@given(initial=store(), config=edit(), target=st.sampled_from(["running", "candidate"]),
       default_op=st.sampled_from(["merge", "merge", "none", "replace"]),
       test_option=st.sampled_from(["test-then-set", "test-then-set", "set", "test-only"]),
       error_option=st.sampled_from(["stop-on-error", "rollback-on-error", "continue-on-error"]),
       persist=st.booleans())
def test_edit_config_changes_only_what_it_names_and_a_refusal_changes_nothing(
        folder: Path, initial: str, config: str, target: str, default_op: str, test_option: str,
        error_option: str, persist: bool) -> None:
    path = folder / f"running-{next(_files)}.xml"
    ds = Datastore(initial, schema=SCHEMA, persist_path=str(path) if persist else None)
    if persist:                                     # a saved datastore to compare with
        ds.edit_config(1, "running", etree.fromstring(f'<config xmlns="{NC}"/>'))
    saved = path.read_bytes() if persist else None
    before = etree.fromstring(etree.tostring(ds.running))
    src = etree.fromstring(config)
    try:
        ds.edit_config(1, target, src, default_operation=default_op, test_option=test_option,
                       error_option=error_option)
        refused = False
    except (RpcError, RpcErrors):
        refused = True
    store_after = ds.running if target == "running" else ds.candidate
    entries(store_after)                                            # no duplicate keys
    if (refused and error_option != "continue-on-error") or test_option == "test-only":
        assert canon(store_after) == canon(before)
        assert ds.running is not None and canon(ds.running) == canon(before)
        if persist:
            assert path.read_bytes() == saved
        return
    if target == "candidate":                                       # running untouched until commit
        assert canon(ds.running) == canon(before)
        ds.commit(1)
        assert canon(ds.running) == canon(store_after)
        store_after = ds.running
    if persist:
        assert canon(Datastore(persist_path=str(path)).running) == canon(ds.running)
    if refused:                                                     # continue-on-error: partial
        return
    check_semantics(before, store_after, src, default_op)


def check_semantics(before: etree._Element, after: etree._Element, src: etree._Element, default_op: str) -> None:
    if default_op == "replace":                                     # the datastore becomes the config
        return
    named = {local(c) for c in src if isinstance(c.tag, str)}
    for name in ("interfaces", "system"):
        if name not in named:
            b, a = top(before, name), top(after, name)
            assert (canon(b) if b is not None else None) == (canon(a) if a is not None else None), name
    s_ifs = top(src, "interfaces")
    if s_ifs is None:
        return
    top_op = s_ifs.get(f"{{{NC}}}operation")
    a_ifs = top(after, "interfaces")
    if top_op in ("delete", "remove"):
        assert a_ifs is None
        return
    if top_op in ("replace", "create"):
        assert canon(a_ifs) == canon(clean(s_ifs))
        return
    eb, ea = entries(before), entries(after)
    sent = [(e.findtext(f"{{{IF_NS}}}name"), e) for e in s_ifs.iterchildren(IFACE)]
    keys = [k for k, _ in sent]
    for key in set(eb) - set(keys):                                 # entries the edit does not name
        assert ea.get(key) == eb[key], key
    for key, e in sent:
        if key is None or keys.count(key) > 1:
            continue
        op = e.get(f"{{{NC}}}operation") or (top_op or default_op)
        leaf_ops = any(c.get(f"{{{NC}}}operation") for c in e)
        if op == "create":
            assert key not in eb and ea.get(key) == canon(clean(e))
        elif op == "delete":
            assert key in eb and key not in ea
        elif op == "remove":
            assert key not in ea
        elif op == "replace":
            assert ea.get(key) == canon(clean(e))
        elif op == "merge" and not leaf_ops:
            assert key in ea
            got = {c[0]: c[1] for c in ea[key][2]}
            was = {c[0]: c[1] for c in eb.get(key, (None, None, ()))[2]}
            for c in e:
                assert got[c.tag] == (c.text or ""), (key, c.tag)
            for tag, text in was.items():
                if tag not in {c.tag for c in e}:
                    assert got.get(tag) == text, (key, tag)

"""Running and candidate datastores: RFC 6241 subtree filtering, edit-config, locks, commit and
confirmed commit (RFC 6241 sections 6, 7.2, 7.5, 8.3, 8.4).

Configuration is held as lxml trees under a ``<data xmlns=base:1.0>`` wrapper whose children are
the top-level nodes.  List entries are matched by their key leaves; ``schema`` maps a list
element's Clark name (``{ns}local``) to its key leaf names; an element with no schema entry is
keyed by a child ``name`` if it has one, otherwise it is a container (one instance).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Iterable

from lxml import etree

from emulator.durable import save_durably

from .errors import NC_NS, RpcError, RpcErrors, qn

log = logging.getLogger(__name__)

OP_ATTR = qn("operation")
OPERATIONS = ("merge", "replace", "create", "delete", "remove")
DATASTORES = ("running", "candidate")


def new_data() -> etree._Element:
    return etree.Element(qn("data"), nsmap={None: NC_NS})


def _is_elem(e) -> bool:
    return isinstance(e.tag, str)


def _children(e) -> list:
    return [c for c in e if _is_elem(c)]


def _text(e) -> str:
    return (e.text or "").strip()


def _local(tag: str) -> str:
    return etree.QName(tag).localname


def _ns(tag: str) -> str | None:
    return etree.QName(tag).namespace


# ---------------------------------------------------------------------------------------------
# subtree filtering (RFC 6241 section 6)
# ---------------------------------------------------------------------------------------------
def _qmatch(data_el, filt_el) -> bool:
    """Same local name; a filter node without a namespace (or in the base namespace, which it
    inherits from <filter>) matches any namespace (RFC 6241 section 6.2.1)."""
    if _local(data_el.tag) != _local(filt_el.tag):
        return False
    fns = _ns(filt_el.tag)
    return fns in (None, NC_NS) or fns == _ns(data_el.tag)


def _select(data, filt, full: set, partial: set) -> bool:
    """Match ``data`` against filter node ``filt`` (same name already).  Records the data nodes to
    output whole in ``full`` and those to output as ancestors in ``partial``."""
    fkids = _children(filt)
    if not fkids:
        if _text(filt) and _text(filt) != _text(data):
            return False
        full.add(data)
        return True
    dkids = _children(data)
    content = [f for f in fkids if not _children(f) and _text(f)]
    others = [f for f in fkids if not (not _children(f) and _text(f))]
    matched_content = []
    for f in content:
        hits = [d for d in dkids if _qmatch(d, f) and _text(d) == _text(f)]
        if not hits:
            return False
        matched_content.extend(hits)
    if not others:  # only content-match nodes: the whole subtree
        full.add(data)
        return True
    lfull, lpartial = set(), set()
    got = False
    for f in others:
        for d in dkids:
            if _qmatch(d, f) and _select(d, f, lfull, lpartial):
                got = True
    if not got and not content:
        return False
    full.update(lfull)
    full.update(matched_content)
    partial.update(lpartial)
    partial.add(data)
    return True


def _build(data, full: set, partial: set):
    if data in full:
        return copy.deepcopy(data)
    out = etree.Element(data.tag, attrib=dict(data.attrib), nsmap=data.nsmap)
    out.text = data.text if not _children(data) else None
    for c in data:
        if _is_elem(c) and (c in full or c in partial):
            out.append(_build(c, full, partial))
    return out


def subtree_filter(root: etree._Element, filt: etree._Element | None) -> etree._Element:
    """Apply a subtree filter (the ``<filter>`` element, or None for everything) to ``root`` (a
    ``<data>`` wrapper); returns a new ``<data>`` element."""
    out = new_data()
    if filt is None:
        for c in _children(root):
            out.append(copy.deepcopy(c))
        return out
    ftype = filt.get("type", "subtree")
    if ftype != "subtree":
        raise RpcError(
            "invalid-value",
            f"filter type {ftype!r} is not supported",
            type="protocol",
            info=[("bad-attribute", "type"), ("bad-element", "filter")],
        )
    full: set = set()
    partial: set = set()
    for f in _children(filt):
        for d in _children(root):
            if _qmatch(d, f):
                _select(d, f, full, partial)
    for d in _children(root):
        if d in full or d in partial:
            out.append(_build(d, full, partial))
    return out


# ---------------------------------------------------------------------------------------------
# edit-config (RFC 6241 section 7.2)
# ---------------------------------------------------------------------------------------------
class Editor:
    def __init__(self, schema: dict[str, Iterable[str]] | None = None):
        self.schema = {k: tuple(v) for k, v in (schema or {}).items()}

    def keys_for(self, el) -> tuple[str, ...]:
        if el.tag in self.schema:
            return self.schema[el.tag]
        if any(_local(c.tag) == "name" for c in _children(el)):
            return ("name",)
        return ()

    def key_values(self, el, keys) -> dict[str, str] | None:
        vals = {}
        for k in keys:
            hit = [c for c in _children(el) if _local(c.tag) == k]
            if not hit:
                return None
            vals[k] = _text(hit[0])
        return vals

    def find(self, parent, src, path: str):
        keys = self.keys_for(src)
        if keys:
            want = self.key_values(src, keys)
            if want is None:
                raise RpcError(
                    "missing-element", f"list entry {path} lacks its key", path=path, info=[("bad-element", keys[0])]
                )
        for c in _children(parent):
            if c.tag != src.tag:
                continue
            if not keys or self.key_values(c, keys) == want:
                return c
        return None

    def _path(self, parent_path: str, src) -> str:
        p = f"{parent_path}/{_local(src.tag)}"
        keys = self.keys_for(src)
        if keys:
            vals = self.key_values(src, keys) or {}
            p += "".join(f"[{k}='{v}']" for k, v in vals.items())
        return p

    def check_entries(self, src, path: str) -> None:
        """A subtree stored whole (create, replace) must hold no list entry without its key and no
        two entries with one key: merge meets each entry through ``find``, these would not."""
        for el in src.iter():
            if not _is_elem(el):
                continue
            seen = set()
            for c in _children(el):
                keys = self.keys_for(c)
                if not keys:
                    continue
                vals = self.key_values(c, keys)
                where = f"{path}/.../{_local(c.tag)}" if el is not src else f"{path}/{_local(c.tag)}"
                if vals is None:
                    raise RpcError("missing-element", f"list entry {where} lacks its key", path=where,
                                   info=[("bad-element", keys[0])])
                ident = (c.tag, tuple(vals.items()))
                if ident in seen:
                    key = ", ".join(f"{k}={v!r}" for k, v in vals.items())
                    raise RpcError("invalid-value", f"two {_local(c.tag)} entries with {key} in {path}", path=where,
                                   info=[("bad-element", _local(c.tag))])
                seen.add(ident)

    @staticmethod
    def clean(src):
        c = copy.deepcopy(src)
        for e in c.iter():
            if _is_elem(e) and OP_ATTR in e.attrib:
                del e.attrib[OP_ATTR]
        return c

    def apply(self, target_root, config, default_operation: str = "merge", error_option: str = "stop-on-error"):
        """Apply ``config``'s children to ``target_root`` in place.  Returns the list of errors
        (continue-on-error); raises the first RpcError otherwise."""
        errors: list[RpcError] = []
        for src in _children(config):
            try:
                self._edit(target_root, src, default_operation, "")
            except RpcError as e:
                if error_option != "continue-on-error":
                    raise
                errors.append(e)
        return errors

    def _edit(self, parent, src, parent_op: str, parent_path: str) -> None:
        path = self._path(parent_path, src)
        op = src.get(OP_ATTR, parent_op)
        if op not in OPERATIONS and not (op == "none" and OP_ATTR not in src.attrib):
            raise RpcError(
                "bad-attribute",
                f"unknown operation {op!r}",
                type="application",
                path=path,
                info=[("bad-attribute", "operation"), ("bad-element", _local(src.tag))],
            )
        existing = self.find(parent, src, path)
        leaf = not _children(src)
        if op in ("create", "replace"):
            self.check_entries(src, path)
        if op == "create":
            if existing is not None:
                raise RpcError("data-exists", f"{path} already exists", path=path)
            parent.append(self.clean(src))
        elif op == "delete":
            if existing is None:
                raise RpcError("data-missing", f"{path} does not exist", path=path)
            parent.remove(existing)
        elif op == "remove":
            if existing is not None:
                parent.remove(existing)
        elif op == "replace":
            new = self.clean(src)
            if existing is not None:
                parent.replace(existing, new)
            else:
                parent.append(new)
        elif op == "merge":
            if existing is None:
                existing = etree.SubElement(parent, src.tag, nsmap=src.nsmap)
            if leaf and _children(existing):
                # An element with no children merged into a container: nothing to merge (without a
                # schema, the stored node's children say it is a container, not a leaf to overwrite).
                if _text(src):
                    raise RpcError("invalid-value", f"{path} is a container; it takes no value", path=path,
                                   info=[("bad-element", _local(src.tag))])
            elif leaf:
                existing.text = src.text
                for c in list(existing):
                    existing.remove(c)
            else:
                for c in _children(src):
                    self._edit(existing, c, "merge", path)
        else:  # none
            if leaf:
                return
            created = existing is None
            if created:
                existing = etree.SubElement(parent, src.tag, nsmap=src.nsmap)
            keys = self.keys_for(src)
            try:
                for c in _children(src):
                    if _local(c.tag) in keys and OP_ATTR not in c.attrib:
                        if created:
                            existing.append(self.clean(c))
                        continue
                    self._edit(existing, c, "none", path)
            finally:
                if created and len([c for c in _children(existing) if _local(c.tag) not in keys]) == 0:
                    parent.remove(existing)


# ---------------------------------------------------------------------------------------------
# the datastores
# ---------------------------------------------------------------------------------------------
class Datastore:
    """Running + candidate, locks and the confirmed-commit state, shared by all sessions of one
    device.  ``on_commit(old, new)`` is called (outside the lock) whenever running changes."""

    def __init__(
        self, initial: etree._Element | str | bytes | None = None, *, schema=None, persist_path: str | None = None
    ):
        self.editor = Editor(schema)
        self.lock = threading.RLock()
        self.persist_path = persist_path
        if persist_path and os.path.exists(persist_path):
            with open(persist_path, "rb") as f:
                initial = f.read()
        self.running = self._as_data(initial)
        self.candidate = copy.deepcopy(self.running)
        self.candidate_dirty_by: int | None = None
        self.locks: dict[str, int] = {}
        self.confirm: dict | None = None
        self._confirm_gen = 0
        self.commit_callbacks: list[Callable] = []
        self.state_provider: Callable[[], etree._Element | None] | None = None

    @staticmethod
    def _as_data(initial):
        if initial is None:
            return new_data()
        if isinstance(initial, (str, bytes)):
            initial = etree.fromstring(
                initial.encode() if isinstance(initial, str) else initial,
                etree.XMLParser(remove_blank_text=True, resolve_entities=False),
            )
        if initial.tag in (qn("data"), qn("config")):
            d = new_data()
            for c in _children(initial):
                d.append(copy.deepcopy(c))
            return d
        d = new_data()
        d.append(copy.deepcopy(initial))
        return d

    # --- helpers ---------------------------------------------------------------------------
    def _store(self, name: str):
        if name not in DATASTORES:
            raise RpcError(
                "invalid-value", f"datastore {name!r} is not supported", type="protocol", info=[("bad-element", name)]
            )
        return self.running if name == "running" else self.candidate

    def _check_not_locked_by_other(self, name: str, sid: int) -> None:
        holder = self.locks.get(name)
        if holder is not None and holder != sid:
            raise RpcError(
                "in-use",
                f"the {name} datastore is locked by session {holder}",
                type="protocol",
                info=[("session-id", str(holder))],
            )

    def _set_running(self, new, pending: list) -> None:
        old = self.running
        self.running = new
        pending.append((copy.deepcopy(old), copy.deepcopy(new)))
        if self.persist_path:
            save_durably(self.persist_path, etree.tostring(new, pretty_print=True))

    def fire(self, pending: list) -> None:
        for old, new in pending:
            for cb in list(self.commit_callbacks):
                try:
                    cb(old, new)
                except Exception:  # a personality's bug must not kill the session
                    log.exception("on_commit callback failed")

    # --- operations --------------------------------------------------------------------------
    def get_config(self, source: str, filt=None):
        with self.lock:
            return subtree_filter(self._store(source), filt)

    def get(self, filt=None):
        with self.lock:
            data = copy.deepcopy(self.running)
        state = self.state_provider() if self.state_provider else None
        if state is not None:
            self.editor.apply(data, state, "merge")
        return subtree_filter(data, filt)

    def edit_config(
        self,
        sid: int,
        target: str,
        config,
        default_operation="merge",
        test_option="test-then-set",
        error_option="stop-on-error",
    ) -> list[RpcError]:
        if default_operation not in ("merge", "replace", "none"):
            raise RpcError(
                "invalid-value",
                f"bad default-operation {default_operation!r}",
                type="protocol",
                info=[("bad-element", "default-operation")],
            )
        if test_option not in ("test-then-set", "set", "test-only"):
            raise RpcError(
                "invalid-value",
                f"bad test-option {test_option!r}",
                type="protocol",
                info=[("bad-element", "test-option")],
            )
        if error_option not in ("stop-on-error", "continue-on-error", "rollback-on-error"):
            raise RpcError(
                "invalid-value",
                f"bad error-option {error_option!r}",
                type="protocol",
                info=[("bad-element", "error-option")],
            )
        pending: list = []
        with self.lock:
            store = self._store(target)
            self._check_not_locked_by_other(target, sid)
            work = copy.deepcopy(store)
            if default_operation == "replace":
                # the <config> replaces the whole datastore (per-node operations still apply)
                work = new_data()
                errors = self.editor.apply(work, config, "merge", error_option)
            else:
                errors = self.editor.apply(work, config, default_operation, error_option)
            if test_option == "test-only":
                pass
            elif target == "running":
                self._set_running(work, pending)
            else:
                self.candidate = work
                self.candidate_dirty_by = sid
        self.fire(pending)
        if errors:
            raise RpcErrors(errors)
        return errors

    def do_lock(self, sid: int, target: str) -> None:
        with self.lock:
            self._store(target)
            holder = self.locks.get(target)
            if holder is not None:
                raise RpcError(
                    "lock-denied", f"lock held by session {holder}", type="protocol", info=[("session-id", str(holder))]
                )
            if target == "candidate" and self.candidate_dirty_by not in (None, sid):
                raise RpcError(
                    "lock-denied", "the candidate has uncommitted changes", type="protocol", info=[("session-id", "0")]
                )
            if target == "running" and self.confirm is not None and self.confirm["session"] != sid:
                raise RpcError(
                    "lock-denied", "a confirmed commit is pending", type="protocol", info=[("session-id", "0")]
                )
            self.locks[target] = sid

    def do_unlock(self, sid: int, target: str) -> None:
        with self.lock:
            self._store(target)
            if self.locks.get(target) != sid:
                raise RpcError(
                    "operation-failed", f"the {target} datastore is not locked by this session", type="protocol"
                )
            del self.locks[target]

    def discard_changes(self, sid: int) -> None:
        with self.lock:
            self._check_not_locked_by_other("candidate", sid)
            self.candidate = copy.deepcopy(self.running)
            self.candidate_dirty_by = None

    def commit(
        self,
        sid: int,
        confirmed: bool = False,
        timeout: int = 600,
        persist: str | None = None,
        persist_id: str | None = None,
    ) -> None:
        pending: list = []
        with self.lock:
            self._check_not_locked_by_other("running", sid)
            self._check_not_locked_by_other("candidate", sid)
            c = self.confirm
            if c is not None:
                self._check_confirm_owner(c, sid, persist_id)
            elif persist_id is not None:
                raise RpcError(
                    "invalid-value",
                    "no confirmed commit is pending",
                    type="protocol",
                    info=[("bad-element", "persist-id")],
                )
            new = copy.deepcopy(self.candidate)
            if confirmed:
                backup = c["backup"] if c else copy.deepcopy(self.running)
                if c:
                    c["timer"].cancel()
                self._confirm_gen += 1
                gen = self._confirm_gen
                t = threading.Timer(timeout, self._confirm_expired, args=(gen,))
                t.daemon = True
                self.confirm = {"backup": backup, "session": sid, "persist": persist, "timer": t, "gen": gen}
                t.start()
            else:
                if c:
                    c["timer"].cancel()
                self.confirm = None
            self._set_running(new, pending)
            self.candidate_dirty_by = None
        self.fire(pending)

    def _check_confirm_owner(self, c: dict, sid: int, persist_id: str | None) -> None:
        if c["persist"] is not None:
            if persist_id != c["persist"]:
                raise RpcError(
                    "invalid-value",
                    "persist-id does not match the pending confirmed commit",
                    type="protocol",
                    info=[("bad-element", "persist-id")],
                )
        elif c["session"] != sid:
            raise RpcError(
                "operation-failed",
                f"a confirmed commit of session {c['session']} is pending",
                type="protocol",
                info=[("session-id", str(c["session"]))],
            )

    def cancel_commit(self, sid: int, persist_id: str | None = None) -> None:
        pending: list = []
        with self.lock:
            c = self.confirm
            if c is None:
                raise RpcError("operation-failed", "no confirmed commit is pending", type="protocol")
            self._check_confirm_owner(c, sid, persist_id)
            self._rollback(pending)
        self.fire(pending)

    def _rollback(self, pending: list) -> None:
        c = self.confirm
        c["timer"].cancel()
        self.confirm = None
        self._set_running(copy.deepcopy(c["backup"]), pending)
        self.candidate = copy.deepcopy(c["backup"])
        self.candidate_dirty_by = None

    def _confirm_expired(self, gen: int) -> None:
        pending: list = []
        with self.lock:
            if self.confirm is None or self.confirm["gen"] != gen:
                return
            log.info("confirmed commit timed out: rolling back")
            self._rollback(pending)
        self.fire(pending)

    def session_ended(self, sid: int) -> None:
        """Release the session's locks, discard its candidate changes, cancel its non-persistent
        confirmed commit (RFC 6241 sections 7.5, 8.3, 8.4.1)."""
        pending: list = []
        with self.lock:
            for name in [n for n, h in self.locks.items() if h == sid]:
                del self.locks[name]
            if self.candidate_dirty_by == sid:
                self.candidate = copy.deepcopy(self.running)
                self.candidate_dirty_by = None
            c = self.confirm
            if c is not None and c["persist"] is None and c["session"] == sid:
                self._rollback(pending)
        self.fire(pending)

    def close(self) -> None:
        with self.lock:
            if self.confirm is not None:
                self.confirm["timer"].cancel()

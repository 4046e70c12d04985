"""What every emulated optical device shares: the NETCONF server, the line client, validation of
edits before they reach a datastore, the commit -> line wiring, and the background thread that
samples PM and turns the line's events into notifications."""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from lxml import etree

from emulator.line.control import LineControl, LineControlError
from emulator.netconf import NetconfServer, RpcError
from emulator.netconf.datastore import new_data
from emulator.netconf.errors import NC_NS

from .config import DeviceConfig

log = logging.getLogger(__name__)

BENCH_NS = "urn:dcilab:emulator:bench"
"""Our own namespace: the test bench's back door (pm-interact) and the emulator's notifications."""
BENCH_MODULE = ("dcilab-emulator-bench", BENCH_NS, "2026-12-06")   # emulator/yang/dcilab-emulator-bench.yang


def E(tag: str, ns: str, text: Any = None, nsmap: dict | None = None, **kids) -> etree._Element:
    el = etree.Element(f"{{{ns}}}{tag}", nsmap=nsmap)
    if text is not None:
        el.text = str(text)
    return el


def sub(parent, tag: str, text: Any = None, ns: str | None = None, nsmap: dict | None = None) -> etree._Element:
    if ns is None:
        ns = etree.QName(parent).namespace
    # default namespace = the element's own: the datastore's merge copies each node's nsmap, and
    # lxml serialises a node whose inherited default namespace differs from its own wrongly
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", nsmap={None: ns, **(nsmap or {})})
    if text is not None:
        el.text = str(text).lower() if isinstance(text, bool) else str(text)
    return el


def local(el) -> str:
    return etree.QName(el).localname


def text(el) -> str:
    return (el.text or "").strip() if el is not None else ""


def find(el, *steps: str):
    """Descend by local names; a step ``name=value`` picks the list entry whose child matches."""
    cur = [el]
    for st in steps:
        nxt = []
        key = None
        if "=" in st:
            st, key = st.split("=", 1)
        for c in cur:
            for k in c:
                if isinstance(k.tag, str) and local(k) == st:
                    if key is None:
                        nxt.append(k)
                    else:
                        kname, kval = key.split(":", 1) if ":" in key else ("name", key)
                        if any(isinstance(x.tag, str) and local(x) == kname and text(x) == kval for x in k):
                            nxt.append(k)
        cur = nxt
    return cur[0] if cur else None


def findall(el, *steps: str) -> list:
    cur = [el]
    for st in steps:
        cur = [k for c in cur for k in c if isinstance(k.tag, str) and local(k) == st]
    return cur


def invalid(msg: str, path: str | None = None, element: str | None = None, tag: str = "invalid-value"):
    info = [("bad-element", element)] if element else None
    return RpcError(tag, msg, type="application", path=path, info=info)


class FakeableLine:
    """Calls an op on the line client: its method if it has one, else a raw request (the newer
    protection ops may reach a LineControl that predates them)."""

    def __init__(self, line):
        self.line = line

    def __call__(self, op: str, **kw):
        fn = getattr(self.line, op, None)
        if fn is not None:
            return fn(**kw)
        return self.line.request(op, **kw)


class Device:
    """A personality fills in: ``NAMESPACES`` (top-level config namespaces it owns), ``MODULES``
    (the YANG modules its hello advertises: name, namespace, revision), ``SCHEMA``,
    ``initial_config()``, ``validate(tree)``, ``state(line_state)``, ``apply(old, new)``,
    ``sync(running)`` and ``on_event(ev)``."""

    NAMESPACES: tuple[str, ...] = ()
    MODULES: tuple[tuple[str, str, str], ...] = ()
    SCHEMA: dict = {}
    READ_ONLY: tuple[str, ...] = ("state",)

    def __init__(self, cfg: DeviceConfig, line=None):
        self.cfg = cfg
        self.line = line if line is not None else LineControl(cfg.line_socket, timeout=3.0)
        self.call = FakeableLine(self.line)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events_next: int | None = None
        self.events_supported = True
        import os
        self.restored_from_disk = bool(cfg.persist_path and os.path.exists(cfg.persist_path))
        pw = cfg.password
        self.server = NetconfServer(
            cfg.address, cfg.port, cfg.host_key,
            authorized_keys=cfg.authorized_keys,
            password_checker=(lambda u, p: u == cfg.username and p == pw) if pw is not None else None,
            schema=self.SCHEMA, initial_config=self.initial_config(), state_provider=self._state,
            persist_path=cfg.persist_path,
            capabilities=[f"{ns}?module={m}" + (f"&revision={r}" if r else "") for m, ns, r in self.MODULES],
        )
        self.server.register_rpc(f"{{{NC_NS}}}edit-config", self._edit_config)
        self.server.on_commit(self._on_commit)
        self.register()

    def register(self) -> None:
        """Personalities register their RPCs here."""

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Device:
        self.server.start()
        self._thread = threading.Thread(target=self._loop, name=f"optical-{self.cfg.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3)
        self.server.stop()

    @property
    def port(self) -> int:
        return self.server.port

    # --- helpers ---------------------------------------------------------------------------------
    def running(self) -> etree._Element:
        with self.server.datastore.lock:
            return copy.deepcopy(self.server.datastore.running)

    def line_state(self) -> dict | None:
        try:
            return self.line.get()
        except LineControlError as exc:
            log.warning("%s: line unavailable: %s", self.cfg.name, exc)
            return None

    def rate_to_bps(self, gbps: float) -> int:
        return int(round(gbps * 1e9 * self.cfg.bandwidth_scale))

    def bps_to_gbps(self, bps: float) -> float:
        return round(bps / 1e9 / self.cfg.bandwidth_scale, 3) if bps else 0.0

    # --- edit-config: validate the would-be result first ----------------------------------------
    def _edit_config(self, session, op):
        srv = self.server
        ds = srv.datastore
        p = {local(c): c for c in op if isinstance(c.tag, str)}
        cfg = p.get("config")
        dop = text(p.get("default-operation")) or "merge"
        eop = text(p.get("error-option")) or "stop-on-error"
        target = None
        if "target" in p:
            kids = [c for c in p["target"] if isinstance(c.tag, str)]
            target = local(kids[0]) if len(kids) == 1 else None
        if cfg is None or target not in ("running", "candidate") or dop not in ("merge", "replace", "none") \
                or eop not in ("stop-on-error", "continue-on-error", "rollback-on-error"):
            return srv._rpc_edit_config(session, op)  # let the server give its protocol error
        self._check_writable(cfg)
        with ds.lock:
            ds._check_not_locked_by_other(target, session.id)
            work = copy.deepcopy(ds._store(target)) if dop != "replace" else new_data()
            ds.editor.apply(work, cfg, "merge" if dop == "replace" else dop, "stop-on-error")
            self.validate(work)
            return srv._rpc_edit_config(session, op)

    def _check_writable(self, cfg) -> None:
        for top in cfg:
            if not isinstance(top.tag, str):
                continue
            ns = etree.QName(top).namespace
            if ns not in self.NAMESPACES:
                raise RpcError("unknown-namespace", f"this device has no model in namespace {ns!r}",
                               type="application", info=[("bad-element", local(top)), ("bad-namespace", ns or "")])
            for el in top.iter():
                if isinstance(el.tag, str) and local(el) in self.READ_ONLY:
                    raise RpcError("invalid-value", f"<{local(el)}> is read-only (config false)",
                                   type="application", info=[("bad-element", local(el))])

    def validate(self, tree) -> None:  # pragma: no cover - personalities override
        pass

    # --- commit -> line ----------------------------------------------------------------------------
    def _on_commit(self, old, new) -> None:
        try:
            self.apply(old, new)
        except LineControlError as exc:
            log.error("%s: applying the configuration to the line failed: %s", self.cfg.name, exc)

    def apply(self, old, new) -> None:
        pass

    def sync(self, running) -> None:
        """At start, bring the line to a configuration restored from disk."""

    # --- state ---------------------------------------------------------------------------------------
    def _state(self):
        st = self.line_state()
        try:
            return self.state(st)
        except Exception:
            log.exception("%s: building state failed", self.cfg.name)
            return None

    def state(self, line_state: dict | None):
        return None

    # --- background: PM sampling and line events -> notifications -----------------------------------
    def pm_sample(self, line_state: dict) -> None:
        pass

    def on_event(self, ev: dict) -> None:
        pass

    def _loop(self) -> None:
        synced = not self.restored_from_disk
        next_pm = 0.0
        next_events = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if not synced:
                    self.sync(self.running())
                    synced = True
                if now >= next_pm:
                    next_pm = now + self.cfg.pm_sample_s
                    st = self.line.get()
                    self.pm_sample(st)
                if self.events_supported and now >= next_events:
                    next_events = now + 0.05
                    self._poll_events()
            except LineControlError as exc:
                log.debug("%s: line: %s", self.cfg.name, exc)
                if "unknown op" in str(exc):
                    self.events_supported = False
                    log.warning("%s: the line has no events op; no notifications from it", self.cfg.name)
                self._stop.wait(0.5)
            except Exception:
                log.exception("%s: background loop", self.cfg.name)
                self._stop.wait(0.5)
            self._stop.wait(0.02)

    def _poll_events(self) -> None:
        if self.events_next is None:
            r = self.call("events", since=0)
            self.events_next = r.get("next", 0)  # only what happens from now on
            return
        r = self.call("events", since=self.events_next)
        for ev in r.get("events", []):
            try:
                self.on_event(ev)
            except Exception:
                log.exception("%s: event %r", self.cfg.name, ev)
        self.events_next = r.get("next", self.events_next)

    def notify(self, el) -> None:
        self.server.notify(el)

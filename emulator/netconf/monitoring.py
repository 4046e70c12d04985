"""RFC 6022 (ietf-netconf-monitoring) for the emulated gear: ``/netconf-state`` in ``<get>``
(capabilities, datastores and their locks, schemas, sessions, statistics) and ``<get-schema>``
serving the text of every module the hello advertises.

Real OTN gear serves both, and controllers (TransportPCE, NSO) learn a device's models that way;
``dcilab device check`` does too.  Module texts come from folders of ``.yang`` files (the
project's ``yang/`` and ``emulator/yang/`` by default): ``NAME.yang`` or ``NAME@REVISION.yang``, whose first
``revision`` statement must be the advertised one.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from .errors import RpcError

NCM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
NCM_REVISION = "2010-10-04"
MONITORING_CAPABILITY = f"{NCM_NS}?module=ietf-netconf-monitoring&revision={NCM_REVISION}"
# the published modules (the project's yang/) and the emulator's own (its bench module)
DEFAULT_YANG_DIRS = (Path(__file__).resolve().parents[2] / "yang", Path(__file__).resolve().parents[1] / "yang")
_REVISION_RE = re.compile(r"^\s*revision\s+\"?(\d{4}-\d{2}-\d{2})\"?", re.MULTILINE)


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Schema:
    identifier: str
    version: str          # the revision, "" for a module advertised without one
    namespace: str


def schemas_of(capabilities: Iterable[str]) -> list[Schema]:
    """The YANG modules a hello advertises (``NAMESPACE?module=NAME&revision=DATE``)."""
    out = []
    for cap in capabilities:
        parts = urlsplit(cap)
        q = parse_qs(parts.query)
        if "module" in q:
            ns = cap.split("?", 1)[0]
            out.append(Schema(q["module"][0], q.get("revision", [""])[0], ns))
    return out


def yang_dirs(root: Path | str | None = None) -> list[Path]:
    """``root`` (default: DEFAULT_YANG_DIRS) and every folder under it (the published modules sit
    in one folder per source)."""
    out: list[Path] = []
    for base in [Path(root)] if root is not None else DEFAULT_YANG_DIRS:
        if base.is_dir():
            out += [base, *sorted(p for p in base.rglob("*") if p.is_dir())]
    return out


def module_text(dirs: list[Path], name: str, revision: str) -> str | None:
    """The text of module ``name`` at ``revision`` ("" = whatever is there), or None."""
    for d in dirs:
        for f in (d / f"{name}@{revision}.yang", d / f"{name}.yang") if revision else (d / f"{name}.yang",):
            if not f.is_file():
                continue
            text = f.read_text(encoding="utf-8")
            m = _REVISION_RE.search(text)
            if not revision or (m is not None and m.group(1) == revision):
                return text
    return None


@dataclass
class Counters:
    """RFC 6022 counters, of a session or of the whole server."""

    in_rpcs: int = 0
    in_bad_rpcs: int = 0
    out_rpc_errors: int = 0
    out_notifications: int = 0


@dataclass
class Statistics(Counters):
    start_time: str = field(default_factory=now)
    in_bad_hellos: int = 0
    in_sessions: int = 0
    dropped_sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _sub(parent: etree._Element, tag: str, text: object | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{NCM_NS}}}{tag}")
    if text is not None:
        el.text = str(text)
    return el


def _counters(parent: etree._Element, c: Counters) -> None:
    for tag, value in (("in-rpcs", c.in_rpcs), ("in-bad-rpcs", c.in_bad_rpcs), ("out-rpc-errors", c.out_rpc_errors),
                       ("out-notifications", c.out_notifications)):
        _sub(parent, tag, value)


@dataclass
class SessionInfo:
    session_id: int
    username: str
    source_host: str | None
    login_time: str
    counters: Counters


def netconf_state(capabilities: list[str], locks: dict[str, tuple[int, str]], sessions: list[SessionInfo],
                  stats: Statistics, datastores: tuple[str, ...] = ("running", "candidate")) -> etree._Element:
    """``<netconf-state>`` as ietf-netconf-monitoring defines it (``locks``: datastore -> (session,
    locked-time))."""
    root = etree.Element(f"{{{NCM_NS}}}netconf-state", nsmap={None: NCM_NS, "ncm": NCM_NS})
    caps = _sub(root, "capabilities")
    for c in capabilities:
        _sub(caps, "capability", c)
    dss = _sub(root, "datastores")
    for name in datastores:
        ds = _sub(dss, "datastore")
        _sub(ds, "name", name)
        if name in locks:
            gl = _sub(_sub(ds, "locks"), "global-lock")
            _sub(gl, "locked-by-session", locks[name][0])
            _sub(gl, "locked-time", locks[name][1])
    sch = _sub(root, "schemas")
    for s in schemas_of(capabilities):
        e = _sub(sch, "schema")
        _sub(e, "identifier", s.identifier)
        _sub(e, "version", s.version)
        _sub(e, "format", "ncm:yang")
        _sub(e, "namespace", s.namespace)
        _sub(e, "location", "NETCONF")
    ss = _sub(root, "sessions")
    for info in sessions:
        e = _sub(ss, "session")
        _sub(e, "session-id", info.session_id)
        _sub(e, "transport", "ncm:netconf-ssh")
        _sub(e, "username", info.username)
        if info.source_host:
            _sub(e, "source-host", info.source_host)
        _sub(e, "login-time", info.login_time)
        _counters(e, info.counters)
    st = _sub(root, "statistics")
    _sub(st, "netconf-start-time", stats.start_time)
    _sub(st, "in-bad-hellos", stats.in_bad_hellos)
    _sub(st, "in-sessions", stats.in_sessions)
    _sub(st, "dropped-sessions", stats.dropped_sessions)
    _counters(st, stats)
    return root


def get_schema(op: etree._Element, capabilities: list[str], dirs: list[Path]) -> etree._Element:
    """The reply's ``<data>`` holding the module text; rpc-errors as RFC 6022 3.1 says."""
    args: dict[str, str] = {}
    for c in op:
        if not isinstance(c.tag, str):
            continue
        q = etree.QName(c.tag)
        if q.namespace != NCM_NS or q.localname not in ("identifier", "version", "format"):
            raise RpcError("unknown-element", f"unexpected element <{q.localname}> in <get-schema>", type="protocol",
                           info=[("bad-element", q.localname)])
        args[q.localname] = (c.text or "").strip()
    if not args.get("identifier"):
        raise RpcError("missing-element", "<identifier> is required", type="protocol",
                       info=[("bad-element", "identifier")])
    fmt = args.get("format", "yang")
    if fmt.split(":")[-1] != "yang":
        raise RpcError("invalid-value", f"format {fmt!r} is not served (yang only)", type="application",
                       info=[("bad-element", "format")])
    known = [s for s in schemas_of(capabilities) if s.identifier == args["identifier"]
             and ("version" not in args or s.version == args["version"])]
    if not known:
        raise RpcError("invalid-value", f"no schema {args['identifier']!r}"
                       + (f" version {args['version']!r}" if "version" in args else ""), type="application",
                       info=[("bad-element", "identifier")])
    if len(known) > 1:
        raise RpcError("operation-failed", f"several versions of {args['identifier']!r}: give <version>",
                       type="application", info=[("bad-element", "identifier")])
    text = module_text(dirs, known[0].identifier, known[0].version)
    if text is None:
        raise RpcError("operation-failed", f"the text of {known[0].identifier} {known[0].version} is not on this "
                       "device", type="application")
    data = etree.Element(f"{{{NCM_NS}}}data", nsmap={None: NCM_NS})
    data.text = text
    return data

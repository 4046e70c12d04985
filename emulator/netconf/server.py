"""A NETCONF server over SSH (RFC 6241, RFC 6242, RFC 5277) on paramiko's server side.

    srv = NetconfServer("127.0.0.1", 8300, host_key_path="/tmp/hk", password_checker=lambda u, p: p == "x")
    srv.start(); ...; srv.notify(elem); srv.stop()

Personalities add RPCs with :meth:`NetconfServer.register_rpc` and follow configuration changes
with :meth:`NetconfServer.on_commit`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import logging
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable

import paramiko
from lxml import etree

from . import monitoring
from .datastore import Datastore, new_data, subtree_filter
from .errors import NC_NS, RpcError, RpcErrors, qn
from .framing import BASE_10, BASE_11, Framer, FramingError, build_hello, parse_hello

log = logging.getLogger(__name__)

NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
CAP = "urn:ietf:params:netconf:capability:"
DEFAULT_CAPABILITIES = [
    BASE_10,
    BASE_11,
    CAP + "writable-running:1.0",
    CAP + "candidate:1.0",
    CAP + "confirmed-commit:1.0",
    CAP + "confirmed-commit:1.1",
    CAP + "rollback-on-error:1.0",
    CAP + "validate:1.0",
    CAP + "validate:1.1",
    CAP + "notification:1.0",
    CAP + "interleave:1.0",
    monitoring.MONITORING_CAPABILITY,
]
_MSGID_RE = re.compile(rb"""<(?:\w+:)?rpc\s[^>]*?message-id\s*=\s*(["'])([^"'<>&]*)\1""")
HELLO_TIMEOUT_S = 60.0
"""How long a new session may take to send its hello."""
_PARSER_KW = {"resolve_entities": False, "no_network": True, "remove_blank_text": True, "huge_tree": False}

# handler(session, rpc_operation_element) -> None (ok) | element | list of elements (appended to the reply)
RpcHandler = Callable[["Session", etree._Element], object]


def _load_authorized_keys(src) -> set[tuple[str, str]]:
    """authorized_keys: a path to an OpenSSH authorized_keys file, or an iterable of PKey/lines."""
    if src is None:
        return set()
    if isinstance(src, (str, os.PathLike)):
        with open(src) as f:
            lines = f.read().splitlines()
    else:
        lines = list(src)
    out = set()
    for line in lines:
        if isinstance(line, paramiko.PKey):
            out.add((line.get_name(), line.get_base64()))
            continue
        parts = line.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        for i, p in enumerate(parts[:-1]):  # skip leading options
            if p.startswith(("ssh-", "ecdsa-", "sk-")):
                out.add((p, parts[i + 1]))
                break
    return out


class _SSHServer(paramiko.ServerInterface):
    def __init__(self, server: NetconfServer):
        self.server = server
        self.username: str | None = None
        self.subsystem = threading.Event()

    def get_allowed_auths(self, username):
        kinds = []
        if self.server._authorized:
            kinds.append("publickey")
        if self.server.password_checker:
            kinds.append("password")
        return ",".join(kinds) or "none"

    def check_auth_password(self, username, password):
        chk = self.server.password_checker
        if chk is not None:
            try:
                if chk(username, password):
                    self.username = username
                    return paramiko.AUTH_SUCCESSFUL
            except Exception:
                log.exception("password checker failed")
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        if (key.get_name(), key.get_base64()) in self.server._authorized:
            self.username = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel, name):
        if name == "netconf" and not self.subsystem.is_set():
            self.subsystem.set()
            return True
        return False


class Session:
    """One NETCONF session (one SSH channel running the netconf subsystem)."""

    def __init__(self, server: NetconfServer, sid: int, transport: paramiko.Transport, channel, username):
        self.server = server
        self.id = sid
        self.transport = transport
        self.channel = channel
        self.username = username
        self.framer = Framer(channel, max_message=server.max_message)
        self.subscribed = False
        self.subscription_filter = None
        self.closed = False
        self.closed_by_rpc = False   # <close-session> or <kill-session>: not a dropped session (RFC 6022)
        self._wlock = threading.Lock()
        self.client_capabilities: list[str] = []
        self.counters = monitoring.Counters()
        self.login_time = monitoring.now()
        try:
            self.source_host: str | None = str(transport.getpeername()[0])
        except (OSError, TypeError, IndexError, AttributeError):   # no transport (in-process tests)
            self.source_host = None

    def count(self, **inc: int) -> None:
        """Add to this session's RFC 6022 counters and the server's."""
        st = self.server.stats
        with st.lock:
            for k, v in inc.items():
                setattr(self.counters, k, getattr(self.counters, k) + v)
                setattr(st, k, getattr(st, k) + v)

    def send(self, data: bytes) -> None:
        with self._wlock:
            self.framer.write_message(data)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.channel.close()
        with contextlib.suppress(Exception):
            self.transport.close()

    # --- the session loop ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.channel.settimeout(min(HELLO_TIMEOUT_S, self.server.idle_timeout_s))
            self.send(build_hello(self.server.capabilities, self.id))
            msg = self.framer.read_message()
            if msg is None:
                return
            try:
                caps, sid = parse_hello(msg)
            except (etree.XMLSyntaxError, ValueError) as e:
                log.info("session %s: bad hello (%s); closing", self.id, e)
                self.server.stats_add(in_bad_hellos=1)
                return
            if sid is not None or not ({BASE_10, BASE_11} & set(caps)):
                log.info("session %s: unacceptable hello; closing", self.id)
                self.server.stats_add(in_bad_hellos=1)
                return
            self.server.stats_add(in_sessions=1)
            self.client_capabilities = caps
            if BASE_11 in caps and BASE_11 in self.server.capabilities:
                self.framer.use_chunked()
            self.channel.settimeout(self.server.idle_timeout_s)
            while not self.closed:
                try:
                    msg = self.framer.read_message()
                except TimeoutError:
                    if self.subscribed:  # a notification listener is quiet by design
                        continue
                    log.info("session %s: idle for %.0f s; closing", self.id, self.server.idle_timeout_s)
                    break
                if msg is None:
                    break
                reply = self.handle(msg)
                if reply is not None:
                    self.send(reply)
                if self.closed:
                    break
        except FramingError as e:
            log.info("session %s: framing error (%s); closing", self.id, e)
        except (OSError, EOFError, paramiko.SSHException) as e:
            log.debug("session %s: transport ended (%s)", self.id, e)
        finally:
            self.close()
            self.server._session_ended(self)

    def handle(self, msg: bytes) -> bytes | None:
        try:
            rpc = etree.fromstring(msg.strip(), etree.XMLParser(**_PARSER_KW))
        except etree.XMLSyntaxError as e:
            # echo the message-id if it can be read: ncclient's session thread dies on a reply without one
            m = _MSGID_RE.search(msg[:4096])
            try:
                fake = etree.Element(qn("rpc"), {"message-id": m.group(2).decode("utf-8", "replace")}) if m else None
            except ValueError:  # not XML text (a control character): the reply goes without it
                fake = None
            return self._reply(fake, [RpcError("malformed-message", f"malformed XML: {e}", type="rpc")])
        if rpc.getroottree().docinfo.doctype or next(rpc.iter(etree.Entity), None) is not None:
            # A DTD lets an undeclared entity reference through the parser unresolved; stored in
            # running, it would make every later get-config unparseable and the saved datastore
            # unloadable. NETCONF messages carry neither (RFC 6241 3: XML without a DTD).
            fake = etree.Element(qn("rpc"), {"message-id": rpc.get("message-id")}) if rpc.get("message-id") else None
            return self._reply(fake, [RpcError("malformed-message", "a NETCONF message carries no DTD or entity "
                                                                    "reference", type="rpc")])
        if rpc.tag != qn("rpc"):
            return self._reply(None, [RpcError("malformed-message", f"expected <rpc>, got <{rpc.tag}>", type="rpc")])
        if rpc.get("message-id") is None:
            return self._reply(
                rpc,
                [
                    RpcError(
                        "missing-attribute",
                        "<rpc> has no message-id",
                        type="rpc",
                        info=[("bad-attribute", "message-id"), ("bad-element", "rpc")],
                    )
                ],
            )
        ops = [c for c in rpc if isinstance(c.tag, str)]
        if len(ops) != 1:
            return self._reply(
                rpc, [RpcError("malformed-message", "an <rpc> must hold exactly one operation", type="rpc")]
            )
        op = ops[0]
        self.count(in_rpcs=1)
        try:
            result = self.server._dispatch(self, op)
        except RpcError as e:
            return self._reply(rpc, [e])
        except RpcErrors as e:
            return self._reply(rpc, e.errors)
        except Exception as e:
            log.exception("session %s: %s failed", self.id, op.tag)
            return self._reply(rpc, [RpcError("operation-failed", f"internal error: {e}")])
        return self._reply(rpc, [], result)

    def _reply(self, rpc, errors, result=None) -> bytes:
        if errors:
            bad = errors[0].type in ("rpc",) or rpc is None or rpc.get("message-id") is None
            self.count(out_rpc_errors=1, **({"in_bad_rpcs": 1} if bad else {}))
        reply = etree.Element(qn("rpc-reply"), nsmap={None: NC_NS})
        if rpc is not None:
            for k, v in rpc.attrib.items():
                reply.set(k, v)
        for e in errors:
            reply.append(e.to_element())
        if not errors:
            if result is None:
                etree.SubElement(reply, qn("ok"))
            elif isinstance(result, (list, tuple)):
                for r in result:
                    reply.append(r)
            else:
                reply.append(result)
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(reply)


class NetconfServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 830,
        host_key_path: str | None = None,
        *,
        authorized_keys=None,
        password_checker: Callable[[str, str], bool] | None = None,
        datastore: Datastore | None = None,
        schema: dict | None = None,
        initial_config=None,
        capabilities: Iterable[str] = (),
        state_provider=None,
        persist_path: str | None = None,
        max_sessions: int = 32,
        idle_timeout_s: float = 3600.0,
        max_message: int = 64 * 1024 * 1024,
        yang_dir: str | os.PathLike[str] | None = None,
    ):
        self.host = host
        self.port = port
        self.host_key = self._host_key(host_key_path)
        self._authorized = _load_authorized_keys(authorized_keys)
        self.password_checker = password_checker
        self.datastore = datastore or Datastore(initial_config, schema=schema, persist_path=persist_path)
        if state_provider is not None:
            self.datastore.state_provider = state_provider
        self.capabilities = DEFAULT_CAPABILITIES + [c for c in capabilities if c not in DEFAULT_CAPABILITIES]
        self._rpcs: dict[str, RpcHandler] = {}
        self._sessions: dict[int, Session] = {}
        self._transports: set[paramiko.Transport] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.max_sessions = max_sessions
        self._connections = 0
        """SSH connections at once (a thread each); more are closed at accept, as a device's
        session limit does."""
        self.idle_timeout_s = idle_timeout_s
        """A session that sends nothing for this long is closed (unless it listens to notifications)."""
        self.max_message = max_message
        """Bytes one message may hold; a session sending more is closed (what it buffers, at most)."""
        self.yang_dirs = monitoring.yang_dirs(yang_dir)
        """Where ``<get-schema>`` finds module texts (default: the project's yang/)."""
        self.stats = monitoring.Statistics()
        self._lock_times: dict[str, str] = {}

    def stats_add(self, **inc: int) -> None:
        with self.stats.lock:
            for k, v in inc.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def netconf_state(self) -> etree._Element:
        """``/netconf-state`` now (RFC 6022)."""
        with self.datastore.lock:
            locks = {name: (sid, self._lock_times.get(name, monitoring.now()))
                     for name, sid in self.datastore.locks.items()}
        infos = [monitoring.SessionInfo(s.id, s.username or "", s.source_host, s.login_time, s.counters)
                 for s in sorted(self.sessions.values(), key=lambda s: s.id)]
        with self.stats.lock:
            return monitoring.netconf_state(list(self.capabilities), locks, infos, self.stats)

    @staticmethod
    def _host_key(path):
        if path and os.path.exists(path):
            return paramiko.PKey.from_path(path)
        # ECDSA, not RSA: a known_hosts line "ssh-rsa ..." makes ncclient prefer the SHA-1 "ssh-rsa"
        # algorithm only, which paramiko >= 4 servers no longer offer
        key = paramiko.ECDSAKey.generate()
        if path:
            key.write_private_key_file(path)
        return key

    # --- extension hooks -----------------------------------------------------------------------
    def register_rpc(self, qname: str, handler: RpcHandler) -> None:
        """``qname`` is a Clark name ``{namespace}local``."""
        self._rpcs[qname] = handler

    def on_commit(self, callback: Callable[[etree._Element, etree._Element], None]) -> None:
        """``callback(old_running, new_running)``, both ``<data>`` copies, after every change of running."""
        self.datastore.commit_callbacks.append(callback)

    @property
    def sessions(self) -> dict[int, Session]:
        with self._lock:
            return dict(self._sessions)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> NetconfServer:
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        self.port = s.getsockname()[1]
        self._sock = s
        self._stop.clear()
        t = threading.Thread(target=self._accept_loop, name=f"netconf-accept-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            sessions = list(self._sessions.values())
            transports = list(self._transports)
        for s in sessions:
            s.close()
        for t in transports:
            with contextlib.suppress(Exception):
                t.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        self.datastore.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._sock], [], [], 0.2)
                if not r:
                    continue
                conn, addr = self._sock.accept()
            except (OSError, ValueError):
                break
            with self._lock:
                full = self._connections >= self.max_sessions
                if not full:
                    self._connections += 1
            if full:
                log.info("connection from %s refused: %d sessions already", addr, self.max_sessions)
                conn.close()
                continue
            t = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True, name=f"netconf-conn-{addr}")
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            transport = paramiko.Transport(conn)
        except Exception:  # e.g. the peer already gone: nothing to serve
            conn.close()
            with self._lock:
                self._connections -= 1
            return
        with self._lock:
            self._transports.add(transport)
        try:
            transport.add_server_key(self.host_key)
            iface = _SSHServer(self)
            try:
                transport.start_server(server=iface)
            except (paramiko.SSHException, EOFError, OSError):
                return
            chan = transport.accept(30)
            if chan is None or self._stop.is_set():
                return
            if not iface.subsystem.wait(30) or self._stop.is_set():
                chan.close()
                return
            with self._lock:
                if self._stop.is_set():
                    return
                sid = next(self._ids)
                session = Session(self, sid, transport, chan, iface.username)
                self._sessions[sid] = session
            session.run()
        finally:
            transport.close()
            with self._lock:
                self._transports.discard(transport)
                self._connections -= 1

    def _session_ended(self, session: Session) -> None:
        with self._lock:
            if self._sessions.pop(session.id, None) is None:
                return
        if not session.closed_by_rpc:
            self.stats_add(dropped_sessions=1)
        self.datastore.session_ended(session.id)

    # --- notifications (RFC 5277) -----------------------------------------------------------
    def notify(self, content: etree._Element, event_time: _dt.datetime | None = None) -> int:
        """Send ``<notification><eventTime/>content</notification>`` to every subscribed session.
        Returns the number of sessions it went to."""
        import copy

        t = (event_time or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC)
        n = 0
        for s in self.sessions.values():
            if not s.subscribed or s.closed:
                continue
            if s.subscription_filter is not None:
                holder = new_data()
                holder.append(copy.deepcopy(content))
                if not len(subtree_filter(holder, s.subscription_filter)):
                    continue
            notif = etree.Element(qn("notification", NOTIF_NS), nsmap={None: NOTIF_NS})
            etree.SubElement(notif, qn("eventTime", NOTIF_NS)).text = t.isoformat(timespec="microseconds").replace(
                "+00:00", "Z"
            )
            notif.append(copy.deepcopy(content))
            try:
                s.send(b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(notif))
                s.count(out_notifications=1)
                n += 1
            except Exception as e:  # noqa: BLE001 - one dead session must not stop the others
                log.debug("notification to session %s failed: %s", s.id, e)
        return n

    # --- RPC dispatch ------------------------------------------------------------------------------
    def _dispatch(self, session: Session, op: etree._Element):
        handler = self._rpcs.get(op.tag)
        if handler is not None:
            return handler(session, op)
        qname = etree.QName(op.tag)
        if qname.namespace == NC_NS:
            fn = getattr(self, "_rpc_" + qname.localname.replace("-", "_"), None)
            if fn is not None:
                return fn(session, op)
        if op.tag == qn("create-subscription", NOTIF_NS):
            return self._rpc_create_subscription(session, op)
        if op.tag == f"{{{monitoring.NCM_NS}}}get-schema":
            return monitoring.get_schema(op, list(self.capabilities), self.yang_dirs)
        raise RpcError(
            "operation-not-supported",
            f"operation <{qname.localname}> is not supported",
            type="protocol",
            info=[("bad-element", qname.localname)],
        )

    @staticmethod
    def _params(op, allowed: dict[str, bool]) -> dict[str, etree._Element]:
        """Children of ``op`` by local name; unknown ones give unknown-element, missing required ones
        missing-element (``allowed`` maps name -> required)."""
        out = {}
        for c in op:
            if not isinstance(c.tag, str):
                continue
            q = etree.QName(c.tag)
            if q.localname not in allowed or q.namespace not in (NC_NS, NOTIF_NS, None):
                raise RpcError(
                    "unknown-element",
                    f"unexpected element <{q.localname}> in <{etree.QName(op).localname}>",
                    type="protocol",
                    info=[("bad-element", q.localname)],
                )
            out[q.localname] = c
        for name, required in allowed.items():
            if required and name not in out:
                raise RpcError(
                    "missing-element", f"<{name}> is required", type="protocol", info=[("bad-element", name)]
                )
        return out

    @staticmethod
    def _datastore_name(el) -> str:
        kids = [c for c in el if isinstance(c.tag, str)]
        if len(kids) != 1:
            raise RpcError(
                "missing-element",
                f"<{etree.QName(el).localname}> needs one datastore",
                type="protocol",
                info=[("bad-element", etree.QName(el).localname)],
            )
        name = etree.QName(kids[0]).localname
        if name not in ("running", "candidate"):
            raise RpcError(
                "invalid-value", f"datastore <{name}> is not supported", type="protocol", info=[("bad-element", name)]
            )
        return name

    def _rpc_get(self, session, op):
        p = self._params(op, {"filter": False, "with-defaults": False})
        flt = p.get("filter")
        data = self.datastore.get(flt)
        if flt is None or monitoring.NCM_NS.encode() in etree.tostring(flt):   # a PM poll skips building it
            holder = new_data()
            holder.append(self.netconf_state())
            for el in subtree_filter(holder, flt):
                data.append(el)
        return data

    def _rpc_get_config(self, session, op):
        p = self._params(op, {"source": True, "filter": False, "with-defaults": False})
        return self.datastore.get_config(self._datastore_name(p["source"]), p.get("filter"))

    def _rpc_edit_config(self, session, op):
        p = self._params(
            op,
            {
                "target": True,
                "default-operation": False,
                "test-option": False,
                "error-option": False,
                "config": False,
                "url": False,
            },
        )
        if "url" in p:
            raise RpcError(
                "operation-not-supported", ":url is not supported", type="protocol", info=[("bad-element", "url")]
            )
        if "config" not in p:
            raise RpcError("missing-element", "<config> is required", type="protocol", info=[("bad-element", "config")])
        def txt(name: str, d: str) -> str:
            return (p[name].text or "").strip() if name in p else d

        self.datastore.edit_config(
            session.id,
            self._datastore_name(p["target"]),
            p["config"],
            default_operation=txt("default-operation", "merge"),
            test_option=txt("test-option", "test-then-set"),
            error_option=txt("error-option", "stop-on-error"),
        )

    def _rpc_validate(self, session, op):
        p = self._params(op, {"source": True})
        src = p["source"]
        kids = [c for c in src if isinstance(c.tag, str)]
        if kids and etree.QName(kids[0]).localname == "config":
            return  # well-formed inline config: nothing more to check without YANG
        self._datastore_name(src)

    def _rpc_lock(self, session, op):
        p = self._params(op, {"target": True})
        name = self._datastore_name(p["target"])
        self.datastore.do_lock(session.id, name)
        self._lock_times[name] = monitoring.now()

    def _rpc_unlock(self, session, op):
        p = self._params(op, {"target": True})
        self.datastore.do_unlock(session.id, self._datastore_name(p["target"]))

    def _rpc_commit(self, session, op):
        p = self._params(op, {"confirmed": False, "confirm-timeout": False, "persist": False, "persist-id": False})
        timeout = 600
        if "confirm-timeout" in p:
            try:
                timeout = int((p["confirm-timeout"].text or "").strip())
                if timeout < 1 or timeout > 4294967295:
                    raise ValueError
            except ValueError:
                raise RpcError(
                    "invalid-value",
                    "confirm-timeout must be a positive integer",
                    type="protocol",
                    info=[("bad-element", "confirm-timeout")],
                ) from None
        confirmed = "confirmed" in p
        persist = (p["persist"].text or "").strip() if "persist" in p else None
        persist_id = (p["persist-id"].text or "").strip() if "persist-id" in p else None
        if not confirmed and ("confirm-timeout" in p or "persist" in p):
            raise RpcError(
                "invalid-value",
                "confirm-timeout/persist need <confirmed/>",
                type="protocol",
                info=[("bad-element", "confirmed")],
            )
        self.datastore.commit(session.id, confirmed, timeout, persist, persist_id)

    def _rpc_cancel_commit(self, session, op):
        p = self._params(op, {"persist-id": False})
        pid = (p["persist-id"].text or "").strip() if "persist-id" in p else None
        self.datastore.cancel_commit(session.id, pid)

    def _rpc_discard_changes(self, session, op):
        self._params(op, {})
        self.datastore.discard_changes(session.id)

    def _rpc_close_session(self, session, op):
        self._params(op, {})
        # reply first, then close: the session loop stops after sending the reply
        session.closed = session.closed_by_rpc = True

    def _rpc_kill_session(self, session, op):
        p = self._params(op, {"session-id": True})
        txt = (p["session-id"].text or "").strip()
        try:
            sid = int(txt)
        except ValueError:
            raise RpcError(
                "invalid-value", f"bad session-id {txt!r}", type="protocol", info=[("bad-element", "session-id")]
            ) from None
        if sid == session.id:
            raise RpcError(
                "invalid-value", "a session cannot kill itself", type="protocol", info=[("bad-element", "session-id")]
            )
        victim = self.sessions.get(sid)
        if victim is None:
            raise RpcError("invalid-value", f"no session {sid}", type="protocol", info=[("bad-element", "session-id")])
        victim.closed_by_rpc = True
        victim.close()
        self._session_ended(victim)

    def _rpc_create_subscription(self, session, op):
        p = self._params(op, {"stream": False, "filter": False, "startTime": False, "stopTime": False})
        stream = (p["stream"].text or "").strip() if "stream" in p else "NETCONF"
        if stream != "NETCONF":
            raise RpcError("invalid-value", f"no stream {stream!r}", type="protocol", info=[("bad-element", "stream")])
        if "startTime" in p or "stopTime" in p:
            raise RpcError(
                "operation-failed",
                "replay is not supported",
                type="protocol",
                info=[("bad-element", "startTime" if "startTime" in p else "stopTime")],
            )
        if session.subscribed:
            raise RpcError("in-use", "a subscription is already active on this session", type="protocol")
        session.subscription_filter = p.get("filter")
        session.subscribed = True

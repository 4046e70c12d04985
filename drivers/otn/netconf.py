"""NETCONF plumbing shared by the OTN terminals and the ROADM: connect with a pinned host key,
typed errors, candidate + confirmed-commit edits with a read-back check, RPCs, notifications."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import ncclient.transport.session
import paramiko
from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError, TimeoutExpiredError
from ncclient.transport import AuthenticationError, SessionCloseError, SSHError, SSHSession, TransportError

from .. import SshTarget, map_ssh_error, pinned_host_key
from ..errors import AuthFailed, DeviceUnreachable, DriverError, EditRejected, HostKeyRejected, Timeout, Unsupported
from ..facts import modules_from_capabilities

# ncclient's session thread polls its send queue only when select() on the socket returns, i.e.
# every TICK (0.1 s) on an idle session: each RPC then costs up to 100 ms before a byte leaves.
# A protection switch must be requested and read back within the 50 ms the trial measures, so we
# poll every 2 ms (cost: a few hundred idle select() calls per second per session).
ncclient.transport.session.TICK = 0.002

log = logging.getLogger(__name__)

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
NCM = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
CAP_CANDIDATE = "urn:ietf:params:netconf:capability:candidate:1.0"
CAP_CONFIRMED = ("urn:ietf:params:netconf:capability:confirmed-commit:1.0",
                 "urn:ietf:params:netconf:capability:confirmed-commit:1.1")
CAP_NOTIFICATION = "urn:ietf:params:netconf:capability:notification:1.0"


@dataclass(frozen=True)
class EditResult:
    """How an edit reached the device: ``datastore`` 'candidate' or 'running' ('rpc' for an
    action that is not a config edit); ``rollback_guard`` true when a confirmed commit was armed,
    so the device itself would have undone the edit if this controller had died before confirming;
    ``confirmed`` true once the confirming commit was sent (false: guard still pending)."""

    datastore: str
    rollback_guard: bool
    confirmed: bool
    elapsed_s: float
    note: str = ""


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def first(root: etree._Element | None, *names: str) -> etree._Element | None:
    """Descend by local names (namespace-agnostic: models move between namespaces across releases)."""
    el = root
    for n in names:
        if el is None:
            return None
        el = next((c for c in el if isinstance(c.tag, str) and local(c) == n), None)
    return el


def text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def children(el: etree._Element | None, name: str) -> list[etree._Element]:
    return [c for c in (el if el is not None else []) if isinstance(c.tag, str) and local(c) == name]


def rpc_error_text(exc: RPCError) -> tuple[str, str | None]:
    """(message, tag) of an ncclient RPCError, every error of the reply joined."""
    errs = getattr(exc, "errors", None) or [exc]
    msgs = [getattr(e, "message", None) or str(e) for e in errs]
    return "; ".join(m.strip() for m in msgs if m), getattr(exc, "tag", None)


def _load_key(target: SshTarget) -> paramiko.PKey:
    path = str(target.key_path)
    phrase = None if target.key_passphrase is None else target.key_passphrase.encode()
    try:
        try:
            return paramiko.PKey.from_path(path, phrase)
        except TypeError:   # cryptography: a passphrase for a key without one, or none for one with
            if phrase is None:
                raise paramiko.PasswordRequiredException() from None
            return paramiko.PKey.from_path(path, None)   # OpenSSH ignores a needless passphrase; so do we
    except paramiko.PasswordRequiredException:
        raise AuthFailed(f"key {path} is encrypted and no passphrase was given", target.label) from None
    except OSError as exc:
        raise AuthFailed(f"cannot read key {path}: {exc.strerror or exc}", target.label) from None
    except (paramiko.SSHException, ValueError) as exc:
        raise AuthFailed(f"cannot load key {path} (wrong passphrase?): {exc}", target.label) from None


class _KeyThenPassword(SSHSession):
    """ncclient takes the login password for the key's passphrase as well: a key without one then
    fails to load and is never offered, and a device that accepts only keys refuses the login.
    This session offers the key (unlocked with its own passphrase) first, then the password, as
    OpenSSH's client does."""

    def __init__(self, device_handler, pkey: paramiko.PKey | None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(device_handler)
        self._pkey = pkey

    def _auth(self, username, password, key_filenames, allow_agent, look_for_keys):  # type: ignore[no-untyped-def]
        last: Exception | None = None
        if self._pkey is not None:
            try:
                self._transport.auth_publickey(username, self._pkey)
                return
            except paramiko.AuthenticationException as exc:
                last = exc
        if password is not None:
            try:
                self._transport.auth_password(username, password)
                return
            except paramiko.AuthenticationException as exc:
                last = exc
        raise AuthenticationError(repr(last) if last else "no key and no password to log in with")


class NetconfDevice:
    """One NETCONF session to one device; every call has a timeout and raises drivers.errors."""

    def __init__(self, target: SshTarget, rpc_timeout_s: float = 30.0) -> None:
        self.target = target
        self.name = target.label
        self.rpc_timeout_s = rpc_timeout_s
        key = pinned_host_key(target)
        session = None
        try:
            pkey = _load_key(target) if target.key_path else None
            handler = manager.make_device_handler({}, [])
            session = _KeyThenPassword(handler, pkey)
            session.connect(
                host=target.host, port=target.port, username=target.username, password=target.password,
                key_filename=None, hostkey_verify=True, hostkey_b64=key.get_base64(),
                unknown_host_cb=lambda _h, _f: False, allow_agent=False, look_for_keys=False,
                timeout=target.timeout_s)
            self.m = manager.Manager(session, handler, timeout=rpc_timeout_s)
        except AuthenticationError as exc:
            raise AuthFailed(f"NETCONF login as {target.username!r} refused: {exc}", self.name) from None
        except SSHError as exc:
            if "Unknown host key" in str(exc) or "nknown host" in str(exc):
                raise HostKeyRejected(f"host key does not match the pinned key: {exc}", self.name) from None
            raise DeviceUnreachable(f"NETCONF over SSH to {target.host}:{target.port} failed: {exc}",
                                    self.name) from None
        except Exception as exc:  # noqa: BLE001 - paramiko/socket errors, mapped below
            if session is not None and session.transport:
                session.close()
            raise map_ssh_error(exc, target) from None
        self.caps = set(self.m.server_capabilities)
        self._subscribed = False

    # --- basics ------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.m.connected:
                self.m.close_session()
        except Exception:  # noqa: BLE001 - closing a dead session is not an error
            pass

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, *caps: str) -> bool:
        return any(c in self.caps or any(s.startswith(c) for s in self.caps) for c in caps)

    def modules(self) -> dict[str, str]:
        """{YANG module: revision} as the device's hello advertised them."""
        return modules_from_capabilities(self.caps)

    def require_modules(self, driver: str, needed: tuple[str, ...]) -> None:
        """Refuse, and close, a device whose hello lacks a module ``driver`` reads: driven with the
        wrong models a device fails at connect with a reason, not later with a misread value."""
        have = self.modules()
        missing = [m for m in needed if m not in have]
        if missing:
            self.close()
            served = sorted(m for m in have if not m.startswith(("ietf-", "iana-")))
            raise Unsupported("YANG module", f"{', '.join(missing)} (the {driver} driver reads it: is the "
                              "device's driver: in the inventory right?)", served, self.name)

    @property
    def confirmed_commit(self) -> bool:
        return self.has(CAP_CANDIDATE) and self.has(*CAP_CONFIRMED)

    def _call(self, what: str, fn: Callable, *a, **kw):  # type: ignore[no-untyped-def]
        try:
            return fn(*a, **kw)
        except RPCError as exc:
            msg, tag = rpc_error_text(exc)
            raise EditRejected(msg, self.name, tag) from None
        except TimeoutExpiredError:
            raise Timeout(f"{what}: no reply within {self.rpc_timeout_s:g} s", self.name) from None
        except (SessionCloseError, TransportError) as exc:
            raise DeviceUnreachable(f"{what}: NETCONF session lost: {exc}", self.name) from None

    def get(self, subtree: str | None = None) -> etree._Element:
        """<get> (config + state), optionally with a subtree filter; returns the <data> element."""
        flt = f'<filter xmlns="{NC}" type="subtree">{subtree}</filter>' if subtree else None
        reply = self._call("get", self.m.get, filter=flt)
        return etree.fromstring(reply.data_xml.encode())

    def schemas(self) -> list[dict[str, str]] | None:
        """The device's ``/netconf-state/schemas`` (RFC 6022): identifier, version, format,
        namespace, location of each; None when it does not serve ietf-netconf-monitoring."""
        if "ietf-netconf-monitoring" not in self.modules():
            return None
        data = self.get(f'<netconf-state xmlns="{NCM}"><schemas/></netconf-state>')
        return [{local(c): text(c) for c in s if isinstance(c.tag, str)}
                for s in data.iter(f"{{{NCM}}}schema")]

    def get_schema(self, identifier: str, version: str | None = None) -> str:
        """A module's text by ``<get-schema>`` (RFC 6022); Unsupported when the device serves none."""
        if "ietf-netconf-monitoring" not in self.modules():
            raise Unsupported("get-schema", identifier, [], self.name)
        reply = self._call("get-schema", self.m.get_schema, identifier, version=version or None)
        return reply.data if isinstance(reply.data, str) else str(reply.data)

    def get_config(self, source: str = "running", subtree: str | None = None) -> etree._Element:
        flt = f'<filter xmlns="{NC}" type="subtree">{subtree}</filter>' if subtree else None
        reply = self._call("get-config", self.m.get_config, source=source, filter=flt)
        return etree.fromstring(reply.data_xml.encode())

    def rpc(self, xml: str) -> etree._Element:
        """A custom RPC; returns the <rpc-reply> element; an rpc-error is EditRejected."""
        reply = self._call("rpc", self.m.dispatch, etree.fromstring(xml))
        return etree.fromstring(reply.xml.encode()) if reply.xml else etree.Element("ok")

    # --- edits ---------------------------------------------------------------------------------
    def edit(self, config: str, verify: Callable[[], str | None] | None = None,
             confirm_timeout_s: int = 30, confirm: bool = True) -> EditResult:
        """Apply ``<config>`` through candidate + confirmed commit when the device offers it, else
        to running.  ``verify()`` reads the device back and returns a problem (or None); with a
        confirmed commit a failed check cancels the commit, so the device rolls back.  With
        ``confirm=False`` the guard stays armed: the device undoes the edit after
        ``confirm_timeout_s`` or when this session dies, unless :meth:`confirm` is called."""
        t0 = time.monotonic()
        if not self.confirmed_commit:
            self._call("edit-config", self.m.edit_config, target="running", config=config)
            problem = verify() if verify else None
            if problem:
                raise EditRejected(f"accepted but not in effect: {problem} (edited running: no rollback guard)",
                                   self.name)
            return EditResult("running", False, True, time.monotonic() - t0,
                              "device has no :candidate + :confirmed-commit; undo is the caller's journal")
        locked = False
        try:
            self._call("lock", self.m.lock, target="candidate")
            locked = True
            self._call("edit-config", self.m.edit_config, target="candidate", config=config)
            self._call("commit", self.m.commit, confirmed=True, timeout=str(int(confirm_timeout_s)))
            problem = verify() if verify else None
            if problem:
                self._call("cancel-commit", self.m.cancel_commit)
                raise EditRejected(f"committed but not in effect: {problem}; commit cancelled (rolled back)",
                                   self.name)
            if confirm:
                self._call("commit", self.m.commit)
        except DriverError:
            if locked:
                try:
                    self.m.discard_changes()
                except Exception:  # noqa: BLE001
                    pass
            raise
        finally:
            if locked:
                try:
                    self.m.unlock(target="candidate")
                except Exception:  # noqa: BLE001 - session may be gone; the lock dies with it
                    pass
        return EditResult("candidate", True, confirm, time.monotonic() - t0)

    def confirm(self) -> None:
        """The confirming commit for an edit made with ``confirm=False``."""
        self._call("commit", self.m.commit)

    def cancel(self) -> None:
        """Roll back a pending confirmed commit now (cancel-commit)."""
        self._call("cancel-commit", self.m.cancel_commit)

    # --- notifications -----------------------------------------------------------------------------
    def subscribe(self) -> None:
        """create-subscription once per session; notifications queue up from here on."""
        if not self._subscribed:
            if not self.has(CAP_NOTIFICATION):
                raise EditRejected("device does not offer :notification", self.name)
            self._call("create-subscription", self.m.create_subscription)
            self._subscribed = True

    def next_notification(self, timeout: float) -> etree._Element | None:
        """The next notification's content element, or None after ``timeout`` seconds."""
        self.subscribe()
        try:
            n = self.m.take_notification(block=True, timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if n is None:
            return None
        root = etree.fromstring(n.notification_xml.encode())
        return next((c for c in root if isinstance(c.tag, str) and local(c) != "eventTime"), root)

"""The gateway's SSH server: paramiko, one thread per connection, an interactive shell in the
gateway's dialect.

Sessions ask for a pty and a shell (what netmiko does) or ``exec`` a single command.  Input is
echoed and line-edited like a terminal (backspace, Ctrl+C drops the line, Ctrl+Z returns to the
dialect's start view; :mod:`~emulator.gateway.terminal`); every line goes to a
:class:`~emulator.gateway.session.Session` of the gateway's dialect, which also has the words
(login banner, "all busy", idle timeout) this server prints.

A hostile or careless client gets what VRP gives it: at most :data:`MAX_VTY` shells and execs at
once (one more is told that all of them are used), a line of at most the dialect's ``max_line``
characters (VRP: 510), a silent shell closed after the VTY idle timeout, a connection that never
logs in closed after the SSH server's login timeout; connections beyond twice the VTYs are closed
at accept.
"""

from __future__ import annotations

import hmac
import socket
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import paramiko

from .device import Gateway
from .terminal import CANCEL, ECHO, SUSPEND, LineEditor

PasswordCheck = Callable[[str, str], bool]


def load_authorized_keys(path: str | Path) -> list[paramiko.PKey]:
    keys: list[paramiko.PKey] = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        # Options before the key type (from="...", no-pty) are not supported; skip to the type.
        while parts and not (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
            parts.pop(0)
        if len(parts) < 2:
            continue
        try:
            keys.append(paramiko.PKey.from_type_string(parts[0], _b64(parts[1])))
        except Exception:  # noqa: BLE001 - an unknown key type is skipped, not fatal
            continue
    return keys


def _b64(s: str) -> bytes:
    import base64
    return base64.b64decode(s)


def load_or_create_host_key(path: str | Path) -> paramiko.PKey:
    p = Path(path)
    if not p.exists():
        key = paramiko.RSAKey.generate(2048)
        p.parent.mkdir(parents=True, exist_ok=True)
        key.write_private_key_file(str(p))
        p.chmod(0o600)
        return key
    return paramiko.PKey.from_path(p)


def password_checker(username: str, password: str) -> PasswordCheck:
    def check(user: str, pw: str) -> bool:
        return hmac.compare_digest(user.encode(), username.encode()) and \
            hmac.compare_digest(pw.encode(), password.encode())
    return check


MAX_VTY = 10
"""VTY user interfaces: a shell or an exec holds one while it runs; one more is refused (with the
dialect's ``busy_text``, the text clients match on)."""
LOGIN_TIMEOUT_S = 60.0
"""A connection must log in and ask for a shell or exec within this (VRP's ``ssh server timeout``
default); one that never does would hold a thread forever."""
IDLE_TIMEOUT_S = 600.0
"""VRP's ``idle-timeout`` default on ``user-interface vty``: a silent shell is closed, and so is a
connection left with no session open."""


class _Handler(paramiko.ServerInterface):
    def __init__(self, server: GatewayServer) -> None:
        self.srv = server
        self.username = ""
        self._lock = threading.Lock()
        # Keyed by the channel object: paramiko reuses the ids of closed channels.
        self._requests: weakref.WeakKeyDictionary[paramiko.Channel, tuple[threading.Event, list[str | None]]] = \
            weakref.WeakKeyDictionary()

    def request(self, chan: paramiko.Channel) -> tuple[threading.Event, list[str | None]]:
        """(event set once a shell or exec was asked for, [command or None for a shell]) of a channel."""
        with self._lock:
            return self._requests.setdefault(chan, (threading.Event(), [None]))

    def get_allowed_auths(self, username: str) -> str:
        kinds = []
        if self.srv.check_password:
            kinds.append("password")
        if self.srv.authorized_keys:
            kinds.append("publickey")
        return ",".join(kinds) or "none"

    def check_auth_password(self, username: str, password: str) -> int:
        if self.srv.check_password and self.srv.check_password(username, password):
            self.username = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.srv.key_user not in (None, username):
            return paramiko.AUTH_FAILED
        if any(k.get_name() == key.get_name() and k.asbytes() == key.asbytes() for k in self.srv.authorized_keys):
            self.username = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes) -> bool:  # type: ignore[no-untyped-def]
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight) -> bool:  # type: ignore[no-untyped-def]
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        ev, _ = self.request(channel)
        if ev.is_set():
            return False
        ev.set()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        ev, cmd = self.request(channel)
        if ev.is_set():
            return False
        cmd[0] = command.decode("utf-8", "surrogateescape")   # not UTF-8: refused by the CLI, not run altered
        ev.set()
        return True


class GatewayServer:
    """SSH CLI server for one gateway.  ``start()`` binds and serves in threads; ``stop()`` ends all."""

    def __init__(self, gateway: Gateway, host_key: paramiko.PKey, address: str = "0.0.0.0", port: int = 22,
                 check_password: PasswordCheck | None = None, authorized_keys: list[paramiko.PKey] | None = None,
                 key_user: str | None = None, log: Callable[[str], None] | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, max_vty: int = MAX_VTY,
                 login_timeout_s: float = LOGIN_TIMEOUT_S) -> None:
        if not check_password and not authorized_keys:
            raise ValueError("no way to log in: give a password or authorized keys")
        self.gw = gateway
        self.host_key = host_key
        self.address, self.port = address, port
        self.check_password = check_password
        self.authorized_keys = authorized_keys or []
        self.key_user = key_user
        self.log = log or (lambda _m: None)
        self.idle_timeout_s = idle_timeout_s
        self.login_timeout_s = login_timeout_s
        self.max_vty = max_vty
        self.max_connections = 2 * max_vty
        """SSH connections at once, logged in or not (a thread each): room beyond the VTYs for the
        clients told that all are busy; more are closed at accept, as sshd's MaxStartups does."""
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self.vty_users = 0
        self.connections = 0

    def start(self) -> GatewayServer:
        sock = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, self.port))
        sock.listen(16)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        self._sock = sock
        t = threading.Thread(target=self._accept_loop, name="gw-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            self._sock.close()
        with self._lock:
            transports = list(self._transports)
        for tr in transports:
            tr.close()
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                full = self.connections >= self.max_connections
                if not full:
                    self.connections += 1
            if full:
                self.log(f"connection from {peer[0]} refused: {self.max_connections} connections already")
                conn.close()
                continue
            t = threading.Thread(target=self._serve, args=(conn, peer), name=f"gw-{peer[0]}:{peer[1]}", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket, peer: tuple) -> None:  # type: ignore[type-arg]
        tr: paramiko.Transport | None = None
        try:
            conn.settimeout(None)
            tr = paramiko.Transport(conn)
            tr.add_server_key(self.host_key)
            handler = _Handler(self)
            with self._lock:
                self._transports.add(tr)
            try:
                tr.start_server(server=handler)
            except (paramiko.SSHException, EOFError, OSError):
                return
            self.log(f"connection from {peer[0]}")
            # Until its first session the connection has login_timeout_s; then, with none open, idle_timeout_s.
            busy_at, served = time.monotonic(), False
            channels: list[threading.Thread] = []
            while not self._stop.is_set() and tr.is_active():
                chan = tr.accept(timeout=0.5)
                channels = [t for t in channels if t.is_alive()]
                if chan is not None:
                    if len(channels) >= self.max_vty:           # no more VTYs could be had on it anyway
                        chan.close()
                        continue
                    t = threading.Thread(target=self._channel, args=(tr, handler, chan), daemon=True,
                                         name=f"gw-chan-{peer[0]}:{peer[1]}:{chan.get_id()}")
                    t.start()
                    channels.append(t)
                if channels:
                    busy_at, served = time.monotonic(), True
                elif time.monotonic() - busy_at > (self.idle_timeout_s if served else self.login_timeout_s):
                    self.log(f"connection from {peer[0]} closed: " + ("idle" if served else "no session opened"))
                    break
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self.log(f"session from {peer[0]} ended: {exc}")
        finally:
            with self._lock:
                if tr is not None:
                    self._transports.discard(tr)
                self.connections -= 1
            if tr is not None:
                tr.close()
            else:
                conn.close()

    def _take_vty(self) -> int | None:
        """The number of VTY users with this one, or None when all are taken."""
        with self._lock:
            if self.vty_users >= self.max_vty:
                return None
            self.vty_users += 1
            return self.vty_users

    def _release_vty(self) -> None:
        with self._lock:
            self.vty_users -= 1

    def _channel(self, tr: paramiko.Transport, handler: _Handler, chan: paramiko.Channel) -> None:
        ev, cmd = handler.request(chan)
        try:
            if not ev.wait(timeout=self.login_timeout_s):
                chan.close()
                return
            if cmd[0] is not None:
                # paramiko sends its reply to the exec request only after the check returned, so
                # output sent now could overtake it (the client then sees no exit status).  A
                # global request answered by the client is handled by the transport thread after
                # that reply: once it is answered, the reply is on the wire.
                tr.global_request("keepalive@openssh.com", wait=True)
            n = self._take_vty()
            if n is None:
                self.log(f"session refused: all {self.max_vty} VTYs are in use")
                chan.sendall(f"{self.gw.dialect.session.busy_text}\r\n".encode())
                if cmd[0] is not None:
                    chan.send_exit_status(1)
                chan.close()
                return
            try:
                if cmd[0] is not None:
                    self._exec(chan, cmd[0])
                else:
                    self._shell(chan, n)
            finally:
                self._release_vty()
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self.log(f"channel ended: {exc}")
            chan.close()

    def _exec(self, chan: paramiko.Channel, command: str) -> None:
        s = self.gw.session()
        out = s.handle_line(command)
        if s.confirming:                     # `save` over exec: no one to answer, so do not save
            out += "\n" + s.decline()
        if out:
            chan.sendall(_crlf(out) + b"\r\n")
        chan.send_exit_status(1 if s.is_error(out) else 0)
        chan.shutdown_write()
        chan.close()

    def _shell(self, chan: paramiko.Channel, users: int) -> None:
        s = self.gw.session()
        chan.sendall(s.banner(self.max_vty, users).encode() + b"\r\n" + s.prompt.encode())
        chan.settimeout(self.idle_timeout_s)
        editor = LineEditor(s.max_line)
        try:
            while not self._stop.is_set() and not s.closed:
                try:
                    data = chan.recv(4096)
                except TimeoutError:
                    chan.sendall(f"\r\n{s.idle_text}\r\n".encode())
                    break
                if not data:
                    break
                out: list[str] = []
                for kind, text in editor.feed(data):
                    if kind == ECHO:
                        out.append(text)
                    elif kind == CANCEL:
                        out.append("^C\r\n" + s.prompt)
                    elif kind == SUSPEND:                   # Ctrl+Z: back to the start view
                        if not s.confirming:
                            s.suspend()
                        out.append("\r\n" + s.prompt)
                    else:                                   # a line
                        if out:
                            chan.sendall("".join(out).encode())
                            out = []
                        result = s.handle_line(text)
                        if s.closed:
                            chan.sendall(b"\r\n")
                            return
                        chan.sendall(b"\r\n" + (_crlf(result) + b"\r\n" if result else b"") + s.prompt.encode())
                if out:
                    chan.sendall("".join(out).encode())
        finally:
            chan.close()


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()

"""The gateway's SSH server: paramiko, one thread per connection, an interactive VRP-style shell.

Sessions ask for a pty and a shell (what netmiko does) or ``exec`` a single command.  Input is
echoed and line-edited like a terminal (backspace, Ctrl+C drops the line, Ctrl+Z returns to the
user view); every line goes to a :class:`~emulator.gateway.cli.CliSession`.
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

from .cli import CliSession, Gateway

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


BANNER = ("\r\nInfo: The max number of VTY users is 10, and the number\r\n"
          "      of current VTY users on line is {n}.\r\n"
          "      The current login time is {t}.\r\n")


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
        cmd[0] = command.decode("utf-8", "replace")
        ev.set()
        return True


class GatewayServer:
    """SSH CLI server for one gateway.  ``start()`` binds and serves in threads; ``stop()`` ends all."""

    def __init__(self, gateway: Gateway, host_key: paramiko.PKey, address: str = "0.0.0.0", port: int = 22,
                 check_password: PasswordCheck | None = None, authorized_keys: list[paramiko.PKey] | None = None,
                 key_user: str | None = None, log: Callable[[str], None] | None = None,
                 idle_timeout_s: float = 600.0) -> None:
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
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self.sessions = 0

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
            t = threading.Thread(target=self._serve, args=(conn, peer), name=f"gw-{peer[0]}:{peer[1]}", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket, peer: tuple) -> None:  # type: ignore[type-arg]
        conn.settimeout(None)
        tr = paramiko.Transport(conn)
        tr.add_server_key(self.host_key)
        handler = _Handler(self)
        with self._lock:
            self._transports.add(tr)
        try:
            try:
                tr.start_server(server=handler)
            except (paramiko.SSHException, EOFError, OSError):
                return
            self.log(f"connection from {peer[0]}")
            while not self._stop.is_set() and tr.is_active():
                chan = tr.accept(timeout=0.5)
                if chan is None:
                    continue
                t = threading.Thread(target=self._channel, args=(tr, handler, chan), daemon=True,
                                     name=f"gw-chan-{peer[0]}:{peer[1]}:{chan.get_id()}")
                t.start()
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self.log(f"session from {peer[0]} ended: {exc}")
        finally:
            with self._lock:
                self._transports.discard(tr)
            tr.close()

    def _channel(self, tr: paramiko.Transport, handler: _Handler, chan: paramiko.Channel) -> None:
        ev, cmd = handler.request(chan)
        try:
            if not ev.wait(timeout=30):
                chan.close()
                return
            if cmd[0] is not None:
                # paramiko sends its reply to the exec request only after the check returned, so
                # output sent now could overtake it (the client then sees no exit status).  A
                # global request answered by the client is handled by the transport thread after
                # that reply: once it is answered, the reply is on the wire.
                tr.global_request("keepalive@openssh.com", wait=True)
                self._exec(chan, cmd[0])
            else:
                self._shell(chan)
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self.log(f"channel ended: {exc}")
            chan.close()

    def _exec(self, chan: paramiko.Channel, command: str) -> None:
        s = CliSession(self.gw)
        out = s.handle_line(command)
        if s._confirm:                       # `save` over exec: no one to answer, so do not save
            out += "\n" + s.handle_line("n")
        if out:
            chan.sendall(_crlf(out) + b"\r\n")
        chan.send_exit_status(1 if "Error:" in out else 0)
        chan.shutdown_write()
        chan.close()

    def _shell(self, chan: paramiko.Channel) -> None:
        s = CliSession(self.gw)
        with self._lock:
            self.sessions += 1
            n = self.sessions
        chan.sendall(BANNER.format(n=n, t=time.strftime("%Y-%m-%d %H:%M:%S")).encode() + b"\r\n"
                     + s.prompt.encode())
        chan.settimeout(self.idle_timeout_s)
        buf = ""
        last_cr = False
        esc = 0
        try:
            while not self._stop.is_set() and not s.closed:
                try:
                    data = chan.recv(4096)
                except TimeoutError:
                    chan.sendall(b"\r\nInfo: The connection was closed by the remote host (idle timeout).\r\n")
                    break
                if not data:
                    break
                echo = []
                for ch in data.decode("utf-8", "replace"):
                    if esc == 1:                            # ESC seen: expect '[' (CSI) or drop one char
                        esc = 2 if ch == "[" else 0
                        continue
                    if esc == 2:                            # inside CSI: parameters until a final byte
                        if "@" <= ch <= "~":
                            esc = 0
                        continue
                    if ch == "\x1b":
                        esc = 1
                        continue
                    if ch == "\n" and last_cr:
                        last_cr = False
                        continue
                    last_cr = ch == "\r"
                    if ch in "\r\n":
                        if echo:
                            chan.sendall("".join(echo).encode())
                            echo = []
                        out = s.handle_line(buf)
                        buf = ""
                        if s.closed:
                            chan.sendall(b"\r\n")
                            return
                        chan.sendall(b"\r\n" + (_crlf(out) + b"\r\n" if out else b"") + s.prompt.encode())
                    elif ch in "\x7f\x08":
                        if buf:
                            buf = buf[:-1]
                            echo.append("\b \b")
                    elif ch == "\x03":                      # Ctrl+C: drop the line
                        buf = ""
                        echo.append("^C\r\n" + s.prompt)
                    elif ch == "\x1a":                      # Ctrl+Z: back to the user view
                        if s.view != "user" and s.prompt != "":
                            s.do_return_()
                        buf = ""
                        echo.append("\r\n" + s.prompt)
                    elif ch == "\t" or ch < " ":
                        continue
                    else:
                        buf += ch
                        echo.append(ch)
                if echo:
                    chan.sendall("".join(echo).encode())
        finally:
            chan.close()


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()

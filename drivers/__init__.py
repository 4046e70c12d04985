"""Device drivers: protocol clients for OTN terminals, ROADMs, gateways and GPU nodes. No pytest.

Drivers know protocols, not the inventory: each takes an :class:`SshTarget` (address, login,
secret *values*, how the host key is verified); ``testbed/connect.py`` builds it from an
inventory device.  What every SSH-based driver shares lives here: host-key pinning (never
trust-on-first-use) and the mapping of transport exceptions to :mod:`drivers.errors`.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from dataclasses import dataclass, field

import paramiko

from .errors import AuthFailed, DeviceUnreachable, DriverError, HostKeyRejected, Timeout


@dataclass(frozen=True)
class SshTarget:
    """How to reach and log in to one device over SSH (NETCONF or CLI)."""

    host: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)
    key_path: str | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    known_hosts: str | None = None        # a known_hosts file listing the device ...
    fingerprint: str | None = None        # ... or its key's 'SHA256:...' fingerprint
    timeout_s: float = 10.0               # connect / banner / auth timeout
    name: str | None = None               # for messages only

    def __post_init__(self) -> None:
        if (self.known_hosts is None) == (self.fingerprint is None):
            raise ValueError(f"{self.label}: give exactly one of known_hosts or fingerprint (host keys are verified)")
        if self.password is None and self.key_path is None:
            raise ValueError(f"{self.label}: give a password or a key path")

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


def sha256_fingerprint(key: paramiko.PKey) -> str:
    """The 'SHA256:...' form `ssh-keygen -lf` prints."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_host_keys(target: SshTarget) -> dict[str, paramiko.PKey]:
    """The keys a known_hosts file lists for this host (``[host]:port`` entries for port != 22)."""
    assert target.known_hosts is not None
    hk = paramiko.HostKeys()
    try:
        hk.load(target.known_hosts)
    except OSError as exc:
        raise HostKeyRejected(f"cannot read known_hosts {target.known_hosts}: {exc.strerror or exc}",
                              target.label) from None
    keys: dict[str, paramiko.PKey] = {}
    for lookup in ([target.host] if target.port == 22 else []) + [f"[{target.host}]:{target.port}"]:
        keys.update(dict(hk.lookup(lookup) or {}))
    if not keys:
        raise HostKeyRejected(f"known_hosts {target.known_hosts} lists no key for "
                              f"{target.host if target.port == 22 else f'[{target.host}]:{target.port}'}", target.label)
    return keys


def server_key(target: SshTarget) -> paramiko.PKey:
    """Ask the device for its host key (an SSH key exchange, no authentication)."""
    sock = open_socket(target)
    t = paramiko.Transport(sock)
    t.banner_timeout = target.timeout_s
    try:
        t.start_client(timeout=target.timeout_s)
        return t.get_remote_server_key()
    except paramiko.SSHException as exc:
        raise DeviceUnreachable(f"SSH key exchange failed: {exc}", target.label) from None
    finally:
        t.close()


def pinned_host_key(target: SshTarget) -> paramiko.PKey:
    """The one host key this device must present: from known_hosts, or the device's own key once
    its SHA256 fingerprint matched the expected one (checked before any credential is sent)."""
    if target.known_hosts is not None:
        keys = known_host_keys(target)
        for pref in ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-rsa"):
            if pref in keys:
                return keys[pref]
        return next(iter(keys.values()))
    key = server_key(target)
    got = sha256_fingerprint(key)
    if got.rstrip("=") != (target.fingerprint or "").rstrip("="):
        raise HostKeyRejected(f"host key fingerprint is {got}, expected {target.fingerprint}", target.label)
    return key


def open_socket(target: SshTarget) -> socket.socket:
    try:
        sock = socket.create_connection((target.host, target.port), timeout=target.timeout_s)
    except TimeoutError:
        raise DeviceUnreachable(f"no answer from {target.host}:{target.port} within {target.timeout_s:g} s",
                                target.label) from None
    except OSError as exc:
        raise DeviceUnreachable(f"cannot connect to {target.host}:{target.port}: {exc.strerror or exc}",
                                target.label) from None
    sock.settimeout(target.timeout_s)
    return sock


def map_ssh_error(exc: BaseException, target: SshTarget) -> DriverError:
    """A paramiko/socket exception as the driver error a caller can act on."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthFailed(f"login as {target.username!r} refused: {exc}", target.label)
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRejected(str(exc), target.label)
    if isinstance(exc, paramiko.PasswordRequiredException):
        return AuthFailed(f"key {target.key_path} is encrypted and no passphrase was given", target.label)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return Timeout(f"no answer within {target.timeout_s:g} s", target.label)
    if isinstance(exc, (OSError, EOFError, paramiko.SSHException)):
        return DeviceUnreachable(f"{type(exc).__name__}: {exc}", target.label)
    return DriverError(f"{type(exc).__name__}: {exc}", target.label)


__all__ = ["SshTarget", "known_host_keys", "map_ssh_error", "open_socket", "pinned_host_key", "server_key",
           "sha256_fingerprint"]

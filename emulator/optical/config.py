"""The device config (JSON) of ``python -m emulator.optical``; see the package docstring."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from emulator.jsonfile import read_json

ROLES = {"otn_terminal": ("openconfig", "openroadm"), "roadm": ("openroadm",)}


@dataclass(frozen=True)
class PathCfg:
    name: str
    kind: str
    length_km: float
    roadms: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceCfg:
    name: str
    line_rate_gbps: int
    client_count: int
    client_rate_gbps: int
    working: str
    protection: str | None
    restoration: tuple[str, ...]
    end: str
    peer: str | None
    switch_ms: float = 30.0
    restoration_ms: float = 3000.0


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    role: str
    personality: str
    site: str | None
    address: str
    port: int
    host_key: str
    username: str
    authorized_keys: str | None
    password: str | None
    line_socket: str
    persist_path: str | None
    paths: tuple[PathCfg, ...]
    bandwidth_scale: float
    service: ServiceCfg | None = None
    pidfile: str | None = None
    pm_sample_s: float = 1.0
    extra: dict = field(default_factory=dict)

    def path(self, name: str) -> PathCfg:
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(name)


def _req(d: dict, key: str, typ, where: str):
    if key not in d:
        raise ValueError(f"{where}{key} is required")
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
        raise ValueError(f"{where}{key} must be {getattr(typ, '__name__', typ)}, got {v!r}")
    return v


def _num(d: dict, key: str, where: str, default=None, lo=None, hi=None) -> float:
    if key not in d and default is not None:
        return default
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError(f"{where}{key} must be a number, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{where}{key} must be within [{lo}, {hi}], got {v!r}")
    return float(v)


def parse_config(d: Any) -> DeviceConfig:
    """Validate a decoded config; every problem is a ValueError with one clear line."""
    if not isinstance(d, dict):
        raise ValueError("config must be a JSON object")
    known = {"name", "role", "personality", "site", "listen", "host_key", "auth", "line_socket", "persist_path",
             "service", "paths", "bandwidth_scale", "pidfile", "pm_sample_s"}
    extra = sorted(set(d) - known)
    if extra:
        raise ValueError(f"unknown key {extra[0]!r}")
    name = _req(d, "name", str, "")
    role = _req(d, "role", str, "")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    pers = _req(d, "personality", str, "")
    if pers not in ROLES[role]:
        raise ValueError(f"personality {pers!r} is not offered for role {role} (use {', '.join(ROLES[role])})")
    site = d.get("site")
    if site is not None and not isinstance(site, str):
        raise ValueError(f"site must be a string or null, got {site!r}")
    listen = _req(d, "listen", dict, "")
    addr = _req(listen, "address", str, "listen.")
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f"listen.address is not an IP address: {addr!r}") from None
    port = listen.get("port", 830)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"listen.port must be an integer 0..65535, got {port!r}")
    host_key = _req(d, "host_key", str, "")
    if not os.path.isfile(host_key):
        raise ValueError(f"host_key {host_key} does not exist")
    auth = _req(d, "auth", dict, "")
    user = _req(auth, "username", str, "auth.")
    ak = auth.get("authorized_keys")
    if ak is not None and (not isinstance(ak, str) or not os.path.isfile(ak)):
        raise ValueError(f"auth.authorized_keys {ak!r} does not exist")
    password = None
    if auth.get("password_env"):
        password = os.environ.get(str(auth["password_env"]))
        if password is None:
            raise ValueError(f"auth.password_env: environment variable {auth['password_env']} is not set")
    if auth.get("password_file"):
        try:
            with open(auth["password_file"]) as f:
                password = f.read().strip()
        except OSError as exc:
            raise ValueError(f"auth.password_file: cannot read {auth['password_file']}: {exc.strerror}") from None
    if ak is None and password is None:
        raise ValueError("auth needs authorized_keys or a password (password_env/password_file)")
    line_socket = _req(d, "line_socket", str, "")
    persist = d.get("persist_path")
    if persist is not None and not isinstance(persist, str):
        raise ValueError("persist_path must be a path string")
    raw_paths = _req(d, "paths", list, "")
    if not raw_paths:
        raise ValueError("paths must not be empty")
    paths = []
    for i, p in enumerate(raw_paths):
        w = f"paths[{i}]."
        if not isinstance(p, dict):
            raise ValueError(f"paths[{i}] must be an object")
        kind = _req(p, "kind", str, w)
        if kind not in ("working", "protection", "restoration"):
            raise ValueError(f"{w}kind must be working, protection or restoration, got {kind!r}")
        roadms = p.get("roadms", [])
        if not isinstance(roadms, list) or not all(isinstance(r, str) for r in roadms):
            raise ValueError(f"{w}roadms must be a list of names")
        paths.append(PathCfg(_req(p, "name", str, w), kind, _num(p, "length_km", w, lo=0), tuple(roadms)))
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError("paths: duplicate path name")
    scale = _num(d, "bandwidth_scale", "", default=1.0, lo=1e-9, hi=1.0)
    service = None
    if role == "otn_terminal":
        s = _req(d, "service", dict, "")
        w = "service."
        cp = _req(s, "client_ports", dict, w)
        prot = s.get("protection")
        rest = s.get("restoration", [])
        if not isinstance(rest, list):
            raise ValueError("service.restoration must be a list of path names")
        end = _req(s, "end", str, w)
        if end not in ("a", "z"):
            raise ValueError(f"service.end must be 'a' or 'z', got {end!r}")
        rate = _num(s, "line_rate_gbps", w, lo=100, hi=800)
        if rate % 100:
            raise ValueError(f"service.line_rate_gbps must be a multiple of 100, got {rate:g}")
        service = ServiceCfg(
            _req(s, "name", str, w), int(rate), int(_num(cp, "count", "service.client_ports.", lo=1, hi=8)),
            int(_num(cp, "rate_gbps", "service.client_ports.", lo=1, hi=800)), _req(s, "working", str, w),
            prot, tuple(rest), end, s.get("peer"), _num(s, "switch_ms", w, default=30.0, lo=0, hi=10000),
            _num(s, "restoration_ms", w, default=3000.0, lo=0, hi=600000))
        for ref in [service.working, *( [prot] if prot else []), *rest]:
            if ref not in names:
                raise ValueError(f"service refers to unknown path {ref!r} (paths: {', '.join(names)})")
    elif not any(name in p.roadms for p in paths):
        raise ValueError(f"ROADM {name} is on no path (no path lists it in roadms)")
    pidfile = d.get("pidfile")
    if pidfile is not None and not isinstance(pidfile, str):
        raise ValueError("pidfile must be a path string")
    return DeviceConfig(name, role, pers, site, addr, port, host_key, user, ak, password, line_socket, persist,
                        tuple(paths), scale, service, pidfile, _num(d, "pm_sample_s", "", default=1.0, lo=0.05, hi=60))


def load_config(path: str) -> DeviceConfig:
    data = read_json(path)
    try:
        return parse_config(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None

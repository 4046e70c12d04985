"""``python -m emulator.gateway --config FILE.json [--dialect NAME]``: run one emulated AI gateway.

``--dialect`` is the CLI it speaks, by the name an inventory's ``driver:`` gives gateways
(default ``vrp``; :mod:`emulator.gateway.dialects`).  Every module named in ``DCILAB_PLUGINS``
(``.py`` files or dotted names, separated by ``:``) is imported first, so that a dialect of your
own registers itself and can be named (:mod:`emulator.plugins`).

The config (JSON)::

    {
      "hostname": "GW-A",
      "listen": {"address": "198.18.0.21", "port": 22},
      "host_key": "/run/dcilab/lab/keys/gw-a",          # created (RSA) if missing
      "auth": {"username": "admin",
               "password_env": "DCILAB_DEVICE_PASSWORD",  # or "password_file": PATH
               "authorized_keys": PATH},                  # optional; at least one way in
      "ports": {"400GE1/0/1": "wan0", "400GE1/0/2": "fab0", "MEth0/0/0": "mgmt0"},   # the dialect's names
      "bandwidth_scale": 0.00125,                         # optional (1): the shaper runs at CIR x this
      "saved_config": "/run/dcilab/lab/gw-a.cfg",       # what `save` writes and a start replays
      "state_dir": "/run/dcilab/lab/gw-a",              # optional: running.cfg mirror, pidfile
      "pidfile": PATH                                     # optional
    }

Run it inside the gateway's namespace: the CLI reads counters from and shapes the links it sees.
Exit codes: 0 clean stop (SIGTERM/SIGINT), 1 runtime failure, 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from emulator.jsonfile import read_json

PROG = "emulator.gateway"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: {message}", file=sys.stderr)
        sys.exit(2)


class ConfigError(ValueError):
    pass


def _str(d: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}{key} must be a non-empty string")
    return v


def load_config(path: str) -> dict[str, Any]:
    """Read and check the config; every problem is a ConfigError with one line."""
    try:
        data = read_json(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    known = {"hostname", "listen", "host_key", "auth", "ports", "saved_config", "state_dir", "pidfile",
             "bandwidth_scale"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    import re
    host = _str(data, "hostname", "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", host or ""):
        raise ConfigError(f"{path}: hostname {host!r} must be 1-64 letters, digits, '_', '.', '-'")
    listen = data.get("listen")
    if not isinstance(listen, dict):
        raise ConfigError(f"{path}: listen must be an object with address and port")
    _str(listen, "address", "listen.")
    port = listen.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"{path}: listen.port must be an integer 0-65535")
    _str(data, "host_key", "")
    auth = data.get("auth")
    if not isinstance(auth, dict):
        raise ConfigError(f"{path}: auth must be an object")
    _str(auth, "username", "auth.")
    if not any(auth.get(k) for k in ("password_env", "password_file", "authorized_keys")):
        raise ConfigError(f"{path}: auth needs password_env, password_file or authorized_keys")
    ports = data.get("ports")
    if not isinstance(ports, dict) or not ports or not all(isinstance(k, str) and isinstance(v, str) and v
                                                          for k, v in ports.items()):
        raise ConfigError(f"{path}: ports must map interface names to Linux link names")
    for k in ("saved_config", "state_dir", "pidfile"):
        _str(data, k, "", required=False)
    scale = data.get("bandwidth_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ConfigError(f"{path}: bandwidth_scale must be a number in (0, 1] (the lab's rate / the real rate)")
    return data


def build(cfg: dict[str, Any], log=lambda m: None, dialect: str = "vrp"):  # type: ignore[no-untyped-def]
    """Make the Gateway and its GatewayServer (not started) from a checked config; ``dialect``: a
    registered dialect name (ConfigError naming the known ones otherwise)."""
    from . import dialects
    from .device import Gateway
    try:
        the_dialect = dialects.get(dialect)
    except dialects.UnknownDialect as exc:
        raise ConfigError(f"--dialect: {exc}") from None
    from .server import GatewayServer, load_authorized_keys, load_or_create_host_key, password_checker

    auth = cfg["auth"]
    check = None
    if auth.get("password_env"):
        pw = os.environ.get(auth["password_env"])
        if not pw:
            raise ConfigError(f"auth.password_env: the environment variable {auth['password_env']} is not set")
        check = password_checker(auth["username"], pw)
    elif auth.get("password_file"):
        try:
            pw = Path(auth["password_file"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"auth.password_file: cannot read {auth['password_file']}: {exc.strerror}") from None
        if not pw:
            raise ConfigError(f"auth.password_file: {auth['password_file']} is empty")
        check = password_checker(auth["username"], pw)
    keys = []
    if auth.get("authorized_keys"):
        try:
            keys = load_authorized_keys(auth["authorized_keys"])
        except OSError as exc:
            raise ConfigError(f"auth.authorized_keys: cannot read {auth['authorized_keys']}: {exc.strerror}") from None
        if not keys and not check:
            raise ConfigError(f"auth.authorized_keys: no usable key in {auth['authorized_keys']}")
    try:
        host_key = load_or_create_host_key(cfg["host_key"])
    except Exception as exc:  # noqa: BLE001 - paramiko raises several kinds
        raise ConfigError(f"host_key: cannot load {cfg['host_key']}: {exc}") from None
    state = Path(cfg["state_dir"]) if cfg.get("state_dir") else None
    try:
        gw = Gateway(cfg["hostname"], cfg["ports"], saved_config=cfg.get("saved_config"),
                     running_copy=state / "running.cfg" if state else None, log=log,
                     bandwidth_scale=float(cfg.get("bandwidth_scale", 1.0)), dialect=the_dialect)
    except ValueError as exc:
        raise ConfigError(f"ports: {exc}") from None
    srv = GatewayServer(gw, host_key, cfg["listen"]["address"], cfg["listen"]["port"], check_password=check,
                        authorized_keys=keys, key_user=auth["username"], log=log)
    return gw, srv


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog=PROG, description="Run one emulated AI gateway (an SSH CLI in a vendor's dialect).")
    ap.add_argument("--config", required=True, help="JSON config file")
    ap.add_argument("--dialect", default="vrp",
                    help="the CLI dialect, by its inventory driver name (default vrp; more from DCILAB_PLUGINS)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"gateway: {msg}", file=sys.stderr, flush=True)

    from emulator.plugins import PluginError, load_plugins
    try:
        load_plugins()
        cfg = load_config(args.config)
        gw, srv = build(cfg, log, args.dialect)
    except (ConfigError, PluginError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    errors = gw.load_saved()
    for e in errors:
        log(f"saved configuration: {e}")
    try:
        srv.start()
    except OSError as exc:
        print(f"{PROG}: cannot listen on {srv.address}:{srv.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    pidfile = cfg.get("pidfile") or (str(Path(cfg["state_dir"]) / "gateway.pid") if cfg.get("state_dir") else None)
    if pidfile:
        Path(pidfile).parent.mkdir(parents=True, exist_ok=True)
        Path(pidfile).write_text(f"{os.getpid()}\n")
    log(f"{cfg['hostname']} ({args.dialect}) listening on {srv.address}:{srv.port} (ports: "
        + ", ".join(f"{k}={v}" for k, v in cfg["ports"].items()) + ")")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        srv.stop()
        if pidfile:
            try:
                if Path(pidfile).read_text().strip() == str(os.getpid()):
                    os.unlink(pidfile)
            except OSError:
                pass
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

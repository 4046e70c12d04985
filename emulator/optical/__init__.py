"""Emulated optical gear of dcilab: OTN terminals (OpenConfig or OpenROADM personality) and
ROADMs (OpenROADM), each a NETCONF server over SSH that steers the lab's emulated optical line.

Run one device::

    python -m emulator.optical --config FILE.json

(the lab runs it inside the device's namespace with ``ip netns exec``).  Exit codes: 0 clean stop
(SIGTERM/SIGINT), 1 runtime failure, 2 bad config or arguments (one line on stderr).

Config (JSON)::

    {"name": "dc-a-otn",                      # device name
     "role": "otn_terminal" | "roadm",
     "personality": "openconfig" | "openroadm",   # roadm: openroadm only
     "site": "dc-a" | null,
     "listen": {"address": "198.18.0.31", "port": 830},   # port 0 = any free port
     "host_key": PATH,                        # ECDSA private key, must exist
     "auth": {"username": "admin", "authorized_keys": PATH,
              "password_env": NAME?, "password_file": PATH?},   # keys and/or a password
     "line_socket": "/run/dcilab/emulated-dci/line.sock",      # the line's control socket
     "persist_path": PATH?,                   # running config kept across restarts
     "service": {                             # otn_terminal only
        "name": "dci-otn", "line_rate_gbps": 800,           # N x 100G, <= 800
        "client_ports": {"count": 2, "rate_gbps": 400},
        "working": "working", "protection": "protection" | null, "restoration": ["restoration"],
        "end": "a" | "z", "peer": "dc-b-otn",
        "switch_ms": 30, "restoration_ms": 3000},           # optional, passed to the line
     "paths": [{"name": "working", "kind": "working" | "protection" | "restoration",
                "length_km": 329, "roadms": ["dc-a-roadm", "ila-roadm", "dc-b-roadm"]}, ...],
     "bandwidth_scale": 0.00125,              # line bit/s = rate_gbps * 1e9 * scale
     "pidfile": PATH?,
     "pm_sample_s": 1.0}                      # optional: PM sample period (errored seconds etc.)

Personalities: :mod:`.openconfig`, :mod:`.openroadm` (terminal), :mod:`.roadm`; the PM model is
in :mod:`.pm`.  Line rate edits go to the line through ``on_commit`` (so a confirmed commit that
times out rolls the line back too); protection edits and switch requests go to the line's
protection engine (``configure_protection``/``protection_switch``); state is read from the line
on every ``get``; a background thread polls the line's ``events`` every 50 ms and sends the
notifications.  Every edit is validated on a copy of the target datastore first: a bad value is
an ``rpc-error`` and nothing changes.
"""

from .config import DeviceConfig, load_config, parse_config


def make_device(cfg: DeviceConfig, line=None):
    """The device object for ``cfg`` (not started); ``line`` replaces the LineControl client."""
    if cfg.role == "roadm":
        from .roadm import Roadm
        return Roadm(cfg, line)
    if cfg.personality == "openconfig":
        from .openconfig import OpenConfigTerminal
        return OpenConfigTerminal(cfg, line)
    from .openroadm import OpenRoadmTerminal
    return OpenRoadmTerminal(cfg, line)


__all__ = ["DeviceConfig", "load_config", "make_device", "parse_config"]

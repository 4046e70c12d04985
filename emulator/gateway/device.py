"""The emulated gateway as a device, whatever CLI dialect it speaks: its configuration, its links,
its shaper and its saved configuration.

A :class:`Gateway` holds a :class:`DeviceConfig` (the model every dialect edits), reads its ports'
state and counters from the Linux links they map to (:class:`SysfsLinks`, normally those of the
gateway's network namespace) and shapes a port with a tc token bucket (tbf) at the configured CIR
times the lab's ``bandwidth_scale`` (the CIR is the real rate, as on real gear).  What is written
in a vendor's syntax (the running configuration as text, replaying a saved one) is the dialect's
(:mod:`emulator.gateway.dialects`), reached through ``Gateway.dialect``; what the device cannot do
it raises as a :class:`DeviceError`, which the dialect words.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from emulator.durable import save_durably

from . import dialects

if TYPE_CHECKING:
    from .dialects import Dialect
    from .session import Session

# --------------------------------------------------------------------------------- the links

STAT_NAMES = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors",
              "rx_dropped", "tx_dropped", "multicast", "rx_crc_errors")


class LinkReader(Protocol):
    def info(self, ifname: str) -> dict[str, Any] | None:
        """None if the link does not exist; else operstate, mtu, address, ifindex, ipv4 (list of CIDR)."""

    def stats(self, ifname: str) -> dict[str, int]:
        """Counters named like /sys/class/net/<if>/statistics/*."""


class SysfsLinks:
    """Reads the links of the network namespace this process runs in."""

    def __init__(self, root: str = "/sys/class/net") -> None:
        self.root = Path(root)

    def _read(self, ifname: str, name: str) -> str | None:
        try:
            return (self.root / ifname / name).read_text().strip()
        except OSError:
            return None

    def info(self, ifname: str) -> dict[str, Any] | None:
        if not (self.root / ifname).exists():
            return None
        flags = int(self._read(ifname, "flags") or "0", 16)
        ipv4: list[str] = []
        try:
            out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", ifname], capture_output=True,
                                 text=True, timeout=5, check=False).stdout
            for entry in json.loads(out or "[]"):
                for a in entry.get("addr_info", []):
                    ipv4.append(f"{a['local']}/{a['prefixlen']}")
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        return {
            "operstate": self._read(ifname, "operstate") or "unknown",
            "admin_up": bool(flags & 1),
            "carrier": self._read(ifname, "carrier") == "1",
            "mtu": int(self._read(ifname, "mtu") or 0),
            "address": self._read(ifname, "address") or "",
            "ifindex": int(self._read(ifname, "ifindex") or 0),
            "ipv4": ipv4,
        }

    def stats(self, ifname: str) -> dict[str, int]:
        out = {}
        for name in STAT_NAMES:
            v = self._read(ifname, f"statistics/{name}")
            out[name] = int(v) if v and v.isdigit() else 0
        return out


TcRunner = Callable[[list[str]], "tuple[int, str, str]"]


def run_tc(args: list[str]) -> tuple[int, str, str]:
    """Run tc in this process's network namespace."""
    try:
        p = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return 1, "", str(exc)
    return p.returncode, p.stdout, p.stderr


# ------------------------------------------------------------------------------ configuration

@dataclass
class PortConfig:
    description: str | None = None
    lr_cir_kbps: int | None = None
    lr_cbs: int | None = None
    pfc_mode: str | None = None                      # "auto" | "manual" | None (disabled)
    queue_wred: dict[int, str] = field(default_factory=dict)
    queue_ecn: set[int] = field(default_factory=set)


@dataclass
class DropProfile:
    green: tuple[int, int, int] | None = None          # low-limit %, high-limit %, discard-percentage


@dataclass
class DeviceConfig:
    sysname: str
    ports: dict[str, PortConfig]
    pfc_priorities: set[int] = field(default_factory=set)
    pfc_view: bool = False                             # the PFC profile exists (VRP: `dcb pfc` was entered)
    drop_profiles: dict[str, DropProfile] = field(default_factory=dict)


def port_speed_kbps(name: str) -> int:
    """A port's line rate from its name (``400GE1/0/1``: 400G); 10G when the name does not say."""
    m = re.match(r"(\d+)GE", name)
    if m:
        return int(m.group(1)) * 1_000_000
    if name.upper().startswith("GE"):
        return 1_000_000
    if name.lower().startswith("meth"):
        return 1_000_000
    return 10_000_000


def split_ifname(name: str) -> tuple[str, str] | None:
    """``100GE1/0/1`` -> (``100GE``, ``1/0/1``): the type and the number a typed name is matched by."""
    m = re.fullmatch(r"(\d*[A-Za-z][A-Za-z-]*)(\d+(?:/\d+)*)", name)
    return (m.group(1), m.group(2)) if m else None


class DeviceError(Exception):
    """What the device could not do, in no dialect's words: ``what`` says which (one of the
    constants below), the session's dialect says it in its own (``Session.device_error``)."""

    PORT_ABSENT = "port absent"            # the port's Linux link does not exist
    APPLY_FAILED = "apply failed"          # tc refused the shaper; detail: its message
    REMOVE_FAILED = "remove failed"        # tc refused to remove it; detail: its message
    NOT_SAVABLE = "not savable"            # no saved_config path was given

    def __init__(self, what: str, port: str | None = None, ifname: str | None = None, detail: str = "") -> None:
        super().__init__(f"{what}: {port or ''} {detail}".strip())
        self.what, self.port, self.ifname, self.detail = what, port, ifname, detail


# ------------------------------------------------------------------------------------ device

class Gateway:
    """The device: configuration, links and shaper, shared by all sessions.  ``dialect``: the
    CLI it speaks, a registered name (:mod:`emulator.gateway.dialects`) or a Dialect."""

    def __init__(self, sysname: str, ports: dict[str, str], saved_config: str | Path | None = None,
                 links: LinkReader | None = None, tc: TcRunner | None = None,
                 running_copy: str | Path | None = None, log: Callable[[str], None] | None = None,
                 bandwidth_scale: float = 1.0, dialect: str | Dialect = dialects.DEFAULT) -> None:
        self.dialect: Dialect = dialects.get(dialect) if isinstance(dialect, str) else dialect
        if not ports:
            raise ValueError("the port map is empty")
        for name in ports:
            if not split_ifname(name):
                raise ValueError(f"port name {name!r} is not {self.dialect.port_hint}")
        self.ports = dict(ports)
        if not 0 < bandwidth_scale <= 1:
            raise ValueError(f"bandwidth_scale {bandwidth_scale!r} is not in (0, 1]")
        # an emulated lab's links run at the real rates times this: a configured CIR is the real
        # rate, shown as configured, and the shaper runs at CIR x scale
        self.bandwidth_scale = bandwidth_scale
        self.links: LinkReader = links or SysfsLinks()
        self.tc: TcRunner = tc or run_tc
        self.saved_path = Path(saved_config) if saved_config else None
        self.running_copy = Path(running_copy) if running_copy else None
        self.log = log or (lambda _m: None)
        self.lock = threading.RLock()
        self.started = time.time()
        self.updated: float | None = None
        self.default_sysname = sysname
        self.config = DeviceConfig(sysname, {name: PortConfig() for name in ports})
        self._rate_samples: dict[str, tuple[float, int, int, int, int]] = {}

    def session(self) -> Session:
        """A new terminal on this device, in its dialect."""
        return self.dialect.session(self)

    def running_config(self, updated: float | None = None) -> str:
        """The configuration as the dialect writes it (``updated``: the time it may say it changed)."""
        return self.dialect.render_config(self.config, updated)

    # ---- startup
    def load_saved(self) -> list[str]:
        """Replay the saved configuration; returns the error lines (empty when it all applied)."""
        errors: list[str] = []
        if self.saved_path and self.saved_path.exists():
            errors = self.replay(self.saved_path.read_text())
        self.reconcile_shaping()
        return errors

    def replay(self, text: str) -> list[str]:
        """Run a configuration written by this dialect; returns the lines refused, with why."""
        return self.dialect.replay(self, text)

    def reconcile_shaping(self) -> None:
        """Remove tbf roots left on links whose port has no rate limit (e.g. after a crash)."""
        for name, ifname in self.ports.items():
            if self.config.ports[name].lr_cir_kbps is None and self.links.info(ifname) is not None:
                rc, out, _ = self.tc(["-j", "qdisc", "show", "dev", ifname, "root"])
                try:
                    kinds = [q.get("kind") for q in json.loads(out or "[]")] if rc == 0 else []
                except ValueError:
                    kinds = []
                if "tbf" in kinds:
                    self.tc(["qdisc", "del", "dev", ifname, "root"])

    # ---- helpers used by sessions
    def resolve_if(self, tok: str) -> str:
        """The port a typed interface name means (type abbreviated, any case); ValueError if none."""
        parts = split_ifname(tok)
        if not parts:
            raise ValueError(tok)
        typ, num = parts
        for name in self.ports:
            ntyp, nnum = split_ifname(name)  # type: ignore[misc]
            if nnum == num and ntyp.lower().startswith(typ.lower()):
                return name
        raise ValueError(tok)

    def changed(self) -> None:
        self.updated = time.time()
        if self.running_copy:
            _atomic_write(self.running_copy, self.running_config(self.updated) + "\n")

    def set_rate_limit(self, port: str, cir_kbps: int, cbs: int | None = None) -> None:
        """Shape the port's link and keep the CIR in the configuration (DeviceError if tc refuses)."""
        self.apply_lr(port, cir_kbps, cbs)
        pc = self.config.ports[port]
        pc.lr_cir_kbps, pc.lr_cbs = cir_kbps, cbs
        self.changed()

    def clear_rate_limit(self, port: str) -> bool:
        """Remove the port's shaping; False when it had none."""
        pc = self.config.ports[port]
        if pc.lr_cir_kbps is None:
            return False
        self.remove_lr(port)
        pc.lr_cir_kbps = pc.lr_cbs = None
        self.changed()
        return True

    def apply_lr(self, port: str, cir_kbps: int, cbs: int | None) -> None:
        ifname = self.ports[port]
        info = self.links.info(ifname)
        if info is None:
            raise DeviceError(DeviceError.PORT_ABSENT, port, ifname)
        mtu = int(info.get("mtu") or 1500)
        rate_kbps = max(8, round(cir_kbps * self.bandwidth_scale))
        rate_bytes = rate_kbps * 1000 // 8
        # The bucket must hold at least a few frames, and enough for ~5 ms at the rate so the
        # timer granularity does not cost throughput; a configured cbs is honoured above that.
        burst = max(cbs or 0, 4 * (mtu + 64), rate_bytes // 200)
        latency_ms = 50
        rc, _, err = self.tc(["qdisc", "replace", "dev", ifname, "root", "tbf", "rate", f"{rate_kbps}kbit",
                              "burst", str(burst), "latency", f"{latency_ms}ms"])
        if rc != 0:
            raise DeviceError(DeviceError.APPLY_FAILED, port, ifname, err.strip() or "tc failed")
        scaled = f", tbf {rate_kbps} kbit/s (bandwidth scale {self.bandwidth_scale:g})" if rate_kbps != cir_kbps else ""
        self.log(f"{port} ({ifname}): outbound rate limit CIR {cir_kbps} kbit/s{scaled}, tbf burst {burst} B")

    def remove_lr(self, port: str) -> None:
        ifname = self.ports[port]
        if self.links.info(ifname) is None:
            return
        rc, _, err = self.tc(["qdisc", "del", "dev", ifname, "root"])
        if rc != 0 and "No such file" not in err and "handle of zero" not in err:
            raise DeviceError(DeviceError.REMOVE_FAILED, port, ifname, err.strip())
        self.log(f"{port} ({ifname}): rate limit removed")

    def rates(self, port: str, stats: dict[str, int]) -> tuple[float, float, float, float]:
        """bits/s and packets/s in and out since the previous look (or since start)."""
        now = time.monotonic()
        cur = (now, stats["rx_bytes"], stats["tx_bytes"], stats["rx_packets"], stats["tx_packets"])
        prev = self._rate_samples.get(port)
        if prev is None or now - prev[0] > 300:
            self._rate_samples[port] = cur
            return 0.0, 0.0, 0.0, 0.0
        dt = now - prev[0]
        if dt < 1.0:               # too short to say; report against the older sample, keep it
            dt = max(dt, 1e-3)
        else:
            self._rate_samples[port] = cur
        return ((cur[1] - prev[1]) * 8 / dt, (cur[2] - prev[2]) * 8 / dt,
                (cur[3] - prev[3]) / dt, (cur[4] - prev[4]) / dt)

    def save(self) -> None:
        """Write the running configuration, fsynced, where a restart replays it from."""
        if not self.saved_path:
            raise DeviceError(DeviceError.NOT_SAVABLE)
        self.saved_path.parent.mkdir(parents=True, exist_ok=True)
        save_durably(self.saved_path, (self.running_config(self.updated or time.time()) + "\n").encode())
        self.log(f"configuration saved to {self.saved_path}")


def _atomic_write(path: Path, text: str) -> None:
    """The running configuration's mirror: whole at every instant, but not fsynced (it is rewritten
    at every change and read only by people; ``save`` is what must survive a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

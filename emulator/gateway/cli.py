"""The gateway's command interpreter: a Huawei VRP-style CLI, pure and testable without SSH.

A :class:`Gateway` is the device (its configuration, its links, its shaper); a :class:`CliSession`
is one user's terminal on it (the view it is in).  ``CliSession.handle_line`` takes one typed
line and returns the text the device prints; the prompt to show next is ``CliSession.prompt``.

Commands are matched word by word like VRP: every keyword may be abbreviated to any unique prefix
(``dis int b`` is ``display interface brief``); ``q`` is ``quit``.  A line that does not parse gets
VRP's error marker with a caret under the offending word and changes nothing::

    <GW-A>display foo
                  ^
    Error: Unrecognized command found at '^' position.

What is configured really happens where it can: ``qos lr outbound cir <kbit/s> [cbs <bytes>]`` on
an interface puts a tc token bucket (tbf) on the Linux link the port maps to (at the CIR times the
lab's ``bandwidth_scale``: the CIR is the real rate, as on real gear), and ``undo qos lr
outbound`` removes it.  PFC (``dcb pfc`` view with ``priority <n>``, interface ``dcb pfc enable
mode {auto|manual}``) and ECN (``drop-profile`` view with ``color green low-limit .. high-limit ..
discard-percentage ..``, interface ``qos queue <q> wred <profile>`` and ``qos queue <q> ecn``) are
stored and shown.  ``save`` writes the configuration as VRP text; a new Gateway replays it.
``display version`` and ``display esn`` say what the device is in VRP's words, with the vendor,
serial and dcilab version of :mod:`emulator.identity`, so nobody mistakes it for real gear.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emulator.durable import save_durably
from emulator.identity import VENDOR, serial_number, software_version

VERSION = "V200R022C00SPC500"
MODEL = "DCILAB-AIGW"

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
    pfc_view: bool = False                             # `dcb pfc` was entered (the profile exists)
    drop_profiles: dict[str, DropProfile] = field(default_factory=dict)


def port_speed_kbps(name: str) -> int:
    m = re.match(r"(\d+)GE", name)
    if m:
        return int(m.group(1)) * 1_000_000
    if name.upper().startswith("GE"):
        return 1_000_000
    if name.lower().startswith("meth"):
        return 1_000_000
    return 10_000_000


def split_ifname(name: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"(\d*[A-Za-z][A-Za-z-]*)(\d+(?:/\d+)*)", name)
    return (m.group(1), m.group(2)) if m else None


def render_config(cfg: DeviceConfig, updated: float | None = None) -> str:
    lines = [f"!Software Version {VERSION}"]
    if updated:
        lines.append("!Last configuration was updated at "
                     + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(updated)))
    lines += ["#", f"sysname {cfg.sysname}", "#"]
    if cfg.pfc_view or cfg.pfc_priorities:
        lines.append("dcb pfc")
        lines += [f" priority {p}" for p in sorted(cfg.pfc_priorities)]
        lines.append("#")
    for name, dp in cfg.drop_profiles.items():
        lines.append(f"drop-profile {name}")
        if dp.green:
            lo, hi, pct = dp.green
            lines.append(f" color green low-limit {lo} high-limit {hi} discard-percentage {pct}")
        lines.append("#")
    for name, pc in cfg.ports.items():
        lines += [f"interface {name}"] + [" " + c for c in port_lines(pc)] + ["#"]
    lines.append("return")
    return "\n".join(lines)


def port_lines(pc: PortConfig) -> list[str]:
    out = []
    if pc.description:
        out.append(f"description {pc.description}")
    if pc.lr_cir_kbps is not None:
        out.append(f"qos lr outbound cir {pc.lr_cir_kbps}" + (f" cbs {pc.lr_cbs}" if pc.lr_cbs else ""))
    if pc.pfc_mode:
        out.append(f"dcb pfc enable mode {pc.pfc_mode}")
    for q in sorted(set(pc.queue_wred) | pc.queue_ecn):
        if q in pc.queue_wred:
            out.append(f"qos queue {q} wred {pc.queue_wred[q]}")
        if q in pc.queue_ecn:
            out.append(f"qos queue {q} ecn")
    return out


# ------------------------------------------------------------------------------------ grammar

class CliError(Exception):
    """A VRP error marker: kind is Unrecognized/Incomplete/Wrong parameter/Ambiguous/Too many parameters."""

    def __init__(self, kind: str, pos: int) -> None:
        super().__init__(kind)
        self.kind = kind
        self.pos = pos


class Fail(Exception):
    """A command that parsed but cannot be done; the message is printed as is."""


@dataclass
class Kw:
    word: str
    key: str | None = None          # record the chosen keyword under this argument name
    aliases: tuple[str, ...] = ()   # abbreviations that win even when ambiguous (VRP's `q`)


@dataclass
class Param:
    key: str
    conv: Callable[[str], Any]      # returns the value or raises ValueError


@dataclass
class Rest:
    key: str                        # the rest of the line, as typed


@dataclass
class Cmd:
    views: frozenset[str]
    pattern: list[Kw | Param | Rest]
    handler: str


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    def conv(tok: str) -> int:
        if not re.fullmatch(r"\d{1,10}", tok):
            raise ValueError(tok)
        v = int(tok)
        if not lo <= v <= hi:
            raise ValueError(tok)
        return v
    return conv


def name_word(tok: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,31}", tok):
        raise ValueError(tok)
    return tok


def sysname_word(tok: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tok):
        raise ValueError(tok)
    return tok


ALL = frozenset({"user", "system", "interface", "dcb-pfc", "drop-profile"})
CONF = ALL - {"user"}
USER = frozenset({"user"})
SYS = frozenset({"system"})
IFV = frozenset({"interface"})


def _spec(text: str) -> list[Kw | Param | Rest]:
    """'display interface <if>' -> tokens; <name> refers to PARAMS; 'q|quit' gives an alias."""
    out: list[Kw | Param | Rest] = []
    for w in text.split():
        if w.startswith("<"):
            key = w.strip("<>")
            out.append(Rest(key) if key == "text" else Param(key, PARAMS[key]))
        elif "=" in w:                                     # key=word : keyword recorded as argument
            key, word = w.split("=")
            out.append(Kw(word, key=key))
        else:
            out.append(Kw(w))
    return out


PARAMS: dict[str, Callable[[str], Any]] = {
    "cir": int_range(8, 400_000_000),
    "cbs": int_range(10_000, 4_294_967_295),
    "prio": int_range(0, 7),
    "queue": int_range(0, 7),
    "pct": int_range(0, 100),
    "low": int_range(0, 100),
    "high": int_range(0, 100),
    "name": name_word,
    "sysname": sysname_word,
    "if": lambda t: t,              # resolved against the port map by the session
    "zero": int_range(0, 512),
}

GRAMMAR: list[tuple[frozenset[str], str, str]] = [
    (ALL, "display version", "display_version"),
    (ALL, "display esn", "display_esn"),
    (ALL, "display interface", "display_interface"),
    (ALL, "display interface brief", "display_interface_brief"),
    (ALL, "display interface <if>", "display_interface"),
    (ALL, "display current-configuration", "display_current"),
    (ALL, "display current-configuration interface <if>", "display_current_if"),
    (ALL, "display saved-configuration", "display_saved"),
    (CONF, "display this", "display_this"),
    (ALL, "display dcb pfc interface", "display_pfc"),
    (ALL, "display dcb pfc interface <if>", "display_pfc"),
    (ALL, "display qos lr outbound interface", "display_lr"),
    (ALL, "display qos lr outbound interface <if>", "display_lr"),
    (ALL, "display drop-profile", "display_drop_profile"),
    (ALL, "display drop-profile <name>", "display_drop_profile"),
    (ALL, "save", "save"),
    (ALL, "quit", "quit"),
    (CONF, "return", "return_"),
    (USER, "screen-length <zero> temporary", "screen_length"),
    (USER, "undo screen-length temporary", "screen_length"),
    (USER, "system-view", "system_view"),
    (SYS, "sysname <sysname>", "sysname"),
    (CONF, "interface <if>", "interface"),
    (SYS, "dcb pfc", "dcb_pfc_view"),
    (SYS, "undo dcb pfc", "undo_dcb_pfc"),
    (SYS, "drop-profile <name>", "drop_profile_view"),
    (SYS, "undo drop-profile <name>", "undo_drop_profile"),
    (frozenset({"dcb-pfc"}), "priority <prio>", "pfc_priority"),
    (frozenset({"dcb-pfc"}), "undo priority <prio>", "undo_pfc_priority"),
    (frozenset({"drop-profile"}), "color green low-limit <low> high-limit <high> discard-percentage <pct>",
     "wred_color"),
    (frozenset({"drop-profile"}), "undo color green", "undo_wred_color"),
    (IFV, "description <text>", "description"),
    (IFV, "undo description", "undo_description"),
    (IFV, "qos lr outbound cir <cir>", "qos_lr"),
    (IFV, "qos lr outbound cir <cir> cbs <cbs>", "qos_lr"),
    (IFV, "undo qos lr outbound", "undo_qos_lr"),
    (IFV, "dcb pfc enable mode mode=auto", "pfc_enable"),
    (IFV, "dcb pfc enable mode mode=manual", "pfc_enable"),
    (IFV, "undo dcb pfc enable", "undo_pfc_enable"),
    (IFV, "qos queue <queue> wred <name>", "queue_wred"),
    (IFV, "undo qos queue <queue> wred", "undo_queue_wred"),
    (IFV, "qos queue <queue> ecn", "queue_ecn"),
    (IFV, "undo qos queue <queue> ecn", "undo_queue_ecn"),
]

COMMANDS = [Cmd(views, _spec(text), handler) for views, text, handler in GRAMMAR]
for _c in COMMANDS:                       # VRP's single-letter quit
    if _c.handler == "quit":
        _c.pattern[0].aliases = ("q",)


def tokenize(line: str) -> list[tuple[str, int]]:
    """Words with their columns; VRP's two-word interface form `100GE 1/0/1` becomes one word."""
    toks = [(m.group(), m.start()) for m in re.finditer(r"\S+", line)]
    out: list[tuple[str, int]] = []
    for tok, pos in toks:
        if out and re.fullmatch(r"\d+(?:/\d+)+", tok) and re.fullmatch(r"\d*[A-Za-z][A-Za-z-]*", out[-1][0]) \
                and len(out) >= 2:
            out[-1] = (out[-1][0] + tok, out[-1][1])
        else:
            out.append((tok, pos))
    return out


def unsafe_char_at(text: str) -> int | None:
    """Where ``text`` holds a control character or a line/paragraph separator, if it does.

    Free text (a description) is saved as one line of the configuration, and a saved configuration
    is replayed with str.splitlines(): a break it honours (\\v, \\f, \\x1c-\\x1e, \\x85, U+2028,
    U+2029 as well as \\r and \\n) would make the rest of the text a command of its own."""
    for i, ch in enumerate(text.rstrip()):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return i
    return None


def parse(line: str, view: str, resolve_if: Callable[[str], str]) -> tuple[Cmd, dict[str, Any]]:
    """Match a line against the grammar of a view; raises CliError with the caret position."""
    toks = tokenize(line)
    cands: list[tuple[Cmd, dict[str, Any]]] = [(c, {}) for c in COMMANDS if view in c.views]
    for i, (tok, pos) in enumerate(toks):
        low = tok.lower()
        exact, prefix, params, rests = [], [], [], []
        had_param = had_overflow = False
        for cmd, args in cands:
            if i >= len(cmd.pattern):
                had_overflow = True
                continue
            spec = cmd.pattern[i]
            if isinstance(spec, Kw):
                if low == spec.word or low in spec.aliases:
                    exact.append((cmd, args, spec))
                elif spec.word.startswith(low):
                    prefix.append((cmd, args, spec))
            elif isinstance(spec, Rest):
                rests.append((cmd, {**args, spec.key: line[pos:].strip()}))
            else:
                had_param = True
                try:
                    val = resolve_if(tok) if spec.key == "if" else spec.conv(tok)
                except ValueError:
                    continue
                params.append((cmd, {**args, spec.key: val}))
        if rests:                                         # free text swallows the rest of the line
            bad = unsafe_char_at(line[pos:])
            if bad is not None:
                raise CliError("Wrong parameter", pos + bad)
            return rests[0]
        if exact:
            chosen = exact
        elif prefix:
            if len({s.word for _, _, s in prefix}) > 1:
                raise CliError("Ambiguous command", pos)
            chosen = prefix
        else:
            chosen = []
        if chosen:
            cands = [(c, {**a, s.key: s.word} if s.key else a) for c, a, s in chosen]
        elif params:
            cands = params
        elif had_param:
            raise CliError("Wrong parameter", pos)
        elif had_overflow and i > 0:
            raise CliError("Too many parameters", pos)
        else:
            raise CliError("Unrecognized command", pos)
    complete = [(c, a) for c, a in cands if len(c.pattern) == len(toks)]
    if complete:
        return complete[0]
    end = toks[-1][1] + len(toks[-1][0]) + 1 if toks else 0
    raise CliError("Incomplete command", end)


# ------------------------------------------------------------------------------------ device

class Gateway:
    """The device: configuration, links and shaper, shared by all sessions."""

    def __init__(self, sysname: str, ports: dict[str, str], saved_config: str | Path | None = None,
                 links: LinkReader | None = None, tc: TcRunner | None = None,
                 running_copy: str | Path | None = None, log: Callable[[str], None] | None = None,
                 bandwidth_scale: float = 1.0) -> None:
        if not ports:
            raise ValueError("the port map is empty")
        for name in ports:
            if not split_ifname(name):
                raise ValueError(f"port name {name!r} is not a VRP interface name like 100GE1/0/1")
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

    # ---- startup
    def load_saved(self) -> list[str]:
        """Replay the saved configuration; returns the error lines (empty when it all applied)."""
        errors: list[str] = []
        if self.saved_path and self.saved_path.exists():
            errors = self.replay(self.saved_path.read_text())
        self.reconcile_shaping()
        return errors

    def replay(self, text: str) -> list[str]:
        s = CliSession(self)
        s.view, errors = "system", []
        for raw in text.splitlines():
            if not raw.strip() or raw.lstrip().startswith(("#", "!")) or raw.strip() == "return":
                continue
            if not raw.startswith(" "):
                s.view, s.iface, s.profile = "system", None, None
            out = s.handle_line(raw.strip())
            if "Error:" in out:
                errors.append(f"{raw.strip()}: {out.strip().splitlines()[-1]}")
        return errors

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
            _atomic_write(self.running_copy, render_config(self.config, self.updated) + "\n")

    def apply_lr(self, port: str, cir_kbps: int, cbs: int | None) -> None:
        ifname = self.ports[port]
        info = self.links.info(ifname)
        if info is None:
            raise Fail(f"Error: The interface {port} is not present (link {ifname} not found).")
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
            raise Fail(f"Error: Failed to apply the rate limit on {port}: {err.strip() or 'tc failed'}")
        scaled = f", tbf {rate_kbps} kbit/s (bandwidth scale {self.bandwidth_scale:g})" if rate_kbps != cir_kbps else ""
        self.log(f"{port} ({ifname}): qos lr outbound cir {cir_kbps} kbit/s{scaled}, tbf burst {burst} B")

    def remove_lr(self, port: str) -> None:
        ifname = self.ports[port]
        if self.links.info(ifname) is None:
            return
        rc, _, err = self.tc(["qdisc", "del", "dev", ifname, "root"])
        if rc != 0 and "No such file" not in err and "handle of zero" not in err:
            raise Fail(f"Error: Failed to remove the rate limit on {port}: {err.strip()}")
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
        if not self.saved_path:
            raise Fail("Error: No configuration file is set for this device; the configuration was not saved.")
        self.saved_path.parent.mkdir(parents=True, exist_ok=True)
        save_durably(self.saved_path, (render_config(self.config, self.updated or time.time()) + "\n").encode())
        self.log(f"configuration saved to {self.saved_path}")


def _atomic_write(path: Path, text: str) -> None:
    """The running configuration's mirror: whole at every instant, but not fsynced (it is rewritten
    at every change and read only by people; ``save`` is what must survive a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------- session

ERR_TAIL = " found at '^' position."
MAX_LINE = 510
"""Characters in one command line (VRP: "each command can contain a maximum of 510 characters")."""


class CliSession:
    """One terminal on the gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.view = "user"
        self.iface: str | None = None
        self.profile: str | None = None
        self.closed = False
        self.screen_length: int | None = None
        self._confirm: Callable[[str], str] | None = None

    @property
    def prompt(self) -> str:
        if self._confirm:
            return ""
        name = self.gw.config.sysname
        if self.view == "user":
            return f"<{name}>"
        if self.view == "system":
            return f"[{name}]"
        if self.view == "interface":
            return f"[{name}-{self.iface}]"
        if self.view == "dcb-pfc":
            return f"[{name}-dcb-pfc-default]"
        return f"[{name}-drop-profile-{self.profile}]"

    def handle_line(self, line: str) -> str:
        """Run one typed line; returns the output text (lines joined by '\\n', no trailing newline)."""
        if self._confirm:
            answer, self._confirm = self._confirm, None
            return answer(line.strip())
        if len(line) > MAX_LINE:
            # VRP's editing buffer takes no more (the terminal rings instead) and would run what it
            # holds; a script's over-long line is refused whole rather than run cut short.
            return f"Error: The command is longer than {MAX_LINE} characters and was not run."
        if any("\udc80" <= ch <= "\udcff" for ch in line):     # bytes that are not UTF-8 (surrogateescape)
            return "Error: The command is not valid UTF-8 and was not run."
        if not line.strip():
            return ""
        prompt = self.prompt
        try:
            cmd, args = parse(line, self.view, self.gw.resolve_if)
        except CliError as e:
            return " " * (len(prompt) + e.pos) + "^\n" + f"Error: {e.kind}{ERR_TAIL}"
        try:
            with self.gw.lock:
                return getattr(self, "do_" + cmd.handler)(**args) or ""
        except Fail as e:
            return str(e)

    # ---- views
    def do_quit(self) -> str:
        if self.view == "user":
            self.closed = True
        elif self.view == "system":
            self.view = "user"
        else:
            self.view, self.iface, self.profile = "system", None, None
        return ""

    def do_return_(self) -> str:
        self.view, self.iface, self.profile = "user", None, None
        return ""

    def do_system_view(self) -> str:
        self.view = "system"
        return "Enter system view, return user view with return command."

    def do_interface(self, **a: Any) -> str:
        self.view, self.iface, self.profile = "interface", a["if"], None
        return ""

    def do_screen_length(self, zero: int | None = None) -> str:
        self.screen_length = zero
        return "Info: The configuration takes effect on the current user terminal interface only."

    def do_sysname(self, sysname: str) -> str:
        self.gw.config.sysname = sysname
        self.gw.changed()
        return ""

    def do_dcb_pfc_view(self) -> str:
        if not self.gw.config.pfc_view:
            self.gw.config.pfc_view = True
            self.gw.changed()
        self.view = "dcb-pfc"
        return ""

    def do_undo_dcb_pfc(self) -> str:
        if any(p.pfc_mode for p in self.gw.config.ports.values()):
            raise Fail("Error: The PFC profile is in use on an interface; undo dcb pfc enable there first.")
        self.gw.config.pfc_view, self.gw.config.pfc_priorities = False, set()
        self.gw.changed()
        return ""

    def do_drop_profile_view(self, name: str) -> str:
        if name not in self.gw.config.drop_profiles:
            if len(self.gw.config.drop_profiles) >= 16:
                raise Fail("Error: The number of drop profiles has reached the upper limit (16).")
            self.gw.config.drop_profiles[name] = DropProfile()
            self.gw.changed()
        self.view, self.profile = "drop-profile", name
        return ""

    def do_undo_drop_profile(self, name: str) -> str:
        if name not in self.gw.config.drop_profiles:
            raise Fail(f"Error: The drop profile {name} does not exist.")
        users = [p for p, pc in self.gw.config.ports.items() if name in pc.queue_wred.values()]
        if users:
            raise Fail(f"Error: The drop profile {name} is applied to {', '.join(users)}.")
        del self.gw.config.drop_profiles[name]
        self.gw.changed()
        return ""

    # ---- dcb pfc / drop-profile views
    def do_pfc_priority(self, prio: int) -> str:
        self.gw.config.pfc_priorities.add(prio)
        self.gw.changed()
        return ""

    def do_undo_pfc_priority(self, prio: int) -> str:
        self.gw.config.pfc_priorities.discard(prio)
        self.gw.changed()
        return ""

    def do_wred_color(self, low: int, high: int, pct: int) -> str:
        if low > high:
            raise Fail("Error: The low-limit must not be greater than the high-limit.")
        assert self.profile is not None
        self.gw.config.drop_profiles[self.profile].green = (low, high, pct)
        self.gw.changed()
        return ""

    def do_undo_wred_color(self) -> str:
        assert self.profile is not None
        self.gw.config.drop_profiles[self.profile].green = None
        self.gw.changed()
        return ""

    # ---- interface view
    @property
    def _port(self) -> PortConfig:
        assert self.iface is not None
        return self.gw.config.ports[self.iface]

    def do_description(self, text: str) -> str:
        if len(text) > 242:
            raise Fail("Error: The description is longer than 242 characters.")
        self._port.description = text
        self.gw.changed()
        return ""

    def do_undo_description(self) -> str:
        self._port.description = None
        self.gw.changed()
        return ""

    def do_qos_lr(self, cir: int, cbs: int | None = None) -> str:
        assert self.iface is not None
        if cir > port_speed_kbps(self.iface):
            raise Fail(f"Error: The CIR exceeds the bandwidth of {self.iface} "
                       f"({port_speed_kbps(self.iface)} kbit/s).")
        self.gw.apply_lr(self.iface, cir, cbs)
        self._port.lr_cir_kbps, self._port.lr_cbs = cir, cbs
        self.gw.changed()
        return ""

    def do_undo_qos_lr(self) -> str:
        assert self.iface is not None
        if self._port.lr_cir_kbps is None:
            return "Info: No rate limit is configured on this interface."
        self.gw.remove_lr(self.iface)
        self._port.lr_cir_kbps = self._port.lr_cbs = None
        self.gw.changed()
        return ""

    def do_pfc_enable(self, mode: str) -> str:
        if not self.gw.config.pfc_view:
            raise Fail("Error: The PFC profile does not exist; run dcb pfc in the system view first.")
        self._port.pfc_mode = mode
        self.gw.changed()
        return ""

    def do_undo_pfc_enable(self) -> str:
        self._port.pfc_mode = None
        self.gw.changed()
        return ""

    def do_queue_wred(self, queue: int, name: str) -> str:
        if name not in self.gw.config.drop_profiles:
            raise Fail(f"Error: The drop profile {name} does not exist.")
        self._port.queue_wred[queue] = name
        self.gw.changed()
        return ""

    def do_undo_queue_wred(self, queue: int) -> str:
        if queue in self._port.queue_ecn:
            raise Fail(f"Error: ECN is enabled on queue {queue}; undo qos queue {queue} ecn first.")
        self._port.queue_wred.pop(queue, None)
        self.gw.changed()
        return ""

    def do_queue_ecn(self, queue: int) -> str:
        if queue not in self._port.queue_wred:
            raise Fail(f"Error: Apply a drop profile to queue {queue} (qos queue {queue} wred) before enabling ECN.")
        self._port.queue_ecn.add(queue)
        self.gw.changed()
        return ""

    def do_undo_queue_ecn(self, queue: int) -> str:
        self._port.queue_ecn.discard(queue)
        self.gw.changed()
        return ""

    # ---- save
    def do_save(self) -> str:
        def answer(reply: str) -> str:
            if reply.lower() in ("y", "yes"):
                with self.gw.lock:
                    try:
                        self.gw.save()
                    except (Fail, OSError) as e:
                        return str(e) if isinstance(e, Fail) else f"Error: Failed to save the configuration: {e}"
                return ("Now saving the current configuration to the slot 1.\n"
                        "Info: Save the configuration successfully.")
            return "Info: The configuration was not saved."
        self._confirm = answer
        return ("Warning: The current configuration will be written to the device.\n"
                "Are you sure to continue?[Y/N]:")

    # ---- display
    def do_display_version(self) -> str:
        up = int(time.time() - self.gw.started)
        d, h, m = up // 86400, up % 86400 // 3600, up % 3600 // 60
        return "\n".join([
            "Huawei Versatile Routing Platform Software",
            f"VRP (R) software, Version 5.170 ({MODEL} {VERSION})",
            "Copyright (C) 2000-2024 HUAWEI TECH Co., Ltd.",
            f"{VENDOR} {MODEL} Routing Switch uptime is {d} days, {h} hours, {m} minutes",
            (f"(emulated by dcilab {software_version()}; counters and shaping are those of the Linux links of "
             "this namespace)"),
        ])

    def do_display_esn(self) -> str:
        """The equipment serial number, derived from the name the gateway was started with (stable
        across runs and ``sysname`` changes, like a real ESN)."""
        return f"ESN of slot 1: {serial_number(self.gw.default_sysname)}"

    def do_display_current(self) -> str:
        return render_config(self.gw.config)

    def do_display_current_if(self, **a: Any) -> str:
        port = a["if"]
        return "\n".join(["#", f"interface {port}"] + [" " + c for c in port_lines(self.gw.config.ports[port])]
                         + ["#", "return"])

    def do_display_this(self) -> str:
        cfg = self.gw.config
        if self.view == "interface":
            assert self.iface is not None
            body = [f"interface {self.iface}"] + [" " + c for c in port_lines(cfg.ports[self.iface])]
        elif self.view == "dcb-pfc":
            body = ["dcb pfc"] + [f" priority {p}" for p in sorted(cfg.pfc_priorities)]
        elif self.view == "drop-profile":
            assert self.profile is not None
            dp = cfg.drop_profiles[self.profile]
            body = [f"drop-profile {self.profile}"]
            if dp.green:
                body.append(" color green low-limit {} high-limit {} discard-percentage {}".format(*dp.green))
        else:
            body = [ln for ln in render_config(cfg).splitlines() if not ln.startswith(("!", "#")) and ln != "return"]
        return "\n".join(["#"] + body + ["#", "return"])

    def do_display_saved(self) -> str:
        p = self.gw.saved_path
        if not p or not p.exists():
            return "Info: The system is now comparing the configuration, please wait.\nInfo: There is no saved configuration."
        return p.read_text().rstrip("\n")

    def do_display_interface_brief(self) -> str:
        out = ["PHY: Physical", "*down: administratively down", "(l): loopback", "(s): spoofing",
               "(b): BFD down", "(e): ETHOAM down", "(d): Dampening Suppressed",
               "InUti/OutUti: input utility/output utility",
               f"{'Interface':<27}{'PHY':<9}{'Protocol':<10}{'InUti':>6}{'OutUti':>7}{'inErrors':>11}{'outErrors':>11}"]
        for port, ifname in self.gw.ports.items():
            info = self.gw.links.info(ifname)
            st = self.gw.links.stats(ifname) if info else {k: 0 for k in STAT_NAMES}
            phy, proto = _states(info)
            rin, rout, _, _ = self.gw.rates(port, st) if info else (0.0, 0.0, 0.0, 0.0)
            speed = port_speed_kbps(port) * 1000
            out.append(f"{port:<27}{phy:<9}{proto:<10}{_uti(rin, speed):>6}{_uti(rout, speed):>7}"
                       f"{st['rx_errors']:>11}{st['tx_errors']:>11}")
        return "\n".join(out)

    def do_display_interface(self, **a: Any) -> str:
        ports = [a["if"]] if "if" in a else list(self.gw.ports)
        return "\n\n".join(self._interface_detail(p) for p in ports)

    def _interface_detail(self, port: str) -> str:
        ifname = self.gw.ports[port]
        info = self.gw.links.info(ifname)
        pc = self.gw.config.ports[port]
        phy, proto = _states(info)
        if info is None:
            return "\n".join([f"{port} current state : DOWN (ifindex: 0)",
                              "Line protocol current state : DOWN",
                              f"Description: {pc.description or ''}",
                              f"Info: The port is not present (link {ifname} is absent)."])
        st = self.gw.links.stats(ifname)
        rin, rout, pin, pout = self.gw.rates(port, st)
        speed = port_speed_kbps(port) * 1000
        state = {"up": "UP", "down": "DOWN"}[phy] if phy in ("up", "down") else "Administratively DOWN"
        mac = info["address"].replace(":", "")
        mac = "-".join(mac[i:i + 4] for i in range(0, 12, 4)) if len(mac) == 12 else info["address"]
        lines = [f"{port} current state : {state} (ifindex: {info['ifindex']})",
                 f"Line protocol current state : {proto.upper()}",
                 f"Description: {pc.description or ''}",
                 f"Route Port,The Maximum Transmit Unit is {info['mtu']}"]
        if info.get("ipv4"):
            lines += [f"Internet Address is {a}" for a in info["ipv4"]]
        else:
            lines.append("Internet protocol processing : disabled")
        lines += [f"IP Sending Frames' Format is PKTFMT_ETHNT_2, Hardware address is {mac}",
                  f"Port Mode: COMMON FIBER, Linux link: {ifname}",
                  f"Speed: {speed // 1_000_000}, Loopback: NONE",
                  "Duplex: FULL, Negotiation: DISABLE",
                  "Mdi: -, Flow-control: DISABLE"]
        if pc.lr_cir_kbps is not None:
            lines.append(f"Outbound rate limit: CIR {pc.lr_cir_kbps} kbit/s"
                         + (f", CBS {pc.lr_cbs} bytes" if pc.lr_cbs else ""))
        lines += [f"Last 300 seconds input rate: {int(rin)} bits/sec, {int(pin)} packets/sec",
                  f"Last 300 seconds output rate: {int(rout)} bits/sec, {int(pout)} packets/sec",
                  f"Input:  {st['rx_packets']} packets, {st['rx_bytes']} bytes",
                  (f"  Unicast:             {max(st['rx_packets'] - st['multicast'], 0)},  "
                   f"Multicast:           {st['multicast']}"),
                  f"  Total Error:         {st['rx_errors']},  CRC: {st['rx_crc_errors']}",
                  f"  Discard:             {st['rx_dropped']}",
                  f"Output: {st['tx_packets']} packets, {st['tx_bytes']} bytes",
                  f"  Total Error:         {st['tx_errors']}",
                  f"  Discard:             {st['tx_dropped']}",
                  f"    Input bandwidth utilization  : {_uti(rin, speed)}",
                  f"    Output bandwidth utilization : {_uti(rout, speed)}"]
        return "\n".join(lines)

    def do_display_pfc(self, **a: Any) -> str:
        ports = [a["if"]] if "if" in a else list(self.gw.ports)
        prios = ",".join(str(p) for p in sorted(self.gw.config.pfc_priorities)) or "-"
        out = [(f"{'Interface':<20}{'Mode':<10}{'Status':<10}{'Priority':<12}{'Received(frames)':>18}"
                f"{'Transmitted(frames)':>21}")]
        for p in ports:
            pc = self.gw.config.ports[p]
            out.append(f"{p:<20}{pc.pfc_mode or '-':<10}{'enable' if pc.pfc_mode else 'disable':<10}"
                       f"{prios if pc.pfc_mode else '-':<12}{0:>18}{0:>21}")
        return "\n".join(out)

    def do_display_lr(self, **a: Any) -> str:
        ports = [a["if"]] if "if" in a else list(self.gw.ports)
        out = []
        for p in ports:
            pc = self.gw.config.ports[p]
            if pc.lr_cir_kbps is None:
                continue
            ifname = self.gw.ports[p]
            rc, txt, _ = self.gw.tc(["-s", "-j", "qdisc", "show", "dev", ifname, "root"])
            sent = dropped = over = 0
            try:
                for q in json.loads(txt or "[]") if rc == 0 else []:
                    if q.get("kind") == "tbf":
                        sent, dropped, over = q.get("bytes", 0), q.get("drops", 0), q.get("overlimits", 0)
            except (ValueError, AttributeError):
                pass
            out += [f"Interface {p}", " Direction: Outbound",
                    f" CIR(kbps): {pc.lr_cir_kbps}, CBS(bytes): {pc.lr_cbs or '-'}",
                    f" Passed: {sent} bytes, Discarded: {dropped} packets, Delayed(overlimits): {over}"]
        return "\n".join(out) if out else "Info: No rate limit is configured."

    def do_display_drop_profile(self, name: str | None = None) -> str:
        profiles = self.gw.config.drop_profiles
        if name is not None and name not in profiles:
            raise Fail(f"Error: The drop profile {name} does not exist.")
        out = []
        for n, dp in profiles.items():
            if name is not None and n != name:
                continue
            lo, hi, pct = dp.green or ("-", "-", "-")
            out += [f"Drop-profile[{n}]", f"{'Color':<8}{'Low-limit':>12}{'High-limit':>12}{'Discard-percentage':>20}",
                    f"{'Green':<8}{lo:>12}{hi:>12}{pct:>20}"]
        return "\n".join(out) if out else "Info: No drop profile exists."


def _states(info: dict[str, Any] | None) -> tuple[str, str]:
    if info is None:
        return "down", "down"
    if not info.get("admin_up", True):
        return "*down", "down"
    up = info.get("operstate") in ("up", "unknown") and info.get("carrier", True)
    return ("up", "up") if up else ("down", "down")


def _uti(bps: float, speed_bps: int) -> str:
    if speed_bps <= 0:
        return "0%"
    pct = 100.0 * bps / speed_bps
    return f"{pct:.2f}%" if 0 < pct < 1 else f"{pct:.0f}%"

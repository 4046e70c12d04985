"""The physics and bookkeeping of an optical line, as pure functions and plain data.

Kept free of I/O so the numbers the data plane uses (delay, loss, shaping) can be checked by
unit tests and by the bench against the same formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .roce import TransportConfig

FIBER_DELAY_S_PER_KM = 4.9e-6
"""One-way delay of standard single-mode fibre (group index ~1.468): 4.9 us per km."""

FCS_BYTES = 4
"""A TAP hands us Ethernet frames without their FCS; the wire (and the bit errors) carry it."""

MAX_PATHS = 8
"""Paths one line can carry (working, protection, restoration, ...); fixes the shared layout."""

IFNAMSIZ = 16


def propagation_delay_s(length_km: float) -> float:
    """One-way fibre delay of ``length_km`` km."""
    if length_km < 0:
        raise ValueError(f"length_km must be >= 0, got {length_km}")
    return length_km * FIBER_DELAY_S_PER_KM


def frame_bits(frame_bytes: int) -> int:
    """Bits a frame occupies on the line: the frame as read from the TAP plus its 4-byte FCS.

    Preamble and inter-frame gap are not counted: an OTN mapping (GFP-F) strips them, so
    only header + payload + FCS travel (and can be hit by bit errors).
    """
    return (frame_bytes + FCS_BYTES) * 8


def frame_loss_probability(ber: float, frame_bytes: int) -> float:
    """Probability that at least one of the frame's bits is flipped, which makes the FCS
    check fail and the receiver discard the frame: 1 - (1 - ber) ** bits.

    ``bits`` is ``frame_bits(frame_bytes)`` (frame + FCS). Computed as
    -expm1(bits * log1p(-ber)) so tiny BERs (1e-12) do not vanish in rounding.
    """
    if not 0.0 <= ber <= 1.0 or math.isnan(ber):
        raise ValueError(f"ber must be within [0, 1], got {ber}")
    if frame_bytes < 0:
        raise ValueError(f"frame_bytes must be >= 0, got {frame_bytes}")
    if ber == 0.0:
        return 0.0
    if ber == 1.0:
        return 1.0
    return -math.expm1(frame_bits(frame_bytes) * math.log1p(-ber))


def schedule_departure(
    arrival_s: float, bits: int, rate_bps: float, last_departure_s: float, buffer_s: float
) -> float | None:
    """When the frame's last bit leaves the rate shaper, or None if the queue tail-drops it.

    The shaper is a FIFO served at ``rate_bps`` (0 = unlimited: departs on arrival). A frame
    starts serialising when it arrives or when the previous frame has left, whichever is
    later; if that wait would exceed ``buffer_s`` (the queue's depth in seconds of line
    time), the frame is dropped, as a full buffer drops on real gear.
    """
    if rate_bps <= 0:
        return arrival_s
    start = max(arrival_s, last_departure_s)
    if start - arrival_s > buffer_s:
        return None
    return start + bits / rate_bps


# --- configuration ---------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    # An int is finite, and math.isfinite(10**400) raises OverflowError instead of answering.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def _number(d: dict[str, Any], key: str, where: str, default: Any = ..., lo: float | None = None,
            hi: float | None = None, hi_open: bool = False) -> float:
    name = f"{where}{key}"
    if key not in d:
        if default is ...:
            raise ValueError(f"{name}: required field is missing")
        return default
    v = d[key]
    if not _is_number(v):
        raise ValueError(f"{name}: must be a finite number, got {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name}: must be >= {lo:g}, got {v!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"{name}: must be {'<' if hi_open else '<='} {hi:g}, got {v!r}")
    return v


def _string(d: dict[str, Any], key: str, where: str, default: Any = ...) -> str:
    name = f"{where}{key}"
    if key not in d:
        if default is ...:
            raise ValueError(f"{name}: required field is missing")
        return default
    v = d[key]
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{name}: must be a non-empty string, got {v!r}")
    return v


def _no_unknown(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ValueError(f"{where}{extra[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _mapping(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{where or 'config'}: must be a JSON object, got {type(v).__name__}")  # noqa: TRY004
    return v


def check_ber(v: Any, name: str = "ber") -> float:
    """A BER is a probability per bit; 1 would make every frame vanish, which is a cut."""
    if not _is_number(v) or not 0.0 <= v < 1.0:
        raise ValueError(f"{name}: must be a number in [0, 1), got {v!r}")
    return float(v)


@dataclass(frozen=True)
class PathConfig:
    """One fibre route the line can be switched onto."""

    name: str
    length_km: float
    ber: float = 0.0
    up: bool = True

    @property
    def delay_s(self) -> float:
        return propagation_delay_s(self.length_km)

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> PathConfig:
        d = _mapping(d, where.rstrip("."))
        _no_unknown(d, {"name", "length_km", "ber", "up"}, where)
        name = _string(d, "name", where)
        length = _number(d, "length_km", where, lo=0.0, hi=40000.0)
        ber = check_ber(d.get("ber", 0.0), f"{where}ber")
        up = d.get("up", True)
        if not isinstance(up, bool):
            raise ValueError(f"{where}up: must be true or false, got {up!r}")  # noqa: TRY004
        return cls(name=name, length_km=float(length), ber=ber, up=up)


@dataclass(frozen=True)
class EndConfig:
    """Where one end of the line plugs in: a TAP named ``ifname`` inside netns ``netns``."""

    netns: str
    ifname: str

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> EndConfig:
        d = _mapping(d, where.rstrip("."))
        _no_unknown(d, {"netns", "ifname"}, where)
        netns = _string(d, "netns", where)
        if "/" in netns or netns in (".", "..") or any(c.isspace() for c in netns):
            raise ValueError(f"{where}netns: not a valid namespace name: {netns!r}")
        ifname = _string(d, "ifname", where)
        if len(ifname.encode()) >= IFNAMSIZ or "/" in ifname or ":" in ifname or \
                any(c.isspace() for c in ifname) or ifname in (".", ".."):
            raise ValueError(f"{where}ifname: not a valid interface name (max 15 chars, "
                             f"no '/', ':' or spaces): {ifname!r}")
        return cls(netns=netns, ifname=ifname)


PROTECTION_MODES = ("sncp", "none")
MAX_PROTECTION_MS = 3_600_000.0
MAX_WTR_S = 86_400.0


def _bool(d: dict[str, Any], key: str, where: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ValueError(f"{where}{key}: must be true or false, got {v!r}")  # noqa: TRY004
    return v


@dataclass(frozen=True)
class ProtectionConfig:
    """How the line protects itself: ODU 1+1 SNCP between ``working`` and ``protection`` and/or
    ASON restoration over the ``restoration`` paths (first one up wins). Times as in G.808.1:
    hold-off before acting on a signal fail, the switch itself, wait-to-restore before a
    revertive switch back. Used by ``configure_protection`` and the config's "protection"."""

    working: str
    mode: str = "none"
    protection: str | None = None
    hold_off_ms: float = 0.0
    switch_ms: float = 30.0
    revertive: bool = False
    wtr_s: float = 300.0
    ason: bool = False
    restoration: tuple[str, ...] = ()
    restoration_ms: float = 3000.0

    FIELDS = frozenset({"mode", "working", "protection", "hold_off_ms", "switch_ms", "revertive",
                        "wtr_s", "ason", "restoration", "restoration_ms"})

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "working": self.working, "protection": self.protection,
                "hold_off_ms": self.hold_off_ms, "switch_ms": self.switch_ms, "revertive": self.revertive,
                "wtr_s": self.wtr_s, "ason": self.ason, "restoration": list(self.restoration),
                "restoration_ms": self.restoration_ms}

    @classmethod
    def from_dict(cls, d: Any, path_names: list[str], default_working: str, where: str = "") -> ProtectionConfig:
        """Validate against the line's ``path_names``; every error starts with the field's name."""
        d = _mapping(d, where.rstrip("."))
        _no_unknown(d, set(cls.FIELDS), where)
        known = ", ".join(path_names)

        def path(key: str, v: Any) -> str:
            if not isinstance(v, str) or v not in path_names:
                raise ValueError(f"{where}{key}: must name one of the paths ({known}), got {v!r}")
            return v

        mode = d.get("mode")
        if "mode" not in d:
            raise ValueError(f"{where}mode: required field is missing (one of: sncp, none)")
        if mode not in PROTECTION_MODES:
            raise ValueError(f"{where}mode: must be one of sncp, none, got {mode!r}")
        working = path("working", d.get("working", default_working))
        prot = d.get("protection")
        if prot is not None:
            prot = path("protection", prot)
            if prot == working:
                raise ValueError(f"{where}protection: must differ from working ({working!r})")
        if mode == "sncp" and prot is None:
            raise ValueError(f"{where}protection: mode sncp needs a protection path ({known})")
        hold = _number(d, "hold_off_ms", where, default=0.0, lo=0.0, hi=MAX_PROTECTION_MS)
        sw = _number(d, "switch_ms", where, default=30.0, lo=0.0, hi=MAX_PROTECTION_MS)
        revertive = _bool(d, "revertive", where, False)
        wtr = _number(d, "wtr_s", where, default=300.0, lo=0.0, hi=MAX_WTR_S)
        ason = _bool(d, "ason", where, False)
        rest_raw = d.get("restoration", [])
        if not isinstance(rest_raw, list):
            raise ValueError(f"{where}restoration: must be a list of path names, got {rest_raw!r}")  # noqa: TRY004
        rest: list[str] = []
        for i, r in enumerate(rest_raw):
            name = path(f"restoration[{i}]", r)
            if name in (working, prot):
                raise ValueError(f"{where}restoration[{i}]: {name!r} is the "
                                 f"{'working' if name == working else 'protection'} path")
            if name in rest:
                raise ValueError(f"{where}restoration[{i}]: {name!r} is listed twice")
            rest.append(name)
        if ason and not rest:
            raise ValueError(f"{where}restoration: ason needs at least one restoration path")
        rms = _number(d, "restoration_ms", where, default=3000.0, lo=0.0, hi=MAX_PROTECTION_MS)
        return cls(working=working, mode=mode, protection=prot, hold_off_ms=float(hold),
                   switch_ms=float(sw), revertive=revertive, wtr_s=float(wtr), ason=ason,
                   restoration=tuple(rest), restoration_ms=float(rms))


@dataclass(frozen=True)
class LineConfig:
    """Everything ``python -m emulator.line`` needs; parsed from the JSON config file."""

    control_socket: str
    ends: tuple[EndConfig, EndConfig]
    paths: tuple[PathConfig, ...]
    name: str = "line"
    pidfile: str | None = None
    mtu: int = 1500
    rate_bps: int = 0
    buffer_ms: float = 50.0
    active_path: str = ""
    seed: int | None = None
    protection: ProtectionConfig | None = None
    transport: TransportConfig | None = None
    """The RoCEv2 RC model the line imposes on TCP (roce.py, transport.py); None: plain TCP."""

    FIELDS = frozenset({"name", "control_socket", "pidfile", "ends", "mtu", "rate_bps",
                        "buffer_ms", "paths", "active_path", "seed", "protection", "transport"})

    @property
    def active_index(self) -> int:
        return self.path_index(self.active_path)

    def path_index(self, name: str) -> int:
        for i, p in enumerate(self.paths):
            if p.name == name:
                return i
        raise KeyError(name)

    @classmethod
    def from_dict(cls, d: Any) -> LineConfig:
        d = _mapping(d, "")
        _no_unknown(d, set(cls.FIELDS), "")
        name = _string(d, "name", "", default="line")
        sock = _string(d, "control_socket", "")
        if not sock.startswith("/"):
            raise ValueError(f"control_socket: must be an absolute path, got {sock!r}")
        if len(sock.encode()) > 100:
            raise ValueError(f"control_socket: path too long for a Unix socket "
                             f"({len(sock.encode())} bytes, max 100)")
        pidfile = d.get("pidfile")
        if pidfile is not None:
            pidfile = _string(d, "pidfile", "")
            if not pidfile.startswith("/"):
                raise ValueError(f"pidfile: must be an absolute path, got {pidfile!r}")

        ends_raw = d.get("ends")
        if "ends" not in d:
            raise ValueError("ends: required field is missing")
        if not isinstance(ends_raw, list) or len(ends_raw) != 2:
            raise ValueError(f"ends: must be a list of exactly 2 ends (A and B), got {ends_raw!r}")
        ends = (EndConfig.from_dict(ends_raw[0], "ends[0]."), EndConfig.from_dict(ends_raw[1], "ends[1]."))
        if ends[0] == ends[1]:
            raise ValueError("ends[1]: same netns and ifname as ends[0]")

        mtu = _number(d, "mtu", "", default=1500, lo=68, hi=65521)
        if not isinstance(mtu, int):
            raise ValueError(f"mtu: must be an integer, got {mtu!r}")  # noqa: TRY004
        rate = _number(d, "rate_bps", "", default=0, lo=0, hi=1e13)
        if not isinstance(rate, int) and not float(rate).is_integer():
            raise ValueError(f"rate_bps: must be a whole number of bit/s, got {rate!r}")
        buffer_ms = _number(d, "buffer_ms", "", default=50.0, hi=60_000.0)
        if buffer_ms <= 0:
            raise ValueError(f"buffer_ms: must be > 0, got {buffer_ms!r}")

        paths_raw = d.get("paths")
        if "paths" not in d:
            raise ValueError("paths: required field is missing")
        if not isinstance(paths_raw, list) or not paths_raw:
            raise ValueError(f"paths: must be a non-empty list of paths, got {paths_raw!r}")
        if len(paths_raw) > MAX_PATHS:
            raise ValueError(f"paths: at most {MAX_PATHS} paths, got {len(paths_raw)}")
        paths = tuple(PathConfig.from_dict(p, f"paths[{i}].") for i, p in enumerate(paths_raw))
        seen: set[str] = set()
        for i, p in enumerate(paths):
            if p.name in seen:
                raise ValueError(f"paths[{i}].name: duplicate path name {p.name!r}")
            seen.add(p.name)

        active = d.get("active_path", paths[0].name)
        if not isinstance(active, str) or active not in seen:
            raise ValueError(f"active_path: must name one of the paths "
                             f"({', '.join(p.name for p in paths)}), got {active!r}")
        seed = d.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed: must be an integer, got {seed!r}")
        protection = None
        if d.get("protection") is not None:
            protection = ProtectionConfig.from_dict(d["protection"], [p.name for p in paths],
                                                    default_working=active, where="protection.")
        transport = None
        if d.get("transport") is not None:
            transport = TransportConfig.from_dict(d["transport"], "transport.")
        return cls(control_socket=sock, ends=ends, paths=paths, name=name, pidfile=pidfile,
                   mtu=int(mtu), rate_bps=int(rate), buffer_ms=float(buffer_ms),
                   active_path=active, seed=seed, protection=protection, transport=transport)

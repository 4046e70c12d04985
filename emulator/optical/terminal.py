"""What both OTN terminal personalities share: the line rate, the protection engine of the line
(SNCP 1+1 / optical line protection and ASON restoration), and PM from the line's counters."""

from __future__ import annotations

import logging
import re

from emulator.line.control import LineControlError

from .device import Device, invalid
from .pm import PmEngine

log = logging.getLogger(__name__)

REQUEST_MAP = {"force": "force", "manual": "manual", "lockout": "lockout", "release": "release"}


def dec_check(value: str, digits: int, what: str, lo: float | None = None, hi: float | None = None) -> float:
    """A decimal64 lexical value with at most ``digits`` fraction digits, in [lo, hi]."""
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value or ""):
        raise invalid(f"{what}: {value!r} is not a decimal64 value", element=what)
    frac = value.split(".", 1)[1] if "." in value else ""
    if len(frac) > digits:
        raise invalid(f"{what}: {value!r} has more than {digits} fraction digits", element=what)
    v = float(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise invalid(f"{what}: {value} is out of range [{lo}, {hi}]", element=what)
    return v


def uint_check(value: str, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    if not re.fullmatch(r"\+?\d+", value or ""):
        raise invalid(f"{what}: {value!r} is not an unsigned integer", element=what)
    v = int(value)
    if not lo <= v <= hi:
        raise invalid(f"{what}: {v} is out of range [{lo}, {hi}]", element=what)
    return v


def bool_check(value: str, what: str) -> bool:
    if value not in ("true", "false"):
        raise invalid(f"{what}: {value!r} is not a boolean (true|false)", element=what)
    return value == "true"


def enum_check(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise invalid(f"{what}: {value!r} is not one of {', '.join(allowed)}", element=what)
    return value


class Terminal(Device):
    PM_SOURCES: dict = {"line": None}

    def __init__(self, cfg, line=None):
        self.svc = cfg.service
        self.rx_dir = "b_to_a" if self.svc.end == "a" else "a_to_b"
        self.pm = PmEngine(self.rx_dir, self.pm_sources(cfg))
        super().__init__(cfg, line)

    def pm_sources(self, cfg) -> dict:
        return {"line": None}

    # --- line helpers --------------------------------------------------------------------------
    def line_rate_gbps(self, st: dict | None) -> float:
        if not st:
            return float(self.svc.line_rate_gbps)
        return self.bps_to_gbps(st.get("rate_bps", 0)) or float(self.svc.line_rate_gbps)

    def path_info(self, st: dict, name: str | None) -> tuple[float, float, bool]:
        """(configured BER, length km, up) of a path, or of the active one (name None)."""
        paths = {p["name"]: p for p in (st or {}).get("paths", [])}
        pname = name or (st or {}).get("active_path") or self.svc.working
        p = paths.get(pname)
        if p is None:
            return 0.0, self.cfg.path(pname).length_km if pname in [x.name for x in self.cfg.paths] else 0.0, True
        up = bool(p.get("up", True))
        if name is None and (st or {}).get("outage", {}).get("active"):
            up = False
        return float(p.get("ber", 0.0)), float(p.get("length_km", 0.0)), up

    def source_info(self, st):
        def info(src):
            paths = self.pm.sources[src].paths
            ber, length, up = self.path_info(st, paths[0] if paths else None)
            return ber, length, up, self.line_rate_gbps(st)
        return info

    def pm_sample(self, st: dict) -> None:
        self.pm.sample(st, self.source_info(st))

    def pm_now(self, st: dict, src: str) -> dict:
        ber, length, up, rate = self.source_info(st)(src)
        return self.pm.current(src, st, ber, length, up, rate)

    def protection(self, st: dict | None) -> dict:
        return (st or {}).get("protection") or {}

    def set_rate_gbps(self, gbps: float) -> None:
        bps = self.rate_to_bps(gbps) if gbps > 0 else 1  # 0 would mean "unlimited" to the line
        log.info("%s: line rate -> %g G (%d bit/s on the emulated line)", self.cfg.name, gbps, bps)
        self.line.set_rate(bps)

    def configure_protection(self, hold_off_ms: float, revertive: bool, wtr_s: float) -> None:
        svc = self.svc
        kw = dict(mode="sncp" if svc.protection else "none", working=svc.working, protection=svc.protection,
                  hold_off_ms=hold_off_ms, switch_ms=svc.switch_ms, revertive=revertive, wtr_s=wtr_s,
                  ason=bool(svc.restoration), restoration=list(svc.restoration),
                  restoration_ms=svc.restoration_ms)
        try:
            self.call("configure_protection", **kw)
        except LineControlError as exc:
            log.error("%s: configure_protection failed: %s", self.cfg.name, exc)

    def switch(self, request: str, to: str | None) -> dict:
        kw = {"request": request}
        if to is not None:
            kw["to"] = to
        return self.call("protection_switch", **kw)

    def protection_differs(self, st: dict | None, hold_off_ms: float, revertive: bool, wtr_s: float) -> bool:
        pr = self.protection(st)
        want = {"hold_off_ms": hold_off_ms, "revertive": revertive, "wtr_s": wtr_s,
                "mode": "sncp" if self.svc.protection else "none"}
        return any(pr.get(k) != v for k, v in want.items())

"""The line's autonomous optical-layer behaviour: ODU 1+1 SNCP, ASON restoration, operator
requests (G.808.1 / G.873.1 flavour) and the event log, as a pure state machine.

``LineLogic`` knows the paths (up or cut), which one carries the traffic, the protection
configuration and a pending switch; it never reads a clock: every method takes ``now``
(monotonic seconds), so unit tests drive it with an injected clock. Its output is the switch
*program* the data plane runs (see ``forwarder.Shared.set_program``): the active path, the path
to take from ``switch_at`` on, and a window in which frames entering the line are dropped.
Because switches are programmed ahead of time, the interruption a receiver sees is exact to
the data plane's resolution (microseconds), not to when a parent thread happens to wake; the
parent only calls ``advance(now)`` at ``next_deadline()`` to move the bookkeeping along (commit
a finished switch, log it, start a revert after wait-to-restore).

Timeline of a switch: ``start`` (the switch begins; frames entering from then on are dropped)
-> ``end`` (the new path carries traffic). A signal-fail switch starts ``hold_off`` after the cut
(traffic is already lost on the cut path) and ends ``switch_ms`` later; an operator request
starts now. An ASON restoration starts at the cut and ends ``restoration_ms`` later.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .model import ProtectionConfig

EVENT_RING = 1000
EVENT_KINDS = ("switch", "restoration", "path-down", "path-up", "rate", "ber", "outage", "request", "qp-error")
REQUESTS = ("force", "manual", "lockout", "release")
REQUEST_STATE = {"force": "forced", "manual": "manual", "lockout": "lockout"}


class Refused(ValueError):
    """A request the state machine refuses (message says why); the line answers ok: false."""


def _ms(s: float) -> float:
    return round(s * 1000.0, 6)


def real_wall_of(mono: float) -> float:
    """Wall-clock epoch seconds of monotonic instant ``mono``."""
    return time.time() - (time.monotonic() - mono)


class EventLog:
    """The last ``size`` events, numbered from 1 (so ``since=0`` means everything)."""

    def __init__(self, size: int = EVENT_RING, wall_of: Callable[[float], float] = real_wall_of) -> None:
        self._ring: deque[dict[str, Any]] = deque(maxlen=size)
        self._next = 1
        self.wall_of = wall_of

    def append(self, kind: str, mono: float, **fields: Any) -> dict[str, Any]:
        assert kind in EVENT_KINDS, kind
        ev: dict[str, Any] = {"seq": self._next, "time": self.wall_of(mono), "mono": mono, "kind": kind,
                              "from": None, "to": None, "cause": None, "outage_ms": None}
        ev.update(fields)
        self._next += 1
        self._ring.append(ev)
        return ev

    @property
    def next(self) -> int:
        return self._next

    def since(self, seq: int) -> dict[str, Any]:
        evs = [dict(e) for e in self._ring if e["seq"] >= seq]
        first = self._ring[0]["seq"] if self._ring else self._next
        return {"events": evs, "next": self._next, "first": first, "missed": max(0, first - max(seq, 1))}


@dataclass
class Pending:
    """A switch decided but not yet complete."""

    kind: str  # "switch" | "restoration"
    frm: int
    to: int
    start: float
    end: float
    window: bool  # drop frames entering in [start, end)
    cause: str
    outage_from: float  # when the traffic was last fine (for the event's outage_ms)
    announced: bool = False
    event: dict[str, Any] | None = field(default=None, repr=False)


class LineLogic:
    """Paths, active path, protection state machine and event log of one line."""

    def __init__(self, names: list[str], up: list[bool], active: int, config: ProtectionConfig | None = None,
                 now: float = 0.0, events: EventLog | None = None) -> None:
        self.names = list(names)
        self.up = list(up)
        self.active = active
        self.down_since: list[float | None] = [None if u else now for u in self.up]
        self.events = events if events is not None else EventLog()
        self.request = "none"  # none | force | manual | lockout
        self.request_to: int | None = None
        self.reason = "none"  # why traffic is where it is: none | signal-fail | ason | force | ...
        self.pending: Pending | None = None
        self.wtr_until: float | None = None
        self.restoration_state = "idle"
        self.last_switch: dict[str, Any] | None = None
        self.cfg = ProtectionConfig(working=names[active])
        self._apply_config(config or self.cfg, now)

    # --- configuration ---------------------------------------------------------------------------

    def index(self, name: str) -> int:
        return self.names.index(name)

    def _apply_config(self, cfg: ProtectionConfig, now: float) -> None:
        self.cfg = cfg
        self.w = self.index(cfg.working)
        self.p = self.index(cfg.protection) if cfg.protection is not None else None
        self.rest = [self.index(n) for n in cfg.restoration]
        if self.wtr_until is not None and not cfg.revertive:
            self.wtr_until = None
        self._after_change(now)

    def configure(self, cfg: ProtectionConfig, now: float) -> dict[str, Any]:
        """New protection settings; keeps operator requests and a switch under way."""
        self.advance(now)
        ev = self.events.append("request", now, cause="operator", request="configure",
                                active_path=self.names[self.active], protection=cfg.to_dict())
        self._apply_config(cfg, now)
        return ev

    # --- helpers ---------------------------------------------------------------------------------

    def current(self) -> int:
        """The path the traffic is on, or is being switched to."""
        return self.pending.to if self.pending is not None else self.active

    def _switch_fields(self, pd: Pending) -> dict[str, Any]:
        return {"from": self.names[pd.frm], "to": self.names[pd.to], "cause": pd.cause,
                "outage_ms": _ms(pd.end - pd.outage_from), "start_mono": pd.start, "end_mono": pd.end,
                "switch_ms": self.cfg.switch_ms if pd.kind == "switch" else None,
                "hold_off_ms": self.cfg.hold_off_ms if pd.cause == "signal-fail" else None}

    def _announce(self, pd: Pending) -> None:
        pd.announced = True
        if pd.kind == "switch":
            ev = self.events.append("switch", pd.start, **self._switch_fields(pd),
                                    active_path=self.names[pd.to])
            self.last_switch = ev
        else:
            ev = self.events.append("restoration", pd.start, state="restoring", **self._switch_fields(pd),
                                    restoration_ms=self.cfg.restoration_ms, active_path=self.names[pd.frm])
        pd.event = ev

    def _commit(self, pd: Pending, at: float) -> None:
        self.pending = None
        self.active = pd.to
        self.reason = pd.cause
        if pd.kind == "restoration":
            self.restoration_state = "restored"
            self.last_switch = self.events.append("restoration", at, state="restored",
                                                  **self._switch_fields(pd), active_path=self.names[pd.to])
        elif pd.to not in self.rest:
            self.restoration_state = "idle"

    def _drop_pending(self, now: float) -> None:
        """Make room for a new decision: a switch already under way completes at once (so its
        window's frames stay dropped); one still in its hold-off, or an ASON restoration (the
        traffic sits on the cut path meanwhile), is cancelled."""
        pd = self.pending
        if pd is None:
            return
        if pd.kind == "switch" and pd.start <= now:
            if not pd.announced:
                self._announce(pd)
            self._commit(pd, now)
            return
        self.pending = None
        if pd.kind == "restoration" and pd.announced:
            self.restoration_state = "idle"
            self.events.append("restoration", now, state="cancelled",
                               **{"from": self.names[pd.frm], "to": self.names[pd.to]}, cause="ason",
                               active_path=self.names[self.active])

    def _begin(self, now: float, kind: str, to: int, start: float, end: float, window: bool,
               cause: str) -> Pending:
        self._drop_pending(now)
        self.wtr_until = None
        frm = self.active
        lost_since = self.down_since[frm] if not self.up[frm] and self.down_since[frm] is not None else start
        pd = Pending(kind, frm, to, start, end, window, cause, min(lost_since, start))
        self.pending = pd
        if kind == "restoration":
            self.restoration_state = "restoring"
        if start <= now:
            self._announce(pd)
        if end <= now:
            self._commit(pd, now)
            self._after_change(now)
        return pd

    def _operator_switch(self, now: float, to: int, cause: str) -> Pending:
        sw = self.cfg.switch_ms / 1000.0
        return self._begin(now, "switch", to, now, now + sw, sw > 0, cause)

    # --- the automatic part ------------------------------------------------------------------------

    def _sncp_target(self, c: int) -> int | None:
        """Where 1+1 SNCP moves traffic off failed path ``c``, if anywhere."""
        if self.cfg.mode != "sncp" or self.request == "force":
            return None
        if c != self.w and self.up[self.w]:
            return self.w  # signal fail on the protection (or restoration) side: back to working
        if self.p is not None and c != self.p and self.up[self.p] and self.request != "lockout":
            return self.p
        return None

    def _ason_target(self, c: int) -> int | None:
        if not self.cfg.ason:
            return None
        order = ([self.w] if c != self.w else []) + self.rest
        for i in order:
            if i != c and self.up[i]:
                return i
        return None

    def _failover(self, now: float) -> None:
        """The path carrying (or about to carry) the traffic is down: SNCP, else ASON."""
        c = self.current()
        if self.pending is not None and self.pending.start > now:
            self.pending = None  # its target failed during the hold-off: decide again
            c = self.active
        since = self.down_since[c] if self.down_since[c] is not None else now
        target = self._sncp_target(c)
        if target is not None:
            start = max(since + self.cfg.hold_off_ms / 1000.0, now)
            if self.request == "manual":
                self.request, self.request_to = "none", None  # SF beats a manual switch
            self._begin(now, "switch", target, start, start + self.cfg.switch_ms / 1000.0,
                        self.cfg.switch_ms > 0, "signal-fail")
            return
        target = self._ason_target(c)
        if target is not None:
            self._begin(now, "restoration", target, now, now + self.cfg.restoration_ms / 1000.0, False, "ason")
        elif self.cfg.ason and self.restoration_state != "restoring":
            self.restoration_state = "restoring"
            self.events.append("restoration", now, state="restoring", result="no-route",
                               **{"from": self.names[c]}, cause="ason", active_path=self.names[self.active])

    def _maybe_wtr(self, now: float) -> None:
        """Revertive: once working is back, wait to restore, then switch back."""
        cfg = self.cfg
        if not cfg.revertive or self.pending is not None or self.wtr_until is not None:
            return
        if self.request != "none" or self.active == self.w or not self.up[self.w]:
            return
        if self.reason not in ("signal-fail", "ason"):
            return
        self.wtr_until = now + cfg.wtr_s
        if cfg.wtr_s == 0:
            self.advance(now)

    def _after_change(self, now: float) -> None:
        c = self.current()
        if not self.up[c] and self.request != "force" and (self.pending is None or self.pending.start > now):
            self._failover(now)
        elif self.up[c] and self.restoration_state == "restoring" and self.pending is None:
            self.restoration_state = "restored" if c in self.rest else "idle"
        self._maybe_wtr(now)

    def advance(self, now: float) -> None:
        """Apply everything due by ``now``, in time order."""
        while True:
            pd = self.pending
            if pd is not None and not pd.announced and pd.start <= now:
                self._announce(pd)
                continue
            if pd is not None and pd.end <= now:
                self._commit(pd, pd.end)
                self._after_change(pd.end)
                continue
            if self.wtr_until is not None and self.wtr_until <= now:
                self.wtr_until = None
                # a late wake-up moves the revert, never shortens its outage
                self._operator_switch(now, self.w, "wtr")
                continue
            return

    def next_deadline(self, lazy_s: float = 0.0) -> float | None:
        """When ``advance`` next has something to do. The data plane runs a pending switch on
        its own, so its bookkeeping may wait ``lazy_s`` longer; a wait-to-restore expiry starts
        a switch and is never late on purpose."""
        times = []
        if self.pending is not None:
            times.append((self.pending.end if self.pending.announced else self.pending.start) + lazy_s)
        if self.wtr_until is not None:
            times.append(self.wtr_until)
        return min(times) if times else None

    # --- inputs --------------------------------------------------------------------------------------

    def set_path_up(self, i: int, up: bool, now: float) -> dict[str, Any] | None:
        """A fibre cut (up False) or repair. Returns the event, None if nothing changed."""
        self.advance(now)
        if self.up[i] == up:
            return None
        self.up[i] = up
        name = self.names[i]
        if not up:
            self.down_since[i] = now
            ev = self.events.append("path-down", now, path=name, cause="operator",
                                    active=i == self.current(), active_path=self.names[self.active])
            if i == self.w:
                self.wtr_until = None
            if i == self.current():
                self._failover(now)
            return ev
        self.down_since[i] = None
        ev = self.events.append("path-up", now, path=name, cause="operator", active_path=self.names[self.active])
        pd = self.pending
        if pd is not None and pd.frm == i and pd.cause in ("signal-fail", "ason") and \
                (pd.kind == "restoration" or pd.start > now):
            # The failed path is back before the switch began (hold-off) or before ASON finished.
            self.pending = None
            if pd.kind == "restoration":
                self.restoration_state = "idle"
                self.events.append("restoration", now, state="cancelled", **{"from": name, "to": self.names[pd.to]},
                                   cause="ason", active_path=self.names[self.active])
        self._after_change(now)
        if self.wtr_until is not None:
            ev["wtr_until_mono"] = self.wtr_until
        return ev

    def set_active(self, i: int, now: float) -> dict[str, Any]:
        """The operator puts the traffic on path ``i`` at once (no outage, no automatics)."""
        self.advance(now)
        prev = self.active
        self.pending = None
        self.wtr_until = None
        self.active = i
        self.reason = "operator"
        self.restoration_state = "idle"
        ev = self.events.append("switch", now, **{"from": self.names[prev], "to": self.names[i]},
                                cause="operator", outage_ms=0.0, start_mono=now, end_mono=now,
                                active_path=self.names[i])
        self.last_switch = ev
        return ev

    def request_switch(self, request: str, to: int | None, now: float) -> dict[str, Any]:
        """An operator's protection request; returns the switch event, or the request event when
        no switch results. Raises Refused for a manual switch that cannot be done."""
        self.advance(now)
        if request not in REQUESTS:
            raise Refused(f"request must be one of {', '.join(REQUESTS)}, got {request!r}")
        cur = self.current()
        if request in ("force", "manual") and to is None:
            raise Refused(f"{request} needs 'to' (the path to switch to)")
        if request == "manual":
            assert to is not None
            if self.request == "lockout":
                raise Refused("manual switch refused: a lockout is active (release it first)")
            if self.request == "force":
                raise Refused("manual switch refused: a forced switch is active (release it first)")
            if not self.up[to]:
                raise Refused(f"manual switch refused: path {self.names[to]!r} is down (signal fail)")
        prev = self.request
        if request == "release":
            self.request, self.request_to = "none", None
        else:
            self.request, self.request_to = request, to
            if self.pending is not None and self.pending.start > now:
                self.pending = None  # an operator request supersedes a switch still in hold-off
            cur = self.current()
        self.wtr_until = None
        target: int | None = None
        if request in ("force", "manual"):
            target = to
        elif request == "lockout":
            target = self.w if cur == self.p else None
        elif self.up[cur] and self.cfg.revertive and self.up[self.w] and cur != self.w:
            target = self.w
        if target is not None and target != cur:
            pd = self._operator_switch(now, target, request)
            ev = pd.event
            assert ev is not None  # an operator switch starts now, so it is announced
            ev["request_state"] = self.request_state(now)
        else:
            ev = self.events.append("request", now, cause=request, request=request,
                                    previous=REQUEST_STATE.get(prev, prev),
                                    to=self.names[to] if to is not None else None,
                                    active_path=self.names[self.active], request_state=self.request_state(now))
        self._after_change(now)  # e.g. a lockout that blocks SNCP hands a cut working path to ASON
        return ev

    # --- outputs -------------------------------------------------------------------------------------

    def program(self) -> tuple[int, int, float, float, float]:
        """(active, next, switch_at, window_from, window_until) for ``Shared.set_program``."""
        pd = self.pending
        if pd is None:
            return self.active, self.active, math.inf, math.inf, 0.0
        if pd.window:
            return self.active, pd.to, pd.end, pd.start, pd.end
        return self.active, pd.to, pd.end, math.inf, 0.0

    def request_state(self, now: float) -> str:
        if self.request != "none":
            return REQUEST_STATE[self.request]
        if self.wtr_until is not None:
            return "wtr"
        if self.cfg.mode == "sncp":
            if not self.up[self.w] or (self.p is not None and not self.up[self.p]):
                return "signal-fail"
        elif not self.up[self.current()]:
            return "signal-fail"
        return "none"

    def state(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        pd = self.pending
        return {
            "mode": cfg.mode, "working": cfg.working, "protection": cfg.protection,
            "active_path": self.names[self.active], "request_state": self.request_state(now),
            "hold_off_ms": cfg.hold_off_ms, "switch_ms": cfg.switch_ms, "revertive": cfg.revertive,
            "wtr_s": cfg.wtr_s, "ason": cfg.ason, "restoration": list(cfg.restoration),
            "restoration_ms": cfg.restoration_ms, "restoration_state": self.restoration_state,
            "switching_until_mono": pd.end if pd is not None else None,
            "pending": None if pd is None else {
                "kind": pd.kind, "from": self.names[pd.frm], "to": self.names[pd.to], "cause": pd.cause,
                "start_mono": pd.start, "end_mono": pd.end, "started": pd.start <= now},
            "wtr_until_mono": self.wtr_until,
            "request_to": self.names[self.request_to] if self.request_to is not None else None,
            "last_switch": dict(self.last_switch) if self.last_switch is not None else None,
        }

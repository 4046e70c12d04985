"""One direction of the modelled RC QP: the state the forwarder keeps to hold TCP frames as RoCEv2
would have delayed them (the numbers come from ``roce``; the forwarder moves the frames).

What the direction suffers, at the real line's rate and round trip (roce-model in the README):
- a **loss event** (bit errors, a Poisson process at q x the real packets per second the traffic
  occupies) goes back N: the hit frame, and every frame after it, arrives no earlier than one real
  RTT later (x the QP's share of the line: its window is what is resent).  If the next frame only
  enters later, the NAK waits for it; if none comes within the ACK timeout (a tail loss: the end
  of a message), the ACK timer resends instead.  ``tail_loss`` makes a share of the events tail
  losses whatever follows.  No frame is dropped: TCP's own recovery must add nothing.
- an **outage** (a switch window, a cut, an operator outage): TCP frames entering it are kept, not
  dropped (RC loses nothing, it waits); when it ends, they and what follows wait until the QP's
  retransmission timer fires (``roce.timer_release_s``) plus the path's delay.
- **sustained loss** below ``abort_below_efficiency`` is a stall that lasts as long as the BER.
- a stall longer than the retry budget is a **QP error**: the forwarder resets the flows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import roce

INF = math.inf
CAUSES = {1: "retry-exhausted", 2: "sustained-loss"}
"""Codes of a QP error's cause as kept in the shared parameters (see forwarder.P_QPERR)."""


class RcDirection:
    """State of one direction's modelled QP; times are monotonic seconds, frames are opaque."""

    def __init__(self, cfg: roce.TransportConfig, random: Callable[[], float],
                 expovariate: Callable[[float], float]) -> None:
        self.cfg = cfg
        self.t_ack = cfg.t_ack_s
        self.first_fire = roce.timer_release_s(0.0, self.t_ack, cfg.adaptive_retransmission)
        """What a tail loss waits: the first retransmission timeout (T_ack, or 2 ms adaptive)."""
        self.budget = cfg.budget_s
        self.tail_loss = cfg.tail_loss
        self.random, self.expovariate = random, expovariate
        self.pkt_per_bit = 1.0 / (roce.wire_bits(cfg.mtu) * cfg.scale)
        """Real full-size packets one lab bit stands for: the lab line carries at scale x the real
        rate, so one second of its wire time is one second of the real line's."""
        self.floor = 0.0
        """No frame of this direction is delivered before this instant (go-back-N, timers)."""
        self.stall_since = INF
        self.stall_end = INF
        self.stall_loss = False
        self.stalled: list[tuple[bytes, int, float]] = []   # (frame, counter base, entry)
        self.last_in = -INF
        """When the last modelled frame entered this direction (outage_hold: active)."""
        self.outage_seen = -INF
        """The start of the last outage this direction has judged (each is judged once)."""
        self.pending: tuple[float, float, tuple[float, int, bytes, int, float, float]] | None = None
        """(natural due, provisional due, heap item) of a loss whose NAK waits for the next frame."""
        self.flows: dict[bytes, bytes] = {}
        """Last frame each flow's sender put on the line: where a reset takes its sequence numbers."""
        self.resetting: set[bytes] = set()
        self.reset_until = 0.0
        self._q_ber = -1.0
        self._q = 0.0
        self.credit = INF
        self._eta_key: tuple[float, float, float] = (-1.0, 0.0, 0.0)
        self._stalls = False
        self._ports = cfg.control_ports or (0, -1)
        self._modelled: dict[bytes, bool] = {}

    def modelled(self, key: bytes, frame: bytes) -> bool:
        """Whether this IPv4 TCP frame's flow is the training's data (an RC QP's) rather than its
        control plane (``control_ports``); decided once per flow."""
        m = self._modelled.get(key)
        if m is None:
            if len(self._modelled) > 65536:  # flows come and go with jobs: forget the old ones
                self._modelled.clear()
            t = 14 + (frame[14] & 0x0F) * 4
            lo, hi = self._ports
            ports = (int.from_bytes(frame[t:t + 2], "big"), int.from_bytes(frame[t + 2:t + 4], "big"))
            m = self._modelled[key] = not any(lo <= p <= hi for p in ports)
        return m

    # --- bit errors ---

    def loss_event(self, bits: int, ber: float) -> bool:
        """Whether a go-back-N loss event falls within this frame's share of the real traffic."""
        if ber != self._q_ber:
            self._q_ber, self._q = ber, roce.packet_loss_probability(ber, self.cfg.mtu)
            self.credit = self.expovariate(1.0) / self._q if self._q > 0.0 else INF
        self.credit -= bits * self.pkt_per_bit
        if self.credit > 0.0:
            return False
        self.credit += self.expovariate(1.0) / self._q
        return True

    def no_progress(self, ber: float, lab_rate: float, delay: float) -> bool:
        """The calibrated sustained-loss rule at this BER, rate and path (cached)."""
        key = (ber, lab_rate, delay)
        if key != self._eta_key:
            self._eta_key = key
            self._stalls = ber > 0.0 and lab_rate > 0.0 and roce.sustained_loss_stalls(
                self.cfg.efficiency(ber, lab_rate, 2.0 * delay), self.cfg.abort_below_efficiency)
        return self._stalls

    def nak_hold(self, lab_rate: float, delay: float) -> float:
        """What one loss costs the direction: one real RTT x the QP's share of the line."""
        if lab_rate <= 0.0:
            return 2.0 * delay
        share = self.cfg.qp_rate_bps(lab_rate) / self.cfg.real_rate_bps(lab_rate)
        return 2.0 * delay * share

    def nak_due(self, natural: float, next_entry: float, delay: float, hold: float) -> float:
        """When a lost frame arrives again: the NAK needs the next frame (entered ``next_entry``)
        at the receiver; the ACK timer resends if that comes later than the timeout."""
        return min(natural + self.first_fire, max(natural, next_entry + delay) + hold)

    # --- outages ---

    @property
    def stalled_now(self) -> bool:
        return self.stall_since < INF

    def stall(self, frame: bytes, k: int, t_in: float, end: float, loss: bool = False) -> None:
        """Keep a frame that entered an outage (ending ``end``, inf if unknown) or sustained loss."""
        if self.stall_since == INF:
            self.stall_since, self.stall_loss = t_in, loss
            self.stall_end = end
            self.pending = None  # a loss just before: no next frame will NAK it, the timer resends
        elif end > self.stall_end or self.stall_end == INF:
            self.stall_end = end
        self.stalled.append((frame, k, t_in))

    def outage(self, start: float, end: float) -> bool:
        """An outage began at ``start`` (ends ``end``, inf if unknown), seen by the loop at or after
        its start.  Under ``outage_hold: active`` a direction that carried modelled traffic within
        the last ACK timeout stalls from ``start`` even with nothing in the fibre: its later frames
        wait for the ACK timer (see roce.TransportConfig.outage_hold).  Returns whether it stalled."""
        if start <= self.outage_seen:
            return False
        self.outage_seen = start
        if self.cfg.outage_hold != "active" or self.resetting or start - self.last_in > self.t_ack:
            return False
        if self.stall_since == INF:
            self.stall_since, self.stall_end, self.stall_loss = start, end, False
            self.pending = None
        elif end > self.stall_end:
            self.stall_end = end
        return True

    def hit(self, now: float, in_flight: list[tuple[bytes, int, float]]) -> None:
        """An instant that loses what is in flight (a line rate change): the QP resends it, and
        what follows, when its timer fires (a zero-length outage at ``now``)."""
        if self.stall_since == INF:
            self.stall_since, self.stall_end, self.stall_loss = now, now, False
            self.pending = None
        self.stalled.extend(in_flight)

    def release_at(self, t: float) -> float:
        """When the QP resends after a stall that ended at ``t`` (or its known end, if earlier)."""
        end = min(t, self.stall_end)
        return self.stall_since + roce.timer_release_s(max(0.0, end - self.stall_since), self.t_ack,
                                                       self.cfg.adaptive_retransmission)

    def exhausted(self, t: float) -> bool:
        """No progress for longer than the retry budget by ``t``: the stall's end (or ``t``, if it
        has not ended) is more than retry_cnt x T_ack after the first kept frame."""
        return min(t, self.stall_end) - self.stall_since > self.budget

    def resume(self, release: float, delay: float) -> list[tuple[bytes, int, float]]:
        """End the stall: frames from now on wait until ``release`` + the path's delay; returns the
        kept frames, to be delivered then (in order)."""
        self.floor = max(self.floor, release + delay)
        frames, self.stalled = self.stalled, []
        self.stall_since = self.stall_end = INF
        self.stall_loss = False
        return frames

    def deadline(self) -> float:
        """The next instant the stall needs attention without new input: its known end, or the
        end of the retry budget."""
        if self.stall_since == INF:
            return INF
        return min(self.stall_end, self.stall_since + self.budget)

    # --- QP error ---

    def error(self, now: float, reset_s: float) -> tuple[list[tuple[bytes, int, float]], list[bytes]]:
        """The QP is in error: drop what is kept, forget the stall; returns (the dropped frames,
        the flows' last frames to answer with a reset).  Frames of those flows that still come in
        the next ``reset_s`` are answered too."""
        dropped, self.stalled = self.stalled, []
        self.stall_since = self.stall_end = INF
        self.stall_loss = False
        self.pending = None
        last = list(self.flows.values())
        self.resetting = set(self.flows)
        self.flows = {}
        self.reset_until = now + reset_s
        return dropped, last

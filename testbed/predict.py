"""``dcilab predict``'s arithmetic: the line's RoCEv2 RC transport model (emulator/line/roce.py)
applied to a workload without a lab, so a lab engineer can choose a BER alarm threshold or a
timeout setting before booking the real line, and the emulated lab's measurements can be checked
against the same model.

A workload is what one unimpaired iteration looks like from the WAN: its time and the bytes that
cross the WAN (both directions; real bytes, i.e. the emulated lab's divided by bandwidth_scale).
The line is the real one: rate, round trip of the path in use, the transport's settings.

- bit errors: loss events per iteration = q x packets crossing; each costs one RTT x the QP's share
  of the line (go-back-N), or, for ``tail_loss`` of them, the first retransmission timeout;
  a QP below the calibrated sustained-loss efficiency is interrupted;
- an outage of D: the traffic waits for the retransmission timer's first fire at or after D; past
  the retry budget the QP errors and the job is interrupted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from emulator.line import roce
from emulator.line.model import propagation_delay_s

INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Workload:
    """One placement's unimpaired iteration: time and real bytes crossing the WAN per iteration."""

    placement: str
    iteration_s: float
    wan_bytes: float
    source: str = ""

    @property
    def packets(self) -> float:
        return self.wan_bytes * 8 / roce.wire_bits()


@dataclass(frozen=True)
class Line:
    """The real line: rate, the active path's length, and the transport's settings."""

    rate_gbps: float
    path_km: float
    transport: roce.TransportConfig

    @property
    def rtt_s(self) -> float:
        return 2 * propagation_delay_s(self.path_km)

    @property
    def rate_bps(self) -> float:
        return self.rate_gbps * 1e9

    @property
    def qp_share(self) -> float:
        t = self.transport
        return 1.0 if t.qp_gbps is None else min(1.0, t.qp_gbps * 1e9 / self.rate_bps)

    def efficiency(self, ber: float) -> float:
        """Go-back-N efficiency of one QP on this line."""
        t = self.transport
        q = roce.packet_loss_probability(ber, t.mtu)
        return roce.gbn_efficiency(q, roce.window_packets(self.rate_bps * self.qp_share, self.rtt_s, t.mtu))

    @property
    def first_fire_s(self) -> float:
        return roce.timer_release_s(0.0, self.transport.t_ack_s, self.transport.adaptive_retransmission)


@dataclass(frozen=True)
class Prediction:
    iteration_s: float | None          # None: interrupted
    efficiency: float | None
    outcome: str                       # completed | interrupted
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"iteration_s": self.iteration_s, "efficiency": self.efficiency, "outcome": self.outcome,
                "detail": self.detail}


def at_ber(w: Workload, line: Line, ber: float) -> Prediction:
    """Mean iteration time and efficiency with the line at ``ber``."""
    t = line.transport
    if ber <= 0:
        return Prediction(w.iteration_s, 1.0, "completed", "no bit errors")
    eta = line.efficiency(ber)
    if roce.sustained_loss_stalls(eta, t.abort_below_efficiency):
        return Prediction(None, None, INTERRUPTED,
                          f"go-back-N efficiency {eta:.3g} < {t.abort_below_efficiency:g}: no progress, QP error "
                          f"after {t.budget_s:.3g} s (calibrated rule)")
    events = roce.packet_loss_probability(ber, t.mtu) * w.packets
    per_event = (1 - t.tail_loss) * line.rtt_s * line.qp_share + t.tail_loss * line.first_fire_s
    it = w.iteration_s + events * per_event
    return Prediction(it, w.iteration_s / it, "completed",
                      f"{events:.3g} loss events per iteration, {events * t.tail_loss:.2g} of them ACK timeouts")


def at_outage(w: Workload, line: Line, outage_s: float) -> Prediction:
    """The iteration an outage of ``outage_s`` falls in (traffic in flight when it starts)."""
    t = line.transport
    if outage_s > t.budget_s:
        return Prediction(None, None, INTERRUPTED,
                          f"no progress for {outage_s:.3g} s > retry budget {t.budget_s:.3g} s: QP error")
    stall = roce.timer_release_s(outage_s, t.t_ack_s, t.adaptive_retransmission)
    if math.isinf(stall):
        return Prediction(None, None, INTERRUPTED, "ACK timeout 0 (never fires): the QP never resends")
    it = w.iteration_s + stall
    return Prediction(it, w.iteration_s / it, "completed", f"stall {stall:.3g} s until the retransmission timer fires")


def ber_limits(w: Workload, line: Line, alarm_efficiency: float = 0.95) -> dict[str, float | None]:
    """The BER at which the mean efficiency falls below ``alarm_efficiency`` and the BER at which
    training stops (bisection on a log scale between 1e-15 and 1e-3)."""

    def below(ber: float, what: str) -> bool:
        p = at_ber(w, line, ber)
        return p.outcome == INTERRUPTED if what == "stop" else (p.efficiency or 0.0) < alarm_efficiency

    out: dict[str, float | None] = {}
    for what in ("alarm", "stop"):
        lo, hi = -15.0, -3.0
        if not below(10 ** hi, what):
            out[what] = None
            continue
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if below(10 ** mid, what) else (mid, hi)
        out[what] = 10 ** hi
    return out


BER_GRID = tuple(10 ** (e / 2) for e in range(-24, -13))     # 1e-12 .. 1e-7, half decades
OUTAGES_MS = (30.0, 50.0, 500.0, 3000.0, 10000.0, 40000.0)


def workloads_from_summary(summary: dict[str, Any]) -> list[Workload]:
    """The run's baselines (median iteration time, WAN bytes per iteration) as real workloads: the
    emulated lab's bytes are divided by its bandwidth scale."""
    scale = ((summary.get("testbed") or {}).get("transport") or {}).get("scale") or 1.0
    out = []
    for name, b in (summary.get("baselines") or {}).items():
        if not isinstance(b, dict) or not b.get("median_s") or not b.get("wan_bytes_per_iteration"):
            continue
        args = [str(a) for a in b.get("workload_args") or []]
        placement = b.get("placement") or (args[args.index("--placement") + 1] if "--placement" in args[:-1] else name)
        out.append(Workload(placement, float(b["median_s"]), float(b["wan_bytes_per_iteration"]) / scale, name))
    return out


def per_placement(loads: list[Workload]) -> list[Workload]:
    """One workload per placement: the last baseline measured (a run re-measures a stale one)."""
    return list({w.placement: w for w in loads}.values())


def predicted_vs_measured(summary: dict[str, Any], line: Line) -> list[dict[str, Any]]:
    """Each measured bit-error, switchover and reroute case beside what the model predicts from the
    baseline it was judged against (the outage length is the probe's measured disruption)."""
    loads = workloads_from_summary(summary)
    by_key = {w.source: w for w in loads}
    latest = {w.placement: w for w in loads}
    rows = []
    for c in summary.get("cases") or []:
        if not isinstance(c, dict):
            continue
        params, m = c.get("params") or {}, c.get("metrics") or {}
        w = by_key.get((c.get("baseline") or {}).get("key")) or latest.get(params.get("placement"))
        status = (c.get("outcome") or {}).get("status")
        if w is None:
            continue
        if c.get("scenario") == "bit_errors" and isinstance(params.get("ber"), (int, float)):
            p, metric = at_ber(w, line, float(params["ber"])), "mean_efficiency"
        elif c.get("scenario") in ("switchover", "reroute") and isinstance(m.get("disruption_ms"), (int, float)):
            p, metric = at_outage(w, line, m["disruption_ms"] / 1000.0), "worst_efficiency"
        else:
            continue
        rows.append({"case": str(c.get("name")), "metric": metric,
                     "measured": m.get(metric), "measured_outcome": status,
                     "predicted": p.efficiency, "predicted_outcome": p.outcome, "detail": p.detail})
    return rows

"""The RoCEv2 RC + NCCL transport model: what a reliable-connected QP over the *real* line would
suffer, as pure functions and one validated config.

Why: the emulated nodes talk TCP (gloo), the trial's talked RoCEv2 RC (NCCL).  TCP repairs a loss
with one selective retransmission and recovers from a 50 ms outage in one RTO; an RC QP goes back
N on every lost packet and, after an outage, waits for its local ACK timer.  The line knows every
loss and outage instant, so it can impose on the TCP flows what an RC QP would suffer
(``transport.RcDirection`` applies these numbers; the forwarder only moves frames).

Everything here is at the trial's unscaled parameters: the service's real line rate, the active
path's real round trip, MTU 4096.  ``[src]`` marks a number a public source gives, ``[model]`` one
derived here; docs/field-trial.md lists the sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ACK_TIMEOUT_UNIT_S = 4.096e-6
"""Local ACK timeout = 4.096 us x 2^timeout (InfiniBand spec, C9-140; RoCEv2 inherits it) [src]."""

NCCL_IB_TIMEOUT = 20
"""NCCL_IB_TIMEOUT default since NCCL 2.23 (18 from 2.14, 14 before) [src: NCCL env docs]."""

NCCL_IB_RETRY_CNT = 7
"""NCCL_IB_RETRY_CNT default [src: NCCL env docs; src/transport/net_ib.cc]."""

ROCE_MTU = 4096
"""The RoCE path MTU NCCL uses on such fabrics (IB MTU 4096)."""

ROCE_HEADER_BYTES = 14 + 20 + 8 + 12 + 4 + 4
"""Ethernet + IPv4 + UDP + BTH + ICRC + FCS around one MTU of payload: what the FCS covers (4158
bytes, 33,264 bits, at MTU 4096) and what a bit error can hit."""

WIRE_OVERHEAD_BYTES = 8 + 12
"""Preamble and inter-frame gap: on the wire (4178 bytes per packet) but not hit by errors."""

NCCL_STEP_BYTES = 4 * 1024 * 1024 // 8
"""NCCL_BUFFSIZE (4 MiB default) / NCCL_STEPS (8): what one send step of NCCL's Simple protocol
puts on the QP before the receiver hands back the slot [src: NCCL env docs, NCCL_BUFFSIZE]."""

TAIL_LOSS = ROCE_MTU / NCCL_STEP_BYTES
"""Share of loss events that wait for the ACK timer (1/128): a lost packet is the last of its
NCCL step with probability 1 / (packets per step), and the step's last packet is followed by
nothing the receiver could NAK it with until the next step is granted [model]."""

ADAPTIVE_BASE_S = 0.002
"""First retransmission timeout with ConnectX adaptive retransmission (then doubling, capped by
the ACK timeout) [src: NVIDIA adaptive retransmission docs; model: 2 ms base]."""

ABORT_BELOW_EFFICIENCY = 0.1
"""Calibrated, not derived: the trial trained on at BER 1e-9 (go-back-N efficiency of one QP
filling 800G over 329 km: 0.28) and was interrupted at 1e-8 (0.037).  A QP whose efficiency at
the line's BER is below this geometric mean of the two makes no useful progress: its retry timer
runs out (see ``sustained_loss_stalls``).  Independent bit errors alone would need the same packet
lost ~8 times in a row, which is negligible; the trial's abort needs burst errors or a driver's
excessive-retransmission shutdown, which this rule stands for [model, calibrated on the trial]."""

MODELS = ("roce-rc", "none")
OUTAGE_HOLDS = ("active", "in-flight")
"""TransportConfig.outage_hold: which QPs an outage holds until their ACK timer fires."""
MAX_TIMEOUT = 31
MAX_RETRY_CNT = 7


def ack_timeout_s(timeout: int) -> float:
    """The QP's local ACK timeout: 4.096 us x 2^timeout; 0 means the timer never fires (inf)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be an integer in 0..{MAX_TIMEOUT}, got {timeout!r}")
    return math.inf if timeout == 0 else ACK_TIMEOUT_UNIT_S * 2 ** timeout


def packet_bits(mtu: int = ROCE_MTU) -> int:
    """Bits a bit error can hit in one full RoCEv2 packet: payload plus headers, ICRC and FCS."""
    return (mtu + ROCE_HEADER_BYTES) * 8


def wire_bits(mtu: int = ROCE_MTU) -> int:
    """Bits one full packet occupies on the line, preamble and gap included."""
    return packet_bits(mtu) + WIRE_OVERHEAD_BYTES * 8


def packet_loss_probability(ber: float, mtu: int = ROCE_MTU) -> float:
    """q = 1 - (1 - BER)^bits: at least one flipped bit fails the ICRC/FCS and the packet is lost."""
    if not 0.0 <= ber < 1.0 or math.isnan(ber):
        raise ValueError(f"ber must be within [0, 1), got {ber}")
    return -math.expm1(packet_bits(mtu) * math.log1p(-ber))


def packets_per_second(rate_bps: float, mtu: int = ROCE_MTU) -> float:
    """Full packets per second that fill a line of ``rate_bps``."""
    if rate_bps < 0:
        raise ValueError(f"rate_bps must be >= 0, got {rate_bps}")
    return rate_bps / wire_bits(mtu)


def window_packets(rate_bps: float, rtt_s: float, mtu: int = ROCE_MTU) -> float:
    """Packets in flight for a QP sending at ``rate_bps`` over a round trip of ``rtt_s``: what
    go-back-N resends after one loss.  77.2 k at 800G over 329 km (RTT 3.224 ms)."""
    if rtt_s < 0:
        raise ValueError(f"rtt_s must be >= 0, got {rtt_s}")
    return packets_per_second(rate_bps, mtu) * rtt_s


def gbn_efficiency(q: float, window: float) -> float:
    """Goodput share of a go-back-N sender with ``window`` packets in flight and per-packet loss
    ``q``: 1 / (1 + q W) (the classic ARQ result (1-q)/(1+(W-1)q) to first order) [src]."""
    if not 0.0 <= q <= 1.0 or window < 0:
        raise ValueError(f"need 0 <= q <= 1 and window >= 0, got q={q}, window={window}")
    return 1.0 / (1.0 + q * window)


def loss_events_per_busy_second(ber: float, rate_bps: float, mtu: int = ROCE_MTU) -> float:
    """Lost packets per second while the direction carries traffic at the full real rate: the
    rate of the Poisson process of go-back-N events (796/s at 800G and BER 1e-9)."""
    return packet_loss_probability(ber, mtu) * packets_per_second(rate_bps, mtu)


def iteration_efficiency(wan_share: float, eta: float) -> float:
    """An iteration whose share ``wan_share`` is exposed, bandwidth-bound WAN traffic, run at
    go-back-N efficiency ``eta``: 1 / ((1 - X) + X / eta) [model]."""
    if not 0.0 <= wan_share <= 1.0:
        raise ValueError(f"wan_share must be within [0, 1], got {wan_share}")
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"eta must be within (0, 1], got {eta}")
    return 1.0 / ((1.0 - wan_share) + wan_share / eta)


def retry_budget_s(t_ack: float, retry_cnt: int = NCCL_IB_RETRY_CNT) -> float:
    """No progress for this long is a QP error (IBV_WC_RETRY_EXC_ERR): retry_cnt x T_ack (7.5 s at
    timeout 18, 30 s at 20) [src: perftest#251, NCCL#426]."""
    return retry_cnt * t_ack


def timer_release_s(stalled_s: float, t_ack: float, adaptive: bool = False,
                    base_s: float = ADAPTIVE_BASE_S) -> float:
    """When, counted from the first packet lost to an outage, the QP's retransmission timer first
    fires at or after the outage's end ``stalled_s`` later: the direction's traffic resumes then.

    Classic timer: ceil(D / T_ack) x T_ack (at least one T_ack).  Adaptive retransmission: the
    timeouts start at ``base_s`` and double, capped by T_ack (2, 6, 14, 30, 62 ms ...)."""
    if stalled_s < 0:
        raise ValueError(f"stalled_s must be >= 0, got {stalled_s}")
    if math.isinf(t_ack):
        return math.inf
    if not adaptive:
        return max(1, math.ceil(stalled_s / t_ack - 1e-12)) * t_ack
    fired, step = 0.0, min(base_s, t_ack)
    while True:
        fired += step
        if fired >= stalled_s - 1e-12:
            return fired
        if step >= t_ack:  # capped: the rest is a whole number of T_ack
            return fired + max(0, math.ceil((stalled_s - fired) / t_ack - 1e-12)) * t_ack
        step = min(step * 2.0, t_ack)


def sustained_loss_stalls(eta: float, threshold: float = ABORT_BELOW_EFFICIENCY) -> bool:
    """Whether a QP at go-back-N efficiency ``eta`` makes no useful progress (calibrated rule, see
    ABORT_BELOW_EFFICIENCY): the line then treats the loss as an outage that lasts while it does."""
    return eta < threshold


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransportConfig:
    """The ``transport`` block of the line's config (and of the inventory's ``emulation``).

    ``qp_gbps`` is the rate one QP sends at, which sets its window W: the whole line by default
    (one QP filling 800G, W = 77 k), or e.g. 100 for a QP per 100G NIC port (W = 9.6 k); the
    trial's NIC settings are not published, this brackets them.  ``tail_loss`` is the probability
    that a loss event is a tail loss (no later packet of the QP follows, so no NAK: the direction
    waits for its ACK timer; TAIL_LOSS by default) on top of the losses the lab's traffic pattern
    makes tail losses (a loss followed by an idle gap; see transport.RcDirection).  ``scale`` is the lab's
    bandwidth_scale: lab rate / real rate, so the line knows the real rate it stands for."""

    model: str = "roce-rc"
    timeout: int = NCCL_IB_TIMEOUT
    retry_cnt: int = NCCL_IB_RETRY_CNT
    adaptive_retransmission: bool = False
    mtu: int = ROCE_MTU
    qp_gbps: float | None = None
    tail_loss: float = TAIL_LOSS
    abort_below_efficiency: float = ABORT_BELOW_EFFICIENCY
    scale: float = 1.0
    rate_change_hit: bool = True
    """A line rate change (800G -> 400G) loses what is in flight, as a transponder's modulation
    change does unless it is hitless: a direction with modelled frames in the fibre then waits for
    its ACK timer (the trial: DP-remote, one iteration +4.4 s; PP-remote, whose WAN is mostly idle,
    none)."""
    outage_hold: str = "active"
    """Which QPs an outage (a protection switch, a cut, an operator outage) holds until their ACK
    timer fires.  ``active`` (default): every direction that carried modelled traffic within the
    last ACK timeout, whether or not a frame of it was in the fibre at that instant.  The lab's
    direction stands for the trial's many QPs (16 GPUs a site, several NCCL channels each), some of
    which always have packets outstanding, and the iteration waits for the slowest of them; the
    trial's 50 ms switchover hit one iteration.  ``in-flight``: only a direction with a modelled frame
    in the fibre or entering during the outage (one QP, strictly); on the lab's sparse traffic the
    switchover then hits some runs and misses others."""
    control_ports: tuple[int, int] | None = None
    """TCP ports (a range, either end of a flow) of the training's control plane: torchrun's
    rendezvous and the c10d store, which a real cluster runs over TCP on its front-end network, not
    over the RDMA fabric.  Their flows stay plain TCP: neither held nor reset."""

    FIELDS = frozenset({"model", "timeout", "retry_cnt", "adaptive_retransmission", "mtu", "qp_gbps",
                        "tail_loss", "abort_below_efficiency", "scale", "control_ports",
                        "rate_change_hit", "outage_hold"})

    @property
    def enabled(self) -> bool:
        return self.model == "roce-rc"

    @property
    def t_ack_s(self) -> float:
        return ack_timeout_s(self.timeout)

    @property
    def budget_s(self) -> float:
        return retry_budget_s(self.t_ack_s, self.retry_cnt)

    def real_rate_bps(self, lab_rate_bps: float) -> float:
        return lab_rate_bps / self.scale

    def qp_rate_bps(self, lab_rate_bps: float) -> float:
        real = self.real_rate_bps(lab_rate_bps)
        return real if self.qp_gbps is None else min(real, self.qp_gbps * 1e9)

    def efficiency(self, ber: float, lab_rate_bps: float, rtt_s: float) -> float:
        """Go-back-N efficiency of one QP on the real line at ``ber``."""
        q = packet_loss_probability(ber, self.mtu)
        return gbn_efficiency(q, window_packets(self.qp_rate_bps(lab_rate_bps), rtt_s, self.mtu))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "timeout": self.timeout, "retry_cnt": self.retry_cnt,
                "adaptive_retransmission": self.adaptive_retransmission, "mtu": self.mtu,
                "qp_gbps": self.qp_gbps, "tail_loss": self.tail_loss,
                "abort_below_efficiency": self.abort_below_efficiency, "scale": self.scale,
                "control_ports": list(self.control_ports) if self.control_ports else None,
                "rate_change_hit": self.rate_change_hit, "outage_hold": self.outage_hold,
                "ack_timeout_s": self.t_ack_s, "retry_budget_s": self.budget_s}

    @classmethod
    def from_dict(cls, d: Any, where: str = "transport.") -> TransportConfig:
        """Validate; every error starts with the field's name (``where`` + field)."""
        if not isinstance(d, dict):
            raise ValueError(f"{where.rstrip('.')}: must be a mapping, got {type(d).__name__}")  # noqa: TRY004
        extra = sorted(set(d) - cls.FIELDS - {"ack_timeout_s", "retry_budget_s"})
        if extra:
            raise ValueError(f"{where}{extra[0]}: unknown field (allowed: {', '.join(sorted(cls.FIELDS))})")
        model = d.get("model", "roce-rc")
        if model not in MODELS:
            raise ValueError(f"{where}model: must be one of {', '.join(MODELS)}, got {model!r}")

        def integer(key: str, default: int, lo: int, hi: int) -> int:
            v = d.get(key, default)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{where}{key}: must be an integer in {lo}..{hi}, got {v!r}")
            return v

        def number(key: str, default: float | None, lo: float, hi: float, lo_open: bool = False) -> float | None:
            v = d.get(key, default)
            if v is None and default is None:
                return None
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
                (v > lo if lo_open else v >= lo) and v <= hi
            if not ok:
                raise ValueError(f"{where}{key}: must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")
            return float(v)

        adaptive = d.get("adaptive_retransmission", False)
        if not isinstance(adaptive, bool):
            raise ValueError(f"{where}adaptive_retransmission: must be true or false, got {adaptive!r}")  # noqa: TRY004
        rate_hit = d.get("rate_change_hit", True)
        if not isinstance(rate_hit, bool):
            raise ValueError(f"{where}rate_change_hit: must be true or false, got {rate_hit!r}")  # noqa: TRY004
        hold = d.get("outage_hold", "active")
        if hold not in OUTAGE_HOLDS:
            raise ValueError(f"{where}outage_hold: must be one of {', '.join(OUTAGE_HOLDS)}, got {hold!r}")
        ports = d.get("control_ports")
        if ports is not None:
            ok = isinstance(ports, (list, tuple)) and len(ports) == 2 and all(
                isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports) and ports[0] <= ports[1]
            if not ok:
                raise ValueError(f"{where}control_ports: must be [first, last], ports 1..65535, got {ports!r}")
            ports = (ports[0], ports[1])
        mtu = integer("mtu", ROCE_MTU, 256, 4096)
        if mtu & (mtu - 1):
            raise ValueError(f"{where}mtu: must be a RoCE MTU (256, 512, 1024, 2048, 4096), got {mtu}")
        return cls(model=model, timeout=integer("timeout", NCCL_IB_TIMEOUT, 0, MAX_TIMEOUT),
                   retry_cnt=integer("retry_cnt", NCCL_IB_RETRY_CNT, 0, MAX_RETRY_CNT),
                   adaptive_retransmission=adaptive, mtu=mtu,
                   qp_gbps=number("qp_gbps", None, 0.0, 1e5, lo_open=True),
                   tail_loss=number("tail_loss", TAIL_LOSS, 0.0, 1.0),  # type: ignore[arg-type]
                   abort_below_efficiency=number("abort_below_efficiency", ABORT_BELOW_EFFICIENCY, 0.0, 1.0),  # type: ignore[arg-type]
                   scale=number("scale", 1.0, 0.0, 1.0, lo_open=True),  # type: ignore[arg-type]
                   control_ports=ports, rate_change_hit=rate_hit, outage_hold=hold)

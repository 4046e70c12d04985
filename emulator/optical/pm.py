"""Performance monitoring of the emulated OTN gear: what the line carried, turned into OTN PM.

Everything here is computed from the optical line's own numbers (its per-path counters and its
configured bit error rate); nothing is random.  The model, stated once:

* **Post-FEC BER** (OpenConfig ``post-fec-ber``, OpenROADM ``bitErrorRate``).  The line drops a
  frame when one of its bits is hit, so a frame the line counts as ``errored`` is an
  uncorrectable FEC block that reached the client.  Over a sample (the PM sampler runs every
  ``pm_sample_s``, default 1 s, and a ``get`` measures from the last sample up to now when at
  least 0.2 s have passed) the estimate is the exact inverse of the line's loss law
  ``p = 1 - (1 - ber) ** bits_per_frame``: ``ber = -log1p(-errored/frames) / (bits/frames)``,
  bits counted with the 4-byte FCS as the line does.  When no error was seen the measured value
  is 0 if the sample carried enough bits to expect at least 3 errors at the configured BER;
  otherwise the sample cannot resolve the BER and the path's configured BER is reported
  (so an idle line still shows an injected BER).
* **Pre-FEC BER**: the larger of (a) the path's floor from its ESNR (below) and (b) what the FEC
  must have corrected for the post-FEC BER to be what it is, with the FEC law
  ``post = (pre / FEC_THRESHOLD) ** FEC_SLOPE`` (oFEC-class threshold 2e-2, slope 8: 1e-8 after
  FEC needs 2e-3 before).  Monotonic in the post-FEC BER.
* **OSNR of a path** (0.1 nm): ``58 + P_ch - NF - L_span - 10 log10(N_spans)`` with P_ch 1 dBm,
  NF 5.5 dB, 80 km spans of 0.22 dB/km (L_span 17.6 dB), N_spans = ceil(length / 80).
  ``ESNR = OSNR - 10 log10(R_s / 12.5 GHz) - 1.5 dB`` (R_s 131.6 GBd, implementation penalty).
  The ESNR reported is the one that gives the reported pre-FEC BER under the mode's modulation
  (DP-16QAM at >= 600G: ``BER = 3/8 erfc(sqrt(SNR/10))``; DP-QPSK below:
  ``BER = 1/2 erfc(sqrt(SNR/2))``), so it falls as the BER rises.
* **Q-value**: ``20 log10(sqrt(2) erfcinv(2 pre_fec_ber))`` dB.
* Counters: ``fec-uncorrectable-blocks``/``FECUncorrectableBlocks`` = errored frames; errored
  seconds = samples (seconds) with an errored frame; severely errored seconds = samples with
  >= 30 % of frames lost (G.826) or the path down; unavailable seconds = samples with the path
  down; ``fec-corrected-bits`` = pre-FEC BER x bits carried, summed per sample.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

FEC_THRESHOLD = 2e-2
FEC_SLOPE = 8.0
SPAN_KM = 80.0
SYMBOL_RATE_GBD = 131.6
FCS_BITS = 32


def erfcinv(y: float) -> float:
    """Inverse of math.erfc on (0, 2), by bisection (monotonic, exact to ~1e-12)."""
    if y <= 0:
        return math.inf
    if y >= 2:
        return -math.inf
    lo, hi = -6.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erfc(mid) > y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def path_osnr_db(length_km: float) -> float:
    spans = max(1, math.ceil(length_km / SPAN_KM))
    return 58.0 + 1.0 - 5.5 - 0.22 * SPAN_KM - 10 * math.log10(spans)


def path_esnr_db(length_km: float) -> float:
    return path_osnr_db(length_km) - 10 * math.log10(SYMBOL_RATE_GBD / 12.5) - 1.5


def ber_from_esnr(esnr_db: float, rate_gbps: float) -> float:
    snr = 10 ** (esnr_db / 10)
    if rate_gbps >= 600:
        return 0.375 * math.erfc(math.sqrt(snr / 10))
    return 0.5 * math.erfc(math.sqrt(snr / 2))


def esnr_from_ber(ber: float, rate_gbps: float) -> float:
    ber = min(max(ber, 1e-300), 0.374 if rate_gbps >= 600 else 0.499)
    if rate_gbps >= 600:
        snr = 10 * erfcinv(ber / 0.375) ** 2
    else:
        snr = 2 * erfcinv(2 * ber) ** 2
    return 10 * math.log10(snr)


def pre_fec_ber(post_ber: float, length_km: float, rate_gbps: float) -> float:
    floor = ber_from_esnr(path_esnr_db(length_km), rate_gbps)
    from_post = FEC_THRESHOLD * post_ber ** (1 / FEC_SLOPE) if post_ber > 0 else 0.0
    return min(0.5, max(floor, from_post))


def q_db(ber: float) -> float:
    ber = min(max(ber, 1e-300), 0.4999)
    return 20 * math.log10(math.sqrt(2) * erfcinv(2 * ber))


def dec(value: float, digits: int) -> str:
    """YANG decimal64 lexical form (no exponent) with ``digits`` fraction digits; values too
    small for the fraction digits are 0."""
    if not math.isfinite(value):
        value = 0.0
    q = Decimal(1).scaleb(-digits)
    return format(Decimal(repr(float(value))).quantize(q), "f")


def ber18(v: float) -> str:
    return dec(v, 18)


@dataclass
class Stat:
    """instant/avg/min/max over the current interval, with the times of min and max (ns)."""

    n: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    min_time: int = 0
    max_time: int = 0

    def add(self, v: float, t_ns: int) -> None:
        self.n += 1
        self.total += v
        if v < self.min:
            self.min, self.min_time = v, t_ns
        if v > self.max:
            self.max, self.max_time = v, t_ns


@dataclass
class Sample:
    frames: int = 0
    bits: int = 0
    errored: int = 0
    lost: int = 0


@dataclass
class PmSource:
    """PM of one receiver: the sum of the given paths' counters in one direction."""

    paths: tuple[str, ...] | None  # None = all paths (the terminal's selector output)
    last: dict = field(default_factory=dict)  # raw totals at the last sample
    last_t: float = 0.0
    last_sample: Sample = field(default_factory=Sample)
    last_post: float = 0.0
    uncorrectable: int = 0
    es: int = 0
    ses: int = 0
    uas: int = 0
    corrected_bits: float = 0.0
    post: Stat = field(default_factory=Stat)
    pre: Stat = field(default_factory=Stat)
    q: Stat = field(default_factory=Stat)
    esnr: Stat = field(default_factory=Stat)


def _totals(counters: dict, direction: str, paths) -> dict:
    out = {"frames": 0, "bytes": 0, "errored": 0, "lost": 0}
    for name, c in counters.get(direction, {}).items():
        if paths is not None and name not in paths:
            continue
        out["frames"] += c.get("rx_frames", 0)
        out["bytes"] += c.get("rx_bytes", 0)
        out["errored"] += c.get("errored_frames", 0)
        out["lost"] += c.get("outage_dropped", 0) + c.get("cut_dropped", 0)
    return out


def measured_ber(s: Sample, configured: float) -> float:
    if s.errored > 0 and s.frames > 0:
        p = min(s.errored / s.frames, 1 - 1e-12)
        return -math.log1p(-p) / (s.bits / s.frames)
    if configured == 0 or s.bits * configured >= 3:
        return 0.0
    return configured


class PmEngine:
    """Samples the line's counters every ``interval_s`` for each named source."""

    INTERVAL_NS = 15 * 60 * 10**9

    def __init__(self, direction: str, sources: dict[str, tuple[str, ...] | None]):
        self.direction = direction
        self.sources = {k: PmSource(v) for k, v in sources.items()}
        self.lock = threading.Lock()
        self.bin_start_ns = time.time_ns()

    def _delta(self, src: PmSource, counters: dict) -> tuple[Sample, dict]:
        tot = _totals(counters, self.direction, src.paths)
        if not src.last or tot["frames"] < src.last.get("frames", 0):  # first call or counters reset
            return Sample(), tot
        d = {k: tot[k] - src.last[k] for k in tot}
        return Sample(d["frames"], d["bytes"] * 8 + d["frames"] * FCS_BITS, d["errored"], d["lost"]), tot

    def sample(self, state: dict, source_info) -> None:
        """``source_info(name) -> (configured_ber, length_km, up, rate_gbps)`` from the line state."""
        now = time.monotonic()
        t_ns = time.time_ns()
        with self.lock:
            if t_ns - self.bin_start_ns >= self.INTERVAL_NS:
                self.bin_start_ns = t_ns
                for s in self.sources.values():
                    s.post, s.pre, s.q, s.esnr = Stat(), Stat(), Stat(), Stat()
            for name, src in self.sources.items():
                s, tot = self._delta(src, state.get("counters", {}))
                first = not src.last
                src.last, src.last_t, src.last_sample = tot, now, s
                if first:
                    continue
                cfg_ber, length, up, rate = source_info(name)
                post = measured_ber(s, cfg_ber) if up else 0.0
                src.last_post = post
                pre = pre_fec_ber(post, length, rate)
                src.uncorrectable += s.errored
                src.corrected_bits += pre * s.bits
                bad = s.errored + s.lost
                severe = (not up) or (s.frames > 0 and bad / max(s.frames, 1) >= 0.3)
                src.es += 1 if (s.errored > 0 or severe) else 0
                src.ses += 1 if severe else 0
                src.uas += 0 if up else 1
                src.post.add(post, t_ns)
                src.pre.add(pre, t_ns)
                src.q.add(q_db(pre), t_ns)
                src.esnr.add(esnr_from_ber(pre, rate), t_ns)

    def current(self, name: str, state: dict, cfg_ber: float, length: float, up: bool, rate: float) -> dict:
        """Instant values at ``get`` time plus the interval statistics and counters."""
        with self.lock:
            src = self.sources[name]
            s, tot = self._delta(src, state.get("counters", {}))
            if src.last and time.monotonic() - src.last_t >= 0.2:
                post = measured_ber(s, cfg_ber)
            elif src.last_t:
                post = measured_ber(src.last_sample, cfg_ber)
            else:
                post = cfg_ber
            if not up:
                post = 0.0
            pre = pre_fec_ber(post, length, rate)
            extra_err = s.errored if src.last else 0
            t_ns = time.time_ns()

            def stats(st: Stat, inst: float) -> dict:
                if st.n == 0:
                    return {"instant": inst, "avg": inst, "min": inst, "max": inst, "min-time": t_ns, "max-time": t_ns}
                return {"instant": inst, "avg": st.total / st.n, "min": min(st.min, inst), "max": max(st.max, inst),
                        "min-time": st.min_time if st.min <= inst else t_ns,
                        "max-time": st.max_time if st.max >= inst else t_ns}

            return {
                "post": stats(src.post, post), "pre": stats(src.pre, pre), "q": stats(src.q, q_db(pre)),
                "esnr": stats(src.esnr, esnr_from_ber(pre, rate)),
                "interval": max(0, t_ns - self.bin_start_ns),
                "uncorrectable": src.uncorrectable + extra_err, "es": src.es, "ses": src.ses, "uas": src.uas,
                "corrected_bits": int(src.corrected_bits), "osnr": path_osnr_db(length),
                "start_ns": self.bin_start_ns,
            }

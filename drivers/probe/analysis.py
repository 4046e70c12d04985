"""What a transport test set reports about one probe stream, from (seq, tx time, rx time).

Definitions (../shared/reference/measurement.md §1; RFC 6414 / EXFO / Spirent practice):

- ``lost``: unique sequence numbers of the expected range that never arrived. The range is
  [first_seq, first_seq + sent) when the sender's figures are given, else [min seen, max seen]
  (then head and tail loss are invisible, as for any receiver that joins late).
- ``duplicates``: receptions of a sequence number already received. Duplicates never hide loss
  here: loss counts unique numbers, not rx vs tx totals.
- ``out_of_order`` (EXFO "out-of-sequence"): a frame, not a duplicate, whose number is lower than
  the previous frame's. ``reordered`` (RFC 4737): lower than the highest number seen before it.
- ``sdt_loss_ms`` (packet-loss method): lost / rate. Resolution 1/rate (0.1 ms at 10 kpps).
- ``sdt_gap_ms`` (gap / timestamp method): the largest interval between consecutive arrivals,
  raw (it includes one send interval and any delay difference between the old and new path).
  ``largest_gap`` says where: arrival times, the numbers around it, how many are missing
  across it, and the sender's own spacing of the same two frames (``tx_gap_ms``: if that is
  large too, the sender stalled and the gap is not the network's).
- ``disruptions``: every arrival gap longer than ``gap_threshold_ms`` (EXFO "no traffic time";
  default 10 send intervals, at least 1 ms): count, longest, shortest, last, average, total.
- ``delay_before`` / ``delay_after``: one-way delay rx - tx (ms; min, p50, p99, max) of the frames
  that arrived before / after the largest gap. Meaningful across hosts only with synchronised
  clocks (PTP); on one host exact.
- ``tx_max_gap_ms``: the largest send spacing between consecutive numbers that both arrived, a
  check of the instrument itself.
"""

from __future__ import annotations

import itertools
import struct
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD = struct.Struct("<qqq")  # seq, tx_ns, rx_ns (records files)


@dataclass
class Gap:
    """One interval without arrivals."""

    ms: float
    start_rx_ns: int  # arrival of the last frame before the gap
    end_rx_ns: int  # arrival of the first frame after it
    seq_before: int
    seq_after: int
    missing: int  # numbers between seq_before and seq_after that never arrived
    tx_gap_ms: float  # how far apart the sender sent those two frames
    index: int  # position of the first frame after the gap, in arrival order


@dataclass
class DelayStats:
    count: int = 0
    min_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


@dataclass
class Disruptions:
    """EXFO-style service-disruption statistics over all gaps above the threshold."""

    threshold_ms: float
    count: int = 0
    longest_ms: float = 0.0
    shortest_ms: float = 0.0
    last_ms: float = 0.0
    average_ms: float = 0.0
    total_ms: float = 0.0
    events: list[Gap] = field(default_factory=list)  # the first MAX_EVENTS


@dataclass
class ProbeReport:
    received: int
    unique: int
    expected: int
    first_seq: int | None
    last_seq: int | None
    lost: int
    duplicates: int
    out_of_order: int
    reordered: int
    rate_pps: float | None
    rate_source: str  # "given" | "tx timestamps" | "unknown"
    sdt_loss_ms: float | None
    sdt_gap_ms: float | None
    largest_gap: Gap | None
    disruptions: Disruptions
    delay_before: DelayStats
    delay_after: DelayStats
    delay_all: DelayStats
    tx_max_gap_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_EVENTS = 50


def _pct(sorted_xs: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence."""
    k = max(0, min(len(sorted_xs) - 1, int(-(-q * len(sorted_xs) // 100)) - 1))
    return sorted_xs[k]


def delay_stats(delays_ns: Sequence[int]) -> DelayStats:
    if not delays_ns:
        return DelayStats()
    d = sorted(delays_ns)
    return DelayStats(len(d), d[0] / 1e6, _pct(d, 50) / 1e6, _pct(d, 99) / 1e6, d[-1] / 1e6)


def analyze(seq: Sequence[int], tx_ns: Sequence[int], rx_ns: Sequence[int], *, rate_pps: float | None = None,
            first_seq: int | None = None, sent: int | None = None,
            gap_threshold_ms: float | None = None) -> ProbeReport:
    """Analyse one stream. ``seq``/``tx_ns``/``rx_ns`` are per received frame, in arrival order;
    tx and rx on the same clock (ns). ``rate_pps``: the sender's rate (else estimated from the
    tx timestamps); ``first_seq``/``sent``: the sender's range, to count head and tail loss."""
    n = len(seq)
    if not len(tx_ns) == len(rx_ns) == n:
        raise ValueError(f"seq, tx_ns and rx_ns differ in length: {n}, {len(tx_ns)}, {len(rx_ns)}")
    if sent is not None and first_seq is None:
        first_seq = 0
    # --- sequence accounting, in arrival order
    seen: set[int] = set()
    dup = ooo = reo = 0
    prev = None
    hi_seen = -1
    first_tx: dict[int, int] = {}
    for i in range(n):
        s = seq[i]
        if s in seen:
            dup += 1
        else:
            seen.add(s)
            first_tx[s] = tx_ns[i]
            if prev is not None and s < prev:
                ooo += 1
            if s < hi_seen:
                reo += 1
            hi_seen = max(hi_seen, s)
        prev = s
    if first_seq is not None:
        lo = first_seq
        hi = first_seq + sent - 1 if sent is not None else (max(seen) if seen else first_seq - 1)
    elif seen:
        lo, hi = min(seen), max(seen)
    else:
        lo, hi = 0, -1
    expected = max(0, hi - lo + 1)
    in_range = sum(1 for s in seen if lo <= s <= hi) if (first_seq is not None) else len(seen)
    lost = expected - in_range
    # --- rate
    useq = sorted(seen)
    source = "unknown"
    if rate_pps:
        source = "given"
    elif len(useq) >= 2 and first_tx[useq[-1]] > first_tx[useq[0]]:
        rate_pps = (useq[-1] - useq[0]) * 1e9 / (first_tx[useq[-1]] - first_tx[useq[0]])
        source = "tx timestamps"
    else:
        rate_pps = None
    interval_ms = 1e3 / rate_pps if rate_pps else None
    sdt_loss = lost / rate_pps * 1e3 if rate_pps else None
    tx_max_gap = None
    for a, b in itertools.pairwise(useq):
        if b == a + 1:
            g = (first_tx[b] - first_tx[a]) / 1e6
            if tx_max_gap is None or g > tx_max_gap:
                tx_max_gap = g
    # --- arrival gaps
    if gap_threshold_ms is None:
        gap_threshold_ms = max(1.0, 10 * interval_ms) if interval_ms else 1.0
    dis = Disruptions(threshold_ms=gap_threshold_ms)
    best_i, best = -1, -1
    thr_ns = gap_threshold_ms * 1e6

    def gap_at(i: int) -> Gap:
        a, b = seq[i - 1], seq[i]
        missing = sum(1 for s in range(a + 1, b) if s not in seen) if b > a + 1 else 0
        return Gap(ms=(rx_ns[i] - rx_ns[i - 1]) / 1e6, start_rx_ns=rx_ns[i - 1], end_rx_ns=rx_ns[i], seq_before=a,
                   seq_after=b, missing=missing, tx_gap_ms=(tx_ns[i] - tx_ns[i - 1]) / 1e6, index=i)

    for i in range(1, n):
        d = rx_ns[i] - rx_ns[i - 1]
        if d > best:
            best, best_i = d, i
        if d > thr_ns:
            ms = d / 1e6
            if dis.count == 0 or ms < dis.shortest_ms:
                dis.shortest_ms = ms
            dis.count += 1
            dis.total_ms += ms
            dis.longest_ms = max(dis.longest_ms, ms)
            dis.last_ms = ms
            if len(dis.events) < MAX_EVENTS:
                dis.events.append(gap_at(i))
    if dis.count:
        dis.average_ms = dis.total_ms / dis.count
    largest = gap_at(best_i) if best_i > 0 else None
    # --- one-way delay before / after the largest gap
    delays = [rx_ns[i] - tx_ns[i] for i in range(n)]
    cut = best_i if best_i > 0 else n
    return ProbeReport(
        received=n, unique=len(seen), expected=expected, first_seq=lo if expected else None,
        last_seq=hi if expected else None, lost=lost, duplicates=dup, out_of_order=ooo, reordered=reo,
        rate_pps=rate_pps, rate_source=source, sdt_loss_ms=sdt_loss,
        sdt_gap_ms=largest.ms if largest else None, largest_gap=largest, disruptions=dis,
        delay_before=delay_stats(delays[:cut]), delay_after=delay_stats(delays[cut:]),
        delay_all=delay_stats(delays), tx_max_gap_ms=tx_max_gap)


# --- records: compact (seq, tx_ns, rx_ns) arrays -----------------------------------------------------


@dataclass
class Records:
    """What a receiver recorded, in arrival order (int64 arrays, 24 bytes per frame)."""

    seq: array = field(default_factory=lambda: array("q"))
    tx_ns: array = field(default_factory=lambda: array("q"))
    rx_ns: array = field(default_factory=lambda: array("q"))

    def __len__(self) -> int:
        return len(self.seq)

    def append(self, seq: int, tx_ns: int, rx_ns: int) -> None:
        self.seq.append(seq)
        self.tx_ns.append(tx_ns)
        self.rx_ns.append(rx_ns)

    def window_tx(self, t0_ns: int, t1_ns: int) -> Records:
        """The frames sent in [t0_ns, t1_ns) (tx clock), in arrival order."""
        out = Records()
        for s, t, r in zip(self.seq, self.tx_ns, self.rx_ns, strict=True):
            if t0_ns <= t < t1_ns:
                out.append(s, t, r)
        return out

    def analyze(self, **kw: Any) -> ProbeReport:
        return analyze(self.seq, self.tx_ns, self.rx_ns, **kw)

    def save(self, path: str | Path) -> None:
        """Little-endian int64 triples (seq, tx_ns, rx_ns), arrival order."""
        with open(path, "wb") as f:
            f.writelines(RECORD.pack(s, t, r) for s, t, r in zip(self.seq, self.tx_ns, self.rx_ns, strict=True))

    @classmethod
    def load(cls, path: str | Path) -> Records:
        out = cls()
        for s, t, r in RECORD.iter_unpack(Path(path).read_bytes()):
            out.append(s, t, r)
        return out

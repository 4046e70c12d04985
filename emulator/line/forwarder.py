"""The data plane: move frames between the two TAPs as an optical line would.

Each direction runs in its own forked child so the two never contend for one GIL; the parent
only writes parameters into, and reads counters out of, an anonymous shared mapping. Per
direction, one single-threaded loop reads a burst of frames, decides each frame's fate
(outage, cut path, full queue, bit errors) and schedules survivors in a heap keyed by the
time they reach the far end. Keying by due time, not arrival order, lets frames sent after a
switch to a shorter path overtake those still "in the fibre" of the longer one, as on real
gear.

Outages and cuts act where the frame enters the line: frames already in flight still arrive,
so a receiver sees a gap as long as the outage itself.

Where a frame enters the line is an instant this process only knows up to its own scheduling: a
frame waits in the TAP until the loop reads it, and a loop preempted for 10-40 ms on a small,
busy box would otherwise judge a frame that entered before a cut or a switch by the time it was
read, after it, and stretch the outage the receiver sees by as much (and shorten it at the
end). So each fault edge is an instant (a switch window, an outage, a path's cut and repair),
and a frame is judged by its entry time: its read time, except when an edge falls between the
last moment the TAP was known to be empty (or the loop's wake-up, less the time it waited on a
run queue: /proc/thread-self/schedstat) and the read. Then the loop drains the backlog and
spreads its frames, after those it read since that moment, evenly over that interval (exact for
a paced stream such as the probe's, within the stall for bursty traffic; counting the frames
read since matters when the loop has run behind for a while and the TAP never emptied: 40 ms
behind for 300 ms was seen, and spreading the backlog alone over 300 ms let a whole 30 ms
switch window through). Delivery still counts from the read, so a frame is never early.

The parent stamps an edge (the instant of a cut, the start of a switch window or an outage) a
little before it publishes it, by as much as its own scheduling delays it (0.2-4 ms was seen on a
busy 2-core box): frames that entered in between were judged by the old state. They are still in
the fibre, in the loop's heap, for the path's delay; when ``P_EDGES`` changes the loop judges them
again by their entry times and drops those the new edge covers. A frame delivered before the edge
was published cannot be recalled: that much of a late publication still shows.

Protection switching is programmed into the data plane ahead of time, so its timing does not
depend on when the parent's threads get to run: the parent publishes a "program" (the active
path, the path to use from ``switch_at`` on, and a switch window during which frames entering
the line are dropped) under a sequence lock, and each loop applies it per frame.
"""

from __future__ import annotations

import ctypes
import gc
import heapq
import math
import mmap
import os
import random
import select
import signal
import sys
import time
import traceback
from array import array

from .model import FCS_BYTES, MAX_PATHS, frame_loss_probability
from .roce import TransportConfig
from .tcpreset import rst_to_sender
from .transport import RcDirection

# --- shared layout ----------------------------------------------------------------------------

P_RATE, P_BUFFER_S, P_ACTIVE, P_OUTAGE_UNTIL = 0, 1, 2, 3
P_GEN, P_NEXT_ACTIVE, P_SWITCH_AT, P_WIN_FROM, P_WIN_UNTIL = 4, 5, 6, 7, 8
"""The switch program: P_ACTIVE until P_SWITCH_AT (monotonic s), P_NEXT_ACTIVE from then on;
frames entering within [P_WIN_FROM, P_WIN_UNTIL) are dropped as outage. P_GEN is a sequence
lock (odd while the parent writes) so a loop never acts on half a program."""
P_OUTAGE_FROM = 9
"""An operator outage drops frames entering within [P_OUTAGE_FROM, P_OUTAGE_UNTIL)."""
P_EDGES = 10
"""Bumped by the parent after it publishes an edge (a program, a cut or repair, an outage): a loop
that sees it change re-judges the frames it holds, see the module doc."""
P_QPERR_N, P_QPERR_AT, P_QPERR_CAUSE, P_QPERR_STALLED = 12, 14, 16, 18
"""Two slots each (one per direction, written only by that direction's child): how many times the
modelled RC QP went to error, when (monotonic s), why (transport.CAUSES) and after how long a stall.
A child that sees the sum of the counts change resets its own side's flows too."""
P_PATHS = 24  # per path: delay_s, ber, down_from, down_until
P_STRIDE = 4
N_PARAMS = P_PATHS + P_STRIDE * MAX_PATHS
"""A path is cut for frames entering within [down_from, down_until): cut at down_from, repaired
at down_until (inf while it is down; both inf for a path never cut)."""

COUNTERS = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "errored_frames", "dropped_frames",
            "outage_dropped", "cut_dropped", "queue_dropped", "tx_failed",
            "rc_holds", "rc_timeouts", "rc_stalled", "rc_resets")
"""Per path per direction. dropped_frames = outage_dropped + cut_dropped + queue_dropped (+ frames
the transport model had kept when its QP went to error); errored_frames are those hit by bit errors
(lost, or under the transport model counted but held: see transport.py); tx_failed counts writes
the far TAP refused.  The transport model's: rc_holds (go-back-N loss events), rc_timeouts (waits
for the ACK timer: tail losses and the end of stalls), rc_stalled (TCP frames kept through an
outage instead of dropped), rc_resets (TCP resets sent when the QP went to error)."""
NC = len(COUNTERS)
(C_RXF, C_RXB, C_TXF, C_TXB, C_ERR, C_DROP, C_OUT, C_CUT, C_QUEUE, C_TXFAIL,
 C_RCHOLD, C_RCTIMEOUT, C_RCSTALL, C_RCRST) = range(NC)
DIRECTIONS = ("a_to_b", "b_to_a")

BURST = 64
"""Frames read per wake-up before delivering due frames again, so one busy input cannot starve
the output side of the same loop."""
IDLE_S = 0.25
"""Longest sleep with nothing to do; bounds how late an orphaned child notices its parent died."""
FLUSH_S = 0.001
"""Counters are kept in plain ints and copied to shared memory at most this often while busy
(and always before sleeping), so ``get`` is at most ~1 ms stale."""

SPIN_S = 0.0001
"""How long before a frame is due the loop stops sleeping and polls instead. A timer wake-up
here is ~50 us late at the median and ~150 us at p99; polling the last 100 us keeps the
delay accurate at a small CPU cost (at most 100 us per delivery wake-up)."""

STALL_S = 0.001
"""A read this much later than the last moment the input was known empty is a backlog: only then
is a frame's entry time estimated rather than taken as its read time (see the module doc)."""
WAKE_S = 0.00005
"""A wake-up from select without run-queue wait comes this soon after the frame that caused it."""
DRAIN_MAX = 4096
"""Most frames read in one go to size a backlog that straddles a fault edge."""

MAX_FLOWS = 1024
"""Flows a direction remembers (each by its last frame, up to an MTU) to reset them on a QP error."""
RESET_S = 10.0
"""After its QP went to error, how long a direction answers the frames of the flows it reset with
another reset (retransmissions, challenge ACKs); new flows pass as usual."""

PR_SET_PDEATHSIG = 1
PR_SET_TIMERSLACK = 29


class Shared:
    """Parameters (float64, written by the parent) and counters (uint64, each direction's
    child writes its own half) in one MAP_SHARED anonymous mapping that survives fork."""

    def __init__(self, n_paths: int) -> None:
        if not 1 <= n_paths <= MAX_PATHS:
            raise ValueError(f"n_paths must be 1..{MAX_PATHS}, got {n_paths}")
        self.n_paths = n_paths
        psize = 8 * N_PARAMS
        self._mm = mmap.mmap(-1, psize + 8 * 2 * MAX_PATHS * NC)
        view = memoryview(self._mm)
        self.params = view[:psize].cast("d")
        self.counters = view[psize:].cast("Q")
        self.params[P_SWITCH_AT] = math.inf  # no switch pending: P_ACTIVE alone decides
        self.params[P_WIN_FROM] = math.inf
        for i in range(MAX_PATHS):
            self.params[P_PATHS + P_STRIDE * i + 2] = math.inf
            self.params[P_PATHS + P_STRIDE * i + 3] = math.inf

    def set_program(self, active: int, next_active: int, switch_at: float, win_from: float,
                    win_until: float) -> None:
        """Publish a switch program (see P_GEN); only one writer (the parent) at a time."""
        p = self.params
        gen = p[P_GEN]
        p[P_GEN] = gen + 1.0
        p[P_ACTIVE] = float(active)
        p[P_NEXT_ACTIVE] = float(next_active)
        p[P_SWITCH_AT] = switch_at
        p[P_WIN_FROM] = win_from
        p[P_WIN_UNTIL] = win_until
        p[P_GEN] = gen + 2.0
        self.edges_published()

    def set_outage(self, start: float, end: float) -> None:
        """Drop frames entering within [start, end) (monotonic s)."""
        p = self.params
        p[P_OUTAGE_FROM] = start  # from first: see set_path
        p[P_OUTAGE_UNTIL] = end
        self.edges_published()

    def edges_published(self) -> None:
        """Tell the loops to re-judge the frames they hold (after the new edges are written)."""
        self.params[P_EDGES] += 1.0

    def program(self) -> tuple[int, int, float, float, float]:
        p = self.params
        return (int(p[P_ACTIVE]), int(p[P_NEXT_ACTIVE]), p[P_SWITCH_AT], p[P_WIN_FROM], p[P_WIN_UNTIL])

    def set_path(self, i: int, delay_s: float, ber: float, up: bool, at: float | None = None) -> None:
        """A path's delay and BER, and whether it is up; a change of ``up`` takes effect for
        frames entering from ``at`` (monotonic s, default now) on: the instant of the cut or
        repair. Written so that a loop reading down_until before down_from never sees a cut
        that starts in the past."""
        b = P_PATHS + P_STRIDE * i
        p = self.params
        p[b] = delay_s
        p[b + 1] = ber
        down = p[b + 3] == math.inf and p[b + 2] != math.inf
        if up == (not down):
            return
        at = time.monotonic() if at is None else at
        if up:
            p[b + 3] = at  # repaired: the cut was [down_from, at)
        else:
            p[b + 2] = at  # first the new start: [at, old down_until) is empty or in the past
            p[b + 3] = math.inf
        self.edges_published()

    def path(self, i: int) -> tuple[float, float, bool]:
        """(delay_s, ber, up now)."""
        b = P_PATHS + P_STRIDE * i
        p = self.params
        return p[b], p[b + 1], not p[b + 2] <= time.monotonic() < p[b + 3]

    def counter_values(self) -> list[int]:
        """A copy of all counters: index [(direction * MAX_PATHS + path) * NC + counter]."""
        return self.counters.tolist()


# --- the per-direction loop ---------------------------------------------------------------------


class _RunDelay:
    """Time this thread has waited on a run queue (ns), from /proc/thread-self/schedstat; 0 where
    the kernel does not keep it."""

    def __init__(self) -> None:
        try:
            self.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.fd = -1

    def __call__(self) -> int:
        if self.fd < 0:
            return 0
        try:
            return int(os.pread(self.fd, 128, 0).split()[1])
        except (OSError, IndexError, ValueError):
            return 0


def entry_times(t_lo: float, reads: list[float], until: float, before: int = 0) -> list[float]:
    """Entry estimates for a backlog: frames read at ``reads`` (in order) entered after ``t_lo``
    and before ``until`` (when the input was empty again), and so did the ``before`` frames read
    since ``t_lo`` ahead of them; all of them spread evenly, never after the read.  ``before``
    matters when the loop has run behind for a while: the input never emptied, ``t_lo`` is old,
    and only the last of the frames since then are the backlog."""
    m = before + len(reads)
    span = until - t_lo
    return [min(r, t_lo + span * (before + i + 1) / m) for i, r in enumerate(reads)]


def _edge_between(t_lo: float, t: float, params: memoryview, first: int, nxt: int, *edges: float) -> bool:
    """Whether a fault edge falls in (t_lo, t]: the program's switch and window, the outage, or
    the cut or repair of either path the program uses (down_until read before down_from)."""
    fb, nb = P_PATHS + P_STRIDE * first, P_PATHS + P_STRIDE * nxt
    return any(t_lo < e <= t for e in (*edges, params[fb + 3], params[fb + 2], params[nb + 3], params[nb + 2]))


def read_program(params: memoryview) -> tuple[float, float, float, float, float] | None:
    """The published switch program (see P_GEN), or None while the parent is writing one."""
    gen = params[P_GEN]
    if int(gen) & 1:
        return None
    prog = (params[P_ACTIVE], params[P_NEXT_ACTIVE], params[P_SWITCH_AT], params[P_WIN_FROM], params[P_WIN_UNTIL])
    return prog if params[P_GEN] == gen else None


def rejudge(heap: list[tuple[float, int, bytes, int, float, float]], params: memoryview,
            win_from: float, win_until: float, local: list[int], rc: RcDirection | None = None,
            dead: set[int] | None = None) -> None:
    """Drop the held frames (``heap``: due, seq, frame, counter base, entry, entered after) that
    entered within a fault the parent has just published: the switch window, the operator outage,
    or a cut of the path the frame took.  Counted as if dropped on entry.  Only frames known to
    have entered after the fault began (not merely read after it, as a backlog is) are dropped.
    Under the transport model (``rc``) a TCP frame is kept through the outage instead, as on entry."""
    out_until = params[P_OUTAGE_UNTIL]  # until before from: see Shared.set_path
    out_from = params[P_OUTAGE_FROM]
    keep = []
    for item in heap:
        if dead and item[1] in dead:  # a lost frame's first schedule: its NAK moved it (see run_direction)
            dead.discard(item[1])
            continue
        k, t_in, after = item[3], item[4], item[5]
        b = P_PATHS + P_STRIDE * (k // NC)
        down_until = params[b + 3]
        if out_from <= after and t_in < out_until:
            c, end = C_OUT, out_until
        elif win_from <= after and t_in < win_until:
            c, end = C_OUT, win_until
        elif params[b + 2] <= after and t_in < down_until:
            c, end = C_CUT, down_until
        else:
            keep.append(item)
            continue
        if rc is not None and item[2][12:14] == b"\x08\x00" and item[2][23:24] == b"\x06" \
                and rc.modelled(item[2][26:38], item[2]):
            rc.stall(item[2], k, t_in, end)
            local[k + C_RCSTALL] += 1
            if rc.pending is not None and rc.pending[2][1] == item[1]:
                rc.pending = None
            continue
        local[k + c] += 1
        local[k + C_DROP] += 1
    if len(keep) != len(heap):
        heap[:] = keep
        heapq.heapify(heap)


def _sleep(in_fd: int, timeout: float, run_delay: _RunDelay, t_lo: float) -> tuple[float, bool]:
    """Wait for input or ``timeout``. Returns (the new lower bound on the entry of the next frame
    read, whether input came): on input, the wake-up less the time spent waiting on a run queue
    (a frame that came while we could not run has waited that long); on a timeout, now."""
    waited = run_delay()
    ready = select.select((in_fd,), (), (), timeout)[0]
    woke = time.monotonic()
    if not ready:
        return woke, False
    return max(t_lo, woke - (run_delay() - waited) / 1e9 - WAKE_S), True


def run_direction(in_fd: int, out_fd: int, shared: Shared, direction: int, read_size: int,
                  rng: random.Random, parent_pid: int | None = None,
                  transport: TransportConfig | None = None) -> None:
    """Forward frames from ``in_fd`` to ``out_fd`` forever (returns only if the parent dies).

    Any fd that keeps message boundaries works (TAP, or a datagram socketpair in tests).
    ``transport`` (enabled) holds IPv4 TCP frames as an RC QP would (transport.py).
    """
    params = shared.params
    counters = shared.counters
    cbase = direction * MAX_PATHS * NC
    cend = cbase + shared.n_paths * NC
    local = [0] * (shared.n_paths * NC)
    heap: list[tuple[float, int, bytes, int, float, float]] = []  # due, seq, frame, counter base, entry, entered after
    push, pop = heapq.heappush, heapq.heappop
    mono, rd, wr, rnd = time.monotonic, os.read, os.write, rng.random
    run_delay = _RunDelay()
    seq = 0
    last_dep = 0.0
    last_flush = 0.0
    dirty = False
    cached_ber = 0.0
    pcache: dict[int, float] = {}
    inf = math.inf
    prog = (0.0, 0.0, inf, inf, 0.0)  # last consistent switch program
    t_lo = mono()  # every frame still to be read entered the input after this instant
    since = 0  # frames read since t_lo was last set
    backlog: list[tuple[bytes, float, float]] = []  # (frame, entry, read), next one last
    held: tuple[bytes, float] | None = None  # (frame, read): read after a stall, judged next burst
    edges = params[P_EDGES]
    rc = RcDirection(transport, rng.random, rng.expovariate) if transport is not None and transport.enabled else None
    dead: set[int] = set()  # seqs of heap entries a NAK rescheduled (skipped when popped)
    qp_seen = params[P_QPERR_N] + params[P_QPERR_N + 1]
    rc_k = 0  # counter base of the path the last modelled frame took
    rc_delay = 0.0

    def send_reset(frame: bytes, k: int) -> None:
        """Answer the sender of ``frame`` with a TCP RST in its own sequence space (tcpreset.py)."""
        r = rst_to_sender(frame)
        if r is not None:
            try:
                wr(in_fd, r)
                local[k + C_RCRST] += 1
            except OSError:
                pass

    def qp_reset(now: float, own: bool, cause: int) -> None:
        """The QP went to error: drop what the model kept and reset this side's flows."""
        nonlocal qp_seen, dirty
        assert rc is not None
        stalled_s = now - rc.stall_since if rc.stalled_now else 0.0
        dropped, last = rc.error(now, RESET_S)
        for _, kk, _ in dropped:
            local[kk + C_DROP] += 1
        for f in last:
            send_reset(f, rc_k)
        if own:
            params[P_QPERR_AT + direction] = now
            params[P_QPERR_CAUSE + direction] = float(cause)
            params[P_QPERR_STALLED + direction] = stalled_s
            params[P_QPERR_N + direction] += 1.0
        qp_seen = params[P_QPERR_N] + params[P_QPERR_N + 1]
        dirty = True

    def rc_resume(release: float) -> None:
        nonlocal seq
        assert rc is not None
        rate = params[P_RATE]
        for f, kk, ti in sorted(rc.resume(release, rc_delay), key=lambda x: x[2]):
            push(heap, (rc.floor, seq, f, kk, ti, ti))
            seq += 1
            if rate > 0.0:  # the resent window leaves at the line rate, not in one burst
                rc.floor += (len(f) + FCS_BYTES) * 8 / rate
        local[rc_k + C_RCTIMEOUT] += 1

    def rate_hit(now: float) -> None:
        """The line's rate changed: the modelled frames in the fibre are lost and resent when the
        QP's timer fires (roce.TransportConfig.rate_change_hit); nothing in flight, nothing lost."""
        assert rc is not None
        lost = [it for it in heap if not (dead and it[1] in dead) and it[2][12:14] == b"\x08\x00"
                and it[2][23:24] == b"\x06" and rc.modelled(it[2][26:38], it[2])]
        if not lost:
            return
        gone = {it[1] for it in lost}
        heap[:] = [it for it in heap if it[1] not in gone]
        heapq.heapify(heap)
        for it in lost:
            local[it[3] + C_RCSTALL] += 1
        rc.hit(now, sorted(((it[2], it[3], it[4]) for it in lost), key=lambda x: x[2]))

    def judge_outages(t: float, first: int, nxt: int, switch_at: float, win_from: float, win_until: float,
                      out_from: float, out_until: float) -> None:
        """outage_hold active: an outage that has begun stalls this direction from its start, frames
        or not (RcDirection.outage); a cut's stall ends once the path in use is up again."""
        assert rc is not None
        pb = P_PATHS + P_STRIDE * (nxt if t >= switch_at else first)
        d_until, d_from = params[pb + 3], params[pb + 2]  # until before from: see Shared.set_path
        for start, end in ((out_from, out_until), (win_from, win_until), (d_from, d_until)):
            if start <= t and start < end:
                rc.outage(start, end)
        if rc.stalled_now and rc.stall_end == inf and not rc.stall_loss and not d_from <= t < d_until:
            rc.stall_end = t

    last_rate = params[P_RATE]
    while True:
        now = mono()
        if params[P_EDGES] != edges:  # a fault was published: re-judge what is in the fibre first
            new_edges = params[P_EDGES]  # before the state it announces
            cand = read_program(params)
            if cand is not None:  # else the parent is still writing it: next time round
                prog, edges = cand, new_edges
                if heap:
                    rejudge(heap, params, prog[3], prog[4], local, rc, dead)
                    dirty = True
        if rc is not None:
            if params[P_QPERR_N] + params[P_QPERR_N + 1] != qp_seen:  # the other direction's QP failed
                qp_reset(now, False, 0)
            if rc.stalled_now and rc.deadline() <= now:  # a stall ended, or ran past the retry budget
                if rc.exhausted(now):
                    qp_reset(now, True, 2 if rc.stall_loss else 1)
                elif rc.stall_end <= now:
                    rc_resume(rc.release_at(now))
                dirty = True
        # Deliver every frame whose time has come.
        if heap and heap[0][0] <= now:
            while heap and heap[0][0] <= now:
                _, s_, frame, k, _, _ = pop(heap)
                if dead and s_ in dead:
                    dead.discard(s_)
                    continue
                try:
                    wr(out_fd, frame)
                except OSError:
                    local[k + C_TXFAIL] += 1
                    continue
                local[k + C_TXF] += 1
                local[k + C_TXB] += len(frame)
            dirty = True

        # Read a burst; the line's state is sampled once per burst, its edges are instants.
        t_snap = mono()
        rate = params[P_RATE]
        if rate != last_rate:
            if rc is not None and rc.cfg.rate_change_hit and last_rate > 0.0 and rate > 0.0:
                rate_hit(t_snap)
            last_rate = rate
        buffer_s = params[P_BUFFER_S]
        out_until = params[P_OUTAGE_UNTIL]  # until before from: see Shared.set_path
        out_from = params[P_OUTAGE_FROM]
        cand = read_program(params)
        if cand is not None:  # else the parent is writing a new one: keep the last for this burst
            prog = cand
        a0, a1, switch_at, win_from, win_until = prog
        first, nxt = int(a0), int(a1)
        if rc is not None and rc.cfg.outage_hold == "active":
            judge_outages(t_snap, first, nxt, switch_at, win_from, win_until, out_from, out_until)
        active = -1
        delay = ber = 0.0
        down_from = down_until = inf
        k = 0
        n = 0
        while n < BURST:
            if heap and heap[0][0] <= now:
                break  # something is due: deliver it before reading on
            if backlog:
                frame, t_in, now = backlog.pop()
                after = t_in
            else:
                if held is not None:
                    frame, now = held
                    held = None
                else:
                    try:
                        frame = rd(in_fd, read_size)
                    except BlockingIOError:
                        t_lo, since = mono(), 0
                        break
                    except OSError:  # e.g. EIO while the far end's link is down: nothing to read
                        break
                    # Stamp each frame as it is read (a burst takes a while to drain). A frame
                    # queued in the TAP while we were busy or preempted is stamped late, never early.
                    now = mono()
                    if now - t_snap > STALL_S:  # we were held up: the state read above may be old
                        held = (frame, now)
                        break
                t_in, after = now, t_lo
                if now - t_lo > STALL_S and _edge_between(t_lo, now, params, first, nxt, switch_at, win_from,
                                                          win_until, out_from, out_until):
                    # A backlog straddles a fault edge: size it, and judge each frame by when
                    # it entered, not by when we got to it.
                    batch, reads = [frame], [now]
                    while len(batch) < DRAIN_MAX:
                        try:
                            batch.append(rd(in_fd, read_size))
                        except OSError:
                            break
                        reads.append(mono())
                    until = mono()
                    est = entry_times(t_lo, reads, until, since)
                    backlog = list(zip(batch, est, reads, strict=True))
                    backlog.reverse()
                    t_lo = until if len(batch) < DRAIN_MAX else est[-1]
                    since = 0
                    frame, t_in, now = backlog.pop()
                    after = t_in
                else:
                    since += 1
            n += 1
            use = nxt if t_in >= switch_at else first
            if use != active:  # the path this frame takes: the program's, at its entry time
                active = use
                pb = P_PATHS + P_STRIDE * active
                delay, ber = params[pb], params[pb + 1]
                down_until, down_from = params[pb + 3], params[pb + 2]
                if ber != cached_ber:
                    cached_ber, pcache = ber, {}
                k = active * NC
            size = len(frame)
            local[k + C_RXF] += 1
            local[k + C_RXB] += size
            # IPv4 TCP under the transport model: an RC QP's traffic (the probe's UDP is not)
            tcp = rc is not None and frame[23:24] == b"\x06" and frame[12:14] == b"\x08\x00"
            if tcp:
                assert rc is not None
                key = frame[26:38]
                tcp = rc.modelled(key, frame)
            if tcp:
                if rc.resetting:
                    if now > rc.reset_until:
                        rc.resetting = set()
                    elif key in rc.resetting:  # a flow of the failed QP: answer it again, drop it
                        send_reset(frame, k)
                        local[k + C_DROP] += 1
                        continue
                if key not in rc.flows and len(rc.flows) >= MAX_FLOWS:
                    rc.flows.clear()  # flows of jobs long gone: an active one is back with its next frame
                rc.flows[key] = frame
                rc.last_in = t_in
                rc_k, rc_delay = k, delay
            if out_from <= t_in < out_until or win_from <= t_in < win_until:
                if tcp:
                    rc.stall(frame, k, t_in, out_until if out_from <= t_in < out_until else win_until)
                    local[k + C_RCSTALL] += 1
                    continue
                local[k + C_OUT] += 1
                local[k + C_DROP] += 1
                continue
            if down_from <= t_in < down_until:
                if tcp:
                    rc.stall(frame, k, t_in, down_until)
                    local[k + C_RCSTALL] += 1
                    continue
                local[k + C_CUT] += 1
                local[k + C_DROP] += 1
                continue
            bits = (size + FCS_BYTES) * 8
            if rate > 0.0:  # model.schedule_departure, inlined: this runs per frame
                start = last_dep if last_dep > now else now  # noqa: FURB136 - hot loop, no call
                if start - now > buffer_s:
                    local[k + C_QUEUE] += 1
                    local[k + C_DROP] += 1
                    continue
                last_dep = dep = start + bits / rate
            else:
                dep = now
            if ber > 0.0:  # errored frames still used their slot in the shaper
                p = pcache.get(size)
                if p is None:
                    p = pcache[size] = frame_loss_probability(ber, size)
                if rnd() < p:
                    local[k + C_ERR] += 1
                    if not tcp:
                        continue  # lost; a modelled QP's frame is resent instead (the holds below)
            if not tcp:
                push(heap, (dep + delay, seq, frame, k, t_in, after))
                seq += 1
                continue
            # --- the modelled RC QP (transport.py) ---
            if rc.stalled_now:  # the first frame through after an outage, or under sustained loss
                if rc.stall_loss and rc.no_progress(ber, rate, delay):
                    rc.stall(frame, k, t_in, inf, loss=True)
                    local[k + C_RCSTALL] += 1
                    continue
                if rc.exhausted(t_in):
                    qp_reset(t_in, True, 2 if rc.stall_loss else 1)
                    local[k + C_DROP] += 1
                    continue
                rc_resume(rc.release_at(t_in))
            if rc.pending is not None:  # the frame after a loss: its NAK can now be sent
                natural, provisional, item = rc.pending
                rc.pending = None
                if now < provisional:  # still in the heap, due at the ACK timeout
                    again = rc.nak_due(natural, t_in, delay, rc.nak_hold(rate, delay))
                    if again < provisional:
                        dead.add(item[1])
                        push(heap, (again, seq, item[2], item[3], item[4], item[5]))
                        seq += 1
                        rc.floor = again
                    else:
                        local[item[3] + C_RCTIMEOUT] += 1
                else:
                    local[item[3] + C_RCTIMEOUT] += 1
            due = dep + delay
            if due < rc.floor:  # behind a hold: queued, and leaving at the line rate once it ends
                due = rc.floor
                if rate > 0.0:
                    rc.floor += bits / rate
            if ber > 0.0 and rc.loss_event(bits, ber):
                local[k + C_RCHOLD] += 1
                if rc.no_progress(ber, rate, delay):  # sustained loss: no useful progress from here
                    rc.stall(frame, k, t_in, inf, loss=True)
                    local[k + C_RCSTALL] += 1
                    continue
                item = (due + rc.first_fire, seq, frame, k, t_in, after)  # until the next frame says otherwise
                push(heap, item)
                seq += 1
                rc.floor = item[0]
                if rnd() < rc.tail_loss:
                    local[k + C_RCTIMEOUT] += 1
                else:
                    rc.pending = (due, item[0], item)
                continue
            push(heap, (due, seq, frame, k, t_in, after))
            seq += 1
        if n:
            dirty = True
        if n == BURST or backlog or held is not None:
            continue  # more is probably waiting

        # Nothing more to read: publish counters, then sleep until readable or next due.
        now = mono()
        if dirty and (not heap or now - last_flush >= FLUSH_S):
            counters[cbase:cend] = array("Q", local)
            last_flush = now
            dirty = False
        wake = heap[0][0] if heap else inf
        if rc is not None and rc.stalled_now:
            wake = min(wake, rc.deadline() + SPIN_S)
        if wake < inf:
            # Sleep until shortly before the next frame is due, then spin (polling the input too).
            timeout = wake - now - SPIN_S
            if dirty and timeout > FLUSH_S:
                timeout = FLUSH_S
            if timeout > IDLE_S:
                timeout = IDLE_S
            if timeout > 0.0:
                lo, _ = _sleep(in_fd, timeout, run_delay, t_lo)
                if lo != t_lo:
                    t_lo, since = lo, 0
        else:
            lo, ready = _sleep(in_fd, IDLE_S, run_delay, t_lo)
            if lo != t_lo:
                t_lo, since = lo, 0
            if not ready and parent_pid is not None and os.getppid() != parent_pid:
                return


# --- process management -------------------------------------------------------------------------


def _child_setup(parent_pid: int) -> None:
    """Die with the parent, react to SIGTERM at once, wake from sleeps on time, no GC pauses."""
    gc.disable()  # the loop makes no reference cycles; a full collection would stall it for ms
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Default timer slack (50 us) would add to every scheduled delivery; 1 us is plenty.
    libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    if os.getppid() != parent_pid:  # parent died before PDEATHSIG was armed
        os._exit(1)


def start_forwarders(fd_a: int, fd_b: int, shared: Shared, read_size: int,
                     seed: int | None = None, transport: TransportConfig | None = None) -> list[int]:
    """Fork one child per direction (A->B reads fd_a, writes fd_b; B->A the reverse).

    Must be called before the parent starts any thread. Returns the children's pids.
    """
    parent = os.getpid()
    pids: list[int] = []
    for direction, (fin, fout) in enumerate(((fd_a, fd_b), (fd_b, fd_a))):
        rng = random.Random(None if seed is None else seed * 2 + direction)
        if seed is None:
            rng.seed(os.urandom(16))
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child_setup(parent)
                run_direction(fin, fout, shared, direction, read_size, rng, parent, transport)
            except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    return pids


def stop_forwarders(pids: list[int], timeout_s: float = 2.0) -> None:
    """SIGTERM the children and reap them (SIGKILL any that linger)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)


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

# --- shared layout ----------------------------------------------------------------------------

P_RATE, P_BUFFER_S, P_ACTIVE, P_OUTAGE_UNTIL = 0, 1, 2, 3
P_GEN, P_NEXT_ACTIVE, P_SWITCH_AT, P_WIN_FROM, P_WIN_UNTIL = 4, 5, 6, 7, 8
"""The switch program: P_ACTIVE until P_SWITCH_AT (monotonic s), P_NEXT_ACTIVE from then on;
frames entering within [P_WIN_FROM, P_WIN_UNTIL) are dropped as outage. P_GEN is a sequence
lock (odd while the parent writes) so a loop never acts on half a program."""
P_PATHS = 16  # per path: delay_s, ber, up
P_STRIDE = 3
N_PARAMS = P_PATHS + P_STRIDE * MAX_PATHS

COUNTERS = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "errored_frames", "dropped_frames",
            "outage_dropped", "cut_dropped", "queue_dropped", "tx_failed")
"""Per path per direction. dropped_frames = outage_dropped + cut_dropped + queue_dropped;
errored_frames are those lost to bit errors; tx_failed counts writes the far TAP refused."""
NC = len(COUNTERS)
(C_RXF, C_RXB, C_TXF, C_TXB, C_ERR, C_DROP, C_OUT, C_CUT, C_QUEUE, C_TXFAIL) = range(NC)
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

    def program(self) -> tuple[int, int, float, float, float]:
        p = self.params
        return (int(p[P_ACTIVE]), int(p[P_NEXT_ACTIVE]), p[P_SWITCH_AT], p[P_WIN_FROM], p[P_WIN_UNTIL])

    def set_path(self, i: int, delay_s: float, ber: float, up: bool) -> None:
        b = P_PATHS + P_STRIDE * i
        self.params[b] = delay_s
        self.params[b + 1] = ber
        self.params[b + 2] = 1.0 if up else 0.0

    def path(self, i: int) -> tuple[float, float, bool]:
        b = P_PATHS + P_STRIDE * i
        return self.params[b], self.params[b + 1], self.params[b + 2] != 0.0

    def counter_values(self) -> list[int]:
        """A copy of all counters: index [(direction * MAX_PATHS + path) * NC + counter]."""
        return self.counters.tolist()


# --- the per-direction loop ---------------------------------------------------------------------


def run_direction(in_fd: int, out_fd: int, shared: Shared, direction: int, read_size: int,
                  rng: random.Random, parent_pid: int | None = None) -> None:
    """Forward frames from ``in_fd`` to ``out_fd`` forever (returns only if the parent dies).

    Any fd that keeps message boundaries works (TAP, or a datagram socketpair in tests).
    """
    params = shared.params
    counters = shared.counters
    cbase = direction * MAX_PATHS * NC
    cend = cbase + shared.n_paths * NC
    local = [0] * (shared.n_paths * NC)
    heap: list[tuple[float, int, bytes, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    mono, rd, wr, sel, rnd = time.monotonic, os.read, os.write, select.select, rng.random
    rlist = [in_fd]
    seq = 0
    last_dep = 0.0
    last_flush = 0.0
    dirty = False
    cached_ber = 0.0
    pcache: dict[int, float] = {}
    inf = math.inf
    prog = (0.0, 0.0, inf, inf, 0.0)  # last consistent switch program

    while True:
        now = mono()
        # Deliver every frame whose time has come.
        if heap and heap[0][0] <= now:
            while heap and heap[0][0] <= now:
                _, _, frame, k = pop(heap)
                try:
                    wr(out_fd, frame)
                except OSError:
                    local[k + C_TXFAIL] += 1
                    continue
                local[k + C_TXF] += 1
                local[k + C_TXB] += len(frame)
            dirty = True

        # Read a burst; the line's state is sampled once per burst.
        rate = params[P_RATE]
        buffer_s = params[P_BUFFER_S]
        outage_until = params[P_OUTAGE_UNTIL]
        gen = params[P_GEN]
        if not int(gen) & 1:
            cand = (params[P_ACTIVE], params[P_NEXT_ACTIVE], params[P_SWITCH_AT], params[P_WIN_FROM],
                    params[P_WIN_UNTIL])
            if params[P_GEN] == gen:
                prog = cand
        # else: the parent is writing a new program right now; keep the last one for this burst
        active_f, next_f, switch_at, win_from, win_until = prog
        if now >= switch_at:
            active_f, switch_at = next_f, inf
        active = int(active_f)
        pb = P_PATHS + P_STRIDE * active
        delay, ber, up = params[pb], params[pb + 1], params[pb + 2] != 0.0
        if ber != cached_ber:
            cached_ber, pcache = ber, {}
        k = active * NC
        n = 0
        while n < BURST:
            if heap and heap[0][0] <= now:
                break  # something is due: deliver it before reading on
            try:
                frame = rd(in_fd, read_size)
            except BlockingIOError:
                break
            except OSError:  # e.g. EIO while the far end's link is down: nothing to read
                break
            n += 1
            # Stamp each frame as it is read (a burst takes a while to drain). A frame queued in
            # the TAP while we were busy or preempted is stamped late, never early: the line
            # never delivers a frame sooner than its delay after we saw it.
            now = mono()
            if now >= switch_at:  # a programmed switch completes within this burst
                active, switch_at = int(next_f), inf
                pb = P_PATHS + P_STRIDE * active
                delay, ber, up = params[pb], params[pb + 1], params[pb + 2] != 0.0
                if ber != cached_ber:
                    cached_ber, pcache = ber, {}
                k = active * NC
            size = len(frame)
            local[k + C_RXF] += 1
            local[k + C_RXB] += size
            if now < outage_until or win_from <= now < win_until:
                local[k + C_OUT] += 1
                local[k + C_DROP] += 1
                continue
            if not up:
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
                    continue
            push(heap, (dep + delay, seq, frame, k))
            seq += 1
        if n:
            dirty = True
        if n == BURST:
            continue  # more is probably waiting

        # Nothing more to read: publish counters, then sleep until readable or next due.
        now = mono()
        if dirty and (not heap or now - last_flush >= FLUSH_S):
            counters[cbase:cend] = array("Q", local)
            last_flush = now
            dirty = False
        if heap:
            # Sleep until shortly before the next frame is due, then spin (polling the input too).
            timeout = heap[0][0] - now - SPIN_S
            if dirty and timeout > FLUSH_S:
                timeout = FLUSH_S
            if timeout > 0.0:
                sel(rlist, (), (), timeout)
        elif not sel(rlist, (), (), IDLE_S)[0] and parent_pid is not None and os.getppid() != parent_pid:
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
                     seed: int | None = None) -> list[int]:
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
                run_direction(fin, fout, shared, direction, read_size, rng, parent)
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


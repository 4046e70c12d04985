"""The transport model applied by the line's data plane: TCP frames are held as an RC QP would
have delayed them, never dropped; an outage waits for the ACK timer; a stall past the retry budget
resets the flows.  Over datagram socketpairs, as in test_line (no root needed); timing bounds are
loose (a busy 2-core box), what is asserted is which frames arrived, in what order, and after
which modelled wait."""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from emulator.line import roce
from emulator.line.forwarder import (COUNTERS, NC, P_BUFFER_S, P_OUTAGE_FROM, P_OUTAGE_UNTIL, P_QPERR_CAUSE,
                                     P_QPERR_N, P_RATE, Shared, run_direction)
from emulator.line.tcpreset import TCP_ACK, TCP_RST, flow_key, rst_to_sender
from emulator.line.transport import CAUSES

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
IP_A, IP_B = bytes([198, 18, 1, 11]), bytes([198, 18, 2, 11])


def tcp_frame(n: int, size: int = 1000, sport: int = 40000, seq: int = 1000, ack: int = 5000,
              dport: int = 41000) -> bytes:
    """Ethernet + IPv4 + TCP (ACK|PSH) from A to B; the payload starts with (n, send time)."""
    payload = struct.pack("!Id", n, time.monotonic()).ljust(size, b"\0")
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, TCP_ACK | 0x08, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0) + IP_A + IP_B
    return MAC_B + MAC_A + b"\x08\x00" + ip + tcp + payload


def udp_frame(n: int, size: int = 200) -> bytes:
    payload = struct.pack("!Id", n, time.monotonic()).ljust(size, b"\0")
    udp = struct.pack("!HHHH", 5000, 5001, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0) + IP_A + IP_B
    return MAC_B + MAC_A + b"\x08\x00" + ip + udp + payload


PAYLOAD_AT = {6: 14 + 20 + 20, 17: 14 + 20 + 8}


def wait_for(cond: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Until ``cond()`` holds (the reader threads and the counters lag the loop a little)."""
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)


class RcLoop:
    """run_direction with a transport model in a forked child; ``back`` collects what the line
    wrote back into its input (the resets)."""

    def __init__(self, transport: roce.TransportConfig, delay_s: float = 0.0016, rate_bps: float = 1e9,
                 seed: int = 3) -> None:
        self.shared = Shared(2)
        self.shared.params[P_BUFFER_S] = 0.05
        self.shared.params[P_RATE] = rate_bps
        for i in range(2):
            self.shared.set_path(i, delay_s, 0.0, True)
        self.tx, child_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        child_out, self.rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        child_in.setblocking(False)
        # blocking output: a hold releases its frames at once, more than a socketpair queues (10)
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            try:
                run_direction(child_in.fileno(), child_out.fileno(), self.shared, 0, 65536,
                              random.Random(seed), parent, transport)
            finally:
                os._exit(0)
        child_in.close()
        child_out.close()
        self.mode = transport.outage_hold
        self.got: list[tuple[int, int, float, float]] = []   # (protocol, n, sent, received)
        self.back: list[bytes] = []
        for target in (self._read, self._read_back):
            threading.Thread(target=target, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.rx.recv(65536)
            except OSError:
                return
            if not data:
                return
            proto = data[23]
            n, ts = struct.unpack_from("!Id", data, PAYLOAD_AT.get(proto, 0))
            self.got.append((proto, n, ts, time.monotonic()))

    def _read_back(self) -> None:
        while True:
            try:
                data = self.tx.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.back.append(data)

    def counters(self) -> dict[str, int]:
        time.sleep(0.05)
        raw = self.shared.counter_values()
        return dict(zip(COUNTERS, raw[:NC], strict=True))

    def recv_all(self, quiet_s: float = 0.3) -> list[tuple[int, int, float, float]]:
        n = -1
        while n != len(self.got):
            n = len(self.got)
            time.sleep(quiet_s)
        out, self.got = self.got[:n], self.got[n:]
        return out

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        for s in (self.tx, self.rx):
            s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def rc_loop(request: pytest.FixtureRequest) -> Iterator[RcLoop]:
    kw = getattr(request, "param", {})
    lp = RcLoop(roce.TransportConfig(**{"timeout": 14, "scale": 0.00125, **kw}))
    yield lp
    lp.close()


def test_rst_answers_the_sender_in_its_own_sequence_space() -> None:
    f = tcp_frame(1, size=100, seq=7000, ack=123456)
    r = rst_to_sender(f)
    assert r is not None and flow_key(f) == IP_A + IP_B + struct.pack("!HH", 40000, 41000)
    assert r[0:6] == MAC_A and r[6:12] == MAC_B and r[26:30] == IP_B and r[30:34] == IP_A
    sport, dport, seq, ack, _, flags = struct.unpack("!HHIIBB", r[34:48])
    assert (sport, dport, seq, ack) == (41000, 40000, 123456, 7100) and flags == TCP_RST | TCP_ACK

    def csum(b: bytes) -> int:
        s = sum(struct.unpack(f"!{len(b) // 2}H", b + b"\0" * (len(b) % 2)))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return s
    assert csum(r[14:34]) == 0xFFFF                                              # IPv4 header checksum
    assert csum(r[26:34] + struct.pack("!BBH", 0, 6, len(r) - 34) + r[34:]) == 0xFFFF   # TCP checksum
    assert rst_to_sender(udp_frame(1)) is None


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_bit_errors_hold_tcp_and_drop_nothing(rc_loop: RcLoop) -> None:
    rc_loop.shared.set_path(0, 0.0016, 2e-9, True)   # q x W = 5 per busy second of line: many events
    for i in range(3000):                              # 3000 x 1 kB at 1 Gbit/s: 24 ms of wire time
        rc_loop.tx.send(tcp_frame(i))
        if i % 100 == 99:
            time.sleep(0.01)
    got = rc_loop.recv_all()
    c = rc_loop.counters()
    assert [g[1] for g in got] == list(range(3000))  # every frame, in order: RC loses nothing
    assert c["dropped_frames"] == 0 and c["tx_failed"] == 0
    assert c["rc_holds"] >= 3
    lat = sorted(r - s for _, _, s, r in got)
    assert lat[-1] >= 0.0016 + 2 * 0.0016 * 0.9      # the frames after a loss waited one more RTT at least


@pytest.mark.parametrize("rc_loop", [{"timeout": 14, "abort_below_efficiency": 0.0}], indirect=True)
def test_errored_tcp_frames_are_counted_for_the_pm_and_delivered(rc_loop: RcLoop) -> None:
    rc_loop.shared.set_path(0, 0.0016, 2e-6, True)   # ~1.6 % of 1 kB frames hit (the rule is off)
    for i in range(300):
        rc_loop.tx.send(tcp_frame(i))
        time.sleep(0.0005)
    assert [g[1] for g in rc_loop.recv_all(0.5)] == list(range(300))
    c = rc_loop.counters()
    assert c["errored_frames"] >= 1 and c["dropped_frames"] == 0 and c["rc_holds"] >= 50


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_an_outage_keeps_tcp_until_the_ack_timer_and_drops_udp(rc_loop: RcLoop) -> None:
    t_ack = roce.ack_timeout_s(14)                     # 67 ms
    now = time.monotonic()
    rc_loop.shared.params[P_OUTAGE_FROM] = now
    rc_loop.shared.params[P_OUTAGE_UNTIL] = now + 0.030
    rc_loop.shared.edges_published()
    first = time.monotonic()
    for i in range(20):
        rc_loop.tx.send(tcp_frame(i))
        rc_loop.tx.send(udp_frame(i))
        time.sleep(0.003)                              # 60 ms: through the outage and after it
    got = rc_loop.recv_all()
    tcp = [g for g in got if g[0] == 6]
    udp = [g for g in got if g[0] == 17]
    assert [g[1] for g in tcp] == list(range(20))     # none lost
    assert 3 <= 20 - len(udp) <= 12                    # the probe's UDP is lost in the ~30 ms outage
    c = rc_loop.counters()
    assert c["rc_stalled"] >= 3 and c["rc_timeouts"] >= 1
    # every frame kept through the outage arrived once the timer fired (on a busy machine a frame
    # read late may be judged by its estimated entry, before the outage: that one passes at once)
    assert sum(r >= first + t_ack for _, _, _, r in tcp) >= c["rc_stalled"]


@pytest.mark.parametrize("rc_loop", [{"timeout": 16}, {"timeout": 16, "outage_hold": "in-flight"}], indirect=True,
                         ids=["active", "in-flight"])
def test_an_outage_holds_a_busy_qp_even_with_nothing_in_the_fibre(rc_loop: RcLoop) -> None:
    """outage_hold active: the direction carried traffic just before a 20 ms outage and sent
    nothing during it; its next frame, after the outage, still waits for the ACK timer (268 ms).
    in-flight: that frame passes at once."""
    active = rc_loop.mode == "active"
    rc_loop.tx.send(tcp_frame(0))
    assert [g[1] for g in rc_loop.recv_all(0.05)] == [0]
    start = time.monotonic()
    rc_loop.shared.params[P_OUTAGE_FROM] = start
    rc_loop.shared.params[P_OUTAGE_UNTIL] = start + 0.020
    rc_loop.shared.edges_published()
    time.sleep(0.04)                                                 # the outage is over; nothing was sent in it
    rc_loop.tx.send(tcp_frame(1))
    (got,) = rc_loop.recv_all(0.4)
    c = rc_loop.counters()
    assert c["rc_stalled"] == 0                                      # no frame was in the outage
    if active:
        assert got[3] >= start + roce.ack_timeout_s(16) and c["rc_timeouts"] == 1
    else:
        assert got[3] < start + roce.ack_timeout_s(16) and c["rc_timeouts"] == 0


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_an_outage_leaves_a_qp_idle_for_longer_than_its_timer_alone(rc_loop: RcLoop) -> None:
    """No modelled traffic within the last ACK timeout (67 ms) before the outage: no QP had
    anything outstanding, nothing waits (a lab with no job running sees no stall)."""
    rc_loop.tx.send(tcp_frame(0))
    assert len(rc_loop.recv_all(0.05)) == 1
    time.sleep(0.2)
    start = time.monotonic()
    rc_loop.shared.params[P_OUTAGE_FROM] = start
    rc_loop.shared.params[P_OUTAGE_UNTIL] = start + 0.020
    rc_loop.shared.edges_published()
    time.sleep(0.04)
    rc_loop.tx.send(tcp_frame(1))
    assert [g[1] for g in rc_loop.recv_all(0.2)] == [1]
    c = rc_loop.counters()
    assert c["rc_stalled"] == 0 and c["rc_timeouts"] == 0


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_a_stall_past_the_retry_budget_is_a_qp_error_that_resets_the_flows(rc_loop: RcLoop) -> None:
    budget = roce.retry_budget_s(roce.ack_timeout_s(14))        # 7 x 67 ms = 0.47 s
    rc_loop.tx.send(tcp_frame(0, seq=1000, ack=777))
    assert [g[1] for g in rc_loop.recv_all(0.1)] == [0]
    now = time.monotonic()
    rc_loop.shared.params[P_OUTAGE_FROM] = now
    rc_loop.shared.params[P_OUTAGE_UNTIL] = now + 2.0
    rc_loop.shared.edges_published()
    rc_loop.tx.send(tcp_frame(1, seq=2000, ack=888))
    deadline = time.monotonic() + 5
    while rc_loop.shared.params[P_QPERR_N] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    took = time.monotonic() - now
    assert rc_loop.shared.params[P_QPERR_N] == 1 and CAUSES[int(rc_loop.shared.params[P_QPERR_CAUSE])] == "retry-exhausted"
    assert budget <= took < 1.5                                     # decided at the budget, long before the outage ends
    wait_for(lambda: rc_loop.back)
    assert len(rc_loop.back) == 1
    seq, ack, _, flags = struct.unpack("!IIBB", rc_loop.back[0][38:48])
    assert flags & TCP_RST and seq == 888                            # the sender's own next byte
    rc_loop.tx.send(tcp_frame(2, seq=3000, ack=999))                # a retransmission of the failed flow
    wait_for(lambda: len(rc_loop.back) >= 2)
    assert len(rc_loop.back) == 2 and struct.unpack("!I", rc_loop.back[1][38:42])[0] == 999
    c = rc_loop.counters()
    assert c["rc_resets"] == 2 and c["dropped_frames"] == 2         # the kept frame and the retransmission
    assert rc_loop.recv_all(0.2) == []


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_sustained_loss_past_the_calibrated_rule_interrupts(rc_loop: RcLoop) -> None:
    rc_loop.shared.set_path(0, 0.0016, 1e-8, True)
    t0 = time.monotonic()
    for i in range(400):
        rc_loop.tx.send(tcp_frame(i))
        time.sleep(0.001)
        if rc_loop.shared.params[P_QPERR_N]:
            break
    deadline = time.monotonic() + 3
    while rc_loop.shared.params[P_QPERR_N] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert CAUSES[int(rc_loop.shared.params[P_QPERR_CAUSE])] == "sustained-loss"
    assert time.monotonic() - t0 >= roce.retry_budget_s(roce.ack_timeout_s(14))
    wait_for(lambda: rc_loop.back)
    assert rc_loop.counters()["rc_resets"] >= 1


@pytest.mark.parametrize("rc_loop", [{"model": "none"}], indirect=True)
def test_model_none_is_plain_tcp_loss(rc_loop: RcLoop) -> None:
    now = time.monotonic()
    rc_loop.shared.params[P_OUTAGE_FROM] = now
    rc_loop.shared.params[P_OUTAGE_UNTIL] = now + 0.2
    rc_loop.shared.edges_published()
    for i in range(5):
        rc_loop.tx.send(tcp_frame(i))
    time.sleep(0.25)
    rc_loop.tx.send(tcp_frame(5))
    assert [g[1] for g in rc_loop.recv_all()] == [5]
    c = rc_loop.counters()
    assert c["outage_dropped"] == 5 and c["rc_stalled"] == 0


@pytest.mark.parametrize("rc_loop", [{"timeout": 14, "control_ports": (29500, 29515)}], indirect=True)
def test_the_control_plane_stays_plain_tcp(rc_loop: RcLoop) -> None:
    """torchrun's rendezvous and the c10d store run over TCP on a real cluster's front-end network:
    in an outage their segments are lost as TCP's (not kept), and a QP error does not reset them."""
    now = time.monotonic()
    rc_loop.shared.params[P_OUTAGE_FROM] = now
    rc_loop.shared.params[P_OUTAGE_UNTIL] = now + 1.0                # longer than the 0.47 s budget
    rc_loop.shared.edges_published()
    rc_loop.tx.send(tcp_frame(0, dport=29503))                       # the store: lost in the outage
    rc_loop.tx.send(tcp_frame(1, sport=29500, dport=45000))          # the rendezvous, the other way round
    rc_loop.tx.send(tcp_frame(2, dport=41000, ack=4242))             # the training's data: kept
    wait_for(lambda: rc_loop.shared.params[P_QPERR_N] >= 1)
    wait_for(lambda: rc_loop.back)
    wait_for(lambda: rc_loop.counters()["outage_dropped"] >= 2)     # published by the loop when idle
    c = rc_loop.counters()
    assert c["outage_dropped"] == 2 and c["rc_stalled"] == 1
    assert [struct.unpack("!I", b[38:42])[0] for b in rc_loop.back] == [4242]   # only the data flow is reset


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_a_rate_change_loses_what_is_in_flight_and_the_qp_waits_for_its_timer(rc_loop: RcLoop) -> None:
    rc_loop.shared.set_path(0, 0.2, 0.0, True)                       # 200 ms in the fibre: frames in flight
    for i in range(5):
        rc_loop.tx.send(tcp_frame(i))
    time.sleep(0.05)
    changed = time.monotonic()
    rc_loop.shared.params[P_RATE] = 0.5e9                            # 800G -> 400G
    rc_loop.tx.send(tcp_frame(5))
    got = rc_loop.recv_all(0.5)
    assert [g[1] for g in got] == list(range(6))                     # nothing lost: resent
    assert min(r for *_, r in got) >= changed + roce.ack_timeout_s(14)   # after the timer, not after 200 ms
    c = rc_loop.counters()
    assert c["rc_stalled"] == 5 and c["rc_timeouts"] == 1


@pytest.mark.parametrize("rc_loop", [{"timeout": 14}], indirect=True)
def test_a_rate_change_with_nothing_in_flight_costs_nothing(rc_loop: RcLoop) -> None:
    rc_loop.tx.send(tcp_frame(0))
    assert len(rc_loop.recv_all(0.1)) == 1
    rc_loop.shared.params[P_RATE] = 0.5e9
    t0 = time.monotonic()
    rc_loop.tx.send(tcp_frame(1))
    (got,) = rc_loop.recv_all(0.1)
    assert got[3] - t0 < roce.ack_timeout_s(14) and rc_loop.counters()["rc_stalled"] == 0


def test_frames_released_after_a_stall_leave_at_the_line_rate() -> None:
    """The resent window goes out at the line's rate: a burst of everything kept would overflow the
    far TAP's queue and cost TCP a loss (and a backed-off RTO) of its own."""
    lp = RcLoop(roce.TransportConfig(timeout=14, scale=0.00125), rate_bps=10e6)   # 1 kB: 0.81 ms
    try:
        now = time.monotonic()
        lp.shared.params[P_OUTAGE_FROM] = now
        lp.shared.params[P_OUTAGE_UNTIL] = now + 0.03
        lp.shared.edges_published()
        for i in range(20):
            lp.tx.send(tcp_frame(i))
        got = lp.recv_all(0.3)
        assert [g[1] for g in got] == list(range(20)) and lp.counters()["rc_stalled"] == 20
        # The release is no earlier than the outage's start + T_ack, and paced, the last kept frame
        # leaves 19 frame times after the first: a lower bound that a late, busy loop still meets
        # (lateness only delays it), while one burst at the release would miss it by 15 ms.
        assert got[-1][3] >= now + roce.ack_timeout_s(14) + 19 * (1054 + 4) * 8 / 10e6 * 0.9
    finally:
        lp.close()

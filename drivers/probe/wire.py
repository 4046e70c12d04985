"""Raw AF_PACKET sender and receiver for probe streams (Linux; root or CAP_NET_RAW).

The sender writes prebuilt frames (``frames.FrameTemplate``) on one reused socket and paces
them against CLOCK_MONOTONIC: it sleeps until ``spin_us`` before each frame is due and
busy-waits the rest (``spin_us=0``: sleep only, which with a 1 us timer slack and SCHED_FIFO
is accurate to ~10-50 us and leaves the CPU to others). A late sender catches up in a burst, so
sequence numbers keep mapping to the schedule (the loss method stays exact); its largest
lateness and spacing are reported so a stall of the instrument is never mistaken for the
network's.

The receiver binds to one interface, lets a classic-BPF filter pass only IPv4/UDP to the probe
port (so other traffic never costs Python time), checks the rest in Python (port, BTH, magic,
stream) and takes each frame's arrival time from the kernel (SO_TIMESTAMPNS, CLOCK_REALTIME,
stamped on arrival at the interface), so being scheduled late never moves an arrival time. It
records (seq, tx CLOCK_REALTIME ns, rx ns) compactly and reports the kernel's socket-drop count:
frames the instrument itself lost are not the network's.

Run them in separate processes (a busy-waiting sender starves a receiver through the GIL).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import os
import select
import signal
import socket
import struct
import subprocess
import time
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from typing import Any

from .analysis import Records
from .frames import BTH_LEN, ETH_LEN, HEADER, MAGIC, UDP_LEN, FrameSpec, build_template, default_port

ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
PR_SET_TIMERSLACK = 29
_libc = ctypes.CDLL(None, use_errno=True)


class ProbeError(RuntimeError):
    """A probe cannot run (no such interface, no next-hop MAC, no permission); message says why."""


# --- host helpers ----------------------------------------------------------------------------------


def iface_mac(iface: str) -> str:
    try:
        with open(f"/sys/class/net/{iface}/address") as f:
            return f.read().strip()
    except FileNotFoundError:
        raise ProbeError(f"interface {iface!r} does not exist in this network namespace") from None


def _ip_json(*args: str) -> Any:
    r = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ProbeError(f"'ip {' '.join(args)}' failed: {r.stderr.strip()}")
    return json.loads(r.stdout or "[]")


def resolve_next_hop(dst_ip: str, iface: str | None = None, timeout: float = 1.0) -> dict[str, str]:
    """Next hop towards ``dst_ip``: {"dev", "src_ip", "next_hop", "mac"} from ``ip route get`` and
    ``ip neigh``; an unresolved neighbour is prodded with one UDP datagram (port 9, discard) and
    polled until ``timeout``."""
    route = _ip_json("route", "get", dst_ip, *(["oif", iface] if iface else []))
    if not route:
        raise ProbeError(f"no route to {dst_ip}" + (f" via {iface}" if iface else ""))
    r = route[0]
    dev, hop, src = r.get("dev"), r.get("gateway") or dst_ip, r.get("prefsrc")
    if iface and dev != iface:
        raise ProbeError(f"route to {dst_ip} leaves via {dev}, not {iface}")
    deadline = time.monotonic() + timeout
    prodded = False
    while True:
        for n in _ip_json("neigh", "show", "to", hop, "dev", dev):
            if n.get("lladdr") and not {"FAILED", "INCOMPLETE"} & set(n.get("state", [])):
                return {"dev": dev, "src_ip": src or "", "next_hop": hop, "mac": n["lladdr"]}
        if time.monotonic() > deadline:
            raise ProbeError(f"no MAC address for next hop {hop} on {dev} (ARP unanswered); pass --dst-mac")
        if not prodded:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.sendto(b"", (dst_ip, 9))
                except OSError:
                    pass
            prodded = True
        time.sleep(0.02)


def set_realtime(priority: int = 10) -> bool:
    """SCHED_FIFO for the calling process (root); False if refused."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (OSError, AttributeError):
        return False


def _timer_slack_1us() -> None:
    _libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)


def udp_port_filter(port: int) -> bytes:
    """Classic BPF: accept IPv4, UDP, unfragmented, destination ``port``; drop everything else."""
    prog = [
        (0x28, 0, 0, 12),  # ldh [12]            ethertype
        (0x15, 0, 8, 0x0800),  # jeq IPv4 else drop
        (0x30, 0, 0, 23),  # ldb [23]            protocol
        (0x15, 0, 6, 17),  # jeq UDP else drop
        (0x28, 0, 0, 20),  # ldh [20]            flags/fragment offset
        (0x45, 4, 0, 0x1FFF),  # jset offset -> drop (non-first fragment)
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)   IHL
        (0x48, 0, 0, 16),  # ldh [x+16]          UDP dport
        (0x15, 0, 1, port),  # jeq port else drop
        (0x06, 0, 0, 0x40000),  # ret accept
        (0x06, 0, 0, 0),  # ret drop
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


# --- sender ----------------------------------------------------------------------------------------


@dataclass
class SendResult:
    iface: str
    kind: str
    size: int
    stream: int
    src_ip: str
    dst_ip: str
    dst_mac: str
    port: int
    first_seq: int
    sent: int
    send_errors: int
    send_retries: int
    rate_pps_target: float
    rate_pps_achieved: float | None
    duration_s: float
    late_max_us: float
    late_over_100us: int
    tx_max_gap_ms: float
    start_real_ns: int
    end_real_ns: int
    realtime: bool
    stopped: str  # "done" | "signal"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sender:
    """One paced probe stream on ``iface``. ``rate_pps=0`` sends as fast as it can."""

    iface: str
    spec: FrameSpec
    rate_pps: float = 10000.0
    count: int = 10000
    first_seq: int = 0
    spin_us: float = 100.0
    realtime: bool = False
    qdisc_bypass: bool = False
    stop_on_signal: bool = True
    # called once, just before the first frame: the moment a caller may act "into the stream"
    # (start-up to here is seconds on a busy machine, and varies)
    on_start: Callable[[], None] | None = None
    _stop: bool = field(default=False, init=False, repr=False)

    def stop(self, *_a: Any) -> None:
        self._stop = True

    def open(self) -> socket.socket:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # proto 0: never receives
        except PermissionError:
            raise ProbeError("raw AF_PACKET sockets need root or CAP_NET_RAW") from None
        try:
            s.bind((self.iface, 0))
        except OSError as exc:
            s.close()
            raise ProbeError(f"cannot bind to interface {self.iface!r}: {exc.strerror}") from None
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if self.qdisc_bypass:
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        return s

    def run(self) -> SendResult:
        tpl = build_template(self.spec)
        s = self.open()
        rt = set_realtime() if self.realtime else False
        _timer_slack_1us()
        old = None
        if self.stop_on_signal:
            old = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            return self._loop(s, tpl, rt)
        finally:
            if gc_was:
                gc.enable()
            s.close()
            if old:
                for sig, h in old.items():
                    signal.signal(sig, h)

    def _loop(self, s: socket.socket, tpl: Any, rt: bool) -> SendResult:
        mono, real, sleep = time.monotonic_ns, time.time_ns, time.sleep
        patch, send = tpl.patch, s.send
        count, seq0 = self.count, self.first_seq
        interval = 1e9 / self.rate_pps if self.rate_pps > 0 else 0.0
        spin = int(self.spin_us * 1000)
        sent = errors = retries = late_over = 0
        late_max = 0
        gap_max = 0
        prev_tx = None
        if self.on_start is not None:
            self.on_start()
        start = mono() + 1_000_000
        first_real = last_real = 0
        first_mono = last_mono = start
        stopped = "done"
        for i in range(count):
            if self._stop:
                stopped = "signal"
                break
            due = start + int(i * interval)
            now = mono()
            if due > now:
                rem = due - now
                if rem > spin:
                    sleep((rem - spin) / 1e9)
                while mono() < due:
                    pass
            t = mono()
            r = real()
            frame = patch(seq0 + i, t, r)
            for _attempt in range(50):
                try:
                    send(frame)
                    sent += 1
                    break
                except OSError as exc:
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                        raise ProbeError(f"send on {self.iface}: {exc.strerror}") from None
                    retries += 1
                    sleep(20e-6)
            else:
                errors += 1
            if interval:
                late = t - due
                late_max = max(late_max, late)
                if late > 100_000:
                    late_over += 1
            if prev_tx is not None and t - prev_tx > gap_max:
                gap_max = t - prev_tx
            prev_tx = t
            if i == 0:
                first_real, first_mono = r, t
            last_real, last_mono = r, t
        n = sent + errors
        dur = (last_mono - first_mono) / 1e9
        sp = self.spec
        return SendResult(
            iface=self.iface, kind=sp.kind, size=sp.size, stream=sp.stream, src_ip=sp.src_ip, dst_ip=sp.dst_ip,
            dst_mac=sp.dst_mac, port=sp.port, first_seq=seq0, sent=sent, send_errors=errors, send_retries=retries,
            rate_pps_target=self.rate_pps, rate_pps_achieved=(n - 1) / dur if dur > 0 else None, duration_s=dur,
            late_max_us=late_max / 1e3, late_over_100us=late_over, tx_max_gap_ms=gap_max / 1e6,
            start_real_ns=first_real, end_real_ns=last_real, realtime=rt, stopped=stopped)


# --- receiver --------------------------------------------------------------------------------------


@dataclass
class RecvStats:
    iface: str
    kind: str
    port: int
    stream: int | None
    frames: int  # frames the socket delivered
    probes: int  # of those, recorded probes
    not_probe: int  # right port but not a probe (bad magic, short, wrong BTH)
    other_stream: int
    socket_drops: int  # the kernel dropped these (receive buffer full): the instrument's loss
    kernel_timestamps: bool
    bpf: bool
    duration_s: float
    realtime: bool
    stopped: str  # "duration" | "idle" | "signal" | "count"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Receiver:
    """Records one probe stream arriving on ``iface``. Stops after ``duration`` s, after ``idle``
    s without probes once some arrived (0: never), after ``max_seq`` arrived, or on SIGTERM/SIGINT
    (``stop()``). ``stream=None`` locks onto the first stream seen."""

    iface: str
    kind: str = "udp"
    port: int | None = None
    stream: int | None = None
    duration: float = 10.0
    idle: float = 0.0
    max_seq: int | None = None
    bpf: bool = True
    rcvbuf_bytes: int = 64 << 20
    realtime: bool = False
    stop_on_signal: bool = True
    on_ready: Any = None  # callable, run once the socket is bound
    _stop: bool = field(default=False, init=False, repr=False)

    def stop(self, *_a: Any) -> None:
        self._stop = True

    def open(self) -> socket.socket:
        port = self.port if self.port is not None else default_port(self.kind)
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # receives nothing until bound
        except PermissionError:
            raise ProbeError("raw AF_PACKET sockets need root or CAP_NET_RAW") from None
        try:
            if self.bpf:
                code = udp_port_filter(port)
                self._bpf_buf = ctypes.create_string_buffer(code)
                s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                             struct.pack("HL", len(code) // 8, ctypes.addressof(self._bpf_buf)))
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf_bytes)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass  # kernel < 4.20: outgoing frames are skipped in Python
            s.bind((self.iface, ETH_P_IP))
        except OSError as exc:
            s.close()
            raise ProbeError(f"cannot listen on interface {self.iface!r}: {exc.strerror or exc}") from None
        s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading resets: count from here
        s.setblocking(False)
        return s

    def run(self) -> tuple[Records, RecvStats]:
        s = self.open()
        rt = set_realtime() if self.realtime else False
        old = None
        if self.stop_on_signal:
            old = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            if self.on_ready:
                self.on_ready()
            return self._loop(s, rt)
        finally:
            if gc_was:
                gc.enable()
            s.close()
            if old:
                for sig, h in old.items():
                    signal.signal(sig, h)

    def _loop(self, s: socket.socket, rt: bool) -> tuple[Records, RecvStats]:
        port = self.port if self.port is not None else default_port(self.kind)
        extra = BTH_LEN if self.kind == "rocev2" else 0
        rec = Records()
        app_seq, app_tx, app_rx = rec.seq.append, rec.tx_ns.append, rec.rx_ns.append
        buf = bytearray(256)  # headers only; longer frames arrive truncated
        mv = memoryview(buf)
        recv = s.recvmsg_into
        unpack_hdr, unpack_ts = HEADER.unpack_from, struct.Struct("qq").unpack
        time_ns, mono = time.time_ns, time.monotonic
        poller = select.poll()
        poller.register(s, select.POLLIN)
        stream = self.stream
        max_seq = self.max_seq
        frames = probes = not_probe = other = 0
        kts = False
        t0 = mono()
        end = t0 + self.duration
        end_ns = time_ns() + int(self.duration * 1e9)  # arrivals are stamped on CLOCK_REALTIME
        idle = self.idle
        idle_ns = int(idle * 1e9)
        last = None
        stopped = "duration"
        while True:
            try:
                n, anc, _fl, addr = recv([mv], 64)
            except BlockingIOError:
                now = mono()
                if self._stop:
                    stopped = "signal"
                    break
                if now >= end:
                    break
                if idle and last is not None and time_ns() - last >= idle_ns:
                    stopped = "idle"
                    break
                poller.poll(min(50.0, (end - now) * 1e3))
                continue
            if anc:
                sec, nsec = unpack_ts(anc[0][2])
                rx = sec * 1_000_000_000 + nsec
                kts = True
            else:
                rx = time_ns()
            frames += 1
            if addr[2] == PACKET_OUTGOING:
                continue
            off = ETH_LEN + (buf[14] & 0x0F) * 4
            if n < off + UDP_LEN + extra + 32 or buf[12] != 8 or buf[13] != 0 or buf[23] != 17 \
                    or (buf[off + 2] << 8 | buf[off + 3]) != port:
                not_probe += 1
                continue
            magic, st, seq, _m, txr = unpack_hdr(buf, off + UDP_LEN + extra)
            if magic != MAGIC:
                not_probe += 1
                continue
            if stream is None:
                stream = st
            elif st != stream:
                other += 1
                continue
            app_seq(seq)
            app_tx(txr)
            app_rx(rx)
            probes += 1
            last = rx
            if rx >= end_ns:
                break
            if max_seq is not None and seq >= max_seq:
                stopped = "count"
                break
            if self._stop:
                stopped = "signal"
                break
        _tp_packets, tp_drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return rec, RecvStats(iface=self.iface, kind=self.kind, port=port, stream=stream, frames=frames,
                              probes=probes, not_probe=not_probe, other_stream=other, socket_drops=tp_drops,
                              kernel_timestamps=kts, bpf=self.bpf, duration_s=mono() - t0, realtime=rt,
                              stopped=stopped)

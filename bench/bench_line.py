#!/usr/bin/env python3
"""Benchmark the emulated optical line (emulator.line) against its targets; prints figures.

Builds its own two namespaces (dclb-a, dclb-b: never the lab's dcl-*), runs the line between
them as a subprocess, and measures throughput, delay accuracy under load, BER loss accuracy
and outage accuracy. Always cleans up, including leftovers of a crashed previous run.
Needs root. Run: .venv/bin/python bench/bench_line.py
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator.line.control import LineControl
from emulator.line.model import frame_loss_probability, propagation_delay_s
from emulator.line.netns import in_netns

NS_A, NS_B = "dclb-a", "dclb-b"
IP_A, IP_B = "198.19.250.1", "198.19.250.2"
RUN_DIR = Path("/run/dclb-bench")
SOCK = RUN_DIR / "line.sock"
PIDFILE = RUN_DIR / "line.pid"
REPO = Path(__file__).resolve().parents[1]
MTU = 9000
LEN_KM = 326.5  # 1.6 ms one way
ETH_IP_UDP = 14 + 20 + 8
_ctx = mp.get_context("fork")
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def netns_sock(ns: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket that lives in netns ``ns`` (the netns is fixed when the socket is created)."""
    with in_netns(ns):
        return socket.socket(socket.AF_INET, kind)


def child_init() -> None:
    gc.disable()
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: helpers never outlive the bench
    _libc.prctl(29, 1000)  # PR_SET_TIMERSLACK: precise pacing sleeps


def big_rcvbuf(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)


# --- topology -------------------------------------------------------------------------------------


def cleanup() -> None:
    try:
        pid = int(PIDFILE.read_text().strip())
        if b"emulator.line" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.02)
    except (OSError, ValueError):
        pass
    for ns in (NS_A, NS_B):
        out = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for p in out:  # iperf3 etc. left running inside our namespaces
            try:
                os.kill(int(p), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        sh("ip", "netns", "del", ns, check=False)
    for p in (SOCK, PIDFILE, RUN_DIR / "line.json"):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def mac_of(ns: str, dev: str) -> str:
    return json.loads(sh("ip", "-j", "-n", ns, "link", "show", dev).stdout)[0]["address"]


def setup() -> tuple[subprocess.Popen[bytes], LineControl, Any]:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for k in ("all", "default"):  # no IPv6 chatter (RS/DAD/MLD) on the line
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    cfg = {"name": "bench-line", "control_socket": str(SOCK), "pidfile": str(PIDFILE),
           "ends": [{"netns": NS_A, "ifname": "wan0"}, {"netns": NS_B, "ifname": "wan0"}],
           "mtu": MTU, "rate_bps": 0, "buffer_ms": 50,
           "paths": [{"name": "working", "length_km": LEN_KM}, {"name": "protection", "length_km": 352}],
           "active_path": "working"}
    (RUN_DIR / "line.json").write_text(json.dumps(cfg))
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the line; closed at exit
    proc = subprocess.Popen([sys.executable, "-m", "emulator.line", "--config", str(RUN_DIR / "line.json")],
                            cwd=REPO, stdout=log, stderr=log)
    ctl = LineControl(str(SOCK))
    deadline = time.monotonic() + 10
    while not SOCK.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"line did not start: {log.read().decode(errors='replace')}")
        time.sleep(0.02)
    ctl.ping()
    for ns, ip, peer_ns, peer_ip in ((NS_A, IP_A, NS_B, IP_B), (NS_B, IP_B, NS_A, IP_A)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", "wan0")
        # Static ARP: BER/outage tests must not lose frames to ARP refreshes eaten by the line.
        sh("ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr", mac_of(peer_ns, "wan0"),
           "dev", "wan0", "nud", "permanent")
    return proc, ctl, log


# --- helpers running in forked processes --------------------------------------------------------


def _counting_receiver(port: int, idle_s: float, conn: Any) -> None:
    """Record (seq, sender ts, arrival ts) of each datagram until idle_s of silence."""
    child_init()
    s = netns_sock(NS_B)
    big_rcvbuf(s)
    s.bind((IP_B, port))
    conn.send(True)
    seqs: list[int] = []
    sent_ts: list[float] = []
    arr_ts: list[float] = []
    s.settimeout(30.0)
    mono = time.monotonic
    try:
        while True:
            data = s.recv(65536)
            arr_ts.append(mono())
            seq, ts = struct.unpack_from("!Qd", data)
            seqs.append(seq)
            sent_ts.append(ts)
            s.settimeout(idle_s)
    except TimeoutError:
        pass
    conn.send((seqs, sent_ts, arr_ts))


def _paced_sender(port: int, count: int, pps: float, size: int, conn: Any) -> None:
    """Send ``count`` datagrams of ``size`` bytes at ``pps``, each carrying (seq, send time)."""
    child_init()
    s = netns_sock(NS_A)
    s.connect((IP_B, port))
    pad = bytes(size - 16)
    interval = 1.0 / pps
    mono = time.monotonic
    start = mono() + 0.01
    seq = 0
    while seq < count:
        now = mono()
        while seq < count and start + seq * interval <= now:
            s.send(struct.pack("!Qd", seq, mono()) + pad)
            seq += 1
        if seq < count:
            wait = start + seq * interval - mono()
            if wait > 0:
                time.sleep(wait)
    conn.send((start, interval))


def spawn(target: Callable[..., None], *args: Any) -> tuple[Any, Any]:
    parent, child = _ctx.Pipe()
    p = _ctx.Process(target=target, args=(*args, child), daemon=True)
    p.start()
    return p, parent


# --- measurements ----------------------------------------------------------------------------------


def iperf3(args: list[str], port: int, duration: int) -> subprocess.Popen[str]:
    """Start an iperf3 client in A against a one-off server in B; returns the client."""
    srv = subprocess.Popen(["ip", "netns", "exec", NS_B, "iperf3", "-s", "-1", "-B", IP_B, "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while f":{port:04X} 00000000:0000 0A" not in sh("ip", "netns", "exec", NS_B, "cat", "/proc/net/tcp").stdout:
        if time.monotonic() > deadline:  # 0A = LISTEN
            raise RuntimeError("iperf3 server did not start")
        time.sleep(0.05)
    cli = subprocess.Popen(["ip", "netns", "exec", NS_A, "iperf3", "-c", IP_B, "-p", str(port),
                            "-t", str(duration), "-J", *args], stdout=subprocess.PIPE, text=True)
    cli._bench_server = srv  # type: ignore[attr-defined]
    return cli


def iperf3_result(cli: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = cli.communicate(timeout=60)
    srv = cli._bench_server  # type: ignore[attr-defined]
    try:
        srv.wait(timeout=5)
    except subprocess.TimeoutExpired:
        srv.kill()
    data = json.loads(out)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return data["end"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_throughput(ctl: LineControl) -> bool:
    ctl.set_rate(0)
    ctl.set_active_path("working")
    d = propagation_delay_s(LEN_KM)
    end = iperf3_result(iperf3([], 5211, 5))
    gbps = end["sum_received"]["bits_per_second"] / 1e9
    ok = gbps >= 2.0
    print(f"throughput   TCP, rate unlimited, MTU {MTU}, one-way {d * 1e3:.3f} ms: {gbps:.2f} Gbit/s "
          f"(retransmits {end['sum_sent'].get('retransmits', 0)})   target >= 2 Gbit/s   {verdict(ok)}")
    return ok


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_rtts(probes: int, warmup: int = 20) -> tuple[list[float], int]:
    """Sequential ICMP echo A->B (the kernel in B answers: no user process in the loop, as
    with ping). Returns sorted RTTs (s) and the number of probes lost."""
    with in_netns(NS_A):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(0.2)
    ident = os.getpid() & 0xFFFF
    rtts: list[float] = []
    lost = 0
    pc = time.perf_counter
    gc.disable()  # a collection in the prober would show up as line delay
    try:
        for i in range(-warmup, probes):
            seq = i & 0xFFFF
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"dcilab-line-probe"
            pkt = body[:2] + struct.pack("!H", _icmp_checksum(body)) + body[4:]
            t0 = pc()
            s.sendto(pkt, (IP_B, 0))
            try:
                while True:
                    data = s.recv(2048)
                    ihl = (data[0] & 0x0F) * 4
                    typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                    if typ == 0 and rid == ident and rseq == seq:
                        break
            except TimeoutError:
                lost += i >= 0
                continue
            if i >= 0:
                rtts.append(pc() - t0)
    finally:
        gc.enable()
        s.close()
    return sorted(rtts), lost


def rtt_under_load(ctl: LineControl, rate: int, bg_args: list[str], probes: int) -> dict[str, Any]:
    """ICMP echo A<->B across the line while iperf3 loads A->B with UDP."""
    ctl.set_rate(rate)
    ctl.set_active_path("working")
    bg = iperf3(["-u", *bg_args], 5212, 3 + probes // 250)  # outlasts the probes
    time.sleep(1.0)
    rtts, lost = icmp_rtts(probes)
    end = iperf3_result(bg)
    ctl.set_rate(0)
    return {"rtts": rtts, "lost": lost, "bg_mbps": end["sum"]["bits_per_second"] / 1e6,
            "bg_loss": end["sum"].get("lost_percent", 0.0),
            "p50": rtts[len(rtts) // 2], "p99": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]}


def bench_delay(ctl: LineControl, probes: int = 1500) -> bool:
    rate = 1_000_000_000
    expect = 2 * propagation_delay_s(LEN_KM)
    # Background: iperf3 -u at 600 Mbit/s with its default datagram size, which on this
    # 9000-byte MTU is 8948 bytes. Its default 1 ms pacing timer would send that as one
    # 75 kB burst per ms (0.6 ms of line time at 1 Gbit/s), so probes would mostly measure
    # genuine shaper queueing behind the bursts; a 100 us timer gives a steady 60 % load.
    r = rtt_under_load(ctl, rate, ["-b", "600M", "--pacing-timer", "100"], probes)
    rtts = r["rtts"]
    e50, e99 = (r["p50"] - expect) * 1e3, (r["p99"] - expect) * 1e3
    ok50, ok99 = abs(e50) <= 0.3, abs(e99) <= 1.0
    print(f"delay        ICMP RTT under {r['bg_mbps']:.0f} Mbit/s steady UDP load A->B (iperf3 default 8948 B "
          f"datagrams; rate {rate / 1e9:g} Gbit/s, bg loss {r['bg_loss']:.2f} %), {len(rtts)} probes, "
          f"{r['lost']} lost, expected 2x delay = {expect * 1e3:.3f} ms")
    print(f"             p50 {r['p50'] * 1e3:.3f} ms (err {e50:+.3f} ms)   target |err| <= 0.3 ms   {verdict(ok50)}")
    print(f"             p99 {r['p99'] * 1e3:.3f} ms (err {e99:+.3f} ms)   target |err| <= 1 ms     {verdict(ok99)}"
          f"   [min {rtts[0] * 1e3:.3f}, mean {statistics.fmean(rtts) * 1e3:.3f}, max {rtts[-1] * 1e3:.3f} ms]")
    for label, args in (("1400 B datagrams (54 kpps, 6.4x the frames)", ["-l", "1400", "--pacing-timer", "100"]),
                        ("iperf3's default 1 ms burst pacing", [])):
        r = rtt_under_load(ctl, rate, ["-b", "600M", *args], 800)
        print(f"  (info)     same with {label}: p50 err {(r['p50'] - expect) * 1e3:+.3f} ms, "
              f"p99 err {(r['p99'] - expect) * 1e3:+.3f} ms (bg {r['bg_mbps']:.0f} Mbit/s)")
    return ok50 and ok99


def bench_loss(ctl: LineControl, count: int = 40000, ber: float = 1e-6) -> bool:
    size = MTU - 28  # UDP payload filling the MTU
    frame = size + ETH_IP_UDP
    p = frame_loss_probability(ber, frame)
    ctl.set_rate(0)
    ctl.set_ber("working", ber)
    ctl.reset_counters()
    rx, rconn = spawn(_counting_receiver, 7002, 1.0)
    rconn.recv()
    tx, tconn = spawn(_paced_sender, 7002, count, 15000, size)
    tconn.recv()
    seqs, _, _ = rconn.recv()
    tx.join(5)
    rx.join(5)
    ctl.set_ber("working", 0)
    c = ctl.get()["counters"]["a_to_b"]["working"]
    got = len(set(seqs))
    loss = 1 - got / count
    rel = (loss - p) / p
    ok = abs(rel) <= 0.10
    print(f"loss         BER {ber:g}, {count} frames of {frame} B: measured {loss * 100:.3f} % "
          f"({count - got} lost), expected {p * 100:.3f} %, rel err {rel * 100:+.1f} %   "
          f"target |rel| <= 10 %   {verdict(ok)}")
    print(f"             line counters: rx {c['rx_frames']}, errored {c['errored_frames']}, "
          f"dropped {c['dropped_frames']}, delivered {c['tx_frames']} (receiver got {got})")
    return ok


def bench_outage(ctl: LineControl, ms: float = 50.0, pps: float = 10000, secs: float = 1.5) -> bool:
    ctl.set_rate(0)
    count = int(pps * secs)
    rx, rconn = spawn(_counting_receiver, 7003, 0.5)
    rconn.recv()
    tx, tconn = spawn(_paced_sender, 7003, count, pps, 64)
    time.sleep(0.6)
    reply = ctl.outage(ms)
    _, interval = tconn.recv()
    seqs, sent_ts, arr_ts = rconn.recv()
    tx.join(5)
    rx.join(5)
    # largest gap in arrival times at the receiver, and the seqs missing across it
    gi = max(range(1, len(arr_ts)), key=lambda i: arr_ts[i] - arr_ts[i - 1])
    gap = (arr_ts[gi] - arr_ts[gi - 1]) * 1e3
    sgap = (sent_ts[gi] - sent_ts[gi - 1]) * 1e3
    missing = seqs[gi] - seqs[gi - 1] - 1
    by_loss = missing * interval * 1e3
    total_lost = count - len(set(seqs))
    e_gap, e_loss = gap - ms, by_loss - ms
    ok = abs(e_gap) <= 2.0 and abs(e_loss) <= 2.0
    print(f"outage       {ms:g} ms outage at {pps / 1000:g} kpps (line says {reply['start_monotonic']:.4f}"
          f"..{reply['end_monotonic']:.4f}): largest arrival gap {gap:.2f} ms (err {e_gap:+.2f}), "
          f"loss-derived {by_loss:.2f} ms ({missing} lost, {total_lost} in all; err {e_loss:+.2f}), "
          f"send-time gap {sgap:.2f} ms   "
          f"target +-2 ms   {verdict(ok)}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("throughput", "delay", "loss", "outage"), action="append")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_line: needs root (namespaces, TAPs)", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    cleanup()
    proc = log = None
    results: list[bool] = []
    try:
        proc, ctl, log = setup()
        print(f"emulated line bench: {os.cpu_count()} CPUs, {NS_A} <-> {NS_B}, MTU {MTU}")
        todo = args.only or ["throughput", "delay", "loss", "outage"]
        for name in todo:
            results.append({"throughput": bench_throughput, "delay": bench_delay,
                            "loss": bench_loss, "outage": bench_outage}[name](ctl))
        if proc.poll() is not None:
            raise RuntimeError(f"line exited early with {proc.returncode}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode not in (0, None):
                log.seek(0)
                print(f"line exited {proc.returncode}: {log.read().decode(errors='replace')}", file=sys.stderr)
        cleanup()
    print(f"summary: {sum(results)}/{len(results)} targets met")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

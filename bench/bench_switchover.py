#!/usr/bin/env python3
"""Benchmark protection switchover on the emulated line (emulator.line): what a receiver sees.

Target (the field trial's 50 ms-class ODU 1+1 switch): the outage a receiver sees on the line is
hold-off + switch time within +-2 ms, over 20 trials. Series: (a) forced switches (expected:
switch_ms), (b) cuts of the working path with SNCP and hold-off 0, (c) the same with hold-off
20 ms (expected: hold_off + switch_ms). A paced sender at 10 kpps carries sequence numbers;
the receiver's largest arrival gap around each trigger, and the frames missing across it
(times the send interval), are both compared with the expectation.

Builds its own namespaces (dclb-swa, dclb-swb: never the lab's dcl-*), runs the line between
them as a subprocess and always cleans up, including leftovers of a crashed previous run.
Needs root. Run: .venv/bin/python bench/bench_switchover.py
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
from emulator.line.model import propagation_delay_s
from emulator.line.netns import in_netns

NS_A, NS_B = "dclb-swa", "dclb-swb"
IP_A, IP_B = "198.19.251.1", "198.19.251.2"
RUN_DIR = Path("/run/dclb-switchover")
SOCK = RUN_DIR / "line.sock"
PIDFILE = RUN_DIR / "line.pid"
REPO = Path(__file__).resolve().parents[1]
PATHS = [{"name": "working", "length_km": 326.5}, {"name": "protection", "length_km": 352}]
PORT = 7010
TOLERANCE_MS = 2.0
SPACING_S = 0.25  # between triggers
RESET_AFTER_S = 0.12  # put the line back (outside the measured window)
_ctx = mp.get_context("fork")
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def netns_sock(ns: str) -> socket.socket:
    with in_netns(ns):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def child_init(realtime: bool = False) -> None:
    gc.disable()
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: helpers never outlive the bench
    _libc.prctl(29, 1000)  # PR_SET_TIMERSLACK: precise pacing sleeps
    if realtime:
        # The traffic source and sink are the instruments: on a small box, a few ms of them
        # being preempted (by the line's control plane answering the trigger, say) would be
        # counted as line outage. SCHED_FIFO keeps them on time; both sleep between frames.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except OSError:
            pass


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
        for p in sh("ip", "netns", "pids", ns, check=False).stdout.split():
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
    try:
        RUN_DIR.rmdir()
    except OSError:
        pass


def mac_of(ns: str, dev: str) -> str:
    return json.loads(sh("ip", "-j", "-n", ns, "link", "show", dev).stdout)[0]["address"]


def setup() -> tuple[subprocess.Popen[bytes], LineControl, Any]:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for k in ("all", "default"):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    cfg = {"name": "bench-switchover", "control_socket": str(SOCK), "pidfile": str(PIDFILE),
           "ends": [{"netns": NS_A, "ifname": "wan0"}, {"netns": NS_B, "ifname": "wan0"}],
           "mtu": 1500, "rate_bps": 0, "buffer_ms": 50, "paths": PATHS, "active_path": "working",
           "protection": {"mode": "sncp", "working": "working", "protection": "protection"}}
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
        sh("ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr", mac_of(peer_ns, "wan0"),
           "dev", "wan0", "nud", "permanent")
    return proc, ctl, log


# --- helpers running in forked processes ----------------------------------------------------------


def _receiver(port: int, idle_s: float, conn: Any) -> None:
    """Record (seq, arrival time) of each datagram until idle_s of silence."""
    child_init(realtime=True)
    s = netns_sock(NS_B)
    s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root)
    s.bind((IP_B, port))
    conn.send(True)
    seqs: list[int] = []
    arr: list[float] = []
    s.settimeout(30.0)
    mono = time.monotonic
    try:
        while True:
            data = s.recv(2048)
            arr.append(mono())
            seqs.append(struct.unpack_from("!Q", data)[0])
            s.settimeout(idle_s)
    except TimeoutError:
        pass
    conn.send((seqs, arr))


def _paced_sender(port: int, count: int, pps: float, conn: Any) -> None:
    """Send ``count`` 64-byte datagrams at ``pps``, each carrying (seq, send time)."""
    child_init(realtime=True)
    s = netns_sock(NS_A)
    s.connect((IP_B, port))
    pad = bytes(64 - 16)
    interval = 1.0 / pps
    mono = time.monotonic
    start = mono() + 0.01
    seq = 0
    while seq < count:
        now = mono()
        while seq < count and start + seq * interval <= now:
            try:
                s.send(struct.pack("!Qd", seq, mono()) + pad)
            except OSError:
                pass
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


# --- one series ------------------------------------------------------------------------------------


def run_series(ctl: LineControl, trials: int, pps: float, trigger: Callable[[int], None],
               reset: Callable[[int], None], marks: Callable[[list[dict[str, Any]]], list[float]]
               ) -> tuple[list[float], list[float], list[float], list[dict[str, Any]]]:
    """Stream through ``trials`` triggers; returns per trial (arrival gap ms, loss-derived ms,
    line-reported outage ms) and the events. ``marks`` picks each trial's trigger instant from
    the line's events (exact: the line stamps it)."""
    secs = 0.4 + trials * SPACING_S + 0.2
    count = int(pps * secs)
    rx, rconn = spawn(_receiver, PORT, 0.5)
    rconn.recv()
    n0 = ctl.events()["next"]
    tx, tconn = spawn(_paced_sender, PORT, count, pps)
    t0 = time.monotonic() + 0.4
    for k in range(trials):
        for at, fn in ((t0 + k * SPACING_S, trigger), (t0 + k * SPACING_S + RESET_AFTER_S, reset)):
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            fn(k)
    _, interval = tconn.recv()
    seqs, arr = rconn.recv()
    tx.join(5)
    rx.join(5)
    events = ctl.events(n0)["events"]
    starts = marks(events)
    if len(starts) != trials:
        raise RuntimeError(f"expected {trials} triggers in the line's events, found {len(starts)}")
    gaps, losses = [], []
    for t in starts:
        # the largest arrival gap that opens around the trigger (frames in flight still land)
        idx = [i for i in range(1, len(arr)) if t - 0.005 <= arr[i - 1] <= t + 0.1]
        if not idx:
            raise RuntimeError(f"no traffic around the trigger at {t:.4f}")
        i = max(idx, key=lambda j: arr[j] - arr[j - 1])
        gaps.append((arr[i] - arr[i - 1]) * 1e3)
        losses.append((seqs[i] - seqs[i - 1] - 1) * interval * 1e3)
    line_ms = [e["outage_ms"] for e in events if e["kind"] == "switch" and e["cause"] in ("force", "signal-fail")]
    return gaps, losses, line_ms, events


def report(label: str, expected: float, gaps: list[float], losses: list[float], line_ms: list[float]) -> bool:
    ok = True
    for name, xs in (("largest arrival gap", gaps), ("loss-derived", losses)):
        errs = [x - expected for x in xs]
        worst = max(errs, key=abs)
        good = all(abs(e) <= TOLERANCE_MS for e in errs)
        ok = ok and good
        print(f"  {name:20s} mean {statistics.fmean(xs):7.2f} ms  err mean {statistics.fmean(errs):+.2f} ms, "
              f"max |err| {abs(worst):.2f} ms ({worst:+.2f}), {sum(abs(e) <= TOLERANCE_MS for e in errs)}/{len(errs)}"
              f" within +-{TOLERANCE_MS:g} ms   {'PASS' if good else 'MISS'}")
    print(f"  line-reported outage_ms: {sorted(set(line_ms))}")
    print(f"{label}: expected {expected:g} ms   {'PASS' if ok else 'MISS'}")
    return ok


def bench_forced(ctl: LineControl, trials: int, pps: float, switch_ms: float) -> bool:
    ctl.configure_protection(mode="sncp", working="working", protection="protection", hold_off_ms=0,
                             switch_ms=switch_ms, revertive=False)
    targets = ("protection", "working")
    gaps, losses, line_ms, _ = run_series(
        ctl, trials, pps,
        trigger=lambda k: ctl.protection_switch("force", targets[k % 2]),
        reset=lambda k: ctl.protection_switch("release"),  # non-revertive: no switch
        marks=lambda evs: [e["start_mono"] for e in evs if e["kind"] == "switch" and e["cause"] == "force"])
    print(f"(a) forced switch, switch_ms {switch_ms:g}, {trials} trials (alternating to protection / working), "
          f"{pps / 1000:g} kpps")
    return report("(a) forced switch", switch_ms, gaps, losses, line_ms)


def bench_cut(ctl: LineControl, trials: int, pps: float, hold_off_ms: float, switch_ms: float, tag: str) -> bool:
    ctl.configure_protection(mode="sncp", working="working", protection="protection", hold_off_ms=hold_off_ms,
                             switch_ms=switch_ms, revertive=False)

    def reset(_k: int) -> None:
        ctl.set_path_up("working", True)
        ctl.set_active_path("working")  # instant, no outage: back for the next trial

    gaps, losses, line_ms, evs = run_series(
        ctl, trials, pps,
        trigger=lambda k: ctl.set_path_up("working", False),
        reset=reset,
        marks=lambda evs: [e["mono"] for e in evs if e["kind"] == "path-down" and e["path"] == "working"])
    switched = sum(1 for e in evs if e["kind"] == "switch" and e["cause"] == "signal-fail" and e["to"] == "protection")
    print(f"({tag}) cut of the working path, SNCP hold-off {hold_off_ms:g} ms + switch {switch_ms:g} ms, "
          f"{trials} trials, {pps / 1000:g} kpps ({switched} automatic switches logged)")
    return report(f"({tag}) working-path cut, hold-off {hold_off_ms:g}", hold_off_ms + switch_ms, gaps, losses,
                  line_ms) and switched == trials


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--pps", type=float, default=10000.0)
    ap.add_argument("--switch-ms", type=float, default=30.0)
    ap.add_argument("--hold-off-ms", type=float, action="append", help="cut series to run (default: 0 and 20)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_switchover: needs root (namespaces, TAPs)", file=sys.stderr)
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
        d = {p["name"]: propagation_delay_s(p["length_km"]) * 1e3 for p in PATHS}
        print(f"switchover bench: {os.cpu_count()} CPUs, {NS_A} <-> {NS_B}, one-way working {d['working']:.3f} ms, "
              f"protection {d['protection']:.3f} ms (arrival gaps also include the delay difference, "
              f"{d['protection'] - d['working']:+.3f} ms, and one send interval)")
        results.append(bench_forced(ctl, args.trials, args.pps, args.switch_ms))
        for i, h in enumerate(args.hold_off_ms or [0.0, 20.0]):
            results.append(bench_cut(ctl, args.trials, args.pps, h, args.switch_ms, "bcdefgh"[i]))
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
            if proc.returncode not in (0, None) and log is not None:
                log.seek(0)
                print(f"line exited {proc.returncode}: {log.read().decode(errors='replace')}", file=sys.stderr)
        cleanup()
    print(f"summary: {sum(results)}/{len(results)} series within +-{TOLERANCE_MS:g} ms over all trials")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

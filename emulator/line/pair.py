"""Two fresh network namespaces joined by the emulated optical line: scaffolding for benches and tests.

``LinePair`` is a context manager. On entry it clears whatever a crashed earlier run with the
same names left behind (the line named in its pidfile, processes inside the namespaces, the
namespaces themselves, the run directory; with a ``<tag>-<pid>`` prefix also the namespaces of
dead ``<tag>-*`` runs), creates ``<prefix>-a``/``<prefix>-b`` (loopback up, IPv6 off so no
RS/DAD/MLD chatter rides the line), writes a line config (overrides: paths, rate, protection...),
starts ``python -m emulator.line --config`` and waits until its control socket answers, then puts
an address on each ``wan0`` TAP with a static ARP entry for the peer (BER and outage tests must
not lose frames to ARP refreshes the line eats). It yields itself: ``.control`` (LineControl),
``.ns_a``/``.ns_b``, ``.ip_a``/``.ip_b``, ``.mac(ns)``, ``.sock(ns)``, ``.proc``, ``.config``.
On exit, on an exception, or on SIGTERM/SIGHUP (turned into SystemExit while the pair is up),
it stops the line and removes all of it again.

The process helpers serve the measuring processes forked next to the pair: ``child_init``,
``spawn`` (a fork with a pipe), and the paced sender / sequence receiver they usually run.
Stdlib only; needs root. Knows nothing of testbed/ or drivers/.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import ipaddress
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from .control import LineControl
from .netns import in_netns

REPO = Path(__file__).resolve().parents[2]
HEADER = struct.Struct("!Qd")  # what the paced sender puts first in each datagram: seq, send time
SO_RCVBUFFORCE = 33
_PR_SET_PDEATHSIG, _PR_SET_TIMERSLACK = 1, 29
_ctx = mp.get_context("fork")
_libc = ctypes.CDLL(None, use_errno=True)


class LineStartError(RuntimeError):
    """The line process did not come up; the message carries its log."""


# --- shell and namespace helpers ----------------------------------------------------------------


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def netns_sock(ns: str, kind: int = socket.SOCK_DGRAM, proto: int = 0) -> socket.socket:
    """An IPv4 socket that lives in netns ``ns`` (the netns is fixed when the socket is created)."""
    with in_netns(ns):
        return socket.socket(socket.AF_INET, kind, proto)


def mac_of(ns: str, dev: str) -> str:
    return json.loads(sh("ip", "-j", "-n", ns, "link", "show", dev).stdout)[0]["address"]


def delete_netns(ns: str) -> None:
    """SIGKILL every process inside ``ns`` (iperf3 and the like), then delete it; absent is fine."""
    for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    sh("ip", "netns", "del", ns, check=False)


def clear_stale(tag: str) -> None:
    """Delete ``<tag>-<pid>-*`` namespaces whose run (process ``pid``) is gone: crashed runs."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{re.escape(tag)}-(\d+)-[^-]+", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            delete_netns(name)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; reaps it either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the line process ---------------------------------------------------------------------------


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def start_line(config: dict[str, Any], path: Path, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Write ``config`` to ``path`` (JSON), start ``python -m emulator.line`` on it with its output
    in ``path`` with suffix ``.log``, and return once its control socket answers. A socket left by
    a killed line is waited out until the new one replaces it. Raises LineStartError (with the log) if it exits or is not up within ``timeout``."""
    sock = config["control_socket"]
    stale = _inode(sock)
    path.write_text(json.dumps(config))
    log_path = path.with_suffix(".log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "emulator.line", "--config", str(path)], cwd=REPO,
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while _inode(sock) in (None, stale):
            if proc.poll() is not None:
                raise LineStartError(f"line exited {proc.returncode}: {log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise LineStartError(f"line did not create its control socket within {timeout:g} s: "
                                     f"{log_path.read_text(errors='replace')}")
            time.sleep(0.02)
        LineControl(sock).wait_ready(max(0.5, deadline - time.monotonic()))
    except BaseException:
        stop_process(proc)
        raise
    return proc


def realtime_forwarders(line_pid: int) -> None:
    """SCHED_FIFO for the line's forwarding children (they sleep in select between frames): on a
    small box shared with other work, a preempted forwarder would read a backlog late and stretch
    the outage or switch it emulates, which is the emulator's error, not the instrument's."""
    try:
        kids = Path(f"/proc/{line_pid}/task/{line_pid}/children").read_text().split()
    except OSError:
        return
    for k in kids:
        try:
            os.sched_setscheduler(int(k), os.SCHED_FIFO, os.sched_param(10))
        except OSError:
            pass


def _derived_addrs(prefix: str) -> tuple[str, str]:
    """A /30 in the benchmarking range 198.18.0.0/15, picked by the prefix."""
    net = ipaddress.ip_network("198.18.0.0/15")
    base = net.network_address + 4 * (zlib.crc32(prefix.encode()) % (net.num_addresses // 4))
    return str(base + 1), str(base + 2)


class LinePair:
    """Namespaces ``<prefix>-<suffixes[0]>`` and ``<prefix>-<suffixes[1]>`` joined by one emulated line.

    ``addrs``: the two /30 addresses on the TAPs (default: derived from the prefix). ``run_dir``
    holds the config, control socket, pidfile and log, and is removed at the end (default
    /tmp/<ns_a>-line). ``realtime``: run the line's forwarders SCHED_FIFO. Other keywords
    override the line config (``paths``, ``rate_bps``, ``protection``, ``name``, ...)."""

    def __init__(self, prefix: str, *, addrs: tuple[str, str] | None = None, mtu: int = 1500,
                 ifname: str = "wan0", suffixes: tuple[str, str] = ("a", "b"), run_dir: str | Path | None = None,
                 realtime: bool = False, **line: Any) -> None:
        self.prefix = prefix
        self.ns_a, self.ns_b = (f"{prefix}-{s}" for s in suffixes)
        self.ip_a, self.ip_b = addrs or _derived_addrs(prefix)
        self.ifname = ifname
        self.run_dir = Path(run_dir) if run_dir is not None else Path(f"/tmp/{self.ns_a}-line")
        if len(self.run_dir.resolve().parts) < 3:
            raise ValueError(f"run_dir {self.run_dir} is too close to / to be removed at the end")
        self.realtime = realtime
        self.config: dict[str, Any] = {
            "name": f"{prefix}-line", "control_socket": str(self.run_dir / "line.sock"),
            "pidfile": str(self.run_dir / "line.pid"),
            "ends": [{"netns": self.ns_a, "ifname": ifname}, {"netns": self.ns_b, "ifname": ifname}],
            "mtu": mtu, "rate_bps": 0, "buffer_ms": 50,
            "paths": [{"name": "working", "length_km": 200}, {"name": "protection", "length_km": 1000}],
            "active_path": "working", **line}
        self.control = LineControl(self.config["control_socket"])
        self.proc: subprocess.Popen[bytes] | None = None
        self._saved: dict[int, Any] = {}

    @property
    def mtu(self) -> int:
        return int(self.config["mtu"])

    @property
    def log_path(self) -> Path:
        return self.run_dir / "line.log"

    def mac(self, ns: str) -> str:
        """The MAC of the line's TAP in ``ns``."""
        return mac_of(ns, self.ifname)

    def sock(self, ns: str, kind: int = socket.SOCK_DGRAM, proto: int = 0) -> socket.socket:
        return netns_sock(ns, kind, proto)

    # --- lifecycle ---

    def __enter__(self) -> Self:
        self._trap_signals()
        try:
            self.cleanup()
            m = re.fullmatch(rf"(.+)-{os.getpid()}", self.prefix)
            if m:
                clear_stale(m.group(1))
            for ns in (self.ns_a, self.ns_b):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                for k in ("all", "default"):  # no IPv6 chatter (RS/DAD/MLD) on the line
                    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.proc = start_line(self.config, self.run_dir / "line.json")
            if self.realtime:
                realtime_forwarders(self.proc.pid)
            ends = ((self.ns_a, self.ip_a, self.ns_b, self.ip_b), (self.ns_b, self.ip_b, self.ns_a, self.ip_a))
            for ns, ip, peer_ns, peer_ip in ends:
                sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", self.ifname)
                sh("ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr", self.mac(peer_ns), "dev", self.ifname,
                   "nud", "permanent")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None:
                stop_process(self.proc)
                if self.proc.returncode != 0:
                    print(f"line exited {self.proc.returncode}: {self.log_text()}", file=sys.stderr)
                self.proc = None
            self.cleanup()
        finally:
            self._restore_signals()

    def cleanup(self) -> None:
        """Remove what this pair (or a crashed run with the same names) left: the line named in
        the pidfile, processes inside the namespaces, the namespaces, the run directory."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(Path(self.config["pidfile"]).read_text().strip())
            if b"emulator.line" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.02)
        for ns in (self.ns_a, self.ns_b):
            delete_netns(ns)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def check(self) -> None:
        """Raise RuntimeError if the line has exited: it should run until the pair is closed."""
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"line exited early with {rc}: {self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _trap_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                self._saved[sig] = signal.signal(sig, _raise_exit)

    def _restore_signals(self) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()


def _raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# --- measuring processes -------------------------------------------------------------------------


def udp_echo(ns: str, addr: tuple[str, int], conn: Any) -> None:
    """spawn target: echo every datagram to ``addr`` in netns ``ns`` back; True on ``conn`` once bound."""
    child_init()
    s = netns_sock(ns)
    s.bind(addr)
    conn.send(True)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def child_init(realtime: bool = False) -> None:
    """For a forked measuring process: no GC pauses, killed with its parent, precise sleeps;
    ``realtime``: SCHED_FIFO, so that on a small box its being preempted (by the line's control
    plane answering a trigger, say) is not counted as line outage. It must sleep between frames."""
    gc.disable()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # helpers never outlive their parent
    _libc.prctl(_PR_SET_TIMERSLACK, 1000)  # precise pacing sleeps
    if realtime:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))


def spawn(target: Callable[..., None], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Fork ``target(*args, conn, **kwargs)`` as a daemon process; returns (process, our end of
    the pipe whose other end is ``conn``)."""
    parent, child = _ctx.Pipe()
    p = _ctx.Process(target=target, args=(*args, child), kwargs=kwargs, daemon=True)
    p.start()
    return p, parent


def paced_send(s: socket.socket, count: int, pps: float, size: int) -> tuple[float, float]:
    """Send ``count`` datagrams of ``size`` bytes at ``pps`` on connected ``s``, each starting with
    HEADER (seq, send time). A send that fails (ENOBUFS, say) counts as sent. Returns (start, interval)."""
    pad = bytes(max(0, size - HEADER.size))
    interval = 1.0 / pps
    mono = time.monotonic
    pack = HEADER.pack
    start = mono() + 0.01
    seq = 0
    while seq < count:
        now = mono()
        while seq < count and start + seq * interval <= now:
            try:
                s.send(pack(seq, mono()) + pad)
            except OSError:
                pass
            seq += 1
        if seq < count:
            wait = start + seq * interval - mono()
            if wait > 0:
                time.sleep(wait)
    return start, interval


def paced_sender(ns: str, dst: tuple[str, int], count: int, pps: float, size: int, conn: Any, *,
                 realtime: bool = False) -> None:
    """spawn target: ``paced_send`` from netns ``ns`` to ``dst``; sends (start, interval) on ``conn``."""
    child_init(realtime)
    s = netns_sock(ns)
    s.connect(dst)
    conn.send(paced_send(s, count, pps, size))


def seq_receiver(ns: str, addr: tuple[str, int], idle_s: float, conn: Any, *, rcvbuf: int = 0,
                 realtime: bool = False) -> None:
    """spawn target: bind ``addr`` in netns ``ns``, send True on ``conn`` once bound, then record
    (seq, sender ts, arrival ts) of each datagram until ``idle_s`` of silence (30 s for the
    first) and send the three lists on ``conn``."""
    child_init(realtime)
    s = netns_sock(ns)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # root
    s.bind(addr)
    conn.send(True)
    seqs: list[int] = []
    sent_ts: list[float] = []
    arr_ts: list[float] = []
    s.settimeout(30.0)
    mono = time.monotonic
    unpack = HEADER.unpack_from
    try:
        while True:
            data = s.recv(65536)
            arr_ts.append(mono())
            seq, ts = unpack(data)
            seqs.append(seq)
            sent_ts.append(ts)
            s.settimeout(idle_s)
    except TimeoutError:
        pass
    conn.send((seqs, sent_ts, arr_ts))

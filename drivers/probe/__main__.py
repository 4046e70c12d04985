"""``python -m drivers.probe send|recv|analyze``: see the package docstring. Exit codes: 0 done,
1 the probe could not run (reason on stderr, also as JSON {"error": ...} on stdout), 2 bad
arguments."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from .analysis import Records
from .frames import KINDS, FrameSpec, default_port, min_size
from .wire import ProbeError, Receiver, Sender, iface_mac, resolve_next_hop

PROG = "python -m drivers.probe"


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=None, separators=(",", ":")), flush=True)


def _positive(x: str) -> float:
    v = float(x)
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {x}")
    return v


def cmd_send(a: argparse.Namespace) -> dict[str, Any]:
    src_mac = a.src_mac or iface_mac(a.iface)
    dst_mac, src_ip = a.dst_mac, a.src_ip
    hop = None
    if not dst_mac or not src_ip:
        hop = resolve_next_hop(a.dst_ip, a.iface)
        dst_mac = dst_mac or hop["mac"]
        src_ip = src_ip or hop["src_ip"]
    if not src_ip:
        raise ProbeError(f"no source address on {a.iface} towards {a.dst_ip}; pass --src-ip")
    size = a.size or max(128, min_size(a.kind))
    spec = FrameSpec(src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip, dst_ip=a.dst_ip, kind=a.kind, size=size,
                     dport=a.port, sport=a.sport, stream=a.stream, dscp=a.dscp, ecn=a.ecn)
    if a.count is not None:
        count = a.count
    elif a.rate_pps > 0:
        count = max(1, round(a.rate_pps * a.duration))
    else:
        raise ProbeError("--rate-pps 0 (as fast as possible) needs --count")
    def started() -> None:
        print(f"probe send: sending {count} frames on {a.iface} to {a.dst_ip}", file=sys.stderr, flush=True)

    res = Sender(a.iface, spec, rate_pps=a.rate_pps, count=count, first_seq=a.first_seq, spin_us=a.spin_us,
                 realtime=a.realtime, qdisc_bypass=a.qdisc_bypass, on_start=started).run()
    out = res.to_dict()
    if hop:
        out["next_hop"] = hop["next_hop"]
    return out


def cmd_recv(a: argparse.Namespace) -> dict[str, Any]:
    port = a.port if a.port is not None else default_port(a.kind)

    def ready() -> None:
        print(f"probe recv: ready on {a.iface} {a.kind} port {port}", file=sys.stderr, flush=True)

    rx = Receiver(a.iface, kind=a.kind, port=port, stream=a.stream, duration=a.duration, idle=a.idle,
                  max_seq=a.max_seq, bpf=not a.no_bpf, rcvbuf_bytes=int(a.rcvbuf_mb * (1 << 20)),
                  realtime=a.realtime, on_ready=ready)
    rec, stats = rx.run()
    if a.records:
        rec.save(a.records)
    rep = rec.analyze(rate_pps=a.rate_pps or None, first_seq=a.first_seq, sent=a.sent,
                      gap_threshold_ms=a.gap_threshold_ms)
    return {"receiver": stats.to_dict(), "report": rep.to_dict(), "records": a.records}


def cmd_analyze(a: argparse.Namespace) -> dict[str, Any]:
    rec = Records.load(a.records)
    rep = rec.analyze(rate_pps=a.rate_pps or None, first_seq=a.first_seq, sent=a.sent,
                      gap_threshold_ms=a.gap_threshold_ms)
    return {"report": rep.to_dict(), "records": a.records}


def _analysis_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate-pps", type=_positive, default=0.0,
                   help="the sender's rate, for the loss method (default: estimated from tx timestamps)")
    p.add_argument("--first-seq", type=int, help="first sequence number sent (to count head loss)")
    p.add_argument("--sent", type=int, help="frames sent (to count tail loss; implies --first-seq 0)")
    p.add_argument("--gap-threshold-ms", type=_positive,
                   help="disruption threshold (default: 10 send intervals, at least 1 ms)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Probe traffic: raw-socket sender/receiver, test-set report.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send", help="send one paced probe stream")
    s.add_argument("--iface", required=True)
    s.add_argument("--dst-ip", required=True)
    s.add_argument("--src-ip", help="default: the route's source address")
    s.add_argument("--dst-mac", help="default: the next hop's MAC from 'ip neigh' (ARP prodded if needed)")
    s.add_argument("--src-mac", help="default: the interface's MAC")
    s.add_argument("--kind", choices=KINDS, default="udp")
    s.add_argument("--size", type=int, help="Ethernet frame size incl. FCS (default 128)")
    s.add_argument("--rate-pps", type=_positive, default=10000.0, help="0 = as fast as possible (needs --count)")
    s.add_argument("--duration", type=_positive, default=10.0, help="seconds (count = rate x duration)")
    s.add_argument("--count", type=int, help="frames to send (overrides --duration)")
    s.add_argument("--first-seq", type=int, default=0)
    s.add_argument("--port", type=int, help="UDP destination port (default 7100, or 4791 for rocev2)")
    s.add_argument("--sport", type=int, default=49152)
    s.add_argument("--stream", type=int, default=1)
    s.add_argument("--dscp", type=int, default=0)
    s.add_argument("--ecn", type=int, default=0)
    s.add_argument("--spin-us", type=_positive, default=100.0, help="busy-wait this long before each frame")
    s.add_argument("--realtime", action="store_true", help="SCHED_FIFO (use with a small --spin-us)")
    s.add_argument("--qdisc-bypass", action="store_true", help="PACKET_QDISC_BYPASS")
    s.set_defaults(fn=cmd_send)
    r = sub.add_parser("recv", help="record one probe stream and report")
    r.add_argument("--iface", required=True)
    r.add_argument("--kind", choices=KINDS, default="udp")
    r.add_argument("--port", type=int, help="UDP destination port (default 7100, or 4791 for rocev2)")
    r.add_argument("--stream", type=int, help="only this stream (default: the first one seen)")
    r.add_argument("--duration", type=_positive, default=10.0, help="stop after this many seconds")
    r.add_argument("--idle", type=_positive, default=0.0, help="stop after this long without probes (0: never)")
    r.add_argument("--max-seq", type=int, help="stop once this sequence number arrived")
    r.add_argument("--records", help="also save (seq, tx_ns, rx_ns) int64 triples to this file")
    r.add_argument("--rcvbuf-mb", type=_positive, default=64.0)
    r.add_argument("--no-bpf", action="store_true", help="filter in Python only")
    r.add_argument("--realtime", action="store_true", help="SCHED_FIFO")
    _analysis_args(r)
    r.set_defaults(fn=cmd_recv)
    z = sub.add_parser("analyze", help="report from a records file")
    z.add_argument("records")
    _analysis_args(z)
    z.set_defaults(fn=cmd_analyze)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        _emit(a.fn(a))
    except (ProbeError, ValueError, OSError) as exc:
        print(f"{PROG} {a.cmd}: error: {exc}", file=sys.stderr)
        _emit({"error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tests of the probe traffic (drivers.probe): the test-set analysis on synthetic streams, the
frames scapy builds and the sender patches, the CLI's errors, and (marked ``lab``, root only)
sender and receiver as separate processes over two namespaces dclp-a/dclp-b joined by the
emulated optical line (emulator.line.pair.LinePair): a 50 ms outage measures ~50 ms by both
methods, a switch to a longer path shows the delay change. Never touches the lab's dcl-*
namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.probe import FrameSpec, Records, analyze, build_packet, build_template, min_size, parse_frame
from drivers.probe.frames import HEADER_LEN, MAGIC, PSN_MOD
from drivers.probe.wire import udp_port_filter
from emulator.line.model import propagation_delay_s
from emulator.line.pair import LinePair, stop_process

REPO = Path(__file__).resolve().parents[1]
MS = 1_000_000  # ns


def stream(n: int, pps: float = 10_000.0, delay_ns: int = 1 * MS, t0: int = 10**18,
           drop: range | set[int] = range(0), gap_extra_ns: dict[int, int] | None = None
           ) -> tuple[list[int], list[int], list[int]]:
    """A paced stream: seq i sent at t0 + i/pps, arriving delay_ns later, minus ``drop``."""
    seq, tx, rx = [], [], []
    iv = 1e9 / pps
    for i in range(n):
        if i in drop:
            continue
        t = t0 + int(i * iv)
        seq.append(i)
        tx.append(t)
        rx.append(t + delay_ns + (gap_extra_ns or {}).get(i, 0))
    return seq, tx, rx


# --- analysis ------------------------------------------------------------------------------------


def test_clean_stream_has_no_loss_and_a_one_interval_gap() -> None:
    r = analyze(*stream(5000))
    assert (r.received, r.unique, r.expected, r.lost, r.duplicates, r.out_of_order) == (5000, 5000, 5000, 0, 0, 0)
    assert r.rate_pps == pytest.approx(10_000, rel=1e-4) and r.rate_source == "tx timestamps"
    assert r.sdt_loss_ms == 0
    assert r.sdt_gap_ms == pytest.approx(0.1, abs=1e-3)
    assert r.disruptions.count == 0 and r.disruptions.threshold_ms == pytest.approx(1.0)
    assert r.delay_all.p50_ms == pytest.approx(1.0) and r.delay_all.p99_ms == pytest.approx(1.0)


def test_a_hole_is_measured_by_both_methods_and_located() -> None:
    r = analyze(*stream(3000, drop=range(1000, 1500)))  # 500 frames = 50 ms at 10 kpps
    assert r.lost == 500
    assert r.sdt_loss_ms == pytest.approx(50.0, abs=1e-6)
    g = r.largest_gap
    assert g is not None and (g.seq_before, g.seq_after, g.missing) == (999, 1500, 500)
    assert r.sdt_gap_ms == pytest.approx(50.1, abs=1e-3)  # the outage plus one send interval
    assert g.tx_gap_ms == pytest.approx(50.1, abs=1e-3)  # sent that far apart: the sender was fine
    assert g.index == 1000 and r.delay_before.count == 1000 and r.delay_after.count == 1500
    assert r.tx_max_gap_ms == pytest.approx(0.1, abs=1e-3)  # the sender never stalled
    assert r.disruptions.count == 1 and r.disruptions.longest_ms == pytest.approx(50.1, abs=1e-3)


def test_gap_without_loss_is_a_delay_step_not_loss() -> None:
    """Frames that arrive late (a switch to a longer path) make a gap but no loss."""
    seq, tx, rx = stream(2000)
    rx = [r + (9 * MS if s >= 1000 else 0) for s, r in zip(seq, rx, strict=True)]
    r = analyze(seq, tx, rx)
    assert r.lost == 0 and r.sdt_loss_ms == 0
    assert r.sdt_gap_ms == pytest.approx(9.1, abs=1e-3)
    assert r.largest_gap.tx_gap_ms == pytest.approx(0.1, abs=1e-3)
    assert r.delay_before.p50_ms == pytest.approx(1.0) and r.delay_after.p50_ms == pytest.approx(10.0)
    assert r.delay_before.p99_ms == pytest.approx(1.0) and r.delay_after.p99_ms == pytest.approx(10.0)


def test_duplicates_do_not_hide_loss() -> None:
    seq, tx, rx = stream(100, drop={10, 11, 12})
    # three duplicates (a 1+1 selector showing both copies): rx count equals tx count again
    for k in (20, 21, 22):
        i = seq.index(k)
        seq.insert(i + 1, k)
        tx.insert(i + 1, tx[i])
        rx.insert(i + 1, rx[i] + 1000)
    r = analyze(seq, tx, rx, sent=100)
    assert r.received == 100 and r.unique == 97
    assert r.lost == 3 and r.duplicates == 3 and r.out_of_order == 0


def test_reordering_counts_exfo_and_rfc4737_style() -> None:
    order = [0, 1, 2, 5, 3, 4, 6, 7, 9, 8]
    seq = order
    tx = [10**18 + s * 100_000 for s in seq]
    rx = [10**18 + i * 100_000 + MS for i in range(len(seq))]
    r = analyze(seq, tx, rx)
    assert r.lost == 0 and r.duplicates == 0
    assert r.out_of_order == 2  # 3 after 5, 8 after 9: lower than the previous frame
    assert r.reordered == 3  # 3, 4 (below 5) and 8 (below 9): lower than the highest seen


def test_head_and_tail_loss_need_the_senders_range() -> None:
    seq, tx, rx = stream(100, drop=set(range(5)) | set(range(95, 100)))
    assert analyze(seq, tx, rx).lost == 0  # a receiver alone cannot see them
    r = analyze(seq, tx, rx, first_seq=0, sent=100, rate_pps=10_000)
    assert r.expected == 100 and r.lost == 10 and r.rate_source == "given"
    assert r.sdt_loss_ms == pytest.approx(1.0)


def test_disruption_statistics_like_a_test_set() -> None:
    seq, tx, rx = stream(5000, drop=set(range(1000, 1030)) | set(range(3000, 3100)))  # 3 ms and 10 ms
    r = analyze(seq, tx, rx, gap_threshold_ms=2.0)
    d = r.disruptions
    assert d.count == 2 and d.threshold_ms == 2.0
    assert d.longest_ms == pytest.approx(10.1, abs=1e-3) and d.shortest_ms == pytest.approx(3.1, abs=1e-3)
    assert d.last_ms == pytest.approx(10.1, abs=1e-3) and d.total_ms == pytest.approx(13.2, abs=1e-3)
    assert [e.seq_before for e in d.events] == [999, 2999]
    assert r.sdt_loss_ms == pytest.approx(13.0)


def test_a_sender_stall_is_visible_as_tx_gap() -> None:
    seq, tx, rx = stream(1000)
    tx = [t + (20 * MS if s >= 500 else 0) for s, t in zip(seq, tx, strict=True)]  # the sender stalled 20 ms
    rx = [t + MS for t in tx]
    r = analyze(seq, tx, rx, rate_pps=10_000)
    assert r.lost == 0 and r.sdt_gap_ms == pytest.approx(20.1, abs=1e-3)
    assert r.largest_gap.tx_gap_ms == pytest.approx(20.1, abs=1e-3) and r.tx_max_gap_ms == pytest.approx(20.1, abs=1e-3)


def test_empty_and_mismatched_inputs() -> None:
    r = analyze([], [], [])
    assert r.received == 0 and r.lost == 0 and r.sdt_gap_ms is None and r.largest_gap is None
    assert analyze([], [], [], first_seq=0, sent=50, rate_pps=1000).lost == 50
    with pytest.raises(ValueError, match="differ in length"):
        analyze([1, 2], [1], [1, 2])


def test_records_round_trip_and_windows(tmp_path: Path) -> None:
    rec = Records()
    for s, t, r in zip(*stream(100, drop={50}), strict=True):
        rec.append(s, t, r)
    p = tmp_path / "r.bin"
    rec.save(p)
    assert p.stat().st_size == 99 * 24
    back = Records.load(p)
    assert list(back.seq) == list(rec.seq) and list(back.rx_ns) == list(rec.rx_ns)
    w = back.window_tx(10**18 + 40 * 100_000, 10**18 + 60 * 100_000)
    assert list(w.seq) == [s for s in range(40, 60) if s != 50]
    assert w.analyze().lost == 1


# --- frames ----------------------------------------------------------------------------------------

SPEC = {"src_mac": "02:00:00:00:00:0a", "dst_mac": "02:00:00:00:00:0b", "src_ip": "198.19.7.1", "dst_ip": "198.19.7.2"}


def test_udp_frame_parses_back_with_scapy() -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    tpl = build_template(FrameSpec(**SPEC, size=128, dscp=46, stream=7))
    f = tpl.make(123456, 111, 222)
    assert len(f) == 124  # size includes the FCS the NIC adds
    p = Ether(f)
    assert p[Ether].dst == SPEC["dst_mac"] and p[IP].src == "198.19.7.1" and p[IP].dst == "198.19.7.2"
    assert p[IP].tos == 46 << 2 and p[IP].len == 110 and p[IP].flags == "DF"
    assert p[UDP].dport == 7100 and p[UDP].chksum == 0 and p[UDP].len == 90
    ip_ok = IP(bytes(p[IP]))
    del ip_ok.chksum
    assert IP(bytes(ip_ok)).chksum == p[IP].chksum  # header checksum valid after patching
    load = bytes(p[UDP].payload)
    assert load[:4] == MAGIC and int.from_bytes(load[4:8], "big") == 7
    assert int.from_bytes(load[8:16], "big") == 123456
    assert int.from_bytes(load[16:24], "big") == 111 and int.from_bytes(load[24:32], "big") == 222
    assert f == bytes(build_packet(tpl.spec, 123456, 111, 222))
    got = parse_frame(f)
    assert got is not None and (got.stream, got.seq, got.tx_mono_ns, got.tx_real_ns, got.psn) == (7, 123456, 111, 222, None)


@pytest.mark.parametrize("seq", [0, 1, 0xFFFFFF, PSN_MOD + 5, 3 * PSN_MOD + 12345, 2**40 + 7])
def test_rocev2_frame_psn_is_seq_and_icrc_is_scapys(seq: int) -> None:
    from scapy.contrib.roce import BTH
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    tpl = build_template(FrameSpec(**SPEC, kind="rocev2", size=256, dscp=26, ecn=2))
    tpl.make(99, 1, 2)  # patched before: nothing of an earlier frame may remain
    f = tpl.make(seq, 5_000_000_001, 1_700_000_000_000_000_123)
    p = Ether(f)
    assert len(f) == 252 and p[UDP].dport == 4791 and p[UDP].chksum == 0
    b = p[BTH]
    assert b.opcode == 0x04 and b.dqpn == tpl.spec.dqpn and b.pkey == 0xFFFF
    assert b.psn == seq % PSN_MOD
    assert b.icrc == int.from_bytes(b.compute_icrc(None), "big")  # ICRC valid (scapy recomputes it)
    assert f == bytes(build_packet(tpl.spec, seq, 5_000_000_001, 1_700_000_000_000_000_123))
    got = parse_frame(f, "rocev2")
    assert got is not None and got.seq == seq and got.psn == seq % PSN_MOD
    assert got.tx_real_ns == 1_700_000_000_000_000_123


def test_parse_frame_rejects_non_probes() -> None:
    udp = build_template(FrameSpec(**SPEC)).make(1)
    assert parse_frame(udp, port=7101) is None
    assert parse_frame(udp[:40]) is None
    bad = bytearray(udp)
    bad[42:46] = b"XXXX"
    assert parse_frame(bad) is None
    arp = bytearray(udp)
    arp[12:14] = b"\x08\x06"
    assert parse_frame(arp) is None


def test_sizes_and_bad_specs() -> None:
    assert min_size("udp") == 78 and min_size("rocev2") == 94
    assert len(build_template(FrameSpec(**SPEC, size=78)).frame) == 74
    assert len(build_template(FrameSpec(**SPEC, kind="rocev2", size=1518)).frame) == 1514
    with pytest.raises(ValueError, match="size must be in"):
        FrameSpec(**SPEC, kind="rocev2", size=64)
    with pytest.raises(ValueError, match="kind must be"):
        FrameSpec(**SPEC, kind="tcp")
    with pytest.raises(ValueError, match="dscp"):
        FrameSpec(**SPEC, dscp=64)
    assert HEADER_LEN == 32


def test_bpf_program_shape() -> None:
    code = udp_port_filter(4791)
    assert len(code) == 11 * 8
    assert int.from_bytes(code[8 * 8 + 4:8 * 9], sys.byteorder) == 4791


def test_cli_reports_errors_clearly() -> None:
    py = [sys.executable, "-m", "drivers.probe"]
    r = subprocess.run([*py, "send", "--iface", "nonexistent0", "--dst-ip", "198.19.7.2"], cwd=REPO,
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and "nonexistent0" in r.stderr and "Traceback" not in r.stderr
    assert "error" in json.loads(r.stdout.splitlines()[-1])
    r = subprocess.run([*py, "send", "--iface", "x", "--dst-ip", "198.19.7.2", "--kind", "tcp"], cwd=REPO,
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and "invalid choice" in r.stderr


# --- integration over the emulated line ------------------------------------------------------------


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (namespaces, TAP devices, raw sockets)"
    if not shutil.which("ip") or not os.path.exists("/dev/net/tun"):
        return "needs iproute2 and /dev/net/tun"
    return None


PATHS = [{"name": "working", "length_km": 200}, {"name": "long", "length_km": 2000}]  # 1 ms / 10 ms one way
PAIR = LinePair("dclp", addrs=("198.19.252.1", "198.19.252.2"), run_dir=f"/tmp/dclp-test-{os.getpid()}",
                name="probe-test", paths=PATHS, realtime=True)  # realtime: see realtime_forwarders
NS_A, NS_B, IP_B = PAIR.ns_a, PAIR.ns_b, PAIR.ip_b
PPS = 10_000


@pytest.fixture(scope="module")
def line_ns() -> Iterator[dict[str, Any]]:
    with PAIR as pair:
        yield {"ctl": pair.control, "tmp": pair.run_dir, "mac_b": pair.mac(NS_B)}


def run_probe(kind: str, secs: float, action_at: float, action: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Receiver in dclp-b, sender in dclp-a (separate processes, the real CLI); ``action`` runs
    ``action_at`` s after the sender starts. Returns (sender JSON, receiver JSON)."""
    py = [sys.executable, "-m", "drivers.probe"]
    rx = subprocess.Popen(["ip", "netns", "exec", NS_B, *py, "recv", "--iface", "wan0", "--kind", kind,
                           "--duration", str(secs + 5), "--idle", "0.5", "--sent", str(int(PPS * secs)),
                           "--realtime"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tx = None
    try:
        assert rx.stderr is not None
        line = rx.stderr.readline()
        assert "ready" in line, line
        tx = subprocess.Popen(["ip", "netns", "exec", NS_A, *py, "send", "--iface", "wan0", "--dst-ip", IP_B,
                               "--kind", kind, "--rate-pps", str(PPS), "--duration", str(secs),
                               # the instruments must not be preempted on a busy 2-core box; with
                               # SCHED_FIFO, sleep rather than spin (RT throttling stops spinners)
                               "--realtime", "--spin-us", "20"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tx.stderr is not None
        line = tx.stderr.readline()  # its first frame goes now: start-up took anything up to seconds
        assert "probe send: sending" in line, line + tx.stderr.read()
        time.sleep(action_at)
        action()
        out, err = tx.communicate(timeout=secs + 20)
        assert tx.returncode == 0, err
        rout, rerr = rx.communicate(timeout=secs + 20)
        assert rx.returncode == 0, rerr
        return json.loads(out), json.loads(rout)
    finally:
        for p in (tx, rx):
            if p is not None:
                stop_process(p)



@pytest.mark.lab
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_outage_of_50ms_is_measured_by_both_methods(line_ns: dict[str, Any]) -> None:
    ctl = line_ns["ctl"]
    sent, res = run_probe("udp", 2.0, 0.5, lambda: ctl.outage(50))
    rep, rcv = res["report"], res["receiver"]
    print(f"outage 50 ms: loss method {rep['sdt_loss_ms']:.2f} ms, gap method {rep['sdt_gap_ms']:.2f} ms, "
          f"lost {rep['lost']}, sender late max {sent['late_max_us']:.0f} us")
    assert sent["sent"] == 20000 and sent["dst_mac"] == line_ns["mac_b"]  # resolved from 'ip neigh'
    assert rcv["socket_drops"] == 0 and rcv["kernel_timestamps"] and rcv["probes"] == rep["received"]
    assert rep["expected"] == 20000 and rep["duplicates"] == 0 and rep["out_of_order"] == 0
    assert rep["sdt_loss_ms"] == pytest.approx(50, abs=3)
    assert rep["sdt_gap_ms"] == pytest.approx(50, abs=3)
    g = rep["largest_gap"]
    assert g["missing"] == rep["lost"]  # all loss is in the one gap
    assert 0.95 < rep["delay_before"]["p50_ms"] < 3.0  # 1 ms of fibre plus the emulator's own latency
    assert 0.95 < rep["delay_after"]["p50_ms"] < 3.0


@pytest.mark.lab
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_switch_to_a_longer_path_shows_the_delay_step(line_ns: dict[str, Any]) -> None:
    ctl = line_ns["ctl"]
    try:
        sent, res = run_probe("rocev2", 2.0, 0.5, lambda: ctl.set_active_path("long"))
    finally:
        ctl.set_active_path("working")
    rep = res["report"]
    print(f"switch to long path: delay p50 {rep['delay_before']['p50_ms']:.3f} -> {rep['delay_after']['p50_ms']:.3f} ms,"
          f" gap {rep['sdt_gap_ms']:.2f} ms, lost {rep['lost']}")
    assert sent["kind"] == "rocev2" and sent["sent"] == 20000
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and res["receiver"]["socket_drops"] == 0
    before, after = rep["delay_before"], rep["delay_after"]
    d_short, d_long = (propagation_delay_s(p["length_km"]) * 1e3 for p in PATHS)  # 0.98 / 9.79 ms
    assert before["min_ms"] > d_short - 0.01 and after["min_ms"] > d_long - 0.01  # never faster than the fibre
    assert before["p50_ms"] < d_short + 2.0
    assert after["p50_ms"] - before["p50_ms"] == pytest.approx(d_long - d_short, abs=1.0)
    assert rep["sdt_gap_ms"] == pytest.approx(d_long - d_short, abs=2.0)  # the delay step, no loss
    assert rep["largest_gap"]["tx_gap_ms"] < 1.0  # sent back to back: the gap is the path's
    assert rep["sdt_loss_ms"] == 0

"""The fault catalogue on the emulated lab, each fault's effect checked on traffic with the probe
(receiver on dc-b-gpu1, sender on dc-a-gpu1, separate processes in the nodes' namespaces, on the
data interface fab0), and on the optical line itself.  Every test leaves the lab at baseline.

Outages are measured by the loss method (frames missing across the gap / rate) and paths by the
minimum one-way delay (the propagation delay: queueing only adds to it), as a transport test set
does.  Arrival times on this lab carry the scheduling jitter of user-space forwarders sharing two
cores (p99 +4..11 ms seen on a busy machine): one frame held before an outage shortens the arrival
gap by as much, and a backlog after a switch raises the median delay for seconds, while the
outage's length and the path's delay are unchanged."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.lab.plan import LabPlan
from emulator.line.control import LineControl
from emulator.line.model import propagation_delay_s
from testbed.faults import (BandwidthDrop, BitErrors, FaultRefused, FiberCut, ProtectionSwitch, Testbed,
                            check_baseline, restore)
from testbed.inventory import Inventory
from tests.test_lab import iperf_gbps, line_baseline

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
PPS = 10_000


@pytest.fixture
def tb(emulated_lab: LabPlan, inventory: Inventory) -> Iterator[Testbed]:
    t = Testbed(inventory)
    try:
        yield t
    finally:
        t.close()
        line_baseline(emulated_lab)
        for f in t.journal.dir.glob("*.json"):
            f.unlink()
        s = LineControl(emulated_lab.line_socket).get()
        assert (s["rate_bps"], s["active_path"], s["protection"]["request_state"]) == \
            (emulated_lab.line.rate_bps, "working", "none")


def probe(plan: LabPlan, secs: float, action_at: float, action: Callable[[], Any], size: int = 128,
          idle: float = 0.5, stream_done: threading.Event | None = None,
          applied: threading.Event | None = None) -> dict[str, Any]:
    """Stream ``secs`` s at 10 kpps dc-a-gpu1 -> dc-b-gpu1; ``action`` runs ``action_at`` s after the
    first frame (in a thread, so it may block: a `with fault.applied()` held for a while;
    ``stream_done`` is set once the sender is done, for an action that must outlast the stream).
    With ``applied``, the action runs first and the stream starts once it sets that event (a fault
    the whole stream must cross).  The receiver's report."""
    a, b = plan.node("dc-a-gpu1"), plan.node("dc-b-gpu1")
    py = [sys.executable, "-m", "drivers.probe"]
    sent = int(PPS * secs)
    rx = subprocess.Popen(["ip", "netns", "exec", b.netns, *py, "recv", "--iface", "fab0", "--duration",
                           str(secs + 15), "--idle", str(idle), "--sent", str(sent), "--rate-pps", str(PPS),
                           "--gap-threshold-ms", "10", "--realtime"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tx = worker = None
    errors: list[BaseException] = []
    try:
        assert rx.stderr is not None
        assert "ready" in rx.stderr.readline()

        def run() -> None:
            try:
                if applied is None:
                    time.sleep(action_at)
                action()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(exc)
                if applied is not None:
                    applied.set()
        worker = threading.Thread(target=run)
        if applied is not None:
            worker.start()
            assert applied.wait(60), "the action did not apply its fault within 60 s"
            if errors:
                raise errors[0]
        tx = subprocess.Popen(["ip", "netns", "exec", a.netns, *py, "send", "--iface", "fab0", "--dst-ip",
                               str(b.data_ip), "--rate-pps", str(PPS), "--duration", str(secs), "--size", str(size),
                               "--realtime", "--spin-us", "20"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tx.stderr is not None
        line = tx.stderr.readline()  # its first frame goes now: start-up took anything up to seconds
        assert "probe send: sending" in line, line + tx.stderr.read()
        if applied is None:
            worker.start()
        out, err = tx.communicate(timeout=secs + 30)
        if stream_done is not None:
            stream_done.set()
        assert tx.returncode == 0, err
        worker.join(60)
        if errors:
            raise errors[0]
        rout, rerr = rx.communicate(timeout=secs + 30)
        assert rx.returncode == 0, rerr
        return json.loads(rout)["report"]
    finally:
        if stream_done is not None:  # also when the sender failed: release a held fault now
            stream_done.set()
        for p in (tx, rx):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if worker is not None and worker.ident is not None:   # started
            worker.join(30)


def test_bandwidth_drop_halves_the_line_and_300g_is_refused(emulated_lab: LabPlan, tb: Testbed) -> None:
    line = LineControl(emulated_lab.line_socket)
    full = emulated_lab.line.rate_bps
    with pytest.raises(FaultRefused, match="supported: 200G, 400G, 600G, 800G"):
        with BandwidthDrop("dci-otn", 300).applied(tb):
            pass
    assert line.get()["rate_bps"] == full
    with BandwidthDrop("dci-otn", 400).applied(tb) as rec:
        assert line.get()["rate_bps"] == full / 2
        assert rec.details["rate_gbps"] == {"dc-a-otn": 400, "dc-b-otn": 400}
        got = iperf_gbps(emulated_lab, "dc-a-gpu1", "dc-b-gpu1", seconds=1.5)
        assert 0.35 * full / 1e9 <= got <= 0.53 * full / 1e9, got
    assert line.get()["rate_bps"] == full and rec.undone_at is not None
    assert check_baseline(tb) == []


def test_bit_errors_loss_matches_the_ber_for_the_frame_size(emulated_lab: LabPlan, tb: Testbed) -> None:
    ber, size, secs = 1e-6, 1500, 3.0
    state: dict[str, Any] = {}
    applied, stream_done = threading.Event(), threading.Event()

    def hold() -> None:
        with BitErrors("working", ber).applied(tb) as rec:
            state["rec"] = rec
            applied.set()
            stream_done.wait(secs + 30)      # the whole stream crosses the errored path
    rep = probe(emulated_lab, secs, 0, hold, size=size, stream_done=stream_done, applied=applied)
    p = 1 - (1 - ber) ** (8 * size)          # a frame is lost if any of its bits is errored
    expected = p * rep["expected"]
    sd = math.sqrt(expected)
    assert abs(rep["lost"] - expected) <= max(5 * sd, 0.2 * expected), (rep["lost"], expected)
    assert state["rec"].details["ber_read_back"] == pytest.approx(ber)
    assert all(p["ber"] == 0 for p in LineControl(emulated_lab.line_socket).get()["paths"])


def test_forced_protection_switch_disrupts_within_the_switch_time(emulated_lab: LabPlan, tb: Testbed) -> None:
    switch_ms = emulated_lab.line.switch_ms
    line = LineControl(emulated_lab.line_socket)

    def hold() -> None:
        with ProtectionSwitch("dci-otn", "force").applied(tb):
            assert line.get()["active_path"] == "protection"
            time.sleep(1.0)
    rep = probe(emulated_lab, 3.0, 0.7, hold)
    # two outages: the switch to protection, and the undo's switch back to working.  Arrival gaps
    # (> 10 ms) that lost nothing are the line's scheduling, not a switch: a forwarder held up across
    # a switch on a busy CI machine split one outage into a 30 ms lossless gap and a 26 ms lossy one
    d = rep["disruptions"]
    lossy = [ev for ev in d["events"] if ev["missing"]]
    assert len(lossy) == 2, d
    # each outage by the loss method and by the sender's spacing of the frames around it; below:
    # the issue's +-2 ms; above: +3 ms, one send interval and the sender's own scheduling
    for ev in lossy:
        assert switch_ms - 2 <= ev["missing"] * 1e3 / PPS <= switch_ms + 3, d
        assert switch_ms - 2 <= ev["tx_gap_ms"] <= switch_ms + 3, d
    assert 2 * (switch_ms - 2) <= rep["sdt_loss_ms"] <= 2 * (switch_ms + 3), rep["sdt_loss_ms"]
    assert line.get()["active_path"] == "working"


def _one_way_ms(km: float) -> float:
    return propagation_delay_s(km) * 1e3


def test_fiber_cut_of_working_moves_traffic_to_protection_by_sncp(emulated_lab: LabPlan, inventory: Inventory,
                                                                    tb: Testbed) -> None:
    state: dict[str, Any] = {}

    def hold() -> None:
        with FiberCut("working").applied(tb) as rec:
            state["rec"] = rec
            state["line"] = LineControl(emulated_lab.line_socket).get()["active_path"]
            time.sleep(3.0)                   # rest of the stream on protection
    rep = probe(emulated_lab, 2.5, 0.5, hold)
    rec = state["rec"]
    assert (rec.details["mechanism"], rec.details["active_path"], state["line"]) == ("sncp", "protection", "protection")
    assert rep["sdt_loss_ms"] <= emulated_lab.line.switch_ms + 3, rep["sdt_loss_ms"]
    after = rep["delay_after"]["min_ms"]
    prot = _one_way_ms(inventory.fiber_path("protection").length_km)
    assert prot <= after < prot + 0.7, (rep["delay_after"], prot)
    assert check_baseline(tb) == []


def test_fiber_cut_with_protection_locked_out_is_restored_by_ason_on_the_longer_path(
        emulated_lab: LabPlan, inventory: Inventory, tb: Testbed) -> None:
    state: dict[str, Any] = {}
    rest_s = emulated_lab.line.restoration_ms / 1e3
    stream_done = threading.Event()

    def hold() -> None:
        with ProtectionSwitch("dci-otn", "lockout").applied(tb), FiberCut("working").applied(tb) as rec:
            state["rec"] = rec
            state["line"] = LineControl(emulated_lab.line_socket).get()["active_path"]
            # undone only after the stream: the undo's switch back to working is an outage too
            assert stream_done.wait(rest_s + 30)
    rep = probe(emulated_lab, rest_s + 2.5, 0.5, hold, idle=rest_s + 2, stream_done=stream_done)
    rec = state["rec"]
    assert (rec.details["mechanism"], rec.details["active_path"], state["line"]) == \
        ("ason", "restoration", "restoration")
    assert rec.details["active_length_km"] == inventory.fiber_path("restoration").length_km
    assert rest_s * 1e3 - 5 <= rep["sdt_loss_ms"] <= rest_s * 1e3 + 10, rep["sdt_loss_ms"]
    before, after = rep["delay_before"]["min_ms"], rep["delay_after"]["min_ms"]
    work, rest = (_one_way_ms(inventory.fiber_path(p).length_km) for p in ("working", "restoration"))
    assert work <= before < work + 0.7 and rest <= after < rest + 0.7, (rep["delay_before"], rep["delay_after"],
                                                                         work, rest)
    assert check_baseline(tb) == []


HOLDER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from testbed.faults import BandwidthDrop, BitErrors, Testbed
from testbed.inventory import load_inventory
tb = Testbed(load_inventory({inv!r}))
with BandwidthDrop("dci-otn", 400).applied(tb), BitErrors("working", 1e-6).applied(tb):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_sigkilled_holder_is_undone_by_lab_restore(emulated_lab: LabPlan, inventory: Inventory, tb: Testbed) -> None:
    line = LineControl(emulated_lab.line_socket)
    p = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), inv=str(inventory.source))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "holding", p.stderr.read()  # type: ignore[union-attr]
        s = line.get()
        assert s["rate_bps"] == emulated_lab.line.rate_bps / 2 and s["paths"][0]["ber"] == 1e-6
        assert len(list(tb.journal.dir.glob("*.json"))) == 2
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    s = line.get()
    assert s["rate_bps"] == emulated_lab.line.rate_bps / 2          # the kill left the faults behind
    r = subprocess.run([str(REPO / ".venv" / "bin" / "dcilab"), "lab", "restore", "--inventory",
                        str(inventory.source)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BandwidthDrop" in r.stdout and "BitErrors" in r.stdout and "baseline reached" in r.stdout
    s = line.get()
    assert s["rate_bps"] == emulated_lab.line.rate_bps and all(x["ber"] == 0 and x["up"] for x in s["paths"])
    assert (s["active_path"], s["protection"]["request_state"]) == ("working", "none")
    assert not list(tb.journal.dir.glob("*.json"))
    assert restore(inventory, log=lambda m: None).ok        # idempotent

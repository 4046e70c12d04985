"""The line's protection: SNCP 1+1, ASON restoration, operator requests and the event log.

Unit tests drive ``LineLogic`` (the pure state machine) with an injected clock, and the control
service and data plane without TAPs; the ``lab`` tests run the real line between two namespaces
(dclt-<pid>-pa/pb) and measure what a receiver sees.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.line.control import LineRequestError, LineService
from emulator.line.forwarder import Shared
from emulator.line.model import LineConfig, ProtectionConfig, propagation_delay_s
from emulator.line.pair import HEADER, LinePair, netns_sock, paced_sender, spawn
from emulator.line.protection import EventLog, LineLogic, Refused

NAMES = ["working", "protection", "restoration", "spare"]
W, P, R, S = range(4)


def pcfg(**over: Any) -> ProtectionConfig:
    d: dict[str, Any] = {"mode": "sncp", "working": "working", "protection": "protection", "hold_off_ms": 0,
                         "switch_ms": 30, "revertive": False, "wtr_s": 300, "ason": False, "restoration": [],
                         "restoration_ms": 3000}
    d.update(over)
    return ProtectionConfig.from_dict(d, NAMES, default_working="working")


def logic(**over: Any) -> LineLogic:
    return LineLogic(NAMES, [True] * 4, W, pcfg(**over), now=0.0, events=EventLog(wall_of=lambda m: 1e9 + m))


def kinds(lg: LineLogic, since: int = 0) -> list[tuple[str, Any]]:
    out = []
    for e in lg.events.since(since)["events"]:
        tag = e.get("state") or e.get("cause") if e["kind"] in ("switch", "restoration", "request") else e.get("path")
        out.append((e["kind"], tag))
    return out


# --- the state machine with an injected clock ---------------------------------------------------


def test_cut_of_working_switches_after_switch_time() -> None:
    lg = logic()
    lg.set_path_up(W, False, 10.0)
    assert kinds(lg) == [("path-down", "working"), ("switch", "signal-fail")]
    sw = lg.events.since(0)["events"][1]
    assert (sw["from"], sw["to"], sw["outage_ms"], sw["mono"]) == ("working", "protection", 30.0, 10.0)
    assert sw["time"] == 1e9 + 10.0
    # the data plane: still working (cut) until 10.030, then protection; frames dropped meanwhile
    assert lg.program() == (W, P, pytest.approx(10.03), 10.0, pytest.approx(10.03))
    st = lg.state(10.01)
    assert st["active_path"] == "working" and st["switching_until_mono"] == pytest.approx(10.03)
    assert st["request_state"] == "signal-fail"
    assert lg.next_deadline() == pytest.approx(10.03)
    lg.advance(10.03)
    assert lg.active == P and lg.program() == (P, P, math.inf, math.inf, 0.0)
    st = lg.state(10.04)
    assert st["active_path"] == "protection" and st["switching_until_mono"] is None
    assert st["last_switch"]["cause"] == "signal-fail" and st["request_state"] == "signal-fail"
    lg.set_path_up(W, True, 11.0)  # non-revertive: stays
    lg.advance(1000.0)
    assert lg.active == P and lg.state(1000.0)["request_state"] == "none"


def test_hold_off_delays_the_switch_and_a_quick_repair_cancels_it() -> None:
    lg = logic(hold_off_ms=20)
    lg.set_path_up(W, False, 10.0)
    assert kinds(lg) == [("path-down", "working")]
    assert lg.program() == (W, P, pytest.approx(10.05), pytest.approx(10.02), pytest.approx(10.05))
    assert lg.next_deadline() == pytest.approx(10.02)
    lg.advance(10.025)
    ev = lg.events.since(2)["events"][0]
    assert ev["kind"] == "switch" and ev["mono"] == pytest.approx(10.02) and ev["outage_ms"] == pytest.approx(50)
    assert ev["hold_off_ms"] == 20 and ev["switch_ms"] == 30
    lg.advance(10.05)
    assert lg.active == P
    # a second cut, repaired within the hold-off: no switch at all
    lg2 = logic(hold_off_ms=20)
    lg2.set_path_up(W, False, 10.0)
    lg2.set_path_up(W, True, 10.01)
    lg2.advance(11.0)
    assert lg2.active == W and lg2.program() == (W, W, math.inf, math.inf, 0.0)
    assert kinds(lg2) == [("path-down", "working"), ("path-up", "working")]


def test_revertive_waits_to_restore_then_switches_back() -> None:
    lg = logic(revertive=True, wtr_s=5)
    lg.set_path_up(W, False, 10.0)
    lg.advance(10.03)
    ev = lg.set_path_up(W, True, 20.0)
    assert ev is not None and ev["wtr_until_mono"] == 25.0
    assert lg.state(20.0)["request_state"] == "wtr" and lg.next_deadline() == 25.0
    lg.advance(24.9)
    assert lg.active == P
    lg.advance(25.0)
    sw = lg.events.since(0)["events"][-1]
    assert (sw["kind"], sw["cause"], sw["to"], sw["outage_ms"]) == ("switch", "wtr", "working", 30.0)
    assert lg.program() == (P, W, pytest.approx(25.03), 25.0, pytest.approx(25.03))
    lg.advance(25.03)
    assert lg.active == W and lg.state(26.0)["request_state"] == "none"
    # working cut again during the WTR: WTR stops, traffic stays on protection
    lg.set_path_up(W, False, 30.0)
    lg.advance(30.03)
    lg.set_path_up(W, True, 31.0)
    lg.set_path_up(W, False, 32.0)
    lg.advance(100.0)
    assert lg.active == P and lg.wtr_until is None


def test_force_switch_even_onto_a_cut_path_and_it_overrides_signal_fail() -> None:
    lg = logic()
    ev = lg.request_switch("force", P, 5.0)
    assert (ev["kind"], ev["cause"], ev["from"], ev["to"], ev["outage_ms"]) == ("switch", "force", "working",
                                                                                  "protection", 30.0)
    assert lg.program() == (W, P, pytest.approx(5.03), 5.0, pytest.approx(5.03))
    lg.advance(5.03)
    assert lg.active == P and lg.state(6.0)["request_state"] == "forced"
    lg.set_path_up(P, False, 7.0)  # forced: no automatic switch back to working
    lg.advance(100.0)
    assert lg.active == P and lg.pending is None
    lg.request_switch("force", W, 101.0)
    lg.advance(101.03)
    assert lg.active == W
    lg.request_switch("force", P, 102.0)  # onto the cut protection: allowed, traffic is lost
    lg.advance(102.03)
    assert lg.active == P
    ev = lg.request_switch("release", None, 103.0)  # forced onto a cut path, released: SF acts
    assert lg.current() == W and lg.state(103.0)["request_state"] == "signal-fail"


def test_manual_switch_is_refused_when_it_cannot_work() -> None:
    lg = logic()
    lg.set_path_up(P, False, 1.0)
    with pytest.raises(Refused, match="'protection' is down"):
        lg.request_switch("manual", P, 2.0)
    lg.set_path_up(P, True, 3.0)
    lg.request_switch("lockout", None, 4.0)
    with pytest.raises(Refused, match="lockout is active"):
        lg.request_switch("manual", P, 5.0)
    lg.request_switch("force", P, 6.0)
    with pytest.raises(Refused, match="forced switch is active"):
        lg.request_switch("manual", W, 7.0)
    lg.request_switch("release", None, 8.0)  # non-revertive: stays on protection
    lg.advance(9.0)
    assert lg.active == P
    ev = lg.request_switch("manual", W, 10.0)
    assert ev["kind"] == "switch" and ev["cause"] == "manual"
    lg.advance(10.03)
    assert lg.active == W and lg.state(11.0)["request_state"] == "manual"
    ev = lg.request_switch("manual", W, 12.0)  # already there: a request, no switch
    assert ev["kind"] == "request"
    with pytest.raises(Refused, match="needs 'to'"):
        lg.request_switch("force", None, 13.0)


def test_signal_fail_beats_a_manual_switch() -> None:
    lg = logic()
    lg.request_switch("manual", P, 1.0)
    lg.advance(1.03)
    lg.set_path_up(P, False, 2.0)  # SF on protection: back to working
    lg.advance(2.03)
    assert lg.active == W and lg.request == "none"


def test_lockout_blocks_sncp_and_ason_restores() -> None:
    lg = logic(ason=True, restoration=["restoration", "spare"], restoration_ms=300)
    lg.request_switch("force", P, 1.0)
    lg.advance(1.03)
    ev = lg.request_switch("lockout", None, 2.0)  # back to working
    assert (ev["kind"], ev["to"], ev["cause"]) == ("switch", "working", "lockout")
    lg.advance(2.03)
    assert lg.active == W and lg.state(3.0)["request_state"] == "lockout"
    n = lg.events.next
    lg.set_path_up(R, False, 4.0)  # the first restoration path is cut too: ASON takes the next
    lg.set_path_up(W, False, 5.0)
    assert lg.state(5.1)["restoration_state"] == "restoring"
    assert lg.program() == (W, S, pytest.approx(5.3), math.inf, 0.0)
    lg.advance(5.3)
    assert lg.active == S and lg.state(5.4)["restoration_state"] == "restored"
    assert kinds(lg, n) == [("path-down", "restoration"), ("path-down", "working"), ("restoration", "restoring"),
                            ("restoration", "restored")]
    restored = lg.events.since(0)["events"][-1]
    assert restored["outage_ms"] == pytest.approx(300) and restored["to"] == "spare"
    assert lg.state(5.4)["last_switch"]["seq"] == restored["seq"]
    lg.set_path_up(W, True, 6.0)  # non-revertive: ASON traffic stays where it is
    lg.advance(1000.0)
    assert lg.active == S


def test_ason_after_sncp_when_protection_is_cut_too_and_revertive_return() -> None:
    lg = logic(ason=True, restoration=["restoration"], restoration_ms=300, revertive=True, wtr_s=10)
    lg.set_path_up(W, False, 1.0)
    lg.advance(1.03)
    assert lg.active == P
    lg.set_path_up(P, False, 2.0)
    assert lg.state(2.1)["restoration_state"] == "restoring"
    lg.advance(2.3)
    assert lg.active == R and lg.state(2.4)["restoration_state"] == "restored"
    lg.set_path_up(W, True, 3.0)  # revertive: WTR, then back to working with a switch
    assert lg.wtr_until == 13.0
    lg.advance(13.0)
    lg.advance(13.03)
    assert lg.active == W and lg.state(14.0)["restoration_state"] == "idle"


def test_repair_during_ason_restoration_cancels_it() -> None:
    lg = logic(mode="none", protection=None, ason=True, restoration=["restoration"], restoration_ms=3000)
    lg.set_path_up(W, False, 1.0)
    lg.set_path_up(W, True, 2.0)
    lg.advance(10.0)
    assert lg.active == W and lg.state(10.0)["restoration_state"] == "idle"
    assert [k for k, _ in kinds(lg)] == ["path-down", "restoration", "path-up", "restoration"]
    assert lg.events.since(0)["events"][-1]["state"] == "cancelled"


def test_cut_of_a_path_not_carrying_traffic_is_only_an_event() -> None:
    lg = logic()
    prog = lg.program()
    lg.set_path_up(P, False, 1.0)
    lg.set_path_up(S, False, 1.0)
    assert lg.program() == prog and lg.active == W
    assert kinds(lg) == [("path-down", "protection"), ("path-down", "spare")]
    assert lg.set_path_up(S, False, 2.0) is None  # no change, no event


def test_release_of_lockout_when_revertive_returns_to_working_at_once() -> None:
    lg = logic(ason=True, restoration=["restoration"], restoration_ms=300, revertive=True, wtr_s=300)
    lg.request_switch("lockout", None, 1.0)
    lg.set_path_up(W, False, 2.0)
    lg.advance(2.3)
    assert lg.active == R
    lg.set_path_up(W, True, 3.0)  # lockout pending: no WTR
    assert lg.wtr_until is None
    ev = lg.request_switch("release", None, 4.0)
    assert (ev["kind"], ev["cause"], ev["to"]) == ("switch", "release", "working")
    lg.advance(4.03)
    assert lg.active == W


def test_a_request_during_a_switch_completes_the_old_one_first() -> None:
    lg = logic()
    lg.request_switch("force", P, 1.0)
    lg.request_switch("force", W, 1.01)  # mid-switch: protection counts as reached, switch again
    assert lg.active == P and lg.program() == (P, W, pytest.approx(1.04), 1.01, pytest.approx(1.04))
    lg.advance(1.04)
    assert lg.active == W


def test_switch_ms_zero_switches_at_once() -> None:
    lg = logic(switch_ms=0)
    lg.set_path_up(W, False, 1.0)
    assert lg.active == P and lg.program() == (P, P, math.inf, math.inf, 0.0)


def test_event_ring_keeps_the_last_thousand() -> None:
    log = EventLog(wall_of=lambda m: m)
    for i in range(1005):
        log.append("rate", float(i), rate_bps=i)
    r = log.since(0)
    assert len(r["events"]) == 1000 and r["events"][0]["seq"] == 6 and r["next"] == 1006 and r["missed"] == 5
    assert [e["seq"] for e in log.since(1004)["events"]] == [1004, 1005]
    assert log.since(1006)["events"] == []


@pytest.mark.parametrize("change,field", [
    ({"mode": "1+1"}, "mode"),
    ({"working": "nope"}, "working"),
    ({"protection": "working"}, "protection"),
    ({"protection": None}, "protection"),
    ({"hold_off_ms": -1}, "hold_off_ms"),
    ({"switch_ms": "30"}, "switch_ms"),
    ({"revertive": 1}, "revertive"),
    ({"wtr_s": -0.5}, "wtr_s"),
    ({"ason": True}, "restoration"),
    ({"restoration": ["nope"]}, "restoration[0]"),
    ({"restoration": ["protection"]}, "restoration[0]"),
    ({"restoration": "restoration"}, "restoration"),
    ({"restoration_ms": math.inf}, "restoration_ms"),
    ({"holdoff_ms": 3}, "holdoff_ms"),
])
def test_protection_config_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as exc:
        pcfg(**change)
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_line_config_takes_a_protection_object() -> None:
    base = {"control_socket": "/run/x.sock", "ends": [{"netns": "a", "ifname": "w"}, {"netns": "b", "ifname": "w"}],
            "paths": [{"name": "w1", "length_km": 1}, {"name": "p1", "length_km": 2}]}
    cfg = LineConfig.from_dict({**base, "protection": {"mode": "sncp", "protection": "p1", "hold_off_ms": 10}})
    assert cfg.protection is not None and cfg.protection.working == "w1" and cfg.protection.hold_off_ms == 10
    assert cfg.protection.switch_ms == 30 and cfg.protection.wtr_s == 300
    with pytest.raises(ValueError, match=r"^protection\.protection: must name one of the paths"):
        LineConfig.from_dict({**base, "protection": {"mode": "sncp", "protection": "x"}})
    assert LineConfig.from_dict(base).protection is None


# --- the control service and the data plane program ---------------------------------------------


@pytest.fixture
def service() -> LineService:
    cfg = LineConfig.from_dict({
        "control_socket": "/run/x.sock", "ends": [{"netns": "a", "ifname": "w"}, {"netns": "b", "ifname": "w"}],
        "paths": [{"name": n, "length_km": 100 * (i + 1)} for i, n in enumerate(NAMES)]})
    return LineService(cfg, Shared(len(cfg.paths)))


def test_service_protection_ops(service: LineService) -> None:
    h = service.handle
    st = h({"op": "get"})["protection"]
    assert (st["mode"], st["working"], st["protection"], st["request_state"]) == ("none", "working", None, "none")
    assert set(st) >= {"mode", "working", "protection", "active_path", "request_state", "hold_off_ms", "switch_ms",
                       "revertive", "wtr_s", "ason", "restoration", "restoration_ms", "restoration_state",
                       "switching_until_mono", "last_switch"}
    r = h({"op": "configure_protection", "mode": "sncp", "working": "working", "protection": "protection",
           "switch_ms": 50, "ason": True, "restoration": ["restoration"]})
    assert r["ok"] and r["protection"]["switch_ms"] == 50 and r["protection"]["restoration_ms"] == 3000
    r = h({"op": "protection_switch", "request": "force", "to": "protection"})
    assert r["ok"] and r["event"]["cause"] == "force" and r["event"]["outage_ms"] == 50
    active, nxt, at, wf, wu = service.shared.program()
    assert (active, nxt) == (0, 1) and at - wf == pytest.approx(0.05) and wu == at
    time.sleep(0.06)
    assert h({"op": "get"})["active_path"] == "protection" and service.shared.program()[:3] == (1, 1, math.inf)
    h({"op": "set_rate", "rate_bps": 5})
    h({"op": "set_ber", "path": "working", "ber": 1e-9})
    h({"op": "outage", "ms": 5})
    h({"op": "set_active_path", "path": "working"})
    r = h({"op": "events"})
    assert [e["kind"] for e in r["events"]] == ["request", "switch", "rate", "ber", "outage", "switch"]
    assert [e["seq"] for e in r["events"]] == list(range(1, 7)) and r["next"] == 7
    assert r["events"][-1]["cause"] == "operator" and h({"op": "events", "since": 6})["events"][0]["seq"] == 6
    json.dumps(h({"op": "get"}))  # no NaN/inf leaks into replies


@pytest.mark.parametrize("req,needle", [
    ({"op": "configure_protection"}, "missing field 'mode'"),
    ({"op": "configure_protection", "mode": "sncp"}, "configure_protection: protection: mode sncp needs"),
    ({"op": "configure_protection", "mode": "none", "hold_off_ms": -2}, "configure_protection: hold_off_ms: must be"),
    ({"op": "configure_protection", "mode": "none", "bogus": 1}, "unknown field 'bogus'"),
    ({"op": "protection_switch", "request": "jump"}, "request must be one of force, manual, lockout, release"),
    ({"op": "protection_switch", "request": "force"}, "force needs field 'to'"),
    ({"op": "protection_switch", "request": "force", "to": "nope"}, "unknown path 'nope'"),
    ({"op": "protection_switch", "request": "manual", "to": "working"}, "protection_switch: manual switch"),
    ({"op": "events", "since": -1}, "since must be"),
    ({"op": "events", "since": "0"}, "since must be"),
])
def test_service_protection_errors(service: LineService, req: dict[str, Any], needle: str) -> None:
    if req.get("request") == "manual":
        service.handle({"op": "protection_switch", "request": "lockout"})
    r = service.handle(req)
    assert r["ok"] is False and needle in r["error"], r


def test_service_timer_thread_commits_switches(service: LineService) -> None:
    service.start()
    try:
        service.handle({"op": "configure_protection", "mode": "sncp", "protection": "protection", "switch_ms": 20})
        service.handle({"op": "set_path_up", "path": "working", "up": False})
        time.sleep(0.1)
        with service._cond:  # no op in between: the timer thread alone committed the switch
            assert service.logic.active == 1 and service.logic.pending is None
    finally:
        service.stop()


# --- integration through the real line (namespaces, TAPs) ------------------------------------------

try:
    from tests import test_line_ns as ns_helpers
except ImportError:  # pragma: no cover
    ns_helpers = None  # type: ignore[assignment]

LAB_SKIP = ns_helpers._skip_reason() if ns_helpers is not None else "tests.test_line_ns not importable"
ECHO_PORT, SINK_PORT = 7101, 7102
PATHS = [{"name": "working", "length_km": 200}, {"name": "protection", "length_km": 1000},
         {"name": "restoration", "length_km": 611}]
RTT = {p["name"]: 2 * propagation_delay_s(p["length_km"]) for p in PATHS}
PROT = {"mode": "sncp", "working": "working", "protection": "protection", "hold_off_ms": 0, "switch_ms": 30,
        "revertive": False, "ason": True, "restoration": ["restoration"], "restoration_ms": 300}
PAIR = LinePair(f"dclt-{os.getpid()}", suffixes=("pa", "pb"), addrs=("198.18.251.1", "198.18.251.2"),
                ifname="wanp0", run_dir=f"/tmp/dclt-{os.getpid()}-prot", name="test-wanp0", paths=PATHS,
                protection=PROT)
NS_A, NS_B, IP_A, IP_B = PAIR.ns_a, PAIR.ns_b, PAIR.ip_a, PAIR.ip_b


@pytest.fixture(scope="module")
def plab() -> Iterator[dict[str, Any]]:
    if LAB_SKIP is not None:
        pytest.skip(LAB_SKIP)
    yield from ns_helpers.echo_lab(PAIR, ECHO_PORT)


@pytest.fixture
def pline(plab: dict[str, Any]) -> Iterator[dict[str, Any]]:
    ctl = plab["ctl"]
    ctl.configure_protection(**PROT)
    yield plab
    assert plab["proc"].poll() is None, "the line process died during the test"
    ctl.protection_switch("release")
    for p in PATHS:
        ctl.set_path_up(p["name"], True)
    ctl.set_active_path("working")
    ctl.configure_protection(**PROT)


def stream(line: dict[str, Any], action: Any, pps: float = 2000.0, secs: float = 1.2,
           at_seq: int = 600) -> tuple[list[tuple[int, float]], int]:
    """Run a paced A->B stream; call ``action()`` once seq ``at_seq`` arrived. Returns
    [(seq, arrival)] and the number sent."""
    sink = netns_sock(NS_B)
    sink.bind((IP_B, SINK_PORT))
    sink.settimeout(1.0)
    sent = int(pps * secs)
    tx, conn = spawn(paced_sender, NS_A, (IP_B, SINK_PORT), sent, pps, 64)
    got: list[tuple[int, float]] = []
    done = False
    try:
        deadline = time.monotonic() + secs + 3
        while time.monotonic() < deadline:
            try:
                data = sink.recv(2048)
            except TimeoutError:
                break
            seq, _ = HEADER.unpack_from(data)
            got.append((seq, time.monotonic()))
            if not done and seq >= at_seq:
                done = True
                action()
        conn.recv()
    finally:
        tx.join(2)
        sink.close()
    return got, sent


def biggest_gap(got: list[tuple[int, float]], pps: float) -> tuple[float, float]:
    """(largest arrival gap, loss-derived interruption) in seconds."""
    i = max(range(1, len(got)), key=lambda k: got[k][1] - got[k - 1][1])
    return got[i][1] - got[i - 1][1], (got[i][0] - got[i - 1][0] - 1) / pps


def assert_on(line: dict[str, Any], path: str) -> None:
    """The frames travel ``path`` (by their fastest round trip, see test_line_ns.assert_carried_by)."""
    ns_helpers.assert_carried_by(line, RTT[path], n=20, what=path)


@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=LAB_SKIP or "")
def test_lab_cut_of_working_switches_to_protection_in_switch_time(pline: dict[str, Any]) -> None:
    ctl = pline["ctl"]
    assert_on(pline, "working")
    n = ctl.events()["next"]
    got, sent = stream(pline, lambda: ctl.set_path_up("working", False))
    gap, by_loss = biggest_gap(got, 2000.0)
    assert by_loss == pytest.approx(0.030, abs=0.006)
    # the first frame after the switch also travels the longer protection fibre
    assert gap == pytest.approx(0.030 + (RTT["protection"] - RTT["working"]) / 2, abs=0.006)
    assert sent - len({s for s, _ in got}) == pytest.approx(by_loss * 2000, abs=12)
    st = ctl.get()
    assert st["active_path"] == "protection" and st["protection"]["request_state"] == "signal-fail"
    assert_on(pline, "protection")
    evs = ctl.events(n)["events"]
    assert [(e["kind"], e["cause"]) for e in evs] == [("path-down", "operator"), ("switch", "signal-fail")]
    assert evs[1]["outage_ms"] == 30.0 and evs[1]["to"] == "protection"


@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=LAB_SKIP or "")
def test_lab_force_switch(pline: dict[str, Any]) -> None:
    ctl = pline["ctl"]
    replies = []
    got, _ = stream(pline, lambda: replies.append(ctl.protection_switch("force", "protection")))
    gap, by_loss = biggest_gap(got, 2000.0)
    assert by_loss == pytest.approx(0.030, abs=0.006)
    assert gap == pytest.approx(0.030 + (RTT["protection"] - RTT["working"]) / 2, abs=0.006)
    assert replies[0]["event"]["cause"] == "force" and replies[0]["event"]["outage_ms"] == 30.0
    st = ctl.get()["protection"]
    assert st["request_state"] == "forced" and st["active_path"] == "protection"
    assert st["last_switch"]["seq"] == replies[0]["event"]["seq"]
    assert_on(pline, "protection")
    with pytest.raises(LineRequestError, match="forced switch is active"):
        ctl.protection_switch("manual", "working")


@pytest.mark.lab
@pytest.mark.skipif(LAB_SKIP is not None, reason=LAB_SKIP or "")
def test_lab_lockout_blocks_sncp_then_ason_restores(pline: dict[str, Any]) -> None:
    ctl = pline["ctl"]
    n = ctl.events()["next"]
    assert ctl.protection_switch("lockout")["event"]["kind"] == "request"
    got, _ = stream(pline, lambda: ctl.set_path_up("working", False), secs=1.5)
    gap, by_loss = biggest_gap(got, 2000.0)
    assert by_loss == pytest.approx(0.300, abs=0.015)
    assert gap == pytest.approx(0.300 + (RTT["restoration"] - RTT["working"]) / 2, abs=0.015)
    st = ctl.get()
    assert st["active_path"] == "restoration" and st["protection"]["restoration_state"] == "restored"
    assert st["protection"]["request_state"] == "lockout"
    assert_on(pline, "restoration")
    evs = ctl.events(n)["events"]
    assert [(e["kind"], e.get("state") or e["cause"]) for e in evs] == [
        ("request", "lockout"), ("path-down", "operator"), ("restoration", "restoring"), ("restoration", "restored")]
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)
    assert all(a["mono"] <= b["mono"] for a, b in itertools.pairwise(evs))
    assert evs[-1]["to"] == "restoration" and evs[-1]["outage_ms"] == pytest.approx(300)

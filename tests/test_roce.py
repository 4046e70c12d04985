"""The RoCEv2 RC transport model's arithmetic (emulator/line/roce.py) against the formulas and the
numbers at the field trial's parameters: 800G, 329 km (RTT 3.224 ms), MTU 4096, NCCL defaults."""

from __future__ import annotations

import math
import random

import pytest

from emulator.line import roce
from emulator.line.model import LineConfig, propagation_delay_s
from emulator.line.transport import RcDirection

RTT_WORKING = 2 * propagation_delay_s(329)      # 3.224 ms
LINE = 800e9


def test_packet_sizes_at_mtu_4096() -> None:
    assert roce.packet_bits() == 4158 * 8 == 33264      # what the FCS covers
    assert roce.wire_bits() == 4178 * 8                 # + preamble and gap
    assert roce.packets_per_second(LINE) == pytest.approx(23.93e6, rel=1e-3)


def test_window_of_one_qp_filling_800g_over_329_km() -> None:
    assert RTT_WORKING == pytest.approx(3.224e-3, rel=1e-4)
    assert roce.window_packets(LINE, RTT_WORKING) == pytest.approx(77.2e3, rel=1e-3)
    assert roce.window_packets(100e9, RTT_WORKING) == pytest.approx(9.65e3, rel=1e-3)


@pytest.mark.parametrize("ber,q,per_s", [(1e-10, 3.33e-6, 80), (1e-9, 3.33e-5, 796), (1e-8, 3.33e-4, 7960)])
def test_loss_probability_and_loss_events_per_second(ber: float, q: float, per_s: float) -> None:
    assert roce.packet_loss_probability(ber) == pytest.approx(q, rel=3e-3)
    assert roce.packet_loss_probability(ber) == pytest.approx(1 - (1 - ber) ** 33264, rel=1e-6)  # direct form rounds
    assert roce.loss_events_per_busy_second(ber, LINE) == pytest.approx(per_s, rel=5e-3)


@pytest.mark.parametrize("ber,one_qp,qp_100g", [(1e-10, 0.80, 0.97), (1e-9, 0.28, 0.76), (1e-8, 0.037, 0.24)])
def test_go_back_n_efficiency_at_the_trials_parameters(ber: float, one_qp: float, qp_100g: float) -> None:
    q = roce.packet_loss_probability(ber)
    assert roce.gbn_efficiency(q, roce.window_packets(LINE, RTT_WORKING)) == pytest.approx(one_qp, abs=0.006)
    assert roce.gbn_efficiency(q, roce.window_packets(100e9, RTT_WORKING)) == pytest.approx(qp_100g, abs=0.006)
    w = roce.window_packets(LINE, RTT_WORKING)
    classic = (1 - q) / (1 + (w - 1) * q)                 # the textbook form: the same to first order
    assert roce.gbn_efficiency(q, w) == pytest.approx(classic, rel=2e-3 if ber < 1e-8 else 0.01)


def test_the_issue_example_one_qp_at_1e9_is_about_0_28() -> None:
    cfg = roce.TransportConfig(scale=0.00125)
    assert cfg.efficiency(1e-9, 1e9, RTT_WORKING) == pytest.approx(0.28, abs=0.005)   # lab rate 1G = 800G real
    assert cfg.efficiency(1e-9, 0.5e9, RTT_WORKING) == pytest.approx(1 / (1 + 0.5 * 2.57), abs=0.005)  # at 400G


def test_ack_timeout_and_retry_budget() -> None:
    assert roce.ack_timeout_s(18) == pytest.approx(1.0737, rel=1e-4)
    assert roce.ack_timeout_s(20) == pytest.approx(4.2950, rel=1e-4)
    assert roce.ack_timeout_s(14) == pytest.approx(0.0671, rel=1e-3)
    assert roce.ack_timeout_s(0) == math.inf                  # IB: 0 = the timer never fires
    assert roce.retry_budget_s(roce.ack_timeout_s(18)) == pytest.approx(7.52, abs=0.01)
    assert roce.retry_budget_s(roce.ack_timeout_s(20)) == pytest.approx(30.07, abs=0.01)
    assert (roce.NCCL_IB_TIMEOUT, roce.NCCL_IB_RETRY_CNT) == (20, 7)
    for bad in (-1, 32, 18.0, True):
        with pytest.raises(ValueError, match="timeout"):
            roce.ack_timeout_s(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("outage_s,t,adaptive,stall", [
    (0.030, 18, False, 1.074), (0.050, 18, False, 1.074), (3.0, 18, False, 3.221),
    (0.030, 20, False, 4.295), (0.050, 20, False, 4.295), (3.0, 20, False, 4.295),
    (0.030, 20, True, 0.030), (0.050, 20, True, 0.062), (3.0, 20, True, 4.094), (3.0, 18, True, 3.120),
])
def test_stall_after_an_outage_is_the_next_timer_fire(outage_s: float, t: int, adaptive: bool, stall: float) -> None:
    got = roce.timer_release_s(outage_s, roce.ack_timeout_s(t), adaptive)
    assert got == pytest.approx(stall, abs=0.002)
    assert got >= outage_s


def test_retry_exhaustion_is_decided_by_the_budget() -> None:
    t18, t14 = roce.ack_timeout_s(18), roce.ack_timeout_s(14)
    assert roce.retry_budget_s(t18) > 3.0        # the 3 s ASON reroute survives at 18 and 20 ...
    assert roce.retry_budget_s(t14) < 3.0        # ... and exhausts the retries at 14 (NCCL < 2.14)


def test_iteration_efficiency_and_the_trials_implied_exposure() -> None:
    assert roce.iteration_efficiency(0.0, 0.28) == 1.0
    assert roce.iteration_efficiency(1.0, 0.28) == pytest.approx(0.28)
    eff = 10.7843 / 15.42                          # the trial's BER 1e-10..1e-9 iterations
    x = (1 / eff - 1) / (1 / 0.28 - 1)             # X (1/eta - 1) = 0.43 at one QP, BER 1e-9
    assert (1 / eff - 1) == pytest.approx(0.43, abs=0.005)
    assert roce.iteration_efficiency(x, 0.28) == pytest.approx(eff, rel=1e-9)


def test_sustained_loss_rule_is_calibrated_between_1e9_and_1e8() -> None:
    cfg = roce.TransportConfig(scale=0.00125)
    assert not roce.sustained_loss_stalls(cfg.efficiency(1e-9, 1e9, RTT_WORKING))   # the trial trained on
    assert roce.sustained_loss_stalls(cfg.efficiency(1e-8, 1e9, RTT_WORKING))       # the trial was interrupted
    assert not roce.sustained_loss_stalls(cfg.efficiency(5e-10, 1e9, RTT_WORKING))
    assert roce.ABORT_BELOW_EFFICIENCY == pytest.approx(math.sqrt(0.28 * 0.037), abs=0.01)


def test_tail_loss_is_one_packet_in_an_nccl_step() -> None:
    assert roce.NCCL_STEP_BYTES == 512 * 1024               # NCCL_BUFFSIZE 4 MiB / NCCL_STEPS 8
    assert roce.TAIL_LOSS == pytest.approx(1 / 128)


def test_the_inventory_defaults_are_the_models() -> None:
    from testbed.inventory.model import Transport
    inv = Transport().model_dump()
    assert {k: inv[k] for k in inv} == {k: v for k, v in roce.TransportConfig().to_dict().items() if k in inv}


def test_transport_config_defaults_and_errors() -> None:
    cfg = roce.TransportConfig.from_dict({})
    assert (cfg.model, cfg.timeout, cfg.retry_cnt, cfg.mtu, cfg.adaptive_retransmission) == ("roce-rc", 20, 7, 4096, False)
    assert cfg.outage_hold == "active" and roce.TransportConfig.from_dict({"outage_hold": "in-flight"}).outage_hold == "in-flight"
    assert cfg.enabled and not roce.TransportConfig.from_dict({"model": "none"}).enabled
    assert roce.TransportConfig.from_dict(cfg.to_dict()) == cfg       # round trip (derived fields ignored)
    for change, field in [({"model": "iwarp"}, "model"), ({"timeout": 32}, "timeout"), ({"timeout": -1}, "timeout"),
                          ({"retry_cnt": 8}, "retry_cnt"), ({"mtu": 1500}, "mtu"), ({"qp_gbps": -5}, "qp_gbps"),
                          ({"tail_loss": 1.5}, "tail_loss"), ({"scale": 0}, "scale"), ({"timout": 18}, "timout"),
                          ({"adaptive_retransmission": "yes"}, "adaptive_retransmission"),
                          ({"outage_hold": "always"}, "outage_hold")]:
        with pytest.raises(ValueError) as exc:
            roce.TransportConfig.from_dict(change)
        assert str(exc.value).startswith(f"transport.{field}:"), str(exc.value)


def test_line_config_takes_a_transport_block() -> None:
    base = {"control_socket": "/run/dcilab/x/line.sock",
            "ends": [{"netns": "a", "ifname": "wan0"}, {"netns": "b", "ifname": "wan0"}],
            "paths": [{"name": "working", "length_km": 329}]}
    assert LineConfig.from_dict(base).transport is None
    cfg = LineConfig.from_dict({**base, "transport": {"model": "roce-rc", "timeout": 18, "scale": 0.00125}})
    assert cfg.transport is not None and cfg.transport.t_ack_s == pytest.approx(1.0737, rel=1e-4)
    with pytest.raises(ValueError, match=r"^transport\.timeout:"):
        LineConfig.from_dict({**base, "transport": {"timeout": 40}})


def test_loss_events_come_at_the_real_rate_the_traffic_occupies() -> None:
    """Per second of (scaled) wire time, as many events as the real line sees per second busy."""
    cfg = roce.TransportConfig(scale=0.00125)
    rng = random.Random(7)
    rc = RcDirection(cfg, rng.random, rng.expovariate)
    frame_bits, lab_rate = 9018 * 8, 1e9
    frames = int(20 * lab_rate / frame_bits)             # 20 s of a busy 1 Gbit/s lab line
    events = sum(rc.loss_event(frame_bits, 1e-9) for _ in range(frames))
    expected = 20 * roce.loss_events_per_busy_second(1e-9, LINE)   # ~15,900
    assert events == pytest.approx(expected, rel=0.03)


def test_nak_waits_for_the_next_frame_and_the_timer_caps_it() -> None:
    cfg = roce.TransportConfig(timeout=14, scale=0.00125)    # T_ack 67 ms
    rc = RcDirection(cfg, random.random, random.expovariate)
    d = 0.0016
    hold = rc.nak_hold(1e9, d)
    assert hold == pytest.approx(2 * d)                       # one QP filling the line: one RTT
    assert RcDirection(roce.TransportConfig(qp_gbps=100, scale=0.00125), random.random,
                       random.expovariate).nak_hold(1e9, d) == pytest.approx(2 * d / 8)
    assert rc.nak_due(10.0, 10.0 - d + 1e-6, d, hold) == pytest.approx(10.0 + hold, abs=1e-5)   # next frame right behind
    assert rc.nak_due(10.0, 10.02, d, hold) == pytest.approx(10.02 + d + hold)                 # it came 20 ms later
    assert rc.nak_due(10.0, 11.0, d, hold) == pytest.approx(10.0 + cfg.t_ack_s)                # none in time: the timer

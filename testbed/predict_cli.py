"""``dcilab predict [RUN_DIR]``: the line's RoCEv2 RC transport model without a lab.

From a finished run (its baselines: iteration time and WAN bytes per iteration, per placement) or
from ``--iteration-s`` and ``--wan-gb`` for a workload measured elsewhere, and the inventory's real
line (rate, path length, transport settings), print the predicted iteration time and efficiency
at each BER, the BER at which an alarm should fire and at which training stops, the effect of
outages, and, for a run of the emulated lab, what its cases measured beside the prediction.
Connects to nothing: works on a real-gear inventory with no lab up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    from testbed.paths import default_inventory

    p = sub.add_parser("predict", help="predict iteration time and efficiency at a BER, outage, rate or timeout "
                       "from a run's baseline and the inventory's line, without a lab",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("run_dir", type=Path, nargs="?", metavar="RUN_DIR",
                   help="a finished run folder (reports/<run-id>): its baselines are the workloads")
    p.add_argument("--inventory", "-i", type=Path, default=None,
                   help=f"the line and transport (default: the run's inventory, else {default_inventory()})")
    p.add_argument("--placement", default="pp-remote", help="name of a workload given by --iteration-s/--wan-gb")
    p.add_argument("--iteration-s", type=float, help="unimpaired iteration time, seconds (with --wan-gb)")
    p.add_argument("--wan-gb", type=float, help="real gigabytes crossing the WAN per iteration, both directions")
    p.add_argument("--ber", type=float, action="append", help="BER to predict at (repeatable; default 1e-12..1e-7)")
    p.add_argument("--outage-ms", type=float, action="append", help="outage to predict (repeatable)")
    p.add_argument("--rate-gbps", type=float, help="line rate (default: the service's line_rate)")
    p.add_argument("--path", help="fiber path in use (default: the service's working path)")
    p.add_argument("--timeout", type=int, help="NCCL_IB_TIMEOUT 0..31 (default: the inventory's, else 20)")
    p.add_argument("--retry-cnt", type=int, help="NCCL_IB_RETRY_CNT 0..7")
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=None,
                   help="adaptive retransmission on/off")
    p.add_argument("--qp-gbps", type=float, help="rate one QP sends at (default: the line rate)")
    p.add_argument("--alarm-efficiency", type=float, default=0.95,
                   help="efficiency below which a BER alarm should fire (default 0.95)")
    p.add_argument("--plot", type=Path, help="write efficiency vs BER per placement to this PNG or SVG")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=_predict)


class PredictError(Exception):
    """Bad input: the message names what and how to fix it."""


def _summary(run_dir: Path) -> dict[str, Any]:
    f = run_dir / "summary.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise PredictError(f"{f}: no such file: RUN_DIR must be a run folder (reports/<run-id>)") from None
    except (OSError, ValueError) as exc:
        raise PredictError(f"{f}: cannot read: {exc}") from None


def _line(args: argparse.Namespace, summary: dict[str, Any] | None) -> tuple[Any, Any]:
    from emulator.line import roce
    from testbed.paths import default_inventory
    from testbed.inventory import load_inventory
    from testbed.predict import Line

    src = args.inventory
    if src is None and summary is not None:
        run_inv = Path(str((summary.get("testbed") or {}).get("source") or ""))
        src = run_inv if run_inv.is_file() else None
    inv = load_inventory(src or default_inventory())
    if not inv.services:
        raise PredictError(f"{inv.source}: services: the inventory has no service, so no line to predict for")
    svc = inv.services[0]
    path_name = args.path or svc.working_path
    try:
        path = inv.fiber_path(path_name)
    except KeyError:
        raise PredictError(f"--path {path_name}: no such fiber path in {inv.source} "
                           f"({', '.join(p.name for p in inv.fiber_paths)})") from None
    base = roce.TransportConfig()
    if inv.emulation is not None:
        base = roce.TransportConfig.from_dict(inv.emulation.transport.model_dump())
    over = {k: v for k, v in {"timeout": args.timeout, "retry_cnt": args.retry_cnt,
                              "adaptive_retransmission": args.adaptive, "qp_gbps": args.qp_gbps}.items()
            if v is not None}
    try:
        tc = roce.TransportConfig.from_dict({**{k: v for k, v in base.to_dict().items() if k in roce.TransportConfig.FIELDS},
                                             **over, "model": "roce-rc"}, "--")
    except ValueError as exc:
        raise PredictError(str(exc).replace("--retry_cnt", "--retry-cnt").replace("--qp_gbps", "--qp-gbps")
                           .replace("--adaptive_retransmission", "--adaptive")) from None
    rate = args.rate_gbps if args.rate_gbps is not None else svc.line_gbps
    if rate <= 0:
        raise PredictError(f"--rate-gbps: must be > 0, got {rate:g}")
    return inv, Line(float(rate), path.length_km, tc)


def _workloads(args: argparse.Namespace, summary: dict[str, Any] | None) -> list[Any]:
    from testbed.predict import Workload, per_placement, workloads_from_summary

    if (args.iteration_s is None) != (args.wan_gb is None):
        raise PredictError("--iteration-s and --wan-gb go together (an iteration's time and the real GB crossing "
                           "the WAN in it)")
    if args.iteration_s is not None:
        if args.iteration_s <= 0 or args.wan_gb < 0:
            raise PredictError("--iteration-s must be > 0 and --wan-gb >= 0")
        return [Workload(args.placement, args.iteration_s, args.wan_gb * 1e9, "given")]
    if summary is None:
        raise PredictError("give a RUN_DIR (a finished run), or --iteration-s S --wan-gb GB for a workload")
    loads = per_placement(workloads_from_summary(summary))
    if not loads:
        raise PredictError(f"{args.run_dir}/summary.json: no baseline with an iteration time and WAN bytes per "
                           "iteration (runs before dcilab recorded them, or a baseline that failed): give "
                           "--iteration-s S --wan-gb GB instead")
    return loads


def _cell(p: dict[str, Any]) -> str:
    """One prediction in a table: efficiency and iteration time, or interrupted."""
    if p["outcome"] == "interrupted":
        return f"{'interrupted':>24}"
    return f"{p['efficiency']:>10.3f} ({p['iteration_s']:7.2f} s)  "


def _fig(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def _predict(args: argparse.Namespace) -> int:
    from testbed import predict as pr

    try:
        summary = _summary(args.run_dir) if args.run_dir is not None else None
        inv, line = _line(args, summary)
        loads = _workloads(args, summary)
        for b in args.ber or []:
            if not 0 <= b < 1:
                raise PredictError(f"--ber: must be in [0, 1), got {b:g}")
        for o in args.outage_ms or []:
            if o < 0:
                raise PredictError(f"--outage-ms: must be >= 0, got {o:g}")
    except PredictError as exc:
        print(f"dcilab predict: {exc}", file=sys.stderr)
        return 4
    bers = tuple(args.ber) if args.ber else pr.BER_GRID
    outages = tuple(args.outage_ms) if args.outage_ms else pr.OUTAGES_MS
    t = line.transport
    result: dict[str, Any] = {
        "line": {"rate_gbps": line.rate_gbps, "path_km": line.path_km, "rtt_ms": line.rtt_s * 1e3,
                 "transport": t.to_dict(), "inventory": str(inv.source)},
        "workloads": [dataclasses.asdict(w) for w in loads],
        "ber": {w.placement: [{"ber": b, **pr.at_ber(w, line, b).to_dict()} for b in bers] for w in loads},
        "limits": {w.placement: pr.ber_limits(w, line, args.alarm_efficiency) for w in loads},
        "outages": {w.placement: [{"outage_ms": o, **pr.at_outage(w, line, o / 1000).to_dict()} for o in outages]
                    for w in loads},
        "vs_measured": pr.predicted_vs_measured(summary, line) if summary else [],
    }
    if args.plot:
        _plot(args.plot, loads, line)
        result["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print(result, loads, line, args.alarm_efficiency)
    return 0


def _print(r: dict[str, Any], loads: list[Any], line: Any, alarm: float) -> None:
    t = line.transport
    print(f"line: {line.rate_gbps:g}G over {line.path_km:g} km (RTT {line.rtt_s * 1e3:.3f} ms), {r['line']['inventory']}")
    print(f"transport: RoCEv2 RC model, NCCL_IB_TIMEOUT {t.timeout} (ACK timeout {t.t_ack_s:.3g} s), retry_cnt "
          f"{t.retry_cnt} (budget {t.budget_s:.3g} s), adaptive retransmission {'on' if t.adaptive_retransmission else 'off'}, "
          f"MTU {t.mtu}, tail_loss {t.tail_loss:.3g}, sustained-loss rule below efficiency {t.abort_below_efficiency:g}")
    for w in loads:
        print(f"workload {w.placement}: {w.iteration_s:.3g} s per iteration, {w.wan_bytes / 1e9:.3g} GB crossing the WAN "
              f"per iteration ({w.source})")
    print("\nBER        " + "".join(f"{w.placement:>24}" for w in loads))
    for i, b in enumerate(r["ber"][loads[0].placement]):
        print(f"{b['ber']:<11.1e}" + "".join(_cell(r["ber"][w.placement][i]) for w in loads))
    for w in loads:
        lim = r["limits"][w.placement]
        print(f"{w.placement}: efficiency below {alarm:g} from BER {_sci(lim['alarm'])}; training stops from BER "
              f"{_sci(lim['stop'])}")
    print("\noutage       " + "".join(f"{w.placement:>24}" for w in loads))
    for i, o in enumerate(r["outages"][loads[0].placement]):
        print(f"{o['outage_ms']:>8g} ms  " + "".join(_cell(r["outages"][w.placement][i]) for w in loads))
    if r["vs_measured"]:
        print("\npredicted vs measured (this run's cases)")
        for v in r["vs_measured"]:
            meas = v["measured"] if v["measured_outcome"] == "completed" else v["measured_outcome"]
            pred = v["predicted"] if v["predicted_outcome"] == "completed" else v["predicted_outcome"]
            print(f"  {v['case']:48} {v['metric']:17} measured {_fig(meas):>12}  predicted {_fig(pred):>12}")
    if "plot" in r:
        print(f"\nplot: {r['plot']}")


def _plot(path: Path, loads: list[Any], line: Any) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from testbed import predict as pr

    bers = [10 ** (e / 10) for e in range(-120, -69)]
    fig, ax = plt.subplots(figsize=(7, 4))
    for w in loads:
        pts = [(b, p.efficiency) for b in bers if (p := pr.at_ber(w, line, b)).efficiency is not None]
        ax.plot([b for b, _ in pts], [e for _, e in pts], label=w.placement)
        stop = pr.ber_limits(w, line)["stop"]
        if stop:
            ax.axvline(stop, linestyle=":", color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("post-FEC BER")
    ax.set_ylabel("predicted efficiency")
    ax.set_title(f"{line.rate_gbps:g}G, {line.path_km:g} km, NCCL_IB_TIMEOUT {line.transport.timeout} "
                 "(dotted: training stops)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)

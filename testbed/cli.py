"""The `dcilab` command line: check inventories and run the emulated lab.

Errors a user can fix (a bad inventory, a missing package, not being root) are printed as one clear
message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from testbed.inventory import InventoryError, load_inventory

from testbed.paths import DEFAULT_INVENTORY, REPO_ROOT, default_inventory


def _inventory_check(args: argparse.Namespace) -> int:
    worst = 0
    for file in args.files:
        try:
            inv = load_inventory(file)
        except InventoryError as exc:
            print(exc, file=sys.stderr)
            worst = 1
            continue
        kinds: dict[str, int] = {}
        for d in inv.devices:
            kinds[d.kind.value] = kinds.get(d.kind.value, 0) + 1
        what = ", ".join(f"{n} {k}" for k, n in kinds.items())
        mode = "emulated" if inv.is_emulated else "real gear"
        print(f"{file}: OK: {inv.name} ({mode}): {len(inv.sites)} sites, {what}, "
              f"{len(inv.fiber_paths)} fiber paths, {len(inv.services)} services")
    return worst


def _plan(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from testbed.emulated_lab import lab_plan

    return lab_plan(load_inventory(args.inventory))


def _lease(args: argparse.Namespace, inv, restores: bool):  # type: ignore[no-untyped-def]
    """The testbed's lease for one `dcilab lab` command (testbed/lock.py)."""
    from testbed.lock import TestbedLock

    lease = TestbedLock(inv, "", command=f"dcilab lab {args.action}", restores=restores)
    lease.acquire(wait_s=args.wait_lease, progress=lambda m: print(f"dcilab lab {args.action}: {m}", flush=True))
    if lease.took_over is not None:
        print(f"dcilab lab {args.action}: taking over the lease of {lease.took_over.describe()}, which ended "
              "without releasing it", flush=True)
    return lease


def _lab_up(args: argparse.Namespace) -> int:
    from emulator.lab import build
    from emulator.lab.sys import require_root_and_netns
    from testbed.emulated_lab import lab_plan

    require_root_and_netns()
    inv = load_inventory(args.inventory)
    plan = lab_plan(inv)
    with _lease(args, inv, restores=False):
        build.up(plan)
        return _print_status(build.status(plan), as_json=False)


def _lab_down(args: argparse.Namespace) -> int:
    from emulator.lab import build
    from emulator.lab.sys import require_root_and_netns

    require_root_and_netns()
    if args.all or not Path(args.inventory).exists():
        build.down(None)
        return 0
    inv = load_inventory(args.inventory)
    plan = _plan(args)
    with _lease(args, inv, restores=True):      # down removes the lab's journal with the rest
        build.down(plan)
    return 0


def _lab_status(args: argparse.Namespace) -> int:
    from emulator.lab import build

    return _print_status(build.status(_plan(args)), as_json=args.json)


def _print_status(st, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    if as_json:
        print(json.dumps({"lab": st.name, "built": st.built, "ok": st.ok, "devices": [asdict(r) for r in st.rows]},
                         indent=2))
    else:
        print(f"lab {st.name}: {'up' if st.ok else 'NOT up' if st.built else 'not built (run: dcilab lab up)'}")
        w = [max(len(getattr(r, f)) for r in st.rows) for f in ("name", "kind", "address", "state")]
        for r in st.rows:
            print(f"  {r.name:<{w[0]}}  {r.kind:<{w[1]}}  {r.address:<{w[2]}}  {r.state:<{w[3]}}  {r.detail}")
    return 0 if st.ok else 1


def _lab_ssh(args: argparse.Namespace) -> int:
    from emulator.lab.openssh import client_argv

    plan = _plan(args)
    nodes = [n.name for n in plan.nodes if n.personality == "openssh"]
    if args.node not in nodes:
        print(f"dcilab lab ssh: {args.node!r} is not a GPU node of lab {plan.name}; use one of {', '.join(nodes)}",
              file=sys.stderr)
        return 2
    os.execvp("ssh", client_argv(plan, plan.node(args.node), *args.command))
    return 127  # not reached: exec replaces this process


def _lab_restore(args: argparse.Namespace) -> int:
    from testbed.faults import restore

    inv = load_inventory(args.inventory)
    if args.dry_run:
        restore(inv, dry_run=True, force=args.force)
        print("dry run: nothing was sent")
        return 0
    with _lease(args, inv, restores=True):
        rep = restore(inv, force=args.force)
    for p in rep.problems:
        print(f"dcilab lab restore: {p}", file=sys.stderr)
    if not rep.ok:
        why = "; ".join(rep.problems + rep.baseline)
        print(f"dcilab lab restore: baseline NOT reached: {why}", file=sys.stderr)
        return 1
    return 0


def _lease_cmd(args: argparse.Namespace) -> int:
    from testbed.lock import LeaseBreakError, break_lease, lease_state

    inv = load_inventory(args.inventory)
    if args.action == "break":
        try:
            print(break_lease(inv, timeout_s=args.timeout))
        except LeaseBreakError as exc:
            print(f"dcilab lease break: {exc}", file=sys.stderr)
            return 1
        return 0
    st = lease_state(inv)
    if args.json:
        print(json.dumps({"testbed": inv.name, "lease_file": str(st.path), "held": st.held,
                          "holder": asdict(st.holder) if st.holder else None, "pending_undo": st.pending}, indent=2))
    else:
        print(st.describe(inv))
    return 0


def _fault_plan(args: argparse.Namespace) -> int:
    from testbed.faults import FaultRefused, fault_from_args

    inv = load_inventory(args.inventory)
    try:
        fault = fault_from_args(args.kind, args.args)
        apply, undo = fault.plan(inv)
    except FaultRefused as exc:
        print(f"dcilab fault plan: {exc}", file=sys.stderr)
        return 1
    print(f"{fault.KIND} {fault.target} (dry run: nothing is sent; a real run first checks the devices'"
          " capabilities, journals the undo steps, then sends):")
    for s in apply:
        print(f"  apply  {s}")
    print("  verify by reading the devices back")
    for s in undo:
        print(f"  undo   {s}")
    return 0


def _fault_kinds(args: argparse.Namespace) -> int:
    from testbed.faults import registry

    for k in registry.kinds():
        doc = (k.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        caps = f" (capabilities: {', '.join(k.CAPABILITIES)})" if k.CAPABILITIES else ""
        print(f"{k.NAME} {k.USAGE}\n    {doc}{caps}\n    defined in {k.__module__}")
    return 0


def _wait_lease_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait-lease", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run to release the testbed (default: refuse at once, exit 75)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcilab", description="DCI field-trial testbed automation")
    sub = p.add_subparsers(dest="area", required=True)

    inv = sub.add_parser("inventory", help="inventory files").add_subparsers(dest="action", required=True)
    check = inv.add_parser("check", help="validate inventory files; lists every problem with file, line and fix")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=_inventory_check)

    lab = sub.add_parser("lab", help="the emulated lab (needs root)").add_subparsers(dest="action", required=True)
    for name, func, text in (("up", _lab_up, "build the emulated lab (idempotent)"),
                             ("down", _lab_down, "remove every namespace, link, process and file of the lab"),
                             ("status", _lab_status, "show each device and whether it answers")):
        sp = lab.add_parser(name, help=text)
        sp.add_argument("--inventory", "-i", type=Path, default=default_inventory(),
                        help=f"inventory file (default: $DCILAB_INVENTORY or {DEFAULT_INVENTORY.relative_to(REPO_ROOT)})")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            if name == "down":
                sp.add_argument("--all", action="store_true",
                                help="every emulated lab on this machine (whatever inventory built it)")
            _wait_lease_option(sp)
        sp.set_defaults(func=func)
    rs = lab.add_parser("restore", help="undo every fault left in the journal (after a crash or SIGKILL), "
                        "then check the baseline; non-zero if it is not reached")
    rs.add_argument("--inventory", "-i", type=Path, default=default_inventory())
    rs.add_argument("--dry-run", action="store_true", help="print the undo steps, send nothing")
    rs.add_argument("--force", action="store_true", help="also undo faults whose process is still running")
    _wait_lease_option(rs)
    rs.set_defaults(func=_lab_restore)
    lease = sub.add_parser("lease", help="who holds the testbed (one run at a time); break a holder's lease")
    lease.add_argument("action", nargs="?", choices=("show", "break"), default="show",
                       help="show (default) | break: stop the holder with SIGTERM (its faults are undone) and "
                       "wait until it has let go")
    lease.add_argument("--inventory", "-i", type=Path, default=default_inventory())
    lease.add_argument("--timeout", type=float, default=120.0, help="break: seconds to wait for the holder to end")
    lease.add_argument("--json", action="store_true", help="show: machine-readable output")
    lease.set_defaults(func=_lease_cmd)
    ssh = lab.add_parser("ssh", help="open a shell (or run a command) on an emulated GPU node with the lab key")
    ssh.add_argument("--inventory", "-i", type=Path, default=default_inventory())
    ssh.add_argument("node")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    ssh.set_defaults(func=_lab_ssh)
    fault = sub.add_parser("fault", help="the fault catalogue").add_subparsers(dest="action", required=True)
    fp = fault.add_parser("plan", help="dry run: check the allow-list and print what a fault would send "
                          "(nothing is sent, nothing is connected)")
    fp.add_argument("--inventory", "-i", type=Path, default=default_inventory())
    from testbed.faults import registry
    fp.add_argument("kind", help=registry.usage())
    fp.add_argument("args", nargs="*")
    fp.set_defaults(func=_fault_plan)
    fk = fault.add_parser("kinds", help="list the fault kinds this installation knows (built-in and DCILAB_PLUGINS)")
    fk.set_defaults(func=_fault_kinds)
    from testbed.metrics.cli import add_parser as add_metrics_parser
    add_metrics_parser(sub)
    from testbed.trial.cli import add_parser as add_trial_parser
    add_trial_parser(sub)
    from testbed.report.cli import add_parser as add_report_parser
    add_report_parser(sub)
    from testbed.report.history_cli import add_parser as add_history_parser
    add_history_parser(sub)
    from testbed.predict_cli import add_parser as add_predict_parser
    add_predict_parser(sub)
    from testbed.device_cli import add_parser as add_device_parser
    add_device_parser(sub)
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from emulator.lab.sys import LabError
    from testbed.emulated_lab import NotEmulated
    from testbed.lock import EXIT_BUSY, LeaseUnavailable, TestbedBusy

    from emulator.plugins import PluginError, load_plugins
    try:        # before the parser: a lab's own fault kinds appear in `dcilab fault` too
        load_plugins()
    except PluginError as exc:
        print(f"dcilab: {exc}", file=sys.stderr)
        return 1
    args = build_parser().parse_args(argv)
    # SIGTERM (a CI timeout, systemd stopping a job) gets the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except InventoryError as exc:
        print(exc, file=sys.stderr)
        return 1
    except TestbedBusy as exc:
        print(f"dcilab {args.area} {getattr(args, 'action', '')}: {exc}".replace("  ", " "), file=sys.stderr)
        return EXIT_BUSY
    except (LabError, NotEmulated, LeaseUnavailable) as exc:
        print(f"dcilab {args.area} {getattr(args, 'action', '')}: {exc}".replace("  ", " "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dcilab {args.area} {getattr(args, 'action', '')}: interrupted".replace("  ", " "), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

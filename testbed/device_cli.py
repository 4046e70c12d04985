"""``dcilab device check NAME``: see testbed/device_check.py."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_PROBLEMS = 1
EXIT_UNREACHABLE = 2


def _check(args: argparse.Namespace) -> int:
    from testbed.device_check import check_device, render
    from testbed.inventory import load_inventory

    inv = load_inventory(args.inventory)
    names = [d.name for d in inv.devices] if args.name == ["all"] else args.name
    unknown = [n for n in names if n not in {d.name for d in inv.devices}]
    if unknown:
        print(f"dcilab device check: no device {', '.join(map(repr, unknown))} in {args.inventory} "
              f"(devices: {', '.join(d.name for d in inv.devices)})", file=sys.stderr)
        return 2
    reports = [check_device(inv, n, timeout_s=args.timeout) for n in names]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print("\n\n".join(render(r) for r in reports))
    if any(not r.reachable for r in reports):
        return EXIT_UNREACHABLE
    return EXIT_PROBLEMS if any(r.problems for r in reports) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from testbed.paths import default_inventory

    dev = sub.add_parser("device", help="one device of the inventory").add_subparsers(dest="action", required=True)
    c = dev.add_parser("check", help="read-only: what the device is and speaks, which driver fits, what the "
                       "inventory's driver needs that it lacks, and whether what the driver reads validates "
                       "against the device's own YANG models")
    c.add_argument("name", nargs="+", help="device name(s) from the inventory, or 'all'")
    c.add_argument("--inventory", "-i", type=Path, default=default_inventory())
    c.add_argument("--timeout", type=float, default=30.0, help="seconds to connect and for each read (default 30)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=_check)

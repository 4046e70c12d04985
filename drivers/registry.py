"""Which driver serves a device, by the name an inventory gives it (``driver:`` on each device).

Names are per device kind: an OTN terminal speaks ``openconfig`` or ``openroadm``, a gateway
the ``vrp`` CLI dialect.  Entries point at ``module:attribute`` and are imported on first use,
so checking an inventory never loads ncclient or netmiko.  A driver added outside this package
registers itself with :func:`register` when its module is imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import Unsupported

KINDS = ("otn_terminal", "roadm", "gateway", "gpu_node")


@dataclass(frozen=True)
class DriverEntry:
    kind: str          # one of KINDS
    name: str          # what the inventory writes after driver:
    target: str        # "package.module:attribute": an OtnTerminal class, a gateway Dialect, ...
    summary: str       # one line for error messages and `dcilab inventory`


_DRIVERS: dict[str, dict[str, DriverEntry]] = {k: {} for k in KINDS}


def register(kind: str, name: str, target: str, summary: str) -> DriverEntry:
    """Add a driver (or replace one of the same kind and name)."""
    if kind not in _DRIVERS:
        raise ValueError(f"unknown device kind {kind!r} (known: {', '.join(KINDS)})")
    if ":" not in target:
        raise ValueError(f"driver target {target!r} is not 'module:attribute'")
    entry = DriverEntry(kind, name, target, summary)
    _DRIVERS[kind][name] = entry
    return entry


def names(kind: str) -> list[str]:
    """The driver names a device of ``kind`` may give, in registration order (the first is the
    one an error's fix suggests)."""
    return list(_DRIVERS.get(kind, {}))


def entry(kind: str, name: str) -> DriverEntry:
    try:
        return _DRIVERS[kind][name]
    except KeyError:
        raise Unsupported(f"{kind} driver", name, names(kind)) from None


def load(kind: str, name: str) -> Any:
    """The object behind a driver name (imported now)."""
    module, _, attr = entry(kind, name).target.partition(":")
    return getattr(importlib.import_module(module), attr)


register("otn_terminal", "openconfig", "drivers.otn.openconfig:OpenConfigTerminal",
         "OpenConfig terminal-device + line-protection over NETCONF")
register("otn_terminal", "openroadm", "drivers.otn.openroadm:OpenRoadmTerminal",
         "OpenROADM device model (transponder) over NETCONF")
register("roadm", "openroadm", "drivers.roadm:Roadm", "OpenROADM device model (ROADM) over NETCONF")
register("gateway", "vrp", "drivers.gateway.dialects.huawei_vrp:DIALECT", "Huawei VRP CLI over SSH (netmiko)")
register("gpu_node", "openssh", "drivers.gpu_node:GpuNode", "a Linux host over OpenSSH (paramiko)")

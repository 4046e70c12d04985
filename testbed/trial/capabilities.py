"""What a testbed can do, read from its inventory: a case that needs what the testbed lacks is
skipped with the reason (``@pytest.mark.needs("restoration_path")``)."""

from __future__ import annotations

from collections.abc import Callable

from testbed.inventory import DeviceKind, Inventory
from testbed.inventory.model import Service


def service(inv: Inventory) -> Service | None:
    """The DCI service the trial runs over (the inventory's first)."""
    return inv.services[0] if inv.services else None


def gpu_sites(inv: Inventory) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in inv.devices:
        if d.kind == DeviceKind.GPU_NODE and d.site:
            out.setdefault(d.site, []).append(d.name)
    return out


def _allowed(inv: Inventory, devices: list[str], what: str) -> str | None:
    bad = [d for d in devices if not inv.device(d).fault_injection]
    if bad:
        return f"{what}: {', '.join(bad)} not allowed for fault injection in this inventory (fault_injection: true)"
    return None


def _cross_site(inv: Inventory) -> str | None:
    if len(gpu_sites(inv)) < 2:
        return "GPU nodes in fewer than two sites in this inventory: nothing crosses the WAN"
    return None


def _service(inv: Inventory) -> str | None:
    return None if service(inv) else "no DCI service (services:) in this inventory"


def _shaping(inv: Inventory) -> str | None:
    s = service(inv)
    if s is None:
        return _service(inv)
    return _allowed(inv, [s.a_end.gateway, s.z_end.gateway], "gateway WAN shaping")


def _rate(inv: Inventory) -> str | None:
    s = service(inv)
    if s is None:
        return _service(inv)
    return _allowed(inv, [s.a_end.otn_terminal, s.z_end.otn_terminal], "line rate change")


def _ber(inv: Inventory) -> str | None:
    s = service(inv)
    if s is None:
        return _service(inv)
    p = inv.fiber_path(s.working_path)
    if not p.fault_injection:
        return f"bit errors: fiber path {p.name} not allowed for fault injection in this inventory"
    return _allowed(inv, [p.roadms[0]], "bit errors")


def _protection(inv: Inventory) -> str | None:
    s = service(inv)
    if s is None:
        return _service(inv)
    if not s.protection_path:
        return "no protection path in this inventory"
    p = inv.fiber_path(s.working_path)
    if not p.fault_injection:
        return f"fiber cut: working path {p.name} not allowed for fault injection in this inventory"
    return _allowed(inv, [p.roadms[0]], "fiber cut")


def _restoration(inv: Inventory) -> str | None:
    s = service(inv)
    if s is None:
        return _service(inv)
    if not s.restoration_paths:
        return "no restoration path in this inventory"
    why = _protection(inv) if s.protection_path else None
    if why:
        return why
    terminals = [s.a_end.otn_terminal, s.z_end.otn_terminal]
    if not any(inv.device(t).fault_injection for t in terminals):
        return "ASON reroute: no OTN terminal allowed to lock out protection (fault_injection: true)"
    return None


def _probe(inv: Inventory) -> str | None:
    sites = gpu_sites(inv)
    if len(sites) < 2:
        return _cross_site(inv)
    if not inv.is_emulated:
        for nodes in sites.values():
            if not inv.device(nodes[0]).data_interface:
                return f"probe: GPU node {nodes[0]} has no data_interface in this inventory"
    return None


CAPABILITIES: dict[str, Callable[[Inventory], str | None]] = {
    "cross_site": _cross_site,
    "convergence_shaping": _shaping,
    "rate_change": _rate,
    "bit_errors": _ber,
    "protection_path": _protection,
    "restoration_path": _restoration,
    "probe": _probe,
}


def missing(inv: Inventory, needs: list[str]) -> str | None:
    """The first reason the testbed cannot do what is needed, or None."""
    for n in needs:
        check = CAPABILITIES.get(n)
        if check is None:
            return f"unknown capability {n!r} (known: {', '.join(CAPABILITIES)})"
        why = check(inv)
        if why:
            return why
    return None


def probe_pair(inv: Inventory) -> tuple[str, str]:
    """A GPU node in the service's A-end site and one in the Z-end site (the probe's two ends)."""
    sites = gpu_sites(inv)
    s = service(inv)
    order = [inv.device(s.a_end.gateway).site, inv.device(s.z_end.gateway).site] if s else list(sites)
    a, z = [sites[x][0] for x in order if x in sites][:2]
    return a, z

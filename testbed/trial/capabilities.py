"""What a testbed can do, read from its inventory: a case that needs what the testbed lacks is
skipped with the reason (``@pytest.mark.needs("restoration_path")``)."""

from __future__ import annotations

from collections.abc import Callable

from testbed.inventory import DeviceKind, Inventory
from testbed.faults.catalogue import first_service


service = first_service


def gpu_sites(inv: Inventory) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in inv.devices:
        if d.kind == DeviceKind.GPU_NODE and d.site:
            out.setdefault(d.site, []).append(d.name)
    return out


def _cross_site(inv: Inventory) -> str | None:
    if len(gpu_sites(inv)) < 2:
        return "GPU nodes in fewer than two sites in this inventory: nothing crosses the WAN"
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
    "probe": _probe,
}
"""The trial's own capabilities; each fault kind adds those its cases need (its ``CAPABILITIES``)."""


def known() -> dict[str, Callable[[Inventory], str | None]]:
    from testbed.faults import registry
    return {**CAPABILITIES, **registry.capabilities()}


def missing(inv: Inventory, needs: list[str]) -> str | None:
    """The first reason the testbed cannot do what is needed, or None."""
    checks = known()
    for n in needs:
        check = checks.get(n)
        if check is None:
            return f"unknown capability {n!r} (known: {', '.join(checks)})"
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

"""Turn an inventory's emulated testbed into the emulator's lab plan.

The inventory is the framework's view of a testbed; the plan is what the emulator builds.  Only
this module knows both, so the emulator stays ignorant of the framework.
"""

from __future__ import annotations

import ipaddress
import sys
from urllib.parse import urlparse

from emulator.lab.plan import (FabricPlan, LabPlan, LinePathPlan, LinePlan, NodePlan, SchedulerPlan, SlurmNodePlan,
                               StorePlan)
from testbed.inventory import DeviceKind
from testbed.inventory import Inventory
from testbed.trial.runner import RDZV_PORT_BASE, RDZV_PORTS


DEFAULT_PARTITION = "dci"       # the emulated Slurm's partition when no scheduler: block names one


class NotEmulated(Exception):
    """The inventory describes real gear; there is nothing to emulate."""


def lab_plan(inv: Inventory) -> LabPlan:
    emu = inv.emulation
    if emu is None:
        raise NotEmulated(f"{inv.source}: inventory {inv.name!r} has no 'emulation' block: it describes real gear, "
                          "which dcilab does not build; use inventory/emulated.yaml for the emulated lab")
    plan = emu.address_plan
    mgmt_prefix = plan.management.prefixlen
    nodes = []
    for index, d in enumerate(inv.devices):
        personality = d.driver_name or ""   # the emulator runs gear that speaks the device's driver
        data = None
        if d.data_address is not None and d.site in plan.fabrics:
            data = f"{d.data_address}/{plan.fabrics[d.site].prefixlen}"
        password = d.credentials.password
        nodes.append(NodePlan(name=d.name, kind=d.kind.value, site=d.site, personality=personality,
                              mgmt_address=f"{d.mgmt.address}/{mgmt_prefix}", port=d.port,
                              data_address=data, index=index, username=d.credentials.username,
                              password_env=password.env if password else None,
                              password_file=str(inv.resolve_path(password.file)) if password and password.file
                              else None, wan_port=d.wan_port, prefix=emu.prefix))
    service = inv.services[0]
    fabrics = []
    for site, subnet in plan.fabrics.items():
        gw_name = service.a_end.gateway if inv.device(service.a_end.gateway).site == site else service.z_end.gateway
        fabrics.append(FabricPlan(site=site, subnet=str(subnet), gateway=gw_name,
                                  gateway_ip=str(inv.device(gw_name).data_address), prefix=emu.prefix))
    line_hosts = list(plan.line.hosts())
    path_names = [service.working_path, *([service.protection_path] if service.protection_path else []),
                  *service.restoration_paths]
    paths = tuple(LinePathPlan(p.name, p.kind.value, p.length_km, tuple(p.roadms))
                  for p in map(inv.fiber_path, path_names))
    line = LinePlan(
        a_gateway=service.a_end.gateway, z_gateway=service.z_end.gateway,
        a_address=f"{line_hosts[0]}/{plan.line.prefixlen}", z_address=f"{line_hosts[1]}/{plan.line.prefixlen}",
        rate_bps=service.line_gbps * 1e9 * emu.bandwidth_scale, paths=paths,
        active_path=service.working_path, buffer_ms=emu.buffer_ms, service=service.name,
        a_terminal=service.a_end.otn_terminal, z_terminal=service.z_end.otn_terminal,
        line_rate_gbps=service.line_gbps, bandwidth_scale=emu.bandwidth_scale,
        client_ports=(service.client_ports.count, service.client_ports.gbps // service.client_ports.count),
        transport={**emu.transport.model_dump(), "scale": emu.bandwidth_scale,
                   "control_ports": [RDZV_PORT_BASE, RDZV_PORT_BASE + RDZV_PORTS - 1]},
    )
    store = None
    if emu.metrics_store == "victoria-metrics" and inv.metrics is not None:
        url = urlparse(inv.metrics.url)
        store = StorePlan(host=url.hostname or "127.0.0.1", port=url.port or 8428,
                          data_dir=f"/var/lib/dcilab/{inv.name}/victoria-metrics")
    controller = next(plan.management.hosts())
    known = [plan.management, plan.line, *plan.fabrics.values()]
    scheduler = None
    if emu.scheduler == "slurm":
        scheduler = SchedulerPlan(
            cluster=inv.name[:40], partition=inv.scheduler.partition if inv.scheduler else DEFAULT_PARTITION,
            controller="dcilab-ctl",
            controller_address=str(controller), port=emu.slurm_port,
            nodes=tuple(SlurmNodePlan(d.name, str(d.mgmt.address), inv.node_gpus(d))
                        for d in inv.devices if d.kind == DeviceKind.GPU_NODE))
    return LabPlan(
        name=inv.name, state_dir=emu.state_dir, mtu=emu.mtu,
        controller_address=f"{controller}/{mgmt_prefix}", nodes=tuple(nodes), fabrics=tuple(fabrics),
        line=line, store=store, python=sys.executable,
        known_networks=tuple(str(ipaddress.ip_network(n)) for n in known), scheduler=scheduler,
        prefix=emu.prefix,
    )


def slurm_conf(inv: Inventory) -> str | None:
    """The slurm.conf the controller's Slurm commands read: the inventory's scheduler.conf, or an
    emulated lab's own; None for the system's default."""
    if inv.scheduler is None:
        return None
    if inv.emulation is not None:
        from emulator.lab.slurm import conf_path
        return str(conf_path(lab_plan(inv)))
    return str(inv.resolve_path(inv.scheduler.conf)) if inv.scheduler.conf else None


def qp_errors(inv: Inventory, since_wall: float, until_wall: float) -> list[dict]:  # type: ignore[type-arg]
    """The QP errors the emulated line's transport model declared between two instants (epoch s):
    what interrupted a job the way NCCL aborts.  [] on real gear or when the line cannot be read."""
    if inv.emulation is None:
        return []
    from emulator.line.control import LineControl, LineControlError

    try:
        events = LineControl(lab_plan(inv).line_socket, timeout=5.0).events().get("events", [])
    except (LineControlError, OSError):
        return []
    return [e for e in events if e.get("kind") == "qp-error" and since_wall <= e.get("time", 0) <= until_wall]

"""Consistency checks a schema cannot express: references, uniqueness, the emulated address plan.

Each check yields ``(field path, message, fix)``; the loader turns those into located problems.
A reference to an item that exists in the file but failed the schema is not reported again
(``raw_names``), so one mistake yields one message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from testbed.inventory.model import (
    BENCHMARK_NET,
    PROTOCOL_OF_KIND,
    Device,
    DeviceKind,
    Emulation,
    FiberPath,
    Metrics,
    PathKind,
    Scheduler,
    Service,
    Site,
    emulated_drivers,
)
from testbed.yamlsource import FieldPath

from drivers import registry

INVALID = object()  # a section that is present but failed the schema
Finding = tuple[FieldPath, str, str]


@dataclass
class Parts:
    sites: list[tuple[int, Site]]
    devices: list[tuple[int, Device]]
    fiber_paths: list[tuple[int, FiberPath]]
    services: list[tuple[int, Service]]
    metrics: Metrics | None | Any
    emulation: Emulation | None | Any
    scheduler: Scheduler | None | Any = None


def _one_of(names: list[str], kind: str) -> str:
    return f"use one of {sorted(names)}" if names else f"add a device of kind {kind} and name it here"


def run(parts: Parts, raw_names: dict[str, set[str]]) -> Iterator[Finding]:
    yield from _unique_names(parts)
    yield from _devices(parts, raw_names)
    yield from _paths(parts, raw_names)
    yield from _services(parts, raw_names)
    if isinstance(parts.emulation, Emulation):
        yield from _emulation(parts, parts.emulation, raw_names)


def _unique_names(parts: Parts) -> Iterator[Finding]:
    for sec, items in (("sites", parts.sites), ("devices", parts.devices),
                       ("fiber_paths", parts.fiber_paths), ("services", parts.services)):
        counts = Counter(item.name for _, item in items)
        first: dict[str, int] = {}
        for i, item in items:
            if counts[item.name] > 1:
                if item.name in first:
                    yield ((sec, i, "name"), f"duplicate name {item.name!r} (also {sec}[{first[item.name]}])",
                           f"give every entry of {sec} its own name")
                else:
                    first[item.name] = i


def _devices(parts: Parts, raw: dict[str, set[str]]) -> Iterator[Finding]:
    sites = {s.name for _, s in parts.sites}
    endpoints: dict[tuple[str, int], str] = {}
    for i, d in parts.devices:
        if d.site is None and d.kind != DeviceKind.ROADM:
            yield ((("devices", i, "site")), f"{d.kind.value} {d.name!r} has no site",
                   f"add site: one of {sorted(sites)} (only in-line ROADMs may have no site)")
        elif d.site is not None and d.site not in sites and d.site not in raw["sites"]:
            yield (("devices", i, "site"), f"site {d.site!r} is not defined",
                   f"use one of {sorted(sites)} or add it under sites:")
        expected = PROTOCOL_OF_KIND[d.kind][0]
        if d.mgmt.protocol is not None and d.mgmt.protocol != expected:
            yield (("devices", i, "mgmt", "protocol"),
                   f"a {d.kind.value} is managed over {expected}, not {d.mgmt.protocol}",
                   f"write protocol: {expected} (or leave it out)")
        key = (str(d.mgmt.address), d.port)
        if key in endpoints:
            yield (("devices", i, "mgmt", "address"),
                   f"{d.name!r} has the same management address and port as {endpoints[key]!r}",
                   "give each device its own management address (or port)")
        else:
            endpoints[key] = d.name
        if d.python is not None and d.kind != DeviceKind.GPU_NODE:
            yield (("devices", i, "python"), "only a gpu_node has a Python environment", "remove 'python'")
        if d.gpus is not None and d.kind != DeviceKind.GPU_NODE:
            yield (("devices", i, "gpus"), "only a gpu_node has GPUs that run training ranks", "remove 'gpus'")
        if d.data_interface is not None and d.kind != DeviceKind.GPU_NODE:
            yield (("devices", i, "data_interface"), "only a gpu_node names its data interface",
                   "remove 'data_interface'")
        if d.data_address is not None and d.kind not in (DeviceKind.GPU_NODE, DeviceKind.GATEWAY):
            yield (("devices", i, "data_address"), "only GPU nodes and gateways sit on the site fabric",
                   "remove 'data_address'")
        if d.wan_port is not None and d.kind != DeviceKind.GATEWAY:
            yield (("devices", i, "wan_port"), "only a gateway has a WAN port", "remove 'wan_port'")
        yield from _driver(i, d)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _driver(i: int, d: Device) -> Iterator[Finding]:
    known = registry.names(d.kind.value)
    if d.driver_name is None:
        yield (("devices", i), f"{d.kind.value} {d.name!r} has no driver",
               f"add driver: {known[0]} (one of {', '.join(known)}), the one the device speaks")
    elif d.driver is not None and d.driver not in known:
        other = [k for k in registry.KINDS if d.driver in registry.names(k)]
        why = f" but {_a(other[0])} driver" if other else ""
        yield (("devices", i, "driver"), f"{d.driver!r} is not {_a(d.kind.value)} driver{why}",
               f"use one of: {', '.join(known)}")


def _paths(parts: Parts, raw: dict[str, set[str]]) -> Iterator[Finding]:
    devices = {d.name: d for _, d in parts.devices}
    for i, p in parts.fiber_paths:
        for j, r in enumerate(p.roadms):
            dev = devices.get(r)
            if dev is None:
                if r not in raw["devices"]:
                    yield (("fiber_paths", i, "roadms", j), f"ROADM {r!r} does not exist",
                           _one_of([n for n, d in devices.items() if d.kind == DeviceKind.ROADM], "roadm"))
            elif dev.kind != DeviceKind.ROADM:
                yield (("fiber_paths", i, "roadms", j), f"{r!r} is a {dev.kind.value}, not a roadm",
                       "list only ROADMs the path crosses")
        first_roadm = devices.get(p.roadms[0])
        if p.fault_injection and first_roadm is not None and first_roadm.kind == DeviceKind.ROADM \
                and not first_roadm.fault_injection:
            yield (("fiber_paths", i, "fault_injection"),
                   f"path {p.name!r} allows fault injection but its first ROADM {first_roadm.name!r} does not "
                   "(cuts and bit errors are done there)",
                   f"add fault_injection: true to device {first_roadm.name!r}, or remove it from the path")
        if len(set(p.roadms)) != len(p.roadms):
            yield (("fiber_paths", i, "roadms"), "a path crosses the same ROADM twice", "list each ROADM once")
        ends = [devices.get(p.roadms[0]), devices.get(p.roadms[-1])]
        if all(e is not None and e.site is not None for e in ends) and ends[0].site == ends[1].site:  # type: ignore[union-attr]
            yield (("fiber_paths", i, "roadms"), f"path {p.name!r} starts and ends in site {ends[0].site!r}",  # type: ignore[union-attr]
                   "a fiber path runs between the ROADMs of two different sites")


def _services(parts: Parts, raw: dict[str, set[str]]) -> Iterator[Finding]:
    devices = {d.name: d for _, d in parts.devices}
    paths = {p.name: p for _, p in parts.fiber_paths}

    def ref(loc: FieldPath, name: str, kind: DeviceKind) -> Iterator[Finding]:
        dev = devices.get(name)
        if dev is None:
            if name not in raw["devices"]:
                yield (loc, f"{kind.value} {name!r} does not exist",
                       _one_of([n for n, d in devices.items() if d.kind == kind], kind.value))
        elif dev.kind != kind:
            yield (loc, f"{name!r} is a {dev.kind.value}, not a {kind.value}", f"name a device of kind {kind.value}")

    def path_ref(loc: FieldPath, name: str, kind: PathKind) -> Iterator[Finding]:
        p = paths.get(name)
        if p is None:
            if name not in raw["fiber_paths"]:
                yield (loc, f"fiber path {name!r} does not exist", f"use one of {sorted(paths)}")
        elif p.kind != kind:
            yield (loc, f"fiber path {name!r} is of kind {p.kind.value}, not {kind.value}",
                   f"name a path of kind {kind.value}, or change that path's kind")

    for i, s in parts.services:
        base: FieldPath = ("services", i)
        for end in ("a_end", "z_end"):
            e = getattr(s, end)
            yield from ref(base + (end, "otn_terminal"), e.otn_terminal, DeviceKind.OTN_TERMINAL)
            yield from ref(base + (end, "gateway"), e.gateway, DeviceKind.GATEWAY)
            t, g = devices.get(e.otn_terminal), devices.get(e.gateway)
            if t and g and t.site and g.site and t.site != g.site:
                yield (base + (end, "gateway"), (f"gateway {g.name!r} is in site {g.site!r} but OTN terminal "
                       f"{t.name!r} is in {t.site!r}"), "pair each OTN terminal with the gateway of its own site")
        a, z = devices.get(s.a_end.otn_terminal), devices.get(s.z_end.otn_terminal)
        if a and z and a.site is not None and a.site == z.site:
            yield (base + ("z_end", "otn_terminal"), f"both ends of service {s.name!r} are in site {a.site!r}",
                   "a DCI service joins two different sites")
        yield from path_ref(base + ("working_path",), s.working_path, PathKind.WORKING)
        if s.protection_path:
            yield from path_ref(base + ("protection_path",), s.protection_path, PathKind.PROTECTION)
        for j, r in enumerate(s.restoration_paths):
            yield from path_ref(base + ("restoration_paths", j), r, PathKind.RESTORATION)
        if s.client_ports.gbps > s.line_gbps:
            yield (base + ("client_ports",), f"client ports carry {s.client_ports.gbps}G but the line is {s.line_rate}",
                   "lower the client port count or rate, or raise line_rate")


def _emulation(parts: Parts, emu: Emulation, raw: dict[str, set[str]]) -> Iterator[Finding]:
    plan = emu.address_plan
    sites = {s.name for _, s in parts.sites}
    nets = [(("emulation", "address_plan", "management"), plan.management),
            (("emulation", "address_plan", "line"), plan.line)]
    nets += [(("emulation", "address_plan", "fabrics", site), net) for site, net in plan.fabrics.items()]
    for loc, net in nets:
        if not net.subnet_of(BENCHMARK_NET):  # type: ignore[arg-type]
            yield (loc, f"{net} is outside the benchmarking range {BENCHMARK_NET}",
                   "an emulated lab uses only addresses from 198.18.0.0/15 (RFC 2544)")
    for x in range(len(nets)):
        for y in range(x + 1, len(nets)):
            if nets[x][1].overlaps(nets[y][1]):
                yield (nets[y][0], f"{nets[y][1]} overlaps {nets[x][1]}", "give each network of the plan its own subnet")
    if plan.line.prefixlen > 30:
        yield (("emulation", "address_plan", "line"), "the line subnet needs two host addresses", "use a /30 or larger")
    for site in plan.fabrics:
        if site not in sites and site not in raw["sites"]:
            yield (("emulation", "address_plan", "fabrics", site), f"no site {site!r}", f"use one of {sorted(sites)}")
    controller = next(iter(plan.management.hosts()), None)   # hosts() is a list for a /32, found by fuzzing
    for i, d in parts.devices:
        addr = d.mgmt.address
        if addr not in plan.management:
            yield (("devices", i, "mgmt", "address"), f"{addr} is outside the management plan {plan.management}",
                   f"pick an address in {plan.management} (emulation.address_plan.management)")
        elif addr == controller:
            yield (("devices", i, "mgmt", "address"), f"{addr} is the controller's own address",
                   f"the first host of {plan.management} is the controller; pick another")
        if d.kind in (DeviceKind.GPU_NODE, DeviceKind.GATEWAY):
            fabric = plan.fabrics.get(d.site or "")
            if d.data_address is None:
                yield (("devices", i), f"{d.kind.value} {d.name!r} has no data_address on its site fabric",
                       f"add data_address: an address in {fabric or 'the site fabric'}")
            elif fabric is None:
                yield (("emulation", "address_plan", "fabrics"), f"no fabric subnet for site {d.site!r}",
                       f"add {d.site}: 198.18.x.0/24 under emulation.address_plan.fabrics")
            elif d.data_address not in fabric:
                yield (("devices", i, "data_address"), f"{d.data_address} is outside site {d.site!r}'s fabric {fabric}",
                       f"pick an address in {fabric}")
        emulated = emulated_drivers(d.kind)
        if d.driver in registry.names(d.kind.value) and d.driver not in emulated:  # else reported above
            yield (("devices", i, "driver"), f"the emulated lab has no {d.driver} {d.kind.value}",
                   f"use one of: {', '.join(emulated)} (or run this inventory against real gear)")
    device_names = {d.name for _, d in parts.devices}
    n_sites, n_services = len(sites | raw["sites"]), len({s.name for _, s in parts.services} | raw["services"])
    if n_sites != 2 or n_services != 1:
        yield (("emulation",), (f"the emulated lab joins exactly two sites by one service (found {n_sites} sites, "
               f"{n_services} services)"), "describe two sites and one service")
    for _, site in parts.sites if not raw["devices"] - device_names else ():  # an invalid device may be the gateway
        if not [d for _, d in parts.devices if d.kind == DeviceKind.GATEWAY and d.site == site.name]:
            yield (("sites",), f"site {site.name!r} has no gateway; the emulated line ends on a gateway",
                   "add a device of kind gateway to that site")
    if isinstance(parts.metrics, Metrics) and emu.metrics_store == "victoria-metrics":
        host = urlparse(parts.metrics.url).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            yield (("metrics", "url"), f"the emulated lab's store listens on loopback, not {host}",
                   "write url: http://127.0.0.1:8428, or set emulation.metrics_store: none to use your own store")
    yield from _emulated_scheduler(parts, emu)
    state = emu.state_dir.rstrip("/")
    if not state.startswith("/run/dcilab/") or "/.." in state or state.count("/") != 3:
        yield (("emulation", "state_dir"), f"{emu.state_dir} is not a folder directly under /run/dcilab/",
               "write state_dir: /run/dcilab/<lab-name>; `lab down` removes it, so it must be the lab's own")
    for i, d in parts.devices:
        if d.kind != DeviceKind.GPU_NODE:
            continue
        key = d.credentials.ssh_key
        if key is None or key.path != f"{state}/id_ed25519":
            yield (("devices", i, "credentials", "ssh_key") if key else ("devices", i, "credentials"),
                   "the emulated GPU nodes accept only the key the lab generates",
                   f"write ssh_key: {{path: {state}/id_ed25519}}")
        if d.host_key and d.host_key.known_hosts not in (None, f"{state}/known_hosts"):
            yield (("devices", i, "host_key", "known_hosts"), "the lab writes its GPU nodes' host keys elsewhere",
                   f"write host_key: {{known_hosts: {state}/known_hosts}}")


def _emulated_scheduler(parts: Parts, emu: Emulation) -> Iterator[Finding]:
    """An emulated lab runs the Slurm its inventory's jobs go through, and writes its slurm.conf."""
    sched = parts.scheduler
    if isinstance(sched, Scheduler):
        if emu.scheduler != sched.kind:
            yield (("scheduler", "kind"), f"jobs go through {sched.kind} but the emulated lab runs no {sched.kind}",
                   f"set emulation.scheduler: {sched.kind}, or remove the scheduler: block to start jobs over SSH")
        if sched.conf is not None:
            yield (("scheduler", "conf"), "the emulated lab writes its own slurm.conf (in emulation.state_dir)",
                   "remove 'conf'")

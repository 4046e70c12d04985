"""What the emulated lab is made of, as plain data.

The framework (testbed/) turns an inventory into a ``LabPlan``; the emulator only executes plans.
That keeps the emulator free of the framework, as real gear is.  A plan is JSON-serialisable so
it can be saved with the lab's state and compared on the next ``up``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_PREFIX = "dcl"   # every namespace and host link a lab makes is named "<prefix>-...": one per lab
SLURMCTLD_PORT = 6817    # Slurm's default; slurmctld listens host-wide, so two labs need two ports


def owned(name: str, prefix: str) -> bool:
    """Whether a namespace or host link of this name belongs to the lab of ``prefix`` (a prefix
    has no '-', so "dcl-x" is never a lab "dc"'s, nor "dclb-x" lab "dcl"'s)."""
    return name.startswith(f"{prefix}-")


@dataclass(frozen=True)
class NodePlan:
    """One emulated device: a namespace with a management interface (and maybe a fabric port)."""

    name: str
    kind: str                   # otn_terminal | roadm | gateway | gpu_node
    site: str | None
    personality: str            # openssh | openconfig | openroadm | vrp
    mgmt_address: str           # with prefix, e.g. 198.18.0.11/24
    port: int                   # management port the personality serves
    data_address: str | None = None   # on the site fabric, with prefix
    index: int = 0              # stable small number used to name host-side links
    username: str = "admin"     # login the device accepts (with the lab key, or the password below)
    password_env: str | None = None   # the device accepts the password found in this variable ...
    password_file: str | None = None  # ... or in this file (references only, as in the inventory)
    wan_port: str | None = None       # gateway: its port toward the line, as its CLI names it
    prefix: str = DEFAULT_PREFIX      # the lab's (LabPlan.prefix)

    @property
    def netns(self) -> str:
        return f"{self.prefix}-{self.name}"

    @property
    def mgmt_ip(self) -> str:
        return self.mgmt_address.split("/")[0]

    @property
    def data_ip(self) -> str | None:
        return self.data_address.split("/")[0] if self.data_address else None


@dataclass(frozen=True)
class FabricPlan:
    """A site's leaf/spine, reduced to one bridge in its own namespace."""

    site: str
    subnet: str
    gateway: str                # gateway device name
    gateway_ip: str             # its fabric address (next hop of the GPU nodes toward the WAN)
    prefix: str = DEFAULT_PREFIX

    @property
    def netns(self) -> str:
        return f"{self.prefix}-fab-{self.site}"


@dataclass(frozen=True)
class LinePathPlan:
    name: str
    kind: str                   # working | protection | restoration
    length_km: float
    roadms: tuple[str, ...] = ()   # ROADMs crossed, A end to Z end (each path is its own fiber)


@dataclass(frozen=True)
class LinePlan:
    """The optical line between the two gateways (user-space forwarder over TAP)."""

    a_gateway: str
    z_gateway: str
    a_address: str              # with prefix, on the gateway's wan0
    z_address: str
    rate_bps: float             # the service's line rate x bandwidth scale
    paths: tuple[LinePathPlan, ...]
    active_path: str
    buffer_ms: float
    ifname: str = "wan0"
    service: str = "dci"               # the OTN service the line carries
    a_terminal: str = ""               # its OTN terminals (the NETCONF devices that manage the line)
    z_terminal: str = ""
    line_rate_gbps: int = 800          # the real rate; rate_bps is this x bandwidth_scale
    bandwidth_scale: float = 1.0
    client_ports: tuple[int, int] = (2, 400)   # count, Gbit/s each
    switch_ms: float = 30.0            # 1+1 SNCP switch time (the trial: 50 ms class)
    restoration_ms: float = 3000.0     # ASON restoration time after a cut with no protection left
    transport: dict[str, Any] | None = None   # the line's transport model (emulator.line.roce.TransportConfig)

    def path(self, name: str) -> LinePathPlan:
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(name)

    def paths_of(self, kind: str) -> list[LinePathPlan]:
        return [p for p in self.paths if p.kind == kind]


@dataclass(frozen=True)
class StorePlan:
    """The local metrics store (VictoriaMetrics: accepts the InfluxDB v2 write API)."""

    host: str
    port: int
    data_dir: str


@dataclass(frozen=True)
class SlurmNodePlan:
    name: str                   # as Slurm knows it: the node's hostname in its own UTS namespace
    address: str                # its management address (NodeAddr): slurmctld and srun reach slurmd there
    cpus: int                   # the ranks it may run (the inventory's gpus)


@dataclass(frozen=True)
class SchedulerPlan:
    """A real Slurm over the lab's GPU nodes (emulator/lab/slurm.py)."""

    cluster: str
    partition: str
    controller: str             # slurmctld's hostname (its own UTS namespace) ...
    controller_address: str     # ... and address: the controller's, on the management bridge
    nodes: tuple[SlurmNodePlan, ...]
    port: int = SLURMCTLD_PORT  # slurmctld's (host-wide); slurmd's is per namespace


@dataclass(frozen=True)
class LabPlan:
    name: str
    state_dir: str
    mtu: int
    controller_address: str     # on the management bridge, with prefix
    nodes: tuple[NodePlan, ...]
    fabrics: tuple[FabricPlan, ...]
    line: LinePlan
    store: StorePlan | None
    python: str                 # interpreter that runs the emulator's own processes
    known_networks: tuple[str, ...] = field(default=())   # every subnet of the plan, to check the host for clashes
    scheduler: SchedulerPlan | None = None
    prefix: str = DEFAULT_PREFIX   # names its namespaces and host links: several labs coexist on one host

    @property
    def mgmt_bridge(self) -> str:
        return f"{self.prefix}-mgmt"

    def host_link(self, index: int) -> str:
        """The host side of device ``index``'s management veth (e.g. dcl-m3: 15 characters at most)."""
        return f"{self.prefix}-m{index}"

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @property
    def digest(self) -> str:
        """Identifies the plan; an `up` with the same digest on a healthy lab changes nothing."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def key_path(self) -> str:
        return f"{self.state_dir}/id_ed25519"

    @property
    def known_hosts_path(self) -> str:
        return f"{self.state_dir}/known_hosts"

    @property
    def line_socket(self) -> str:
        return f"{self.state_dir}/line.sock"

    @classmethod
    def from_json(cls, text: str) -> LabPlan:
        d = json.loads(text)
        d["nodes"] = tuple(NodePlan(**n) for n in d["nodes"])
        d["fabrics"] = tuple(FabricPlan(**f) for f in d["fabrics"])
        line = d["line"]
        line["paths"] = tuple(LinePathPlan(**{**p, "roadms": tuple(p.get("roadms", ()))}) for p in line["paths"])
        line["client_ports"] = tuple(line.get("client_ports", (2, 400)))
        d["line"] = LinePlan(**line)
        d["store"] = StorePlan(**d["store"]) if d["store"] else None
        d["known_networks"] = tuple(d.get("known_networks", ()))
        sched = d.get("scheduler")
        d["scheduler"] = SchedulerPlan(**{**sched, "nodes": tuple(SlurmNodePlan(**n) for n in sched["nodes"])}) \
            if sched else None
        return cls(**d)


def clashes(plan: LabPlan, other: LabPlan) -> list[str]:
    """What two labs would fight over on one host: their names (prefix), state, the management
    network the host routes, and the host-wide ports of the store and of slurmctld.  Fabrics and
    the line live inside the labs' namespaces and may repeat."""
    out = []
    if plan.prefix == other.prefix:
        out.append(f"both name their namespaces and links {plan.prefix}-* (emulation.prefix)")
    if plan.state_dir.rstrip("/") == other.state_dir.rstrip("/"):
        out.append(f"both keep their state in {plan.state_dir} (emulation.state_dir)")
    mine, theirs = (ipaddress.ip_interface(p.controller_address).network for p in (plan, other))
    if mine.overlaps(theirs):
        out.append(f"their management networks overlap ({mine} and {theirs}: emulation.address_plan.management "
                   "and the devices' mgmt addresses)")
    if plan.store and other.store:
        if plan.store.port == other.store.port:
            out.append(f"both stores listen on port {plan.store.port} (metrics.url)")
        if plan.store.data_dir == other.store.data_dir:
            out.append(f"both stores keep their data in {plan.store.data_dir} (the inventory's name)")
    if plan.scheduler and other.scheduler and plan.scheduler.port == other.scheduler.port:
        out.append(f"both run slurmctld on port {plan.scheduler.port} (emulation.slurm_port)")
    return out

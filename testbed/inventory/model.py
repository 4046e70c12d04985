"""The inventory schema: what a DCI testbed is made of, as pydantic models.

Every field here is documented in ``inventory/README.md``; keep the two in step.  Secrets are
never values of this model: credentials hold references (an environment variable, a file, an SSH
key path) that are resolved only when a driver connects.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from emulator.line import roce
from testbed.redact import secret_params

NAME_RE = r"^[a-z0-9][a-z0-9-]{0,30}$"
Name = Annotated[str, Field(pattern=NAME_RE)]

# Every address of an emulated lab comes from the RFC 2544 benchmarking range.
BENCHMARK_NET = ipaddress.ip_network("198.18.0.0/15")


class Strict(BaseModel):
    """Unknown fields are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceKind(str, Enum):
    OTN_TERMINAL = "otn_terminal"
    ROADM = "roadm"
    GATEWAY = "gateway"
    GPU_NODE = "gpu_node"


class PathKind(str, Enum):
    WORKING = "working"
    PROTECTION = "protection"
    RESTORATION = "restoration"


# Management protocol each kind speaks, and its usual port.
PROTOCOL_OF_KIND: dict[DeviceKind, tuple[str, int]] = {
    DeviceKind.OTN_TERMINAL: ("netconf", 830),
    DeviceKind.ROADM: ("netconf", 830),
    DeviceKind.GATEWAY: ("ssh", 22),
    DeviceKind.GPU_NODE: ("ssh", 22),
}


class SecretRef(Strict):
    """Where a secret lives; exactly one of ``env`` or ``file``."""

    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)):
            raise PydanticCustomError(
                "literal_secret",
                "a literal secret is written here",
                {"fix": "never store secrets here: write {env: VARIABLE_NAME} or {file: /path/to/secret-file}"},
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise PydanticCustomError(
                "secret_ref", "a secret reference needs exactly one of 'env' or 'file'",
                {"fix": "write {env: VARIABLE_NAME} or {file: /path/to/secret-file}"},
            )
        return self


class SshKeyRef(Strict):
    path: str = Field(description="private key file; relative paths are from the inventory's folder")
    passphrase: SecretRef | None = None


class HostKey(Strict):
    """How the controller verifies the device's SSH host key (never blindly trusted)."""

    known_hosts: str | None = None
    fingerprint: str | None = Field(None, pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$")

    @model_validator(mode="after")
    def _one(self) -> HostKey:
        if (self.known_hosts is None) == (self.fingerprint is None):
            raise PydanticCustomError(
                "host_key", "host_key needs exactly one of 'known_hosts' or 'fingerprint'",
                {"fix": "write {known_hosts: /path/to/known_hosts} or {fingerprint: 'SHA256:...'}"},
            )
        return self


class Credentials(Strict):
    username: str = Field(min_length=1)
    password: SecretRef | None = None
    ssh_key: SshKeyRef | None = None

    @model_validator(mode="after")
    def _some_auth(self) -> Credentials:
        if self.password is None and self.ssh_key is None:
            raise PydanticCustomError(
                "no_auth", "credentials give neither a password reference nor an SSH key",
                {"fix": "add ssh_key: {path: ...} or password: {env: VARIABLE_NAME}"},
            )
        return self


class Management(Strict):
    # IPvAnyAddress yields IPv4Address or IPv6Address as before, but one error (not one per union member).
    address: IPvAnyAddress
    port: int | None = Field(None, ge=1, le=65535)
    protocol: Literal["netconf", "ssh"] | None = None


class Device(Strict):
    name: Name
    kind: DeviceKind
    site: Name | None = Field(None, description="required except for in-line ROADMs")
    mgmt: Management
    credentials: Credentials
    host_key: HostKey | None = None
    data_address: ipaddress.IPv4Address | None = Field(
        None, description="address on the site fabric (GPU nodes, gateways): training traffic")
    python: str | None = Field(None, description="GPU node: the Python interpreter of the node's environment")
    gpus: int | None = Field(
        None, ge=1, le=64,
        description="GPU node: its accelerators (default 1); a job runs at most this many ranks on it "
                    "(torchrun --nproc-per-node, the profile's nproc_per_node)")
    data_interface: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:-]{1,15}$",
        description="GPU node: the interface holding data_address (probe traffic, NCCL/gloo socket); "
                    "emulated nodes: fab0")
    driver: str | None = Field(
        None, description="how dcilab talks to it: openconfig or openroadm (otn_terminal), openroadm (roadm), "
                          "vrp (gateway), openssh (gpu_node, the default); drivers/registry.py lists them")
    wan_port: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^\S+$",
        description="gateway: the port toward the OTN terminal that WAN shaping acts on (default: the dialect's)")
    vendor: str | None = None
    model: str | None = None
    fault_injection: bool = Field(
        False, description="testbed/faults may send fault actions to this device (default: never)")

    @property
    def driver_name(self) -> str | None:
        """``driver:``, or its kind's default (DEFAULT_DRIVER); None when it has neither."""
        return self.driver or DEFAULT_DRIVER.get(self.kind)

    @property
    def protocol(self) -> str:
        return self.mgmt.protocol or PROTOCOL_OF_KIND[self.kind][0]

    @property
    def port(self) -> int:
        return self.mgmt.port or PROTOCOL_OF_KIND[self.kind][1]


class Site(Strict):
    name: Name
    description: str | None = None
    fabric_gbps: float = Field(gt=0, description="site fabric bandwidth toward the gateway (convergence ratio numerator)")


class FiberPath(Strict):
    name: Name
    kind: PathKind
    length_km: float = Field(gt=0, le=20000)
    roadms: list[Name] = Field(min_length=2, description="ROADMs crossed, from the A end to the Z end")
    fault_injection: bool = Field(
        False, description="testbed/faults may cut this path or load it with bit errors (default: never)")


RATE_RE = re.compile(r"^(\d+)G$")


def parse_rate_gbps(value: Any) -> int:
    """'800G' -> 800; line and client rates are written the way the gear labels them."""
    if isinstance(value, str) and (m := RATE_RE.match(value.strip())):
        return int(m.group(1))
    raise PydanticCustomError("rate", "rate '{value}' is not written like '800G'",
                              {"value": value, "fix": "write the rate in Gbit/s with a G suffix, e.g. 800G or 400G"})


class ClientPorts(Strict):
    count: int = Field(ge=1, le=64)
    rate: str

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        parse_rate_gbps(v)
        return v

    @property
    def gbps(self) -> int:
        return self.count * parse_rate_gbps(self.rate)


class ServiceEnd(Strict):
    otn_terminal: Name
    gateway: Name


class Service(Strict):
    """The OTN connection between two sites, with its protection and restoration routes."""

    name: Name
    a_end: ServiceEnd
    z_end: ServiceEnd
    line_rate: str = "800G"
    client_ports: ClientPorts
    working_path: Name
    protection_path: Name | None = Field(None, description="1+1 (ODU SNCP) protection route")
    restoration_paths: list[Name] = Field(default_factory=list, description="ASON restoration routes")

    @field_validator("line_rate")
    @classmethod
    def _line_rate(cls, v: str) -> str:
        gbps = parse_rate_gbps(v)
        if gbps % 100 or not 100 <= gbps <= 1600:
            raise PydanticCustomError("rate", "line rate {value} is not N x 100G between 100G and 1600G",
                                      {"value": v, "fix": "use a Flex-O step such as 400G or 800G"})
        return v

    @property
    def line_gbps(self) -> int:
        return parse_rate_gbps(self.line_rate)


class Metrics(Strict):
    """The InfluxDB-compatible store iteration timings go to (InfluxDB 2.x/3.x, or VictoriaMetrics)."""

    url: str = Field(pattern=r"^https?://[^\s/]+(/.*)?$")
    org: str = "dcilab"
    bucket: str = "dcilab"
    token: SecretRef | None = None

    @field_validator("url")
    @classmethod
    def _refuse_credentials(cls, url: str) -> str:
        """A user:password@ in the URL would be a literal secret, and the URL is written to
        testbed.json and the logs; the token field holds a reference instead."""
        if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            raise PydanticCustomError(
                "credentials_in_url", "the URL carries credentials (user:password@)",
                {"fix": "write the URL without them (https://influxdb.example.net:8086) and give the secret "
                        "as token: {env: VARIABLE_NAME} or {file: /path/to/secret-file} (InfluxDB 1.8: "
                        "the secret holds user:password)"},
            )
        names = secret_params(urlsplit(url).query)
        if names:
            raise PydanticCustomError(
                "credentials_in_url", "the URL carries a secret in its query ({names})",
                {"names": ", ".join(f"{n}=" for n in names),
                 "fix": "write the URL without it and give the secret as token: {env: VARIABLE_NAME} or "
                        "{file: /path/to/secret-file}"},
            )
        return url


# the drivers whose gear the emulated lab can run (emulator/lab/devices.py), per kind; a gateway
# runs in every dialect the emulator knows (emulated_drivers)
EMULATED_DRIVERS: dict[DeviceKind, tuple[str, ...]] = {
    DeviceKind.OTN_TERMINAL: ("openconfig", "openroadm"),
    DeviceKind.ROADM: ("openroadm",),
    DeviceKind.GATEWAY: ("vrp",),
    DeviceKind.GPU_NODE: ("openssh",),
}


def emulated_drivers(kind: DeviceKind) -> tuple[str, ...]:
    """The drivers of ``kind`` the emulated lab can run: the built-in ones, and for gateways every
    CLI dialect registered with the emulator (a DCILAB_PLUGINS module may add one)."""
    if kind == DeviceKind.GATEWAY:
        from emulator.gateway import dialects
        return tuple(dict.fromkeys([*EMULATED_DRIVERS[kind], *dialects.names()]))
    return EMULATED_DRIVERS[kind]
# a kind with one obvious driver may leave driver: out
DEFAULT_DRIVER: dict[DeviceKind, str] = {DeviceKind.GPU_NODE: "openssh"}


class AddressPlan(Strict):
    management: ipaddress.IPv4Network = Field(description="management network; its first host is the controller")
    fabrics: dict[Name, ipaddress.IPv4Network] = Field(description="site name -> site fabric subnet")
    line: ipaddress.IPv4Network = Field(description="a /30 (or larger) for the gateways' ends of the optical line")


class Transport(Strict):
    """The RoCEv2 RC + NCCL model the emulated line imposes on the nodes' TCP (emulator/line/roce.py):
    what the trial's transport suffered from bit errors and outages, at the real line's parameters.
    ``model: none`` leaves plain TCP.  Defaults are NCCL's (NCCL_IB_TIMEOUT 20, NCCL_IB_RETRY_CNT 7)."""

    model: Literal["roce-rc", "none"] = "roce-rc"
    timeout: int = Field(roce.NCCL_IB_TIMEOUT, ge=0, le=roce.MAX_TIMEOUT, description="NCCL_IB_TIMEOUT: ACK timeout 4.096 us x 2^timeout (0 = never)")
    retry_cnt: int = Field(roce.NCCL_IB_RETRY_CNT, ge=0, le=roce.MAX_RETRY_CNT, description="NCCL_IB_RETRY_CNT: retry budget = retry_cnt x ACK timeout")
    adaptive_retransmission: bool = Field(False, description="ConnectX adaptive retransmission: 2 ms first timeout, doubling")
    mtu: Literal[256, 512, 1024, 2048, 4096] = 4096
    qp_gbps: float | None = Field(None, gt=0, le=100000, description="rate one QP sends at (its window); default the line rate")
    tail_loss: float = Field(roce.TAIL_LOSS, ge=0, le=1,
                             description="share of loss events that wait for the ACK timer: 1 / packets per NCCL step")
    rate_change_hit: bool = Field(True, description="a line rate change loses what is in flight (not hitless)")
    outage_hold: Literal["active", "in-flight"] = Field(
        "active", description="which QPs an outage holds until their ACK timer: any that carried traffic within the "
                              "last ACK timeout (the trial's many QPs), or only those with a frame in flight")
    abort_below_efficiency: float = Field(roce.ABORT_BELOW_EFFICIENCY, ge=0, le=1, description="calibrated: a QP below this go-back-N efficiency stalls")


class Scheduler(Strict):
    """Who starts training jobs on the GPU nodes: dcilab itself over SSH (no ``scheduler:`` block),
    or the cluster's workload manager, for nodes that only it may start work on."""

    kind: Literal["slurm"]
    partition: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                           description="the Slurm partition the GPU nodes are in")
    account: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                description="the Slurm account jobs are charged to (sbatch --account)")
    conf: str | None = Field(None, min_length=1, description="the slurm.conf the controller's srun, squeue, scontrol "
                             "and scancel read (SLURM_CONF); default the system's; an emulated lab writes its own")
    pending_timeout_s: float = Field(300.0, gt=0, le=86400, description="a job Slurm has not started after this "
                                     "is given up and reported as not run (srun --immediate)")
    gpu_gres: str | None = Field("gpu", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="the GRES a node's GPUs are (srun --gres=<this>:<ranks per node>, so "
                                             "Slurm hands each task its GPUs); null on a cluster without GPU GRES")


class Lease(Strict):
    """Where the testbed's lease lives when several controllers drive the same gear."""

    dir: str = Field(min_length=1, description="a folder every controller of this testbed mounts, on a file system "
                     "with POSIX locks (NFSv4, CephFS); relative paths are from the inventory's folder")


class Emulation(Strict):
    """Only for an emulated lab: how `dcilab lab up` builds it on this machine."""

    prefix: str = Field("dcl", pattern=r"^[a-z][a-z0-9]{0,5}$",
                        description="names the lab's namespaces and host links (<prefix>-<device>, <prefix>-mgmt): "
                                    "labs of different prefixes coexist on one host")
    state_dir: str = Field("/run/dcilab/emulated", description="keys, configs, pid files; removed by lab down")
    address_plan: AddressPlan
    bandwidth_scale: float = Field(gt=0, le=1, description="emulated rate = real rate x scale (keeps 800G:400G ratios)")
    mtu: int = Field(9000, ge=1280, le=9000)
    buffer_ms: float = Field(50, gt=0, le=1000, description="line queue depth before tail drop, in ms at the line rate")
    personalities: Any = Field(None, exclude=True, description="gone: each device's driver: says what it runs")
    metrics_store: Literal["victoria-metrics", "none"] = "victoria-metrics"
    transport: Transport = Field(default_factory=Transport)
    slurm_port: int = Field(6817, ge=1024, le=65535,
                            description="the emulated slurmctld's port on this host (two labs need two ports)")
    scheduler: Literal["none", "slurm"] = Field(
        "none", description="slurm: the lab runs a real Slurm (munged and slurmctld on the controller, a slurmd in "
                            "each GPU node's namespace, partition dci unless the scheduler: block names another); "
                            "jobs go through it when the inventory has a scheduler: block, else over SSH")

    @field_validator("personalities")
    @classmethod
    def _personalities_moved(cls, v: Any) -> None:
        if v is not None:
            raise PydanticCustomError(
                "moved", "personalities is gone: the emulated lab runs what each device's driver: names",
                {"fix": "remove emulation.personalities and write driver: NAME on each device instead "
                        "(e.g. dc-b-otn: openroadm becomes driver: openroadm under dc-b-otn)"})
        return None


class Inventory(Strict):
    version: Literal[1] = 1
    name: Name
    description: str | None = None
    sites: list[Site] = Field(min_length=1)
    devices: list[Device] = Field(min_length=1)
    fiber_paths: list[FiberPath] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    metrics: Metrics | None = None
    lease: Lease | None = Field(None, description="a shared lease folder; default: this controller's own")
    scheduler: Scheduler | None = Field(None, description="jobs through a workload manager; default: dcilab starts "
                                                           "them on the nodes over SSH")
    emulation: Emulation | None = None

    _source: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The file this inventory was loaded from."""
        return self._source

    def resolve_path(self, value: str) -> Path:
        """File references are relative to the inventory's folder, as in docker-compose."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self._source is not None:
            path = self._source.parent / path
        return Path(os.path.normpath(path))

    def node_gpus(self, dev: Device) -> int:
        """The ranks a GPU node can run at once: ``gpus``, 1 when not given."""
        return dev.gpus or 1

    def node_python(self, dev: Device) -> str:
        """The interpreter a GPU node's jobs, probe and facts run with: ``python`` (default
        python3); in an emulated lab a relative path is the controller's, from this file's folder."""
        py = dev.python or "python3"
        if self.is_emulated and not Path(py).is_absolute() and "/" in py:
            py = str(self.resolve_path(py))
        return py

    # --- lookups the framework uses -------------------------------------------------------
    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(f"no device {name!r} in inventory {self.name!r}")

    def devices_of(self, kind: DeviceKind, site: str | None = None) -> list[Device]:
        return [d for d in self.devices if d.kind == kind and (site is None or d.site == site)]

    def fiber_path(self, name: str) -> FiberPath:
        for p in self.fiber_paths:
            if p.name == name:
                return p
        raise KeyError(f"no fiber path {name!r} in inventory {self.name!r}")

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(f"no site {name!r} in inventory {self.name!r}")

    @property
    def is_emulated(self) -> bool:
        return self.emulation is not None

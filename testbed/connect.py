"""Inventory device -> connected driver.  Secrets are resolved here, at connect time, from the
references the inventory holds ({env:} / {file:}); host keys come from the inventory's
known_hosts or fingerprint.  Drivers never see the inventory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from drivers import SshTarget, registry
from drivers.errors import AuthFailed, Unsupported
from testbed.inventory import DeviceKind, Inventory
from testbed.inventory.model import Device, SecretRef


class SecretUnavailable(AuthFailed):
    """A secret reference that cannot be resolved (unset variable, unreadable or empty file)."""


def resolve_secret(inv: Inventory, device: str, ref: SecretRef, what: str) -> str:
    """The value behind ``ref``; the error names the device, the field and the variable/file."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise SecretUnavailable(f"{what}: environment variable {ref.env} is not set "
                                    f"(export {ref.env}=... before connecting)", device)
        if value == "":
            raise SecretUnavailable(f"{what}: environment variable {ref.env} is empty", device)
        return value
    assert ref.file is not None
    path = inv.resolve_path(ref.file)
    try:
        value = Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise SecretUnavailable(f"{what}: cannot read secret file {path}: {exc.strerror or exc}", device) from None
    if not value:
        raise SecretUnavailable(f"{what}: secret file {path} is empty", device)
    return value


def target_for(inv: Inventory, dev: Device, timeout_s: float = 10.0) -> SshTarget:
    """The SshTarget of an inventory device (secrets resolved now)."""
    cred = dev.credentials
    password = resolve_secret(inv, dev.name, cred.password, "credentials.password") if cred.password else None
    key_path = passphrase = None
    if cred.ssh_key is not None:
        key_path = str(inv.resolve_path(cred.ssh_key.path))
        if not os.path.isfile(key_path):
            raise SecretUnavailable(f"credentials.ssh_key.path: key file {key_path} does not exist", dev.name)
        if cred.ssh_key.passphrase is not None:
            passphrase = resolve_secret(inv, dev.name, cred.ssh_key.passphrase, "credentials.ssh_key.passphrase")
    if dev.host_key is None:
        raise Unsupported("host key verification", "none", ["host_key.known_hosts", "host_key.fingerprint"], dev.name)
    kh = str(inv.resolve_path(dev.host_key.known_hosts)) if dev.host_key.known_hosts else None
    return SshTarget(host=str(dev.mgmt.address), port=dev.port, username=cred.username, password=password,
                     key_path=key_path, key_passphrase=passphrase, known_hosts=kh,
                     fingerprint=dev.host_key.fingerprint, timeout_s=timeout_s, name=dev.name)


def driver_name(dev: Device) -> str:
    """The device's ``driver:`` or its kind's default (the inventory check made sure of one)."""
    name = dev.driver_name
    if name is None:
        raise Unsupported(f"{dev.kind.value} without a driver", "none", registry.names(dev.kind.value), dev.name)
    return name


def _device(inv: Inventory, name: str, kind: DeviceKind) -> Device:
    dev = inv.device(name)
    if dev.kind != kind:
        raise Unsupported(f"{kind.value} driver for a {dev.kind.value}", name, [kind.value], name)
    return dev


def _driver(dev: Device) -> Any:
    try:
        return registry.load(dev.kind.value, driver_name(dev))
    except Unsupported as exc:
        raise Unsupported(exc.what, exc.requested, exc.supported, dev.name) from None


def connect_otn(inv: Inventory, name: str, rpc_timeout_s: float = 30.0, confirm_timeout_s: int = 30,  # type: ignore[no-untyped-def]
                timeout_s: float = 10.0):
    dev = _device(inv, name, DeviceKind.OTN_TERMINAL)
    return _driver(dev)(target_for(inv, dev, timeout_s), rpc_timeout_s=rpc_timeout_s,
                        confirm_timeout_s=confirm_timeout_s)


def connect_roadm(inv: Inventory, name: str, timeout_s: float = 10.0, **kw: Any):  # type: ignore[no-untyped-def]
    dev = _device(inv, name, DeviceKind.ROADM)
    return _driver(dev)(target_for(inv, dev, timeout_s), **kw)


def connect_gateway(inv: Inventory, name: str, wan_port: str | None = None, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    """``wan_port``: this call's port; default the device's ``wan_port:``, then the dialect's."""
    from drivers.gateway import Gateway
    dev = _device(inv, name, DeviceKind.GATEWAY)
    return Gateway(target_for(inv, dev, timeout_s), _driver(dev), wan_port=wan_port or dev.wan_port)


def connect_gpu_node(inv: Inventory, name: str, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    """Over its driver (OpenSSH), or, where a Slurm scheduler owns the nodes, through Slurm
    (srun: nobody logs in to a node the scheduler owns)."""
    dev = _device(inv, name, DeviceKind.GPU_NODE)
    if inv.scheduler is not None and inv.scheduler.kind == "slurm":
        from testbed.jobs.slurm import client_for
        from testbed.jobs.slurm_step import StepNode
        return StepNode(client_for(inv), None, name)
    return _driver(dev)(target_for(inv, dev, timeout_s))


def connect(inv: Inventory, name: str, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    """The connected driver of any device, by its kind (``timeout_s``: to connect and log in)."""
    kind = inv.device(name).kind
    return {DeviceKind.OTN_TERMINAL: connect_otn, DeviceKind.ROADM: connect_roadm,
            DeviceKind.GATEWAY: connect_gateway, DeviceKind.GPU_NODE: connect_gpu_node}[kind](
        inv, name, timeout_s=timeout_s)


def wan_shaping_kbps(inv: Inventory, site: str, ratio: float) -> int:
    """The gateway CIR giving the site a ``ratio``:1 convergence (site fabric / WAN): the real
    rate, on real gear and on the emulated lab alike (an emulated gateway scales its own shaper)."""
    from drivers.gateway import shaping_kbps_for_ratio
    return shaping_kbps_for_ratio(inv.site(site).fabric_gbps, ratio)

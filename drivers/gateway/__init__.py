"""Gateways over netmiko: one framework (:mod:`.base`), command dialects as data (:mod:`.dialects`)."""

from __future__ import annotations

from .. import SshTarget
from .base import ConfigResult, Counters, Dialect, Gateway, shaping_kbps_for_ratio
from .dialects import DIALECTS


def connect_gateway(dialect: str, target: SshTarget, wan_port: str | None = None) -> Gateway:
    """A gateway driver for the dialect registered under ``dialect`` (drivers.registry: the
    built-in ones and any a DCILAB_PLUGINS module registered)."""
    from .. import registry
    return Gateway(target, registry.load("gateway", dialect), wan_port=wan_port)


__all__ = ["ConfigResult", "Counters", "DIALECTS", "Dialect", "Gateway", "connect_gateway", "shaping_kbps_for_ratio"]

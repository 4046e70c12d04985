"""Gateways over netmiko: one framework (:mod:`.base`), command dialects as data (:mod:`.dialects`)."""

from __future__ import annotations

from .. import SshTarget
from ..errors import Unsupported
from .base import ConfigResult, Counters, Dialect, Gateway, shaping_kbps_for_ratio
from .dialects import DIALECTS


def connect_gateway(dialect: str, target: SshTarget, wan_port: str | None = None) -> Gateway:
    if dialect not in DIALECTS:
        raise Unsupported("gateway dialect", dialect, DIALECTS, target.label)
    return Gateway(target, DIALECTS[dialect], wan_port=wan_port)


__all__ = ["ConfigResult", "Counters", "DIALECTS", "Dialect", "Gateway", "connect_gateway", "shaping_kbps_for_ratio"]

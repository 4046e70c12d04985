"""Command dialects of gateways, as data.  A new vendor is a new module here defining a
:class:`drivers.gateway.base.Dialect` and an entry in DIALECTS; the framework does not change."""

from __future__ import annotations

from ..base import Dialect
from .huawei_vrp import DIALECT as HUAWEI_VRP

DIALECTS: dict[str, Dialect] = {"vrp": HUAWEI_VRP, "huawei_vrp": HUAWEI_VRP}

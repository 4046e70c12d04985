"""Command dialects of gateways, as data.  A new vendor is one module defining a
:class:`drivers.gateway.base.Dialect` and registering it (``drivers.registry.register("gateway",
NAME, "module:DIALECT", ...)``), here or in a lab's own module named in DCILAB_PLUGINS; the
framework does not change.  DIALECTS lists the built-in ones."""

from __future__ import annotations

from ..base import Dialect
from .huawei_vrp import DIALECT as HUAWEI_VRP

DIALECTS: dict[str, Dialect] = {"vrp": HUAWEI_VRP, "huawei_vrp": HUAWEI_VRP}

"""The testbed inventory: a YAML description of sites, gear, fiber paths and services."""

from testbed.inventory.load import InventoryError, Problem, load_inventory
from testbed.inventory.model import (
    Device,
    DeviceKind,
    Emulation,
    FiberPath,
    Inventory,
    Metrics,
    PathKind,
    SecretRef,
    Service,
    Site,
)

__all__ = [
    "Device", "DeviceKind", "Emulation", "FiberPath", "Inventory", "InventoryError", "Metrics", "PathKind",
    "Problem", "SecretRef", "Service", "Site", "load_inventory",
]

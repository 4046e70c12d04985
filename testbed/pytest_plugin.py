"""dcilab's pytest plugin: the testbed options and fixtures every suite shares.

This first version knows the inventory and the emulated lab; the trial's fixtures (drivers,
faults, jobs, baselines) build on it.  Registered by the root conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.cli import default_inventory
from testbed.inventory import Inventory, InventoryError, load_inventory


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dcilab")
    group.addoption("--inventory", type=Path, default=None,
                    help="testbed inventory (default: $DCILAB_INVENTORY or inventory/emulated.yaml)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs root and Linux network namespaces (builds the emulated lab)")


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot build the emulated lab, or None if it can."""
    if os.geteuid() != 0:
        return "the emulated lab needs root (network namespaces, TAP devices); run the tests as root"
    if not Path("/proc/self/ns/net").exists() or not Path("/dev/net/tun").exists():
        return "this kernel lacks network namespaces or /dev/net/tun"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = lab_unavailable_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def inventory(pytestconfig: pytest.Config) -> Inventory:
    path = pytestconfig.getoption("--inventory") or default_inventory()
    try:
        return load_inventory(path)
    except InventoryError as exc:
        pytest.exit(str(exc), returncode=4)


@pytest.fixture(scope="session")
def emulated_lab(inventory: Inventory) -> Iterator[object]:
    """The emulated lab, built once per session and always removed afterwards."""
    from emulator.lab import build
    from testbed.emulated_lab import lab_plan

    if not inventory.is_emulated:
        pytest.skip(f"inventory {inventory.name!r} describes real gear, not an emulated lab")
    plan = lab_plan(inventory)
    build.up(plan, log=lambda *_: None)
    try:
        yield plan
    finally:
        build.down(plan, quiet=True)

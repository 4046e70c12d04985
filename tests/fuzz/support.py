"""What every fuzz target shares: the Hypothesis settings, and the emulators started without the lab.

Settings: ``derandomize=True`` (examples are derived from each test's source, so every CI run
tries the same inputs: a red run reproduces on a laptop with the same command, and a green run
means the same thing tomorrow) and no example database (nothing written beside the checkout,
nothing remembered from a previous run that CI would not see).  ``deadline=None``: a loaded
2-core CI machine makes any per-example deadline flaky.  Example counts are chosen so that the
whole directory runs in well under 3 minutes on 2 cores; for a longer, random exploration run
``DCILAB_FUZZ_SCALE=20 DCILAB_FUZZ_RANDOM=1 .venv/bin/pytest tests/fuzz`` (a failure prints the
``@reproduce_failure`` blob to pin it).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import paramiko
from hypothesis import HealthCheck, settings

from emulator.gateway.device import STAT_NAMES

SCALE = float(os.environ.get("DCILAB_FUZZ_SCALE", "1"))
RANDOM = os.environ.get("DCILAB_FUZZ_RANDOM", "") not in ("", "0")


def fuzz(max_examples: int) -> settings:
    """Settings for one fuzz test; ``max_examples`` is sized for CI (see the module's docstring)."""
    return settings(max_examples=max(1, int(max_examples * SCALE)), deadline=None, derandomize=not RANDOM,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.02)


# ------------------------------------------------------------------------- the gateway's fakes

class FakeLinks:
    """Three links that are up, with counters that never move: no namespace needed."""

    def info(self, ifname: str) -> dict[str, Any] | None:
        return {"operstate": "up", "admin_up": True, "carrier": True, "mtu": 9000,
                "address": "02:00:00:00:00:01", "ifindex": 7, "ipv4": ["198.19.240.1/30"]}

    def stats(self, ifname: str) -> dict[str, int]:
        return {k: 0 for k in STAT_NAMES}


class FakeTc:
    """tc that remembers the root qdisc per link and always succeeds."""

    def __init__(self) -> None:
        self.roots: dict[str, str] = {}

    def __call__(self, args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["qdisc", "replace"]:
            self.roots[args[3]] = "tbf"
        elif args[:2] == ["qdisc", "del"]:
            if not self.roots.pop(args[3], None):
                return 2, "", "Error: Cannot delete qdisc with handle of zero."
        elif "show" in args:
            dev = args[args.index("dev") + 1]
            return 0, json.dumps([{"kind": self.roots.get(dev, "noqueue"), "bytes": 1, "drops": 0,
                                   "overlimits": 0}]), ""
        return 0, "", ""


GW_PORTS = {"100GE1/0/1": "wan0", "100GE1/0/2": "fab0", "MEth0/0/0": "mgmt0"}
USER, PASSWORD = "admin", "fuzz-pw"


def ssh_transport(port: int, timeout: float = 10.0) -> paramiko.Transport:
    """A logged-in SSH connection to a local emulator (password auth, host key not checked: the
    server was started by this process)."""
    t = paramiko.Transport(socket.create_connection(("127.0.0.1", port), timeout=timeout))
    t.banner_timeout = t.auth_timeout = timeout
    t.connect(username=USER, password=PASSWORD)
    return t

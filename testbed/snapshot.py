"""The testbed snapshot every trial report carries: the inventory as loaded, and what each
device says it is and runs (vendor, model, software and YANG module versions, for GPU nodes
python/torch/CUDA/NCCL/kernel) READ FROM THE DEVICES, plus dcilab's own version and git revision,
the controller and the time.

Devices are read in parallel, each in its own thread.  A device that refuses, fails or does not
answer within the deadline gets ``{"error": REASON}`` and never stops the others: the report then
says what was verified and what was not.  The inventory holds secret *references* only, so it is
included whole.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from testbed import connect as _connect
from testbed.inventory import DeviceKind, Inventory
from testbed.inventory.model import Device
from testbed.durable import write_text_durably
from testbed.redact import redact_url

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = 1

Connect = Callable[[Inventory, str], Any]


def _read_device(inv: Inventory, dev: Device, connect: Connect, timeout_s: float) -> dict[str, Any]:
    drv = connect(inv, dev.name)
    try:
        if dev.kind == DeviceKind.GPU_NODE:
            return drv.facts(python=inv.node_python(dev), timeout=timeout_s).to_dict()
        return drv.facts().to_dict()
    finally:
        drv.close()


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def dcilab_version() -> dict[str, Any]:
    """dcilab's package version, and the git revision of this tree (None outside a git checkout);
    ``git_dirty``: tracked files differ from that revision."""
    try:
        ver: str | None = version("dcilab")
    except PackageNotFoundError:
        ver = None
    rev = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if rev else None
    return {"version": ver, "git_revision": rev, "git_dirty": None if status is None else bool(status)}


def snapshot(inventory: Inventory, connect: Connect = _connect.connect, timeout_s: float = 60.0) -> dict[str, Any]:
    """Read every device of ``inventory`` in parallel (``connect(inventory, name)`` gives a driver
    with ``facts()``); returns a JSON-serialisable dict.  Whatever has not answered after
    ``timeout_s`` seconds is recorded as an error and left to finish (and close) on its own."""
    taken_at = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def work(dev: Device) -> None:
        try:
            entry = _read_device(inventory, dev, connect, timeout_s)
        except Exception as exc:  # noqa: BLE001 - one device's failure is its entry, not the snapshot's
            entry = {"error": f"{type(exc).__name__}: {exc}"}
        with lock:
            results.setdefault(dev.name, entry)   # a late answer never replaces the timeout entry

    threads = [threading.Thread(target=work, args=(d,), name=f"snapshot-{d.name}", daemon=True)
               for d in inventory.devices]
    for t in threads:
        t.start()
    deadline = t0 + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for d in inventory.devices:
            results.setdefault(d.name, {"error": f"no answer within {timeout_s:g} s"})
        devices = {d.name: results[d.name] for d in inventory.devices}
    return {
        "schema": SCHEMA,
        "taken_at": taken_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "elapsed_s": round(time.monotonic() - t0, 3),
        "controller": {"hostname": socket.gethostname(), "platform": platform.platform(),
                       "python": platform.python_version()},
        "dcilab": dcilab_version(),
        "inventory_source": str(inventory.source) if inventory.source else None,
        "inventory": _shown(inventory.model_dump(mode="json")),
        "devices": devices,
    }


def _shown(inv: dict[str, Any]) -> dict[str, Any]:
    """The inventory as testbed.json keeps it: a metrics URL's user:password@ never written (the
    schema refuses one; an inventory built another way may still carry it)."""
    metrics = inv.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("url"), str):
        inv["metrics"] = {**metrics, "url": redact_url(metrics["url"])}
    return inv


def write_snapshot(snap: dict[str, Any], path: str | Path) -> Path:
    """Write ``snap`` as JSON to ``path`` (folders made; replaced atomically and fsynced, so a
    report never holds half a snapshot, not even after a power loss)."""
    return write_text_durably(Path(path), json.dumps(snap, indent=2) + "\n")


__all__ = ["dcilab_version", "snapshot", "write_snapshot"]

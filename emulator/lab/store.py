"""The lab's metrics store: Debian's VictoriaMetrics on loopback.

Debian's InfluxDB (1.6.7) lacks ``/api/v2/write``; VictoriaMetrics accepts it, so influxdb-client
writes to it unchanged.  A real lab points the inventory at its InfluxDB 2.x/3.x instead.
Data lives outside the lab's state directory so that `lab down` does not erase run history.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from emulator.lab.plan import LabPlan, StorePlan
from emulator.lab.sys import LabError, cmdline, tcp_probe, wait_for

BINARY = "/usr/bin/victoria-metrics"


def healthy(store: StorePlan, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{store.host}:{store.port}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def is_ours(pid: int, store: StorePlan) -> bool:
    """This store's process: its data folder is an argument to the letter (another lab's folder
    may share a prefix with it)."""
    cmd = cmdline(pid)
    return "victoria-metrics" in cmd and f"-storageDataPath={store.data_dir}" in cmd.split()


def start(plan: LabPlan, store: StorePlan) -> int:
    if tcp_probe(store.host, store.port, 0.5) == "open":
        raise LabError(f"{store.host}:{store.port} is already in use by another program; stop it, or set "
                       "metrics.url to another port (or emulation.metrics_store: none) in the inventory")
    Path(store.data_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(plan.state_dir) / "victoria-metrics.log", "ab") as log:
        proc = subprocess.Popen(
            [BINARY, f"-httpListenAddr={store.host}:{store.port}", f"-storageDataPath={store.data_dir}",
             "-search.latencyOffset=1s", "-loggerLevel=WARN", "-retentionPeriod=1y",
             # a spooled batch replayed after an outage must not count twice (InfluxDB overwrites)
             "-dedup.minScrapeInterval=1ms"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        )
    try:
        wait_for(lambda: proc.poll() is not None or healthy(store, 0.3), 20, "VictoriaMetrics to answer /health")
    except LabError:
        proc.kill()
        raise
    if proc.poll() is not None:
        tail = (Path(plan.state_dir) / "victoria-metrics.log").read_text(errors="replace")[-400:]
        raise LabError(f"VictoriaMetrics exited at start (code {proc.returncode}): {tail.strip()}")
    return proc.pid

"""Service-disruption probe between two GPU nodes of different sites, run on the nodes themselves.

The receiver and the sender of :mod:`drivers.probe` run on the nodes through the GPU node driver
(SSH), or through Slurm as steps of the training job (:mod:`testbed.jobs.slurm_step`) where the
nodes are the scheduler's, on each node's data interface, so the probe crosses the same gateways, OTN and fibers as
the training traffic, like a transport test set plugged into the sites.  Real nodes get the
probe shipped into a scratch folder (their Python needs scapy); emulated nodes run this checkout.

    probe = ServiceProbe(inv, "dc-a-gpu1", "dc-b-gpu1", duration_s=600, log_dir=d).start()
    try:
        ...                                  # apply the fault here
        report = probe.finish(early=True)    # stop the stream now; drivers.probe's ProbeReport as a dict
    finally:
        probe.close()                        # stops both ends on any way out
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.errors import DriverError
from drivers.gpu_node import GpuNode, RemoteJob
from testbed.inventory import DeviceKind, Inventory

ROOT = Path(__file__).resolve().parents[2]


class ProbeFailed(RuntimeError):
    """The probe could not run or gave no report (the reason and the node's output)."""


def _probe_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("drivers/__init__.py")      # the probe needs nothing of the drivers package
        tar.addfile(info, io.BytesIO(b""))
        for f in sorted((ROOT / "drivers" / "probe").glob("*.py")):
            tar.add(str(f), arcname=f"drivers/probe/{f.name}")
    return buf.getvalue()


class ServiceProbe:
    """One probe stream ``src`` -> ``dst`` for ``duration_s`` at ``rate_pps``; the receiver's
    report (disruption by the loss and the gap methods, delay before/after) when it ends."""

    def __init__(self, inv: Inventory, src: str, dst: str, *, duration_s: float, rate_pps: float = 2000.0,
                 size: int = 128, log_dir: str | Path, gap_threshold_ms: float = 10.0,
                 connect: Callable[[Inventory, str], GpuNode] | None = None, ship: bool | None = None,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        for n in (src, dst):
            d = inv.device(n)
            if d.kind != DeviceKind.GPU_NODE or d.data_address is None:
                raise ProbeFailed(f"{n}: the probe runs on GPU nodes with a data_address")
        if inv.device(src).site == inv.device(dst).site:
            raise ProbeFailed(f"{src} and {dst} are both in site {inv.device(src).site}: the probe must cross the WAN")
        if connect is None:
            from testbed.connect import connect_gpu_node as connect
        self.inv, self.src, self.dst = inv, src, dst
        self.duration_s, self.rate_pps, self.size = duration_s, rate_pps, size
        self.gap_threshold_ms = gap_threshold_ms
        self.log_dir = Path(log_dir)
        self._connect = connect
        self.ship = (not inv.is_emulated) if ship is None else ship
        self.log = log
        self.tag = uuid.uuid4().hex[:8]
        self.stream = 1 + int(self.tag, 16) % 60000     # also marks this probe's processes on the nodes
        self.nodes: dict[str, GpuNode] = {}
        self._dirs: dict[str, str] = {}
        self.jobs: dict[str, RemoteJob] = {}
        self.lines: dict[str, list[str]] = {src: [], dst: []}
        self._ready = threading.Event()
        self._sending = threading.Event()
        self.report: dict[str, Any] | None = None
        self.sender: dict[str, Any] | None = None
        self.started_ns: int | None = None
        self.error: str | None = None

    def _iface(self, name: str) -> str:
        d = self.inv.device(name)
        return d.data_interface or ("fab0" if self.inv.is_emulated else "")

    def _prefix(self, node: GpuNode, name: str) -> str:
        py = shlex.quote(self.inv.node_python(self.inv.device(name)))
        if not self.ship:
            return f"cd {shlex.quote(str(ROOT))} && PYTHONPATH={shlex.quote(str(ROOT))} {py} -m drivers.probe"
        remote = shlex.quote(self._workdir(node, name))
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as f:
            f.write(_probe_tar())
            f.flush()
            node.put(f.name, f"{self._workdir(node, name)}/probe.tar.gz")
            node.check(f"cd {remote} && tar xzf probe.tar.gz", timeout=30)
        return f"cd {remote} && PYTHONPATH={remote} {py} -m drivers.probe"

    def _workdir(self, node: GpuNode, name: str) -> str:
        """This probe's private folder on ``name`` (its code and logs; GpuNode.private_dir)."""
        if name not in self._dirs:
            self._dirs[name] = node.private_dir(f"dcilab-probe-{self.tag}")
        return self._dirs[name]

    def _on_line(self, name: str) -> Callable[[str], None]:
        def cb(line: str) -> None:
            self.lines[name].append(line)
            if "probe recv: ready" in line:
                self._ready.set()
            elif "probe send: sending" in line:
                self._sending.set()
        return cb

    def start(self) -> ServiceProbe:
        for n in (self.src, self.dst):
            if not self._iface(n):
                raise ProbeFailed(f"{n}: no data_interface in the inventory; the probe needs the interface "
                                  "holding data_address (add data_interface: to the device)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for n in (self.src, self.dst):
                self.nodes[n] = self._connect(self.inv, n)
            rx = self.nodes[self.dst]
            cmd = (f"{self._prefix(rx, self.dst)} recv --iface {self._iface(self.dst)} --duration "
                   f"{self.duration_s + 5:g} --first-seq 0 --rate-pps {self.rate_pps:g} --stream {self.stream} "
                   f"--gap-threshold-ms {self.gap_threshold_ms:g} --realtime")
            self.jobs[self.dst] = rx.start(cmd, f"{self._workdir(rx, self.dst)}/recv.log", self._on_line(self.dst))
            if not self._ready.wait(30):
                raise ProbeFailed(f"probe receiver on {self.dst} not ready within 30 s: "
                                  f"{' | '.join(self.lines[self.dst][-5:]) or 'no output'}")
            tx = self.nodes[self.src]
            dst_ip = self.inv.device(self.dst).data_address
            cmd = (f"{self._prefix(tx, self.src)} send --iface {self._iface(self.src)} --dst-ip {dst_ip} "
                   f"--rate-pps {self.rate_pps:g} --duration {self.duration_s:g} --size {self.size} "
                   f"--stream {self.stream} --realtime --spin-us 20")
            self.started_ns = time.time_ns()
            self.jobs[self.src] = tx.start(cmd, f"{self._workdir(tx, self.src)}/send.log", self._on_line(self.src))
            # return once frames flow, so a fault injected next falls inside the stream however long
            # the sender's start-up took (seconds on a busy node)
            if not self._sending.wait(30):
                raise ProbeFailed(f"probe sender on {self.src} not sending within 30 s: "
                                  f"{' | '.join(self.lines[self.src][-5:]) or 'no output'}")
            self.log(f"probe {self.src} -> {self.dst}: {self.rate_pps:g} pps for {self.duration_s:g} s")
        except (DriverError, OSError) as exc:
            self.close()
            raise ProbeFailed(f"probe {self.src} -> {self.dst} could not start: {exc}") from None
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _json(lines: list[str]) -> dict[str, Any] | None:
        for line in reversed(lines):
            s = line.strip()
            if s.startswith("{"):
                with contextlib.suppress(ValueError):
                    return json.loads(s)
        return None

    def _term(self, name: str, role: str) -> None:
        """SIGTERM the probe process itself (not its group: the shell and tee carrying its report
        would die with it); it stops sending/receiving and prints its report."""
        pattern = f"^[^ ]*python[^ ]* -m drivers[.]probe {role} .*--stream {self.stream} "   # not the shells
        self.nodes[name].run(f"pkill -TERM -f '{pattern}'; true", timeout=15)

    def finish(self, timeout: float | None = None, early: bool = False) -> dict[str, Any]:
        """The receiver's report.  ``early``: stop the stream now (sender first, the receiver half a
        second later for what is in flight); otherwise wait for its end (the stream's length + 15 s)."""
        timeout = self.duration_s + 15 if timeout is None else timeout
        try:
            if early:
                self._term(self.src, "send")
                self.jobs[self.src].wait(15)
                time.sleep(0.5)
                self._term(self.dst, "recv")
                timeout = 15
            for n in (self.src, self.dst):
                job = self.jobs.get(n)
                if job is None:
                    raise ProbeFailed(f"probe on {n} was not started")
                rc = job.wait(timeout)
                job.drain(5)
                out = self._json(self.lines[n])
                if rc != 0 or out is None or "error" in out:
                    why = (out or {}).get("error") or " | ".join(self.lines[n][-5:]) or "no output"
                    raise ProbeFailed(f"probe {'receiver' if n == self.dst else 'sender'} on {n} exited {rc}: {why}")
                if n == self.src:
                    self.sender = out
                else:
                    self.report = out["report"]
            assert self.report is not None
            return self.report
        except DriverError as exc:
            raise ProbeFailed(f"probe {self.src} -> {self.dst}: {exc}") from None
        finally:
            self._save()
            self.close()

    def _save(self) -> None:
        with contextlib.suppress(OSError):
            for n, lines in self.lines.items():
                role = "recv" if n == self.dst else "send"
                (self.log_dir / f"probe-{role}-{n}.log").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        """Stop whatever still runs (on any way out) and close the connections; idempotent."""
        if self.report is None:
            self._save()
        for job in list(self.jobs.values()):
            with contextlib.suppress(Exception):
                if job.running:
                    job.stop(grace=2.0)
        for name, node in self.nodes.items():
            with contextlib.suppress(Exception):
                # the probe's folder on the node (its code and logs: the lines are in log_dir)
                if name in self._dirs:
                    node.run(f"rm -rf -- {shlex.quote(self._dirs[name])}", timeout=15)
            with contextlib.suppress(Exception):
                node.close()
        self.nodes.clear()
        self._dirs.clear()

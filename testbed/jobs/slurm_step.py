"""Work beside a training job on nodes that only Slurm may start work on: a Slurm step in the job's
own allocation (``srun --jobid=J --overlap``), one node, one task, its output streamed back.

The trial's service probe uses it through Slurm instead of logging in to the GPU nodes over SSH
(a cluster's engineers may not).  The step shares the job's whole-node allocation (``--overlap``)
and asks for no GPUs, so the training job keeps its CPUs and GPUs and Slurm accounts the probe to
the trial's own job; it ends with the job at the latest.  The nodes see the controller's checkout
at the same path (the cluster's shared file system), as the job's tasks do.

:class:`StepNode` offers what :class:`~testbed.trial.probe.ServiceProbe` asks of a GPU node
(``run``, ``check``, ``start``, ``private_dir``, ``close``), with the same errors
(:mod:`drivers.errors`), so the probe does not know which way it reached the node.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from drivers.errors import DriverError, EditRejected, Timeout
from drivers.facts import NodeFacts
from drivers.gpu_node import RunResult, node_facts, private_dir

from .slurm import SlurmClient, hint


class StepProcess:
    """One ``srun`` step started by :meth:`StepNode.start`: its lines go to ``on_line`` and to the
    controller-side log as they come."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str, node: str,
                 on_line: Callable[[str], None] | None) -> None:
        self.node, self.argv = node, argv
        self.on_line = on_line
        self._log = open(log_path, "a", buffering=1)     # noqa: SIM115 - closed when the stream ends
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._eof = threading.Event()
        threading.Thread(target=self._read, daemon=True, name=f"step-{node}").start()

    def _read(self) -> None:
        try:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                with contextlib.suppress(OSError, ValueError):
                    self._log.write(line + "\n")
                if self.on_line is not None:
                    with contextlib.suppress(Exception):
                        self.on_line(line)
        finally:
            with contextlib.suppress(OSError):
                self._log.close()
            self._eof.set()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def drain(self, timeout: float) -> bool:
        """True once every output line has gone to ``on_line``."""
        return self._eof.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Timeout(f"step {shlex.join(self.argv[-1:])!r} still running after {timeout:g} s", self.node) from None

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM to srun, which forwards it to the step's task; after ``grace`` s srun is killed
        and Slurm ends the step (its task with it)."""
        if not self.running:
            return self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


class StepNode:
    """A GPU node reached through Slurm: steps in the running job ``job_id``'s allocation, or, with
    ``job_id`` None, one small job per command (one task, no GPUs, refused at once if the node is
    busy: ``--immediate``) for what the trial reads before its jobs (is the node there, its
    software versions).  ``testbed.connect`` gives this driver for every GPU node of an inventory
    with a Slurm scheduler."""

    def __init__(self, client: SlurmClient, job_id: str | None, node: str, immediate_s: int = 30) -> None:
        self.client, self.job_id, self.name = client, job_id, node
        self.immediate_s = immediate_s

    def argv(self, cmd: str) -> list[str]:
        c = self.client
        where = ([f"--jobid={self.job_id}", "--overlap"] if self.job_id is not None else
                 ["--job-name=dcilab-node", f"--partition={c.partition}", *([f"--account={c.account}"] if c.account else []),
                  f"--immediate={self.immediate_s}"])
        return ["srun", *where, f"--nodelist={self.name}", "--nodes=1", "--ntasks=1",
                *(["--gres=none"] if c.gpu_gres else []), "--quiet", "--unbuffered", "bash", "-c", cmd]

    def facts(self, python: str = "python3", timeout: float = 120.0) -> NodeFacts:
        """As :meth:`GpuNode.facts`: what ``python`` on the node reports (torch, NCCL/gloo, ...)."""
        return node_facts(self, python, timeout)

    def run(self, cmd: str, timeout: float = 60.0) -> RunResult:
        t0 = time.monotonic()
        try:
            r = subprocess.run(self.argv(cmd), env=self.client.env(), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise DriverError("srun is not installed on the controller (Debian: slurm-client)", self.name) from None
        except subprocess.TimeoutExpired:
            raise Timeout(f"{cmd!r} did not finish within {timeout:g} s through Slurm", self.name) from None
        said = [ln for ln in r.stderr.splitlines() if ln.startswith("srun: error")]
        if said:           # Slurm refused the step itself (the job ended, the node is busy or down, ...)
            raise DriverError(f"slurm: {'step of job ' + self.job_id if self.job_id else 'srun'} on {self.name}: "
                              f"{said[-1]}"
                              f"{hint(said[-1], self.client.conf)}", self.name)
        return RunResult(r.returncode, r.stdout, r.stderr, time.monotonic() - t0)

    def check(self, cmd: str, timeout: float = 60.0) -> RunResult:
        r = self.run(cmd, timeout)
        if r.rc != 0:
            raise EditRejected(f"{cmd!r} exited {r.rc}: {(r.stderr or r.stdout).strip()[-300:]}", self.name)
        return r

    def private_dir(self, prefix: str, parent: str = "/tmp") -> str:
        """A new folder only this user can use (``mktemp -d``), as :meth:`GpuNode.private_dir`."""
        return private_dir(self, prefix, parent)

    def put(self, local: str, remote: str) -> None:
        raise DriverError("through Slurm the nodes run the controller's checkout from the shared file system; "
                          "nothing is shipped", self.name)

    def start(self, cmd: str, log_path: str, on_line: Callable[[str], None] | None = None) -> StepProcess:
        """``cmd`` as a step of its own; ``log_path`` is written on the controller (a step's output
        comes back through srun; the node keeps nothing)."""
        if log_path and not os.path.isdir(os.path.dirname(log_path) or "."):
            log_path = os.devnull
        return StepProcess(self.argv(f"export PYTHONUNBUFFERED=1; {cmd}"), self.client.env(), log_path, self.name, on_line)

    def close(self) -> None:
        """Nothing held: every command is its own srun."""

    def __enter__(self) -> StepNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

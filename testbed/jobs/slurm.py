"""Training jobs through Slurm: the launcher for GPU nodes that only the workload manager may start
work on (the inventory's ``scheduler: {kind: slurm, partition, ...}``).

One ``srun`` on the controller per job: ``--nodes`` = the job's nodes by name, one task per node,
each task running the same torchrun command the SSH launcher would start there (chosen by
``$SLURMD_NODENAME``), ``--label`` so that every line says which task wrote it, ``--immediate``
so that a job Slurm cannot start within ``pending_timeout_s`` is given up.  The lines stream
back through srun (stdout and stderr of every task), so iterations, evidence and verdicts are the
SSH launcher's.  The job is watched through srun and Slurm (``squeue``, ``scontrol show job``),
stopped with ``scancel`` (TERM to every process of its steps, then Slurm's own KILL), and
journaled so that ``dcilab lab restore`` cancels it if the controller dies.  The nodes see the
controller's checkout at the same path (a cluster's shared file system; the emulated lab's nodes
share this machine's), so nothing is shipped.

Slurm's own failures are the job's outcome with cause ``scheduler`` and Slurm's words: a partition
that does not exist, slurmctld down, an authentication (munge) error, a job still pending at the
deadline, a node that failed or a job preempted or cancelled under it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.inventory import Inventory
from testbed.jobs import events as ev
from testbed.jobs.launcher import JobError, NodeSpec, TrainingJob, _live

logger = logging.getLogger("dcilab.jobs")

NODE_TAG = "DCILAB-NODE"
_LABEL = re.compile(r"^\s*(\d+): ?(.*)$")
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE"}


class SlurmError(JobError):
    """Slurm refused a request or does not answer (the message names the command and Slurm's words)."""


# Slurm's words for a scheduler that cannot be used at all -> what the lab engineer should look at.
_HINTS = (
    (re.compile(r"Unable to contact slurm controller|Connection refused", re.I),
     "slurmctld does not answer: is it running, and is SlurmctldHost/SlurmctldPort in {conf} reachable from here?"),
    # slurmctld hangs up on a request it cannot authenticate: the client sees zero bytes
    (re.compile(r"Zero Bytes were transmitted|authentication|credential|munge", re.I),
     "slurmctld hung up on the request: most often this controller's munge key is not the cluster's "
     "(copy the cluster's /etc/munge/munge.key here and restart munged); slurmctld's log says which"),
)


def hint(said: str, conf: str | None) -> str:
    """A short 'what to check' for Slurm's words, or '' when they speak for themselves."""
    for pattern, text in _HINTS:
        if pattern.search(said):
            return " (" + text.format(conf=conf or "the system's slurm.conf") + ")"
    return ""


def job_name(run_id: str) -> str:
    return f"dcilab-{run_id}"


@dataclass(frozen=True)
class SlurmClient:
    """Slurm's client commands, run on the controller with the inventory's slurm.conf."""

    partition: str
    account: str | None = None
    conf: str | None = None
    pending_timeout_s: float = 300.0
    gpu_gres: str | None = "gpu"

    def env(self) -> dict[str, str]:
        return {**os.environ, **({"SLURM_CONF": self.conf} if self.conf else {})}

    def run(self, *argv: str, timeout: float = 30.0) -> str:
        try:
            r = subprocess.run(list(argv), env=self.env(), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise SlurmError(f"slurm: {argv[0]} is not installed on the controller (Debian: slurm-client)") from None
        except subprocess.TimeoutExpired:
            raise SlurmError(f"slurm: {' '.join(argv)} did not answer within {timeout:g} s") from None
        if r.returncode:
            why = (r.stderr or r.stdout).strip().splitlines()
            said = why[-1] if why else f"exit {r.returncode}"
            raise SlurmError(f"slurm: {' '.join(argv)}: {said}{hint(said, self.conf)}")
        return r.stdout

    def check(self, nodes: Sequence[str]) -> None:
        """slurmctld answers, the partition exists and holds the nodes, none of them drained or down."""
        out = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%N %t")
        states = dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) == 2)
        if not states:
            parts = self.run("sinfo", "-h", "-o", "%R").split()
            raise SlurmError(f"slurm: partition {self.partition!r} does not exist or has no nodes (sinfo lists: "
                             f"{', '.join(sorted(set(parts))) or 'none'}): set scheduler.partition in the inventory")
        missing = [n for n in nodes if n not in states]
        if missing:
            raise SlurmError(f"slurm: partition {self.partition!r} has no node {', '.join(missing)} (it has "
                             f"{', '.join(sorted(states))}): name the GPU nodes as Slurm knows them")
        bad = {n: states[n] for n in nodes if states[n].rstrip("*~#$@^-!%") in ("down", "drain", "drng", "fail",
                                                                                   "failg", "maint", "unk")}
        if bad:
            raise SlurmError(f"slurm: node(s) not usable in partition {self.partition!r}: "
                             f"{', '.join(f'{n} {s}' for n, s in bad.items())} (scontrol show node says why)")

    def job_ids(self, name: str) -> list[str]:
        return self.run("squeue", "-h", "-n", name, "-o", "%i").split()

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as key=value pairs ({} once Slurm has forgotten the job)."""
        try:
            out = self.run("scontrol", "-o", "show", "job", job_id)
        except SlurmError:
            return {}
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def cancel(self, job_id: str, signal: str | None = None) -> None:
        try:
            self.run("scancel", *((f"--signal={signal}", "--full") if signal else ()), job_id)
        except SlurmError as exc:
            if "Invalid job id" not in str(exc):    # it ended between squeue and scancel: nothing to do
                raise

    def cancel_name(self, name: str) -> list[str]:
        """Cancel every job of that name; returns the ids it cancelled (`lab restore`)."""
        ids = self.job_ids(name)
        for j in ids:
            self.cancel(j)
        return ids


def client_for(inv: Inventory) -> SlurmClient:
    sched = inv.scheduler
    if sched is None or sched.kind != "slurm":
        raise JobError(f"{inv.source or inv.name}: no scheduler: {{kind: slurm}} block")
    from testbed.emulated_lab import slurm_conf
    return SlurmClient(sched.partition, sched.account, slurm_conf(inv), sched.pending_timeout_s, sched.gpu_gres)


class _SlurmNode:
    """One node's task, as the watchdog sees a node: running until its exit tag or srun's end."""

    def __init__(self, job: SlurmTrainingJob, spec: NodeSpec) -> None:
        self.job, self.spec = job, spec
        self.pgid: int | None = None

    @property
    def running(self) -> bool:
        return self.job.srun_running and self.job.evidence[self.spec.name].exit_code is None

    def drain(self, timeout: float) -> bool:
        if self.job.evidence[self.spec.name].exit_code is not None:
            return True
        return self.job.streams_done.wait(timeout)


class SlurmTrainingJob(TrainingJob):
    """:class:`TrainingJob` whose nodes are started, watched and stopped through Slurm."""

    def __init__(self, inv: Inventory, nodes: Sequence[str], workload_args: Sequence[str] = (), run_id: str = "",
                 **kw: Any) -> None:
        if kw.get("ship"):
            raise JobError("through Slurm the nodes run the controller's checkout from the shared file system; "
                           "nothing is shipped")
        kw["ship"] = False
        super().__init__(inv, nodes, workload_args, run_id, **kw)
        self.client = client_for(inv)
        self.job_name = job_name(run_id)
        self._private_dir = False
        if kw.get("remote_dir") is None:
            self.remote_dir = str(self.report_dir / "node")
        self.slurm_job_id: str | None = None
        self.srun_messages: list[str] = []
        self.streams_done = threading.Event()
        self._srun: subprocess.Popen[bytes] | None = None
        self._task_node: dict[int, NodeSpec] = {}
        self._readers: list[threading.Thread] = []
        self._srun_log: Any = None

    # ---------------------------------------------------------------------------------- start

    def srun_argv(self) -> list[str]:
        c = self.client
        return ["srun", f"--job-name={self.job_name}", f"--partition={c.partition}",
                *([f"--account={c.account}"] if c.account else []),
                f"--nodes={len(self.specs)}", f"--nodelist={','.join(s.name for s in self.specs)}",
                # whole nodes: a trial measures iteration time, which another job on the node would skew
                "--exclusive", "--ntasks-per-node=1", f"--cpus-per-task={self.nproc_per_node}",
                # each node's ranks get their GPUs from Slurm (CUDA_VISIBLE_DEVICES), as on a GPU cluster
                *([f"--gres={c.gpu_gres}:{self.nproc_per_node}"] if c.gpu_gres else []),
                "--label", "--unbuffered",
                f"--immediate={max(1, int(c.pending_timeout_s))}", "--kill-on-bad-exit=0",
                "bash", "-c", self.dispatch_script()]

    def dispatch_script(self) -> str:
        """Every task runs this; it starts its own node's torchrun (chosen by the node's name)."""
        q = shlex.quote
        arms = []
        for spec in self.specs:
            env = " ".join(f"{k}={q(v)}" for k, v in self.node_env(spec).items())
            arms.append(f"  {q(spec.name)}) export {env}; {self.node_command(spec)} ;;")
        return (f'echo "{NODE_TAG} $SLURMD_NODENAME $SLURM_JOB_ID"\n'
                'case "$SLURMD_NODENAME" in\n' + "\n".join(arms) +
                '\n  *) echo "dcilab: node $SLURMD_NODENAME is not one of this job\'s" >&2; exit 2 ;;\nesac\n')

    def start(self) -> TrainingJob:
        self._begin()
        try:
            self.client.check([s.name for s in self.specs])
            self._journal_job()
            Path(self.remote_dir).mkdir(parents=True, exist_ok=True)
            for spec in self.specs:
                self._logf[spec.name] = open(self.logs[spec.name], "a", buffering=1)
            self._srun_log = open(self.report_dir / "srun.log", "a", buffering=1)
            self.jobs = {s.name: _SlurmNode(self, s) for s in self.specs}   # type: ignore[misc]
            self._srun = subprocess.Popen(self.srun_argv(), env=self.client.env(), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                          cwd=str(self.report_dir))
            self._readers = [threading.Thread(target=self._read, args=(f,), daemon=True, name=f"srun-{n}")
                             for n, f in (("out", self._srun.stdout), ("err", self._srun.stderr))]
            for t in self._readers:
                t.start()
            threading.Thread(target=self._join_readers, daemon=True).start()
        except SlurmError as exc:
            self.stop()
            raise SlurmError(f"{exc}; job {self.job_name} was not started") from None
        except BaseException:
            self.stop()
            raise
        return self._watch_started()

    def _undo_steps(self) -> list[Any]:
        from testbed.faults.journal import Step
        return [Step(self.specs[0].name, "scancel_job", {"run_id": self.run_id},
                     f"scancel the Slurm job {self.job_name}: Slurm stops it on every node")]

    # ---------------------------------------------------------------------------------- streams

    @property
    def srun_running(self) -> bool:
        return self._srun is not None and self._srun.poll() is None

    def _join_readers(self) -> None:
        for t in self._readers:
            t.join()
        self.streams_done.set()

    def _read(self, stream: Any) -> None:
        callbacks = {s.name: self._line_cb(s) for s in self.specs}
        by_name = {s.name: s for s in self.specs}
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            m = _LABEL.match(line)
            if m is None:           # srun's own words (errors, warnings), not a task's
                self._srun_line(line)
                continue
            task, text = int(m.group(1)), m.group(2)
            if text.startswith(NODE_TAG):
                parts = text.split()
                spec = by_name.get(parts[1]) if len(parts) > 1 else None
                if spec is not None:
                    self._task_node[task] = spec
                    if len(parts) > 2 and self.slurm_job_id is None:
                        self.slurm_job_id = parts[2]
                continue
            spec = self._task_node.get(task)
            if spec is None:
                self._srun_line(line)
            else:
                callbacks[spec.name](text)

    def _srun_line(self, line: str) -> None:
        if not line.strip():
            return
        self.srun_messages.append(line)
        if self._srun_log is not None:
            try:
                self._srun_log.write(line + "\n")
            except ValueError:
                pass
        m = re.search(r"\bjob (\d+) queued", line)
        if m and self.slurm_job_id is None:
            self.slurm_job_id = m.group(1)
        with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------------------------- verdicts

    def _scheduler_verdict(self) -> tuple[str, str] | None:
        """srun ended with a node whose task never reported its exit: Slurm refused, gave up on,
        preempted or failed the job (its words are the detail), not the training."""
        if self._srun is None or self._srun.poll() is None or not self.streams_done.wait(1.0):
            return None
        silent = [s.name for s in self.specs if self.evidence[s.name].exit_code is None]
        if not silent:
            return None             # every torchrun said how it ended: the usual classification
        errors = [m for m in self.srun_messages if "error" in m.lower() or "cancel" in m.lower()]
        said = "; ".join((errors or self.srun_messages)[-3:]) or f"srun exited {self._srun.returncode}"
        said += hint(said, self.client.conf)
        state = self.client.job(self.slurm_job_id) if self.slurm_job_id else {}
        where = f"job {self.slurm_job_id} {state.get('JobState', '')}".strip() if self.slurm_job_id else \
            f"job {self.job_name} never started"
        reason = state.get("Reason")
        return ev.SCHEDULER, (f"slurm ({where}{', reason ' + reason if reason and reason != 'None' else ''}) "
                              f"on {', '.join(silent)}: {said}")

    # ---------------------------------------------------------------------------------- stop

    def leftovers(self) -> dict[str, list[str]]:
        """The job while Slurm still lists it as running (empty once it has ended, or when it was
        never submitted: no question to a Slurm that may be down)."""
        if self._srun is None:
            return {}
        try:
            ids = self.job_ids()
        except JobError as exc:
            return {"slurm": [f"cannot check: {exc}"]}
        out = []
        for j in ids:
            st = self.client.job(j).get("JobState", "")
            if st and st not in ENDED:
                out.append(f"job {j} {st}")
        return {"slurm": out} if out else {}

    def job_ids(self) -> list[str]:
        return [self.slurm_job_id] if self.slurm_job_id else self.client.job_ids(self.job_name)

    def stop(self) -> dict[str, list[str]]:
        """scancel TERM to every process of the job's steps; after the grace, Slurm's cancel (its
        own TERM then KILL after KillWait); srun then ends, and so does the job."""
        with self._stop_lock:
            if self._stopped:
                return self._left
            self._stopped = True
            try:        # the job while Slurm lists it (pending or running): a finished one needs nothing
                ids = self.client.job_ids(self.job_name) if self._srun is not None else []
            except JobError as exc:
                logger.warning("jobs: %s: %s", self.run_id, exc)
                ids = []
            for j in ids:
                try:
                    self.client.cancel(j, "TERM")
                except JobError as exc:
                    logger.warning("jobs: %s: %s", self.run_id, exc)
            deadline = time.monotonic() + self.stop_grace_s
            while self.srun_running and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.srun_running:
                for j in ids:
                    try:
                        self.client.cancel(j)
                    except JobError as exc:
                        logger.warning("jobs: %s: %s", self.run_id, exc)
                try:
                    assert self._srun is not None
                    self._srun.wait(30)
                except subprocess.TimeoutExpired:
                    self._srun.kill()
            for _ in range(100):            # Slurm lists a cancelled job as COMPLETING for a moment
                self._left = self.leftovers()
                if not self._left:
                    break
                time.sleep(0.1)
            self.streams_done.wait(5.0)
            self._after_stop(True)
            if self._srun_log is not None:
                self._srun_log.close()
            _live.discard(self)
            return self._left

    def worker_pids(self, node: str) -> list[int]:
        raise JobError("through Slurm the controller does not log in to the nodes: it cannot list a node's workers")

    def kill_rank(self, node: str, sig: str = "KILL") -> list[int]:
        raise JobError("through Slurm the controller does not log in to the nodes: it cannot kill one rank")


def job_class(inv: Inventory) -> type[TrainingJob]:
    """The launcher the inventory asks for: Slurm's with a ``scheduler:`` block, else SSH."""
    return SlurmTrainingJob if inv.scheduler is not None else TrainingJob

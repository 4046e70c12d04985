"""Launch a training job on the inventory's GPU nodes, stream its iterations, and end it for sure.

One ``torchrun`` per node through the GPU node driver (:meth:`drivers.gpu_node.GpuNode.start`:
its own process group, output streamed back line by line), c10d rendezvous hosted by the first
node on its data address, ``nproc_per_node`` ranks per node (at most the node's ``gpus``).  c10d
assigns node ranks in the order of the nodes' ``--local-addr`` (the data addresses, compared as
strings) and global ranks node by node, so the launcher derives the node ranks from the inventory
the same way and hands ``workload.train`` the sites in that order (one per node).

Every line of every node is kept in ``<report_dir>/<node>.rank<R>.log`` (written by the
controller as the lines arrive; the node keeps its own copy next to its ``--out`` file).
Iteration lines are parsed into :class:`IterationEvent` as they arrive, queued, written to the
metrics store with :class:`testbed.metrics.MetricsWriter`, and can be waited for
(:meth:`TrainingJob.wait_for_iteration`).

A watchdog thread ends the run with a :class:`JobOutcome`:

* ``completed``: every node's torchrun exited 0;
* ``interrupted``: a node exited non-zero, or a log showed a gloo/NCCL timeout, a connection
  reset, a worker that exited, a failed rendezvous or a node that cannot start torch; the cause
  comes from every node's log (:func:`testbed.jobs.events.classify`), decided ``settle_s`` after
  the first sign at the latest, and as soon as the evidence is complete once the training loop
  has started (:func:`testbed.jobs.events.evidence_complete`: every node has exited, or has shown
  evidence that counts, with its torchrun still up and no failed worker reported; a torchrun that
  reported one exits within about a second, and its exit code is waited for and recorded);
* ``stalled``: no iteration for ``max(stall_factor x baseline iteration time, min_stall_s)``
  (``baseline_s``, or the median of this run's non-warm-up iterations), or no first iteration
  within ``startup_timeout_s``, with nothing in the logs.

Then it stops every node: TERM (and CONT, for a frozen process) to everything whose command line
carries this run's id (torchrun starts its workers in sessions of their own, so killing the
group alone can orphan them) and to the process group, KILL of what is left after
``stop_grace_s``, and checks with ``pgrep`` that nothing is left.

Bounds, measured on the emulated lab (test model, pp-remote, 4 nodes; ``tests/test_jobs_lab.py``):

* a killed rank: its torchrun reports the worker (``exitcode: -9``) and exits 1 within about a
  second; the outcome is decided once that node has exited and every other node has spoken
  (about 1 s after the kill on an idle machine; on a slower one a surviving rank that waits in a
  collective with live peers only can stay silent, then ``settle_s`` after the first sign), with
  that node's exit code recorded;
* the line blocked longer than the process-group timeout: gloo times each operation out
  ``pg_timeout_s`` after *that operation began* (the ops in flight when the line went dark, so
  within one iteration of the outage's start) and every rank's timeout line arrives within a
  few ms of the others, so the outcome is decided ``pg_timeout_s`` + about 0.1 s after the
  outage began (``pg_timeout_s + settle_s`` at most).  The torchruns on the far side of the line
  cannot act on SIGTERM then (their main thread waits in a c10d store call across the dark line
  until it comes back, plus TCP's retransmission backoff), so stopping them costs
  ``stop_grace_s`` before SIGKILL: :meth:`TrainingJob.wait` returns ``stop_s`` (about
  ``stop_grace_s`` + 2 s) after the decision (:attr:`JobOutcome.decided_at`).
"""

from __future__ import annotations

import atexit
import io
import logging
import queue
import re
import secrets
import shlex
import statistics
import tarfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import DriverError
from drivers.gpu_node import GpuNode, RemoteJob
from testbed.inventory import DeviceKind, Inventory
from testbed.jobs import events as ev
from testbed.jobs.cleanup import run_pattern
from testbed.jobs.events import IterationEvent, IterationParser, JsonLineParser, NodeEvidence
from testbed.runid import RunIdError, check_run_id

logger = logging.getLogger("dcilab.jobs")

ROOT = Path(__file__).resolve().parents[2]
EXIT_TAG = "DCILAB-EXIT"

COMPLETED, INTERRUPTED, STALLED = "completed", "interrupted", "stalled"


class JobError(RuntimeError):
    """Bad input or a job that could not be started."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    site: str | None
    rank: int
    data_address: str
    python: str


@dataclass
class JobOutcome:
    status: str                        # completed | interrupted | stalled
    cause: str | None                  # see testbed.jobs.events (None when completed)
    detail: str
    iterations: int                    # iteration events received
    exit_codes: dict[str, int | None]  # per node: torchrun's exit code (None: stopped / unknown)
    logs: dict[str, Path]              # per node: the controller's copy of its log
    elapsed_s: float                   # start -> outcome decided
    detected_s: float | None = None    # first sign of trouble -> outcome decided
    decided_at: float = 0.0            # time.monotonic() when the outcome was decided (before the stop)
    stop_s: float = 0.0                # time taken to stop every node
    leftovers: dict[str, list[str]] = field(default_factory=dict)  # processes left (should be empty)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


def node_specs(inv: Inventory, nodes: Sequence[str]) -> list[NodeSpec]:
    """The GPU nodes in c10d's rank order (data addresses compared as strings)."""
    if not nodes:
        raise JobError("no GPU nodes given")
    if len(set(nodes)) != len(nodes):
        raise JobError(f"a node is named twice: {list(nodes)}")
    devs = []
    for name in nodes:
        dev = inv.device(name)
        if dev.kind != DeviceKind.GPU_NODE:
            raise JobError(f"{name} is a {dev.kind.value}, not a gpu_node")
        if dev.data_address is None:
            raise JobError(f"{name} has no data_address: torchrun needs the node's fabric address")
        devs.append((str(dev.data_address), dev.name, dev.site, inv.node_python(dev)))
    devs.sort()
    return [NodeSpec(name=n, site=s, rank=r, data_address=a, python=p) for r, (a, n, s, p) in enumerate(devs)]


def check_nproc(inv: Inventory, nodes: Sequence[str], nproc_per_node: int) -> int:
    """Ranks per node: a positive integer no larger than any chosen node's ``gpus``."""
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise JobError(f"nproc_per_node must be a positive integer, got {nproc_per_node!r}")
    short = [f"{n} ({inv.node_gpus(inv.device(n))})" for n in nodes if inv.node_gpus(inv.device(n)) < nproc_per_node]
    if short:
        raise JobError(f"{inv.source or inv.name}: the job runs {nproc_per_node} ranks per node but "
                       f"{', '.join(short)} {'has' if len(short) == 1 else 'have'} fewer GPUs: give "
                       f"{'it' if len(short) == 1 else 'them'} gpus: {nproc_per_node} in the inventory if "
                       "they have them, or run fewer ranks per node (the profile's nproc_per_node)")
    return nproc_per_node


# torchrun's agent as ps shows it: ``python -m torch.distributed.run ...`` or the ``torchrun`` script
# (run by its interpreter); the shells around it carry the same words further along their command lines
_AGENT = re.compile(r"^(\S*/)?python[\d.]*(\s+-\S+)*?\s+(-m\s+torch\.distributed\.(run|launch)|(\S*/)?torchrun)(\s|$)")


def torchrun_workers(ps: str, pgid: int) -> list[int]:
    """The workers of the torchrun agent in process group ``pgid``, from ``ps -e -o pid=,ppid=,pgid=,args=``.

    Only the agent's children: matching command lines instead would also hit the job's wrapper
    shells and ``tee`` (their command lines contain the torchrun command), and killing those
    loses torchrun's own report and exit code."""
    rows: list[tuple[int, int, int, str]] = []
    for line in ps.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and all(x.isdigit() for x in parts[:3]):
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), parts[3]))
    agents = {pid for pid, _, group, args in rows if group == pgid and _AGENT.match(args)}
    return sorted(pid for pid, ppid, _, _ in rows if ppid in agents)


def _workload_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted((ROOT / "workload").glob("*.py")):
            tar.add(str(f), arcname=f"workload/{f.name}")
    return buf.getvalue()


class TrainingJob:
    """``with TrainingJob(inv, nodes, ["--model", "test", ...], run_id) as job: out = job.run()``

    ``workload_args``: arguments of ``python -m workload.train`` (``--sites``, ``--run-id``,
    ``--out`` and ``--pg-timeout-s`` are added unless given).  ``command``: instead of the
    workload, an external training command per node (a template with ``{node_rank}``,
    ``{nnodes}``, ``{nproc_per_node}``, ``{master_addr}``, ``{master_port}``, ``{run_id}``,
    ``{local_addr}``), run as
    is with ``parser`` (e.g. :class:`MegatronParser`) reading its iteration lines.
    """

    def __init__(self, inv: Inventory, nodes: Sequence[str], workload_args: Sequence[str] = (), run_id: str = "",
                 *, case: str | None = None, scenario: str | None = None, testbed: str | None = None,
                 report_dir: str | Path | None = None, metrics: Any = "inventory", spool_dir: str | Path | None = None,
                 pg_timeout_s: float | None = None, startup_timeout_s: float = 120.0, stall_factor: float = 20.0,
                 min_stall_s: float = 30.0, baseline_s: float | None = None, settle_s: float = 3.0,
                 stop_grace_s: float = 5.0, rdzv_port: int = 29500, socket_ifname: str | None = "auto",
                 nproc_per_node: int = 1,
                 ship: bool | None = None, remote_dir: str | None = None, command: str | None = None,
                 parser: IterationParser | None = None, env: dict[str, str] | None = None,
                 connect: Callable[[Inventory, str], GpuNode] | None = None) -> None:
        try:
            check_run_id(run_id, "run_id")
        except RunIdError as exc:
            raise JobError(str(exc)) from None
        self.inv, self.run_id = inv, run_id
        self.specs = node_specs(inv, nodes)
        self.nproc_per_node = check_nproc(inv, nodes, nproc_per_node)
        self.workload_args = list(workload_args)
        self.command = command
        if command is None:
            self._check_workload_args()
        self.parser: IterationParser = parser or JsonLineParser()
        self.tags = {"run_id": run_id, "case": case, "scenario": scenario, "testbed": testbed or inv.name}
        self.report_dir = Path(report_dir) if report_dir else ROOT / "reports" / "jobs" / run_id
        self.pg_timeout_s = pg_timeout_s
        self.startup_timeout_s, self.stall_factor, self.min_stall_s = startup_timeout_s, stall_factor, min_stall_s
        self.baseline_s, self.settle_s, self.stop_grace_s = baseline_s, settle_s, stop_grace_s
        self.rdzv_port = rdzv_port
        self.socket_ifname = ("fab0" if inv.is_emulated else None) if socket_ifname == "auto" else socket_ifname
        self.ship = (not inv.is_emulated) if ship is None else ship
        # Real nodes: a folder of this job's own, created with mode 0700 by an exclusive mkdir
        # under a name nobody can guess: a fixed /tmp/dcilab-jobs/<run id> could be created first by
        # another user of the node, whose code would then run as the controller's login.
        self._private_dir = remote_dir is None and not inv.is_emulated
        self.remote_dir = remote_dir or (str(self.report_dir / "node") if inv.is_emulated
                                         else f"/tmp/dcilab-job-{run_id}.{secrets.token_hex(8)}")
        self.extra_env = dict(env or {})
        self._connect = connect
        self._metrics_arg, self._spool_dir = metrics, spool_dir
        self.writer: Any = None
        self._own_writer = False

        self.nodes: dict[str, GpuNode] = {}
        self.jobs: dict[str, RemoteJob] = {}
        self.evidence = {s.name: NodeEvidence(s.name) for s in self.specs}
        self.logs = {s.name: self.report_dir / f"{s.name}.rank{s.rank}.log" for s in self.specs}
        self._logf: dict[str, Any] = {}
        self.events: list[IterationEvent] = []
        self.event_queue: queue.Queue[IterationEvent] = queue.Queue()
        self._steps_seen: set[int] = set()
        self._cond = threading.Condition()
        self._started_loop = False
        self._t0 = 0.0
        self._last_progress = 0.0
        self._first_sign: float | None = None
        self._outcome: JobOutcome | None = None
        self._watchdog: threading.Thread | None = None
        self._stopped = False
        self._ending = False            # end() called: the controller ends the job, nothing failed
        self._stop_lock = threading.Lock()
        self._journal: Any = None
        self._journal_entry: Any = None
        self.on_event: Callable[[IterationEvent], None] | None = None

    # ---------------------------------------------------------------------------------- input

    def _check_workload_args(self) -> None:
        a = self.workload_args
        if any(x in ("--standalone", "--nproc-per-node") for x in a):
            raise JobError("workload_args are workload.train's arguments, not torchrun's")
        try:
            from workload.train import parse_args
            parse_args(a + ["--run-id", self.run_id])
        except SystemExit:
            raise JobError(f"workload.train does not accept {a}") from None

    def _has(self, opt: str) -> bool:
        return any(x == opt or x.startswith(opt + "=") for x in self.workload_args)

    def _train_args(self) -> list[str]:
        a = list(self.workload_args)
        if not self._has("--sites"):
            a += ["--sites", ",".join(s.site or "site" for s in self.specs)]
        if not self._has("--run-id"):
            a += ["--run-id", self.run_id]
        if not self._has("--out"):
            a += ["--out", f"{self.remote_dir}/iterations.jsonl"]
        if self.pg_timeout_s is not None and not self._has("--pg-timeout-s"):
            a += ["--pg-timeout-s", f"{self.pg_timeout_s:g}"]
        return a

    def node_command(self, spec: NodeSpec) -> str:
        """The shell command started on ``spec``'s node."""
        master = self.specs[0].data_address
        if self.command is not None:
            inner = self.command.format(node_rank=spec.rank, nnodes=len(self.specs),
                                        nproc_per_node=self.nproc_per_node, master_addr=master,
                                        master_port=self.rdzv_port, run_id=self.run_id, local_addr=spec.data_address)
        else:
            q = shlex.quote
            torchrun = [spec.python, "-m", "torch.distributed.run", "--nnodes", str(len(self.specs)),
                        "--nproc-per-node", str(self.nproc_per_node), "--rdzv-backend", "c10d", "--rdzv-id", self.run_id,
                        "--rdzv-endpoint", f"{master}:{self.rdzv_port}",
                        "--rdzv-conf", f"is_host={int(spec.rank == 0)},join_timeout={int(self.startup_timeout_s)}",
                        "--local-addr", spec.data_address, "--max-restarts", "0", "--monitor-interval", "0.2",
                        "-m", "workload.train", *self._train_args()]
            inner = " ".join(q(x) for x in torchrun)
        workdir = self.remote_dir if self.ship else str(ROOT)
        # torchrun's own exit code, in the stream before its end: the channel's exit status is the
        # wrapper's (setsid -w bash), which is not torchrun's when the wrapper itself is killed
        return (f"mkdir -p {shlex.quote(self.remote_dir)} && cd {shlex.quote(workdir)} && {{ {inner} ; }}; "
                f'rc=$?; echo "{EXIT_TAG} $rc"; exit $rc')

    def node_env(self, spec: NodeSpec) -> dict[str, str]:
        env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": self.remote_dir if self.ship else str(ROOT),
               "TORCHELASTIC_ERROR_FILE": f"{self.remote_dir}/{spec.name}.error.json"}
        if self.socket_ifname:
            env.update(GLOO_SOCKET_IFNAME=self.socket_ifname, NCCL_SOCKET_IFNAME=self.socket_ifname)
        env.update(self.extra_env)
        return env

    # ---------------------------------------------------------------------------------- start

    def _make_writer(self) -> None:
        m = self._metrics_arg
        if m is None or m is False:
            return
        if m != "inventory":
            self.writer = m
            return
        if self.inv.metrics is None:
            return
        from testbed.connect import resolve_secret
        from testbed.metrics import MetricsWriter
        mc = self.inv.metrics
        token = resolve_secret(self.inv, "metrics", mc.token, "metrics.token") if mc.token else None
        self.writer = MetricsWriter(mc.url, mc.org, mc.bucket, token, spool_dir=self._spool_dir,
                                    default_tags={k: v for k, v in self.tags.items() if v})
        self._own_writer = True

    def _begin(self) -> None:
        """What every launcher does before it starts anything: the report folder, the writer,
        the clock, and the exit handler's list of live jobs."""
        if self.jobs:
            raise JobError("job already started")
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self._make_writer()
        self._t0 = self._last_progress = time.monotonic()
        _live.add(self)

    def _watch_started(self) -> TrainingJob:
        self._watchdog = threading.Thread(target=self._watch, name=f"job-watchdog-{self.run_id}", daemon=True)
        self._watchdog.start()
        return self

    def start(self) -> TrainingJob:
        self._begin()
        try:
            connect = self._connect
            if connect is None:
                from testbed.connect import connect_gpu_node as connect
            errors: dict[str, BaseException] = {}

            def conn(spec: NodeSpec) -> None:
                try:
                    self.nodes[spec.name] = connect(self.inv, spec.name)
                except BaseException as e:  # noqa: BLE001
                    errors[spec.name] = e
            ts = [threading.Thread(target=conn, args=(s,)) for s in self.specs]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errors:
                raise JobError("cannot connect to " + "; ".join(f"{n}: {e}" for n, e in errors.items()))
            self._journal_job()
            if self._private_dir:
                self._make_private_dirs()
            if self.ship:
                self._ship()
            for spec in self.specs:
                self._logf[spec.name] = open(self.logs[spec.name], "a", buffering=1)
            for spec in self.specs:   # rank 0 first: it hosts the rendezvous store
                node = self.nodes[spec.name]
                node.check(f"mkdir -p {shlex.quote(self.remote_dir)}", timeout=15)
                self.jobs[spec.name] = node.start(self.node_command(spec), f"{self.remote_dir}/{spec.name}.log",
                                                  on_line=self._line_cb(spec), env=self.node_env(spec))
        except BaseException:
            self.stop()
            raise
        return self._watch_started()

    def _journal_job(self) -> None:
        """Journal the job with the faults before any process starts: if this controller dies
        (SIGKILL, a crash), ``dcilab lab restore`` stops it on every node (testbed/jobs/cleanup.py);
        the entry goes once :meth:`stop` has found nothing of it left."""
        from testbed.faults.journal import Journal, journal_dir
        self._journal = Journal(journal_dir(self.inv))
        undo = self._undo_steps()
        from testbed.faults.signals import deferred_interrupts
        try:
            with deferred_interrupts():    # a Ctrl-C as the entry lands: stop() must still know it, to clear it
                self._journal_entry = self._journal.add("TrainingJob", self.run_id, [], undo,
                                                        str(self.inv.source or self.inv.name))
        except OSError as exc:
            raise JobError(f"cannot journal the job in {self._journal.dir}: {exc}") from None

    def _undo_steps(self) -> list[Any]:
        """What `lab restore` does for this job if the controller dies: stop the run on every node."""
        from testbed.faults.journal import Step
        return [Step(s.name, "stop_job", {"run_id": self.run_id}, "TERM, then KILL, every process of the run")
                for s in self.specs]

    def _make_private_dirs(self) -> None:
        """``mkdir -m 700`` without ``-p``: it fails if the folder is already there."""
        for spec in self.specs:
            try:
                self.nodes[spec.name].check(f"umask 077 && mkdir -m 700 -- {shlex.quote(self.remote_dir)}", timeout=15)
            except DriverError as exc:
                raise JobError(f"{spec.name}: cannot create the job's private folder {self.remote_dir}: {exc}") from None

    def _ship(self) -> None:
        """Put the workload package into ``remote_dir`` on every node (real nodes: the node's own torch)."""
        import tempfile
        data = _workload_tar()
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as f:
            f.write(data)
            f.flush()
            for spec in self.specs:
                node = self.nodes[spec.name]
                node.check(f"mkdir -p {shlex.quote(self.remote_dir)}", timeout=15)
                dest = f"{self.remote_dir}/workload.tar.gz"
                node.put(f.name, dest)
                node.check(f"cd {shlex.quote(self.remote_dir)} && tar xzf workload.tar.gz", timeout=30)

    # ---------------------------------------------------------------------------------- streaming

    def _line_cb(self, spec: NodeSpec) -> Callable[[str], None]:
        name = spec.name
        evid = self.evidence[name]

        def on_line(line: str) -> None:
            f = self._logf.get(name)
            if f is not None:
                try:
                    f.write(line + "\n")
                except ValueError:
                    pass
            if line.startswith(EXIT_TAG):
                try:
                    evid.exit_code = int(line.split()[1])
                except (IndexError, ValueError):
                    pass
                return
            if line.startswith("workload.train: {"):
                with self._cond:
                    self._started_loop = True
                    self._last_progress = time.monotonic()
                    self._cond.notify_all()
                return
            e = self.parser.parse(line, name)
            if e is not None:
                self._event(e)
                return
            kind = ev.scan_line(evid, line)
            if kind is not None:
                with self._cond:
                    if self._first_sign is None:
                        self._first_sign = time.monotonic()
                    self._cond.notify_all()
        return on_line

    def _event(self, e: IterationEvent) -> None:
        with self._cond:
            if e.step in self._steps_seen:
                return
            self._steps_seen.add(e.step)
            self.events.append(e)
            self._started_loop = True
            self._last_progress = time.monotonic()
            self._cond.notify_all()
        self.event_queue.put(e)
        if self.writer is not None:
            from testbed.metrics import Iteration
            self.writer.write(Iteration(time_ns=e.start_ns, step=e.step, duration_s=max(0.0, e.duration_s),
                                        tokens_per_s=max(0.0, e.tokens_per_s), loss=e.loss, warmup=e.warmup,
                                        placement=e.placement, layout=e.layout, model=e.model, **self.tags))
        if self.on_event is not None:
            try:
                self.on_event(e)
            except Exception:  # noqa: BLE001
                logger.exception("jobs: on_event callback failed")

    def wait_for_iteration(self, k: int, timeout: float) -> IterationEvent:
        """Block until iteration ``k`` (0-based) has finished; TimeoutError, or JobEnded if the job ended first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = next((e for e in self.events if e.step == k), None)
                if hit is not None:
                    return hit
                if self._outcome is not None:
                    raise JobEnded(f"job ended ({self._outcome.status}: {self._outcome.detail}) before iteration {k}",
                                   self._outcome)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"iteration {k} not finished within {timeout:g} s")
                self._cond.wait(min(left, 0.5))

    def wait_for_iteration_start(self, k: int, timeout: float) -> float:
        """Block until iteration ``k`` has started (the loop began for k=0, iteration k-1 finished
        otherwise); returns the controller's monotonic time when it learnt it."""
        if k > 0:
            self.wait_for_iteration(k - 1, timeout)
            return time.monotonic()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._started_loop:
                if self._outcome is not None:
                    raise JobEnded(f"job ended ({self._outcome.status}) before iteration 0", self._outcome)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"iteration 0 not started within {timeout:g} s")
                self._cond.wait(min(left, 0.5))
        return time.monotonic()

    # ---------------------------------------------------------------------------------- watchdog

    def stall_after_s(self) -> float:
        base = self.baseline_s
        if base is None:
            d = [e.duration_s for e in self.events if not e.warmup] or [e.duration_s for e in self.events]
            base = statistics.median(d) if d else 0.0
        return max(self.stall_factor * base, self.min_stall_s)

    def _watch(self) -> None:
        try:
            self._watch_loop()
        except Exception as e:  # noqa: BLE001
            logger.exception("jobs: watchdog failed")
            self._finish(INTERRUPTED, "watchdog-error", str(e))

    def _scheduler_verdict(self) -> tuple[str, str] | None:
        """(cause, detail) when the workload manager ended or refused the job (a scheduler's
        launcher says; nodes started over SSH have none)."""
        return None

    def _watch_loop(self) -> None:
        exited: set[str] = set()
        while not self._stopped and not self._ending:
            verdict = self._scheduler_verdict()
            if verdict is not None:
                self._first_sign = self._first_sign or time.monotonic()
                self._finish(INTERRUPTED, *verdict)
                return
            for n, j in self.jobs.items():
                if n not in exited and not j.running:
                    # the exit tag may still be in the reader: a node counts as exited once its
                    # output has been read to the end, so its exit code is known by then
                    if not j.drain(1.0):
                        logger.warning("jobs: %s on %s exited but its output did not end within 1 s", self.run_id, n)
                    exited.add(n)
            now = time.monotonic()
            done = {n: n in exited for n in self.jobs}
            codes = {n: self.evidence[n].exit_code for n in self.jobs}
            if all(done.values()) and all(c == 0 for c in codes.values()):
                self._finish(COMPLETED, None, f"{len(self.events)} iterations")
                return
            bad = any(done[n] and codes[n] != 0 for n in done)
            sign = self._first_sign
            if bad or sign is not None:
                with self._cond:
                    if self._first_sign is None:
                        self._first_sign = now
                    sign = self._first_sign
                # let the other ranks' logs tell their side (or all nodes exit), then classify
                if (now - sign >= self.settle_s or all(done.values())
                        or (self._started_loop and ev.evidence_complete(list(self.evidence.values()), done, started=True))):
                    cause, detail = ev.classify(list(self.evidence.values()), started=self._started_loop,
                                                addresses={s.name: s.data_address for s in self.specs})
                    self._finish(INTERRUPTED, cause, detail)
                    return
            else:
                with self._cond:
                    started, last = bool(self.events), self._last_progress
                if not started and now - self._t0 > self.startup_timeout_s:
                    self._first_sign = now
                    self._finish(STALLED, ev.STARTUP, f"no iteration within {self.startup_timeout_s:g} s of the start")
                    return
                if started and now - last > self.stall_after_s():
                    self._first_sign = now
                    self._finish(STALLED, ev.STALLED, f"no iteration for {now - last:.1f} s "
                                 f"(bound {self.stall_after_s():.1f} s) after step {self.events[-1].step}")
                    return
            time.sleep(0.05)

    def _finish(self, status: str, cause: str | None, detail: str) -> None:
        if self._ending and status != COMPLETED:
            return          # the nodes exit because end() stops them: that is not a failure
        t = time.monotonic()
        stop_t0 = time.monotonic()
        leftovers = self.stop()
        stop_s = time.monotonic() - stop_t0
        out = JobOutcome(status=status, cause=cause, detail=detail, iterations=len(self.events),
                         exit_codes={n: self.evidence[n].exit_code for n in self.evidence}, logs=dict(self.logs),
                         elapsed_s=t - self._t0,
                         detected_s=None if self._first_sign is None or status == COMPLETED
                         else t - self._first_sign,
                         decided_at=t, stop_s=stop_s, leftovers=leftovers)
        with self._cond:
            if self._outcome is None:
                self._outcome = out
            self._cond.notify_all()
        logger.info("jobs: %s %s (%s) after %.1f s", self.run_id, status, cause or "", out.elapsed_s)

    def wait(self, timeout: float | None = None) -> JobOutcome:
        """The outcome (the watchdog bounds it); on ``timeout`` the job is stopped and called stalled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._outcome is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.5 if left is None else min(left, 0.5))
            out = self._outcome
        if out is None:
            self._first_sign = self._first_sign or time.monotonic()
            self._finish(STALLED, ev.STALLED, f"wait() timed out after {timeout:g} s")
            out = self._outcome
        assert out is not None
        return out

    def end(self, why: str = "ended by the controller") -> JobOutcome:
        """End a job that is still training (a shared job whose cases are done): stopped on every
        node and recorded as completed, not as a failure; the outcome of a job that had already
        ended is returned as it was."""
        with self._cond:
            if self._outcome is None:
                self._ending = True
        if self._ending:
            self._finish(COMPLETED, "ended", f"{why} after {len(self.events)} iterations")
        assert self._outcome is not None
        return self._outcome

    def run(self, timeout: float | None = None) -> JobOutcome:
        if not self.jobs:
            self.start()
        return self.wait(timeout)

    @property
    def outcome(self) -> JobOutcome | None:
        return self._outcome

    # ---------------------------------------------------------------------------------- stop

    def _pattern(self) -> str:
        return run_pattern(self.run_id)

    def leftovers(self) -> dict[str, list[str]]:
        """Per node: processes whose command line carries this run's id (``pgrep -af``)."""
        out: dict[str, list[str]] = {}
        for name, node in self.nodes.items():
            try:
                r = node.run(f"pgrep -af {shlex.quote(self._pattern())}; true", timeout=15)
                out[name] = [x for x in r.stdout.splitlines() if x.strip()]
            except Exception as e:  # noqa: BLE001
                out[name] = [f"cannot check: {e}"]
        return out

    def stop(self) -> dict[str, list[str]]:
        """Stop every node for sure; returns what is left per node (empty lists when all is gone)."""
        with self._stop_lock:
            if self._stopped:
                return self._left
            self._stopped = True
            errs: dict[str, str] = {}

            def stop_node(name: str) -> None:
                node = self.nodes.get(name)
                if node is None:
                    return
                job = self.jobs.get(name)
                pat = shlex.quote(self._pattern())
                try:   # workers live in sessions of their own: TERM them by run id together with their
                    # torchrun (which would otherwise wait on a frozen worker until its grace ran
                    # out), CONT so that a stopped one acts on it
                    node.run(f"pkill -TERM -f {pat}; pkill -CONT -f {pat}; true", timeout=15)
                except Exception as e:  # noqa: BLE001
                    errs[name] = f"pattern TERM: {e}"
                try:
                    if job is not None and job.pgid:
                        job.stop(grace=self.stop_grace_s)
                except Exception as e:  # noqa: BLE001
                    errs[name] = errs.get(name, "") + f" group stop: {e}"
                try:   # what is left of them after the grace: KILL
                    node.run(f"for i in $(seq {max(1, int(self.stop_grace_s * 10))}); do "
                             f"pgrep -f {pat} >/dev/null || exit 0; sleep 0.1; done; pkill -KILL -f {pat}; "
                             f"sleep 0.2; true", timeout=30 + self.stop_grace_s)
                except Exception as e:  # noqa: BLE001
                    errs[name] = errs.get(name, "") + f" pattern stop: {e}"

            ts = [threading.Thread(target=stop_node, args=(n,)) for n in self.nodes]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            self._left = {n: v for n, v in self.leftovers().items() if v}
            self._after_stop(len(self.nodes) == len(self.specs))
            for n, e in errs.items():
                logger.warning("jobs: stopping %s on %s: %s", self.run_id, n, e)
            for node in self.nodes.values():
                try:
                    node.close()
                except Exception:  # noqa: BLE001
                    pass
            _live.discard(self)
            return self._left

    def _after_stop(self, reached_every_node: bool) -> None:
        """The journal entry goes once nothing of the job is left; the logs and the writer close."""
        if self._journal_entry is not None and not self._left and reached_every_node:
            try:       # stopped for sure on every node: nothing for `lab restore` to do
                self._journal.remove(self._journal_entry)
                self._journal_entry = None
            except OSError as exc:
                logger.warning("jobs: %s: cannot clear its journal entry: %s", self.run_id, exc)
        if self._left:
            logger.error("jobs: processes of %s left after stop: %s", self.run_id, self._left)
        self._fetch_logs()
        for f in self._logf.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
        self._logf.clear()
        if self.writer is not None and self._own_writer:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                logger.exception("jobs: closing the metrics writer")

    def _fetch_logs(self) -> None:
        """Real nodes: copy the node's own log next to the controller's copy."""
        if self.inv.is_emulated:
            return
        for spec in self.specs:
            node = self.nodes.get(spec.name)
            if node is None:
                continue
            try:
                node.get(f"{self.remote_dir}/{spec.name}.log", str(self.report_dir / f"{spec.name}.node.log"))
            except Exception as e:  # noqa: BLE001
                logger.warning("jobs: cannot fetch %s's log: %s", spec.name, e)

    # ---------------------------------------------------------------------------------- helpers for tests

    def worker_pids(self, node: str) -> list[int]:
        """The training processes on ``node``: the children of the torchrun in this job's process group."""
        job = self.jobs.get(node)
        if job is None or not job.pgid:
            raise JobError(f"no job started on {node}")
        r = self.nodes[node].run("ps -e -o pid=,ppid=,pgid=,args=", timeout=15)
        return torchrun_workers(r.stdout, job.pgid)

    def kill_rank(self, node: str, sig: str = "KILL") -> list[int]:
        """Send ``sig`` to ``node``'s workers only, so that its torchrun sees them go and reports it.

        Three ``ps`` snapshots before giving up (a clean CI run once found none in one), and the
        error shows what the process group held, so that a next time says why."""
        for attempt in range(3):
            if attempt:
                time.sleep(0.3)
            pids = self.worker_pids(node)
            if pids:
                break
        else:
            pgid = self.jobs[node].pgid
            group = self.nodes[node].run(f"ps -e -o pid=,ppid=,pgid=,stat=,args= | awk '$3 == {int(pgid)}'",
                                         timeout=15).stdout.strip().splitlines()
            state = self._outcome.status if self._outcome is not None else "running"
            raise JobError(f"no torchrun worker on {node} (process group {pgid}, job {state}); "
                           f"the group holds (pid ppid pgid stat args): {group or 'nothing'}")
        self.nodes[node].run(f"kill -{sig} {' '.join(map(str, pids))}", timeout=15)
        return pids

    def __enter__(self) -> TrainingJob:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class JobEnded(RuntimeError):
    def __init__(self, msg: str, outcome: JobOutcome) -> None:
        super().__init__(msg)
        self.outcome = outcome


_live: weakref.WeakSet[TrainingJob] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At interpreter exit (also after Ctrl-C), stop every job still running."""
    for job in list(_live):
        try:
            job.stop()
        except Exception:  # noqa: BLE001
            pass

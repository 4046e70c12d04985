"""testbed/jobs without the lab: rank order, commands, parsers, evidence and classification, bad input."""

from __future__ import annotations

import json
import threading
import time

import pytest

from drivers.errors import EditRejected
from testbed.inventory import load_inventory
from testbed.jobs import (CONNECTION_RESET, INTERRUPTED, NODE_START, PG_TIMEOUT, RANK_EXIT, RENDEZVOUS, JobError,
                          JsonLineParser, MegatronParser, NodeEvidence, TrainingJob, classify, evidence_complete,
                          node_specs, scan_line, torchrun_workers)
from testbed.jobs.launcher import ROOT
from workload.timing import IterationRecord, megatron_line

NODES = ["dc-b-gpu2", "dc-a-gpu1", "dc-b-gpu1", "dc-a-gpu2"]


@pytest.fixture(scope="module")
def inv():
    return load_inventory(ROOT / "inventory" / "emulated.yaml")


def test_node_ranks_follow_c10d_order_of_data_addresses(inv):
    specs = node_specs(inv, NODES)
    assert [s.name for s in specs] == ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]
    assert [s.rank for s in specs] == [0, 1, 2, 3]
    assert [s.site for s in specs] == ["dc-a", "dc-a", "dc-b", "dc-b"]
    assert specs[0].python == str(ROOT / ".venv" / "bin" / "python")


def test_command_has_c10d_rendezvous_on_the_fabric_and_sites_in_rank_order(inv, tmp_path):
    job = TrainingJob(inv, NODES, ["--model", "test", "--pp", "2", "--dp", "2", "--placement", "pp-remote"], "r-1",
                      pg_timeout_s=10, report_dir=tmp_path, metrics=None)
    c0, c2 = job.node_command(job.specs[0]), job.node_command(job.specs[2])
    for c in (c0, c2):
        assert "--rdzv-backend c10d" in c and "--rdzv-endpoint 198.18.1.11:29500" in c
        assert "--nnodes 4 --nproc-per-node 1" in c and "--max-restarts 0" in c
        assert "--sites dc-a,dc-a,dc-b,dc-b" in c and "--run-id r-1" in c and "--pg-timeout-s 10" in c
        assert c.rstrip().endswith('echo "DCILAB-EXIT $rc"; exit $rc')
    assert "is_host=1" in c0 and "--local-addr 198.18.1.11" in c0
    assert "is_host=0" in c2 and "--local-addr 198.18.2.11" in c2
    env = job.node_env(job.specs[0])
    assert env["GLOO_SOCKET_IFNAME"] == "fab0" and env["PYTHONPATH"] == str(ROOT)


def test_external_command_template(inv, tmp_path):
    job = TrainingJob(inv, NODES[:2], run_id="ext", report_dir=tmp_path, metrics=None, parser=MegatronParser(),
                      command="torchrun --node-rank {node_rank} --nnodes {nnodes} --master-addr {master_addr} "
                              "--master-port {master_port} pretrain_gpt.py --log-interval 1")
    c = job.node_command(job.specs[1])
    assert "--node-rank 1 --nnodes 2 --master-addr 198.18.1.11 --master-port 29500" in c
    assert job.specs[1].name == "dc-b-gpu2"


def test_several_ranks_per_node_up_to_its_gpus(inv, tmp_path):
    """Issue 18 item 4: one torchrun per node with nproc_per_node workers; the sites stay one per
    node (workload.train spreads them over the node's ranks), and a node with fewer gpus than
    ranks is refused naming the inventory and the fix."""
    nodes = ["dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"]
    args = ["--model", "tiny-mha", "--tp", "4", "--pp", "4", "--dp", "2", "--placement", "pp-remote"]
    job = TrainingJob(inv, nodes, args, "r-8", report_dir=tmp_path, metrics=None, nproc_per_node=8)
    c = job.node_command(job.specs[3])
    assert "--nnodes 4 --nproc-per-node 8" in c and "--sites dc-a,dc-a,dc-b,dc-b" in c
    ext = TrainingJob(inv, nodes[:2], run_id="ext", report_dir=tmp_path, metrics=None, nproc_per_node=4,
                      command="torchrun --nnodes {nnodes} --nproc-per-node {nproc_per_node} x.py")
    assert "--nnodes 2 --nproc-per-node 4 x.py" in ext.node_command(ext.specs[0])
    with pytest.raises(JobError) as e:
        TrainingJob(inv, nodes, args, "r-16", report_dir=tmp_path, metrics=None, nproc_per_node=16)
    assert str(inv.source) in str(e.value) and "dc-a-gpu1 (8)" in str(e.value) and "gpus: 16" in str(e.value)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(JobError, match="positive integer"):
            TrainingJob(inv, nodes, args, "r-x", report_dir=tmp_path, metrics=None, nproc_per_node=bad)


@pytest.mark.parametrize("nodes,args,rid,msg", [
    (["dc-a-gpu1"], [], "bad id!", "run_id"),
    (["dc-a-gpu1"], [], "x\n", "run_id"),                # `$` would match before the newline
    (["dc-a-gpu1"], [], "../../x", "run_id"),
    (["dc-a-gw"], [], "r", "not a gpu_node"),
    (["dc-a-gpu1", "dc-a-gpu1"], [], "r", "twice"),
    ([], [], "r", "no GPU nodes"),
    (["dc-a-gpu1"], ["--placement", "nowhere"], "r", "does not accept"),
    (["dc-a-gpu1"], ["--nproc-per-node", "2"], "r", "not torchrun's"),
])
def test_bad_input_is_refused_before_anything_starts(inv, tmp_path, nodes, args, rid, msg):
    with pytest.raises(JobError, match=msg):
        TrainingJob(inv, nodes, args, rid, report_dir=tmp_path, metrics=None)


def test_json_parser_reads_workload_lines_only():
    rec = IterationRecord(step=3, start_ns=1_700_000_000_000_000_000, end_ns=1_700_000_000_500_000_000,
                          duration_s=0.5, tokens_per_s=1000.0, loss=2.5, layout="tp1-pp2-dp2",
                          placement="pp-remote", warmup=False, model="test", extra={"run_id": "x"})
    e = JsonLineParser().parse(rec.to_json(), "n1")
    assert (e.step, e.start_ns, e.duration_s, e.loss, e.layout, e.placement, e.node) == (
        3, rec.start_ns, 0.5, 2.5, "tp1-pp2-dp2", "pp-remote", "n1")
    assert JsonLineParser().parse('{"not": "an iteration"}', "n1") is None
    assert JsonLineParser().parse("workload.train: {}", "n1") is None
    assert JsonLineParser().parse('{"step": 1, "duration_s": broken', "n1") is None


def test_megatron_parser_reads_elapsed_time_per_iteration():
    rec = IterationRecord(step=4, start_ns=time.time_ns(), end_ns=time.time_ns(), duration_s=1.2345, tokens_per_s=0,
                          loss=3.25, layout="x", placement="local", warmup=False, model="m")
    line = megatron_line(rec, 10, consumed_samples=40, global_batch=8, lr=1e-4)
    p = MegatronParser(tokens_per_iteration=8 * 128, warmup=2)
    t0 = time.time_ns()
    e = p.parse(line, "n2")
    assert e.step == 4 and e.duration_s == pytest.approx(1.2345, abs=1e-4) and e.loss == pytest.approx(3.25)
    assert e.end_ns >= t0 and e.end_ns - e.start_ns == pytest.approx(1.2345e9, rel=1e-3)
    assert e.tokens_per_s == pytest.approx(1024 / 1.2345, rel=1e-3) and not e.warmup
    # a real Megatron-LM line (core_r0.9 format)
    real = (" [2024-05-01 12:00:01] iteration        1/     500 | consumed samples:          256 | elapsed time per "
            "iteration (ms): 4187.3 | throughput per GPU (TFLOP/s/GPU): 171.2 | learning rate: 1.500000E-06 | "
            "global batch size:   256 | lm loss: 1.089349E+01 | loss scale: 1.0 | grad norm: 12.345 | "
            "number of skipped iterations:   0 | number of nan iterations:   0 |")
    e = p.parse(real, "n2")
    assert e.step == 0 and e.warmup and e.duration_s == pytest.approx(4.1873) and e.loss == pytest.approx(10.89349)
    assert p.parse("some other log line", "n2") is None


LOGS = {
    "kill": {
        "a": ["[E gloo] Read error [198.18.2.11]:4312: Connection reset by peer"],
        "b": ["torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
              "  rank      : 2 (local_rank: 0)", "  exitcode  : -9 (pid: 4242)",
              "  traceback : Signal 9 (SIGKILL) received by PID 4242"],
        "c": ["RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
              "[198.18.2.11]:23456", "  exitcode  : 1 (pid: 77)"],
    },
    "timeout": {
        "a": ["RuntimeError: [../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting "
              "10000ms for recv operation to complete", "  exitcode  : 1 (pid: 5)"],
        "b": ["Connection closed by peer [198.18.1.11]:1234", "  exitcode  : 1 (pid: 6)"],
    },
    "start": {"a": ["/usr/bin/python3: No module named torch"]},
    "rdzv": {"a": ["torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"]},
}


@pytest.mark.parametrize("case,cause,where", [("kill", RANK_EXIT, "rank 2 on b exited (signal SIGKILL)"),
                                              ("timeout", PG_TIMEOUT, "a: "), ("start", NODE_START, "a: "),
                                              ("rdzv", RENDEZVOUS, "a: ")])
def test_classify_finds_the_root_cause(case, cause, where):
    evs = []
    for node, lines in LOGS[case].items():
        n = NodeEvidence(node)
        for line in lines:
            scan_line(n, line)
        evs.append(n)
    got, detail = classify(evs)
    assert got == cause and detail.startswith(where), detail


def test_connection_reset_alone_and_iteration_lines_are_not_evidence():
    n = NodeEvidence("a")
    assert scan_line(n, json.dumps({"step": 1, "note": "Connection reset by peer"})) is None
    assert scan_line(n, "Connection reset by peer") == CONNECTION_RESET
    assert classify([n])[0] == CONNECTION_RESET
    m = NodeEvidence("b", exit_code=3)
    assert classify([m]) == (RANK_EXIT, "b: torchrun exited 3")


# ------------------------------------------------------------------------------------ which processes are the rank

# `ps -e -o pid=,ppid=,pgid=,args=` on dc-b-gpu1 during a pp-remote run (the emulated lab; commands
# shortened): the job's process group 18888 holds the wrapper bash, sh -c, tee and torchrun, whose
# command lines all carry the torchrun command; the worker 19597 runs in a session of its own.
PS = """\
17929  5464 17929 sshd: root@notty
18763 17929 18763 setsid -w bash -c echo "DCILAB-PGID $$"; PYTHONUNBUFFERED=1 sh -c "$1" 2>&1 | tee -p -a "$2"; \
exit "${PIPESTATUS[0]}" dcilab-job mkdir -p /r/node && cd /w && { /w/.venv/bin/python -m torch.distributed.run \
--nnodes 4 --local-addr 198.18.2.11 -m workload.train --run-id x ; }; rc=$?; echo "DCILAB-EXIT $rc"; exit $rc
18888 18763 18888 bash -c echo "DCILAB-PGID $$"; PYTHONUNBUFFERED=1 sh -c "$1" 2>&1 | tee -p -a "$2"; exit \
"${PIPESTATUS[0]}" dcilab-job mkdir -p /r/node && cd /w && { /w/.venv/bin/python -m torch.distributed.run --nnodes 4 \
--local-addr 198.18.2.11 -m workload.train --run-id x ; }; rc=$?; echo "DCILAB-EXIT $rc"; exit $rc /r/node/b1.log
19005 18888 18888 sh -c mkdir -p /r/node && cd /w && { /w/.venv/bin/python -m torch.distributed.run --nnodes 4 \
--local-addr 198.18.2.11 -m workload.train --run-id x ; }; rc=$?; echo "DCILAB-EXIT $rc"; exit $rc
19006 18888 18888 tee -p -a /r/node/b1.log
19009 19005 18888 /w/.venv/bin/python -m torch.distributed.run --nnodes 4 --local-addr 198.18.2.11 -m workload.train \
--run-id x
19597 19009 19597 /w/.venv/bin/python -u -m workload.train --model test --run-id x
19372 19369 19258 /w/.venv/bin/python -m torch.distributed.run --nnodes 4 --local-addr 198.18.2.12 -m workload.train \
--run-id x
19595 19372 19595 /w/.venv/bin/python -u -m workload.train --model test --run-id x
    2     0     0 [kthreadd]
"""


def test_the_rank_is_torchruns_worker_not_the_wrappers_around_it():
    # a command-line match kills bash, sh, tee and torchrun too: torchrun then never reports the
    # worker nor its own exit code (what the kill test used to see)
    assert torchrun_workers(PS, 18888) == [19597]
    assert torchrun_workers(PS, 19258) == [19595]      # another node's group (shared PID namespace)
    assert torchrun_workers(PS, 12345) == []
    script = "100 1 100 bash -c x\n101 100 100 /usr/bin/python3.11 /opt/venv/bin/torchrun --nnodes 2 train.py\n" \
             "102 101 102 /usr/bin/python3.11 -u train.py\n103 100 100 sh -c torchrun --nnodes 2 train.py\n"
    assert torchrun_workers(script, 100) == [102]


# ------------------------------------------------------------------------------------ when the evidence is complete


def _node(name, *lines, exited=False):
    n = NodeEvidence(name)
    for line in lines:
        scan_line(n, line)
    return n, exited


TIMEOUT = ("[rank0]: RuntimeError: [gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for recv "
           "operation to complete")
RESET = "[rank0]: RuntimeError: [gloo/transport/tcp/pair.cc:537] Read error [198.18.2.11]:58588: Connection reset by peer"
KILLED = ("E1128 00:32:33.708000 13995 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) "
          "local_rank: 0 (pid: 14528) of binary: /w/.venv/bin/python")


# what a non-host torchrun logs when the host's torchrun (and the c10d store) has gone first,
# also at the end of a run that completed
RDZV_SHUTDOWN = ("torch.distributed.elastic.rendezvous.api.RendezvousConnectionError: The connection to the C10d "
                 "store has failed. See inner exception for details.")


@pytest.mark.parametrize("nodes,started,complete", [
    ([_node("a", TIMEOUT), _node("b", TIMEOUT), _node("c", TIMEOUT)], True, True),   # every rank timed out
    ([_node("a", TIMEOUT), _node("b", TIMEOUT), _node("c")], True, False),           # c has not spoken
    ([_node("a", RESET), _node("b", KILLED)], True, False),                          # b's torchrun is about to exit
    ([_node("a", RESET), _node("b", KILLED, exited=True)], True, True),              # ... and has
    ([_node("a", RESET), _node("b", exited=True)], True, True),                      # exited silently
    ([_node("a", exited=True), _node("b", RDZV_SHUTDOWN)], True, False),             # b winds down: wait
    ([_node("a", exited=True), _node("b", RDZV_SHUTDOWN)], False, True),             # before the loop: a cause
])
def test_evidence_is_complete_when_every_node_has_exited_or_spoken(nodes, started, complete):
    assert evidence_complete([n for n, _ in nodes], {n.node: x for n, x in nodes}, started=started) is complete


# ------------------------------------------------------------------------------------ the watchdog, with fake nodes


class FakeJob:
    """A RemoteJob whose end the test decides: ``running`` turns False, then the last lines come."""

    pgid = None

    def __init__(self) -> None:
        self.exited = False
        self.eof = threading.Event()

    @property
    def running(self) -> bool:
        return not self.exited

    def drain(self, timeout: float) -> bool:
        return self.eof.wait(timeout)


def _watched(inv, tmp_path, settle_s):
    job = TrainingJob(inv, NODES, ["--model", "test", "--pp", "2", "--dp", "2"], "w-1", report_dir=tmp_path,
                      metrics=None, settle_s=settle_s)
    job.jobs = {s.name: FakeJob() for s in job.specs}
    cbs = {s.name: job._line_cb(s) for s in job.specs}
    job._t0 = job._last_progress = time.monotonic()
    job._watchdog = threading.Thread(target=job._watch, daemon=True)
    job._watchdog.start()
    cbs["dc-a-gpu1"]('workload.train: {"model": "test"}')
    return job, cbs


def test_a_killed_rank_is_decided_when_its_torchrun_exits_with_its_exit_code(inv, tmp_path):
    job, say = _watched(inv, tmp_path, settle_s=30)
    for n in ("dc-a-gpu1", "dc-a-gpu2", "dc-b-gpu2"):
        say[n](RESET)
    say["dc-b-gpu1"](KILLED)
    for line in ("  rank      : 2 (local_rank: 0)", "  exitcode  : -9 (pid: 14528)  (SIGKILL)",
                 "  traceback : Signal 9 (SIGKILL) received by PID 14528"):
        say["dc-b-gpu1"](line)
    time.sleep(0.5)
    assert job.outcome is None          # dc-b-gpu1's torchrun reported its worker: wait for its exit
    t = time.monotonic()
    job.jobs["dc-b-gpu1"].exited = True  # the exit status is in, the exit tag not yet read
    time.sleep(0.3)
    say["dc-b-gpu1"]("DCILAB-EXIT 1")
    job.jobs["dc-b-gpu1"].eof.set()
    out = job.wait(5)
    assert (out.status, out.cause, out.detail) == (INTERRUPTED, RANK_EXIT, "rank 2 on dc-b-gpu1 exited (signal SIGKILL)")
    assert out.exit_codes == {"dc-a-gpu1": None, "dc-a-gpu2": None, "dc-b-gpu1": 1, "dc-b-gpu2": None}
    assert out.decided_at - t < 1.0 and out.detected_s < 2.0


def test_a_pg_timeout_on_every_rank_is_decided_at_once(inv, tmp_path):
    job, say = _watched(inv, tmp_path, settle_s=30)
    t = time.monotonic()
    for n in NODES:
        say[n](TIMEOUT)
    out = job.wait(5)
    assert (out.status, out.cause) == (INTERRUPTED, PG_TIMEOUT) and "Timed out waiting 10000ms" in out.detail
    assert out.decided_at - t < 0.5


def test_a_silent_node_is_waited_for_until_the_settle_window_ends(inv, tmp_path):
    job, say = _watched(inv, tmp_path, settle_s=1.0)
    for n in NODES[:3]:
        say[n](TIMEOUT)
    out = job.wait(5)
    assert (out.status, out.cause) == (INTERRUPTED, PG_TIMEOUT)
    assert 1.0 <= out.detected_s < 1.5


def test_a_run_that_completes_is_completed_although_torchruns_log_rendezvous_errors_winding_down(inv, tmp_path):
    job, say = _watched(inv, tmp_path, settle_s=30)
    say["dc-a-gpu1"]("DCILAB-EXIT 0")                  # the host (and the c10d store) go first
    job.jobs["dc-a-gpu1"].exited = True
    job.jobs["dc-a-gpu1"].eof.set()
    for n in ("dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"):
        say[n](RDZV_SHUTDOWN)
    time.sleep(0.3)
    assert job.outcome is None
    for n in ("dc-a-gpu2", "dc-b-gpu1", "dc-b-gpu2"):
        say[n]("DCILAB-EXIT 0")
        job.jobs[n].exited = True
        job.jobs[n].eof.set()
    out = job.wait(5)
    assert out.ok and out.exit_codes == dict.fromkeys(NODES, 0), out


def test_a_job_the_controller_ends_is_completed_not_interrupted_by_its_own_stop(inv, tmp_path):
    """A shared job ends when its cases are done: the ranks exit non-zero because they are
    stopped, which must not turn into an interruption; a job that had already failed keeps its
    outcome."""
    job, say = _watched(inv, tmp_path, settle_s=0.2)
    out = job.end("its cases are done")
    for n in NODES:                                   # what stopping looks like from the nodes
        say[n](RESET)
        say[n]("DCILAB-EXIT 143")
        job.jobs[n].exited = True
        job.jobs[n].eof.set()
    time.sleep(0.5)
    assert (out.status, out.cause) == ("completed", "ended") and "its cases are done" in out.detail
    assert job.outcome is out and job.wait(1) is out

    failed, say = _watched(inv, tmp_path, settle_s=30)
    for n in NODES:
        say[n](TIMEOUT)
    first = failed.wait(5)
    assert failed.end("the run is over") is first and (first.status, first.cause) == (INTERRUPTED, PG_TIMEOUT)


def test_a_real_nodes_job_folder_is_private_and_unguessable(tmp_path):
    """On real nodes the job unpacks and runs code from its folder: a fixed /tmp path could be
    created first by another user of the node.  Each job gets a fresh name and an exclusive
    ``mkdir -m 700`` (no -p) that fails if the folder is already there."""
    real = load_inventory(ROOT / "inventory" / "lab.example.yaml")
    nodes = [d.name for d in real.devices if d.kind.value == "gpu_node"][:2]
    a = TrainingJob(real, nodes, ["--model", "test"], "r-1", report_dir=tmp_path / "a", metrics=None)
    b = TrainingJob(real, nodes, ["--model", "test"], "r-1", report_dir=tmp_path / "b", metrics=None)
    assert a.remote_dir != b.remote_dir and a.remote_dir.startswith("/tmp/dcilab-job-r-1.")

    class Node:
        def __init__(self, exists: bool = False) -> None:
            self.cmds, self.exists = [], exists

        def check(self, cmd: str, timeout: float = 60.0) -> None:
            self.cmds.append(cmd)
            if self.exists:
                raise EditRejected(f"{cmd!r} exited 1: mkdir: cannot create directory: File exists", "node")
    a.nodes = {nodes[0]: Node(), nodes[1]: Node()}
    a._make_private_dirs()
    assert [n.cmds for n in a.nodes.values()] == [[f"umask 077 && mkdir -m 700 -- {a.remote_dir}"]] * 2
    a.nodes = {nodes[0]: Node(), nodes[1]: Node(exists=True)}
    with pytest.raises(JobError, match=f"{nodes[1]}: cannot create the job's private folder"):
        a._make_private_dirs()
    emulated = TrainingJob(load_inventory(ROOT / "inventory" / "emulated.yaml"), ["dc-a-gpu1", "dc-b-gpu1"],
                           ["--model", "test"], "r-2", report_dir=tmp_path / "c", metrics=None)
    assert emulated.remote_dir == str(tmp_path / "c" / "node") and not emulated._private_dir

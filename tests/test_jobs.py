"""testbed/jobs without the lab: rank order, commands, parsers, evidence and classification, bad input."""

from __future__ import annotations

import json
import time

import pytest

from testbed.inventory import load_inventory
from testbed.jobs import (CONNECTION_RESET, NODE_START, PG_TIMEOUT, RANK_EXIT, RENDEZVOUS, JobError, JsonLineParser,
                          MegatronParser, NodeEvidence, TrainingJob, classify, node_specs, scan_line)
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


@pytest.mark.parametrize("nodes,args,rid,msg", [
    (["dc-a-gpu1"], [], "bad id!", "run_id"),
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

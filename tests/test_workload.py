"""Tests for workload/: model arithmetic and properties, placement grids, timing output, and
end-to-end torchrun runs (gloo on CPU, the ``test`` size so that each run takes seconds)."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from workload.model import (MODELS, Attention, RMSNorm, apply_rope, build_stage, get_config,  # noqa: E402
                            param_count, rope_tables, split_layers)
from workload.parallel import build_layout, site_map  # noqa: E402
from workload.timing import IterationRecord, IterationTimer, megatron_line, parse_megatron_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- model arithmetic

def test_llama_param_counts_match_published():
    # HF LLaMA-7B / 13B parameter counts (untied, vocab 32000)
    assert param_count(MODELS["llama-7b"]) == 6_738_415_616
    assert param_count(MODELS["llama-13b"]) == 13_015_864_320
    assert 6.6e9 < param_count(MODELS["llama-7b"]) < 6.8e9


def test_meta_build_matches_arithmetic_without_allocating():
    for name in ("llama-7b", "tiny", "test"):
        cfg = MODELS[name]
        st = build_stage(cfg, device="meta")
        assert all(p.is_meta for p in st.parameters())
        assert sum(p.numel() for p in st.parameters()) == param_count(cfg)


def test_tp_shards_and_stage_split_shapes():
    cfg = MODELS["llama-13b"]
    parts = split_layers(cfg.n_layers, 4)
    assert [len(r) for r in parts] == [10, 10, 10, 10] and parts[-1].stop == 40
    assert [len(r) for r in split_layers(10, 4)] == [3, 3, 2, 2]
    st = build_stage(cfg, parts[1], first=False, last=False, tp=8, device="meta")
    blk = st.layers["10"]
    assert blk.attn.wq.weight.shape == (5120 // 8, 5120)
    assert blk.attn.wo.weight.shape == (5120, 5120 // 8)
    assert blk.mlp.w1.weight.shape == (13824 // 8, 5120)
    assert blk.mlp.w2.weight.shape == (5120, 13824 // 8)
    assert st.tok_embeddings is None and st.output is None
    with pytest.raises(ValueError):
        build_stage(MODELS["tiny"], tp=3, device="meta")   # 8 heads / 2 kv heads


def test_tied_embeddings_share_one_tensor():
    cfg = get_config("test", tied_embeddings=True)
    st = build_stage(cfg)
    assert st.output.weight is st.tok_embeddings.weight
    assert param_count(cfg) == sum(p.numel() for p in st.parameters())


# ---------------------------------------------------------------- model properties

def test_rmsnorm_unit_rms():
    x = torch.randn(3, 5, 64) * 7
    y = RMSNorm(64)(x)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(3, 5), atol=1e-3)


def test_rope_preserves_norm_and_is_relative():
    hd, S = 16, 32
    cos, sin = rope_tables(S, hd)
    q, k = torch.randn(hd), torch.randn(hd)
    x = q.expand(1, 1, S, hd).contiguous()
    rq = apply_rope(x, cos, sin)[0, 0]
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(S), atol=1e-5)
    rk = apply_rope(k.expand(1, 1, S, hd).contiguous(), cos, sin)[0, 0]
    # <R(m) q, R(n) k> depends only on m - n
    d1 = rq[10] @ rk[7]
    d2 = rq[20] @ rk[17]
    assert torch.allclose(d1, d2, atol=1e-4)
    assert torch.allclose(apply_rope(x, cos, sin)[0, 0, 0], q)   # position 0: identity


def test_gqa_equals_mha_with_repeated_kv_heads_and_is_causal():
    torch.manual_seed(0)
    cfg = get_config("test")                     # 4 heads, 2 kv heads, head_dim 16
    gqa = Attention(cfg)
    mha = Attention(get_config("test", n_kv_heads=4))
    hd, rep = cfg.head_dim, cfg.n_heads // cfg.n_kv_heads
    with torch.no_grad():
        mha.wq.weight.copy_(gqa.wq.weight)
        mha.wo.weight.copy_(gqa.wo.weight)
        for n in ("wk", "wv"):
            w = getattr(gqa, n).weight.view(cfg.n_kv_heads, hd, cfg.dim)
            getattr(mha, n).weight.copy_(w.repeat_interleave(rep, 0).reshape(-1, cfg.dim))
    assert gqa.wk.weight.numel() * rep == mha.wk.weight.numel()
    cos, sin = rope_tables(cfg.seq_len, hd)
    x = torch.randn(2, 12, cfg.dim)
    y = gqa(x, cos, sin)
    assert torch.allclose(y, mha(x, cos, sin), atol=1e-5)
    x2 = x.clone()
    x2[:, 8:] = torch.randn(2, 4, cfg.dim)       # change the future only
    assert torch.allclose(gqa(x2, cos, sin)[:, :8], y[:, :8], atol=1e-5)


def test_init_is_layout_independent():
    cfg = get_config("test")
    full = build_stage(cfg, seed=7)
    st = build_stage(cfg, split_layers(cfg.n_layers, 2)[1], first=False, last=True, tp=2, tp_rank=1, seed=7)
    w_full = full.layers["3"].attn.wq.weight
    w_shard = st.layers["3"].attn.wq.weight
    assert torch.equal(w_shard, w_full[w_full.shape[0] // 2:])
    assert torch.equal(st.layers["3"].mlp.w2.weight, full.layers["3"].mlp.w2.weight[:, cfg.ffn_dim // 2:])
    assert torch.equal(st.output.weight, full.output.weight)


# ---------------------------------------------------------------- placement grids

def test_site_map_per_node_and_per_rank():
    assert site_map("dc-a,dc-b", 4) == ["dc-a", "dc-a", "dc-b", "dc-b"]
    assert site_map(["a", "b", "a", "b"], 4) == ["a", "b", "a", "b"]
    assert site_map(None, 3) == ["local"] * 3
    with pytest.raises(ValueError):
        site_map("a,b,c", 4)


def test_pp_remote_crosses_only_at_stage_boundary():
    lay = build_layout(1, 2, 2, "pp-remote", "dc-a,dc-a,dc-b,dc-b")
    x = lay.cross_site_pairs()
    assert x["dp"] == [] and x["tp"] == []
    assert len(x["pp"]) == 2                     # one boundary per pipeline (dp=2)
    for a, b in x["pp"]:
        assert lay.sites[a] == "dc-a" and lay.sites[b] == "dc-b"
        assert lay.coord(a)[0] == 0 and lay.coord(b)[0] == 1
    assert lay.name == "tp1-pp2-dp2"
    assert lay.describe()["stage_sites"] == [["dc-a"], ["dc-b"]]


def test_pp_remote_four_stages_two_sites_one_wan_boundary():
    lay = build_layout(2, 4, 2, "pp-remote", "a,a,b,b", world=16)      # 4 nodes x 4 ranks
    x = lay.cross_site_pairs()
    assert x["dp"] == [] and x["tp"] == []
    assert {(lay.coord(a)[0], lay.coord(b)[0]) for a, b in x["pp"]} == {(1, 2)}
    assert len(x["pp"]) == 2 * 2                 # dp * tp pipelines, each crossing once
    for g in lay.tp_groups():                    # TP on consecutive ranks of one node
        assert g[1] == g[0] + 1 and g[0] // 4 == g[1] // 4


def test_dp_remote_crosses_only_in_gradient_allreduce():
    lay = build_layout(1, 2, 2, "dp-remote", "dc-a,dc-a,dc-b,dc-b")
    x = lay.cross_site_pairs()
    assert x["pp"] == [] and x["tp"] == []
    assert len(x["dp"]) == 2                     # one dp group per stage
    for a, b in x["dp"]:
        assert lay.coord(a)[0] == lay.coord(b)[0]   # same stage, different replica
    for g in lay.pp_groups():                    # a whole replica stays in one site
        assert len({lay.sites[r] for r in g}) == 1


def test_dp_remote_with_four_replicas():
    lay = build_layout(1, 2, 4, "dp-remote", "a,b", world=8)
    x = lay.cross_site_pairs()
    assert x["pp"] == [] and len(x["dp"]) == 2 * (2 * 2)   # per stage group of 4: 2x2 cross pairs


def test_local_placement():
    lay = build_layout(2, 2, 1, "local", None)
    assert all(v == [] for v in lay.cross_site_pairs().values())
    assert sorted(r for g in lay.tp_groups() for r in g) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="one site"):
        build_layout(1, 2, 2, "local", "a,b")


@pytest.mark.parametrize("args,msg", [
    ((1, 3, 2, "pp-remote", "a,b"), "multiple of the number of sites"),
    ((1, 2, 3, "dp-remote", "a,b"), "dp=3 must be a multiple"),
    ((1, 2, 3, "dp-remote", "a,b,c,d"), "neither one per rank"),
    ((1, 2, 2, "pp-remote", ["a", "a", "a", "b"]), "balanced"),
    ((1, 2, 2, "ring", "a,b"), "unknown placement"),
])
def test_bad_layouts_are_refused(args, msg):
    with pytest.raises(ValueError, match=msg):
        build_layout(*args)


def test_world_mismatch_refused():
    with pytest.raises(ValueError, match="world has 8"):
        build_layout(1, 2, 2, "local", None, world=8)


# ---------------------------------------------------------------- timing output

def test_timer_without_distributed_writes_json_and_marks_warmup(tmp_path):
    out = tmp_path / "it.jsonl"
    buf = io.StringIO()
    t = IterationTimer(rank=0, layout="tp1-pp1-dp1", placement="local", model="test", tokens_per_step=1000,
                       warmup=1, out_path=str(out), stream=buf)
    for s in range(3):
        with t.iteration(s) as it:
            it.loss = 5.0 - s
    t.close()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["warmup"] for x in lines] == [True, False, False]
    assert [x["loss"] for x in lines] == [5.0, 4.0, 3.0]
    assert set(lines[0]) == {"step", "start_ns", "end_ns", "duration_s", "tokens_per_s", "loss", "layout",
                             "placement", "warmup", "model"}
    assert all(x["end_ns"] > x["start_ns"] and x["duration_s"] > 0 for x in lines)
    assert all(-1000 <= x["end_ns"] - x["start_ns"] - x["duration_s"] * 1e9 < 0.05e9 for x in lines)
    assert buf.getvalue().splitlines() == out.read_text().splitlines()


# Two ranks over gloo (a FileStore rendezvous, no port to pick), each running this with its RANK.
# SLOW[step] is the rank that sleeps SLOW_S in the step while the other sleeps FAST_S; before step 2
# rank 1 also sleeps OUTSIDE_S between iterations, which the start barrier must keep out of the timing.
_TWO_RANKS = """
import json, os, sys, time
import torch.distributed as dist
from workload.timing import IterationTimer
rank = int(os.environ["RANK"])
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=rank, world_size=2)
slow, slow_s, fast_s, outside_s = json.loads(sys.argv[3]), *map(float, sys.argv[4:7])
t = IterationTimer(rank=rank, layout="tp1-pp1-dp2", placement="local", model="test", tokens_per_step=100,
                   warmup=1, out_path=sys.argv[2], extra={"run_id": "two-ranks"})
got = []
for step, who in enumerate(slow):
    if step == 2 and rank == 1:
        time.sleep(outside_s)
    with t.iteration(step) as it:
        time.sleep(slow_s if rank == who else fast_s)
        # the loss lives on rank 1 (rank 0 has none), except in step 3 where both have one
        it.loss = 2.0 + step if rank == 1 else (100.0 if step == 3 else None)
    got.append(t.records[-1].step if t.records else None)
t.close()
print("RETURNED " + json.dumps(got), flush=True)
dist.destroy_process_group()
"""


def test_timer_over_two_ranks_records_the_slowest_rank_and_starts_together(tmp_path):
    # the fast rank sleeps long enough that "the slowest" (0.4 s) and "the sum" (0.7 s) stay apart by far more
    # than a loaded 2-core machine adds to an iteration (CI saw +60 ms on 0.12 + 0.04 s)
    slow, slow_s, fast_s, outside_s = [1, 0, 1, 1, 0], 0.400, 0.300, 0.300
    out = tmp_path / "it.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = [str(tmp_path / "store"), str(out), json.dumps(slow), str(slow_s), str(fast_s), str(outside_s)]
    procs = [subprocess.Popen([sys.executable, "-c", _TWO_RANKS, *args], cwd=ROOT, env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    res = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in res]
    recs = _lines(out)
    assert [r["step"] for r in recs] == list(range(len(slow))) and [r["warmup"] for r in recs][:2] == [True, False]
    for r in recs:
        # the slowest rank's duration, also when rank 0 (which writes the record) was the fast one;
        # not the sum of both (0.7 s), and without rank 1's sleep between iterations (step 2)
        assert slow_s <= r["duration_s"] < slow_s + fast_s / 2, r
        # end_ns: when rank 0 learnt that both had finished; off the duration by latency and barrier skew only
        assert abs(r["end_ns"] - r["start_ns"] - r["duration_s"] * 1e9) < fast_s * 1e9, r
        assert r["tokens_per_s"] == pytest.approx(100 / r["duration_s"])
    assert [r["loss"] for r in recs] == [2.0, 3.0, 4.0, 100.0, 6.0]     # MAX over ranks; None counts as -inf
    assert all(b["start_ns"] >= a["end_ns"] for a, b in zip(recs, recs[1:], strict=False))
    assert recs[2]["start_ns"] - recs[1]["end_ns"] >= outside_s / 2 * 1e9   # the barrier waited for rank 1 (none: ~0)
    stdout = [[x for x in o.splitlines() if x.startswith("RETURNED ")] for o, _ in res]
    assert stdout[0] == ["RETURNED " + json.dumps(list(range(len(slow))))]       # rank 0 records each step
    assert stdout[1] == ["RETURNED " + json.dumps([None] * len(slow))]           # rank 1 records nothing
    assert [json.loads(x) for x in res[0][0].splitlines() if x.startswith("{")] == recs  # stdout = --out


def test_megatron_line_roundtrip():
    rec = IterationRecord(step=2, start_ns=0, end_ns=1_700_000_000_000_000_000, duration_s=1.2345, tokens_per_s=1,
                          loss=3.25, layout="tp1-pp2-dp2", placement="pp-remote", warmup=False, model="tiny")
    line = megatron_line(rec, 10, consumed_samples=24, global_batch=8, lr=1e-3)
    assert "iteration        3/      10 |" in line
    assert "elapsed time per iteration (ms): 1234.5 |" in line
    assert "lm loss: 3.250000E+00 |" in line
    assert parse_megatron_line(line) == {"iteration": 3, "total": 10, "elapsed_ms": 1234.5, "lm_loss": 3.25}


# ---------------------------------------------------------------- end to end (torchrun, gloo)

def _run(args, nproc, tmp_path, name, timeout=120):
    out = tmp_path / f"{name}.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(nproc), "-m", "workload.train"]
    else:
        cmd = [sys.executable, "-m", "workload.train"]
    cmd += ["--model", "test", "--threads", "1", "--out", str(out), *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return p, out


def _lines(out):
    return [json.loads(x) for x in out.read_text().splitlines()]


def _decreasing(losses):
    return sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3


@pytest.mark.parametrize("placement", ["pp-remote", "dp-remote"])
def test_torchrun_pp2_dp2(placement, tmp_path):
    p, out = _run(["--pp", "2", "--dp", "2", "--placement", placement, "--sites", "dc-a,dc-a,dc-b,dc-b",
                   "--steps", "6", "--warmup", "2"], 4, tmp_path, placement)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = _lines(out)
    assert [r["step"] for r in recs] == list(range(6))
    assert [r["warmup"] for r in recs] == [True, True, False, False, False, False]
    assert {r["layout"] for r in recs} == {"tp1-pp2-dp2"} and {r["placement"] for r in recs} == {placement}
    assert all(r["duration_s"] > 0 and r["tokens_per_s"] > 0 for r in recs)
    assert all(recs[i]["start_ns"] >= recs[i - 1]["end_ns"] for i in range(1, 6))
    losses = [r["loss"] for r in recs]
    assert _decreasing(losses), losses
    # stdout carries the same JSON lines (rank 0 only)
    stdout_json = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert stdout_json == recs
    info = json.loads(p.stderr.split("workload.train: ", 1)[1].splitlines()[0])
    key = "pp" if placement == "pp-remote" else "dp"
    assert info["cross_site"][key] == 2 and sum(info["cross_site"].values()) == 2


def test_layouts_give_the_same_numbers(tmp_path):
    """TP=2 x PP=2 (1F1B) reproduces the single-process losses; the layout changes timing only."""
    p1, o1 = _run(["--steps", "4", "--log-format", "megatron"], 1, tmp_path, "single")
    assert p1.returncode == 0, p1.stderr[-3000:]
    p2, o2 = _run(["--tp", "2", "--pp", "2", "--placement", "pp-remote", "--sites", "a,b", "--steps", "4",
                   "--schedule", "gpipe"], 4, tmp_path, "tp2pp2")
    assert p2.returncode == 0, p2.stderr[-3000:]
    l1 = [r["loss"] for r in _lines(o1)]
    l2 = [r["loss"] for r in _lines(o2)]
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(l1, l2, strict=True)), (l1, l2)
    parsed = [parse_megatron_line(x) for x in p1.stdout.splitlines()]
    parsed = [x for x in parsed if x]
    assert [x["iteration"] for x in parsed] == [1, 2, 3, 4]
    assert all(math.isclose(x["lm_loss"], loss, rel_tol=1e-5) for x, loss in zip(parsed, l1, strict=True))


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
def test_four_stages_have_middle_stages_without_data(schedule, tmp_path):
    """PP=4: stages 1 and 2 neither read the batch nor compute the loss, yet the run reproduces
    the single-process losses (a middle stage once indexed a batch only the ends hold)."""
    p1, o1 = _run(["--steps", "3"], 1, tmp_path, "single")
    assert p1.returncode == 0, p1.stderr[-3000:]
    p4, o4 = _run(["--pp", "4", "--placement", "pp-remote", "--sites", "a,a,b,b", "--steps", "3",
                   "--schedule", schedule], 4, tmp_path, f"pp4-{schedule}")
    assert p4.returncode == 0, p4.stderr[-3000:]
    info = json.loads(p4.stderr.split("workload.train: ", 1)[1].splitlines()[0])
    assert info["stage_sites"] == [["a"], ["a"], ["b"], ["b"]] and info["cross_site"]["pp"] == 1
    l1 = [r["loss"] for r in _lines(o1)]
    l4 = [r["loss"] for r in _lines(o4)]
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(l1, l4, strict=True)), (l1, l4)


def test_bad_layout_exits_with_message(tmp_path):
    p, out = _run(["--pp", "2", "--steps", "1"], 1, tmp_path, "bad")
    assert p.returncode == 2
    assert "tp*pp*dp" in p.stderr

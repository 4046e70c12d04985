"""Train the LLaMA-style decoder over TP x PP x DP with a placement across sites.

Run under torchrun (reads RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT)::

    torchrun --standalone --nproc-per-node 4 -m workload.train --model tiny \\
        --tp 1 --pp 2 --dp 2 --placement pp-remote --sites dc-a,dc-a,dc-b,dc-b \\
        --steps 20 --warmup 2 --out iterations.jsonl

Without torchrun it runs as a single process (world of 1).  Backend: NCCL on CUDA, gloo on CPU.
Pipeline parallelism is hand-written (GPipe or 1F1B) over ``torch.distributed`` point-to-point
ops; data parallelism all-reduces bucketed gradients; tensor parallelism splits heads and the
MLP (see :mod:`workload.model`).  Rank 0 writes one JSON line per iteration (see
:mod:`workload.timing`).  Exit code 0 on success; a process-group timeout raises on the
waiting ranks and exits non-zero (torchrun then reports ``ChildFailedError``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

from workload.model import build_stage, get_config, split_layers, MODELS, param_count
from workload.parallel import PLACEMENTS, build_layout, init_groups
from workload.timing import IterationTimer


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m workload.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", choices=sorted(MODELS))
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--dp", type=int, default=None, help="default: world / (tp*pp)")
    p.add_argument("--placement", default="local", choices=PLACEMENTS)
    p.add_argument("--sites", default="", help="comma-separated site per node or per rank (default: one site)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2, help="iterations marked warmup (still run and logged)")
    p.add_argument("--out", default=None, help="JSON lines file (rank 0 appends)")
    p.add_argument("--log-format", default="json", choices=("json", "megatron", "none"),
                   help="what rank 0 prints to stdout per iteration (--out is always JSON)")
    p.add_argument("--schedule", default="1f1b", choices=("1f1b", "gpipe"))
    p.add_argument("--micro-batch-size", type=int, default=None)
    p.add_argument("--num-microbatches", type=int, default=None, help="per data-parallel replica")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                   help="parameter dtype (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch threads per rank on CPU")
    p.add_argument("--pg-timeout-s", type=float, default=1800.0,
                   help="process-group timeout (gloo default 1800 s, NCCL 600 s)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="gradient all-reduce bucket size")
    p.add_argument("--run-id", default=None, help="added to every JSON line as run_id")
    return p.parse_args(argv)


# ---------------------------------------------------------------- data

class SyntheticData:
    """Deterministic, learnable token streams over a small alphabet (64 tokens of the vocab):
    ``x[t+1] = succ[x[t]]`` (a fixed random cycle of the alphabet) with 10% random tokens of the
    alphabet.  The loss falls quickly from ln(vocab) to ~ln(64), then towards the noise floor.

    The global batch of step ``s`` depends only on (seed, s), and replica ``d`` takes its slice,
    so every layout sees the same samples.
    """

    def __init__(self, vocab: int, seq_len: int, seed: int, noise: float = 0.1, alphabet: int = 64):
        g = torch.Generator().manual_seed(seed)
        self.alpha = torch.randperm(vocab, generator=g)[:min(alphabet, vocab)]   # token ids used
        self.succ = torch.randperm(len(self.alpha), generator=g)                # index -> next index
        self.vocab, self.seq_len, self.seed, self.noise = vocab, seq_len, seed, noise

    def global_batch(self, step: int, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + step)
        a = len(self.alpha)
        idx = torch.empty(n, self.seq_len + 1, dtype=torch.long)
        idx[:, 0] = torch.randint(0, a, (n,), generator=g)
        noise = torch.rand(n, self.seq_len + 1, generator=g) < self.noise
        rnd = torch.randint(0, a, (n, self.seq_len + 1), generator=g)
        for t in range(1, self.seq_len + 1):
            idx[:, t] = torch.where(noise[:, t], rnd[:, t], self.succ[idx[:, t - 1]])
        return self.alpha[idx]


# ---------------------------------------------------------------- point-to-point

class P2P:
    """Stage-to-stage transfers.  gloo: isend (waited at the end of the step) + blocking recv,
    which cannot deadlock for a schedule that respects data dependencies.  NCCL: paired ops go
    through ``batch_isend_irecv`` (Megatron's send_forward_recv_backward pattern)."""

    def __init__(self, groups, shape, dtype, device, backend):
        self.g, self.shape, self.dtype, self.device = groups, shape, dtype, device
        self.nccl = backend == "nccl"
        self.pending = []

    def _buf(self):
        return torch.empty(self.shape, dtype=self.dtype, device=self.device)

    def comm(self, send=None, send_to=None, recv_from=None):
        recv = self._buf() if recv_from is not None else None
        if self.nccl:
            ops = []
            if send is not None:
                ops.append(dist.P2POp(dist.isend, send.contiguous(), send_to))
            if recv is not None:
                ops.append(dist.P2POp(dist.irecv, recv, recv_from))
            if ops:
                for w in dist.batch_isend_irecv(ops):
                    w.wait()
            return recv
        if send is not None:
            t = send.contiguous()
            self.pending.append((dist.isend(t, send_to), t))
        if recv is not None:
            dist.recv(recv, recv_from)
        return recv

    def recv_fwd(self):
        return None if self.g.first else self.comm(recv_from=self.g.prev_rank)

    def send_fwd(self, out):
        if not self.g.last:
            self.comm(send=out.detach(), send_to=self.g.next_rank)

    def recv_bwd(self):
        return None if self.g.last else self.comm(recv_from=self.g.next_rank)

    def send_bwd(self, grad):
        if not self.g.first:
            self.comm(send=grad, send_to=self.g.prev_rank)

    def send_fwd_recv_bwd(self, out):
        if self.g.last:
            return None
        return self.comm(send=out.detach(), send_to=self.g.next_rank, recv_from=self.g.next_rank)

    def send_bwd_recv_fwd(self, grad):
        if self.g.first:
            return None
        return self.comm(send=grad, send_to=self.g.prev_rank, recv_from=self.g.prev_rank)

    def finish(self):
        for w, _ in self.pending:
            w.wait()
        self.pending.clear()


# ---------------------------------------------------------------- trainer

class Trainer:
    def __init__(self, args, cfg, groups, device, dtype, backend):
        self.args, self.cfg, self.g, self.device, self.dtype = args, cfg, groups, device, dtype
        lay = groups.layout
        self.M = args.num_microbatches
        self.mbs = args.micro_batch_size
        self.global_batch = self.mbs * self.M * lay.dp
        layers = split_layers(cfg.n_layers, lay.pp)[groups.pp_rank]
        self.stage = build_stage(cfg, layers, groups.first, groups.last, lay.tp, groups.tp_rank,
                                 groups.tp_group, device=device, dtype=dtype, seed=args.seed)
        self.params = [p for p in self.stage.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
        self.data = SyntheticData(cfg.vocab_size, cfg.seq_len, args.seed)
        self.p2p = P2P(groups, (self.mbs, cfg.seq_len, cfg.dim), dtype, device, backend)

    # -- one micro-batch
    def _micro(self, batch, m):
        d = self.g.dp_rank
        lo = (d * self.M + m) * self.mbs
        return batch[lo:lo + self.mbs]

    def _fwd(self, batch, m, inp):
        seqs = self._micro(batch, m) if batch is not None else None   # middle stages (pp > 2) have no batch
        if self.g.first:
            inp = seqs[:, :-1].to(self.device)
        else:
            inp.requires_grad_(True)
        out = self.stage(inp)
        if self.g.last:
            tgt = seqs[:, 1:].to(self.device)
            loss = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), tgt.reshape(-1)) / self.M
            self._loss += loss.detach()
            out = loss
        return inp, out

    def _bwd(self, inp, out, grad):
        if self.g.last:
            out.backward()
        else:
            torch.autograd.backward(out, grad)
        return None if self.g.first else inp.grad

    # -- schedules
    def _gpipe(self, batch):
        saved = []
        for m in range(self.M):
            inp, out = self._fwd(batch, m, self.p2p.recv_fwd())
            self.p2p.send_fwd(out)
            saved.append((inp, out))
        for m in range(self.M):
            inp, out = saved[m]
            self.p2p.send_bwd(self._bwd(inp, out, self.p2p.recv_bwd()))
            saved[m] = None

    def _1f1b(self, batch):
        P, r, M = self.g.layout.pp, self.g.pp_rank, self.M
        warm = min(P - r - 1, M)
        rem = M - warm
        saved = []
        for m in range(warm):
            inp, out = self._fwd(batch, m, self.p2p.recv_fwd())
            self.p2p.send_fwd(out)
            saved.append((inp, out))
        x = self.p2p.recv_fwd() if rem > 0 else None
        for i in range(rem):
            inp, out = self._fwd(batch, warm + i, x)
            grad = self.p2p.send_fwd_recv_bwd(out)
            saved.append((inp, out))
            inp, out = saved.pop(0)
            ig = self._bwd(inp, out, grad)
            if i == rem - 1:
                x = None
                self.p2p.send_bwd(ig)
            else:
                x = self.p2p.send_bwd_recv_fwd(ig)
        for _ in range(warm):
            inp, out = saved.pop(0)
            self.p2p.send_bwd(self._bwd(inp, out, self.p2p.recv_bwd()))

    # -- gradient reductions
    def _allreduce_grads(self, params, group, divide: int):
        limit = int(self.args.bucket_mb * 2**20)
        bucket, size = [], 0

        def flush():
            if not bucket:
                return
            grads = [p.grad for p in bucket]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, group=group)
            if divide > 1:
                flat.div_(divide)
            off = 0
            for g in grads:
                n = g.numel()
                g.copy_(flat[off:off + n].view_as(g))
                off += n
            bucket.clear()

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            bucket.append(p)
            size += p.numel() * p.element_size()
            if size >= limit:
                flush()
                size = 0
        flush()

    def step(self, step: int):
        lay = self.g.layout
        batch = self.data.global_batch(step, self.global_batch) if (self.g.first or self.g.last) else None
        self._loss = torch.zeros((), device=self.device)
        if lay.pp == 1:
            for m in range(self.M):
                inp, out = self._fwd(batch, m, None)
                self._bwd(inp, out, None)
        elif self.args.schedule == "gpipe":
            self._gpipe(batch)
        else:
            self._1f1b(batch)
        self.p2p.finish()
        if lay.dp > 1:
            self._allreduce_grads(self.params, self.g.dp_group, lay.dp)
        tied = self.stage.tied_weight()
        if tied is not None and self.g.emb_group is not None:
            if tied.grad is None:
                tied.grad = torch.zeros_like(tied)
            dist.all_reduce(tied.grad, group=self.g.emb_group)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if not self.g.last:
            return None
        loss = self._loss.float()
        if lay.dp > 1:
            dist.all_reduce(loss, group=self.g.dp_group)
            loss = loss / lay.dp
        return float(loss)


# ---------------------------------------------------------------- entry point

def _single_process_env():
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def main(argv=None) -> int:
    args = parse_args(argv)
    _single_process_env()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))

    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(args.dtype) or (
        torch.bfloat16 if use_cuda else torch.float32)

    # validate before the rendezvous-dependent work so that bad input fails the same on every rank
    cfg = get_config(args.model, seq_len=args.seq_len)
    dp = args.dp if args.dp is not None else max(1, world // max(1, args.tp * args.pp))
    try:
        layout = build_layout(args.tp, args.pp, dp, args.placement, args.sites, world=world)
        split_layers(cfg.n_layers, args.pp)
        if cfg.n_heads % args.tp or cfg.n_kv_heads % args.tp or cfg.ffn_dim % args.tp:
            raise ValueError(f"tp={args.tp} must divide n_heads={cfg.n_heads}, n_kv_heads={cfg.n_kv_heads} "
                             f"and ffn_dim={cfg.ffn_dim}")
    except ValueError as e:
        print(f"workload.train: error: {e}", file=sys.stderr, flush=True)
        return 2
    args.micro_batch_size = args.micro_batch_size or cfg.micro_batch_size
    args.num_microbatches = args.num_microbatches or cfg.num_microbatches
    args.lr = args.lr if args.lr is not None else cfg.lr

    timeout = timedelta(seconds=args.pg_timeout_s)
    kw = {"device_id": device} if use_cuda else {}
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, **kw)
    try:
        groups = init_groups(layout, rank, args.pg_timeout_s)
        trainer = Trainer(args, cfg, groups, device, dtype, backend)
        tokens = trainer.global_batch * cfg.seq_len
        extra = {"run_id": args.run_id} if args.run_id else None
        timer = IterationTimer(rank=rank, layout=layout.name, placement=args.placement, model=cfg.name,
                               tokens_per_step=tokens, warmup=args.warmup, out_path=args.out,
                               log_format=args.log_format, total_steps=args.steps,
                               global_batch=trainer.global_batch, lr=args.lr, device=device, extra=extra)
        if rank == 0:
            info = layout.describe() | {"model": cfg.name, "params": param_count(cfg), "backend": backend,
                                        "schedule": args.schedule, "global_batch": trainer.global_batch,
                                        "micro_batch_size": args.micro_batch_size,
                                        "num_microbatches": args.num_microbatches, "seq_len": cfg.seq_len,
                                        "dtype": str(dtype).replace("torch.", "")}
            print("workload.train: " + json.dumps(info), file=sys.stderr, flush=True)
        for step in range(args.steps):
            with timer.iteration(step) as it:
                it.loss = trainer.step(step)
        timer.close()
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

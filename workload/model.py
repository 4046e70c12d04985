"""A LLaMA-style decoder: RMSNorm, RoPE, SwiGLU MLP, grouped-query attention.

The model is built as *pipeline stages*: :class:`Stage` holds a contiguous range of decoder
layers, plus the token embedding on the first stage and the final norm + LM head on the last.
A single-process model is simply the one stage that is both first and last.

Tensor parallelism (Megatron style): inside a tensor-parallel group of size ``tp`` every rank
holds ``n_heads/tp`` query heads and ``n_kv_heads/tp`` KV heads (column-parallel ``wq/wk/wv``,
row-parallel ``wo``) and ``ffn_dim/tp`` of the MLP (column-parallel ``w1/w3``, row-parallel
``w2``); the input of each block goes through ``f`` (identity forward, all-reduce backward) and
the output through ``g`` (all-reduce forward, identity backward).  Embeddings, norms and the LM
head are replicated.

Initialisation is deterministic per *global* parameter name (``layers.<global index>...``) and
shards are cut from the full tensor, so every layout (any TP x PP x DP) starts from exactly the
same weights as the single-process model: a layout changes the timing, not the numbers.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, asdict, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ModelConfig", "MODELS", "get_config", "param_count", "layer_param_count",
    "split_layers", "Stage", "build_stage", "RMSNorm", "rope_tables", "apply_rope",
]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    seq_len: int
    tied_embeddings: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # training defaults for this size (per data-parallel replica)
    micro_batch_size: int = 1
    num_microbatches: int = 4
    lr: float = 3e-4

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def validate(self) -> "ModelConfig":
        if self.dim % self.n_heads:
            raise ValueError(f"{self.name}: dim {self.dim} not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"{self.name}: n_heads {self.n_heads} not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"{self.name}: head_dim {self.head_dim} must be even for RoPE")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


MODELS: dict[str, ModelConfig] = {
    # for tests: a few ms per micro-batch on one CPU thread
    "test": ModelConfig("test", dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=192,
                        vocab_size=512, seq_len=32, micro_batch_size=2, num_microbatches=2, lr=3e-3),
    # ~1 s per iteration with PP=2 on 2 vCPUs (gloo); ~10M parameters
    "tiny": ModelConfig("tiny", dim=256, n_layers=8, n_heads=8, n_kv_heads=2, ffn_dim=704,
                        vocab_size=8192, seq_len=256, micro_batch_size=2, num_microbatches=4, lr=1e-3),
    # the tiny model with multi-head attention like LLaMA 7B/13B (KV heads = heads), so that TP
    # 2, 4 or 8 divides it: the `scale` profile's TP:PP:DP 4:4:2 (16 ranks per site)
    "tiny-mha": ModelConfig("tiny-mha", dim=256, n_layers=8, n_heads=8, n_kv_heads=8, ffn_dim=704,
                            vocab_size=8192, seq_len=256, micro_batch_size=2, num_microbatches=4, lr=1e-3),
    # the trial's shapes (LLaMA-1/2 7B and 13B: MHA, untied, vocab 32000)
    "llama-7b": ModelConfig("llama-7b", dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=11008,
                            vocab_size=32000, seq_len=4096, micro_batch_size=1, num_microbatches=8, lr=3e-4),
    "llama-13b": ModelConfig("llama-13b", dim=5120, n_layers=40, n_heads=40, n_kv_heads=40, ffn_dim=13824,
                             vocab_size=32000, seq_len=4096, micro_batch_size=1, num_microbatches=8, lr=3e-4),
}


def get_config(name: str, **overrides) -> ModelConfig:
    try:
        cfg = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **overrides).validate() if overrides else cfg.validate()


def layer_param_count(cfg: ModelConfig) -> int:
    d, hd = cfg.dim, cfg.head_dim
    attn = d * d * 2 + 2 * d * cfg.n_kv_heads * hd      # wq, wo + wk, wv
    mlp = 3 * d * cfg.ffn_dim                            # w1, w2, w3
    return attn + mlp + 2 * d                            # two RMSNorm weights


def param_count(cfg: ModelConfig) -> int:
    """Parameter count by arithmetic (no tensors)."""
    emb = cfg.vocab_size * cfg.dim
    head = 0 if cfg.tied_embeddings else cfg.vocab_size * cfg.dim
    return emb + head + cfg.n_layers * layer_param_count(cfg) + cfg.dim


def split_layers(n_layers: int, pp: int) -> list[range]:
    """Contiguous layer ranges per stage; earlier stages take the remainder."""
    if pp < 1 or pp > n_layers:
        raise ValueError(f"cannot split {n_layers} layers into {pp} pipeline stages")
    base, rem = divmod(n_layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < rem else 0)
        out.append(range(start, start + n))
        start += n
    return out


# ---------------------------------------------------------------- tensor-parallel operators

class _CopyToTP(torch.autograd.Function):
    """f: identity forward, all-reduce of the gradient backward."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous()
        torch.distributed.all_reduce(g, group=ctx.group)
        return g, None


class _ReduceFromTP(torch.autograd.Function):
    """g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.contiguous()
        torch.distributed.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, g):
        return g, None


# ---------------------------------------------------------------- layers

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rope_tables(seq_len: int, head_dim: int, theta: float = 10000.0, device=None):
    """cos/sin tables [seq_len, head_dim] in the half-split (GPT-NeoX / HF LLaMA) convention."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    t = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv)                  # [S, hd/2]
    emb = torch.cat([freqs, freqs], dim=-1)      # [S, hd]
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x: [B, H, S, hd]; rotates pairs (i, i + hd/2) by position-dependent angles."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    rot = torch.cat([-x2, x1], dim=-1)
    s = x.shape[-2]
    return (x.float() * cos[:s] + rot.float() * sin[:s]).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, tp: int = 1, tp_group=None):
        super().__init__()
        if cfg.n_heads % tp or cfg.n_kv_heads % tp:
            raise ValueError(f"tp={tp} must divide n_heads={cfg.n_heads} and n_kv_heads={cfg.n_kv_heads}")
        self.hd = cfg.head_dim
        self.nh = cfg.n_heads // tp
        self.nkv = cfg.n_kv_heads // tp
        self.tp, self.tp_group = tp, tp_group
        self.wq = nn.Linear(cfg.dim, self.nh * self.hd, bias=False)
        self.wk = nn.Linear(cfg.dim, self.nkv * self.hd, bias=False)
        self.wv = nn.Linear(cfg.dim, self.nkv * self.hd, bias=False)
        self.wo = nn.Linear(self.nh * self.hd, cfg.dim, bias=False)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        if self.tp > 1:
            x = _CopyToTP.apply(x, self.tp_group)
        q = self.wq(x).view(b, s, self.nh, self.hd).transpose(1, 2)
        k = self.wk(x).view(b, s, self.nkv, self.hd).transpose(1, 2)
        v = self.wv(x).view(b, s, self.nkv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.nkv != self.nh:                      # GQA: each KV head serves nh/nkv query heads
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o = self.wo(o.transpose(1, 2).reshape(b, s, self.nh * self.hd))
        if self.tp > 1:
            o = _ReduceFromTP.apply(o, self.tp_group)
        return o


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig, tp: int = 1, tp_group=None):
        super().__init__()
        if cfg.ffn_dim % tp:
            raise ValueError(f"tp={tp} must divide ffn_dim={cfg.ffn_dim}")
        f = cfg.ffn_dim // tp
        self.tp, self.tp_group = tp, tp_group
        self.w1 = nn.Linear(cfg.dim, f, bias=False)   # gate
        self.w3 = nn.Linear(cfg.dim, f, bias=False)   # up
        self.w2 = nn.Linear(f, cfg.dim, bias=False)   # down

    def forward(self, x):
        if self.tp > 1:
            x = _CopyToTP.apply(x, self.tp_group)
        y = self.w2(F.silu(self.w1(x)) * self.w3(x))
        if self.tp > 1:
            y = _ReduceFromTP.apply(y, self.tp_group)
        return y


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, tp: int = 1, tp_group=None):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg, tp, tp_group)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg, tp, tp_group)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


# which weights are sharded along which dim under TP (column-parallel: 0, row-parallel: 1)
_SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1}


class Stage(nn.Module):
    """One pipeline stage: ``layers`` (global indices), embedding if first, head if last.

    ``forward`` takes token ids [B, S] on the first stage and hidden states [B, S, D] otherwise;
    it returns logits [B, S, V] on the last stage and hidden states otherwise.
    """

    def __init__(self, cfg: ModelConfig, layers: range, first: bool, last: bool,
                 tp: int = 1, tp_rank: int = 0, tp_group=None):
        super().__init__()
        self.cfg, self.first, self.last = cfg, first, last
        self.tp, self.tp_rank = tp, tp_rank
        self.layer_ids = list(layers)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim) if first else None
        self.layers = nn.ModuleDict({str(i): Block(cfg, tp, tp_group) for i in self.layer_ids})
        if last:
            self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
            self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        else:
            self.norm = self.output = None
        if first and last and cfg.tied_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self._rope = None

    # -- parameters shared across stages (tied embeddings with pp > 1)
    def tied_weight(self):
        """The weight that must stay equal to the embedding on another stage, or None."""
        if not self.cfg.tied_embeddings or (self.first and self.last):
            return None
        if self.first:
            return self.tok_embeddings.weight
        if self.last:
            return self.output.weight
        return None

    def rope(self, device):
        if self._rope is None or self._rope[0].device != torch.device(device):
            self._rope = rope_tables(self.cfg.seq_len, self.cfg.head_dim, self.cfg.rope_theta, device)
        return self._rope

    @torch.no_grad()
    def init_weights(self, seed: int = 0):
        """Deterministic init per global name; TP shards are cut from the full tensor."""
        std = 0.02
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            gname = name
            if name.startswith("output.") and self.cfg.tied_embeddings:
                gname = "tok_embeddings.weight"        # tied: same values as the embedding
            if name.endswith("norm.weight"):
                p.fill_(1.0)
                continue
            leaf = name.split(".")[-2]
            shard = _SHARD_DIM.get(leaf) if self.tp > 1 else None
            full_shape = list(p.shape)
            if shard is not None:
                full_shape[shard] *= self.tp
            g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(gname.encode())) % (2**63))
            s = out_std if leaf in ("wo", "w2") else std
            full = torch.empty(full_shape).normal_(0.0, s, generator=g)
            if shard is not None:
                n = p.shape[shard]
                full = full.narrow(shard, self.tp_rank * n, n)
            p.copy_(full.to(p.dtype))

    def forward(self, x):
        cos, sin = self.rope(x.device)
        if self.first:
            x = self.tok_embeddings(x)
        for i in self.layer_ids:
            x = self.layers[str(i)](x, cos, sin)
        if self.last:
            x = self.output(self.norm(x))
        return x


def build_stage(cfg: ModelConfig, layers: range | None = None, first: bool = True, last: bool = True,
                tp: int = 1, tp_rank: int = 0, tp_group=None, device="cpu",
                dtype=torch.float32, seed: int = 0, init: bool = True) -> Stage:
    """Build a stage without a throwaway allocation (meta first, then on ``device``)."""
    layers = range(cfg.n_layers) if layers is None else layers
    with torch.device("meta"):
        st = Stage(cfg, layers, first, last, tp, tp_rank, tp_group)
    if str(device) == "meta":
        return st
    st = st.to_empty(device=device).to(dtype)
    if first and last and cfg.tied_embeddings:
        st.output.weight = st.tok_embeddings.weight
    if init:
        st.init_weights(seed)
    return st

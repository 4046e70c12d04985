"""TP x PP x DP rank grids with an explicit placement across sites.

Pure functions first (no torch.distributed): :func:`site_map` turns a ``--sites`` list (one
site per node or one per rank) into a site per global rank, :func:`build_layout` assigns every
rank a (pp, dp, tp) coordinate according to the placement, and :meth:`Layout.cross_site_pairs`
says which rank pairs talk across sites, per kind of traffic.

Placements:

- ``local``: every rank is in one site (the baseline).  Several sites are refused.
- ``pp-remote``: pipeline stages are split between the sites in contiguous blocks, so the stage
  boundary between blocks crosses the WAN (activations forward, gradients backward); TP and DP
  groups stay inside a site.  ``pp`` must be a multiple of the number of sites.
- ``dp-remote``: data-parallel replicas are split between the sites, so the gradient
  all-reduce crosses the WAN; a whole replica (all its stages and TP ranks) stays in one site.
  ``dp`` must be a multiple of the number of sites.

Inside a site, ranks are taken in global rank order (node by node) with TP fastest, so a TP
group sits on consecutive local ranks of one node whenever the node has at least ``tp`` ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from itertools import combinations

PLACEMENTS = ("local", "pp-remote", "dp-remote")

__all__ = ["PLACEMENTS", "site_map", "build_layout", "Layout", "Groups", "init_groups"]


def site_map(sites: list[str] | str | None, world: int) -> list[str]:
    """Site of each global rank.

    ``sites`` is one site per rank (``len == world``) or one per node (``world`` a multiple of
    its length; ranks per node = world / nodes, node-major as torchrun numbers them).  ``None``
    or empty means a single site called ``local``.
    """
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    if not sites:
        return ["local"] * world
    if len(sites) == world:
        return list(sites)
    if world % len(sites):
        raise ValueError(f"--sites lists {len(sites)} entries: neither one per rank nor one per node "
                         f"for a world of {world} ranks")
    per_node = world // len(sites)
    return [sites[r // per_node] for r in range(world)]


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    dp: int
    placement: str
    sites: tuple[str, ...]                       # site of each global rank
    grid: tuple[tuple[tuple[int, ...], ...], ...]  # grid[pp][dp][tp] -> global rank
    coords: dict = field(compare=False, hash=False, default=None)  # rank -> (pp, dp, tp)

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def name(self) -> str:
        return f"tp{self.tp}-pp{self.pp}-dp{self.dp}"

    def coord(self, rank: int) -> tuple[int, int, int]:
        return self.coords[rank]

    # -- groups (lists of global ranks), in a fixed order so that every rank creates them alike
    def tp_groups(self) -> list[list[int]]:
        return [list(self.grid[p][d]) for p in range(self.pp) for d in range(self.dp)]

    def pp_groups(self) -> list[list[int]]:
        """One pipeline per (dp, tp): its ranks in stage order."""
        return [[self.grid[p][d][t] for p in range(self.pp)] for d in range(self.dp) for t in range(self.tp)]

    def dp_groups(self) -> list[list[int]]:
        return [[self.grid[p][d][t] for d in range(self.dp)] for p in range(self.pp) for t in range(self.tp)]

    def embedding_groups(self) -> list[list[int]]:
        """First and last stage of each pipeline (tied embeddings with pp > 1)."""
        if self.pp < 2:
            return []
        return [[g[0], g[-1]] for g in self.pp_groups()]

    def cross_site_pairs(self) -> dict[str, list[tuple[int, int]]]:
        """Rank pairs whose traffic crosses sites: ``pp`` (stage p -> p+1 point-to-point),
        ``dp`` (pairs within a data-parallel group) and ``tp`` (pairs within a TP group)."""
        s = self.sites
        pp_pairs = [(g[i], g[i + 1]) for g in self.pp_groups() for i in range(len(g) - 1)
                    if s[g[i]] != s[g[i + 1]]]
        dp_pairs = [(a, b) for g in self.dp_groups() for a, b in combinations(g, 2) if s[a] != s[b]]
        tp_pairs = [(a, b) for g in self.tp_groups() for a, b in combinations(g, 2) if s[a] != s[b]]
        return {"pp": sorted(pp_pairs), "dp": sorted(dp_pairs), "tp": sorted(tp_pairs)}

    def describe(self) -> dict:
        x = self.cross_site_pairs()
        return {"layout": self.name, "placement": self.placement, "world": self.world,
                "sites": sorted(set(self.sites)), "cross_site": {k: len(v) for k, v in x.items()},
                "stage_sites": [sorted({self.sites[r] for d in self.grid[p] for r in d}) for p in range(self.pp)]}


def _ordered_sites(sites: list[str]) -> list[str]:
    seen: list[str] = []
    for s in sites:
        if s not in seen:
            seen.append(s)
    return seen


def build_layout(tp: int, pp: int, dp: int, placement: str, sites: list[str] | str | None,
                 world: int | None = None) -> Layout:
    """Assign every global rank a (pp, dp, tp) coordinate for ``placement``."""
    for n, v in (("tp", tp), ("pp", pp), ("dp", dp)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{n} must be a positive integer, got {v!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; known: {', '.join(PLACEMENTS)}")
    need = tp * pp * dp
    world = need if world is None else world
    if world != need:
        raise ValueError(f"tp*pp*dp = {tp}*{pp}*{dp} = {need} but the world has {world} ranks")
    rank_sites = site_map(sites, world)
    names = _ordered_sites(rank_sites)
    nsites = len(names)
    by_site = {n: [r for r, s in enumerate(rank_sites) if s == n] for n in names}

    grid = [[[None] * tp for _ in range(dp)] for _ in range(pp)]
    if placement == "local" or nsites == 1:
        if nsites != 1:
            raise ValueError(f"placement 'local' needs every rank in one site, got sites {names}")
        order = [(p, d, t) for p in range(pp) for d in range(dp) for t in range(tp)]
        assign = {names[0]: order}
    elif placement == "pp-remote":
        if pp % nsites:
            raise ValueError(f"pp-remote: pp={pp} must be a multiple of the number of sites ({nsites}: {names})")
        per = pp // nsites
        assign = {n: [(p, d, t) for p in range(k * per, (k + 1) * per) for d in range(dp) for t in range(tp)]
                  for k, n in enumerate(names)}
    else:  # dp-remote
        if dp % nsites:
            raise ValueError(f"dp-remote: dp={dp} must be a multiple of the number of sites ({nsites}: {names})")
        per = dp // nsites
        assign = {n: [(p, d, t) for d in range(k * per, (k + 1) * per) for p in range(pp) for t in range(tp)]
                  for k, n in enumerate(names)}
    for n in names:
        if len(by_site[n]) != len(assign[n]):
            raise ValueError(f"{placement}: site {n!r} has {len(by_site[n])} ranks but the layout "
                             f"{tp=} {pp=} {dp=} needs {len(assign[n])} there (sites must be balanced)")
        for r, (p, d, t) in zip(by_site[n], assign[n], strict=True):
            grid[p][d][t] = r
    coords = {grid[p][d][t]: (p, d, t) for p in range(pp) for d in range(dp) for t in range(tp)}
    frozen = tuple(tuple(tuple(row) for row in stage) for stage in grid)
    return Layout(tp, pp, dp, placement, tuple(rank_sites), frozen, coords)


# ---------------------------------------------------------------- torch.distributed groups

@dataclass
class Groups:
    layout: Layout
    rank: int
    pp_rank: int
    dp_rank: int
    tp_rank: int
    tp_group: object
    pp_group: object
    dp_group: object
    emb_group: object          # None unless this rank is first/last stage with pp > 1
    pp_ranks: list[int]        # global ranks of this rank's pipeline, stage order
    dp_ranks: list[int]
    tp_ranks: list[int]

    @property
    def first(self) -> bool:
        return self.pp_rank == 0

    @property
    def last(self) -> bool:
        return self.pp_rank == self.layout.pp - 1

    @property
    def prev_rank(self):
        return None if self.first else self.pp_ranks[self.pp_rank - 1]

    @property
    def next_rank(self):
        return None if self.last else self.pp_ranks[self.pp_rank + 1]


def init_groups(layout: Layout, rank: int, timeout_s: float | None = None) -> Groups:
    """Create the TP/PP/DP (and tied-embedding) subgroups; every rank must call this."""
    import torch.distributed as dist
    kw = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}

    def make(groups):
        mine = None
        for g in groups:
            pg = dist.new_group(g, **kw)       # collective over the world: same order everywhere
            if rank in g:
                mine = (pg, g)
        return mine

    tp_pg, tp_ranks = make(layout.tp_groups())
    pp_pg, pp_ranks = make(layout.pp_groups())
    dp_pg, dp_ranks = make(layout.dp_groups())
    emb = make(layout.embedding_groups()) if layout.embedding_groups() else None
    p, d, t = layout.coord(rank)
    return Groups(layout, rank, p, d, t, tp_pg, pp_pg, dp_pg, emb[0] if emb else None,
                  pp_ranks, dp_ranks, tp_ranks)

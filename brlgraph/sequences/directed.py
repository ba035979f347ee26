"""Directed hop-ordered sequences for message-passing layers (torch only).

For a destination node v the sequence is ``[v, t_1, ..., t_{S-1}]``: the nodes whose
messages reach v, ordered by the length of their shortest directed path to v (hop 1,
then hop 2, ...), until S tokens are filled, nothing new is reachable, or
``max_hops`` is reached. Edges follow PyG's ``flow``: with ``"source_to_target"`` an
edge ``(j, i)`` of ``edge_index`` carries j's message to i, so j is at hop 1 of i;
``"target_to_source"`` reads the edges the other way. When a hop holds more nodes
than the budget left, the nodes of smallest priority ``hash(seed, v, u)`` are taken,
and within a hop the nodes are in priority order, so the sample is uniform without
replacement and reproducible.

The hash is taken of *global* node ids (``node_ids``, PyG's ``batch.n_id`` in a
mini-batch; by default the positions themselves). A node's sequence therefore
depends only on the edges that reach it within ``max_hops``, the seed and the ids: on
a ``NeighborLoader`` batch that holds a seed's whole in-neighbourhood, the seed gets
the sequence it gets on the full graph.

A bipartite graph (``num_nodes=(num_src, num_dst)``: sources and destinations are
different node sets, as in ``conv((x_src, x_dst), edge_index)``) has one hop only:
a source node receives nothing in it.

The builder is one custom operator (``brlgraph::directed_hop_sequences``) whose
output shape [N_dst, S] is known in advance, so ``torch.compile`` calls it as an opaque
kernel on graphs it has never seen, ``fullgraph=True`` included.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from brlgraph.errors import ConfigError, DataError
from brlgraph.sequences.hop_ordered import DEFAULT_MAX_HOPS

FLOWS = ("source_to_target", "target_to_source")

_M32 = 0xFFFFFFFF
# Margin of the priority pre-filter; any value gives the same sequences, smaller ones
# redo more rows, larger ones sort more candidates.
_KEEP_FACTOR = 3.0
_KEEP_SLACK = 32.0


class DirectedSequences(NamedTuple):
    """Directed hop-ordered sequences of N_dst destination nodes, S tokens each.

    Attributes (both [N_dst, S] long, ``-1`` at padding; the valid tokens are a prefix):
        ids: ``ids[:, 0]`` the destination node itself (an index into ``x_dst``),
            ``ids[:, 1:]`` source nodes (indices into ``x_src``).
        hops: shortest directed path length to the destination (0 at position 0).

    A NamedTuple of tensors, so it can be passed into a compiled module, moved with
    :meth:`to` and sliced by rows with :meth:`rows`.
    """

    ids: Tensor
    hops: Tensor

    @property
    def mask(self) -> Tensor:
        """bool [N_dst, S], True = valid token."""
        return self.ids >= 0

    def rows(self, index) -> DirectedSequences:
        """The sequences of some destination nodes (index tensor, slice or bool mask)."""
        return DirectedSequences(self.ids[index], self.hops[index])

    def to(self, device) -> DirectedSequences:
        return DirectedSequences(self.ids.to(device), self.hops.to(device))


def directed_hop_sequences(
    edge_index: Tensor,
    num_nodes: int | tuple[int, int],
    seq_len: int,
    *,
    max_hops: int = DEFAULT_MAX_HOPS,
    seed: int = 0,
    flow: str = "source_to_target",
    node_ids: Tensor | tuple[Tensor, Tensor] | None = None,
) -> DirectedSequences:
    """Directed hop-ordered sequences of every destination node.

    Args:
        edge_index: LongTensor [2, E] (repeated edges and self-loops are ignored).
        num_nodes: N (one node set), or ``(num_src, num_dst)`` for a bipartite graph
            (at most one hop).
        seq_len: S, tokens per sequence, the node itself included.
        max_hops: the longest path that is followed.
        seed: seed of the sampling within a hop.
        flow: ``"source_to_target"`` (row 0 of ``edge_index`` sends to row 1) or
            ``"target_to_source"``.
        node_ids: global ids [N] the sampling is keyed on (``(src_ids, dst_ids)`` when
            bipartite), e.g. a mini-batch's ``n_id``; default: the indices themselves.

    Returns:
        :class:`DirectedSequences` with tensors [N_dst, S] on ``edge_index``'s device.
    """
    if seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    if max_hops < 0:
        raise ConfigError(f"max_hops must be >= 0, got {max_hops}")
    if flow not in FLOWS:
        raise ConfigError(f"flow must be one of {FLOWS}, got {flow!r}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise DataError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise DataError(f"edge_index must be a LongTensor, got {edge_index.dtype}")
    bipartite = isinstance(num_nodes, (tuple, list))
    num_src, num_dst = (num_nodes if bipartite else (num_nodes, num_nodes))
    if bipartite:
        src_ids, dst_ids = node_ids if node_ids is not None else (None, None)
    else:
        src_ids = dst_ids = node_ids
    for name, ids, n in (("source", src_ids, num_src), ("destination", dst_ids, num_dst)):
        if ids is not None and tuple(ids.shape) != (n,):
            raise DataError(f"node_ids of the {name} nodes must have shape [{n}], "
                            f"got {list(ids.shape)}")
    if flow == "target_to_source":
        edge_index = edge_index.flip(0)
    src_ids, dst_ids = (None if t is None else t.long() for t in (src_ids, dst_ids))
    ids, hops = torch.ops.brlgraph.directed_hop_sequences(
        edge_index, num_src, num_dst, bipartite, seq_len, max_hops, seed, src_ids, dst_ids)
    return DirectedSequences(ids, hops)


# ---------------------------------------------------------------------------- internals
def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer mix (lowbias32-style) on int64 values in [0, 2^32).

    Both multipliers are below 2^31, so no product leaves the int64 range: the result
    is the same on every device and backend.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    return x ^ (x >> 16)


def _fold32(x: Tensor) -> Tensor:
    return (x ^ (x >> 32)) & _M32


def _priority(seed: int, dst: Tensor, src: Tensor) -> Tensor:
    """``hash(seed, v, u)`` in [0, 2^32) for destination ids ``dst`` and source ids ``src``."""
    s = (seed ^ (seed >> 32)) & _M32
    return _mix32(_mix32(_mix32(dst.new_full((), s) ^ 0x5BD1E995) ^ _fold32(dst)) ^ _fold32(src))


def _select(pairs: Tensor, seen: Tensor) -> Tensor:
    """Sorted distinct ``pairs`` that are not in ``seen`` (sorted)."""
    pairs = torch.sort(pairs).values
    first = torch.ones_like(pairs, dtype=torch.bool)
    first[1:] = pairs[1:] != pairs[:-1]
    pairs = pairs[first]
    if seen.numel():
        pos = torch.searchsorted(seen, pairs).clamp(max=seen.numel() - 1)
        pairs = pairs[seen[pos] != pairs]
    return pairs


@torch.library.custom_op("brlgraph::directed_hop_sequences", mutates_args=())
def _directed_hop_sequences(
    edge_index: Tensor,
    num_src: int,
    num_dst: int,
    bipartite: bool,
    seq_len: int,
    max_hops: int,
    seed: int,
    src_ids: Tensor | None,
    dst_ids: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """[N_dst, S] ids and hops; ``edge_index`` row 0 sends to row 1."""
    device = edge_index.device
    ids = torch.full((num_dst, seq_len), -1, dtype=torch.long, device=device)
    hops = torch.full_like(ids, -1)
    rows = torch.arange(num_dst, device=device)
    ids[:, 0], hops[:, 0] = rows, 0
    src, dst = edge_index[0], edge_index[1]
    if src.numel() and (int(src.min()) < 0 or int(src.max()) >= num_src
                        or int(dst.min()) < 0 or int(dst.max()) >= num_dst):
        raise DataError(f"edge_index refers to nodes outside the graph "
                        f"({num_src} source and {num_dst} destination nodes)")
    if not bipartite:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    if src.numel() == 0 or seq_len == 1:
        return ids, hops
    # Sources are handled by their rank in global-id order ("rank space"): a pair key
    # row * num_src + rank sorts by (row, global id), so ties of priority are broken
    # by global id, not by the local numbering of a mini-batch.
    if src_ids is None:
        rank = inv_rank = src_gid = None
    else:
        src_gid, inv_rank = torch.sort(src_ids.to(device))
        rank = torch.empty_like(inv_rank)
        rank[inv_rank] = torch.arange(num_src, device=device)
    dst_gid = None if dst_ids is None else dst_ids.to(device)
    # In-neighbour lists (CSR over destinations, local source ids), without repeats.
    edge_keys = torch.unique(dst * num_src + src)
    indices = edge_keys % num_src
    indptr = torch.zeros(num_dst + 1, dtype=torch.long, device=device)
    indptr[1:] = torch.cumsum(torch.bincount(edge_keys // num_src, minlength=num_dst), 0)

    def priority(rows: Tensor, ranks: Tensor) -> Tensor:
        return _priority(seed, rows if dst_gid is None else dst_gid[rows],
                         ranks if src_gid is None else src_gid[ranks])

    filled = torch.ones(num_dst, dtype=torch.long, device=device)
    nodes = rows  # the frontier: (row, local node) pairs at the last hop
    # pairs already in a row's sequence or frontier, sorted (rank space)
    seen = rows.new_empty(0) if bipartite else rows * num_src + (rows if rank is None else rank)
    seen = torch.sort(seen).values
    for h in range(1, (1 if bipartite else max_hops) + 1):
        if rows.numel() == 0:
            break
        begin = indptr[nodes]
        deg = indptr[nodes + 1] - begin
        total = int(deg.sum())
        if total == 0:
            break
        cand_rows = torch.repeat_interleave(rows, deg)
        start = torch.repeat_interleave(begin - (torch.cumsum(deg, 0) - deg), deg)
        cand = indices[start + torch.arange(total, device=device)]
        cand = cand if rank is None else rank[cand]
        pairs = cand_rows * num_src + cand
        budget = seq_len - filled
        # Only candidates of small priority can be among the `budget` smallest of a row,
        # so a row with many candidates keeps those below a threshold that leaves a few
        # times its budget; a row left short by it (repeats, nodes seen before) is
        # redone in full, so the result is exact.
        wanted = _KEEP_FACTOR * (budget + 8.0 * budget.sqrt() + _KEEP_SLACK)
        frac = wanted / torch.bincount(cand_rows, minlength=num_dst).clamp(min=1)
        filtered = frac < 1.0
        if bool(filtered.any()):
            limit = (frac.clamp(max=1.0) * 2.0**32).long()
            below = priority(cand_rows, cand) < limit[cand_rows]
            kept = _select(pairs[~filtered[cand_rows] | below], seen)
            short = filtered & (torch.bincount(kept // num_src, minlength=num_dst) < budget)
            if bool(short.any()):
                kept = _select(pairs[~filtered[cand_rows] | below | short[cand_rows]], seen)
            pairs = kept
        else:
            pairs = _select(pairs, seen)
        if pairs.numel() == 0:
            break
        rows, ranks = pairs // num_src, pairs % num_src
        # priority order within a row; the stable sort keeps ties in global-id order
        order = torch.sort((rows << 32) | priority(rows, ranks), stable=True).indices
        pairs = pairs[order]
        rows, ranks = pairs // num_src, pairs % num_src
        nodes = ranks if inv_rank is None else inv_rank[ranks]
        counts = torch.bincount(rows, minlength=num_dst)
        rank_in_row = torch.arange(rows.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[rows]
        take = rank_in_row < budget[rows]
        r_take = rows[take]
        pos = filled[r_take] + rank_in_row[take]
        ids[r_take, pos] = nodes[take]
        hops[r_take, pos] = h
        filled = filled + torch.minimum(counts, budget)
        # the next frontier: every hop-h node (kept or not) of the rows not yet full
        open_rows = filled < seq_len
        keep = open_rows[rows]
        rows, nodes = rows[keep], nodes[keep]
        seen = torch.sort(torch.cat([seen[open_rows[seen // num_src]], pairs[keep]])).values
    return ids, hops


@_directed_hop_sequences.register_fake
def _(edge_index, num_src, num_dst, bipartite, seq_len, max_hops, seed, src_ids, dst_ids):
    ids = edge_index.new_empty((num_dst, seq_len))
    return ids, torch.empty_like(ids)

"""Node-as-sequence (spec 4.1): for every target node, its context nodes ordered by hop.

For a target v the sequence is ``T(v) = [v, t_1, ..., t_{S-1}]``: all nodes at hop
distance 1 from v, then hop 2, ... (distances in the undirected graph), until S
tokens are filled, the frontier is empty, or ``max_hops`` is reached. When a hop
holds more nodes than the remaining budget ``b``, ``b`` of them are taken uniformly
at random without replacement. Within a hop the nodes are in random order.

The random choice is a hash, not a stream of draws: node u gets the priority
``p(v, u) = hash(seed, v, u)`` in the sequence of v, and each hop keeps the nodes
of smallest priority. So a target's sequence depends only on (graph, target, S,
max_hops, seed): not on the other targets, their order, or the chunk size.

Everything is vectorised over targets: a chunk of targets is expanded hop by hop at
once over CSR arrays, each candidate (row, node) pair is packed into one int64 key
``row | priority | node`` and a single sort both removes repeats and orders the
candidates of a row by priority. Neighbours of hop h-1 nodes are at hop h-2, h-1
or h, so only those two previous hops are excluded. Before the sort, a row with far
more candidates than budget keeps only those below a priority threshold (a few times
the budget survive); a row left short by it is redone without the threshold, so the
result is exact. The priority is a 64-bit hash truncated to the bits the key has
left (>= 20); ties are broken by node id.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.seeding import derive_seed, splitmix64

DEFAULT_MAX_HOPS = 4


@dataclass(eq=False)  # holds tensors: compare by identity
class NodeSequences:
    """Hop-ordered token sequences of T target nodes, S tokens each.

    Attributes (all [T, S], padding where ``mask`` is False):
        ids: global node index (into :class:`GraphView`'s order), ``-1`` padding.
        hops: hop distance from the target (0 at position 0), ``-1`` padding.
        node_types: node type index, ``-1`` padding.
        mask: bool, True = valid token. ``mask[:, 0]`` is always True.
        seed: the seed the context nodes were sampled with.
        max_hops: the largest hop distance that was allowed.
    """

    ids: Tensor
    hops: Tensor
    node_types: Tensor
    mask: Tensor
    seed: int = 0
    max_hops: int = DEFAULT_MAX_HOPS

    @property
    def targets(self) -> Tensor:
        """Global ids of the targets, [T]."""
        return self.ids[:, 0]

    @property
    def seq_len(self) -> int:
        return int(self.ids.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, rows) -> NodeSequences:
        """The sequences of some targets (``rows``: index tensor, slice or bool mask)."""
        return replace(
            self, ids=self.ids[rows], hops=self.hops[rows],
            node_types=self.node_types[rows], mask=self.mask[rows],
        )

    def to(self, device) -> NodeSequences:
        return replace(
            self, ids=self.ids.to(device), hops=self.hops.to(device),
            node_types=self.node_types.to(device), mask=self.mask.to(device),
        )


def hop_ordered_sequences(
    graph: GraphView,
    targets: Tensor | np.ndarray | None = None,
    seq_len: int = 64,
    *,
    max_hops: int = DEFAULT_MAX_HOPS,
    seed: int = 0,
    node_type: str | None = None,
    chunk_size: int = 256,
    num_workers: int = 1,
) -> NodeSequences:
    """Hop-ordered sequences of ``seq_len`` tokens for each target node.

    Args:
        graph: the graph (``GraphView.from_data(data)``).
        targets: node ids [T]; global ids, or local ids of ``node_type`` when given.
            ``None``: every node (of ``node_type`` when given).
        seq_len: S, tokens per sequence, the target included.
        max_hops: the farthest hop distance that is sampled.
        seed: seed of the uniform sampling within a hop.
        node_type: read ``targets`` as local indices of this type.
        chunk_size: targets expanded together; bounds the memory.
        num_workers: threads working on chunks (default 1: on a shared machine more
            threads were slower; on idle cores 2 help).

    Returns:
        :class:`NodeSequences` with tensors [T, S].
    """
    if seq_len < 1:
        raise ConfigError(f"sequences.seq_len (seq_len=) must be >= 1, got {seq_len}")
    if max_hops < 0:
        raise ConfigError(f"sequences.max_hops (max_hops=) must be >= 0, got {max_hops}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if node_type is not None:
        if targets is None:
            targets = torch.arange(graph.num_nodes_dict[node_type]) if node_type in graph.offsets else None
        targets = graph.global_index(node_type, targets)
    elif targets is None:
        targets = torch.arange(graph.num_nodes)
    tg = torch.as_tensor(targets, dtype=torch.long).reshape(-1).cpu().numpy()
    if tg.size and (tg.min() < 0 or tg.max() >= graph.num_nodes):
        raise ConfigError(f"target ids must lie in 0..{graph.num_nodes - 1}")

    node_bits = max(1, int(graph.num_nodes - 1).bit_length())
    # Keep at least 20 bits of priority in a 63-bit key: fewer rows per chunk if needed.
    max_row_bits = 63 - node_bits - 20
    if max_row_bits < 1:
        raise ConfigError(f"graph too large for 64-bit sequence keys ({graph.num_nodes} nodes)")
    chunk_size = min(chunk_size, 1 << max_row_bits)

    ids = np.full((tg.shape[0], seq_len), -1, dtype=np.int64)
    hops = np.full((tg.shape[0], seq_len), -1, dtype=np.int64)
    seed_hash = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]

    def fill(start: int) -> None:
        sl = slice(start, start + chunk_size)
        _fill_chunk(graph, tg[sl], seq_len, max_hops, seed_hash, node_bits, ids[sl], hops[sl])

    starts = range(0, tg.shape[0], chunk_size)
    workers = min(max(num_workers, 1), len(starts))
    if workers > 1:  # numpy releases the GIL; chunks write disjoint rows
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, starts))
    else:
        for start in starts:
            fill(start)

    ids_t = torch.from_numpy(ids)
    mask = ids_t >= 0
    node_types = torch.where(mask, graph.node_type[ids_t.clamp(min=0)], -1)
    return NodeSequences(ids_t, torch.from_numpy(hops), node_types, mask, seed=seed, max_hops=max_hops)


class HopSequenceSampler:
    """Draws hop-ordered sequences of fixed targets, with a fresh sample per epoch.

    ``sampler(epoch)`` returns the sequences of ``targets`` sampled with the seed
    ``derive_seed(seed, "sequences", epoch)`` (:mod:`brlgraph.seeding`); epoch 0 uses
    ``seed`` itself. The last sample is
    cached, so calling it twice with the same epoch costs nothing.
    """

    def __init__(
        self,
        graph: GraphView,
        targets: Tensor | np.ndarray | None,
        seq_len: int,
        *,
        max_hops: int = DEFAULT_MAX_HOPS,
        seed: int = 0,
        node_type: str | None = None,
        chunk_size: int = 256,
    ) -> None:
        self.graph, self.targets, self.seq_len = graph, targets, seq_len
        self.max_hops, self.seed, self.node_type, self.chunk_size = max_hops, seed, node_type, chunk_size
        self._cache: tuple[int, NodeSequences] | None = None

    def __call__(self, epoch: int = 0) -> NodeSequences:
        return self.resample(epoch)

    def resample(self, epoch: int) -> NodeSequences:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        seqs = hop_ordered_sequences(
            self.graph, self.targets, self.seq_len, max_hops=self.max_hops,
            seed=derive_seed(self.seed, "sequences", epoch), node_type=self.node_type, chunk_size=self.chunk_size,
        )
        self._cache = (epoch, seqs)
        return seqs


# ---------------------------------------------------------------------------- internals
_U = np.uint64
# Margin of the priority pre-filter (see _fill_chunk); any value gives the same result,
# smaller ones redo more rows, larger ones sort more candidates.
_KEEP_FACTOR = 3.0
_KEEP_SLACK = 32.0


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Ascending distinct values (np.unique hashes first in numpy >= 2.3: slower here)."""
    keys = np.sort(keys)
    if keys.size < 2:
        return keys
    first = np.empty(keys.size, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


def _in_sorted(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean [len(keys)]: is each key in ``sorted_set`` (ascending)?"""
    if sorted_set.size == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    idx = np.searchsorted(sorted_set, keys)
    idx[idx == sorted_set.size] = 0
    return sorted_set[idx] == keys


def _fill_chunk(
    graph: GraphView,
    targets: np.ndarray,
    seq_len: int,
    max_hops: int,
    seed_hash: np.uint64,
    node_bits: int,
    ids: np.ndarray,
    hops: np.ndarray,
) -> None:
    """Write the sequences of ``targets`` into ``ids`` / ``hops`` (views [t, S])."""
    t = targets.shape[0]
    row_bits = max(1, int(t - 1).bit_length())
    prio_bits = 63 - row_bits - node_bits
    row_shift = _U(prio_bits + node_bits)
    node_mask = _U((1 << node_bits) - 1)
    target_hash = splitmix64(targets.astype(np.uint64) ^ seed_hash)

    def candidate_keys(rows: np.ndarray, nodes: np.ndarray, limit: np.ndarray | None) -> np.ndarray:
        """Sorted distinct keys of (row, node) pairs not seen at earlier hops.

        With ``limit`` (per row), pairs of priority >= limit[row] are dropped first.
        """
        nodes_u = nodes.astype(np.uint64)
        prio = splitmix64(target_hash[rows] ^ nodes_u) >> _U(64 - prio_bits)
        keys = (rows.astype(np.uint64) << row_shift) | (prio << _U(node_bits)) | nodes_u
        if limit is not None:
            keys = keys[prio < limit[rows]]
        keys = _sorted_unique(keys)  # by (row, priority, node)
        return keys[~(_in_sorted(keys, prev1) | _in_sorted(keys, prev2))]

    ids[:, 0] = targets
    hops[:, 0] = 0
    filled = np.ones(t, dtype=np.int64)
    rows = np.arange(t, dtype=np.int64)
    nodes = targets.astype(np.int64)
    prev1 = prev2 = np.empty(0, dtype=np.uint64)
    prev1 = candidate_keys(rows, nodes, None)  # hop h-1 keys
    indptr, indices = graph.indptr, graph.indices
    for h in range(1, max_hops + 1):
        if rows.size == 0:
            break
        # Expand the frontier: every (row, neighbour) pair.
        begin = indptr[nodes]
        deg = indptr[nodes + 1] - begin
        total = int(deg.sum())
        if total == 0:
            break
        cand_rows = np.repeat(rows, deg)
        offset = np.repeat(begin - (np.cumsum(deg) - deg), deg)
        cand_nodes = indices[offset + np.arange(total, dtype=np.int64)]
        # Only pairs of small priority can be among the `budget` smallest of a row, so
        # rows with many candidates keep a fraction ~ 3 (b + 8 sqrt(b) + 32) / candidates
        # of them before sorting; the rare row that comes out short is redone in full.
        budget = seq_len - filled
        wanted = _KEEP_FACTOR * (budget + 8.0 * np.sqrt(budget) + _KEEP_SLACK)
        frac = wanted / np.maximum(np.bincount(cand_rows, minlength=t), 1)
        filtered = frac < 1.0
        if filtered.any():
            limit = np.where(filtered, (np.minimum(frac, 1.0) * 2.0**prio_bits).astype(np.uint64),
                             _U(1 << prio_bits))
            keys = candidate_keys(cand_rows, cand_nodes, limit)
            key_rows = (keys >> row_shift).astype(np.int64)
            short = filtered & (np.bincount(key_rows, minlength=t) < budget)
            if short.any():
                redo = short[cand_rows]
                keys = np.sort(np.concatenate([
                    keys[~short[key_rows]], candidate_keys(cand_rows[redo], cand_nodes[redo], None)
                ]))
        else:
            keys = candidate_keys(cand_rows, cand_nodes, None)
        if keys.size == 0:
            break
        rows = (keys >> row_shift).astype(np.int64)
        nodes = (keys & node_mask).astype(np.int64)
        # Rank of each candidate within its row, in priority order; keep the budget.
        counts = np.bincount(rows, minlength=t)
        rank = np.arange(keys.size, dtype=np.int64) - (np.cumsum(counts) - counts)[rows]
        take = rank < budget[rows]
        r_take = rows[take]
        pos = filled[r_take] + rank[take]
        ids[r_take, pos] = nodes[take]
        hops[r_take, pos] = h
        filled += np.minimum(counts, budget)
        # The next frontier: all hop-h nodes (not only the kept ones) of rows not yet full.
        open_rows = filled < seq_len
        keep = open_rows[rows]
        prev2 = prev1[open_rows[(prev1 >> row_shift).astype(np.int64)]]
        prev1 = keys[keep]
        rows, nodes = rows[keep], nodes[keep]

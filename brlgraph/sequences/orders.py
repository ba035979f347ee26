"""Locality-preserving node orders for the graph-as-one-sequence mode (spec 4.2).

All nodes of a graph become one sequence. In a locality-preserving order most
edges join nearby positions, so a local attention window holds graph neighbours
and the reservoir carries the rest. Each function returns a permutation
``order`` (LongTensor [N]): position ``i`` of the sequence holds node ``order[i]``;
``inverse_permutation(order)`` maps a node to its position.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import breadth_first_order, reverse_cuthill_mckee
from torch import Tensor

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView

NODE_ORDERS = ("rcm", "bfs", "identity")


def _adjacency(graph: GraphView) -> sp.csr_matrix:
    data = np.ones(graph.indices.shape[0], dtype=np.int8)
    return sp.csr_matrix((data, graph.indices, graph.indptr), shape=(graph.num_nodes,) * 2)


def rcm_order(graph: GraphView) -> Tensor:
    """Reverse Cuthill-McKee order: a permutation with small bandwidth |pos(u) - pos(v)|."""
    perm = reverse_cuthill_mckee(_adjacency(graph), symmetric_mode=True)
    return torch.from_numpy(np.asarray(perm, dtype=np.int64))


def bfs_order(graph: GraphView, start: int | None = None) -> Tensor:
    """Breadth-first order over all components.

    Each component is traversed from its node of smallest degree (or ``start`` for
    the first one); components follow one another in order of their first node.
    """
    n = graph.num_nodes
    adj = _adjacency(graph)
    deg = graph.degree()
    seen = np.zeros(n, dtype=bool)
    parts = []
    if start is not None:
        if not 0 <= start < n:
            raise ConfigError(f"start node {start} is outside 0..{n - 1}")
        roots = [start]
    else:
        roots = []
    # Component roots: minimum-degree node of each component (peripheral-ish start).
    _, labels = sp.csgraph.connected_components(adj, directed=True, connection="weak")
    by_label = np.lexsort((deg, labels))
    first = np.ones(n, dtype=bool)
    first[1:] = labels[by_label][1:] != labels[by_label][:-1]
    roots += [int(v) for v in by_label[first]]
    for r in roots:
        if seen[r]:
            continue
        # the adjacency is symmetric: directed=True avoids a transpose per call
        part = breadth_first_order(adj, r, directed=True, return_predecessors=False)
        seen[part] = True
        parts.append(part)
    order = np.concatenate(parts) if parts else np.empty(0, np.int64)
    return torch.from_numpy(order.astype(np.int64))


def node_order(graph: GraphView, kind: str = "rcm", seed: int | None = None) -> Tensor:
    """The permutation of ``kind`` in :data:`NODE_ORDERS` (``"identity"``: 0..N-1).

    With ``seed``, ``rcm`` and ``bfs`` run on the graph with its nodes relabelled by a
    random permutation drawn from ``seed``: the same kind of order, with its ties (start
    nodes, neighbours of equal degree) broken at random. Another seed gives another
    locality-preserving order, for training on several orders and averaging over them.
    ``identity`` ignores the seed.
    """
    if kind not in NODE_ORDERS:
        raise ConfigError(f"unknown node order {kind!r}; choose one of {NODE_ORDERS}")
    if kind == "identity":
        return torch.arange(graph.num_nodes)
    if seed is None:
        return rcm_order(graph) if kind == "rcm" else bfs_order(graph)
    perm = np.random.default_rng(seed).permutation(graph.num_nodes)
    adj = _adjacency(graph)[perm][:, perm].tocsr()
    adj.sort_indices()
    relabelled = GraphView.from_edge_index(torch.from_numpy(np.stack(adj.nonzero()).astype(np.int64)),
                                           graph.num_nodes)
    order = rcm_order(relabelled) if kind == "rcm" else bfs_order(relabelled)
    return torch.from_numpy(perm)[order]


def inverse_permutation(order: Tensor) -> Tensor:
    """``pos`` with ``pos[order[i]] = i``."""
    pos = torch.empty_like(order)
    pos[order] = torch.arange(order.numel(), device=order.device)
    return pos


def bandwidth(graph: GraphView, order: Tensor) -> int:
    """max |pos(u) - pos(v)| over edges (u, v): how far apart neighbours sit in ``order``."""
    if graph.num_edges == 0:
        return 0
    pos = inverse_permutation(order).numpy()
    row = graph.edge_index[0].numpy()
    return int(np.abs(pos[row] - pos[graph.indices]).max())

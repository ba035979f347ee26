"""Row-normalised adjacency blocks of a :class:`~brlgraph.graph.GraphView`, per relation.

- :func:`type_pair_means`: one mean operator per pair of node types (t, s), [N_t, N_s];
- :func:`relation_means`: one per edge type, each followed in its own direction;
- :func:`gcn_adjacency`, :func:`sparse_adjacency`: the homogeneous matrices of GCN and SAGE.

Built once per graph (models cache them) and multiplied with node states by the
relation-aware encoders and the metapath tokens of :mod:`brlgraph.nn`.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import torch

from brlgraph.errors import ConfigError
from brlgraph.graph.sparse import SparseMatrix
from brlgraph.graph.view import GraphView


def type_pair_means(graph: GraphView, device: torch.device) -> tuple[list[list[SparseMatrix | None]], list[slice]]:
    """Row-normalised adjacency blocks [N_t, N_s] for every pair of node types (t, s)."""
    import scipy.sparse as sp

    n = graph.num_nodes
    adj = sp.csr_matrix((np.ones(graph.indices.shape[0], np.float32), graph.indices, graph.indptr),
                        shape=(n, n))
    slices = type_slices(graph)
    blocks = [[mean_block(adj[rows, cols], device) for cols in slices] for rows in slices]
    return blocks, slices


def relation_means(graph: GraphView, device: torch.device) -> tuple[list[tuple[int, int, SparseMatrix]], list[slice]]:
    """The relations of :class:`RelationSAGEConv`: (t, s, row-normalised block [N_t, N_s])
    per edge type (edges s -> t), plus the reverse of each edge type with no other edge
    type going back between its node types; one per non-empty pair of node types when
    the view has no edge types. Self-loops are dropped, repeated edges count once."""
    import scipy.sparse as sp

    slices = type_slices(graph)
    relations = []
    for t, s, dst, src in _relation_edges(graph):
        rows, cols = dst - slices[t].start, src - slices[s].start
        shape = (slices[t].stop - slices[t].start, slices[s].stop - slices[s].start)
        a = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=shape)
        a.data[:] = 1.0  # repeated edges count once
        relations.append((t, s, mean_block(a, device)))
    return relations, slices


def check_relation_count(expected: int, relations: list, what: str, hint: str = "") -> None:
    """A clear error when ``relations`` (of :func:`relation_means`) are not the
    ``expected`` number that ``what`` (a layer, a model) was sized for."""
    if len(relations) != expected:
        raise ConfigError(f"{what} was built for {expected} relations, the graph has {len(relations)}{hint}")


def count_relations(graph: GraphView) -> int:
    """How many relations :func:`relation_means` finds in ``graph`` (sizes
    :class:`RelationSAGEConv`), without building their blocks."""
    return len(_relation_edges(graph))


def _relation_edges(graph: GraphView) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(t, s, dst, src) per relation of :func:`relation_means` (global ids, edges s -> t,
    self-loops dropped, relations left without edges left out)."""
    if not graph.relations:  # one relation per pair of node types, in type_pair_means' order
        types = graph.node_type.numpy()
        row = graph.edge_index[0].numpy()
        pair = types[row] * len(graph.node_types) + types[graph.indices]
        return [(int(k) // len(graph.node_types), int(k) % len(graph.node_types),
                 row[pair == k], graph.indices[pair == k]) for k in np.unique(pair)]
    pairs = Counter((r.src_type, r.dst_type) for r in graph.relations)
    out = []
    for r in graph.relations:
        directions = [(r.dst_type, r.src_type, r.dst, r.src)]
        if pairs[(r.dst_type, r.src_type)] == (r.src_type == r.dst_type):  # no other edge type back
            directions.append((r.src_type, r.dst_type, r.src, r.dst))
        for t, s, dst, src in directions:
            keep = dst != src
            if keep.any():
                out.append((t, s, dst[keep], src[keep]))
    return out


def type_slices(graph: GraphView) -> list[slice]:
    return [slice(graph.offsets[t], graph.offsets[t] + graph.num_nodes_dict[t]) for t in graph.node_types]


def mean_block(sub, device: torch.device) -> SparseMatrix | None:
    """A scipy sparse block as a row-normalised :class:`SparseMatrix` (``None`` when empty)."""
    import scipy.sparse as sp

    sub = sub.tocsr()
    if sub.nnz == 0:
        return None
    deg = np.asarray(sub.sum(axis=1)).ravel()
    sub = (sp.diags(1.0 / np.maximum(deg, 1.0)).astype(np.float32) @ sub).tocsr()
    sub.sort_indices()
    return SparseMatrix.from_csr(
        torch.from_numpy(sub.indptr.astype(np.int64)).to(device),
        torch.from_numpy(sub.indices.astype(np.int64)).to(device),
        torch.from_numpy(sub.data.astype(np.float32)).to(device), sub.shape)


def gcn_adjacency(graph: GraphView) -> torch.Tensor:
    r"""GCN's :math:`\hat A = D^{-1/2} (A + I) D^{-1/2}` of the symmetric adjacency, sparse CSR
    [N, N] (``GCNConv``'s default normalisation, computed once per graph)."""
    n = graph.num_nodes
    indptr, indices = torch.from_numpy(graph.indptr), torch.from_numpy(graph.indices)
    row = torch.repeat_interleave(torch.arange(n), indptr.diff())
    row, indices = torch.cat([row, torch.arange(n)]), torch.cat([indices, torch.arange(n)])
    dinv = (indptr.diff() + 1).float().rsqrt()
    coo = torch.sparse_coo_tensor(torch.stack([row, indices]), dinv[row] * dinv[indices], (n, n),
                                  check_invariants=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return coo.coalesce().to_sparse_csr()


def sparse_adjacency(graph: GraphView) -> torch.Tensor:
    """The symmetric adjacency with unit weights as a sparse CSR tensor [N, N] (what
    ``SAGEConv`` takes in place of ``edge_index``; it averages over each row itself)."""
    n = graph.num_nodes
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(graph.indptr), torch.from_numpy(graph.indices),
                                       torch.ones(graph.indices.shape[0]), (n, n), check_invariants=False)

"""Relation-aware mean aggregation: SAGE with a weight per node-type pair or per edge type."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brlgraph.graph import SparseMatrix, check_relation_count


class TypePairSAGEConv(nn.Module):
    r"""Relation-aware mean aggregation: one weight per (node type, neighbour type) pair.

    .. math::
        h'_v = W_0 h_v + b + \sum_{s} W_{t(v), s}\,
               \frac{1}{|N_s(v)|} \sum_{u \in N_s(v)} h_u

    where :math:`N_s(v)` are the neighbours of :math:`v` of node type :math:`s` (an
    empty sum is 0). Relations are told apart by the types at their two ends, which
    is all a :class:`~brlgraph.graph.GraphView` keeps; two edge types between the
    same pair of node types (ACM's paper-cite-paper and paper-ref-paper) share a weight.
    On a homogeneous graph this is ``SAGEConv``.

    :meth:`LocalGNNEncoder.adjacency` builds the row-normalised blocks once per graph.
    """

    def __init__(self, dim: int, num_types: int) -> None:
        super().__init__()
        self.dim, self.num_types = dim, num_types
        self.root = nn.Linear(dim, dim)
        self.rel = nn.Parameter(torch.empty(num_types, num_types, dim, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.root.reset_parameters()
        bound = 1.0 / self.dim**0.5  # nn.Linear's default range
        nn.init.uniform_(self.rel, -bound, bound)

    def forward(self, h: Tensor, adjacency: tuple[list[list[SparseMatrix | None]], list[slice]]) -> Tensor:
        """h [N, d] -> [N, d]. ``adjacency`` = (blocks, slices): node type t occupies rows
        ``slices[t]`` and ``blocks[t][s]`` [N_t, N_s] is the row-normalised adjacency from
        type t to its neighbours of type s (``None`` where there are no such edges)."""
        blocks, slices = adjacency
        terms = [(t, s, block, self.rel[t, s]) for t, row in enumerate(blocks)
                 for s, block in enumerate(row) if block is not None]
        return _relation_sum(self.root(h), h, terms, slices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dim}, num_types={self.num_types})"


class RelationSAGEConv(nn.Module):
    r"""Relation-aware mean aggregation with one weight per edge type.

    .. math::
        h'_v = W_0 h_v + b + \sum_{r:\, \mathrm{dst}(r) = t(v)} W_r\,
               \frac{1}{|N_r(v)|} \sum_{u \in N_r(v)} h_u

    where :math:`N_r(v)` are the nodes with an edge of type r into v (an empty sum
    is 0). Unlike :class:`TypePairSAGEConv` it tells apart two edge types between
    the same node types (ACM's paper-cite-paper and paper-ref-paper) and follows
    each edge type in its own direction. Choices: an edge type with no other edge type
    going back between its node types (``src``/``dst`` swapped) also gets its reverse as
    a relation of its own, so every edge is followed both ways, as in the other
    encoders (HGB lists every reverse; ACM's cite and ref are each other's); self-loops
    are dropped, as in :class:`~brlgraph.graph.GraphView`. A graph without edge
    types (homogeneous, or a hand-built view) has one relation per pair of node types,
    and this is :class:`TypePairSAGEConv`.

    :func:`relation_means` builds the row-normalised blocks; ``num_relations`` must be
    their number for the graphs the layer sees (:func:`count_relations`).
    """

    def __init__(self, dim: int, num_relations: int) -> None:
        super().__init__()
        self.dim, self.num_relations = dim, num_relations
        self.root = nn.Linear(dim, dim)
        self.rel = nn.Parameter(torch.empty(num_relations, dim, dim))
        self.reset_parameters()

    reset_parameters = TypePairSAGEConv.reset_parameters

    def forward(self, h: Tensor, adjacency: tuple[list[tuple[int, int, SparseMatrix]], list[slice]]) -> Tensor:
        """h [N, d] -> [N, d]. ``adjacency`` = (relations, slices): relation r is
        (t, s, block), ``block`` [N_t, N_s] the row-normalised edges of type r from
        nodes of type s into nodes of type t."""
        relations, slices = adjacency
        check_relation_count(self.num_relations, relations, "the layer")
        terms = [(t, s, block, self.rel[r]) for r, (t, s, block) in enumerate(relations)]
        return _relation_sum(self.root(h), h, terms, slices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dim}, num_relations={self.num_relations})"


def _relation_sum(out: Tensor, h: Tensor, terms: list[tuple[int, int, Tensor, Tensor]],
                  slices: list[slice]) -> Tensor:
    """``out`` plus ``block @ h[slices[s]] @ W`` added to the rows of type t, for each
    term (t, s, block, W), in order."""
    parts = [out[rows] for rows in slices]
    for t, s, block, weight in terms:
        parts[t] = parts[t] + block.mm(h[slices[s]]) @ weight
    return torch.cat(parts)

"""Graphs as brlgraph's models see them: one global node order and sparse operators over it.

- :class:`GraphView`: every node of a homogeneous or heterogeneous graph in one global
  order (type by type), with a symmetric CSR adjacency and the edge types as given.
- :class:`SparseMatrix`: a constant sparse matrix with fast products and gradients.
- :func:`type_pair_means`, :func:`relation_means`, :func:`gcn_adjacency`,
  :func:`sparse_adjacency`: the adjacency operators of the GNN encoders.

Depends only on numpy, scipy, torch and :mod:`brlgraph.errors`; :mod:`brlgraph.sequences`
and :mod:`brlgraph.nn` build on it.
"""

from brlgraph.graph.adjacency import (
    check_relation_count,
    count_relations,
    gcn_adjacency,
    relation_means,
    sparse_adjacency,
    type_pair_means,
    type_slices,
)
from brlgraph.graph.sparse import SparseMatrix
from brlgraph.graph.view import HOMOGENEOUS_TYPE, GraphView, Relation

__all__ = [
    "HOMOGENEOUS_TYPE",
    "GraphView",
    "Relation",
    "SparseMatrix",
    "check_relation_count",
    "count_relations",
    "gcn_adjacency",
    "relation_means",
    "sparse_adjacency",
    "type_pair_means",
    "type_slices",
]

"""Graphs -> token sequences (spec 4): the layer between data and attention.

- :class:`GraphView`: one global node order for homogeneous or heterogeneous graphs,
  with a symmetric CSR adjacency over all edge types.
- :func:`hop_ordered_sequences` / :class:`HopSequenceSampler`: node-as-sequence
  (spec 4.1), returning :class:`NodeSequences`.
- :func:`rcm_order`, :func:`bfs_order`, :func:`node_order`: graph-as-one-sequence
  orders (spec 4.2).

Depends only on numpy, scipy, torch and :mod:`brlgraph.errors`.
"""

from brlgraph.sequences.graph_view import GraphView
from brlgraph.sequences.hop_ordered import (
    DEFAULT_MAX_HOPS,
    HopSequenceSampler,
    NodeSequences,
    hop_ordered_sequences,
)
from brlgraph.sequences.orders import (
    NODE_ORDERS,
    bandwidth,
    bfs_order,
    inverse_permutation,
    node_order,
    rcm_order,
)

__all__ = [
    "DEFAULT_MAX_HOPS",
    "NODE_ORDERS",
    "GraphView",
    "HopSequenceSampler",
    "NodeSequences",
    "bandwidth",
    "bfs_order",
    "hop_ordered_sequences",
    "inverse_permutation",
    "node_order",
    "rcm_order",
]

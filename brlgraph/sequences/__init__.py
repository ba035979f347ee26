"""Graphs -> token sequences (spec 4): the layer between data and attention.

- :func:`hop_ordered_sequences` / :class:`HopSequenceSampler`: node-as-sequence
  (spec 4.1), returning :class:`NodeSequences`.
- :func:`directed_hop_sequences`: directed, torch-only sequences of a message-passing
  layer (:class:`~brlgraph.nn.BRLConv`), returning :class:`DirectedSequences`.
- :func:`rcm_order`, :func:`bfs_order`, :func:`node_order`: graph-as-one-sequence
  orders (spec 4.2).

Graphs come in as a :class:`~brlgraph.graph.GraphView`. Depends only on numpy, scipy,
torch, :mod:`brlgraph.graph`, :mod:`brlgraph.seeding` and :mod:`brlgraph.errors`.
"""

from brlgraph.sequences.directed import FLOWS, DirectedSequences, directed_hop_sequences
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
    "FLOWS",
    "NODE_ORDERS",
    "DirectedSequences",
    "HopSequenceSampler",
    "NodeSequences",
    "bandwidth",
    "bfs_order",
    "directed_hop_sequences",
    "hop_ordered_sequences",
    "inverse_permutation",
    "node_order",
    "rcm_order",
]

"""Attention operators on split heads: a readable reference beside each fast path.

* :mod:`brlgraph.ops.brl` -- BRL-Attention (local window + compressed-token reservoir).
* :mod:`brlgraph.ops.regla` -- ReGLA gated linear attention (recurrent + chunked forms).

Operators know nothing about modules; :mod:`brlgraph.nn.attention` wires projections
around them.
"""

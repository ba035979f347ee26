"""Gated linear attention with ReGLA's refining gate (spec section 5).

Operators take feature-mapped queries/keys and the gate; the feature maps, the gate
and the output normalisation live in :class:`brlgraph.nn.attention.ReGLAAttention`.
``naive.py`` is the token-by-token recurrence; ``chunked.py`` the parallel form.
"""

from brlgraph.ops.regla.chunked import chunked_regla
from brlgraph.ops.regla.naive import naive_recurrent_regla

__all__ = ["chunked_regla", "naive_recurrent_regla"]

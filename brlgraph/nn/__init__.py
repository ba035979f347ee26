"""Neural-network modules: attention layers, the BRL graph transformer, the PyG layer.

Attention modules share one forward signature, so models can swap them::

    out, reservoir = attn(x, mask=None, reservoir=None)

with ``x`` of shape [B, N, dim] and ``mask`` a boolean [B, N] (True = valid).
"""

from __future__ import annotations

import importlib

# Public name -> module that defines it. Imported on first use, so that importing
# brlgraph.nn stays cheap and each layer depends only on what it needs.
_EXPORTS = {
    "BRLAttention": "brlgraph.nn.attention",
    "make_attention": "brlgraph.nn.attention",
    "ATTENTION_BACKENDS": "brlgraph.nn.attention",
    "BRLFormer": "brlgraph.nn.brlformer",
    "BRLGraphSequenceModel": "brlgraph.nn.brlformer",
    "BRLConv": "brlgraph.nn.brl_conv",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'brlgraph.nn' has no attribute {name!r}")

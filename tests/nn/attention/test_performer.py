"""PerformerAttention: FAVOR+ random features."""

from __future__ import annotations

import torch

from brlgraph.nn import make_attention


def test_performer_redraw_changes_features():
    attn = make_attention("performer", 32, 4, redraw_interval=2)
    before = attn.projection.clone()
    attn.redraw_projection()
    assert not torch.equal(before, attn.projection)
    # Orthogonal blocks: rows of one block are orthogonal.
    w = attn.projection[:8]
    gram = w @ w.T
    torch.testing.assert_close(gram - torch.diag(torch.diag(gram)), torch.zeros(8, 8),
                               atol=1e-4, rtol=0)

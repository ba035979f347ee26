"""FullAttention: softmax attention over every valid token."""

from __future__ import annotations

import torch

from brlgraph.nn import make_attention
from tests.nn.attention.test_base import batch


def test_full_attention_matches_sdpa_definition():
    attn = make_attention("full", 32, 4).double()
    x, mask = batch()
    x = x.double()
    out, _ = attn(x, mask)
    q, k, v = attn.qkv(x).chunk(3, -1)
    q, k, v = (t.unflatten(-1, (4, 8)).transpose(1, 2) for t in (q, k, v))
    s = (q @ k.transpose(-1, -2)) / 8**0.5
    s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
    y = (s.softmax(-1) @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(out[mask], attn.out(y)[mask])

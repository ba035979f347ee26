"""LinformerAttention: keys and values projected to a fixed length."""

from __future__ import annotations

import pytest
import torch

from brlgraph.errors import ConfigError
from brlgraph.nn import make_attention


def test_linformer_variable_length_and_limit():
    attn = make_attention("linformer", 32, 4, proj_dim=8, max_len=32)
    for n in (5, 32):
        assert attn(torch.randn(1, n, 32))[0].shape == (1, n, 32)
    with pytest.raises(ConfigError, match="max_len"):
        attn(torch.randn(1, 33, 32))


@pytest.mark.parametrize("max_len", [256, 9607])
def test_projected_keys_keep_the_tokens_scale_at_any_max_len(max_len):
    # E K sums max_len token keys: an entry scale of 1/sqrt(k) made it sqrt(n / k) times
    # larger than the tokens (8.7x at 20News's 9,607), and the model never left chance
    torch.manual_seed(0)
    m = make_attention("linformer", 32, 2, proj_dim=64, max_len=max_len)
    tokens = torch.randn(max_len, 16)
    for proj in (m.proj_k, m.proj_v):
        assert 0.7 < float((proj @ tokens).std()) < 1.1

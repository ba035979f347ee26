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

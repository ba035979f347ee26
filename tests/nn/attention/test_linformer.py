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


def _output_change_after_one_adam_step(n: int) -> float:
    """RMS change of the output when Adam (lr 0.01) takes one step on E and F, for a
    sequence of n tokens that share a common component (as graph tokens after a GNN do)."""
    torch.manual_seed(0)
    attn = make_attention("linformer", 16, 2, proj_dim=8, max_len=n)
    x = 1.0 + 0.1 * torch.randn(1, n, 16)
    before = attn(x)[0].detach()
    opt = torch.optim.Adam([attn.proj_k, attn.proj_v], lr=1e-2)
    attn(x)[0].sum().backward()
    opt.step()
    return (attn(x)[0].detach() - before).pow(2).mean().sqrt().item()


def test_linformer_projection_steps_do_not_grow_with_the_sequence():
    # Adam moves every entry of E, F by about lr; with the entries used directly a
    # projected row moves by about lr * N (measured from 256 to 4,096 tokens: 2.6 -> 21
    # in output units, 8x), which kept 20News's 9,607-token model at chance. Scaled by
    # the fan-in N ** -0.5 it moves by about lr * N ** 0.5 (measured: 0.11 -> 0.36, 3.3x).
    short, long = (_output_change_after_one_adam_step(n) for n in (256, 4096))
    assert long / short < 6
    assert long < 1.0

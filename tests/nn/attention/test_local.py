"""LocalWindowAttention: softmax attention inside BRL-Attention's window alone."""

from __future__ import annotations

import pytest
import torch

from brlgraph.nn.attention import LocalWindowAttention


@pytest.mark.parametrize("causal", [False, True])
def test_an_output_depends_on_the_tokens_of_its_window_and_no_others(causal):
    """Sliding window w: token i reads j with |i - j| <= w (causal: 0 <= i - j <= w), so
    the gradient of output i is zero for every input outside that reach."""
    window, n, i = 2, 12, 6
    attn = LocalWindowAttention(16, heads=2, window=window, causal=causal).double().eval()
    x = torch.randn(1, n, 16, dtype=torch.double, requires_grad=True)
    out, _ = attn(x)
    (grad,) = torch.autograd.grad(out[0, i].sum(), x)
    reach = grad[0].abs().sum(-1) > 0
    offsets = torch.arange(n) - i
    inside = (offsets.abs() <= window) & (offsets <= 0 if causal else True)
    assert torch.equal(reach, inside), reach.nonzero().flatten().tolist()

"""The CPU dropout of brlgraph.nn.dropout against its definition and torch's dropout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from brlgraph.nn import BRLFormer
from brlgraph.nn.dropout import Dropout, dropout


def reference(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The definition, readably: keep where a uniform draw is >= p, scale by 1 / (1 - p)."""
    torch.manual_seed(seed)
    keep = (torch.rand_like(x) >= p).to(x.dtype)
    return x * keep / (1.0 - p)


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_forward_and_gradient_match_the_definition(p):
    x = torch.randn(7, 33, 16, dtype=torch.float64, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    grad = torch.randn_like(x)
    torch.manual_seed(3)
    out = dropout(x, p)
    ref = reference(xr, p, seed=3)
    assert torch.equal(out == 0, ref == 0)  # the same mask
    torch.testing.assert_close(out, ref, rtol=1e-15, atol=0)  # x * (1 / (1 - p)) against x / (1 - p)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-15, atol=0)
    assert 0 < int((out == 0).sum()) < out.numel()


def test_keep_rate_and_mean_are_those_of_torch_dropout():
    torch.manual_seed(0)
    p, n = 0.4, 1_000_000
    x = torch.ones(n)
    ours, theirs = dropout(x, p), nn.functional.dropout(x, p, True)
    sigma = math.sqrt(p * (1 - p) / n)
    for out in (ours, theirs):
        assert abs(float((out == 0).float().mean()) - p) < 6 * sigma
        values = torch.unique(out).tolist()
        assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p))
        assert abs(float(out.mean()) - 1.0) < 6 * sigma / (1 - p)
    assert not torch.equal(ours, dropout(x, p))  # a fresh mask per call


def test_identity_zero_and_errors():
    x = torch.randn(5, 4)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            dropout(x, bad)


def test_module_follows_train_and_eval():
    layer = Dropout(0.5)
    assert isinstance(layer, nn.Dropout) and "p=0.5" in repr(layer)
    x = torch.ones(1000)
    assert int((layer(x) == 0).sum()) > 0
    layer.eval()
    assert layer(x) is x


def test_seeded_calls_repeat():
    x = torch.randn(64, 32)
    torch.manual_seed(11)
    a = dropout(x, 0.3)
    torch.manual_seed(11)
    assert torch.equal(a, dropout(x, 0.3))


def test_models_use_the_fast_dropout_everywhere():
    model = BRLFormer([8, None], [10, 5], 3, hidden_channels=16, heads=2, gnn_layers=1, gnn="hsage", path_tokens=2,
                      dropout=0.2, input_dropout=0.1)
    plain = [name for name, m in model.named_modules() if type(m) is nn.Dropout]
    assert not plain
    assert sum(isinstance(m, Dropout) for m in model.modules()) >= 4

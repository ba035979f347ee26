"""BRLAttention module: shapes, repr, parameters, reservoir stream, streaming."""

from __future__ import annotations

import math

import pytest
import torch

from brlgraph.errors import ConfigError
from brlgraph.nn import BRLAttention
from brlgraph.nn.attention import LocalWindowAttention


def test_shapes_and_reservoir_stream():
    attn = BRLAttention(32, heads=4, window=4, reservoir_size=6, reservoir_dim=12)
    x = torch.randn(3, 19, 32)
    mask = torch.rand(3, 19) > 0.2
    mask[:, 0] = True
    out, res = attn(x, mask=mask)
    assert out.shape == (3, 19, 32) and res.shape == (3, 6, 12)
    assert (out[~mask] == 0).all()
    start = attn.initial_reservoir(3)
    assert start.shape == (3, 6, 12)
    torch.testing.assert_close(start[1], attn.embedding.weight)
    out2, update = attn.attend(x, mask=mask)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(res, start + update)
    # An explicit reservoir is used instead of E.
    other = torch.randn(3, 6, 12)
    out3, res3 = attn(x, mask=mask, reservoir=other)
    assert not torch.allclose(out3, out)
    torch.testing.assert_close(res3 - other, attn.attend(x, mask, other)[1])
    (out.sum() + res.sum()).backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_repr():
    assert repr(BRLAttention(64, heads=8, window=128, reservoir_size=64)) == (
        "BRLAttention(64, heads=8, window=128, reservoir_size=64)")
    assert repr(BRLAttention(64, causal=True)).endswith("causal=True)")


def test_parameters_and_reset():
    attn = BRLAttention(64, heads=8, reservoir_weight=0.3)
    torch.testing.assert_close(attn.lam(), torch.full((8,), 0.3))
    with torch.no_grad():
        for p in attn.parameters():
            p.fill_(2.0)
    attn.reset_parameters()
    torch.testing.assert_close(attn.theta, torch.full((8,), math.log(0.3 / 0.7)))
    for g in (attn.g_q, attn.g_k1, attn.g_k2):
        assert g.abs().max() < 1.0 and g.std() > 0  # N(0, 0.1)
    tau_w, tau_r = attn.temperatures()
    torch.testing.assert_close(tau_w, torch.exp(attn.g_q * attn.g_k1))
    assert (attn.qkv.weight != 2.0).all()

    fixed = BRLAttention(64, heads=8, reservoir_weight=0.0, learn_reservoir_weight=False)
    assert "theta" not in dict(fixed.named_parameters())
    assert (fixed.lam() == 0).all()


def test_bad_options():
    with pytest.raises(ConfigError, match="heads"):
        BRLAttention(30, heads=8)
    with pytest.raises(ConfigError, match="reservoir_weight"):
        BRLAttention(32, heads=4, reservoir_weight=0.0)
    with pytest.raises(ConfigError, match="window_mode"):
        BRLAttention(32, heads=4, window_mode="ring")
    with pytest.raises(ConfigError, match="causal"):
        BRLAttention(32, heads=4).forward_stream(torch.randn(1, 4, 32))


@pytest.mark.parametrize("options, message", [
    ({"window": 0}, r"model\.window \(window=\) must be >= 1, got 0"),
    ({"reservoir_size": -1}, r"model\.reservoir_size \(reservoir_size=\) must be >= 1, got -1"),
    ({"dropout": 1.5}, r"model\.dropout \(dropout=\) must be in \[0, 1\), got 1\.5"),
])
def test_errors_name_the_config_key_a_user_sets(options, message):
    with pytest.raises(ConfigError, match=message):
        BRLAttention(32, heads=4, **options)
    with pytest.raises(ConfigError, match=r"model\.hidden_channels \(dim=30\).*model\.heads \(heads=8\)"):
        BRLAttention(30, heads=8)


@pytest.mark.parametrize("causal", [False, True])
def test_zero_fixed_weight_equals_local_module(causal):
    brl = BRLAttention(32, heads=4, window=4, reservoir_size=3, causal=causal,
                       reservoir_weight=0.0, learn_reservoir_weight=False)
    local = LocalWindowAttention(32, heads=4, window=4, causal=causal)
    local.qkv.load_state_dict(brl.qkv.state_dict())
    local.out.load_state_dict(brl.out.state_dict())
    x = torch.randn(2, 21, 32)
    mask = torch.rand(2, 21) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(brl(x, mask)[0], local(x, mask)[0])


@pytest.mark.parametrize("window_mode", ["sliding", "block"])
def test_causal_module_and_streaming(window_mode):
    attn = BRLAttention(32, heads=4, window=4, reservoir_size=3, causal=True,
                        window_mode=window_mode).double()
    x = torch.randn(2, 30, 32, dtype=torch.float64)
    mask = torch.rand(2, 30) > 0.2
    mask[:, 0] = True
    out, res = attn(x, mask)
    _, update = attn.attend(x, mask)
    assert update is None
    torch.testing.assert_close(res, attn.initial_reservoir(2))  # C' = C when causal
    # Causality at the module level.
    x2 = x.clone()
    x2[:, 17:] = torch.randn_like(x2[:, 17:])
    torch.testing.assert_close(attn(x2, mask)[0][:, :17], out[:, :17])
    # Streaming in segments equals one call.
    hist, parts = None, []
    for a, b in ((0, 7), (7, 8), (8, 30)):
        y, hist = attn.forward_stream(x[:, a:b], mask[:, a:b], hist=hist)
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, 1), out)

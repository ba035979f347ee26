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


def test_mask_convention_is_stated_beside_multihead_attention():
    doc = BRLAttention.__doc__
    assert "True = valid" in doc and "key_padding_mask" in doc


def test_unbatched_reservoir_and_streaming():
    attn = BRLAttention(16, heads=2, window=2, reservoir_size=3, reservoir_dim=6).eval()
    x, c = torch.randn(9, 16), torch.randn(3, 6)
    out, res = attn(x, reservoir=c)
    ref, ref_res = attn(x[None], reservoir=c[None])
    torch.testing.assert_close(out, ref[0])
    torch.testing.assert_close(res, ref_res[0])
    with pytest.raises(ValueError, match=r"\[m, d_c\]"):
        attn(x, reservoir=c[None])
    with pytest.raises(ValueError, match="batched"):
        BRLAttention(16, heads=2, window=2, causal=True).forward_stream(x)


@pytest.mark.parametrize("window_mode", ["sliding", "block"])
@pytest.mark.parametrize("window", [1, 3, 8])
@pytest.mark.parametrize("with_reservoir", [False, True])
def test_attend_first_is_token_zero_of_attend(window_mode, window, with_reservoir):
    attn = BRLAttention(16, heads=2, window=window, reservoir_size=5, reservoir_dim=10,
                        window_mode=window_mode).double()
    g = torch.Generator().manual_seed(window)
    x = torch.randn(6, 20, 16, generator=g, dtype=torch.double, requires_grad=True)
    mask = torch.rand(6, 20, generator=g) > 0.3
    mask[:, 0] = True
    mask[2, 1:] = False  # only the first token valid
    mask[4, 0] = False  # the first token padded: zero
    c = torch.randn(6, 5, 10, generator=g, dtype=torch.double) if with_reservoir else None
    for m in (mask, None):
        first = attn.attend_first(x, m, c)
        ref = attn.attend(x, m, c)[0][:, 0]
        torch.testing.assert_close(first, ref, rtol=1e-10, atol=1e-12)
        grads = torch.autograd.grad(first.square().sum(), [x, *attn.parameters()], allow_unused=True)
        ref_grads = torch.autograd.grad(ref.square().sum(), [x, *attn.parameters()], allow_unused=True)
        for a, b in zip(grads, ref_grads, strict=True):
            if b is None or a is None:
                assert a is None or a.abs().max() == 0  # W_Oc: unused by both
                continue
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(attn.attend_first(x[1], mask[1], None if c is None else c[1]),
                               attn.attend_first(x[1:2], mask[1:2], None if c is None else c[1:2])[0])
    with pytest.raises(ConfigError, match="non-causal"):
        BRLAttention(16, heads=2, window=2, causal=True).attend_first(x)


def test_without_reservoir_update_no_parameter_goes_unused():
    attn = BRLAttention(16, heads=2, window=2, reservoir_size=3, reservoir_update=False)
    assert attn.reservoir_out is None
    assert not any(name.startswith("reservoir_out") for name, _ in attn.named_parameters())
    assert repr(attn).endswith("reservoir_update=False)")
    x = torch.randn(2, 7, 16)
    out, update = attn.attend(x)
    assert update is None
    out2, res = attn(x)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(res, attn.initial_reservoir(2))  # returned unchanged
    out.square().sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None, name
    assert BRLAttention(16, heads=2, window=2, reservoir_size=3).reservoir_out is not None


def test_compiles_on_new_lengths():
    torch._dynamo.reset()
    attn = BRLAttention(16, heads=2, window=2, reservoir_size=3)
    compiled = torch.compile(attn, backend="aot_eager")
    for n in (9, 14):
        x = torch.randn(3, n, 16)
        mask = torch.rand(3, n) > 0.2
        mask[:, 0] = True
        out, res = compiled(x, mask)
        ref, ref_res = attn(x, mask)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(res, ref_res)
        first = torch.compile(attn.attend_first, backend="aot_eager", fullgraph=True)(x, mask)
        torch.testing.assert_close(first, ref[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_reservoir", [False, True])
def test_attend_first_over_a_table_of_token_rows(with_reservoir):
    attn = BRLAttention(16, heads=2, window=3, reservoir_size=4).double()
    g = torch.Generator().manual_seed(0)
    table = torch.randn(40, 16, generator=g, dtype=torch.double, requires_grad=True)
    index = torch.randint(0, 40, (7, 12), generator=g)
    mask = torch.rand(7, 12, generator=g) > 0.3
    mask[:, 0] = True
    c = torch.randn(7, 4, 16, generator=g, dtype=torch.double) if with_reservoir else None
    for m in (mask, None):
        out = attn.attend_first(table, m, c, index=index)
        ref = attn.attend_first(table[index], m, c)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        grad, = torch.autograd.grad(out.sum(), table)
        ref_grad, = torch.autograd.grad(ref.sum(), table)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="table"):
        attn.attend_first(table[index], mask, index=index)
    with pytest.raises(TypeError, match="True = valid"):
        attn.attend_first(table, mask.long(), index=index)


# ------------------------------------------------------------ write_scale_length
def test_write_scale_length_multiplies_the_write_temperature_per_sequence():
    """With ``write_scale_length = n_0``, a sequence of n > n_0 valid tokens equals the
    module without the option whose write temperature tau_w = exp(gQ gK1) is
    multiplied by log n / log n_0 (gK1 shifted by log(alpha) / gQ); a sequence of at
    most n_0 valid tokens is unchanged. Per sequence: the padded batch against each
    sequence alone."""
    torch.manual_seed(0)
    n0 = 8
    attn = BRLAttention(16, heads=2, window=2, reservoir_size=3, write_scale_length=n0).double()
    plain = BRLAttention(16, heads=2, window=2, reservoir_size=3).double()
    plain.load_state_dict(attn.state_dict())
    x = torch.randn(3, 30, 16, dtype=torch.double)
    mask = torch.ones(3, 30, dtype=torch.bool)
    mask[1, 20:] = False  # 20 valid tokens
    mask[2, 6:] = False   # 6 <= n_0: unchanged
    out, res = attn(x, mask)
    first = attn.attend_first(x, mask)
    for b, n in enumerate((30, 20, 6)):
        alpha = max(1.0, math.log(n) / math.log(n0))
        with torch.no_grad():
            plain.g_k1.copy_(attn.g_k1 + math.log(alpha) / attn.g_q)
        ref, ref_res = plain(x[b, :n], None)
        torch.testing.assert_close(out[b, :n], ref)
        torch.testing.assert_close(res[b], ref_res)
        torch.testing.assert_close(first[b], ref[0])


def test_write_scale_length_in_the_token_table_readout_and_its_checks():
    torch.manual_seed(1)
    attn = BRLAttention(16, heads=2, window=3, reservoir_size=4, write_scale_length=5)
    table = torch.randn(40, 16)
    index = torch.randint(0, 40, (6, 12))
    mask = torch.rand(6, 12) > 0.3
    mask[:, 0] = True
    mask[0] = False  # no valid token: stays finite
    mask[0, 0] = True
    got = attn.attend_first(table, mask, index=index)
    torch.testing.assert_close(got, attn(table[index], mask)[0][:, 0], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(got).all()
    assert "write_scale_length=5" in repr(attn)
    with pytest.raises(ConfigError, match="write_scale_length"):
        BRLAttention(16, heads=2, causal=True, write_scale_length=64)
    with pytest.raises(ConfigError, match="write_scale_length"):
        BRLAttention(16, heads=2, write_scale_length=1)

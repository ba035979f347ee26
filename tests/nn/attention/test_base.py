"""The contract every attention backend shares (brlgraph/nn/attention/base.py): one
signature, masks, padding, causality and unbatched input, checked for each backend
that make_attention builds."""

from __future__ import annotations

import pytest
import torch

from brlgraph.errors import ConfigError
from brlgraph.nn import ATTENTION_BACKENDS, make_attention

OPTIONS = {
    "brl": dict(window=4, reservoir_size=3),
    "local": dict(window=4),
    "linformer": dict(proj_dim=8, max_len=32),
    "performer": dict(num_features=16),
    "regla": dict(chunk_size=8),
    "full": {},
}


def batch(n=23, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, dim, generator=g)
    mask = torch.rand(2, n, generator=g) > 0.3
    mask[:, 0] = True
    mask[1, -3:] = False
    return x, mask


@pytest.mark.parametrize("name", ATTENTION_BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_backward_with_mask(name, causal):
    if name == "linformer" and causal:
        with pytest.raises(ConfigError, match="causal"):
            make_attention(name, 32, 4, causal=True, **OPTIONS[name])
        return
    attn = make_attention(name, 32, 4, causal=causal, **OPTIONS[name])
    x, mask = batch()
    x.requires_grad_()
    out, res = attn(x, mask=mask)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert (out[~mask] == 0).all()
    assert (res is not None) == attn.uses_reservoir
    out2, update = attn.attend(x, mask=mask)
    assert (update is not None) == (attn.uses_reservoir and not causal)
    loss = out.pow(2).sum() + (0 if res is None else res.sum())
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in attn.named_parameters():
        if causal and pname.startswith("reservoir_out"):
            continue  # the causal reservoir is not written from the sequence (C' = C)
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # No mask at all.
    out3, _ = attn(x.detach())
    assert out3.shape == x.shape and torch.isfinite(out3).all()
    assert repr(attn).startswith(type(attn).__name__ + "(32, heads=4")


@pytest.mark.parametrize("name", ATTENTION_BACKENDS)
def test_padded_tokens_do_not_change_valid_outputs(name):
    attn = make_attention(name, 32, 4, **OPTIONS[name]).double().eval()
    x, mask = batch()
    x = x.double()
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 4)
    out, _ = attn(x, mask)
    out2, _ = attn(x2, mask)
    torch.testing.assert_close(out2[mask], out[mask])


@pytest.mark.parametrize("name", ["brl", "local", "full", "regla"])
def test_causal_backends_are_causal(name):
    attn = make_attention(name, 32, 4, causal=True, **OPTIONS[name]).double().eval()
    x, mask = batch()
    x = x.double()
    out, _ = attn(x, mask)
    x2 = x.clone()
    x2[:, 12:] = torch.randn_like(x2[:, 12:])
    out2, _ = attn(x2, mask)
    torch.testing.assert_close(out2[:, :12], out[:, :12], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", ATTENTION_BACKENDS)
def test_masks_must_be_bool(name):
    """An int or float mask is refused: a 0/1 mask in MultiheadAttention's convention
    (True = padded) would otherwise run, inverted, without an error."""
    attn = make_attention(name, 32, 4, **OPTIONS[name])
    x, mask = batch()
    for bad in (mask.long(), mask.float(), (~mask).to(torch.uint8)):
        with pytest.raises(TypeError, match="True = valid"):
            attn(x, bad)
        with pytest.raises(TypeError, match="MultiheadAttention"):
            attn.attend(x, bad)
    with pytest.raises(ValueError, match="shape"):
        attn(x, mask[:, :-1])


@pytest.mark.parametrize("name", ATTENTION_BACKENDS)
def test_unbatched_input_is_a_batch_of_one(name):
    attn = make_attention(name, 32, 4, **OPTIONS[name]).eval()
    x, mask = batch()
    out, res = attn(x[1], mask[1])
    ref, ref_res = attn(x[1:], mask[1:])
    torch.testing.assert_close(out, ref[0])
    assert (res is None) == (ref_res is None)
    if res is not None:
        torch.testing.assert_close(res, ref_res[0])
    torch.testing.assert_close(attn.attend(x[1])[0], attn.attend(x[1:])[0][0])
    with pytest.raises(ValueError, match="tokens"):
        attn(x[0, 0])
    with pytest.raises(ConfigError, match=r"model\.window \(window=\) must be >= 1, got 0"):
        make_attention("local", 32, 4, window=0)

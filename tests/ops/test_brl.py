"""brl_attention (brlgraph/ops/brl/__init__.py): the choice of path and its arguments."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from brlgraph.ops.brl import (
    brl_attention,
    fused_available,
    naive_brl_attention,
    select_impl,
)
from tests.ops.brl.cases import MODES, make_inputs


def test_impl_selection():
    # the fused kernel where it is built for the head size (in CI it must build), else sdpa
    fused = "fused" if os.environ.get("CI") or fused_available() else "sdpa"
    assert select_impl(torch.zeros(2, 2, 300, 8)) == fused
    q = torch.zeros(2, 2, 300, 4)  # no fused build for head size 4
    assert select_impl(q) == "sdpa"
    assert select_impl(q, causal=True) == "chunked"
    assert select_impl(torch.zeros(2, 2, 300, 8), causal=True) == "chunked"
    assert select_impl(torch.zeros(1, 2, 100_000, 8)) == "chunked"
    (q, k, v, rq, rk, tw, tr, lam), mask = make_inputs(30, 4, padded=True)
    kw = dict(tau_w=tw, tau_r=tr, lam=lam, window=4, mask=mask)
    auto = brl_attention(q, k, v, rq, rk, **kw)
    for impl in ("fused", "sdpa", "chunked", "naive"):
        other = brl_attention(q, k, v, rq, rk, impl=impl, **kw)
        torch.testing.assert_close(other[0], auto[0])
        torch.testing.assert_close(other[1], auto[1])
    with pytest.raises(ValueError, match="impl"):
        brl_attention(q, k, v, rq, rk, impl="fast", **kw)
    with pytest.raises(ValueError, match="non-causal"):
        brl_attention(q, k, v, rq, rk, impl="sdpa", causal=True, **kw)
    with pytest.raises(ValueError, match="head size"):
        brl_attention(q, k, v, rq, rk, impl="fused", causal=True, **kw)


def test_bad_arguments():
    (q, k, v, rq, rk, *_), _ = make_inputs(8, 2)
    with pytest.raises(ValueError, match="window_mode"):
        brl_attention(q, k, v, rq, rk, window=4, window_mode="ring")
    with pytest.raises(ValueError, match="rq and rk"):
        brl_attention(q, k, v, rq, None, window=4)
    _, _, hist = brl_attention(q, k, v, rq, rk, window=4, causal=True)
    with pytest.raises(ValueError, match="causal"):
        brl_attention(q, k, v, rq, rk, window=4, hist=hist)


@pytest.mark.parametrize("causal,mode", MODES)
def test_zero_reservoir_weight_is_local_attention(causal, mode):
    (q, k, v, rq, rk, tw, tr, _), mask = make_inputs(45, 6, padded=True)
    lam0 = torch.zeros(q.shape[1], dtype=q.dtype)
    y, _, _ = brl_attention(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=lam0, window=8,
                            causal=causal, window_mode=mode, mask=mask)
    y_local, u, _ = brl_attention(q, k, v, window=8, causal=causal, window_mode=mode, mask=mask)
    assert u is None
    torch.testing.assert_close(y, y_local)
    y_ref, _, _ = naive_brl_attention(q, k, v, window=8, causal=causal, window_mode=mode,
                                      mask=mask)
    torch.testing.assert_close(y_local, y_ref)


@pytest.mark.parametrize("causal,mode", MODES)
def test_zero_reservoir_weight_full_window_is_sdpa(causal, mode):
    (q, k, v, rq, rk, tw, tr, _), _ = make_inputs(30, 4)
    y, _, _ = brl_attention(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=0.0, window=32,
                            causal=causal, window_mode=mode)
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q, k, v, is_causal=causal))

"""The short-sequence path (brlgraph/ops/brl/sdpa.py) against the dense reference."""

from __future__ import annotations

import pytest
import torch

from brlgraph.ops.brl import (
    naive_brl_attention,
    sdpa_brl_attention,
)
from tests.ops.brl.cases import make_inputs, run, sdpa

SDPA_SIZES = [(37, 8, 4, 8), (5, 8, 3, None), (64, 16, 8, 16), (50, 16, 16, 7), (40, 4, 3, None),
              (70, 6, 5, 12)]


@pytest.mark.parametrize("mode", ["sliding", "block"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n,w,m,c", SDPA_SIZES)
def test_sdpa_matches_naive_fp32(mode, padded, n, w, m, c):
    ins, mask = make_inputs(n, m, padded=padded)
    ref = run(naive_brl_attention, ins, mask, window=w, causal=False, mode=mode)
    got = run(sdpa, [t.float() for t in ins], mask, window=w, causal=False, mode=mode,
              bucket_size=c)
    torch.testing.assert_close(got[0].double(), ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1].double(), ref[1], atol=1e-5, rtol=1e-5)
    names = ["q", "k", "v", "rq", "rk", "tau_w", "tau_r", "lam"]
    for name, a, b in zip(names, got[2], ref[2], strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5, msg=lambda s, n=name: f"d{n}: {s}")


@pytest.mark.parametrize("mode", ["sliding", "block"])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_local_only_matches_naive(mode, padded):
    (q, k, v, *_), mask = make_inputs(45, 4, padded=padded)
    gy = torch.randn(q.shape, dtype=torch.float64)

    def y_and_grads(fn, dtype, **kw):
        ins = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        y, u, _ = fn(*ins, window=8, window_mode=mode, mask=mask, **kw)
        assert u is None
        return [y, *torch.autograd.grad(y, ins, gy.to(dtype))]

    got = y_and_grads(sdpa_brl_attention, torch.float32, bucket_size=16)
    for a, b in zip(got, y_and_grads(naive_brl_attention, torch.float64), strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_sdpa_matches_naive_bf16(mode):
    ins, mask = make_inputs(40, 8, padded=True, dtype=torch.float32)
    ins = [t.bfloat16() for t in ins]
    ref = run(naive_brl_attention, [t.float() for t in ins], mask, window=8, causal=False,
              mode=mode)
    got = run(sdpa, ins, mask, window=8, causal=False, mode=mode, bucket_size=16)
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == torch.bfloat16
    torch.testing.assert_close(got[0].float(), ref[0], atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(got[1].float(), ref[1], atol=2e-2, rtol=2e-2)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a.float(), b, atol=2e-2, rtol=2e-2)


def test_sdpa_float64_and_shared_reservoir():
    """float64 stays float64 (tight agreement); a reservoir broadcast over the batch works."""
    ins, mask = make_inputs(33, 5, padded=True)
    ins[3], ins[4] = ins[3][:1], ins[4][:1]  # [1, H, M, D], as one learned reservoir
    ref = run(naive_brl_attention, ins, mask, window=4, causal=False, mode="sliding")
    got = run(sdpa, ins, mask, window=4, causal=False, mode="sliding", bucket_size=8)
    assert got[0].dtype == torch.float64
    for a, b in zip([got[0], got[1], *got[2]], [ref[0], ref[1], *ref[2]], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["sliding", "block"])
def test_gradcheck_sdpa(mode):
    ins, mask = make_inputs(11, 3, B=2, H=2, D=3, padded=True)
    ins = [t.requires_grad_() for t in ins]

    def f(q, k, v, rq, rk, tw, tr, lam):
        return sdpa_brl_attention(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=lam, window=2,
                                  window_mode=mode, mask=mask, bucket_size=4)[:2]

    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6, fast_mode=True)

"""Inputs and a runner shared by the BRL operator tests (forward and gradients)."""

from __future__ import annotations

import itertools

import pytest
import torch

from brlgraph.ops.brl import (
    sdpa_brl_attention,
)

MODES = list(itertools.product([False, True], ["sliding", "block"]))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


SIZES = [(37, 8, 4), (5, 8, 3), (64, 16, 8), (50, 16, 16)]  # (n, w, m): n % w != 0, n < w


def make_inputs(n, m, *, B=2, H=2, D=8, dtype=torch.float64, padded=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, D, generator=g, dtype=dtype) for _ in range(3))
    rq, rk = (torch.randn(B, H, m, D, generator=g, dtype=dtype) for _ in range(2))
    tau_w = torch.rand(H, generator=g, dtype=dtype) * 2 + 0.2
    tau_r = torch.rand(H, generator=g, dtype=dtype) * 2 + 0.2
    lam = torch.rand(H, generator=g, dtype=dtype) * 0.8 + 0.1
    mask = None
    if padded:
        mask = torch.rand(B, n, generator=g) > 0.3
        mask[:, 0] = True
        mask[-1, -2:] = False  # trailing padding too
        if B > 1:
            mask[0, :] = True
    return [q, k, v, rq, rk, tau_w, tau_r, lam], mask


def sdpa(q, k, v, rq=None, rk=None, *, causal, **kw):
    """The sdpa path under the signature of the others (it is non-causal only)."""
    assert not causal
    return sdpa_brl_attention(q, k, v, rq, rk, **kw)


def run(fn, ins, mask, *, window, causal, mode, grad_seed=1, **kw):
    ins = [t.detach().clone().requires_grad_() for t in ins]
    q, k, v, rq, rk, tw, tr, lam = ins
    y, u, _ = fn(q, k, v, rq, rk, tau_w=tw, tau_r=tr, lam=lam, window=window, causal=causal,
                 window_mode=mode, mask=mask, **kw)
    g = torch.Generator().manual_seed(grad_seed)
    # Cotangents drawn in float64, so every dtype sees the same ones.
    loss = (y * torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.device, y.dtype)).sum()
    if u is not None:
        loss = loss + (u * torch.randn(u.shape, generator=g, dtype=torch.float64).to(u.device, u.dtype)).sum()
    grads = torch.autograd.grad(loss, ins)
    return y, u, grads

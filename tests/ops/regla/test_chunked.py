"""ReGLA's chunked parallel form (brlgraph/ops/regla/chunked.py) against the token-by-token recurrence."""

from __future__ import annotations

import pytest
import torch

from brlgraph.ops.regla import chunked_regla, naive_recurrent_regla


def inputs(n, *, Dk=6, Dv=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(2, 3, n, Dk, generator=g, dtype=dtype)
    k = torch.rand(2, 3, n, Dk, generator=g, dtype=dtype)
    v = torch.randn(2, 3, n, Dv, generator=g, dtype=dtype)
    gate = torch.rand(2, 3, n, Dk, generator=g, dtype=dtype) * 0.85 + 0.15
    s0 = torch.randn(2, 3, Dk, Dv, generator=g, dtype=dtype)
    return [q, k, v, gate, s0]


@pytest.mark.parametrize("n,chunk", [(37, 8), (8, 8), (5, 16), (64, 32)])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_equals_recurrent(n, chunk, with_state):
    ins = [t.requires_grad_() for t in inputs(n)]
    if not with_state:
        ins[-1] = None
    o_ref, s_ref = naive_recurrent_regla(*ins)
    o, s = chunked_regla(*ins, chunk_size=chunk)
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(s, s_ref)
    leaves = [t for t in ins if t is not None]
    go = torch.randn_like(o)
    g_ref = torch.autograd.grad((o_ref * go).sum() + s_ref.sum(), leaves)
    g = torch.autograd.grad((o * go).sum() + s.sum(), leaves)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_segments_carry_state():
    q, k, v, gate, _ = inputs(30)
    o, s = chunked_regla(q, k, v, gate, chunk_size=8)
    o1, s1 = chunked_regla(q[:, :, :11], k[:, :, :11], v[:, :, :11], gate[:, :, :11])
    o2, s2 = chunked_regla(q[:, :, 11:], k[:, :, 11:], v[:, :, 11:], gate[:, :, 11:], s1)
    torch.testing.assert_close(torch.cat([o1, o2], 2), o)
    torch.testing.assert_close(s2, s)


def test_fp32_stable_with_strong_forgetting():
    """Gates at the module's clamp (log F = -64 / C) stay finite and exact in fp32."""
    q, k, v, _, _ = inputs(64, dtype=torch.float32)
    gate = torch.full_like(k, float(torch.exp(torch.tensor(-64.0 / 32))))
    o, _ = chunked_regla(q, k, v, gate, chunk_size=32)
    o_ref, _ = naive_recurrent_regla(q.double(), k.double(), v.double(), gate.double())
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o.double(), o_ref, atol=1e-5, rtol=1e-4)

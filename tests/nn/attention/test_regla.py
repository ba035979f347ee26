"""ReGLAAttention's operator, regla_attention, against its recurrence written out."""

from __future__ import annotations

import math

import pytest
import torch

from brlgraph.nn.attention import regla_attention


def _by_definition(q, k, v, gate, causal):
    """Per head: phi_q(q) = alpha e^(q - max_f q), phi_k(k) = e^(k - M) with M the key max
    (causal: over the prefix up to t); S_t = F_t * S_(t-1) + phi_k(k_t) v_t^T, o_t =
    S_t^T phi_q(q_t); bidirectional: the forward and the backward scan, the token's own
    term counted once."""
    b, h, n, d = q.shape
    alpha = 1.0 / (math.e * math.sqrt(d * (math.e**2 - 1)))
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    for t in range(n):
        fq = alpha * torch.exp(q[:, :, t] - q[:, :, t].amax(-1, keepdim=True))  # [B, H, d]
        keys = range(t + 1) if causal else range(n)
        m = k[:, :, :t + 1].amax((-1, -2)) if causal else k.amax((-1, -2))  # [B, H]
        for j in keys:
            lo, hi = (j + 1, t + 1) if j <= t else (t, j)  # the gates the state passes through
            decay = gate[:, :, lo:hi].prod(-2)  # [B, H, d]
            fk = torch.exp(k[:, :, j] - m[..., None])
            out[:, :, t] += ((fq * decay * fk).sum(-1, keepdim=True)) * v[:, :, j]
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_chunked_operator_equals_the_recurrence(causal, chunk_size):
    g = torch.Generator().manual_seed(0)
    b, h, n, d = 2, 2, 10, 4
    q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=torch.double) for _ in range(3))
    gate = 0.5 + 0.5 * torch.rand(b, h, n, d, generator=g, dtype=torch.double)
    out = regla_attention(q, k, v, gate, causal=causal, chunk_size=chunk_size)
    torch.testing.assert_close(out, _by_definition(q, k, v, gate, causal))

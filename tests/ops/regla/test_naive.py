"""ReGLA's recurrence (brlgraph/ops/regla/naive.py) against its equations written out."""

from __future__ import annotations

import torch

from brlgraph.ops.regla import naive_recurrent_regla


def test_recurrence_by_hand():
    """S_t = diag(F_t) S_{t-1} + k_t v_t^T and o_t = q_t S_t, two steps from a given state."""
    g = torch.Generator().manual_seed(0)
    q, k, gate = (torch.rand(1, 1, 2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    v = torch.randn(1, 1, 2, 2, generator=g, dtype=torch.float64)
    s0 = torch.randn(1, 1, 3, 2, generator=g, dtype=torch.float64)
    o, s = naive_recurrent_regla(q, k, v, gate, s0)
    state = s0[0, 0]
    for t in range(2):
        state = torch.diag(gate[0, 0, t]) @ state + torch.outer(k[0, 0, t], v[0, 0, t])
        torch.testing.assert_close(o[0, 0, t], q[0, 0, t] @ state)
    torch.testing.assert_close(s[0, 0], state)


def test_empty_sequence_keeps_the_state():
    q = k = gate = torch.rand(2, 3, 0, 4)
    v = torch.rand(2, 3, 0, 5)
    s0 = torch.randn(2, 3, 4, 5)
    o, s = naive_recurrent_regla(q, k, v, gate, s0)
    assert o.shape == (2, 3, 0, 5)
    assert torch.equal(s, s0)

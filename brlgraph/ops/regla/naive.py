"""Readable recurrent reference of gated linear attention (ReGLA's recurrence).

    S_t = F_t * S_{t-1} + phi(k_t) v_t^T        o_t = S_t^T phi(q_t)

one token at a time; ``F_t`` gates the key-feature rows of the state.
"""

from __future__ import annotations

import torch
from torch import Tensor


def naive_recurrent_regla(
    q: Tensor, k: Tensor, v: Tensor, gate: Tensor, initial_state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Recurrent form.

    Args:
        q, k: [B, H, N, Dk] feature-mapped (non-negative) queries and keys.
        v: [B, H, N, Dv] values.
        gate: [B, H, N, Dk] forget gate ``F_t`` in (0, 1].
        initial_state: [B, H, Dk, Dv] or ``None`` (zeros).

    Returns:
        ``o`` [B, H, N, Dv] and the final state [B, H, Dk, Dv].
    """
    B, H, N, Dk = k.shape
    S = k.new_zeros(B, H, Dk, v.shape[-1]) if initial_state is None else initial_state
    outs = []
    for t in range(N):
        S = gate[:, :, t, :, None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append((q[:, :, t, None, :] @ S).squeeze(2))
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(B, H, 0, v.shape[-1])
    return o, S

"""Readable dense reference of BRL-Attention (docs: docs/BRL_SPEC.md).

It builds the full n x n token-to-token matrix

    P = (1 - lambda) P_loc + lambda P_r P_w

and multiplies it with the values. Memory is O(n^2): for tests only. The fast path
(:mod:`brlgraph.ops.brl.chunked`) must agree with it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def window_pattern(n: int, window: int, causal: bool, window_mode: str, device=None) -> Tensor:
    """Boolean [n, n] pattern of the local window, ``[i, j]`` = query i may see key j."""
    i = torch.arange(n, device=device)
    rel = i[:, None] - i[None, :]  # query - key
    if window_mode == "sliding":
        return (rel >= 0) & (rel <= window) if causal else rel.abs() <= window
    if window_mode == "block":
        blk = i // window
        dblk = blk[:, None] - blk[None, :]
        if causal:
            return (dblk >= 0) & (dblk <= 1) & (rel >= 0)
        return dblk.abs() <= 1
    raise ValueError(f"window_mode must be 'sliding' or 'block', got {window_mode!r}")


def _softmax(scores: Tensor, allowed: Tensor) -> Tensor:
    """Softmax over the last axis restricted to ``allowed``; rows with nothing allowed are 0."""
    p = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.nan_to_num(p, nan=0.0)


def brl_attention_matrix(
    q: Tensor,
    k: Tensor,
    rq: Tensor | None,
    rk: Tensor | None,
    tau_w: Tensor,
    tau_r: Tensor,
    lam: Tensor,
    window: int,
    causal: bool = False,
    window_mode: str = "sliding",
    block_size: int | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The dense matrix P [B, H, N, N] and (non-causal) the write matrix P_w [B, H, M, N].

    Rows of padded queries are zero; every other row is a probability distribution.
    """
    B, H, N, D = q.shape
    scale = D**-0.5
    valid = torch.ones(B, N, dtype=torch.bool, device=q.device) if mask is None else mask
    key_ok = valid[:, None, None, :]  # [B, 1, 1, N]
    q_ok = valid[:, None, :, None].to(q.dtype)  # [B, 1, N, 1]

    allowed = window_pattern(N, window, causal, window_mode, q.device) & key_ok
    p_loc = _softmax(scale * q @ k.transpose(-1, -2), allowed)
    if rq is None:
        return p_loc * q_ok, None

    tw, tr, lm = (t.to(q.dtype).view(1, H, 1, 1) for t in (tau_w, tau_r, lam))
    s_write = tw * scale * rq @ k.transpose(-1, -2)  # [B, H, M, N]
    p_read = torch.softmax(tr * scale * q @ rk.transpose(-1, -2), dim=-1)  # [B, H, N, M]
    if not causal:
        p_write = _softmax(s_write, key_ok)
        p = (1 - lm) * p_loc + lm * p_read @ p_write
        return p * q_ok, p_write

    # Causal: a token of block kb reads the reservoir written by valid keys j < kb * b.
    b = block_size or window
    pos = torch.arange(N, device=q.device)
    before = pos[None, :] < (pos // b * b)[:, None]  # [N(query), N(key)]
    allowed_w = before[None, None, :, None, :] & key_ok[:, :, :, None, :]  # [B,1,N,1,N]
    p_write = _softmax(s_write[:, :, None], allowed_w)  # [B, H, N, M, N]
    p_glob = torch.einsum("bhic,bhicj->bhij", p_read, p_write)
    has_reservoir = allowed_w.squeeze(3).any(-1, keepdim=True).to(q.dtype)  # [B, 1, N, 1]
    lm = lm * has_reservoir  # an empty reservoir (block 0, no history): y_i = y_loc_i
    p = (1 - lm) * p_loc + lm * p_glob
    return p * q_ok, None


def naive_brl_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rq: Tensor | None = None,
    rk: Tensor | None = None,
    *,
    tau_w: Tensor | float = 1.0,
    tau_r: Tensor | float = 1.0,
    lam: Tensor | float = 0.5,
    window: int,
    causal: bool = False,
    window_mode: str = "sliding",
    block_size: int | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, None]:
    """Dense BRL-Attention: ``y = P v`` and (non-causal) ``u = P_w v``.

    Same arguments and returns as :func:`brlgraph.ops.brl.brl_attention` (without
    streaming history). ``rq is None`` means local attention only.
    """
    H = q.shape[1]

    def per_head(t: Tensor | float) -> Tensor:
        return torch.as_tensor(t, dtype=q.dtype, device=q.device).expand(H)

    p, p_write = brl_attention_matrix(
        q, k, rq, rk, per_head(tau_w), per_head(tau_r), per_head(lam),
        window, causal, window_mode, block_size, mask,
    )
    y = p @ v
    u = None if p_write is None else p_write @ v
    return y, u, None

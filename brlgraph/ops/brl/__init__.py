"""BRL-Attention operator on split heads (spec: docs/BRL_SPEC.md, sections 1-3).

``naive.py`` is the dense reference (builds the n x n matrix P); ``chunked.py`` is the
fast CPU path used everywhere else. :func:`brl_attention` dispatches between them.
"""

from __future__ import annotations

from torch import Tensor

from brlgraph.ops.brl.chunked import BRLHistory, chunked_brl_attention
from brlgraph.ops.brl.naive import brl_attention_matrix, naive_brl_attention

__all__ = [
    "BRLHistory",
    "brl_attention",
    "brl_attention_matrix",
    "chunked_brl_attention",
    "naive_brl_attention",
]


def brl_attention(
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
    hist: BRLHistory | None = None,
    impl: str = "chunked",
) -> tuple[Tensor, Tensor | None, BRLHistory | None]:
    r"""BRL-Attention: local window plus an m-token reservoir, ``y = P v`` with

    .. math::
        P = (1 - \lambda) P_{loc} + \lambda P_r P_w

    Args:
        q, k, v: [B, H, N, Dh] token queries, keys, values.
        rq: [B, H, M, Dh] (or broadcastable) write-hop queries ``r_c``; ``None`` gives
            local attention alone (``lam`` ignored, no reservoir work).
        rk: [B, H, M, Dh] read-hop keys ``kappa_c``.
        tau_w, tau_r, lam: [H] per-head write/read temperatures and reservoir weight.
        window: ``w``. ``window_mode="sliding"``: ``|i - j| <= w`` (causal
            ``0 <= i - j <= w``); ``"block"``: blocks of ``w``, own block and one on each
            side (causal: the block before and its own up to the query).
        causal: causal form; the reservoir of block ``k`` (``block_size``, default
            ``w``) is written from valid keys before ``k * block_size`` only.
        mask: [B, N] bool, True = valid. Padded keys are never attended; outputs at
            padded queries are zero.
        hist: causal streaming state from the previous segment (see
            :class:`BRLHistory`); ``None`` at the start of a stream.
        impl: ``"chunked"`` (fast path) or ``"naive"`` (dense reference, no ``hist``).

    Returns:
        ``y`` [B, H, N, Dh]; ``u`` [B, H, M, Dh] the written reservoir values
        (non-causal with reservoir, else ``None``); the new :class:`BRLHistory`
        (causal, else ``None``).
    """
    if window_mode not in ("sliding", "block"):
        raise ValueError(f"window_mode must be 'sliding' or 'block', got {window_mode!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if (rq is None) != (rk is None):
        raise ValueError("rq and rk must both be given (BRL) or both be None (local only)")
    if hist is not None and not causal:
        raise ValueError("hist (streaming state) is only defined for causal=True")
    kwargs = dict(tau_w=tau_w, tau_r=tau_r, lam=lam, window=window, causal=causal,
                  window_mode=window_mode, block_size=block_size, mask=mask)
    if impl == "naive":
        if hist is not None:
            raise ValueError("the naive reference has no streaming history; use impl='chunked'")
        return naive_brl_attention(q, k, v, rq, rk, **kwargs)
    if impl != "chunked":
        raise ValueError(f"impl must be 'chunked' or 'naive', got {impl!r}")
    return chunked_brl_attention(q, k, v, rq, rk, hist=hist, **kwargs)

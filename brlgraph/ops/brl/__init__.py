"""BRL-Attention operator on split heads (spec: docs/BRL_SPEC.md, sections 1-3).

``naive.py`` is the dense reference (builds the n x n matrix P); ``chunked.py`` is the
linear-memory path for long sequences, causal streaming and other devices;
``fused.py`` is the path for batches of short and medium sequences on the CPU (a C++
kernel built on first use); ``sdpa.py`` does the same on PyTorch's fused
flash-attention kernel, bucket by bucket, where the C++ kernel cannot be built or has
no build for the head size. :func:`brl_attention` dispatches between them
(:func:`select_impl`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from brlgraph.ops.brl.chunked import BRLHistory, chunked_brl_attention
from brlgraph.ops.brl.fused import fused_available, fused_brl_attention, fused_supported
from brlgraph.ops.brl.naive import brl_attention_matrix, naive_brl_attention
from brlgraph.ops.brl.sdpa import sdpa_brl_attention, sdpa_supported

__all__ = [
    "BRLHistory",
    "brl_attention",
    "brl_attention_matrix",
    "chunked_brl_attention",
    "fused_available",
    "fused_brl_attention",
    "naive_brl_attention",
    "sdpa_brl_attention",
    "select_impl",
]

IMPLS = ("auto", "fused", "sdpa", "chunked", "naive")
# Longest sequence sent to the fused or sdpa path by impl="auto" (measured,
# docs/attention.md).
SHORT_MAX_LEN = 1024


def select_impl(q: Tensor, *, causal: bool = False, hist: BRLHistory | None = None) -> str:
    """The implementation ``impl="auto"`` runs: for non-causal sequences of at most
    :data:`SHORT_MAX_LEN` tokens on the CPU ``"fused"`` (head sizes 8, 16, 32, 64, when
    the C++ kernel builds, outside ``torch.compile``) or else ``"sdpa"``; ``"chunked"``
    for everything else. Under ``torch.compile`` the fused kernel, a plain extension
    function, would break the graph, so the traceable ``"sdpa"`` path runs there."""
    if q.shape[-2] <= SHORT_MAX_LEN:
        if (fused_supported(q, causal=causal, hist=hist) and not torch.compiler.is_compiling()
                and fused_available()):
            return "fused"
        if sdpa_supported(q, causal=causal, hist=hist):
            return "sdpa"
    return "chunked"


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
    impl: str = "auto",
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
        impl: ``"auto"`` (:func:`select_impl`), ``"fused"`` (C++ CPU kernel; non-causal
            only), ``"sdpa"`` (CPU flash kernel; non-causal only), ``"chunked"`` (linear
            memory, every case) or ``"naive"`` (dense reference, no ``hist``).

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
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(map(repr, IMPLS))}, got {impl!r}")
    if impl == "auto":
        impl = select_impl(q, causal=causal, hist=hist)
    if impl == "naive":
        if hist is not None:
            raise ValueError("the naive reference has no streaming history; use impl='chunked'")
        return naive_brl_attention(q, k, v, rq, rk, **kwargs)
    if impl == "fused":
        if not fused_supported(q, causal=causal, hist=hist):
            raise ValueError("impl='fused' needs non-causal attention on a CPU tensor with a "
                             "head size of 8, 16, 32 or 64; use impl='sdpa' or 'chunked'")
        del kwargs["causal"], kwargs["block_size"]
        return fused_brl_attention(q, k, v, rq, rk, **kwargs)
    if impl == "sdpa":
        if not sdpa_supported(q, causal=causal, hist=hist):
            raise ValueError("impl='sdpa' needs non-causal attention on a CPU tensor (and a "
                             "PyTorch with the CPU flash-attention kernel); use impl='chunked'")
        del kwargs["causal"], kwargs["block_size"]
        return sdpa_brl_attention(q, k, v, rq, rk, **kwargs)
    return chunked_brl_attention(q, k, v, rq, rk, hist=hist, **kwargs)

"""Performer: softmax attention approximated by FAVOR+ positive random features."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.base import TokenAttention, init_linear
from brlgraph.nn.attention.brl import check_sizes, merge_heads, split_heads
from brlgraph.nn.dropout import Dropout
from brlgraph.ops.regla import chunked_regla


def orthogonal_gaussian(rows: int, cols: int, generator: torch.Generator | None = None) -> Tensor:
    """[rows, cols] random features: blocks of orthonormal rows scaled by Gaussian norms."""
    blocks = []
    for _ in range(math.ceil(rows / cols)):
        g = torch.randn(cols, cols, generator=generator)
        q, _ = torch.linalg.qr(g)
        blocks.append(q.T)
    w = torch.cat(blocks)[:rows]
    norms = torch.randn(rows, cols, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


def favor_features(x: Tensor, projection: Tensor, is_query: bool,
                   mask: Tensor | None = None) -> Tensor:
    """Positive random features ``phi(x)`` [B, H, N, r] of FAVOR+ for x [B, H, N, Dh]."""
    r, d = projection.shape
    x = x * d**-0.25
    proj = x @ projection.T.to(x.dtype)
    proj = proj - 0.5 * x.pow(2).sum(-1, keepdim=True)
    if is_query:
        stab = proj.amax(-1, keepdim=True)
    else:
        valid = proj if mask is None else proj.masked_fill(~mask[:, None, :, None], -math.inf)
        stab = valid.amax((-2, -1), keepdim=True).clamp_min(-1e4)
    phi = (torch.exp(proj - stab.detach()) + 1e-6) / math.sqrt(r)
    if not is_query and mask is not None:
        phi = phi * mask[:, None, :, None].to(phi.dtype)
    return phi


def performer_attention(q: Tensor, k: Tensor, v: Tensor, projection: Tensor,
                        mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """FAVOR+ attention on split heads ([B, H, N, Dh]); ``projection`` [r, Dh]."""
    fq = favor_features(q, projection, True, mask)
    fk = favor_features(k, projection, False, mask)
    if causal:
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        o, _ = chunked_regla(fq, fk, v1, torch.ones_like(fk))
        return o[..., :-1] / o[..., -1:].clamp_min(1e-12)
    kv = fk.transpose(-1, -2) @ v  # [B, H, r, Dh]
    z = fk.sum(-2)  # [B, H, r]
    return (fq @ kv) / (fq @ z[..., None]).clamp_min(1e-12)


class PerformerAttention(TokenAttention):
    r"""FAVOR+ attention (Choromanski et al., 2021).

    .. math::
        \phi(x) = \frac{1}{\sqrt{r}} \exp\!\big(\omega x - \tfrac{\|x\|^2}{2}\big),\quad
        o_i = W_O \Vert_h \frac{\phi(q_i)^\top \sum_j \phi(k_j) v_j^\top}
                                {\phi(q_i)^\top \sum_j \phi(k_j)}

    with ``x`` scaled by ``d_h^{-1/4}`` and ``omega`` [r, d_h] orthogonal Gaussian
    features, shared by the heads. Stabilisers (per-query max; for keys the max over
    the sequence) cancel in the ratio. Padded keys are dropped (``phi(k) = 0``). Causal:
    prefix sums via the chunked linear-attention operator. ``redraw_projection()``
    draws new features; with ``redraw_interval`` they are redrawn every that many
    training forward calls.

    Shapes: x [B, N, dim], mask bool [B, N] (True = valid) -> out [B, N, dim].
    """

    def __init__(self, dim: int, heads: int = 8, num_features: int | None = None,
                 causal: bool = False, redraw_interval: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.head_dim = check_sizes(dim, heads)
        self.num_features = num_features or 2 * self.head_dim
        if self.num_features < 1:
            raise ConfigError(f"num_features={num_features} must be >= 1")
        if redraw_interval is not None and redraw_interval < 1:
            raise ConfigError(f"redraw_interval={redraw_interval} must be >= 1 or None")
        self.dim, self.heads, self.causal = dim, heads, causal
        self.redraw_interval = redraw_interval
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        self.register_buffer("projection", torch.empty(self.num_features, self.head_dim))
        self._calls = 0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear(self.qkv, self.out)
        self.redraw_projection()

    @torch.no_grad()
    def redraw_projection(self) -> None:
        """Draw new random features (from torch's global generator)."""
        w = orthogonal_gaussian(self.num_features, self.head_dim)
        self.projection.copy_(w.to(self.projection))

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if self.training and self.redraw_interval is not None:
            if self._calls % self.redraw_interval == 0 and self._calls > 0:
                self.redraw_projection()
            self._calls += 1
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        y = performer_attention(q, k, v, self.projection, mask, causal=self.causal)
        return self._zero_padded(self.out(self.dropout(merge_heads(y))), mask)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.dim}, heads={self.heads}, "
                f"num_features={self.num_features})")

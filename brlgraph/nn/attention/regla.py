"""ReGLA: gated linear attention with safe-exp features and a refining gate."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.base import TokenAttention, init_linear
from brlgraph.nn.attention.brl import check_sizes, merge_heads, split_heads
from brlgraph.nn.dropout import Dropout
from brlgraph.ops.regla import chunked_regla


def regla_attention(q: Tensor, k: Tensor, v: Tensor, gate: Tensor, mask: Tensor | None = None,
                    causal: bool = False, chunk_size: int = 32) -> Tensor:
    """ReGLA's safe-exp features and gated scan on split heads (before the output norm).

    q, k, gate: [B, H, N, Dk] (gate in (0, 1], ``log gate >= -64 / chunk_size``);
    v: [B, H, N, Dv]; mask [B, N]. Returns [B, H, N, Dv].
    """
    d = q.shape[-1]
    alpha = 1.0 / (math.e * math.sqrt(d * (math.e**2 - 1)))
    fq = alpha * torch.exp(q - q.amax(-1, keepdim=True).detach())
    token_max = k.detach().amax(-1, keepdim=True)  # [B, H, N, 1]
    if mask is not None:
        keep = mask[:, None, :, None]
        token_max = token_max.masked_fill(~keep, -math.inf)
        gate = torch.where(keep, gate, torch.ones_like(gate))
    kmax = token_max.amax(-2, keepdim=True).clamp_min(-1e4)
    fk = torch.exp(k - kmax)
    if mask is not None:
        fk = fk * keep.to(k.dtype)
    o, _ = chunked_regla(fq, fk, v, gate, chunk_size=chunk_size)
    if causal:
        # The max over the sequence would let later keys rescale earlier outputs; the
        # causal form uses the max over the prefix instead (a per-token rescale).
        prefix_max = torch.cummax(token_max, dim=-2).values
        rescale = torch.exp(kmax - prefix_max)
        return o * torch.where(torch.isfinite(prefix_max), rescale, torch.zeros_like(rescale))
    ob, _ = chunked_regla(*(t.flip(2) for t in (fq, fk, v, gate)), chunk_size=chunk_size)
    return o + ob.flip(2) - (fq * fk).sum(-1, keepdim=True) * v


class ReGLAAttention(TokenAttention):
    r"""ReGLA (spec section 5). Per head (``d = d_h``):

    .. math::
        \phi_q(x) = \alpha\, e^{x - \max_f x},\quad
        \phi_k(x) = e^{x - \max_{f, t} x},\quad
        \alpha = \frac{1}{e \sqrt{d (e^2 - 1)}}

        g = \sigma(W_g x),\ r = \sigma(W_r x),\quad
        F = (1 - r) g^2 + r (1 - (1 - g)^2)

        S_t = F_t \odot S_{t-1} + \phi_k(k_t) v_t^\top,\qquad
        o_t = W_O \Vert_h \mathrm{Norm}(S_t^\top \phi_q(q_t))

    ``Norm`` is a LayerNorm over the head's features (the output normalisation layer).
    Training uses the chunked parallel form (:func:`brlgraph.ops.regla.chunked_regla`).

    Choices: ``F`` is clamped below at ``exp(-64 / chunk_size)`` so the chunked form is
    exact in fp32; the key max runs over valid tokens and is a per-head constant that
    the output norm cancels (causal: the max over the prefix up to ``t``, so later
    keys never rescale earlier outputs). Non-causal use (``causal=False``) is bidirectional: a
    forward and a backward scan with the same gates, the token's own term counted
    once. Padded tokens neither write (``phi_k = 0``) nor decay the state (``F = 1``).

    Shapes: x [B, N, dim], mask bool [B, N] (True = valid) -> out [B, N, dim].
    """

    def __init__(self, dim: int, heads: int = 8, causal: bool = False, chunk_size: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        self.head_dim = check_sizes(dim, heads)
        if chunk_size < 1:
            raise ConfigError(f"chunk_size={chunk_size} must be >= 1")
        self.dim, self.heads, self.causal, self.chunk_size = dim, heads, causal, chunk_size
        d = self.head_dim
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.gates = nn.Linear(dim, 2 * dim)  # W_g, W_r
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear(self.qkv, self.gates, self.out)
        self.norm.reset_parameters()

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        g, r = (torch.sigmoid(split_heads(t, self.heads)) for t in self.gates(x).chunk(2, -1))
        gate = (1 - r) * g * g + r * (1 - (1 - g) ** 2)
        gate = gate.clamp_min(math.exp(-64.0 / self.chunk_size))
        o = regla_attention(q, k, v, gate, mask, causal=self.causal, chunk_size=self.chunk_size)
        y = self.norm(o)
        return self._zero_padded(self.out(self.dropout(merge_heads(y))), mask)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim}, heads={self.heads})"

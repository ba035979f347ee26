"""Linformer: keys and values projected along the sequence to ``k`` rows."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.base import TokenAttention, init_linear
from brlgraph.nn.attention.brl import check_sizes, merge_heads, split_heads
from brlgraph.nn.dropout import Dropout


def linformer_attention(q: Tensor, k: Tensor, v: Tensor, proj_k: Tensor, proj_v: Tensor,
                        mask: Tensor | None = None) -> Tensor:
    """Linformer on split heads ([B, H, N, Dh]); ``proj_k, proj_v`` [k, N]."""
    if mask is not None:
        keep = mask[:, None, :, None].to(k.dtype)
        k, v = k * keep, v * keep
    k = proj_k.to(k.dtype) @ k  # [B, H, k, Dh]
    v = proj_v.to(v.dtype) @ v
    return torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1) @ v


class LinformerAttention(TokenAttention):
    r"""Linformer (Wang et al., 2020):

    .. math::
        o_i = W_O \Vert_h \mathrm{softmax}\big(s\, q_i (E K)^\top\big) (F V)

    with learned ``E, F`` [k, max_len] (shared by the heads) applied to the first ``N``
    positions, so any ``N <= max_len`` works. Padded tokens' keys and values are zeroed
    before the projection, so their content never reaches a valid output. The paper
    uses ``k`` in {64, 128, 256}. Non-causal only: the sequence projection mixes all
    positions.

    ``E, F`` are stored at unit scale and their first ``N`` columns multiplied by
    ``N ** -0.5`` when used (the projection's fan-in; an equalised learning rate, as in
    Karras et al., 2018): at initialisation a projected row has the scale of a token at
    every ``N``, and an Adam step, which moves every stored entry by about the learning
    rate, moves a projected row by about ``lr * N ** 0.5`` times a token instead of
    ``lr * N``. With the entries used directly, the projections of the
    tokens' common component grew by thousands within a few steps on 20News's one
    sequence of 9,607 tokens (Adam at 0.01) and the model stayed at chance
    (docs/oversquashing.md, section 4).

    Shapes: x [B, N, dim], mask bool [B, N] (True = valid) -> out [B, N, dim].
    """

    def __init__(self, dim: int, heads: int = 8, proj_dim: int = 128, max_len: int = 4096,
                 causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.head_dim = check_sizes(dim, heads)
        if causal:
            raise ConfigError("causal=True is not supported by 'linformer' (its sequence "
                              "projection mixes all positions); use brl, local or regla")
        if proj_dim < 1 or max_len < 1:
            raise ConfigError(f"proj_dim={proj_dim} and max_len={max_len} must be >= 1")
        self.dim, self.heads, self.proj_dim, self.max_len = dim, heads, proj_dim, max_len
        self.causal = False
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        # stored at unit scale, used times N ** -0.5 (see the class docstring)
        self.proj_k = nn.Parameter(torch.empty(proj_dim, max_len))
        self.proj_v = nn.Parameter(torch.empty(proj_dim, max_len))
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear(self.qkv, self.out)
        for p in (self.proj_k, self.proj_v):
            nn.init.normal_(p)

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        n = x.shape[1]
        if n > self.max_len:
            raise ConfigError(f"sequence length {n} exceeds linformer max_len={self.max_len}; "
                              "raise the max_len option")
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        c = n**-0.5
        y = linformer_attention(q, k, v, c * self.proj_k[:, :n], c * self.proj_v[:, :n], mask)
        return self._zero_padded(self.out(self.dropout(merge_heads(y))), mask)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.dim}, heads={self.heads}, "
                f"proj_dim={self.proj_dim}, max_len={self.max_len})")

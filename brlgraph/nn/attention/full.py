"""Full softmax attention through ``scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brlgraph.nn.attention.base import TokenAttention, init_linear
from brlgraph.nn.attention.brl import check_sizes, merge_heads, split_heads


def full_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                   causal: bool = False, dropout_p: float = 0.0) -> Tensor:
    """Softmax attention on split heads ([B, H, N, Dh]) over valid keys (mask [B, N])."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    # A sequence with no valid token may see everything: its outputs are zeroed by the
    # caller, and no softmax row is empty (no NaN).
    keys = mask | ~mask.any(-1, keepdim=True)
    attn_mask = keys[:, None, None, :]
    if causal:
        n = q.shape[2]
        eye = torch.eye(n, dtype=torch.bool, device=q.device)
        tril = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        attn_mask = (attn_mask & tril) | eye  # a padded query always sees itself
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


class FullAttention(TokenAttention):
    r"""Multi-head softmax attention over all valid tokens:

    .. math::
        o_i = W_O \Vert_h \sum_{j\ \mathrm{valid}} \mathrm{softmax}_j(s\, q_i \cdot k_j)\, v_j

    Without a mask it runs PyTorch's fused SDPA kernels (no n x n tensor on the
    flash/efficient paths); a key-padding mask is broadcast ([B, 1, 1, N]), and only the
    causal form with a mask builds an [N, N] boolean mask.

    Shapes: x [B, N, dim], mask bool [B, N] (True = valid) -> out [B, N, dim].
    """

    def __init__(self, dim: int, heads: int = 8, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.head_dim = check_sizes(dim, heads)
        self.dim, self.heads, self.causal, self.p_drop = dim, heads, causal, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear(self.qkv, self.out)

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        p = self.p_drop if self.training else 0.0
        y = full_attention(q, k, v, mask, causal=self.causal, dropout_p=p)
        return self._zero_padded(self.out(merge_heads(y)), mask)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim}, heads={self.heads})"

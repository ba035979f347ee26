"""Local window attention alone: BRL-Attention with reservoir weight 0, no reservoir work."""

from __future__ import annotations

from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.base import TokenAttention, init_linear
from brlgraph.nn.attention.brl import check_sizes, merge_heads, split_heads
from brlgraph.nn.dropout import Dropout
from brlgraph.ops.brl import brl_attention


class LocalWindowAttention(TokenAttention):
    r"""Softmax attention restricted to the window ``W(i)`` of BRL-Attention:

    .. math::
        o_i = W_O \Vert_h \sum_{j \in W(i)} \mathrm{softmax}_j(s\, q_i \cdot k_j)\, v_j

    Equal to :class:`BRLAttention` with ``reservoir_weight=0`` (fixed), but the
    operator skips the write and read hops entirely.

    Shapes: x [B, N, dim], mask bool [B, N] (True = valid) -> out [B, N, dim].
    """

    def __init__(self, dim: int, heads: int = 8, window: int = 128, causal: bool = False,
                 window_mode: str = "sliding", dropout: float = 0.0):
        super().__init__()
        self.head_dim = check_sizes(dim, heads)
        if window < 1:
            raise ConfigError(f"model.window (window=) must be >= 1, got {window}")
        if window_mode not in ("sliding", "block"):
            raise ConfigError(f"window_mode={window_mode!r} must be 'sliding' or 'block'")
        self.dim, self.heads, self.window = dim, heads, window
        self.causal, self.window_mode = causal, window_mode
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear(self.qkv, self.out)

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        y, _, _ = brl_attention(q, k, v, window=self.window, causal=self.causal,
                                window_mode=self.window_mode, mask=mask)
        return self._zero_padded(self.out(self.dropout(merge_heads(y))), mask)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim}, heads={self.heads}, window={self.window})"

"""BRL-Attention layer: projections around :func:`brlgraph.ops.brl.brl_attention`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.base import init_linear
from brlgraph.nn.dropout import Dropout
from brlgraph.ops.brl import BRLHistory, brl_attention


def split_heads(x: Tensor, heads: int) -> Tensor:
    """[B, N, H * Dh] -> [B, H, N, Dh]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """[B, H, N, Dh] -> [B, N, H * Dh]."""
    return x.transpose(1, 2).flatten(2)


def check_sizes(dim: int, heads: int) -> int:
    """Head size ``dim // heads``; a :class:`ConfigError` when it does not divide."""
    if heads < 1 or dim < 1 or dim % heads:
        raise ConfigError(f"model.hidden_channels (dim={dim}) must be a positive multiple of "
                          f"model.heads (heads={heads})")
    return dim // heads


class BRLAttention(nn.Module):
    r"""BRL-Attention (Bottleneck Regularized Linear Attention), dense-batch form.

    Tokens ``X`` [B, N, dim] attend to a local window and to ``m`` compressed tokens,
    the reservoir ``C`` [B, m, d_c]. Per head ``h`` (``d_h = dim / heads``,
    ``s = 1 / sqrt(d_h)``):

    .. math::
        q_i = W_Q x_i,\quad k_j = W_K x_j,\quad v_j = W_V x_j,\quad
        r_c = W_R c_c,\quad \kappa_c = W_{Kc} c_c

        \tau_w = e^{g_Q g_{K1}},\quad \tau_r = e^{g_Q g_{K2}},\quad
        \lambda = \sigma(\theta)

        y^{loc}_i = \sum_{j \in W(i)} \mathrm{softmax}_j(s\, q_i \cdot k_j)\, v_j

        u_c = \sum_j \mathrm{softmax}_j(\tau_w s\, r_c \cdot k_j)\, v_j,\qquad
        y^{glob}_i = \sum_c \mathrm{softmax}_c(\tau_r s\, q_i \cdot \kappa_c)\, u_c

        o_i = W_O\, \Vert_h \big[(1 - \lambda) y^{loc}_i + \lambda y^{glob}_i\big],
        \qquad C' = C + W_{Oc} \Vert_h u

    i.e. the token-to-token matrix is :math:`(1-\lambda) P_{loc} + \lambda P_r P_w`,
    a local pattern plus a rank-``m`` term. ``W(i)`` is ``|i - j| <= w``
    (``window_mode="sliding"``) or the own block of ``w`` tokens and one block on each
    side (``"block"``, the paper's look-around pattern).

    Causal (``causal=True``): ``W(i)`` only looks back; a token of block ``k``
    (``block_size``, default ``w``) reads a reservoir written from keys of earlier
    blocks only, and ``C`` is not updated from the sequence (``C' = C``), so no
    future token reaches a past one. Long streams: :meth:`forward_stream`.

    Args:
        dim: model width (``heads * d_h``).
        heads: number of heads.
        window: ``w``.
        reservoir_size: ``m``, reservoir tokens.
        causal: causal form.
        window_mode: ``"sliding"`` (default) or ``"block"``.
        reservoir_weight: ``lambda_0`` in (0, 1) when learned; ``lambda = sigmoid(theta)``
            with ``theta`` initialised to ``logit(lambda_0)``. Fixed (not learned) when
            ``learn_reservoir_weight=False``; then 0 and 1 are allowed.
        learn_reservoir_weight: learn ``theta`` per head.
        reservoir_dim: ``d_c``, width of the reservoir stream (default ``dim``).
        dropout: dropout on the mixed head outputs before ``W_O`` (the fused operator
            never forms the attention probabilities, so there is no dropout on them).
        block_size: causal reservoir block ``b`` (default ``w``).

    Shapes:
        - x: [B, N, dim]; mask: bool [B, N], True = valid (optional);
          reservoir: [B, m, d_c] (optional; ``None`` starts from the learned embedding
          ``E`` [m, d_c], the paper's ``x[ct]``).
        - returns ``out`` [B, N, dim] (zero at padded tokens) and the reservoir
          [B, m, d_c].

    Choices where the spec leaves one: projections have no bias except ``W_O`` and
    ``W_Oc``; temperatures ``g_Q, g_K1, g_K2 ~ N(0, 0.1)``; padded queries output zero.
    """

    uses_reservoir = True

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        window: int = 128,
        reservoir_size: int = 64,
        causal: bool = False,
        window_mode: str = "sliding",
        reservoir_weight: float = 0.5,
        learn_reservoir_weight: bool = True,
        reservoir_dim: int | None = None,
        dropout: float = 0.0,
        block_size: int | None = None,
    ):
        super().__init__()
        self.head_dim = check_sizes(dim, heads)
        if window < 1:
            raise ConfigError(f"model.window (window=) must be >= 1, got {window}")
        if reservoir_size < 1:
            raise ConfigError(f"model.reservoir_size (reservoir_size=) must be >= 1, got {reservoir_size}")
        if window_mode not in ("sliding", "block"):
            raise ConfigError(f"window_mode={window_mode!r} must be 'sliding' or 'block'")
        lo_ok = 0.0 < reservoir_weight < 1.0
        if not (lo_ok or (not learn_reservoir_weight and 0.0 <= reservoir_weight <= 1.0)):
            raise ConfigError(
                f"reservoir_weight={reservoir_weight} must be in (0, 1) when learned "
                "(or in [0, 1] with learn_reservoir_weight=False)")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout (dropout=) must be in [0, 1), got {dropout}")
        self.dim, self.heads, self.window = dim, heads, window
        self.reservoir_size = reservoir_size
        self.reservoir_dim = reservoir_dim or dim
        self.causal, self.window_mode, self.block_size = causal, window_mode, block_size
        self.reservoir_weight = reservoir_weight
        self.learn_reservoir_weight = learn_reservoir_weight

        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.reservoir_qk = nn.Linear(self.reservoir_dim, 2 * dim, bias=False)  # W_R, W_Kc
        self.out = nn.Linear(dim, dim)  # W_O
        self.reservoir_out = nn.Linear(dim, self.reservoir_dim)  # W_Oc
        self.embedding = nn.Embedding(reservoir_size, self.reservoir_dim)  # E
        self.g_q = nn.Parameter(torch.empty(heads))
        self.g_k1 = nn.Parameter(torch.empty(heads))
        self.g_k2 = nn.Parameter(torch.empty(heads))
        if learn_reservoir_weight:
            self.theta = nn.Parameter(torch.empty(heads))
        else:
            self.register_buffer("fixed_lambda", torch.empty(heads))
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear(self.qkv, self.reservoir_qk, self.out, self.reservoir_out)
        self.embedding.reset_parameters()
        for g in (self.g_q, self.g_k1, self.g_k2):
            nn.init.normal_(g, 0.0, 0.1)
        with torch.no_grad():
            if self.learn_reservoir_weight:
                lam0 = self.reservoir_weight
                self.theta.fill_(math.log(lam0 / (1.0 - lam0)))
            else:
                self.fixed_lambda.fill_(self.reservoir_weight)

    # Per-head scalars of the spec.
    def temperatures(self) -> tuple[Tensor, Tensor]:
        """``(tau_w, tau_r)`` [H]: ``exp(gQ gK1)``, ``exp(gQ gK2)``."""
        return torch.exp(self.g_q * self.g_k1), torch.exp(self.g_q * self.g_k2)

    def lam(self) -> Tensor:
        """Reservoir weight ``lambda`` [H]."""
        return torch.sigmoid(self.theta) if self.learn_reservoir_weight else self.fixed_lambda

    def initial_reservoir(self, batch_size: int) -> Tensor:
        """The learned embedding ``E`` expanded to [B, m, d_c]."""
        return self.embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def _project(self, x: Tensor, reservoir: Tensor | None):
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        if reservoir is None:
            reservoir = self.initial_reservoir(x.shape[0])
        rq, rk = (split_heads(t, self.heads) for t in self.reservoir_qk(reservoir).chunk(2, -1))
        return q, k, v, rq, rk, reservoir

    def _run(self, x: Tensor, mask: Tensor | None, reservoir: Tensor | None,
             hist: BRLHistory | None):
        q, k, v, rq, rk, reservoir = self._project(x, reservoir)
        tau_w, tau_r = self.temperatures()
        y, u, hist = brl_attention(
            q, k, v, rq, rk, tau_w=tau_w, tau_r=tau_r, lam=self.lam(), window=self.window,
            causal=self.causal, window_mode=self.window_mode, block_size=self.block_size,
            mask=mask, hist=hist)
        out = self.out(self.dropout(merge_heads(y)))
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        update = None if u is None else self.reservoir_out(merge_heads(u))
        return out, update, reservoir, hist

    def attend(self, x: Tensor, mask: Tensor | None = None,
               reservoir: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Like :meth:`forward`, but returns the reservoir update ``W_Oc ||_h u`` alone
        (``None`` when causal), for pre-norm blocks that add it to their own stream."""
        out, update, _, _ = self._run(x, mask, reservoir, None)
        return out, update

    def forward(self, x: Tensor, mask: Tensor | None = None,
                reservoir: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out, update, reservoir, _ = self._run(x, mask, reservoir, None)
        return out, reservoir if update is None else reservoir + update

    def forward_stream(
        self, x: Tensor, mask: Tensor | None = None, reservoir: Tensor | None = None,
        hist: BRLHistory | None = None,
    ) -> tuple[Tensor, BRLHistory]:
        """Causal streaming: feed a long sequence in segments.

        Pass the returned :class:`~brlgraph.ops.brl.BRLHistory` with the next segment
        (``None`` for the first); the outputs equal those of one call on the whole
        stream. ``hist`` holds the running write-hop softmax of the finished reservoir
        blocks and the last keys/values the window and the open block still need; it is
        carried without gradient. The reservoir ``C`` must be the same for all segments.
        """
        if not self.causal:
            raise ConfigError("forward_stream needs causal=True (non-causal attention "
                              "sees the whole sequence at once)")
        out, _, _, hist = self._run(x, mask, reservoir, hist)
        return out, hist

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={v!r}" for k, v, d in (
                ("causal", self.causal, False), ("window_mode", self.window_mode, "sliding"))
            if v != d)
        return (f"{self.__class__.__name__}({self.dim}, heads={self.heads}, "
                f"window={self.window}, reservoir_size={self.reservoir_size}{extra})")

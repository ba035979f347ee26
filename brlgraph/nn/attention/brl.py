"""BRL-Attention layer: projections around :func:`brlgraph.ops.brl.brl_attention`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.nn.attention.base import batched, check_mask, init_linear, unbatched
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
        reservoir_update: keep ``W_Oc`` and return the update ``C' - C``. ``False``
            for models that read no reservoir after this layer (e.g.
            :class:`~brlgraph.nn.BRLConv`): ``W_Oc`` is not created, so no parameter
            goes without a gradient (plain ``DistributedDataParallel``), and the
            reservoir is returned unchanged.
        write_scale_length: ``n_0`` (non-causal, default ``None``: off). A sequence of
            ``n > n_0`` valid tokens has its write temperature multiplied by
            ``log n / log n_0``; shorter ones are unchanged. The write hop is a softmax
            over all n keys, so a score gap learned at ``n_0`` tokens gives the chosen
            key a share that falls as n grows; this keeps its share at longer lengths.
            Set it to the training length to evaluate a model on longer sequences
            (no parameter; an attribute, so it can be set on a trained model:
            docs/oversquashing.md, long-range retrieval).

    Shapes:
        - x: [B, N, dim], or unbatched [N, dim] (then mask [N], reservoir [m, d_c], and
          the outputs are unbatched too);
        - mask: bool [B, N], **True = valid token** (optional). This is the opposite of
          ``torch.nn.MultiheadAttention``'s ``key_padding_mask`` (True = padded): pass
          ``~key_padding_mask``. Int and float masks are refused with a ``TypeError``
          (a 0/1 mask could be in either convention);
        - reservoir: [B, m, d_c] (optional; ``None`` starts from the learned embedding
          ``E`` [m, d_c], the paper's ``x[ct]``);
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
        reservoir_update: bool = True,
        write_scale_length: int | None = None,
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
        if write_scale_length is not None and (causal or write_scale_length < 2):
            raise ConfigError(f"write_scale_length={write_scale_length} needs causal=False and "
                              "a length >= 2 (the training length), or None")
        self.write_scale_length = write_scale_length
        self.dim, self.heads, self.window = dim, heads, window
        self.reservoir_size = reservoir_size
        self.reservoir_dim = reservoir_dim or dim
        self.causal, self.window_mode, self.block_size = causal, window_mode, block_size
        self.reservoir_weight = reservoir_weight
        self.learn_reservoir_weight = learn_reservoir_weight
        self.reservoir_update = reservoir_update

        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.reservoir_qk = nn.Linear(self.reservoir_dim, 2 * dim, bias=False)  # W_R, W_Kc
        self.out = nn.Linear(dim, dim)  # W_O
        # W_Oc; created after W_O and before E in either case, so that the default
        # draws the random numbers it always drew
        self.reservoir_out = nn.Linear(dim, self.reservoir_dim) if reservoir_update else None
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
        init_linear(self.qkv, self.reservoir_qk, self.out,
                    *([self.reservoir_out] if self.reservoir_out is not None else []))
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

    def write_scale(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        """Per sequence [B], ``max(1, log n / log n_0)`` for n valid tokens
        (``write_scale_length``); ``None`` when the option is off."""
        if self.write_scale_length is None:
            return None
        n = (torch.full(x.shape[:1], x.shape[1], device=x.device) if mask is None
             else mask.sum(1)).to(x.dtype)
        return (n.clamp(min=1).log() / math.log(self.write_scale_length)).clamp(min=1.0)

    def initial_reservoir(self, batch_size: int) -> Tensor:
        """The learned embedding ``E`` expanded to [B, m, d_c]."""
        return self.embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def _project(self, x: Tensor, reservoir: Tensor | None):
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        if reservoir is None:
            # every sequence starts from the same E: project it once, not once per
            # sequence, and pass it with a batch axis of 1 (the operator broadcasts it),
            # so that the temperatures multiply m rows, not B m, in both directions
            reservoir = self.initial_reservoir(x.shape[0])
            shared = self.reservoir_qk(self.embedding.weight.unsqueeze(0)).chunk(2, -1)
            rq, rk = (split_heads(t, self.heads) for t in shared)
        else:
            rq, rk = (split_heads(t, self.heads) for t in self.reservoir_qk(reservoir).chunk(2, -1))
        return q, k, v, rq, rk, reservoir

    def _run(self, x: Tensor, mask: Tensor | None, reservoir: Tensor | None,
             hist: BRLHistory | None):
        q, k, v, rq, rk, reservoir = self._project(x, reservoir)
        alpha = self.write_scale(x, mask)
        if alpha is not None:  # the write queries carry the temperature: scale them
            rq = rq * alpha.view(-1, 1, 1, 1)
        tau_w, tau_r = self.temperatures()
        y, u, hist = brl_attention(
            q, k, v, rq, rk, tau_w=tau_w, tau_r=tau_r, lam=self.lam(), window=self.window,
            causal=self.causal, window_mode=self.window_mode, block_size=self.block_size,
            mask=mask, hist=hist)
        out = self.out(self.dropout(merge_heads(y)))
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        update = (None if u is None or self.reservoir_out is None
                  else self.reservoir_out(merge_heads(u)))
        return out, update, reservoir, hist

    def attend(self, x: Tensor, mask: Tensor | None = None,
               reservoir: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Like :meth:`forward`, but returns the reservoir update ``W_Oc ||_h u`` alone
        (``None`` when causal or built with ``reservoir_update=False``), for pre-norm
        blocks that add it to their own stream."""
        x, mask, reservoir, squeeze = batched(x, mask, reservoir)
        out, update, _, _ = self._run(x, mask, reservoir, None)
        return unbatched(out, squeeze), unbatched(update, squeeze)

    def forward(self, x: Tensor, mask: Tensor | None = None,
                reservoir: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, mask, reservoir, squeeze = batched(x, mask, reservoir)
        out, update, reservoir, _ = self._run(x, mask, reservoir, None)
        reservoir = reservoir if update is None else reservoir + update
        return unbatched(out, squeeze), unbatched(reservoir, squeeze)

    def attend_first(self, x: Tensor, mask: Tensor | None = None,
                     reservoir: Tensor | None = None, index: Tensor | None = None) -> Tensor:
        r"""The output of the first token alone, ``attend(x, mask, reservoir)[0][:, 0]``
        ([B, dim]; unbatched x: [dim]), for models that read out token 0.

        Only the query of token 0 is formed: its window is keys ``0..w`` (block mode:
        the first two blocks, ``0..2w-1``), the write hop reads every valid key, so the
        cost is ``O(N m d)`` instead of ``O(N (w + m) d)``. Non-causal only.

        With ``index`` (LongTensor [B, N]), ``x`` is a table [R, dim] of distinct token
        rows and the tokens are ``x[index]`` (padded tokens may point anywhere): the
        projections then run over the R rows, not over the B N tokens, which pays when
        sequences share tokens (node states gathered into many node sequences).
        """
        if self.causal:
            raise ConfigError("attend_first is for non-causal attention (causal token 0 "
                              "sees only itself)")
        if index is None:
            x, mask, reservoir, squeeze = batched(x, mask, reservoir)
            tokens, first = x, x[:, 0]
        else:
            if x.dim() != 2 or index.dim() != 2 or index.dtype != torch.long:
                raise ValueError("with index, x must be a table [R, dim] and index a "
                                 f"LongTensor [B, N]; got {list(x.shape)} and "
                                 f"{list(index.shape)} {index.dtype}")
            check_mask(index.unsqueeze(-1), mask)
            squeeze = False
            tokens, first = x[index], x[index[:, 0]]
        B, N, d = tokens.shape
        H, Dh = self.heads, self.head_dim
        span = min(N, self.window + 1 if self.window_mode == "sliding" else 2 * self.window)
        w_q, w_k, w_v = self.qkv.weight.view(3, H, Dh, d).unbind(0)  # [H, Dh, d] each
        tau_w, tau_r = self.temperatures()
        lam = self.lam().to(x.dtype)
        scale = Dh ** -0.5
        alpha = self.write_scale(tokens, mask)
        # padded keys get the lowest finite score: a sequence with no valid key stays
        # finite (its output is zeroed below) instead of turning into NaN
        low = torch.finfo(x.dtype).min
        # Row 0 of P = (1 - lam) P_loc + lam P_r P_w as weights over the N tokens. The
        # key and value projections are folded into the small matrices they meet, so
        # the N tokens see two matrix products with x itself and no [B, N, H, Dh] keys
        # or values are formed.
        q = torch.einsum("bd,hed->bhe", first, w_q)  # [B, H, Dh]
        write_masked = False
        if reservoir is None:  # E is shared by the batch: one [d, H m] write matrix
            rq, rk = self.reservoir_qk(self.embedding.weight).view(-1, 2, H, Dh).unbind(1)
            write = torch.einsum("hed,mhe->dhm", w_k, rq * (tau_w * scale)[:, None]).flatten(1)
            if index is None:
                s_write = tokens @ write
            else:  # scores of the table's rows, gathered; padding reads an all-low row
                table = torch.cat([x @ write, x.new_full((1, write.shape[1]), low)])
                rows = index if mask is None else torch.where(mask, index, x.shape[0])
                s_write, write_masked = table[rows], True
            s_write = s_write.view(B, N, H, -1)  # [B, N, H, m]
            s_read = torch.einsum("bhe,mhe->bhm", q, rk)
        else:
            rq, rk = self.reservoir_qk(reservoir).view(B, -1, 2, H, Dh).unbind(2)
            write = torch.einsum("hed,bmhe->bdhm", w_k, rq * (tau_w * scale)[:, None])
            s_write = (tokens @ write.flatten(2)).view(B, N, H, -1)
            s_read = torch.einsum("bhe,bmhe->bhm", q, rk)
        qk = torch.einsum("bhe,hed->bdh", q, w_k) * scale  # [B, d, H]
        s_loc = (x[:, :span] if index is None else x[index[:, :span]]) @ qk  # [B, span, H]
        if mask is not None:
            s_loc = s_loc.masked_fill(~mask[:, :span, None], low)
            if not write_masked:
                s_write = s_write.masked_fill(~mask[:, :, None, None], low)
        if alpha is not None:  # padded keys stay at the lowest finite score
            s_write = (s_write * alpha.view(-1, 1, 1, 1)).clamp(min=low)
        p_read = torch.softmax(s_read * (tau_r * scale)[:, None], -1)  # [B, H, m]
        weight = lam * (torch.softmax(s_write, 1) * p_read.unsqueeze(1)).sum(-1)  # [B, N, H]
        weight = torch.cat([weight[:, :span] + (1 - lam) * torch.softmax(s_loc, 1),
                            weight[:, span:]], 1)
        pooled = weight.transpose(1, 2) @ tokens  # [B, H, d]: the weighted tokens per head
        y = torch.einsum("bhd,hed->bhe", pooled, w_v)  # W_V after the weighted sum
        out = self.out(self.dropout(y.flatten(1)))
        if mask is not None:
            out = out * mask[:, :1].to(out.dtype)
        return unbatched(out, squeeze)

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
        x, mask, reservoir, squeeze = batched(x, mask, reservoir)
        if squeeze:
            raise ValueError("forward_stream needs batched x [B, N, dim]; its history "
                             "is kept per sequence of a batch")
        out, _, _, hist = self._run(x, mask, reservoir, hist)
        return out, hist

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={v!r}" for k, v, d in (
                ("causal", self.causal, False), ("window_mode", self.window_mode, "sliding"),
                ("reservoir_update", self.reservoir_update, True),
                ("write_scale_length", self.write_scale_length, None))
            if v != d)
        return (f"{self.__class__.__name__}({self.dim}, heads={self.heads}, "
                f"window={self.window}, reservoir_size={self.reservoir_size}{extra})")

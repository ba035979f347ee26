"""Shared plumbing of the attention modules: initialisation, input checks, baselines."""

from __future__ import annotations

import torch
from torch import Tensor, nn

MASK_CONVENTION = (
    "a boolean key-padding mask with True = valid token (torch.nn.MultiheadAttention's "
    "key_padding_mask is the opposite, True = padded: pass ~key_padding_mask)")


def init_linear(*layers: nn.Linear) -> None:
    """Xavier-uniform weights and zero biases: the initialisation of every projection."""
    for lin in layers:
        nn.init.xavier_uniform_(lin.weight)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)


def check_mask(x: Tensor, mask: Tensor | None) -> None:
    """Refuse a mask that is not bool [B, N] (or [N] for unbatched ``x`` [N, dim]).

    An int or float mask is refused rather than cast: 0/1 masks come in both
    conventions, and an inverted one would run without an error.
    """
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"mask must be {MASK_CONVENTION}; got {got}")
    if tuple(mask.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"mask must have shape {list(x.shape[:-1])} (the tokens of x "
                         f"{list(x.shape)}), got {list(mask.shape)}")


def batched(x: Tensor, mask: Tensor | None, reservoir: Tensor | None
            ) -> tuple[Tensor, Tensor | None, Tensor | None, bool]:
    """Check the inputs and give unbatched ones (x [N, dim], mask [N], reservoir
    [m, d_c]) a batch axis of 1; the last value says whether one was added."""
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be [batch, tokens, dim] or unbatched [tokens, dim], "
                         f"got shape {list(x.shape)}")
    check_mask(x, mask)
    if x.dim() == 3:
        return x, mask, reservoir, False
    if reservoir is not None and reservoir.dim() != 2:
        raise ValueError(f"with unbatched x [tokens, dim] the reservoir must be [m, d_c], "
                         f"got shape {list(reservoir.shape)}")
    return (x.unsqueeze(0), None if mask is None else mask.unsqueeze(0),
            None if reservoir is None else reservoir.unsqueeze(0), True)


def unbatched(t: Tensor | None, squeeze: bool) -> Tensor | None:
    """Drop the batch axis that :func:`batched` added."""
    return t.squeeze(0) if squeeze and t is not None else t


class TokenAttention(nn.Module):
    """Base of the baselines: subclasses implement ``_attend(x, mask) -> out``.

    They share BRL-Attention's signature; the reservoir is passed through untouched and
    the update returned by :meth:`attend` is ``None``. Unbatched ``x`` [N, dim] (mask
    [N]) is taken as a batch of one and returned unbatched.
    """

    uses_reservoir = False

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def attend(self, x: Tensor, mask: Tensor | None = None,
               reservoir: Tensor | None = None) -> tuple[Tensor, None]:
        xb, mb, _, squeeze = batched(x, mask, None)
        return unbatched(self._attend(xb, mb), squeeze), None

    def forward(self, x: Tensor, mask: Tensor | None = None,
                reservoir: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return self.attend(x, mask)[0], reservoir

    @staticmethod
    def _zero_padded(out: Tensor, mask: Tensor | None) -> Tensor:
        return out if mask is None else out * mask[..., None].to(out.dtype)

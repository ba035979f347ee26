"""Shared plumbing of the attention baselines (modules without a reservoir)."""

from __future__ import annotations

from torch import Tensor, nn


def init_linear(*layers: nn.Linear) -> None:
    """Xavier-uniform weights and zero biases: the initialisation of every projection."""
    for lin in layers:
        nn.init.xavier_uniform_(lin.weight)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)


class TokenAttention(nn.Module):
    """Base of the baselines: subclasses implement ``_attend(x, mask) -> out``.

    They share BRL-Attention's signature; the reservoir is passed through untouched and
    the update returned by :meth:`attend` is ``None``.
    """

    uses_reservoir = False

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def attend(self, x: Tensor, mask: Tensor | None = None,
               reservoir: Tensor | None = None) -> tuple[Tensor, None]:
        return self._attend(x, mask), None

    def forward(self, x: Tensor, mask: Tensor | None = None,
                reservoir: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return self._attend(x, mask), reservoir

    @staticmethod
    def _zero_padded(out: Tensor, mask: Tensor | None) -> Tensor:
        return out if mask is None else out * mask[..., None].to(out.dtype)

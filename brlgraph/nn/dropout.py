"""Dropout whose CPU mask costs a quarter of torch's.

``torch.nn.functional.dropout`` draws its CPU mask with ``bernoulli_``; on this
project's 2-core CPU that took 3-5x as long as ``torch.rand_like(x) >= p`` for
the same tensor (see ``benchmarks/dropout.py``), and dropout was the largest
single cost of an HGB training step after the matrix products. :func:`dropout`
draws the mask that second way on the CPU: each element is kept with probability
``1 - p`` independently and scaled by ``1 / (1 - p)``, which is the definition
``F.dropout`` implements, with other random numbers. On other devices (CUDA's
fused kernel is already fast) and for ``p`` of 0 or 1 it is ``F.dropout`` itself.

The backward pass keeps the boolean mask (one byte per element, as ``F.dropout``
does) and multiplies the incoming gradient by ``mask / (1 - p)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale`` with only the boolean ``keep`` saved for the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None, None


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by
    ``1 / (1 - p)`` (identity when not ``training`` or ``p`` = 0).

    On the CPU the mask is ``torch.rand_like(x) >= p``, drawn from torch's global
    generator (so ``torch.manual_seed`` makes it repeatable); elsewhere, and for
    ``p`` = 1, this is ``torch.nn.functional.dropout``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p == 1.0 or not x.is_floating_point():
        return nn.functional.dropout(x, p, training)
    keep = torch.rand_like(x) >= p
    return _MaskedScale.apply(x, keep, 1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the CPU mask of :func:`dropout` (same arguments and state)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:  # the in-place variant is not used in brlgraph; keep torch's
            return super().forward(x)
        return dropout(x, self.p, self.training)

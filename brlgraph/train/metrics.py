"""Classification metrics: Micro-/Macro-F1 (HGB protocol) and accuracy (kNN graphs).

Single-label tasks predict the arg-max class; multi-label tasks (HGB IMDB)
predict every class whose sigmoid is above 0.5, as HGB's own evaluation does.
F1 scores come from scikit-learn so that they match published numbers.
"""

from __future__ import annotations

import math

import torch
from sklearn.metrics import f1_score


def predict_labels(logits: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Hard predictions: class index [N] (single-label) or 0/1 matrix [N, C] (multi-label)."""
    if multi_label:
        return (torch.sigmoid(logits) > 0.5).long()
    return logits.argmax(dim=-1)


def f1_scores(pred: torch.Tensor, target: torch.Tensor, multi_label: bool = False) -> dict[str, float]:
    """Micro- and Macro-F1 of hard predictions (see :func:`predict_labels`)."""
    y_true = target.detach().cpu().long().numpy()
    y_pred = pred.detach().cpu().long().numpy()
    if not multi_label:
        y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of exactly right single-label predictions."""
    return float((pred.view(-1) == target.view(-1)).float().mean()) if target.numel() else 0.0


def classification_metrics(logits: torch.Tensor, target: torch.Tensor,
                           multi_label: bool = False) -> dict[str, float]:
    """Micro-F1, Macro-F1 and (single-label) accuracy of ``logits`` against ``target``."""
    pred = predict_labels(logits, multi_label)
    out = f1_scores(pred, target, multi_label)
    if not multi_label:
        out["accuracy"] = accuracy(pred, target)
    return out


def classification_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool = False,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy, or binary cross-entropy with logits for multi-label targets.

    ``weight`` is the per-class weight of cross-entropy or the ``pos_weight`` of
    binary cross-entropy.
    """
    if multi_label:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target.float(),
                                                                    pos_weight=weight)
    return torch.nn.functional.cross_entropy(logits, target, weight=weight)


def ensemble_logits(logits: list[torch.Tensor], multi_label: bool = False) -> torch.Tensor:
    r"""The logits of a deep ensemble: its members' mean predicted probability, as logits.

    With :math:`p_k` member k's distribution (softmax; per-class sigmoids for
    multi-label) and :math:`\bar p = \frac{1}{K} \sum_k p_k`, the result is
    :math:`\log \bar p` (single-label: its softmax is :math:`\bar p` again, so
    arg-max and cross-entropy are those of :math:`\bar p`) or
    :math:`\log \bar p - \log(1 - \bar p)` (multi-label: its sigmoid is
    :math:`\bar p`, so the 0.5 threshold and binary cross-entropy read :math:`\bar p`).
    Probabilities are averaged rather than logits: a member sure of its answer does
    not outvote the others by the size of its logits. One member is returned as it is.
    """
    if not logits:
        raise ValueError("an ensemble needs at least one member")
    if len(logits) == 1:
        return logits[0]
    if multi_label:
        # mean sigmoid, then its logit, each term computed in log space so that a
        # saturated member (sigmoid 0 or 1 in float32) gives a finite logit
        log_p = torch.logsumexp(torch.stack([torch.nn.functional.logsigmoid(x) for x in logits]), 0)
        log_q = torch.logsumexp(torch.stack([torch.nn.functional.logsigmoid(-x) for x in logits]), 0)
        return log_p - log_q
    log_p = torch.stack([torch.log_softmax(x, dim=-1) for x in logits])
    return torch.logsumexp(log_p, 0) - math.log(len(logits))

"""Metrics: Micro-/Macro-F1 single- and multi-label, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from brlgraph.train.metrics import (
    classification_loss,
    classification_metrics,
    ensemble_logits,
    f1_scores,
    predict_labels,
)


def test_single_label_f1_by_hand():
    # classes 0,1,2; truth 0,0,1,2 ; prediction 0,1,1,1
    y = torch.tensor([0, 0, 1, 2])
    p = torch.tensor([0, 1, 1, 1])
    s = f1_scores(p, y)
    assert s["micro_f1"] == pytest.approx(0.5)  # 2 of 4 right
    # per class F1: c0 = 2*1*0.5/1.5 = 2/3, c1 = 2*(1/3)*1/(4/3) = 0.5, c2 = 0
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_multi_label_threshold_half_on_sigmoid():
    logits = torch.tensor([[2.0, -1.0, 0.1], [-3.0, 0.5, -0.1]])
    pred = predict_labels(logits, multi_label=True)
    assert pred.tolist() == [[1, 0, 1], [0, 1, 0]]
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    s = classification_metrics(logits, y, multi_label=True)
    # tp = 2, fp = 1, fn = 1 -> micro F1 = 2*2 / (2*2 + 1 + 1)
    assert s["micro_f1"] == pytest.approx(4 / 6)
    # per class: c0 = 1, c1 = 1, c2 = 0 (1 fp, 1 fn)
    assert s["macro_f1"] == pytest.approx(2 / 3)
    assert "accuracy" not in s


def test_accuracy_and_losses():
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert classification_metrics(logits, y)["accuracy"] == pytest.approx(2 / 3)
    ce = classification_loss(logits, y)
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    bce = classification_loss(logits, torch.eye(2)[y], multi_label=True)
    assert bce.item() > 0


def test_weighted_losses_match_torch():
    logits = torch.tensor([[1.0, -2.0], [0.5, 0.3], [-1.0, 2.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([0.5, 2.0])
    # pos_weight scales the positive term of each label: by hand
    p = torch.sigmoid(logits)
    by_hand = -(w * y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(classification_loss(logits, y, multi_label=True, weight=w), by_hand)
    yc = torch.tensor([0, 1, 1])
    torch.testing.assert_close(classification_loss(logits, yc, weight=w),
                               torch.nn.functional.cross_entropy(logits, yc, weight=w))


def test_ensemble_logits_are_the_members_mean_probability():
    g = torch.Generator().manual_seed(0)
    members = [3 * torch.randn(7, 4, generator=g) for _ in range(3)]
    single = ensemble_logits(members)
    torch.testing.assert_close(torch.softmax(single, -1),
                               torch.stack([torch.softmax(x, -1) for x in members]).mean(0))
    multi = ensemble_logits(members, multi_label=True)
    torch.testing.assert_close(torch.sigmoid(multi), torch.stack([torch.sigmoid(x) for x in members]).mean(0))
    # the mean of probabilities, not of logits: one very sure member does not outvote two
    # others that agree (the mean logit would follow the sure one)
    sure, unsure = torch.tensor([[40.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert ensemble_logits([sure, unsure, unsure]).argmax(-1).item() == 1
    assert torch.stack([sure, unsure, unsure]).mean(0).argmax(-1).item() == 0
    no, yes = torch.tensor([[-40.0]]), torch.tensor([[2.0]])
    assert predict_labels(ensemble_logits([no, yes, yes], multi_label=True), True).item() == 1
    # saturated members (sigmoid exactly 0 or 1 in float32) still give finite logits
    assert torch.isfinite(ensemble_logits([torch.tensor([[200.0, -200.0]])] * 2, multi_label=True)).all()
    assert ensemble_logits(members[:1]) is members[0]  # one member: its own logits, unchanged
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_logits([])

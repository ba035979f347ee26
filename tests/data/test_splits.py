"""Seeded random node splits and the checks of a kNN data set's node features."""

from __future__ import annotations

import pytest
import torch

from brlgraph.data.splits import check_node_features, random_split_masks


def test_split_masks_partition_the_nodes_by_the_fractions_and_the_seed():
    train, val, test = random_split_masks(101, seed=3)
    assert (int(train.sum()), int(val.sum()), int(test.sum())) == (50, 25, 26)
    assert torch.equal(train.int() + val.int() + test.int(), torch.ones(101, dtype=torch.int))
    again = random_split_masks(101, seed=3)
    other = random_split_masks(101, seed=4)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not torch.equal(train, other[0])
    train, val, test = random_split_masks(10, seed=0, train=0.6, val=0.0)
    assert (int(train.sum()), int(val.sum()), int(test.sum())) == (6, 0, 4)


@pytest.mark.parametrize("train, val", [(0.0, 0.2), (0.5, 0.5), (0.8, 0.3), (0.5, -0.1)])
def test_split_fractions_that_leave_no_test_nodes_are_refused(train, val):
    with pytest.raises(ValueError, match="split fractions"):
        random_split_masks(10, 0, train=train, val=val)


def test_node_features_are_checked_against_their_labels():
    good = {"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 1, 0]), "class_names": ["a", "b"]}
    check_node_features(good)
    for bad, words in [({"y": torch.tensor([0, 1, 2, 0])}, "y is malformed"),
                       ({"y": torch.tensor([0.0, 1.0, 1.0, 0.0])}, "y is malformed"),
                       ({"y": torch.tensor([0, 1, 1])}, "y is malformed"),
                       ({"x": torch.randn(0, 3)}, "x is not"),
                       ({"class_names": ["a", 2]}, "class_names")]:
        with pytest.raises(ValueError, match=words):
            check_node_features({**good, **bad})

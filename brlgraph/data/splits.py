"""Seeded random node splits (NodeFormer's protocol for the kNN-graph data sets)."""

from __future__ import annotations

import torch


def random_split_masks(
    num_nodes: int, seed: int, train: float = 0.5, val: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean train/validation/test masks of a random permutation drawn from ``seed``.

    The first ``floor(train * n)`` nodes of the permutation train, the next
    ``floor(val * n)`` validate, the rest test; the three masks are disjoint
    and cover every node.
    """
    if not (0 < train and 0 <= val and train + val < 1):
        raise ValueError(f"split fractions must satisfy 0 < train, 0 <= val, train + val < 1; got {train}, {val}")
    perm = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(int(seed)))
    n_train, n_val = int(num_nodes * train), int(num_nodes * val)
    masks = []
    for index in (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[index] = True
        masks.append(mask)
    return masks[0], masks[1], masks[2]

"""Seeded random node splits and the kNN-graph data sets built on them (NodeFormer's protocol)."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from brlgraph.data.cache import cached, expect, in_range, is_tensor, source_key
from brlgraph.data.knn import knn_graph


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


def check_node_features(p: dict) -> None:
    """Raise ValueError unless ``p`` holds what :func:`knn_node_data` reads: ``x`` [N, d],
    integer ``y`` [N] indexing ``class_names`` (the check of a cache entry)."""
    x, y, names = p["x"], p["y"], p["class_names"]
    expect(is_tensor(x, 2) and x.shape[0] > 0, "x is not a non-empty feature matrix")
    expect(isinstance(names, list) and all(isinstance(c, str) for c in names), "class_names is not a list of names")
    expect(is_tensor(y, 1, x.shape[0], "int") and in_range(y, len(names)), "y is malformed")


def knn_node_data(
    name: str,
    processed: dict,
    features_key: str,
    *,
    version: int,
    k: int,
    metric: str,
    loop: bool,
    symmetric: bool,
    seed: int,
) -> Data:
    """A kNN-graph node-classification ``Data`` (NodeFormer's protocol).

    ``processed`` holds ``x`` (features), ``y`` and ``class_names``; the exact kNN
    graph of ``x`` is cached under ``<name>_knn`` keyed by ``features_key`` and the
    graph options, and the 50/25/25 masks are drawn from ``seed``.
    """
    x = processed["x"]
    key = source_key([], version, features=features_key, k=k, metric=metric, loop=loop,
                     symmetric=symmetric)
    graph = cached(f"{name}_knn", key, lambda: {
        "edge_index": knn_graph(x, k, metric=metric, loop=loop, symmetric=symmetric)},
        lambda g: expect(is_tensor(g["edge_index"], 2, 2, "int") and in_range(g["edge_index"], x.shape[0]),
                         "edge_index is not [2, E] of node indices"))
    train, val, test = random_split_masks(x.shape[0], seed)
    return Data(
        x=x.float(), edge_index=graph["edge_index"], y=processed["y"],
        train_mask=train, val_mask=val, test_mask=test,
        num_classes=len(processed["class_names"]), class_names=list(processed["class_names"]),
        name=name, seed=int(seed),
    )

"""Feature transforms applied to a loaded data set before sequences and models see it."""

from __future__ import annotations

import torch

from brlgraph.errors import ConfigError

FEATURE_NORMS = ("none", "row", "l2")


def normalize_features(data, how: str = "none"):
    r"""Scale every node's feature row, for every node type that has features.

    - ``"none"``: unchanged;
    - ``"row"``: :math:`x_v / \sum_j |x_{vj}|` (bag-of-words rows become frequencies,
      as PyG's ``NormalizeFeatures`` does for non-negative features);
    - ``"l2"``: :math:`x_v / \lVert x_v \rVert_2`.

    HGB's bag-of-words rows differ a lot in size (ACM: 84 terms per paper on average,
    up to 1,890 per subject), so unscaled, a node's input norm mostly says how many
    words it has. All-zero rows stay zero. ``data`` (``Data`` or ``HeteroData``) gets
    new feature tensors (the old ones are not written to) and is returned.
    """
    if how not in FEATURE_NORMS:
        raise ConfigError(f"unknown feature normalisation {how!r}; choose one of {FEATURE_NORMS}")
    if how == "none":
        return data
    stores = data.node_stores if hasattr(data, "node_stores") else [data]
    for store in stores:
        x = getattr(store, "x", None)
        if x is None or not torch.is_floating_point(x):
            continue
        scale = x.abs().sum(1, keepdim=True) if how == "row" else x.norm(dim=1, keepdim=True)
        store.x = x / scale.clamp(min=torch.finfo(x.dtype).tiny)
    return data

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


FEATURELESS = ("embedding", "mean")


def fill_featureless(data, how: str = "embedding"):
    r"""Give node types without features the mean features of their neighbours.

    - ``"embedding"``: unchanged (the model learns one embedding per such node);
    - ``"mean"``: for a type :math:`t` without ``x``, every relation
      :math:`(s, r, t)` whose source type :math:`s` has features contributes
      :math:`\frac{1}{|N_r(v)|}\sum_{u \in N_r(v)} x_u`, and the contributions of
      all such relations are concatenated, in ``data.edge_types`` order. Nodes with
      no such neighbour get zeros. Only features the data set had are averaged, so
      the result does not depend on the order of the types.

    A learned embedding of a featureless node only moves when some training target
    reaches it; on HGB IMDB most of the 7,971 keywords sit beside test movies only,
    so their embeddings stay at their random start. Their neighbours' mean bag of
    words is the same kind of input the other types have. Types no relation with
    features reaches keep no ``x`` (and so an embedding). ``data``
    (``HeteroData``) gets the new tensors and is returned; homogeneous data sets
    are returned unchanged.
    """
    if how not in FEATURELESS:
        raise ConfigError(f"unknown handling of featureless node types {how!r}; choose one of {FEATURELESS}")
    if how == "embedding" or not hasattr(data, "edge_types"):
        return data
    given = {t: data[t].x for t in data.node_types if getattr(data[t], "x", None) is not None}
    for t in data.node_types:
        if t in given:
            continue
        n, parts = data[t].num_nodes, []
        for s, r, dst in data.edge_types:
            if dst != t or s not in given:
                continue
            src, tgt = data[s, r, dst].edge_index
            x = given[s]
            total = x.new_zeros(n, x.shape[1]).index_add_(0, tgt, x[src])
            count = torch.bincount(tgt, minlength=n).clamp(min=1).to(x.dtype)
            parts.append(total / count[:, None])
        if parts:
            data[t].x = torch.cat(parts, dim=1)
    return data


def drop_node_types(data, types: list[str] | tuple[str, ...] = ()):
    r"""Remove whole node types, and every relation that touches them, from the graph.

    Some HGB node types repeat what the features already say: on ACM, a paper's
    1,902 features are exactly its edges to the 1,902 term nodes (and author and
    subject features are their papers' term counts), while those edges are 84 % of
    the graph. SeHGNN leaves ACM's terms out for that reason. Dropped nodes take no
    part in sequences, pre-encoders or type paths; the remaining nodes keep their
    HGB global ids (``global_id``), so prediction files are unchanged in form.

    ``data`` (``HeteroData``) loses the stores of ``types`` and is returned. A type
    it does not have, or the labelled type, raises :class:`ConfigError` naming
    ``data.drop_types``.
    """
    types = [t for t in types if t]
    if not types:
        return data
    if not hasattr(data, "edge_types"):
        raise ConfigError("data.drop_types applies to heterogeneous (HGB) data sets only")
    unknown = [t for t in types if t not in data.node_types]
    if unknown:
        raise ConfigError(f"data.drop_types: no node type {', '.join(map(repr, unknown))} in "
                          f"{getattr(data, 'name', 'this data set')}; its types: {', '.join(data.node_types)}")
    if getattr(data, "target_type", None) in types:
        raise ConfigError(f"data.drop_types names the labelled type {data.target_type!r}")
    for edge_type in [e for e in data.edge_types if e[0] in types or e[2] in types]:
        del data[edge_type]
    for t in types:
        del data[t]
    return data

"""Node input encoder of the graph transformer (spec 4.1): features -> hidden states.

A type-specific projection of every node's features (a learned embedding per node for
featureless types) plus a node-type embedding, on a :class:`~brlgraph.graph.GraphView`,
whose global node order is type by type, so per-type outputs concatenate into one
[N, d] matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView, SparseMatrix
from brlgraph.nn.cache import LastGraphCache
from brlgraph.nn.dropout import Dropout

#: features with fewer non-zeros than this fraction are multiplied as sparse matrices
SPARSE_DENSITY = 0.1


def scale_embeddings(modules: list[nn.Module], std: float) -> None:
    r"""Scale the initial N(0, 1) weights of the ``nn.Embedding`` among ``modules`` to N(0, std^2).

    With ``nn.Embedding``'s default init a type, hop or node embedding has norm
    :math:`\sqrt{d}` (8-11 at d = 64-128), while HGB's bag-of-words rows project to
    norms of 0.2-1.5: the sum of the two is mostly embedding. Transformers
    commonly start embeddings at std 0.02 (BERT). Scaling in place draws nothing, so
    every other initial weight is the same whatever ``std`` is.
    """
    if std <= 0:
        raise ConfigError(f"model.embedding_std must be > 0, got {std}")
    if std == 1.0:
        return
    with torch.no_grad():
        for module in modules:
            if isinstance(module, nn.Embedding):
                module.weight.mul_(std)


class NodeInputEncoder(nn.Module):
    r"""Type-specific input projection plus node-type embedding.

    .. math::
        h_v = \mathrm{Drop}(x_v) W_{t(v)} + b_{t(v)} + e_{t(v)}

    with :math:`x_v W_{t(v)}` replaced by a learned row :math:`E_{t(v)}[v]` for
    featureless node types.

    Args:
        in_dims: feature size of each node type, in the graph's type order
            (``None`` = featureless).
        num_nodes: number of nodes of each type (sizes the embeddings of featureless types).
        dim: d, the output size.
        input_dropout: dropout on raw input features.
        embedding_std: standard deviation of the initial embeddings (featureless
            nodes and node types; ``nn.Embedding``'s default 1). The N(0, 1) draws are
            scaled, so the random stream is the same for every value.
    """

    def __init__(
        self,
        in_dims: list[int | None],
        num_nodes: list[int],
        dim: int,
        input_dropout: float = 0.0,
        embedding_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_dims, self.dim = list(in_dims), dim
        self.proj = nn.ModuleList(
            nn.Linear(f, dim) if f is not None else nn.Embedding(n, dim)
            for f, n in zip(in_dims, num_nodes, strict=True)
        )
        self.type_emb = nn.Embedding(len(in_dims), dim)
        scale_embeddings([*self.proj, self.type_emb], embedding_std)
        self.input_dropout = Dropout(input_dropout)
        self._feature_cache: list[LastGraphCache[Tensor | SparseMatrix]] = [
            LastGraphCache() for _ in in_dims]

    def _features(self, t: int, x: Tensor, device: torch.device) -> Tensor | SparseMatrix:
        """Type ``t``'s features ``x`` on ``device``, as :class:`SparseMatrix` when they
        are mostly zeros; cached per type for the last tensor seen.

        HGB features are bag-of-words, 0.2-6 % non-zero: a sparse product over all
        rows costs less than a dense product over the rows of one batch.
        """
        def build() -> Tensor | SparseMatrix:
            density = float((x != 0).float().mean()) if x.numel() else 1.0
            return SparseMatrix(x, device) if density < SPARSE_DENSITY else x.to(device)

        return self._feature_cache[t].get(x, device, build)

    def _project(self, graph: GraphView, t: int, local: Tensor | None) -> Tensor:
        name, proj = graph.node_types[t], self.proj[t]
        if isinstance(proj, nn.Embedding):
            return proj.weight if local is None else proj(local)
        x = graph.x_dict[name]
        if x is None:
            raise ConfigError(f"node type {name!r} has no features but the model expects some")
        x = self._features(t, x, proj.weight.device)
        if isinstance(x, SparseMatrix):
            dropped = self.training and self.input_dropout.p > 0
            h = x.project(proj.weight, proj.bias, self.input_dropout(x.values) if dropped else None)
            return h if local is None else h[local]
        return proj(self.input_dropout(x if local is None else x[local]))

    def forward(self, graph: GraphView, ids: Tensor | None = None) -> Tensor:
        """Hidden states of all N nodes [N, d], or of the global ids ``ids`` [K] -> [K, d]."""
        if len(graph.node_types) != len(self.proj):
            raise ConfigError(
                f"the model was built for {len(self.proj)} node types, the graph has {graph.node_types}"
            )
        device = self.type_emb.weight.device
        if ids is None:
            h = torch.cat([self._project(graph, t, None) for t in range(len(self.proj))])
            return h + self.type_emb(graph.node_type.to(device))
        types = graph.node_type.to(device)[ids]
        h = self.type_emb(types)
        for t, name in enumerate(graph.node_types):
            sel = (types == t).nonzero().squeeze(1)
            if sel.numel():
                h = h.index_add(0, sel, self._project(graph, t, ids[sel] - graph.offsets[name]))
        return h

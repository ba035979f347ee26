"""Node input encoders of the graph transformer (spec 4.1): features -> hidden states.

- :class:`NodeInputEncoder`: a type-specific projection of every node's features
  (a learned embedding per node for featureless types) plus a node-type embedding.
- :class:`LocalGNNEncoder`: a few message-passing layers over the whole graph
  (HINormer's local structure encoder), on the homogeneous view of the graph, or
  relation-aware (:class:`TypePairSAGEConv`: one weight per node-type pair;
  :class:`RelationSAGEConv`: one weight per edge type).

Both work on a :class:`~brlgraph.sequences.GraphView`, whose global node order is
type by type, so per-type outputs concatenate into one [N, d] matrix.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from brlgraph.errors import ConfigError
from brlgraph.nn.cache import LastGraphCache
from brlgraph.nn.dropout import Dropout
from brlgraph.sequences import GraphView

GNN_KINDS = ("gcn", "sage", "gat", "hsage", "rsage")
#: features with fewer non-zeros than this fraction are multiplied as sparse matrices
SPARSE_DENSITY = 0.1


class SparseMatrix:
    r"""A constant sparse matrix A [N, F], stored for products and their gradients.

    A is kept twice, row-major (CSR [N, F]) and transposed (CSR [F, N]), with
    ``perm`` mapping the non-zeros of A (``values``, in row-major order) to those of
    :math:`A^T`, so that no gradient transposes, sorts or coalesces at every step, as
    ``torch.sparse.mm`` does in its backward. Two products use it:

    - :meth:`project`, :math:`A W^T + b` with gradients to W and b (A: mostly-zero
      input features); the weight gradient :math:`G^T A = (A^T G)^T` runs on the
      transpose. Input dropout drops ``values`` and passes them in; the transpose
      takes the same dropped values through ``perm``.
    - :meth:`mm`, :math:`A H` with the gradient :math:`A^T G` to H (A: a row-normalised
      adjacency block of a relation-aware encoder or of the type-path means).

    :meth:`project_reference` and :meth:`mm_reference` are the plain ``torch.sparse``
    products the tests compare them with.
    """

    def __init__(self, x: Tensor, device: torch.device | str | None = None) -> None:
        """From a dense [N, F] tensor (its non-zeros)."""
        coo = x.to_sparse().coalesce().to(device)  # row-major: the order of CSR's non-zeros
        rows, cols = coo.indices()
        crow = torch.zeros(coo.shape[0] + 1, dtype=torch.long, device=coo.device)
        crow[1:] = torch.bincount(rows, minlength=coo.shape[0]).cumsum(0)
        self._store(crow, cols, coo.values(), (coo.shape[0], coo.shape[1]))

    @classmethod
    def from_csr(cls, crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> SparseMatrix:
        """From CSR arrays (columns sorted within each row; on any one device)."""
        out = cls.__new__(cls)
        out._store(crow, col, values, shape)
        return out

    def _store(self, crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> None:
        n, f = shape
        self.shape = (int(n), int(f))
        self.crow, self.col, self.values = crow, col, values
        rows = torch.repeat_interleave(torch.arange(n, device=crow.device), crow.diff())
        self.perm = torch.argsort(col * n + rows, stable=True)  # column-major order of the same non-zeros
        self.crow_t = torch.zeros(f + 1, dtype=torch.long, device=crow.device)
        self.crow_t[1:] = torch.bincount(col, minlength=f).cumsum(0)
        self.col_t = rows[self.perm]

    def matrices(self, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(A, A^T) as CSR tensors, with ``values`` (default: the stored ones) as A's non-zeros."""
        v = self.values if values is None else values
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            x = torch.sparse_csr_tensor(self.crow, self.col, v, self.shape, check_invariants=False)
            xt = torch.sparse_csr_tensor(self.crow_t, self.col_t, v[self.perm], self.shape[::-1],
                                         check_invariants=False)
        return x, xt

    def project(self, weight: Tensor, bias: Tensor | None, values: Tensor | None = None) -> Tensor:
        """:math:`A W^T + b` [N, d] for ``weight`` [d, F]; gradients reach ``weight`` and
        ``bias`` (not A)."""
        out = _SparseProduct.apply(weight, *self.matrices(values))
        return out if bias is None else out + bias

    def project_reference(self, weight: Tensor, bias: Tensor | None, values: Tensor | None = None) -> Tensor:
        """:meth:`project` with ``torch.sparse.mm`` on a COO matrix (autograd does the rest)."""
        out = torch.sparse.mm(self._coo(values), weight.t())
        return out if bias is None else out + bias

    def mm(self, h: Tensor) -> Tensor:
        """:math:`A H` [N, d] for H [F, d]; the gradient reaches H (not A)."""
        return _SparseMatmul.apply(h, *self.matrices())

    def mm_reference(self, h: Tensor) -> Tensor:
        """:meth:`mm` with ``torch.sparse.mm`` on the CSR matrix (autograd does the rest)."""
        return torch.sparse.mm(self.matrices()[0], h)

    def rows(self, rows: Tensor) -> Tensor:
        """Rows ``rows`` [R] of A as a CSR tensor [R, F] (repeats allowed); a product with
        it takes the ``torch.sparse`` backward, which is cheap for a batch of rows."""
        first, count = self.crow[rows], self.crow[rows + 1] - self.crow[rows]
        new_crow = torch.cat([count.new_zeros(1), count.cumsum(0)])
        take = torch.repeat_interleave(first - new_crow[:-1], count) + torch.arange(
            int(new_crow[-1]), device=self.crow.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(new_crow, self.col[take], self.values[take],
                                           (len(rows), self.shape[1]), check_invariants=False)

    def _coo(self, values: Tensor | None = None) -> Tensor:
        v = self.values if values is None else values
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=v.device), self.crow.diff())
        return torch.sparse_coo_tensor(torch.stack([rows, self.col]), v, self.shape, is_coalesced=True,
                                       check_invariants=False)


class _SparseProduct(torch.autograd.Function):
    """:math:`X W^T` for a constant sparse X; backward :math:`(X^T G)^T` from the stored transpose."""

    @staticmethod
    def forward(ctx, weight: Tensor, x: Tensor, xt: Tensor) -> Tensor:  # type: ignore[override]
        ctx.xt = xt
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return (ctx.xt @ grad).t(), None, None


class _SparseMatmul(torch.autograd.Function):
    """:math:`A H` for a constant sparse A; backward :math:`A^T G` from the stored transpose."""

    @staticmethod
    def forward(ctx, h: Tensor, a: Tensor, at: Tensor) -> Tensor:  # type: ignore[override]
        ctx.at = at
        return a @ h

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return ctx.at @ grad, None, None


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
        hidden: d, the output size.
        input_dropout: dropout on raw input features.
        embedding_std: standard deviation of the initial embeddings (featureless
            nodes and node types; ``nn.Embedding``'s default 1). The N(0, 1) draws are
            scaled, so the random stream is the same for every value.
    """

    def __init__(
        self,
        in_dims: list[int | None],
        num_nodes: list[int],
        hidden: int,
        input_dropout: float = 0.0,
        embedding_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_dims, self.hidden = list(in_dims), hidden
        self.proj = nn.ModuleList(
            nn.Linear(f, hidden) if f is not None else nn.Embedding(n, hidden)
            for f, n in zip(in_dims, num_nodes, strict=True)
        )
        self.type_emb = nn.Embedding(len(in_dims), hidden)
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


class TypePairSAGEConv(nn.Module):
    r"""Relation-aware mean aggregation: one weight per (node type, neighbour type) pair.

    .. math::
        h'_v = W_0 h_v + b + \sum_{s} W_{t(v), s}\,
               \frac{1}{|N_s(v)|} \sum_{u \in N_s(v)} h_u

    where :math:`N_s(v)` are the neighbours of :math:`v` of node type :math:`s` (an
    empty sum is 0). Relations are told apart by the types at their two ends, which
    is all a :class:`~brlgraph.sequences.GraphView` keeps; two edge types between the
    same pair of node types (ACM's paper-cite-paper and paper-ref-paper) share a weight.
    On a homogeneous graph this is ``SAGEConv``.

    :meth:`LocalGNNEncoder.adjacency` builds the row-normalised blocks once per graph.
    """

    def __init__(self, hidden: int, num_types: int) -> None:
        super().__init__()
        self.hidden, self.num_types = hidden, num_types
        self.root = nn.Linear(hidden, hidden)
        self.rel = nn.Parameter(torch.empty(num_types, num_types, hidden, hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.root.reset_parameters()
        bound = 1.0 / self.hidden**0.5  # nn.Linear's default range
        nn.init.uniform_(self.rel, -bound, bound)

    def forward(self, h: Tensor, adjacency: tuple[list[list[SparseMatrix | None]], list[slice]]) -> Tensor:
        """h [N, d] -> [N, d]. ``adjacency`` = (blocks, slices): node type t occupies rows
        ``slices[t]`` and ``blocks[t][s]`` [N_t, N_s] is the row-normalised adjacency from
        type t to its neighbours of type s (``None`` where there are no such edges)."""
        blocks, slices = adjacency
        terms = [(t, s, block, self.rel[t, s]) for t, row in enumerate(blocks)
                 for s, block in enumerate(row) if block is not None]
        return _relation_sum(self.root(h), h, terms, slices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hidden}, num_types={self.num_types})"


class RelationSAGEConv(nn.Module):
    r"""Relation-aware mean aggregation with one weight per edge type.

    .. math::
        h'_v = W_0 h_v + b + \sum_{r:\, \mathrm{dst}(r) = t(v)} W_r\,
               \frac{1}{|N_r(v)|} \sum_{u \in N_r(v)} h_u

    where :math:`N_r(v)` are the nodes with an edge of type r into v (an empty sum
    is 0). Unlike :class:`TypePairSAGEConv` it tells apart two edge types between
    the same node types (ACM's paper-cite-paper and paper-ref-paper) and follows
    each edge type in its own direction. Choices: an edge type with no other edge type
    going back between its node types (``src``/``dst`` swapped) also gets its reverse as
    a relation of its own, so every edge is followed both ways, as in the other
    encoders (HGB lists every reverse; ACM's cite and ref are each other's); self-loops
    are dropped, as in :class:`~brlgraph.sequences.GraphView`. A graph without edge
    types (homogeneous, or a hand-built view) has one relation per pair of node types,
    and this is :class:`TypePairSAGEConv`.

    :func:`relation_means` builds the row-normalised blocks; ``num_relations`` must be
    their number for the graphs the layer sees (:func:`count_relations`).
    """

    def __init__(self, hidden: int, num_relations: int) -> None:
        super().__init__()
        self.hidden, self.num_relations = hidden, num_relations
        self.root = nn.Linear(hidden, hidden)
        self.rel = nn.Parameter(torch.empty(num_relations, hidden, hidden))
        self.reset_parameters()

    reset_parameters = TypePairSAGEConv.reset_parameters

    def forward(self, h: Tensor, adjacency: tuple[list[tuple[int, int, SparseMatrix]], list[slice]]) -> Tensor:
        """h [N, d] -> [N, d]. ``adjacency`` = (relations, slices): relation r is
        (t, s, block), ``block`` [N_t, N_s] the row-normalised edges of type r from
        nodes of type s into nodes of type t."""
        relations, slices = adjacency
        check_relation_count(self.num_relations, relations, "the layer")
        terms = [(t, s, block, self.rel[r]) for r, (t, s, block) in enumerate(relations)]
        return _relation_sum(self.root(h), h, terms, slices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hidden}, num_relations={self.num_relations})"


def _relation_sum(out: Tensor, h: Tensor, terms: list[tuple[int, int, Tensor, Tensor]],
                  slices: list[slice]) -> Tensor:
    """``out`` plus ``block @ h[slices[s]] @ W`` added to the rows of type t, for each
    term (t, s, block, W), in order."""
    parts = [out[rows] for rows in slices]
    for t, s, block, weight in terms:
        parts[t] = parts[t] + block.mm(h[slices[s]]) @ weight
    return torch.cat(parts)


class LocalGNNEncoder(nn.Module):
    r"""Residual message-passing layers over the homogeneous view of the graph.

    .. math::
        h \leftarrow h + \mathrm{Drop}(\mathrm{GELU}(\mathrm{GNN}_l(\mathrm{LN}_l(h), A)))
        \quad l = 1..L

    GCN and SAGE run as sparse products with an adjacency built once per graph
    (GCN: :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}`, the same as ``GCNConv`` with its
    default normalisation; SAGE: mean over neighbours), GAT over ``edge_index``,
    ``hsage`` (:class:`TypePairSAGEConv`) over one mean operator per pair of node types,
    ``rsage`` (:class:`RelationSAGEConv`) over one per edge type.

    Args:
        hidden: d (input and output size).
        num_layers: L (0 = identity).
        kind: ``"gcn"``, ``"sage"``, ``"gat"`` (torch-geometric layers), ``"hsage"`` or ``"rsage"``.
        heads: attention heads of GAT (``hidden`` must be divisible by them).
        dropout: dropout on each layer's output.
        num_types: node types of the graphs it will see (``hsage`` only).
        num_relations: relations of the graphs it will see (``rsage`` only; :func:`count_relations`).
    """

    def __init__(
        self, hidden: int, num_layers: int = 2, kind: str = "gcn", heads: int = 4, dropout: float = 0.0,
        num_types: int = 1, num_relations: int = 1,
    ) -> None:
        super().__init__()
        if kind not in GNN_KINDS:
            raise ConfigError(f"unknown GNN kind {kind!r}; choose one of {GNN_KINDS}")
        if kind == "gat" and hidden % heads:
            raise ConfigError(f"hidden size {hidden} is not divisible by GAT heads {heads}")

        def conv() -> nn.Module:
            if kind == "gcn":
                return GCNConv(hidden, hidden, normalize=False)  # normalised in adjacency()
            if kind == "sage":
                return SAGEConv(hidden, hidden)
            if kind == "hsage":
                return TypePairSAGEConv(hidden, num_types)
            if kind == "rsage":
                return RelationSAGEConv(hidden, num_relations)
            return GATConv(hidden, hidden // heads, heads=heads)

        self.kind = kind
        self.convs = nn.ModuleList(conv() for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.dropout = Dropout(dropout)
        self._adjacency: LastGraphCache[Any] = LastGraphCache()

    def adjacency(self, graph: GraphView, device: torch.device) -> Any:
        """What the convolutions take for ``graph``: a sparse CSR matrix, edge_index, or
        the blocks of ``hsage`` / ``rsage`` (cached for the last graph and device)."""
        return self._adjacency.get(graph, device, lambda: self._build_adjacency(graph, device))

    def _build_adjacency(self, graph: GraphView, device: torch.device) -> Any:
        n = graph.num_nodes
        if self.kind == "gat":
            adj = graph.edge_index
        elif self.kind == "hsage":
            adj = type_pair_means(graph, device)
        elif self.kind == "rsage":
            adj = relation_means(graph, device)
        else:
            indptr = torch.from_numpy(graph.indptr)
            indices = torch.from_numpy(graph.indices)
            if self.kind == "gcn":  # add self-loops, then D^-1/2 (A + I) D^-1/2
                row = torch.repeat_interleave(torch.arange(n), indptr.diff())
                row, indices = torch.cat([row, torch.arange(n)]), torch.cat([indices, torch.arange(n)])
                dinv = (indptr.diff() + 1).float().rsqrt()
                coo = torch.sparse_coo_tensor(
                    torch.stack([row, indices]), dinv[row] * dinv[indices], (n, n),
                    check_invariants=False,
                )
                with warnings.catch_warnings():  # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore", UserWarning)
                    adj = coo.coalesce().to_sparse_csr()
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    adj = torch.sparse_csr_tensor(
                        indptr, indices, torch.ones(indices.numel()), (n, n), check_invariants=False
                    )
        return adj if isinstance(adj, tuple) else adj.to(device)

    def forward(self, h: Tensor, graph: GraphView) -> Tensor:
        """h [N, d] -> [N, d] over the adjacency of ``graph``."""
        adj = self.adjacency(graph, h.device)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + self.dropout(nn.functional.gelu(conv(norm(h), adj)))
        return h


TypePath = tuple[int, ...]
#: the type-pair blocks of :func:`type_pair_means`: ``[t][s]``, or ``None`` where no edge joins t to s
PathBlocks = list[list[SparseMatrix | None]]


def path_steps(blocks: PathBlocks) -> list[list[tuple[int, SparseMatrix]]]:
    """Per node type t, the steps a path may take from it: (next type s, row-normalised
    block [N_t, N_s])."""
    return [[(s, block) for s, block in enumerate(row) if block is not None] for row in blocks]


def type_path_means(
    h: Tensor, blocks: PathBlocks, slices: list[slice], start: int, hops: int,
    rows: Tensor | None = None,
) -> tuple[list[TypePath], Tensor]:
    r"""Mean node states along every type path of 1..``hops`` edges from type ``start``.

    A type path :math:`P = (t_0 = \text{start}, t_1, \dots, t_k)` follows, from each
    node of type :math:`t_0`, only edges to neighbours of the next type; its mean is

    .. math::
        m_P = M_{t_0 t_1} M_{t_1 t_2} \cdots M_{t_{k-1} t_k}\, h_{t_k}

    with :math:`M_{ts}` the row-normalised adjacency from type t to type s (the
    ``blocks`` of :func:`type_pair_means`): the metapath features of SeHGNN, here on
    learned node states. Paths with no edges at some step are not listed. Products
    are shared between paths with a common tail, and only the tails of paths from
    ``start`` are computed.

    ``rows`` [R] (indices among the nodes of type ``start``, repeats allowed) asks for
    those rows only, as a training batch of targets does: the first step of each path,
    :math:`M_{t_0 t_1}`, is then taken over those rows alone (unless the full product
    is needed anyway as the tail of a longer path), while the tails, which may reach
    any node, stay whole. The result equals the full one indexed by ``rows``
    (:func:`type_path_means_reference`).

    Returns the paths (tuples of node types from the start, by length, then
    lexicographically) and their means stacked as [N_start, P, d] ([R, P, d] with
    ``rows``; P = 0 gives zero columns).
    """
    steps = path_steps(blocks)
    memo: dict[tuple[int, int], dict[TypePath, Tensor]] = {}

    def tails(t: int, k: int) -> dict[TypePath, Tensor]:
        """{types after t of a path of exactly k edges from type t: its mean [N_t, d]}, only
        where needed."""
        if k == 0:
            return {(): h[slices[t]]}
        if (t, k) not in memo:
            memo[(t, k)] = {(s, *path): block.mm(mean) for s, block in steps[t]
                            for path, mean in tails(s, k - 1).items()}
        return memo[(t, k)]

    firsts = [(s, block.rows(rows)) for s, block in steps[start]] if rows is not None else []
    means: dict[TypePath, Tensor] = {}
    for k in range(hops, 0, -1):  # longest first: shorter paths from start may then be memoised
        if rows is None:
            means.update({(start, *p): m for p, m in tails(start, k).items()})
        elif (start, k) in memo:
            means.update({(start, *p): m[rows] for p, m in memo[(start, k)].items()})
        else:
            means.update({(start, s, *path): torch.sparse.mm(first, mean) for s, first in firsts
                          for path, mean in tails(s, k - 1).items()})
    paths = sorted(means, key=lambda p: (len(p), p))
    if not paths:
        n = slices[start].stop - slices[start].start if rows is None else len(rows)
        return [], h.new_zeros(n, 0, h.shape[1])
    return paths, torch.stack([means[p] for p in paths], dim=1)


def type_path_means_reference(
    h: Tensor, blocks: PathBlocks, slices: list[slice], start: int, hops: int,
    rows: Tensor | None = None,
) -> tuple[list[TypePath], Tensor]:
    """:func:`type_path_means` the plain way, the reference it is tested against: every
    path's mean by a chain of ``torch.sparse`` products of its own over all nodes of type
    ``start`` (nothing shared, no stored transposes), then the ``rows`` asked for."""
    steps = path_steps(blocks)
    walks: list[tuple[TypePath, list[SparseMatrix], int]] = []  # (path, its blocks, end type)
    frontier: list[tuple[TypePath, list[SparseMatrix], int]] = [((start,), [], start)]
    for _ in range(hops):
        frontier = [((*p, s), [*chain, block], s) for p, chain, t in frontier for s, block in steps[t]]
        walks += frontier
    walks.sort(key=lambda w: (len(w[0]), w[0]))
    n = slices[start].stop - slices[start].start
    if not walks:
        return [], h.new_zeros(n if rows is None else len(rows), 0, h.shape[1])
    means = []
    for _, chain, end in walks:
        mean = h[slices[end]]
        for block in reversed(chain):
            mean = block.mm_reference(mean)
        means.append(mean)
    out = torch.stack(means, dim=1)
    return [w[0] for w in walks], out if rows is None else out[rows]


def type_pair_means(graph: GraphView, device: torch.device) -> tuple[list[list[SparseMatrix | None]], list[slice]]:
    """Row-normalised adjacency blocks [N_t, N_s] for every pair of node types (t, s)."""
    import scipy.sparse as sp

    n = graph.num_nodes
    adj = sp.csr_matrix((np.ones(graph.indices.shape[0], np.float32), graph.indices, graph.indptr),
                        shape=(n, n))
    slices = _type_slices(graph)
    blocks = [[_mean_block(adj[rows, cols], device) for cols in slices] for rows in slices]
    return blocks, slices


def relation_means(graph: GraphView, device: torch.device) -> tuple[list[tuple[int, int, SparseMatrix]], list[slice]]:
    """The relations of :class:`RelationSAGEConv`: (t, s, row-normalised block [N_t, N_s])
    per edge type (edges s -> t), plus the reverse of each edge type with no other edge
    type going back between its node types; one per non-empty pair of node types when
    the view has no edge types. Self-loops are dropped, repeated edges count once."""
    import scipy.sparse as sp

    slices = _type_slices(graph)
    relations = []
    for t, s, dst, src in _relation_edges(graph):
        rows, cols = dst - slices[t].start, src - slices[s].start
        shape = (slices[t].stop - slices[t].start, slices[s].stop - slices[s].start)
        a = sp.csr_matrix((np.ones(rows.shape[0], np.float32), (rows, cols)), shape=shape)
        a.data[:] = 1.0  # repeated edges count once
        relations.append((t, s, _mean_block(a, device)))
    return relations, slices


def check_relation_count(expected: int, relations: list, what: str, hint: str = "") -> None:
    """A clear error when ``relations`` (of :func:`relation_means`) are not the
    ``expected`` number that ``what`` (a layer, a model) was sized for."""
    if len(relations) != expected:
        raise ConfigError(f"{what} was built for {expected} relations, the graph has {len(relations)}{hint}")


def count_relations(graph: GraphView) -> int:
    """How many relations :func:`relation_means` finds in ``graph`` (sizes
    :class:`RelationSAGEConv`), without building their blocks."""
    return len(_relation_edges(graph))


def _relation_edges(graph: GraphView) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(t, s, dst, src) per relation of :func:`relation_means` (global ids, edges s -> t,
    self-loops dropped, relations left without edges left out)."""
    if not graph.relations:  # one relation per pair of node types, in type_pair_means' order
        types = graph.node_type.numpy()
        row = graph.edge_index[0].numpy()
        pair = types[row] * len(graph.node_types) + types[graph.indices]
        return [(int(k) // len(graph.node_types), int(k) % len(graph.node_types),
                 row[pair == k], graph.indices[pair == k]) for k in np.unique(pair)]
    pairs = Counter((r.src_type, r.dst_type) for r in graph.relations)
    out = []
    for r in graph.relations:
        directions = [(r.dst_type, r.src_type, r.dst, r.src)]
        if pairs[(r.dst_type, r.src_type)] == (r.src_type == r.dst_type):  # no other edge type back
            directions.append((r.src_type, r.dst_type, r.src, r.dst))
        for t, s, dst, src in directions:
            keep = dst != src
            if keep.any():
                out.append((t, s, dst[keep], src[keep]))
    return out


def _type_slices(graph: GraphView) -> list[slice]:
    return [slice(graph.offsets[t], graph.offsets[t] + graph.num_nodes_dict[t]) for t in graph.node_types]


def _mean_block(sub, device: torch.device) -> SparseMatrix | None:
    """A scipy sparse block as a row-normalised :class:`SparseMatrix` (``None`` when empty)."""
    import scipy.sparse as sp

    sub = sub.tocsr()
    if sub.nnz == 0:
        return None
    deg = np.asarray(sub.sum(axis=1)).ravel()
    sub = (sp.diags(1.0 / np.maximum(deg, 1.0)).astype(np.float32) @ sub).tocsr()
    sub.sort_indices()
    return SparseMatrix.from_csr(
        torch.from_numpy(sub.indptr.astype(np.int64)).to(device),
        torch.from_numpy(sub.indices.astype(np.int64)).to(device),
        torch.from_numpy(sub.data.astype(np.float32)).to(device), sub.shape)

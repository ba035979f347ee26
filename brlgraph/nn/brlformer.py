"""The BRL graph transformer (spec 4): node-as-sequence and graph-as-one-sequence models.

How to drive it::

    from brlgraph.graph import GraphView
    from brlgraph.sequences import hop_ordered_sequences
    from brlgraph.nn import BRLFormer

    graph = GraphView.from_data(data)                    # Data or HeteroData, once
    model = BRLFormer.from_data(graph_or_data, num_classes=C, hidden_channels=256, layers=2,
                                heads=8, attention="brl", window=16, reservoir_size=16)
    seqs = hop_ordered_sequences(graph, None, 50, node_type=data.target_type, seed=epoch)
    logits = model(graph, seqs[batch_rows])              # [T, C], one row per target

    # evaluation in many batches: compute the node states (and path means) once
    with torch.no_grad():
        h = model.node_states(graph)                     # [N, d]
        pm = model.path_means(graph, h, data.target_type)  # with path_tokens > 0
        logits = model(graph, seqs[rows], node_states=h, path_means=pm)

    # graph as one sequence (kNN graphs): all nodes, one locality-preserving order
    model = BRLGraphSequenceModel.from_data(data, order="rcm", ...)
    logits = model(graph)                                # [N, C], in the graph's node order

Per step, the type-specific projections (and the optional GNN) run once over the
nodes, and tokens are gathered from them by id; without a GNN only the nodes that
occur in the batch are projected (sparse bag-of-words features: all nodes, as one
sparse product). Features stay in ``graph.x_dict``; the model caches them on its
device, with the other tensors derived from the last graph it saw (adjacency blocks,
node orders; :class:`~brlgraph.nn.cache.LastGraphCache`), outside any
``torch.compile`` region, so a compiled model runs on graphs it has not seen. Hyper-parameters (keyword arguments of ``from_data``): ``hidden_channels``, ``layers``,
``heads``, ``attention``, ``window``, ``reservoir_size``, ``attention_options``, ``dropout``,
``input_dropout``, ``gnn_layers``, ``gnn``, ``ff_mult``, ``logit_norm``,
``embedding_std``, ``checkpoint`` (activation checkpointing while training), and
``max_hops``, ``path_tokens`` (BRLFormer) or ``order`` (graph model).

A block carries two residual streams, the tokens X [B, S, d] and the reservoir
C [B, m, d_c] (spec 1.(6)); for backends without a reservoir C is ``None``::

    A, U = Attn.attend(LN1(X), mask, LN1c(C))
    X = X + Drop(A)                          C = C + U          (U = W_Oc concat_h(u))
    X = X + Drop(FFN(LN2(X)))                C = C + FFN_c(LN2c(C))

C starts from the first layer's learned reservoir E (``initial_reservoir``); a causal
backend returns no update U, so its reservoir is never written from the sequence.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView, count_relations, type_pair_means, type_slices
from brlgraph.nn.attention import attention_options, make_attention
from brlgraph.nn.cache import LastGraphCache
from brlgraph.nn.dropout import Dropout
from brlgraph.nn.local_gnn import LocalGNNEncoder
from brlgraph.nn.metapath import TypePath, type_path_means
from brlgraph.nn.node_encoder import NodeInputEncoder, scale_embeddings
from brlgraph.sequences import (
    DEFAULT_MAX_HOPS,
    NODE_ORDERS,
    NodeSequences,
    inverse_permutation,
    node_order,
)


def backend_options(
    attention: str, window: int, reservoir_size: int, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """Keyword options of ``make_attention(attention, ...)``: the model-level ``window``
    and ``reservoir_size`` (m) where the backend takes them; ``extra`` overrides."""
    accepted = attention_options(attention)
    common = {"window": window, "reservoir_size": reservoir_size}
    opts = {k: v for k, v in common.items() if k in accepted}
    opts.update(extra or {})
    return opts


ModelT = TypeVar("ModelT", bound="_GraphModel")


class PathMeans(NamedTuple):
    """Path tokens' means for every node of one type (:meth:`BRLFormer.path_means`):
    the type index, the type paths from it, and the means [N_type, P, d]."""

    node_type: int
    paths: list[TypePath]
    means: Tensor


class FeedForward(nn.Sequential):
    """x -> W_2 Drop(GELU(W_1 x)), hidden size ``mult * dim``."""

    def __init__(self, dim: int, mult: int = 2, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, mult * dim), nn.GELU(), Dropout(dropout), nn.Linear(mult * dim, dim)
        )


class BRLBlock(nn.Module):
    """One pre-norm block over the token stream and, if the backend has one, the reservoir.

    See the module docstring for the equations. x [B, S, d], mask [B, S] (True =
    valid) or ``None``, reservoir [B, m, d_c] or ``None`` -> (x, reservoir).
    """

    def __init__(
        self, dim: int, heads: int, attention: str = "brl", ff_mult: int = 2,
        dropout: float = 0.0, attention_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.attn = make_attention(attention, dim, heads, **(attention_options or {}))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult, dropout)
        self.dropout = Dropout(dropout)
        self.uses_reservoir = bool(getattr(self.attn, "uses_reservoir", False))
        if self.uses_reservoir:
            dc = self.attn.reservoir_dim
            self.norm1_c, self.norm2_c = nn.LayerNorm(dc), nn.LayerNorm(dc)
            self.ff_c = FeedForward(dc, ff_mult, dropout)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, reservoir: Tensor | None = None,
        checkpoint: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """With ``checkpoint`` (and gradients on) the attention half and the feed-forward
        half are each a :func:`torch.utils.checkpoint.checkpoint` segment: only their
        inputs are kept, and the activations inside are computed again in the backward
        pass (same values, same dropout masks)."""
        if reservoir is None and self.uses_reservoir:
            reservoir = self.attn.initial_reservoir(x.shape[0])
        if checkpoint and torch.is_grad_enabled():
            x, reservoir = torch.utils.checkpoint.checkpoint(
                self._attention_half, x, mask, reservoir, use_reentrant=False)
            return torch.utils.checkpoint.checkpoint(self._feed_forward_half, x, reservoir,
                                                     use_reentrant=False)
        return self._feed_forward_half(*self._attention_half(x, mask, reservoir))

    def _attention_half(self, x: Tensor, mask: Tensor | None,
                        reservoir: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.uses_reservoir:
            out, _ = self.attn.attend(self.norm1(x), mask, None)
            return x + self.dropout(out), reservoir
        out, update = self.attn.attend(self.norm1(x), mask, self.norm1_c(reservoir))
        x = x + self.dropout(out)
        if update is not None:
            reservoir = reservoir + update
        return x, reservoir

    def _feed_forward_half(self, x: Tensor, reservoir: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = x + self.dropout(self.ff(self.norm2(x)))
        if not self.uses_reservoir:
            return x, reservoir
        return x, reservoir + self.ff_c(self.norm2_c(reservoir))


class BRLBlocks(nn.ModuleList):
    """L :class:`BRLBlock` s; the reservoir stream starts from the first block's E.

    ``checkpoint = True`` keeps, while training, only each half-block's input and
    recomputes the rest in the backward pass (:meth:`BRLBlock.forward`): the graph as
    one sequence of 10^6 tokens then trains in a fraction of the memory (docs/scaling.md).
    """

    checkpoint: bool = False

    def forward(self, x: Tensor, mask: Tensor | None = None,
                reservoir: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``reservoir`` [B, m, d_c]: the stream's start (``None``: the first block's E)."""
        for block in self:
            x, reservoir = block(x, mask, reservoir, checkpoint=self.checkpoint)
        return x, reservoir


class _GraphModel(nn.Module):
    """Shared parts: node input encoder, optional GNN, blocks, readout."""

    def __init__(
        self,
        in_dims: list[int | None],
        num_nodes: list[int],
        num_classes: int,
        *,
        hidden_channels: int = 256,
        layers: int = 2,
        heads: int = 8,
        attention: str = "brl",
        window: int = 16,
        reservoir_size: int = 16,
        attention_options: dict[str, Any] | None = None,
        dropout: float = 0.2,
        input_dropout: float = 0.0,
        gnn_layers: int = 0,
        gnn: str = "gcn",
        ff_mult: int = 2,
        logit_norm: float = 0.0,
        num_relations: int = 1,
        embedding_std: float = 1.0,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if logit_norm < 0:
            raise ConfigError(f"model.logit_norm must be >= 0, got {logit_norm}")
        if hidden_channels % heads:
            raise ConfigError(f"model.hidden_channels ({hidden_channels}) must be divisible by "
                              f"model.heads ({heads})")
        if layers < 1:
            raise ConfigError(f"model.layers must be >= 1, got {layers}")
        self.encoder = NodeInputEncoder(in_dims, num_nodes, hidden_channels, input_dropout, embedding_std)
        self.gnn = (LocalGNNEncoder(hidden_channels, gnn_layers, gnn, dropout=dropout, num_types=len(in_dims),
                                    num_relations=num_relations)
                    if gnn_layers else None)
        opts = backend_options(attention, window, reservoir_size, attention_options)
        self.blocks = BRLBlocks(
            BRLBlock(hidden_channels, heads, attention, ff_mult, dropout, opts) for _ in range(layers)
        )
        dcs = {b.attn.reservoir_dim for b in self.blocks if b.uses_reservoir}
        if len(dcs) > 1:
            raise ConfigError("all layers must share one reservoir size (reservoir_dim)")
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_channels)
        self.head = nn.Linear(hidden_channels, num_classes)
        self.attention = attention
        self.logit_norm = float(logit_norm)
        self.set_checkpoint(checkpoint)

    def set_checkpoint(self, on: bool) -> None:
        """Activation checkpointing of the GNN layers and the blocks while training: the
        same values and gradients in a fraction of the memory, for about one more forward
        pass of time (``model.checkpoint``; docs/scaling.md has the figures)."""
        self.blocks.checkpoint = bool(on)
        if self.gnn is not None:
            self.gnn.checkpoint = bool(on)

    @classmethod
    def from_data(cls: type[ModelT], data, num_classes: int | None = None, **hparams: Any) -> ModelT:
        """Build for ``data`` (``Data``, ``HeteroData`` or ``GraphView``): sizes read from it.

        Node types without features get a learned embedding per node. ``hparams`` are
        the constructor's keyword arguments (``max_hops`` / ``order`` of the subclasses).
        """
        graph = GraphView.from_data(data)
        in_dims = [None if graph.x_dict.get(t) is None else int(graph.x_dict[t].shape[1])
                   for t in graph.node_types]
        num_nodes = [graph.num_nodes_dict[t] for t in graph.node_types]
        if num_classes is None:
            num_classes = getattr(data, "num_classes", None)
            if num_classes is None:
                raise ConfigError("num_classes is unknown: pass num_classes= or set data.num_classes")
        if hparams.get("gnn") == "rsage" and "num_relations" not in hparams:
            hparams["num_relations"] = count_relations(graph)
        return cls(in_dims, num_nodes, int(num_classes), **hparams)

    def node_states(self, graph: GraphView, ids: Tensor | None = None) -> Tensor:
        """Input states of the nodes before the blocks: projection (+ GNN), [N, d].

        With ``ids`` [K] and no GNN, only those nodes are projected ([K, d]); with a
        GNN all N nodes are computed and ``ids`` selects rows.
        """
        h = self.encoder(graph, ids if self.gnn is None else None)
        if self.gnn is None:
            return h
        h = self.gnn(h, graph)
        return h if ids is None else h[ids]

    def readout(self, x: Tensor) -> Tensor:
        """Final states [*, d] -> logits [*, C]; with ``logit_norm`` = s > 0 the logits
        are L2-normalised and scaled by s (HINormer's bounded output, a strong regulariser)."""
        logits = self.head(self.dropout(self.norm(x)))
        if self.logit_norm > 0:
            logits = self.logit_norm * nn.functional.normalize(logits, dim=-1, eps=1e-12)
        return logits


class BRLFormer(_GraphModel):
    r"""Node-as-sequence graph transformer (spec 4.1) with any attention backend.

    For a target v with tokens :math:`T(v) = [v, t_1, \dots, t_{S-1}]`:

    .. math::
        z_j = h_{t_j} + e^{\mathrm{hop}}_{\mathrm{hop}(t_j)}, \quad
        Z^{(L)} = \mathrm{Blocks}(Z^{(0)}, \mathrm{mask}), \quad
        \mathrm{logits}(v) = W\,\mathrm{LN}(z^{(L)}_0) + b

    where :math:`h` are the node states of :meth:`node_states` (type projection +
    node-type embedding, optionally a GNN). Each sequence has its own reservoir,
    initialised from E (with ``reservoir_from_target``: from E + W_t z_0).

    With ``path_tokens = K > 0``, P more tokens follow the target token: one per type
    path of 1..K edges from the target's type (:func:`~brlgraph.nn.metapath.type_path_means`),
    the mean of :math:`h` over the path's end nodes plus a learned path embedding
    :math:`\sum_i e_{i, t_i}` (step i, type :math:`t_i`). They give the target the whole
    neighbourhood of each relation chain (SeHGNN's metapath features), which the S
    sampled context nodes see only in part; attention weighs them per target. All
    targets of one call must then share a node type.

    Args:
        in_dims: feature size per node type in the graph's type order (``None`` = featureless).
        num_nodes: nodes per type.
        num_classes: C.
        hidden_channels, layers, heads: d, L, H.
        attention: a backend of ``brlgraph.nn.ATTENTION_BACKENDS``.
        window: local window half-width (``brl``, ``local``).
        reservoir_size: m, reservoir tokens of ``brl``.
        attention_options: further keyword options of ``make_attention``.
        dropout: dropout of the residual branches, token inputs and readout.
        input_dropout: dropout on raw node features.
        gnn_layers, gnn: local GNN encoder (0 layers = none; ``gcn``/``sage``/``gat``/
            ``hsage``/``rsage``).
        max_hops: largest hop distance of the hop embedding.
        path_tokens: K, the longest type path with a token of its own (0 = none).
        reservoir_from_target: start each sequence's reservoir at E + W_t z_0 instead
            of E (``brl``; W_t zero-initialised), so that the first layer's write
            queries know the target (docs/oversquashing.md, Tree-NeighborsMatch r = 6).
        embedding_std: initial standard deviation of every embedding table (nodes of
            featureless types, node types, hops, path steps; default 1 as
            ``nn.Embedding``), see :func:`~brlgraph.nn.node_encoder.scale_embeddings`.
        checkpoint: activation checkpointing of the GNN layers and the blocks while
            training (:meth:`set_checkpoint`); creates nothing and draws nothing.

    Shapes: ``forward(graph, seqs)`` with ``seqs`` of T rows and S tokens -> [T, C]
    (the blocks see S + P tokens when ``path_tokens`` > 0).
    """

    def __init__(
        self,
        in_dims: list[int | None],
        num_nodes: list[int],
        num_classes: int,
        *,
        max_hops: int = DEFAULT_MAX_HOPS,
        path_tokens: int = 0,
        reservoir_from_target: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_dims, num_nodes, num_classes, **kwargs)
        if path_tokens < 0:
            raise ConfigError(f"model.path_tokens must be >= 0, got {path_tokens}")
        self.max_hops = max_hops
        self.hop_emb = nn.Embedding(max_hops + 1, self.head.in_features)
        self.num_types, self.path_tokens = len(in_dims), path_tokens
        self.path_emb = (nn.Embedding(path_tokens * self.num_types, self.head.in_features)
                         if path_tokens else None)
        scale_embeddings([self.hop_emb, self.path_emb], kwargs.get("embedding_std", 1.0))
        self._path_blocks: LastGraphCache[Any] = LastGraphCache()  # when no GNN has them
        self.target_write: nn.Linear | None = None
        if reservoir_from_target:
            first = self.blocks[0]
            if not first.uses_reservoir:
                raise ConfigError(f"model.reservoir_from_target needs an attention backend with a "
                                  f"reservoir (brl), not {self.attention!r}")
            # zero at the start, drawn after every other parameter: the model
            # begins as the one without the option
            self.target_write = nn.Linear(self.head.in_features, first.attn.reservoir_dim, bias=False)
            nn.init.zeros_(self.target_write.weight)

    def tokens(self, graph: GraphView, seqs: NodeSequences, node_states: Tensor | None = None) -> Tensor:
        """Token inputs [T, S, d] of the sequences (zeros at padding)."""
        device = self.head.weight.device
        ids, hops, mask = seqs.ids.to(device), seqs.hops.to(device), seqs.mask.to(device)
        if int(hops.max()) > self.max_hops:
            raise ConfigError(
                f"sequences reach hop {int(hops.max())} but the model embeds hops up to "
                f"{self.max_hops}; build the model with max_hops >= sequences.max_hops"
            )
        safe = ids.clamp(min=0)
        if node_states is not None:
            h = node_states[safe]
        elif self.gnn is None:
            uniq, inverse = torch.unique(safe, return_inverse=True)
            h = self.node_states(graph, uniq)[inverse]
        else:
            h = self.node_states(graph)[safe]
        z = h + self.hop_emb(hops.clamp(min=0))
        return self.dropout(z * mask.unsqueeze(-1))

    def _blocks(self, graph: GraphView, device: torch.device) -> tuple[Any, list[slice]]:
        """Row-normalised type-pair blocks of ``graph`` (the hsage GNN's when it has them)."""
        if self.gnn is not None and self.gnn.kind == "hsage":  # the same blocks, built once there
            return self.gnn.adjacency(graph, device)
        return self._path_blocks.get(graph, device, lambda: type_pair_means(graph, device))

    def path_means(self, graph: GraphView, node_states: Tensor, node_type: str | int) -> PathMeans:
        """The type paths from ``node_type`` and the means of ``node_states`` along each,
        for every node of that type: what :meth:`forward` computes per call, computed
        once. Pass it as ``path_means=`` to evaluate many batches or context draws with
        the same (detached) ``node_states``."""
        start = graph.node_types.index(node_type) if isinstance(node_type, str) else int(node_type)
        blocks, slices = self._blocks(graph, node_states.device)
        paths, means = type_path_means(node_states, blocks, slices, start, self.path_tokens)
        return PathMeans(start, paths, means)

    def path_token_inputs(self, graph: GraphView, targets: Tensor, node_states: Tensor,
                          path_means: PathMeans | None = None) -> tuple[list[TypePath], Tensor]:
        """The type paths from the targets' type and their tokens [T, P, d] (see the class doc).

        With gradients (training), the first step of each path is taken over the targets
        alone (:func:`~brlgraph.nn.metapath.type_path_means` with ``rows``). Without
        them (evaluation), the means of every node of the targets' type are computed and
        the targets' rows taken, unless ``path_means`` (from :meth:`path_means`) brings
        them already.
        """
        device = node_states.device
        types = graph.node_type.to(device)[targets]
        start = int(types[0]) if types.numel() else 0
        if bool((types != start).any()):
            raise ConfigError("model.path_tokens needs all target nodes of a batch to share one node type")
        if path_means is not None:
            if path_means.node_type != start:
                raise ConfigError(f"path_means were computed for node type {path_means.node_type}, "
                                  f"the targets are of type {start}")
            paths, means = path_means.paths, path_means.means
            rows = targets - type_slices(graph)[start].start
            means = means[rows]
        else:
            blocks, slices = self._blocks(graph, device)
            rows = targets - slices[start].start
            if torch.is_grad_enabled():  # training: the first step of each path over the batch alone
                paths, means = type_path_means(node_states, blocks, slices, start, self.path_tokens, rows)
            else:  # evaluation: every node of the start type, as path_means() gives
                paths, means = type_path_means(node_states, blocks, slices, start, self.path_tokens)
                means = means[rows]
        if not paths:
            return paths, node_states.new_zeros(len(targets), 0, node_states.shape[-1])
        assert self.path_emb is not None
        # path p = (t_0, t_1, ..., t_k): sum of the embeddings of (step i, type t_i), padded to K
        ids = torch.tensor([[i * self.num_types + t for i, t in enumerate(p[1:])]
                            + [-1] * (self.path_tokens + 1 - len(p)) for p in paths], device=device)
        emb = (self.path_emb(ids.clamp(min=0)) * (ids >= 0).unsqueeze(-1)).sum(1)  # [P, d]
        return paths, self.dropout(means + emb)

    def forward(self, graph: GraphView, seqs: NodeSequences, node_states: Tensor | None = None,
                path_means: PathMeans | None = None) -> Tensor:
        """Logits [T, C] of the targets of ``seqs``, optionally from precomputed node
        states and path means (:meth:`node_states`, :meth:`path_means`)."""
        mask = seqs.mask.to(self.head.weight.device)
        if not self.path_tokens:
            z = self.tokens(graph, seqs, node_states)
            x, _ = self.blocks(z, mask, self.first_reservoir(z))
            return self.readout(x[:, 0])
        h = self.node_states(graph) if node_states is None else node_states
        z = self.tokens(graph, seqs, h)
        _, paths = self.path_token_inputs(graph, seqs.ids[:, 0].to(h.device), h, path_means)
        z = torch.cat([z[:, :1], paths, z[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], mask.new_ones(paths.shape[:2]), mask[:, 1:]], dim=1)
        x, _ = self.blocks(z, mask, self.first_reservoir(z))
        return self.readout(x[:, 0])

    def first_reservoir(self, z: Tensor) -> Tensor | None:
        """Where each sequence's reservoir stream starts: ``None`` (the first block's E,
        shared by the batch), or with ``reservoir_from_target`` E + W_t z_0, written from
        the target token as well, [T, m, d_c]."""
        if self.target_write is None:
            return None
        e = self.blocks[0].attn.initial_reservoir(z.shape[0])
        return e + self.target_write(z[:, 0]).unsqueeze(1)


class BRLGraphSequenceModel(_GraphModel):
    r"""Graph-as-one-sequence transformer (spec 4.2): all nodes form one sequence.

    .. math::
        Z^{(0)} = [h_{\pi(1)}, \dots, h_{\pi(N)}] \in \mathbb{R}^{1 \times N \times d},
        \quad \mathrm{logits}(\pi(i)) = W\,\mathrm{LN}(z^{(L)}_i) + b

    with :math:`\pi` a locality-preserving order (``order``: ``"rcm"``, ``"bfs"``,
    ``"identity"``), computed once per graph and cached. Same arguments as
    :class:`BRLFormer` (no hop embedding), plus ``order``.

    Shapes: ``forward(graph)`` -> [N, C], rows in the graph's own node order.
    """

    def __init__(
        self,
        in_dims: list[int | None],
        num_nodes: list[int],
        num_classes: int,
        *,
        order: str = "rcm",
        **kwargs: Any,
    ) -> None:
        if order not in NODE_ORDERS:
            raise ConfigError(f"unknown node order {order!r}; choose one of {NODE_ORDERS}")
        super().__init__(in_dims, num_nodes, num_classes, **kwargs)
        self.order = order
        self._order_cache: LastGraphCache[Tensor] = LastGraphCache()

    def node_permutation(self, graph: GraphView) -> Tensor:
        """The sequence order of ``graph``'s nodes [N] (cached for the last graph seen)."""
        return self._order_cache.get(graph, None, lambda: node_order(graph, self.order))

    def forward(self, graph: GraphView, order: Tensor | None = None) -> Tensor:
        """Logits [N, C] of every node (``order`` overrides the cached permutation)."""
        device = self.head.weight.device
        perm = (self.node_permutation(graph) if order is None else order).to(device)
        h = self.dropout(self.node_states(graph))
        x, _ = self.blocks(h[perm].unsqueeze(0))
        return self.readout(x[0][inverse_permutation(perm)])

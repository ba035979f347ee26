"""HINormer's local structure encoder: a few message-passing layers over the whole graph.

GCN and SAGE on the homogeneous view of the graph, GAT over its edges, or the
relation-aware convolutions of :mod:`brlgraph.nn.hetero_sage`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from brlgraph.errors import ConfigError
from brlgraph.graph import (
    GraphView,
    gcn_adjacency,
    relation_means,
    sparse_adjacency,
    type_pair_means,
)
from brlgraph.nn.cache import LastGraphCache
from brlgraph.nn.dropout import Dropout
from brlgraph.nn.hetero_sage import RelationSAGEConv, TypePairSAGEConv

GNN_KINDS = ("gcn", "sage", "gat", "hsage", "rsage")


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
        dim: d (input and output size).
        num_layers: L (0 = identity).
        kind: ``"gcn"``, ``"sage"``, ``"gat"`` (torch-geometric layers), ``"hsage"`` or ``"rsage"``.
        heads: attention heads of GAT (``dim`` must be divisible by them).
        dropout: dropout on each layer's output.
        num_types: node types of the graphs it will see (``hsage`` only).
        num_relations: relations of the graphs it will see (``rsage`` only; :func:`count_relations`).
    """

    def __init__(
        self, dim: int, num_layers: int = 2, kind: str = "gcn", heads: int = 4, dropout: float = 0.0,
        num_types: int = 1, num_relations: int = 1,
    ) -> None:
        super().__init__()
        if kind not in GNN_KINDS:
            raise ConfigError(f"unknown GNN kind {kind!r}; choose one of {GNN_KINDS}")
        if kind == "gat" and dim % heads:
            raise ConfigError(f"dim={dim} is not divisible by GAT heads={heads}")

        def conv() -> nn.Module:
            if kind == "gcn":
                return GCNConv(dim, dim, normalize=False)  # normalised in adjacency()
            if kind == "sage":
                return SAGEConv(dim, dim)
            if kind == "hsage":
                return TypePairSAGEConv(dim, num_types)
            if kind == "rsage":
                return RelationSAGEConv(dim, num_relations)
            return GATConv(dim, dim // heads, heads=heads)

        self.kind = kind
        self.checkpoint = False  # set by the model: see forward
        self.convs = nn.ModuleList(conv() for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.dropout = Dropout(dropout)
        self._adjacency: LastGraphCache[Any] = LastGraphCache()

    def adjacency(self, graph: GraphView, device: torch.device) -> Any:
        """What the convolutions take for ``graph``: a sparse CSR matrix, edge_index, or
        the blocks of ``hsage`` / ``rsage`` (cached for the last graph and device)."""
        return self._adjacency.get(graph, device, lambda: self._build_adjacency(graph, device))

    def _build_adjacency(self, graph: GraphView, device: torch.device) -> Any:
        if self.kind == "gat":
            return graph.edge_index.to(device)
        if self.kind == "hsage":
            return type_pair_means(graph, device)
        if self.kind == "rsage":
            return relation_means(graph, device)
        return (gcn_adjacency(graph) if self.kind == "gcn" else sparse_adjacency(graph)).to(device)

    def forward(self, h: Tensor, graph: GraphView) -> Tensor:
        """h [N, d] -> [N, d] over the adjacency of ``graph``.

        With ``checkpoint`` set (and gradients on) each layer keeps only its input and
        recomputes the rest in the backward pass, as :class:`~brlgraph.nn.brlformer.BRLBlocks` does.
        """
        adj = self.adjacency(graph, h.device)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            if self.checkpoint and torch.is_grad_enabled():
                h = torch.utils.checkpoint.checkpoint(self._layer, conv, norm, h, adj, use_reentrant=False)
            else:
                h = self._layer(conv, norm, h, adj)
        return h

    def _layer(self, conv: nn.Module, norm: nn.Module, h: Tensor, adj: Any) -> Tensor:
        return h + self.dropout(nn.functional.gelu(conv(norm(h), adj)))

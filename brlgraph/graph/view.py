"""One global view of a homogeneous or heterogeneous graph, for building sequences.

A :class:`GraphView` puts all nodes of a graph into one global order, node type by
node type (the order of ``HeteroData.node_types``), so that node ``i`` of type ``t``
has the global index ``offsets[t] + i``. It keeps

- ``indptr`` / ``indices``: the CSR adjacency over all edge types, symmetric (every
  edge is followed both ways), without self-loops or duplicate edges (numpy int64);
- ``node_type`` [N]: the type index of every node (LongTensor);
- ``x_dict``: the features of every node type (``None`` for featureless types);
- ``edge_index`` [2, E]: the same symmetric adjacency as a LongTensor, for GNN layers;
- ``relations``: the directed edges of each edge type of a ``HeteroData`` as given
  (global ids), for relation-aware layers that tell edge types apart.

A homogeneous ``Data`` becomes a view with a single node type named ``"node"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from brlgraph.errors import DataError

HOMOGENEOUS_TYPE = "node"


@dataclass(eq=False)
class Relation:
    """The edges of one edge type, directed as given: ``src[i] -> dst[i]`` (global ids)."""

    edge_type: tuple[str, str, str]
    src_type: int
    dst_type: int
    src: np.ndarray
    dst: np.ndarray


@dataclass(eq=False)  # holds arrays: compare by identity
class GraphView:
    """All nodes of a graph in one global order with a symmetric CSR adjacency.

    Attributes:
        num_nodes: N, the number of nodes over all types.
        indptr: int64 [N + 1], CSR row pointers.
        indices: int64 [nnz], CSR column indices (neighbours, sorted per row).
        node_type: LongTensor [N], the type index of each node.
        node_types: type names; ``node_types[node_type[v]]`` is the type of ``v``.
        offsets: type name -> global index of the type's first node.
        num_nodes_dict: type name -> number of nodes of that type.
        x_dict: type name -> float features [N_t, F_t], or ``None`` when featureless.
        relations: one :class:`Relation` per edge type of a ``HeteroData``, in its
            order (empty for a homogeneous graph).
    """

    num_nodes: int
    indptr: np.ndarray
    indices: np.ndarray
    node_type: Tensor
    node_types: list[str]
    offsets: dict[str, int]
    num_nodes_dict: dict[str, int]
    x_dict: dict[str, Tensor | None] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    _edge_index: Tensor | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_data(cls, data) -> GraphView:
        """Build the view of a ``torch_geometric`` ``Data`` or ``HeteroData`` object."""
        if isinstance(data, GraphView):
            return data
        if hasattr(data, "node_types") and hasattr(data, "edge_types"):
            return cls._from_hetero(data)
        return cls._from_homogeneous(data)

    @classmethod
    def _from_homogeneous(cls, data) -> GraphView:
        n = data.num_nodes
        if n is None:
            raise DataError("the graph has no num_nodes and no x; set data.num_nodes")
        x = getattr(data, "x", None)
        edge_index = getattr(data, "edge_index", None)
        if edge_index is None:
            edge_index = torch.empty(2, 0, dtype=torch.long)
        return cls.from_edge_index(edge_index, int(n), x=x)

    @classmethod
    def _from_hetero(cls, data) -> GraphView:
        node_types = list(data.node_types)
        offsets, num_nodes_dict, x_dict = {}, {}, {}
        total = 0
        for t in node_types:
            n_t = data[t].num_nodes
            if n_t is None:
                raise DataError(f"node type {t!r} has neither num_nodes nor x")
            offsets[t], num_nodes_dict[t] = total, int(n_t)
            x_dict[t] = getattr(data[t], "x", None)
            total += int(n_t)
        rows, cols, relations = [], [], []
        for src, rel, dst in data.edge_types:
            ei = data[src, rel, dst].edge_index
            rows.append(ei[0].numpy() + offsets[src])
            cols.append(ei[1].numpy() + offsets[dst])
            relations.append(Relation((src, rel, dst), node_types.index(src), node_types.index(dst),
                                      rows[-1].astype(np.int64), cols[-1].astype(np.int64)))
        row = np.concatenate(rows) if rows else np.empty(0, np.int64)
        col = np.concatenate(cols) if cols else np.empty(0, np.int64)
        indptr, indices = _symmetric_csr(row, col, total)
        node_type = torch.cat(
            [torch.full((num_nodes_dict[t],), i, dtype=torch.long) for i, t in enumerate(node_types)]
        )
        return cls(total, indptr, indices, node_type, node_types, offsets, num_nodes_dict, x_dict, relations)

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int, x: Tensor | None = None) -> GraphView:
        """A homogeneous view (one node type ``"node"``) of ``edge_index`` [2, E]."""
        ei = edge_index.detach().cpu().numpy().astype(np.int64, copy=False)
        if ei.size and (ei.min() < 0 or ei.max() >= num_nodes):
            raise DataError(f"edge_index refers to nodes outside 0..{num_nodes - 1}")
        indptr, indices = _symmetric_csr(ei[0], ei[1], num_nodes)
        t = HOMOGENEOUS_TYPE
        return cls(
            num_nodes, indptr, indices, torch.zeros(num_nodes, dtype=torch.long), [t],
            {t: 0}, {t: num_nodes}, {t: x},
        )

    # ------------------------------------------------------------------ mapping
    @property
    def is_heterogeneous(self) -> bool:
        return len(self.node_types) > 1

    @property
    def num_edges(self) -> int:
        """Number of directed edges in the symmetric adjacency (each undirected edge twice)."""
        return int(self.indices.shape[0])

    def global_index(self, node_type: str, local: Tensor | np.ndarray | int) -> Tensor:
        """Global indices of the nodes ``local`` of type ``node_type``."""
        if node_type not in self.offsets:
            raise DataError(f"unknown node type {node_type!r}; the graph has {self.node_types}")
        local = torch.as_tensor(local, dtype=torch.long)
        if local.numel() and (local.min() < 0 or local.max() >= self.num_nodes_dict[node_type]):
            raise DataError(f"local index out of range for node type {node_type!r}")
        return local + self.offsets[node_type]

    def local_index(self, global_ids: Tensor) -> tuple[Tensor, Tensor]:
        """(type index, local index) of global node ids (padding ``-1`` stays ``-1``)."""
        g = torch.as_tensor(global_ids, dtype=torch.long)
        valid = g >= 0
        types = torch.where(valid, self.node_type[g.clamp(min=0)], -1)
        starts = torch.tensor([self.offsets[t] for t in self.node_types], dtype=torch.long)
        local = torch.where(valid, g - starts[types.clamp(min=0)], -1)
        return types, local

    @property
    def edge_index(self) -> Tensor:
        """The symmetric adjacency as a LongTensor [2, nnz] (built once, cached)."""
        if self._edge_index is None:
            deg = np.diff(self.indptr)
            row = np.repeat(np.arange(self.num_nodes, dtype=np.int64), deg)
            self._edge_index = torch.from_numpy(np.stack([row, self.indices]))
        return self._edge_index

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)


def _symmetric_csr(row: np.ndarray, col: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the undirected graph with edges (row, col): both directions, no loops, no repeats."""
    row = np.asarray(row, dtype=np.int64)
    col = np.asarray(col, dtype=np.int64)
    keep = row != col
    r = np.concatenate([row[keep], col[keep]])
    c = np.concatenate([col[keep], row[keep]])
    a = sp.csr_matrix((np.ones(r.shape[0], dtype=np.int8), (r, c)), shape=(n, n))
    a.sum_duplicates()
    a.sort_indices()
    return a.indptr.astype(np.int64), a.indices.astype(np.int64)

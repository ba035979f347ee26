"""GraphView: one global node order and a symmetric CSR adjacency of any graph."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import HeteroData

from brlgraph.graph import GraphView


def _small_hetero() -> HeteroData:
    data = HeteroData()
    data["author"].x = torch.randn(3, 2)
    data["paper"].x = torch.randn(4, 5)
    data["author", "writes", "paper"].edge_index = torch.tensor([[0, 0, 2, 2], [1, 3, 3, 3]])  # a repeat
    data["paper", "cites", "paper"].edge_index = torch.tensor([[0, 2], [1, 2]])  # a loop
    return data


def test_hetero_view_orders_types_and_symmetrises_without_loops_or_repeats():
    graph = GraphView.from_data(_small_hetero())
    assert graph.num_nodes == 7 and graph.node_types == ["author", "paper"]
    assert graph.offsets == {"author": 0, "paper": 3} and graph.num_nodes_dict == {"author": 3, "paper": 4}
    assert graph.node_type.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # author a -> paper p is global a -> 3 + p; both directions, sorted, no repeats, no loop
    neighbours = [graph.indices[graph.indptr[v]:graph.indptr[v + 1]].tolist() for v in range(7)]
    assert neighbours == [[4, 6], [], [6], [4], [0, 3], [], [0, 2]]
    assert graph.num_edges == 8 and graph.degree().tolist() == [2, 0, 1, 1, 2, 0, 2]
    assert torch.equal(graph.edge_index, torch.tensor([[0, 0, 2, 3, 4, 4, 6, 6], [4, 6, 6, 4, 0, 3, 0, 2]]))
    assert [r.src_type for r in graph.relations] == [0, 1] and graph.is_heterogeneous


def test_global_and_local_indices_are_inverse():
    graph = GraphView.from_data(_small_hetero())
    ids = graph.global_index("paper", np.array([3, 0]))
    assert ids.tolist() == [6, 3]
    types, local = graph.local_index(torch.tensor([6, 3, 1, -1]))
    assert types.tolist() == [1, 1, 0, -1] and local.tolist() == [3, 0, 1, -1]


def test_homogeneous_view_of_an_edge_index():
    graph = GraphView.from_edge_index(torch.tensor([[0, 1], [1, 1]]), 3)
    assert graph.node_types == ["node"] and not graph.is_heterogeneous and graph.relations == []
    assert graph.indptr.tolist() == [0, 1, 2, 2] and graph.indices.tolist() == [1, 0]

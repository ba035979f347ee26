"""LocalGNNEncoder: the residual GNN layers before the sequence blocks."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from brlgraph.graph import GraphView


@pytest.mark.parametrize("kind", ["gcn", "sage", "gat"])
def test_gnn_encoder_equals_pyg_over_edge_index(kind):
    from torch_geometric.nn import GATConv, GCNConv, SAGEConv

    from brlgraph.nn.local_gnn import LocalGNNEncoder

    data = Data(x=torch.randn(50, 8), edge_index=torch.randint(0, 50, (2, 150)))
    graph = GraphView.from_data(data)  # symmetric, no self-loops, no repeats
    enc = LocalGNNEncoder(8, num_layers=1, kind=kind, heads=2).eval()
    reference = {"gcn": GCNConv(8, 8), "sage": SAGEConv(8, 8), "gat": GATConv(8, 4, heads=2)}[kind]
    reference.load_state_dict(enc.convs[0].state_dict())
    h = torch.randn(50, 8)
    expected = h + torch.nn.functional.gelu(reference(enc.norms[0](h), graph.edge_index))
    torch.testing.assert_close(enc(h, graph), expected, rtol=1e-5, atol=1e-5)
    assert enc.adjacency(graph, h.device) is enc.adjacency(graph, h.device)

"""TypePairSAGEConv and RelationSAGEConv (through LocalGNNEncoder) against their definitions."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.nn.brlformer import BRLFormer
from tests.graph.test_adjacency import _typed_toy
from tests.nn.test_brlformer import SMALL, toy_hetero


def test_type_pair_sage_equals_its_definition():
    from brlgraph.nn.local_gnn import LocalGNNEncoder

    data = toy_hetero()
    graph = GraphView.from_data(data)
    enc = LocalGNNEncoder(8, num_layers=1, kind="hsage", num_types=3).eval()
    conv = enc.convs[0]
    h = torch.randn(graph.num_nodes, 8)
    hn = enc.norms[0](h)
    types = graph.node_type.tolist()
    expected = []
    for v in range(graph.num_nodes):  # h'_v = W_0 h_v + b + sum_s W_{t(v),s} mean_{u in N_s(v)} h_u
        acc = conv.root(hn[v])
        nbrs = graph.indices[graph.indptr[v]:graph.indptr[v + 1]].tolist()
        for s in range(3):
            of_s = [u for u in nbrs if types[u] == s]
            if of_s:
                acc = acc + hn[of_s].mean(0) @ conv.rel[types[v], s]
        expected.append(h[v] + torch.nn.functional.gelu(acc))
    with torch.no_grad():
        torch.testing.assert_close(enc(h, graph), torch.stack(expected), rtol=1e-5, atol=1e-5)
    # a homogeneous graph: one pair, the mean over all neighbours, i.e. SAGEConv
    from torch_geometric.nn import SAGEConv

    homo = GraphView.from_data(Data(x=torch.randn(30, 8), edge_index=torch.randint(0, 30, (2, 90))))
    enc1 = LocalGNNEncoder(8, num_layers=1, kind="hsage").eval()
    sage = SAGEConv(8, 8)
    with torch.no_grad():
        sage.lin_l.weight.copy_(enc1.convs[0].rel[0, 0].t())
        sage.lin_l.bias.copy_(enc1.convs[0].root.bias)
        sage.lin_r.weight.copy_(enc1.convs[0].root.weight)
        h = torch.randn(30, 8)
        ref = h + torch.nn.functional.gelu(sage(enc1.norms[0](h), homo.edge_index))
        torch.testing.assert_close(enc1(h, homo), ref, rtol=1e-5, atol=1e-5)


def test_relation_sage_equals_its_definition():
    from brlgraph.graph import count_relations
    from brlgraph.nn.local_gnn import LocalGNNEncoder

    data = _typed_toy()
    graph = GraphView.from_data(data)
    # cite, ref, writes, and writes reversed (no edge type goes back from paper to author)
    assert count_relations(graph) == 4
    enc = LocalGNNEncoder(6, num_layers=1, kind="rsage", num_relations=4).eval()
    conv = enc.convs[0]
    h = torch.randn(graph.num_nodes, 6)
    hn = enc.norms[0](h)
    off = graph.offsets
    edges = [  # (relation index, source global id, target global id), as the definition reads them
        *[(0, off["paper"] + u, off["paper"] + v) for u, v in data["paper", "cite", "paper"].edge_index.t().tolist()],
        *[(1, off["paper"] + u, off["paper"] + v) for u, v in data["paper", "ref", "paper"].edge_index.t().tolist()],
        *[(2, off["author"] + u, off["paper"] + v) for u, v in data["author", "writes", "paper"].edge_index.t().tolist()],
        *[(3, off["paper"] + v, off["author"] + u) for u, v in data["author", "writes", "paper"].edge_index.t().tolist()],
    ]
    expected = []
    for v in range(graph.num_nodes):  # h'_v = W_0 h_v + b + sum_r W_r mean_{u -r-> v} h_u
        acc = conv.root(hn[v])
        for r in range(4):
            srcs = sorted({u for rr, u, w in edges if rr == r and w == v and u != v})
            if srcs:
                acc = acc + hn[srcs].mean(0) @ conv.rel[r]
        expected.append(h[v] + torch.nn.functional.gelu(acc))
    with torch.no_grad():
        torch.testing.assert_close(enc(h, graph), torch.stack(expected), rtol=1e-5, atol=1e-5)
    # a model on this graph sizes the layer itself; a graph with other relations is refused
    model = BRLFormer.from_data(data, gnn_layers=1, gnn="rsage", **SMALL)
    assert model.gnn.convs[0].num_relations == 4
    other = _typed_toy()
    del other["author", "writes", "paper"]
    assert count_relations(GraphView.from_data(other)) == 2
    with pytest.raises(ConfigError, match="built for 4 relations, the graph has 2"):
        model.node_states(GraphView.from_data(other))


def test_relation_sage_is_type_pair_sage_without_edge_types():
    """A view with no edge types (homogeneous, or each pair of types with one edge type
    each way) gives rsage the relations of hsage, in the same order."""
    from brlgraph.nn.local_gnn import LocalGNNEncoder

    for data in (toy_hetero(), Data(x=torch.randn(25, 6), edge_index=torch.randint(0, 25, (2, 70)))):
        graph = GraphView.from_data(data)
        graph.relations = []  # forget the edge types: one relation per pair of node types
        hs = LocalGNNEncoder(6, num_layers=2, kind="hsage", num_types=len(graph.node_types)).eval()
        pairs = [(t, s) for t, row in enumerate(hs.adjacency(graph, torch.device("cpu"))[0])
                 for s, b in enumerate(row) if b is not None]
        rs = LocalGNNEncoder(6, num_layers=2, kind="rsage", num_relations=len(pairs)).eval()
        with torch.no_grad():
            for a, b in zip(hs.convs, rs.convs, strict=True):
                b.root.load_state_dict(a.root.state_dict())
                b.rel.copy_(torch.stack([a.rel[t, s] for t, s in pairs]))
            rs.norms.load_state_dict(hs.norms.state_dict())
            h = torch.randn(graph.num_nodes, 6)
            torch.testing.assert_close(rs(h, graph), hs(h, graph))

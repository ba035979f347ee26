"""Row-normalised adjacency blocks per relation of a GraphView."""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from brlgraph.graph import GraphView


def _typed_toy() -> HeteroData:
    """Two edge types between papers (each other's reverse, as ACM's cite/ref) and one
    edge type, author -> paper, listed without its reverse."""
    g = torch.Generator().manual_seed(3)
    data = HeteroData()
    data["paper"].x = torch.randn(12, 5, generator=g)
    data["author"].x = torch.randn(7, 4, generator=g)
    cites = torch.stack([torch.randint(0, 12, (20,), generator=g), torch.randint(0, 12, (20,), generator=g)])
    data["paper", "cite", "paper"].edge_index = cites
    data["paper", "ref", "paper"].edge_index = cites.flip(0)
    data["author", "writes", "paper"].edge_index = torch.stack(
        [torch.randint(0, 7, (15,), generator=g), torch.randint(0, 12, (15,), generator=g)])
    data.num_classes = 2
    return data


def _typed_edges(data: HeteroData, graph: GraphView) -> list[tuple[int, int, int]]:
    """(relation, source, target) global ids of ``_typed_toy``, in relation_means' order:
    cite, ref, writes, writes reversed."""
    off = graph.offsets
    cite = data["paper", "cite", "paper"].edge_index.t().tolist()
    ref = data["paper", "ref", "paper"].edge_index.t().tolist()
    writes = data["author", "writes", "paper"].edge_index.t().tolist()
    return [*[(0, off["paper"] + u, off["paper"] + v) for u, v in cite],
            *[(1, off["paper"] + u, off["paper"] + v) for u, v in ref],
            *[(2, off["author"] + u, off["paper"] + v) for u, v in writes],
            *[(3, off["paper"] + v, off["author"] + u) for u, v in writes]]


def test_relation_means_average_each_edge_type_over_distinct_sources():
    from brlgraph.graph.adjacency import count_relations, relation_means

    data = _typed_toy()
    graph = GraphView.from_data(data)
    relations, slices = relation_means(graph, torch.device("cpu"))
    assert len(relations) == count_relations(graph) == 4
    paper, author = graph.node_types.index("paper"), graph.node_types.index("author")
    assert [(t, s) for t, s, _ in relations] == [(paper, paper), (paper, paper), (paper, author), (author, paper)]
    edges = _typed_edges(data, graph)
    for r, (t, s, block) in enumerate(relations):
        expected = torch.zeros(slices[t].stop - slices[t].start, slices[s].stop - slices[s].start)
        for v in range(slices[t].start, slices[t].stop):
            sources = sorted({u for rr, u, w in edges if rr == r and w == v and u != v})  # no loops, no repeats
            for u in sources:
                expected[v - slices[t].start, u - slices[s].start] = 1.0 / len(sources)
        torch.testing.assert_close(block.matrices()[0].to_dense(), expected)


def test_gcn_adjacency_is_the_symmetrically_normalised_adjacency_with_self_loops():
    from brlgraph.graph.adjacency import gcn_adjacency

    graph = GraphView.from_edge_index(torch.tensor([[0, 1, 1, 3], [1, 2, 2, 3]]), 5)  # a repeat, a loop
    a = torch.zeros(5, 5)
    a[0, 1] = a[1, 0] = a[1, 2] = a[2, 1] = 1.0
    a_hat = a + torch.eye(5)
    d = a_hat.sum(1).rsqrt()
    torch.testing.assert_close(gcn_adjacency(graph).to_dense(), d[:, None] * a_hat * d[None, :])

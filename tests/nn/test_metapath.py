"""Type-path (metapath) means: the fast product chain against the definition and the reference."""

from __future__ import annotations

import pytest
import torch

from brlgraph.graph import GraphView
from tests.nn.test_brlformer import toy_hetero


def _walk_means(graph: GraphView, h: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    """Mean of h over a type path, node by node: the definition, no matrices."""
    types = graph.node_type.tolist()

    def mean_from(v: int, rest: tuple[int, ...]) -> torch.Tensor:
        if not rest:
            return h[v]
        nbrs = [u for u in graph.indices[graph.indptr[v]:graph.indptr[v + 1]].tolist() if types[u] == rest[0]]
        if not nbrs:
            return torch.zeros(h.shape[1])
        return torch.stack([mean_from(u, rest[1:]) for u in nbrs]).mean(0)

    return torch.stack([mean_from(v, path[1:]) for v in range(graph.num_nodes) if types[v] == path[0]])


def test_type_path_means_follow_their_definition():
    from brlgraph.graph import type_pair_means
    from brlgraph.nn.metapath import type_path_means

    graph = GraphView.from_data(toy_hetero())  # author 0 - paper 1 - venue 2
    h = torch.randn(graph.num_nodes, 5)
    blocks, slices = type_pair_means(graph, torch.device("cpu"))
    paths, means = type_path_means(h, blocks, slices, start=0, hops=3)
    # every path that exists from an author, shortest first (edges: author-paper, paper-venue)
    assert paths == [(0, 1), (0, 1, 0), (0, 1, 2), (0, 1, 0, 1), (0, 1, 2, 1)]
    assert means.shape == (30, len(paths), 5)
    for j, path in enumerate(paths):
        torch.testing.assert_close(means[:, j], _walk_means(graph, h, path), rtol=1e-5, atol=1e-6)
    none, empty = type_path_means(h, blocks, slices, start=2, hops=0)
    assert none == [] and empty.shape == (4, 0, 5)


@pytest.mark.parametrize("start, hops", [(0, 3), (1, 3), (2, 2), (1, 1)])
def test_path_means_of_some_rows_equal_the_full_means_at_those_rows(start, hops):
    from brlgraph.graph import type_pair_means
    from brlgraph.nn.metapath import type_path_means, type_path_means_reference

    graph = GraphView.from_data(toy_hetero())
    blocks, slices = type_pair_means(graph, torch.device("cpu"))
    n = slices[start].stop - slices[start].start
    rows = torch.tensor([n - 1, 0, 2, 0, n // 2])  # unsorted, with a repeat
    h = torch.randn(graph.num_nodes, 5, requires_grad=True)
    weight = torch.randn(len(rows), 1, 5)
    paths, fast = type_path_means(h, blocks, slices, start, hops, rows)
    (fast * weight).sum().backward()
    grad, h.grad = h.grad.clone(), None
    ref_paths, ref = type_path_means_reference(h, blocks, slices, start, hops, rows)
    (ref * weight).sum().backward()
    assert paths == ref_paths and len(paths) > 0
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, h.grad, rtol=1e-5, atol=1e-6)

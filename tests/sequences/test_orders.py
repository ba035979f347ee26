"""Locality-preserving node orders (spec 4.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.sequences import (
    bandwidth,
    bfs_order,
    inverse_permutation,
    node_order,
    rcm_order,
)


def shuffled_grid(side: int, seed: int = 0) -> GraphView:
    """A side x side grid graph whose node ids are randomly permuted."""
    idx = np.arange(side * side).reshape(side, side)
    edges = np.concatenate(
        [np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()]), np.stack([idx[:-1].ravel(), idx[1:].ravel()])],
        axis=1,
    )
    perm = np.random.default_rng(seed).permutation(side * side)
    return GraphView.from_edge_index(torch.from_numpy(perm[edges]), side * side)


@pytest.mark.parametrize("kind", ["rcm", "bfs", "identity"])
def test_orders_are_permutations(kind):
    graph = shuffled_grid(12)
    # plus two extra components: an isolated node and an edge
    ei = torch.cat([graph.edge_index, torch.tensor([[145], [146]])], 1)
    graph = GraphView.from_edge_index(ei, 147)
    order = node_order(graph, kind)
    assert order.dtype == torch.long
    assert torch.equal(order.sort().values, torch.arange(147))
    pos = inverse_permutation(order)
    assert torch.equal(order[pos], torch.arange(147))


def test_orders_preserve_locality():
    graph = shuffled_grid(20)
    identity = bandwidth(graph, torch.arange(400))
    assert identity > 300  # the shuffle scatters neighbours
    # a grid of side 20 has bandwidth 20 in row order; RCM / BFS get close to that
    assert bandwidth(graph, rcm_order(graph)) <= 40
    assert bandwidth(graph, bfs_order(graph)) <= 40


def test_bfs_order_follows_hops():
    # path 0-1-2-3-4 given in scrambled ids, started from an end
    ei = torch.tensor([[3, 1, 4, 0], [1, 4, 0, 2]])  # 3-1-4-0-2
    graph = GraphView.from_edge_index(ei, 5)
    assert bfs_order(graph, start=3).tolist() == [3, 1, 4, 0, 2]
    with pytest.raises(ConfigError):
        bfs_order(graph, start=7)
    with pytest.raises(ConfigError, match="node order"):
        node_order(graph, "spectral")


@pytest.mark.parametrize("kind", ["rcm", "bfs"])
def test_seeded_orders_break_ties_at_random(kind):
    graph = shuffled_grid(20)
    plain = node_order(graph, kind)
    # A grid has few RCM orders (about one per start corner and direction), so two
    # seeds can draw the same one, and which do can differ between machines: seeds 1
    # and 2 gave the same order on an AMD EPYC (AVX2), different ones on the AVX-512
    # machine the suite ran on before. Eight seeds (4 RCM orders there) must not all agree.
    orders = [node_order(graph, kind, seed=s) for s in range(1, 9)]
    for order in orders:
        assert torch.equal(order.sort().values, torch.arange(400))  # a permutation
        assert bandwidth(graph, order) <= 45  # still local (a grid of side 20: 20 at best)
    assert torch.equal(orders[0], node_order(graph, kind, seed=1))
    assert len({tuple(o.tolist()) for o in orders}) >= 2
    assert any(not torch.equal(o, plain) for o in orders)
    assert torch.equal(node_order(graph, "identity", seed=3), torch.arange(400))

"""Hop-ordered node sequences (spec 4.1) against a breadth-first reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
from torch_geometric.data import HeteroData

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.seeding import derive_seed
from brlgraph.sequences import HopSequenceSampler, hop_ordered_sequences


def random_view(n: int, m: int, seed: int, isolated: int = 0) -> GraphView:
    """Random graph on n nodes with m random edges; the last ``isolated`` nodes have none."""
    rng = np.random.default_rng(seed)
    k = n - isolated
    ei = torch.from_numpy(rng.integers(0, k, size=(2, m)))
    return GraphView.from_edge_index(ei, n)


def distances(graph: GraphView) -> np.ndarray:
    a = sp.csr_matrix(
        (np.ones(graph.num_edges), graph.indices, graph.indptr), shape=(graph.num_nodes,) * 2
    )
    return shortest_path(a, unweighted=True, directed=False)


def check_against_bfs(graph: GraphView, seqs, max_hops: int) -> None:
    dist = distances(graph)
    S = seqs.seq_len
    for i in range(len(seqs)):
        v = int(seqs.ids[i, 0])
        mask = seqs.mask[i].numpy()
        n_valid = int(mask.sum())
        assert mask[:n_valid].all() and not mask[n_valid:].any(), "valid tokens form a prefix"
        ids = seqs.ids[i, :n_valid].numpy()
        hops = seqs.hops[i, :n_valid].numpy()
        assert hops[0] == 0 and (np.diff(hops) >= 0).all(), "hop order non-decreasing"
        assert len(set(ids.tolist())) == n_valid, "no duplicates"
        np.testing.assert_array_equal(dist[v, ids], hops)  # each node really at its hop
        assert (seqs.ids[i, n_valid:] == -1).all() and (seqs.hops[i, n_valid:] == -1).all()
        reachable = np.flatnonzero(dist[v] <= max_hops)
        if n_valid < S:  # not full: everything within max_hops is there
            assert set(ids.tolist()) == set(reachable.tolist())
        else:  # full: every hop before the last one is complete
            last = hops[-1]
            inner = np.flatnonzero(dist[v] < last)
            assert set(inner.tolist()) <= set(ids.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("S,max_hops", [(8, 4), (30, 2), (64, 4), (5, 0)])
def test_matches_bfs_reference(seed, S, max_hops):
    graph = random_view(60, 70 + 20 * seed, seed, isolated=3)
    seqs = hop_ordered_sequences(graph, None, S, max_hops=max_hops, seed=seed, chunk_size=17)
    assert seqs.ids.shape == (60, S)
    check_against_bfs(graph, seqs, max_hops)
    assert (seqs.hops <= max_hops).all()


def test_isolated_and_small_graph():
    graph = GraphView.from_edge_index(torch.tensor([[0, 1], [1, 2]]), 4)  # node 3 isolated
    seqs = hop_ordered_sequences(graph, None, 10)
    assert seqs.mask.sum(1).tolist() == [3, 3, 3, 1]
    assert seqs.ids[3].tolist() == [3] + [-1] * 9
    assert seqs.node_types[3, 1:].eq(-1).all() and seqs.node_types[3, 0] == 0
    assert seqs.ids[0, :3].tolist() == [0, 1, 2] and seqs.hops[0, :3].tolist() == [0, 1, 2]


def test_seed_determinism_and_independence_of_chunking():
    graph = random_view(300, 1500, 0)
    a = hop_ordered_sequences(graph, None, 16, seed=5, chunk_size=1000)
    b = hop_ordered_sequences(graph, None, 16, seed=5, chunk_size=7)
    c = hop_ordered_sequences(graph, None, 16, seed=6)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.hops, b.hops)
    assert not torch.equal(a.ids, c.ids)
    # a target's sequence does not depend on the other targets
    sub = torch.tensor([250, 3, 17])
    d = hop_ordered_sequences(graph, sub, 16, seed=5)
    assert torch.equal(d.ids, a.ids[sub])
    # but other seeds give the same hop multiset: sampling happens only inside a hop
    assert torch.equal(a.hops, c.hops)


def test_sampling_within_a_hop_is_uniform():
    # target 0 with 10 neighbours, budget 3 at hop 1: each neighbour kept with p = 0.3
    ei = torch.stack([torch.zeros(10, dtype=torch.long), torch.arange(1, 11)])
    graph = GraphView.from_edge_index(ei, 11)
    counts = np.zeros(11)
    trials = 2000
    for seed in range(trials):
        ids = hop_ordered_sequences(graph, torch.tensor([0]), 4, seed=seed).ids[0, 1:]
        counts[ids.numpy()] += 1
    freq = counts[1:] / trials
    # binomial sd = sqrt(.3 * .7 / 2000) ~ 0.01; 5 sd
    assert np.abs(freq - 0.3).max() < 0.05, freq
    # and the order within the hop is not the node order
    first = [int(hop_ordered_sequences(graph, torch.tensor([0]), 11, seed=s).ids[0, 1]) for s in range(50)]
    assert len(set(first)) > 5


def test_sampler_resamples_per_epoch():
    graph = random_view(200, 1000, 1)
    sampler = HopSequenceSampler(graph, torch.arange(50), 12, seed=3)
    e0, e0b, e1 = sampler(0), sampler(0), sampler.resample(1)
    assert e0 is e0b
    assert torch.equal(e0.ids, hop_ordered_sequences(graph, torch.arange(50), 12, seed=3).ids)
    assert e1.seed == derive_seed(3, "sequences", 1) != 3
    assert not torch.equal(e0.ids, e1.ids)
    check_against_bfs(graph, e1, 4)


def test_rows_and_errors():
    graph = random_view(20, 40, 2)
    seqs = hop_ordered_sequences(graph, None, 6)
    part = seqs[torch.tensor([4, 2])]
    assert torch.equal(part.ids, seqs.ids[[4, 2]]) and len(part) == 2
    assert torch.equal(part.targets, torch.tensor([4, 2]))
    with pytest.raises(ConfigError, match=r"sequences\.seq_len \(seq_len=\) must be >= 1, got 0"):
        hop_ordered_sequences(graph, None, 0)
    with pytest.raises(ConfigError, match="target ids"):
        hop_ordered_sequences(graph, torch.tensor([20]), 4)


def _authors_papers_venues() -> HeteroData:
    data = HeteroData()
    data["author"].x = torch.randn(3, 4)
    data["paper"].x = torch.randn(4, 5)
    data["venue"].num_nodes = 2
    data["author", "writes", "paper"].edge_index = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 3]])
    data["paper", "in", "venue"].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    return data


def test_heterogeneous_mapping():
    graph = GraphView.from_data(_authors_papers_venues())
    assert graph.num_nodes == 9 and graph.node_types == ["author", "paper", "venue"]
    assert graph.offsets == {"author": 0, "paper": 3, "venue": 7}
    assert graph.node_type.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    g = graph.global_index("paper", torch.tensor([0, 3]))
    assert g.tolist() == [3, 6]
    types, local = graph.local_index(torch.tensor([6, 8, -1]))
    assert types.tolist() == [1, 2, -1] and local.tolist() == [3, 1, -1]
    # author 0 -> paper 0 (hop 1) -> author 1, venue 0 (hop 2) -> paper 1 (hop 3) ...
    seqs = hop_ordered_sequences(graph, torch.tensor([0]), 9, node_type="author")
    n = int(seqs.mask.sum())
    ids, hops = seqs.ids[0, :n].tolist(), seqs.hops[0, :n].tolist()
    assert ids[:2] == [0, 3] and hops[:2] == [0, 1]
    assert set(ids[2:4]) == {1, 7} and hops[2:4] == [2, 2]
    assert torch.equal(seqs.node_types[0, :n], graph.node_type[seqs.ids[0, :n]])
    check_against_bfs(graph, hop_ordered_sequences(graph, None, 9), 4)
    with pytest.raises(Exception, match="unknown node type"):
        graph.global_index("term", 0)


@pytest.mark.parametrize("factor", [0.05, 0.5])
def test_priority_prefilter_gives_the_exact_result(monkeypatch, factor):
    import brlgraph.sequences.hop_ordered as ho

    graph = random_view(400, 4000, 7, isolated=5)  # avg degree 20: hop 2 has ~400 candidates
    monkeypatch.setattr(ho, "_KEEP_FACTOR", float("inf"))  # never filter
    exact = hop_ordered_sequences(graph, None, 48, seed=11)
    monkeypatch.setattr(ho, "_KEEP_FACTOR", factor)  # filter hard: many rows redone
    monkeypatch.setattr(ho, "_KEEP_SLACK", 0.0)
    fast = hop_ordered_sequences(graph, None, 48, seed=11)
    assert torch.equal(exact.ids, fast.ids) and torch.equal(exact.hops, fast.hops)
    check_against_bfs(graph, fast, 4)


def test_threads_give_the_same_result():
    graph = random_view(500, 3000, 4)
    one = hop_ordered_sequences(graph, None, 20, seed=2, chunk_size=64, num_workers=1)
    two = hop_ordered_sequences(graph, None, 20, seed=2, chunk_size=64, num_workers=2)
    assert torch.equal(one.ids, two.ids) and torch.equal(one.hops, two.hops)


"""Directed hop-ordered sequences (BRLConv's context) against a directed BFS reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path

from brlgraph.errors import ConfigError, DataError
from brlgraph.sequences import DirectedSequences, directed_hop_sequences


def random_edges(n: int, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, m), generator=g)


def in_distances(edge_index: torch.Tensor, n: int) -> np.ndarray:
    """dist[v, u]: length of the shortest directed path u -> ... -> v (row 0 sends to row 1)."""
    src, dst = edge_index.numpy()
    a = sp.csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    return shortest_path(a, unweighted=True, directed=True).T


def check_against_bfs(edge_index: torch.Tensor, n: int, seqs: DirectedSequences, max_hops: int) -> None:
    dist = in_distances(edge_index, n)
    S = seqs.ids.shape[1]
    for v in range(n):
        mask = seqs.mask[v].numpy()
        k = int(mask.sum())
        assert mask[:k].all() and not mask[k:].any(), "valid tokens form a prefix"
        ids, hops = seqs.ids[v, :k].numpy(), seqs.hops[v, :k].numpy()
        assert ids[0] == v and hops[0] == 0
        assert (np.diff(hops) >= 0).all(), "hop order non-decreasing"
        assert len(set(ids.tolist())) == k, "no repeats"
        np.testing.assert_array_equal(dist[v, ids[1:]], hops[1:])  # at its hop, along the edges
        assert (seqs.ids[v, k:] == -1).all() and (seqs.hops[v, k:] == -1).all()
        reach = {u for u in np.flatnonzero(dist[v] <= max_hops).tolist() if u != v}
        if k < S:  # not full: everything that reaches v within max_hops is there
            assert set(ids[1:].tolist()) == reach
        else:  # full: every hop before the last one is complete
            inner = {u for u in np.flatnonzero(dist[v] < hops[-1]).tolist() if u != v}
            assert inner <= set(ids.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("S,max_hops", [(6, 4), (20, 2), (64, 4), (4, 0), (1, 3)])
def test_matches_directed_bfs(seed, S, max_hops):
    n = 50
    ei = random_edges(n - 3, 90 + 20 * seed, seed)  # the last 3 nodes are isolated
    seqs = directed_hop_sequences(ei, n, S, max_hops=max_hops, seed=seed)
    assert seqs.ids.shape == seqs.hops.shape == (n, S)
    check_against_bfs(ei, n, seqs, max_hops)


def test_a_directed_path_reaches_only_downstream_nodes():
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])  # 0 -> 1 -> 2 -> 3
    seqs = directed_hop_sequences(ei, 4, 4)
    assert seqs.ids[3].tolist() == [3, 2, 1, 0] and seqs.hops[3].tolist() == [0, 1, 2, 3]
    assert seqs.ids[0].tolist() == [0, -1, -1, -1]  # nothing sends to node 0
    back = directed_hop_sequences(ei, 4, 4, flow="target_to_source")
    assert back.ids[0].tolist() == [0, 1, 2, 3] and back.ids[3].tolist() == [3, -1, -1, -1]
    flipped = directed_hop_sequences(ei.flip(0), 4, 4)
    assert torch.equal(back.ids, flipped.ids) and torch.equal(back.hops, flipped.hops)


def test_repeats_self_loops_and_edge_order_do_not_matter():
    ei = random_edges(40, 120, 3)
    base = directed_hop_sequences(ei, 40, 12, seed=5)
    perm = torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(0))
    noisy = torch.cat([ei[:, perm], ei[:, :30], torch.arange(40).repeat(2, 1)], 1)
    again = directed_hop_sequences(noisy, 40, 12, seed=5)
    assert torch.equal(base.ids, again.ids) and torch.equal(base.hops, again.hops)


def test_a_subgraph_holding_the_in_neighbourhood_gives_the_same_sequences():
    """What a NeighborLoader batch relies on: with global ids, a node whose whole
    max_hops in-neighbourhood is present gets the sequence it gets on the full graph,
    however the batch numbers its nodes."""
    n, max_hops = 80, 2
    ei = random_edges(n, 260, 7)
    full = directed_hop_sequences(ei, n, 10, max_hops=max_hops, seed=3)
    dist = in_distances(ei, n)
    seeds = torch.tensor([5, 17, 42])
    keep = torch.from_numpy((dist[seeds.numpy()] <= max_hops).any(0))
    # the batch's own numbering: a shuffle of the kept nodes, seeds first
    others = keep.clone()
    others[seeds] = False
    rest = others.nonzero().view(-1)
    rest = rest[torch.randperm(rest.numel(), generator=torch.Generator().manual_seed(1))]
    n_id = torch.cat([seeds, rest])
    local = torch.full((n,), -1)
    local[n_id] = torch.arange(n_id.numel())
    inside = keep[ei[0]] & keep[ei[1]]
    sub = local[ei[:, inside]]
    part = directed_hop_sequences(sub, n_id.numel(), 10, max_hops=max_hops, seed=3, node_ids=n_id)
    ids = torch.where(part.mask, n_id[part.ids.clamp(min=0)], -1)
    assert torch.equal(ids[:3], full.ids[seeds]) and torch.equal(part.hops[:3], full.hops[seeds])
    # without the global ids, the same nodes at the same hops, in another order
    plain = directed_hop_sequences(sub, n_id.numel(), 10, max_hops=max_hops, seed=3)
    assert torch.equal(plain.hops[:3], full.hops[seeds])


def test_sampling_within_a_hop_is_uniform():
    """2,000 stars of 20 senders each, S = 6: 5 of 20 senders drawn per star."""
    stars, leaves, S = 2000, 20, 6
    centre = torch.arange(stars) * (leaves + 1)
    src = (centre[:, None] + 1 + torch.arange(leaves)).reshape(-1)
    dst = centre.repeat_interleave(leaves)
    seqs = directed_hop_sequences(torch.stack([src, dst]), stars * (leaves + 1), S, seed=11)
    picked = seqs.ids[centre, 1:] - centre[:, None] - 1  # leaf index 0..19 per star
    counts = torch.bincount(picked.reshape(-1), minlength=leaves).double()
    expected, sd = stars * (S - 1) / leaves, (stars * 0.25 * 0.75) ** 0.5
    assert (counts - expected).abs().max() < 5 * sd, counts
    first = torch.bincount(picked[:, 0], minlength=leaves).double()  # order within the hop
    assert (first - stars / leaves).abs().max() < 5 * (stars * 0.05 * 0.95) ** 0.5, first
    other = directed_hop_sequences(torch.stack([src, dst]), stars * (leaves + 1), S, seed=12)
    assert not torch.equal(other.ids, seqs.ids)


def test_bipartite_has_one_hop_into_the_sources():
    ei = torch.tensor([[0, 1, 2, 2, 3], [0, 0, 1, 1, 1]])  # 4 sources -> 3 destinations
    seqs = directed_hop_sequences(ei, (4, 3), 5)
    assert seqs.ids.shape == (3, 5)
    assert seqs.ids[:, 0].tolist() == [0, 1, 2]  # each destination first
    assert sorted(seqs.ids[0, 1:3].tolist()) == [0, 1] and (seqs.hops[0, 1:3] == 1).all()
    assert sorted(seqs.ids[1, 1:3].tolist()) == [2, 3]
    assert seqs.ids[2].tolist() == [2, -1, -1, -1, -1]
    # source 0 and destination 0 are different nodes: nothing is dropped as "itself"
    assert seqs.mask[0].sum() == 3


def test_rows_and_device_helpers():
    seqs = directed_hop_sequences(random_edges(10, 30, 0), 10, 4)
    part = seqs.rows(torch.tensor([3, 1]))
    assert torch.equal(part.ids, seqs.ids[[3, 1]]) and torch.equal(part.mask, seqs.mask[[3, 1]])
    assert isinstance(seqs.to("cpu"), DirectedSequences)


def test_bad_inputs_name_the_problem():
    ei = torch.tensor([[0, 1], [1, 5]])
    with pytest.raises(DataError, match="outside"):
        directed_hop_sequences(ei, 4, 3)
    with pytest.raises(DataError, match="LongTensor"):
        directed_hop_sequences(ei.float(), 6, 3)
    with pytest.raises(DataError, match=r"\[2, E\]"):
        directed_hop_sequences(torch.zeros(3, 2, dtype=torch.long), 6, 3)
    with pytest.raises(ConfigError, match="flow"):
        directed_hop_sequences(ei, 6, 3, flow="both")
    with pytest.raises(ConfigError, match="seq_len"):
        directed_hop_sequences(ei, 6, 0)
    with pytest.raises(DataError, match="node_ids"):
        directed_hop_sequences(ei, 6, 3, node_ids=torch.arange(5))

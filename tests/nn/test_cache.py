"""LastGraphCache: one derived value per (graph, device), dropped by copies."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from brlgraph.graph import GraphView
from brlgraph.nn.brlformer import BRLFormer, BRLGraphSequenceModel
from brlgraph.nn.cache import LastGraphCache
from brlgraph.sequences import hop_ordered_sequences
from tests.nn.test_brlformer import SMALL, toy_hetero


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.calls


def test_builds_once_per_graph_and_device():
    graph, other = GraphView.from_data(toy_hetero(0)), GraphView.from_data(toy_hetero(0))
    cache, build = LastGraphCache[int](), Counter()
    assert cache.get(graph, "cpu", build) == 1
    assert cache.get(graph, torch.device("cpu"), build) == 1  # same device, spelled differently
    assert cache.get(other, "cpu", build) == 2  # equal data, another object: built again
    assert cache.get(other, "meta", build) == 3  # another device
    assert cache.get(graph, "cpu", build) == 4  # one entry: the first graph was replaced
    assert build.calls == 4


def test_a_failed_build_leaves_nothing_stale():
    graph = GraphView.from_data(toy_hetero(0))
    cache = LastGraphCache[int]()
    cache.get(graph, "cpu", lambda: 1)

    def fail() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get(graph, "meta", fail)
    assert cache.get(graph, "cpu", lambda: 2) == 2  # the old entry is gone, not served


@pytest.mark.parametrize("kw", [dict(gnn_layers=1, gnn="hsage"),
                                dict(gnn_layers=1, gnn="gcn", path_tokens=2)])
def test_model_copies_start_empty_and_agree(kw):
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, **SMALL, **kw).eval()
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author", max_hops=3)
    before = model(graph, seqs)
    filled = [c for c in (model._path_blocks, model.gnn._adjacency)
              if repr(c).endswith("(filled)")]
    assert filled  # the forward pass used at least one cache
    assert sum(repr(c).endswith("(filled)") for c in model.encoder._feature_cache) == 2  # 2 types with x
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        caches = (twin._path_blocks, twin.gnn._adjacency, *twin.encoder._feature_cache)
        assert all(repr(c).endswith("(empty)") for c in caches)  # no graph copied along
        torch.testing.assert_close(twin(graph, seqs), before)


def test_graph_model_order_is_cached_per_graph():
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLGraphSequenceModel.from_data(data, **SMALL)
    first = model.node_permutation(graph)
    assert model.node_permutation(graph) is first
    again = model.node_permutation(GraphView.from_data(data))
    assert again is not first and torch.equal(again, first)

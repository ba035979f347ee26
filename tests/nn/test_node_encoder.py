"""NodeInputEncoder: per-type input projections, sparse and dense feature paths."""

from __future__ import annotations

import torch

from brlgraph.graph import GraphView
from brlgraph.nn.brlformer import BRLFormer
from brlgraph.sequences import hop_ordered_sequences
from tests.nn.test_brlformer import SMALL, toy_hetero


def test_sparse_feature_path_equals_dense(monkeypatch):
    import brlgraph.nn.node_encoder as enc

    data = toy_hetero()
    data["paper"].x = data["paper"].x * (torch.rand(50, 9) < 0.05)  # bag-of-words-like
    graph = GraphView.from_data(data)
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author")
    model = BRLFormer.from_data(data, **SMALL)
    outs, grads = [], []
    for density in (0.0, 1.0):  # 0: all dense, 1: sparse for < 100 % non-zeros
        monkeypatch.setattr(enc, "SPARSE_DENSITY", density)
        for cache in model.encoder._feature_cache:
            cache.clear()
        model.zero_grad()
        out = model(graph, seqs)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(model.encoder.proj[1].weight.grad.clone())
    paper = graph.node_types.index("paper")
    assert isinstance(model.encoder._features(paper, data["paper"].x, torch.device("cpu")), enc.SparseMatrix)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)

"""The graph as one sequence trained on chunks of its order (sequences.chunk_size)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brlgraph.data.synthetic import sbm_graph
from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.train.chunked import ChunkedGraphSequenceTask, induced_view
from brlgraph.train.config import Config, build_config
from brlgraph.train.experiment import GraphSequenceTask, build_task
from brlgraph.train.loop import fit


def _config(chunk_size: int) -> Config:
    cfg = Config()
    cfg.data.name = "20News"  # a graph-as-one-sequence data set: the keys below are its own
    m = cfg.model
    m.hidden_channels, m.heads, m.gnn, m.gnn_layers, m.window, m.reservoir_size = 16, 2, "hsage", 1, 4, 4
    m.dropout, m.input_dropout, m.logit_norm = 0.0, 0.0, 0.0
    cfg.sequences.resample, cfg.sequences.chunk_size = False, chunk_size
    cfg.train.lr, cfg.train.monitor = 0.02, "val_accuracy"
    return cfg


@pytest.fixture(scope="module")
def data():
    return sbm_graph(1200, num_features=16, signal=0.4, seed=2)


def test_induced_view_keeps_the_edges_inside(data):
    graph = GraphView.from_data(data)
    nodes = np.random.default_rng(0).permutation(graph.num_nodes)[:300]
    view = induced_view(graph, nodes)
    inside = set(nodes.tolist())
    expected = {(a, b) for a, b in graph.edge_index.t().tolist() if a in inside and b in inside}
    got = {(int(nodes[a]), int(nodes[b])) for a, b in view.edge_index.t().tolist()}
    assert got == expected and view.num_nodes == 300


def test_one_chunk_is_the_whole_sequence(data):
    torch.manual_seed(0)
    whole = GraphSequenceTask(data, _config(0))
    torch.manual_seed(0)
    chunked = build_task(data, _config(data.num_nodes))
    assert isinstance(chunked, ChunkedGraphSequenceTask) and chunked.steps_per_epoch() == 1
    # the same sequence, the GNN's sums in another order
    assert torch.allclose(whole.logits("test"), chunked.logits("test"), atol=1e-5)


def test_chunks_cover_the_order_and_train(data):
    torch.manual_seed(0)
    task = ChunkedGraphSequenceTask(data, _config(400))
    order = task.model.node_permutation(task.graph).numpy()
    assert task.steps_per_epoch() == 3 and np.array_equal(np.concatenate(task.chunks), order)
    assert sorted(task.train_batches(0)) == [0, 1, 2]
    config = _config(400)
    config.train.epochs = config.train.patience = 6
    summary = fit(task, config, progress=False)
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < 0.7 * losses[0]
    assert task.evaluate("test")["accuracy"] > 0.5  # 10 classes


def test_chunks_need_one_fixed_order(data):
    config = _config(400)
    config.sequences.resample = True
    with pytest.raises(ConfigError, match="resample = false"):
        ChunkedGraphSequenceTask(data, config)
    with pytest.raises(ConfigError, match="sequences.chunk_size"):
        build_config("DBLP", None, ["sequences.chunk_size=100"])

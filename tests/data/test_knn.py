"""knn_graph against scikit-learn's kneighbors_graph, and its documented semantics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.neighbors import kneighbors_graph

from brlgraph.data import knn_graph
from brlgraph.errors import ConfigError, DataError


def sklearn_edges(x, k, metric, loop, symmetric):
    """scikit-learn's graph as sorted keys ``query * n + neighbour``."""
    adjacency = kneighbors_graph(x, k, metric=metric, include_self=loop)
    if symmetric:
        adjacency = adjacency.maximum(adjacency.T)
    coo = adjacency.tocoo()
    return np.unique(coo.row.astype(np.int64) * x.shape[0] + coo.col)


def keys(edge_index, n):
    """Our edge_index is [neighbour, query]: the same keys as scikit-learn's A[query, neighbour]."""
    return np.sort((edge_index[1] * n + edge_index[0]).numpy())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("loop", [True, False])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 37, None])
def test_matches_scikit_learn(metric, loop, symmetric, chunk_size):
    x = np.random.default_rng(0).standard_normal((300, 16))
    edge_index = knn_graph(x, 6, metric, loop=loop, symmetric=symmetric, chunk_size=chunk_size)
    assert np.array_equal(keys(edge_index, 300), sklearn_edges(x, 6, metric, loop, symmetric))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_sparse_float32_and_tensor_inputs(metric):
    rng = np.random.default_rng(1)
    dense = rng.random((200, 30)) * (rng.random((200, 30)) < 0.5)
    expected = sklearn_edges(dense, 4, metric, True, False)
    for x in (sp.csr_matrix(dense), sp.coo_matrix(dense), torch.from_numpy(dense)):
        assert np.array_equal(keys(knn_graph(x, 4, metric, symmetric=False, chunk_size=16), 200), expected)
    as32 = knn_graph(dense.astype(np.float32), 4, metric, symmetric=False)
    assert len(np.intersect1d(keys(as32, 200), expected)) >= 0.99 * len(expected)


def test_loop_and_direction_semantics():
    # Points on a line: 0, 1, 3, 7. Without self, the nearest of 0 is 1, of 3 is 1, ...
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    no_loop = knn_graph(x, 1, "euclidean", loop=False, symmetric=False)
    assert no_loop.tolist() == [[1, 0, 1, 2], [0, 1, 2, 3]]  # [neighbour, query]
    with_loop = knn_graph(x, 2, "euclidean", loop=True, symmetric=False)
    assert with_loop.shape == (2, 8)
    assert set(map(tuple, with_loop.t().tolist())) == {(i, i) for i in range(4)} | set(
        map(tuple, no_loop.t().tolist()))
    assert knn_graph(x, 1, loop=True).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]  # k=1: self only
    sym = knn_graph(x, 1, "euclidean", loop=False, symmetric=True)
    pairs = set(map(tuple, sym.t().tolist()))
    assert pairs == {(1, 0), (0, 1), (1, 2), (2, 1), (2, 3), (3, 2)}
    assert sym.shape[1] == len(pairs)  # each edge once


def test_duplicate_points_keep_their_self_loop():
    x = np.ones((5, 3))
    edge_index = knn_graph(x, 2, "euclidean", loop=True, symmetric=False)
    loops = edge_index[0][edge_index[0] == edge_index[1]]
    assert sorted(loops.tolist()) == [0, 1, 2, 3, 4]  # each point its own first neighbour
    assert edge_index.shape == (2, 10)


def test_zero_rows_under_cosine_are_far_from_everything():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 0.0], [0.0, 1.0]])
    edge_index = knn_graph(x, 1, "cosine", loop=False, symmetric=False)
    assert edge_index[0, 0] == 1 and edge_index[0, 1] == 0


def test_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ConfigError, match="metric"):
        knn_graph(x, 2, "manhattan")
    with pytest.raises(ConfigError, match="k=4 impossible"):
        knn_graph(x, 4, loop=False)
    with pytest.raises(ConfigError, match="k=0"):
        knn_graph(x, 0)
    assert knn_graph(x, 4, loop=True, symmetric=False).shape == (2, 16)
    with pytest.raises(DataError, match="NaN"):
        knn_graph(np.array([[0.0], [np.nan]]), 1)
    with pytest.raises(DataError, match="matrix"):
        knn_graph(np.zeros(3), 1)

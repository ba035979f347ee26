"""20 Newsgroups on the real bydate archive: NodeFormer's 9,607 x 236, 10 classes, and
a kNN graph equal to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.neighbors import NearestNeighbors

from brlgraph.data import load_20news
from brlgraph.data.newsgroups import GROUPS, read_20news_archive
from brlgraph.errors import DataError


@pytest.fixture(scope="session")
def news(shared_data, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRLGRAPH_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_20news(shared_data, seed=0), load_20news(shared_data, seed=1)


def test_sizes(news):
    data, _ = news
    assert data.x.shape == (9607, 236) and data.x.dtype == torch.float32
    assert data.num_classes == 10 and data.class_names == sorted(GROUPS)
    assert sorted(data.y.unique().tolist()) == list(range(10))
    assert data.edge_index.shape == (2, 9607 * 5)  # directed, self included: n * k


def test_split_is_random_half_quarter_quarter(news):
    a, b = news
    n = a.num_nodes
    for data in (a, b):
        sizes = [int(data[m].sum()) for m in ("train_mask", "val_mask", "test_mask")]
        assert sizes == [n // 2, n // 4, n - n // 2 - n // 4]
        assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()
    assert not torch.equal(a.train_mask, b.train_mask)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)


def test_knn_graph_equals_scikit_learn(news, shared_data):
    """Same neighbour distances for every document as sklearn's kNN on sklearn's own features;
    the neighbour sets themselves differ only where distances tie (duplicate posts)."""
    data, _ = news
    documents, labels = read_20news_archive(shared_data / "20news" / "20news-bydate.tar.gz")
    counts = CountVectorizer(stop_words="english", min_df=0.05).fit_transform(documents)
    x = TfidfTransformer(smooth_idf=False).fit_transform(counts).toarray()
    assert np.array_equal(labels, data.y.numpy())
    assert np.allclose(x, data.x.numpy(), atol=1e-6)
    sk_dist, sk_index = NearestNeighbors(n_neighbors=5).fit(x).kneighbors(x)
    neighbours = data.edge_index[0].view(-1, 5).numpy()  # sorted by query
    assert np.array_equal(data.edge_index[1].view(-1, 5)[:, 0].numpy(), np.arange(len(x)))
    ours = np.sort(np.linalg.norm(x[neighbours] - x[:, None, :], axis=2), axis=1)
    assert np.allclose(ours, sk_dist, atol=1e-6)  # sklearn computes distances via dot products
    same = np.array([set(a) == set(b) for a, b in zip(neighbours.tolist(), sk_index.tolist(), strict=True)])
    assert same.mean() > 0.99
    for row in np.flatnonzero(~same):  # any difference is a tie at the k-th distance
        assert np.isclose(sk_dist[row, -1], np.partition(
            np.linalg.norm(x - x[row], axis=1), 5)[5], atol=1e-6)


def test_missing_archive(tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("BRLGRAPH_DATA", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sk"))
    with pytest.raises(DataError, match=r"20news/20news-bydate\.tar\.gz"):
        load_20news(tmp_path)
    bad = tmp_path / "20news" / "20news-bydate.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read the 20 Newsgroups archive"):
        load_20news(tmp_path)
    assert not [p for p in cache_dir.rglob("*") if p.is_file()]

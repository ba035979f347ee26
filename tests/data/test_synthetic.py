"""Stochastic block model graphs: the sizes, homophily and split they are drawn with."""

from __future__ import annotations

import pytest
import torch

from brlgraph.data.synthetic import sbm_graph
from brlgraph.errors import DataError


def test_sbm_has_the_requested_shape_homophily_and_split():
    data = sbm_graph(4000, num_classes=5, avg_degree=6.0, num_features=8, homophily=0.7, seed=1)
    assert data.x.shape == (4000, 8) and data.x.dtype == torch.float32
    assert data.edge_index.shape == (2, 12000)  # N * avg_degree / 2 undirected edges, each once
    assert data.y.min() >= 0 and data.y.max() < 5 and data.num_classes == 5 and data.name == "SBM-4000"
    # an edge joins its own class with probability homophily + (1 - homophily) / C
    same = (data.y[data.edge_index[0]] == data.y[data.edge_index[1]]).float().mean()
    assert abs(float(same) - (0.7 + 0.3 / 5)) < 0.02
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask])
    assert torch.equal(masks.sum(0), torch.ones(4000, dtype=torch.long))
    assert masks.sum(1).tolist() == [2000, 1000, 1000]


def test_sbm_features_carry_the_class_in_the_neighbour_mean():
    data = sbm_graph(3000, num_classes=3, num_features=16, signal=0.5, homophily=1.0, seed=0)
    centroids = torch.stack([data.x[data.y == c].mean(0) for c in range(3)])
    nearest = torch.cdist(data.x, centroids).argmin(1)
    assert float((nearest == data.y).float().mean()) > 0.5  # far better than 1/3 by chance


def test_sbm_is_seeded_and_checks_its_arguments():
    a, b, c = sbm_graph(200, seed=5), sbm_graph(200, seed=5), sbm_graph(200, seed=6)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert not torch.equal(a.edge_index, c.edge_index)
    with pytest.raises(DataError, match="num_classes"):
        sbm_graph(5, num_classes=10)
    with pytest.raises(DataError, match="homophily"):
        sbm_graph(100, homophily=1.5)

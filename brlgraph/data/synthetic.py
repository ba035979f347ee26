"""Synthetic graphs of any size, for measuring how training scales with the number of nodes.

:func:`sbm_graph` draws a stochastic block model: every node has one of C classes,
each undirected edge joins a random node to a node of its own class with probability
``homophily`` and to a uniformly random node otherwise, so the average degree is
``avg_degree`` and the graph is locally clustered by class. Features are a class
centroid plus Gaussian noise, the centroid too weak to read from one node alone
(:data:`DEFAULT_SIGNAL`: a linear model on a node's own features reaches about 40 %
accuracy on 10 classes) and clear in the mean over the node's neighbours: the label
signal needs the graph. Everything is drawn with numpy from one seed in O(N + E)
time and memory, 10^6 nodes and 5 x 10^6 edges in a few seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from brlgraph.errors import DataError

#: scale of the class centroids against unit noise per feature (see the module doc)
DEFAULT_SIGNAL = 0.12


def sbm_graph(num_nodes: int, *, num_classes: int = 10, avg_degree: float = 10.0,
              num_features: int = 128, homophily: float = 0.8, signal: float = DEFAULT_SIGNAL,
              split: tuple[float, float] = (0.5, 0.25), seed: int = 0):
    """A stochastic block model as a ``torch_geometric`` ``Data``.

    Returns ``Data`` with ``x`` [N, F] (float32), ``edge_index`` [2, E] (each undirected
    edge once; loops and repeats are possible and dropped by :class:`~brlgraph.graph.GraphView`),
    ``y`` [N], boolean ``train_mask`` / ``val_mask`` / ``test_mask`` (a random split with
    the fractions ``split`` of train and validation, the rest test), ``num_classes`` and
    ``name`` (``"SBM-<N>"``).
    """
    from torch_geometric.data import Data

    if num_nodes < num_classes or num_classes < 2:
        raise DataError(f"an SBM needs 2 <= num_classes <= num_nodes, got {num_classes} and {num_nodes}")
    if not 0.0 <= homophily <= 1.0:
        raise DataError(f"homophily must be in [0, 1], got {homophily}")
    rng = np.random.default_rng(seed)
    n, c = int(num_nodes), int(num_classes)
    y = rng.integers(0, c, n)
    # nodes sorted by class: a class is a contiguous run, so "a random node of class k"
    # is one draw from [start[k], start[k] + count[k])
    by_class = np.argsort(y, kind="stable")
    count = np.bincount(y, minlength=c)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    m = int(round(n * avg_degree / 2))
    u = rng.integers(0, n, m)
    same = rng.random(m) < homophily
    k = y[u[same]]
    v = rng.integers(0, n, m)
    v[same] = by_class[start[k] + (rng.random(int(same.sum())) * count[k]).astype(np.int64)]
    centroids = rng.standard_normal((c, num_features)).astype(np.float32) * signal
    x = rng.standard_normal((n, num_features), dtype=np.float32)
    x += centroids[y]
    perm = rng.permutation(n)
    n_train, n_val = int(split[0] * n), int(split[1] * n)
    masks = []
    for rows in (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.from_numpy(rows)] = True
        masks.append(mask)
    data = Data(x=torch.from_numpy(x), edge_index=torch.from_numpy(np.stack([u, v])),
                y=torch.from_numpy(y), train_mask=masks[0], val_mask=masks[1], test_mask=masks[2])
    data.num_nodes, data.num_classes, data.name = n, c, f"SBM-{n}"
    return data

"""Exact k-nearest-neighbour graphs on dense or sparse features, in bounded memory.

``knn_graph`` compares a block of query rows with all points at a time (one
matrix product per block, then ``topk``), so memory is ``chunk_size x n``
scores, never ``n x n``. It needs nothing beyond torch (no pyg-lib or
torch-cluster) and gives the neighbours of
``sklearn.neighbors.kneighbors_graph`` (up to ties between equal distances).

Semantics, as in scikit-learn:

* ``loop=True`` is ``include_self=True``: each point counts as its own first
  neighbour, so it gets a self-loop and ``k - 1`` other neighbours.
  ``loop=False`` is ``include_self=False``: ``k`` neighbours other than itself.
* The graph is directed from neighbour to query, PyG's ``source_to_target``
  flow: ``edge_index = [neighbour, query]`` (scikit-learn's adjacency
  ``A[query, neighbour]`` transposed). ``symmetric=True`` returns the union of
  the graph and its transpose, each edge once.
* ``metric="cosine"`` ranks by cosine similarity (an all-zero row is at
  distance 1 from every point, as in scikit-learn); ``"euclidean"`` by
  Euclidean distance.

Computation runs in the input's floating dtype (float64 stays float64, so ties
resolve like scikit-learn's), other dtypes in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from brlgraph.errors import ConfigError, DataError

METRICS = ("cosine", "euclidean")
#: Scores held at once, in elements (``chunk_size x n``): 32 Mi, i.e. 128 MiB in float32.
SCORE_BUDGET = 1 << 25


def knn_graph(
    x: Any,
    k: int,
    metric: str = "cosine",
    loop: bool = True,
    symmetric: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Exact kNN graph of the rows of ``x`` (tensor, numpy array or scipy sparse matrix).

    Returns ``edge_index`` (LongTensor [2, E]), sorted by (query, neighbour);
    without ``symmetric``, ``E = n * k``.
    """
    if metric not in METRICS:
        raise ConfigError(f"knn_graph: metric must be one of {METRICS}, got {metric!r}")
    features, sparse = _as_matrix(x)
    n = features.shape[0]
    others = k - 1 if loop else k
    if not isinstance(k, int | np.integer) or k < 1 or others > n - 1:
        raise ConfigError(
            f"knn_graph: k={k} impossible with {n} points "
            f"(need 1 <= k <= {n if loop else n - 1} with loop={loop})"
        )
    if chunk_size is None:
        chunk_size = max(1, SCORE_BUDGET // max(n, 1))
    chunk_size = max(1, min(int(chunk_size), n))

    if sparse:
        base, aux = _prepare_sparse(features, metric)
    else:
        base, aux = _prepare_dense(features, metric)

    neighbours = torch.empty((n, others), dtype=torch.long)
    for start in range(0, n if others else 0, chunk_size):
        stop = min(start + chunk_size, n)
        scores = _scores(base, aux, start, stop, sparse, metric)
        rows = torch.arange(stop - start)
        # The point itself is excluded here and added back as a self-loop below, so
        # a duplicate point never displaces it (or is mistaken for it).
        scores[rows, rows + start] = -math.inf
        neighbours[start:stop] = torch.topk(scores, others, dim=1, sorted=False).indices
    query = torch.arange(n).repeat_interleave(others)
    source = neighbours.reshape(-1)
    if loop:
        query = torch.cat([query, torch.arange(n)])
        source = torch.cat([source, torch.arange(n)])
    if symmetric:
        query, source = torch.cat([query, source]), torch.cat([source, query])
    key = torch.unique(query * n + source)  # sorts and drops the duplicates of the union
    return torch.stack([key % n, key // n])


def _as_matrix(x: Any) -> tuple[Any, bool]:
    if sp.issparse(x):
        matrix = sp.csr_matrix(x)
        if matrix.dtype not in (np.float32, np.float64):
            matrix = matrix.astype(np.float32)
        if not np.isfinite(matrix.data).all():
            raise DataError("knn_graph: features contain NaN or infinite values")
        return matrix, True
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if tensor.dim() != 2:
        raise DataError(f"knn_graph: features must be a matrix [n, d], got shape {tuple(tensor.shape)}")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise DataError("knn_graph: features contain NaN or infinite values")
    return tensor.cpu(), False


def _prepare_dense(x: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if metric == "cosine":
        norms = x.norm(dim=1, keepdim=True)
        return x / torch.where(norms > 0, norms, torch.ones_like(norms)), None
    return x, (x * x).sum(dim=1)


def _prepare_sparse(x: sp.csr_matrix, metric: str) -> tuple[sp.csr_matrix, torch.Tensor | None]:
    squared = np.asarray(x.multiply(x).sum(axis=1)).ravel()
    if metric == "cosine":
        norms = np.sqrt(squared)
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ x, dtype=x.dtype), None
    return x, torch.from_numpy(squared.astype(x.dtype))


def _scores(base: Any, aux: torch.Tensor | None, start: int, stop: int, sparse: bool,
            metric: str) -> torch.Tensor:
    """Scores of queries ``start:stop`` against all points; larger means nearer.

    Euclidean scores are ``2 q.p - ||p||^2`` (the squared distance minus the query's
    own squared norm, which does not change its ranking), in one fused ``addmm``.
    """
    if sparse:
        product = torch.from_numpy((base[start:stop] @ base.T).toarray())
        return product if metric == "cosine" else product.mul_(2).sub_(aux)
    if metric == "cosine":
        return base[start:stop] @ base.T
    return torch.addmm(-aux, base[start:stop], base.T, alpha=2)

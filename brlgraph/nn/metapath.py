"""Metapath means: the mean node state along every type path from a node type.

SeHGNN's metapath features, on learned node states; :class:`~brlgraph.nn.BRLFormer`
turns them into tokens (``path_tokens``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from brlgraph.graph import SparseMatrix

TypePath = tuple[int, ...]


#: the type-pair blocks of :func:`type_pair_means`: ``[t][s]``, or ``None`` where no edge joins t to s
PathBlocks = list[list[SparseMatrix | None]]


def path_steps(blocks: PathBlocks) -> list[list[tuple[int, SparseMatrix]]]:
    """Per node type t, the steps a path may take from it: (next type s, row-normalised
    block [N_t, N_s])."""
    return [[(s, block) for s, block in enumerate(row) if block is not None] for row in blocks]


def type_path_means(
    h: Tensor, blocks: PathBlocks, slices: list[slice], start: int, hops: int,
    rows: Tensor | None = None,
) -> tuple[list[TypePath], Tensor]:
    r"""Mean node states along every type path of 1..``hops`` edges from type ``start``.

    A type path :math:`P = (t_0 = \text{start}, t_1, \dots, t_k)` follows, from each
    node of type :math:`t_0`, only edges to neighbours of the next type; its mean is

    .. math::
        m_P = M_{t_0 t_1} M_{t_1 t_2} \cdots M_{t_{k-1} t_k}\, h_{t_k}

    with :math:`M_{ts}` the row-normalised adjacency from type t to type s (the
    ``blocks`` of :func:`type_pair_means`): the metapath features of SeHGNN, here on
    learned node states. Paths with no edges at some step are not listed. Products
    are shared between paths with a common tail, and only the tails of paths from
    ``start`` are computed.

    ``rows`` [R] (indices among the nodes of type ``start``, repeats allowed) asks for
    those rows only, as a training batch of targets does: the first step of each path,
    :math:`M_{t_0 t_1}`, is then taken over those rows alone (unless the full product
    is needed anyway as the tail of a longer path), while the tails, which may reach
    any node, stay whole. The result equals the full one indexed by ``rows``
    (:func:`type_path_means_reference`).

    Returns the paths (tuples of node types from the start, by length, then
    lexicographically) and their means stacked as [N_start, P, d] ([R, P, d] with
    ``rows``; P = 0 gives zero columns).
    """
    steps = path_steps(blocks)
    memo: dict[tuple[int, int], dict[TypePath, Tensor]] = {}

    def tails(t: int, k: int) -> dict[TypePath, Tensor]:
        """{types after t of a path of exactly k edges from type t: its mean [N_t, d]}, only
        where needed."""
        if k == 0:
            return {(): h[slices[t]]}
        if (t, k) not in memo:
            memo[(t, k)] = {(s, *path): block.mm(mean) for s, block in steps[t]
                            for path, mean in tails(s, k - 1).items()}
        return memo[(t, k)]

    firsts = [(s, block.rows(rows)) for s, block in steps[start]] if rows is not None else []
    means: dict[TypePath, Tensor] = {}
    for k in range(hops, 0, -1):  # longest first: shorter paths from start may then be memoised
        if rows is None:
            means.update({(start, *p): m for p, m in tails(start, k).items()})
        elif (start, k) in memo:
            means.update({(start, *p): m[rows] for p, m in memo[(start, k)].items()})
        else:
            means.update({(start, s, *path): torch.sparse.mm(first, mean) for s, first in firsts
                          for path, mean in tails(s, k - 1).items()})
    paths = sorted(means, key=lambda p: (len(p), p))
    if not paths:
        n = slices[start].stop - slices[start].start if rows is None else len(rows)
        return [], h.new_zeros(n, 0, h.shape[1])
    return paths, torch.stack([means[p] for p in paths], dim=1)


def type_path_means_reference(
    h: Tensor, blocks: PathBlocks, slices: list[slice], start: int, hops: int,
    rows: Tensor | None = None,
) -> tuple[list[TypePath], Tensor]:
    """:func:`type_path_means` the plain way, the reference it is tested against: every
    path's mean by a chain of ``torch.sparse`` products of its own over all nodes of type
    ``start`` (nothing shared, no stored transposes), then the ``rows`` asked for."""
    steps = path_steps(blocks)
    walks: list[tuple[TypePath, list[SparseMatrix], int]] = []  # (path, its blocks, end type)
    frontier: list[tuple[TypePath, list[SparseMatrix], int]] = [((start,), [], start)]
    for _ in range(hops):
        frontier = [((*p, s), [*chain, block], s) for p, chain, t in frontier for s, block in steps[t]]
        walks += frontier
    walks.sort(key=lambda w: (len(w[0]), w[0]))
    n = slices[start].stop - slices[start].start
    if not walks:
        return [], h.new_zeros(n if rows is None else len(rows), 0, h.shape[1])
    means = []
    for _, chain, end in walks:
        mean = h[slices[end]]
        for block in reversed(chain):
            mean = block.mm_reference(mean)
        means.append(mean)
    out = torch.stack(means, dim=1)
    return [w[0] for w in walks], out if rows is None else out[rows]

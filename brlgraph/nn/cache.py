"""A module-side cache of one value derived from the last graph a model saw."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import torch

from brlgraph.sequences import GraphView

T = TypeVar("T")


class LastGraphCache(Generic[T]):
    """Holds ``build()`` for the last ``(graph, device)`` pair it was asked about.

    Models derive per-graph tensors (adjacency blocks, degree buckets, node orders)
    once and reuse them at every step. The graph is matched by identity (a
    :class:`~brlgraph.sequences.GraphView` is not hashed or compared by value), so a
    new view of the same data builds again. One entry only: training and evaluation
    use one graph, and a second graph replaces the first instead of piling up.

    The cache is derived state: ``copy.deepcopy`` of a model and pickling start from
    an empty one, so neither copies the graph or its tensors.
    """

    def __init__(self) -> None:
        self._key: tuple[GraphView, str] | None = None
        self._value: T | None = None

    def get(self, graph: GraphView, device: torch.device | str | None, build: Callable[[], T]) -> T:
        """The cached value for ``graph`` on ``device`` (``None``: any device), built on a miss."""
        dev = "" if device is None else str(device)
        key = self._key
        if key is None or key[0] is not graph or key[1] != dev:
            self._key, self._value = None, None  # a failed build leaves nothing stale
            value = build()
            self._key, self._value = (graph, dev), value
        return self._value  # type: ignore[return-value]

    def clear(self) -> None:
        self._key, self._value = None, None

    def __deepcopy__(self, memo: dict) -> LastGraphCache[T]:
        return type(self)()

    def __getstate__(self) -> dict:
        return {"_key": None, "_value": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'empty' if self._key is None else 'filled'})"

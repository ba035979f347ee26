"""A module-side cache of one value derived from the last graph (or tensor) a model saw."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class LastGraphCache(Generic[T]):
    """Holds ``build()`` for the last ``(source, tag)`` pair it was asked about.

    Models derive per-graph tensors (adjacency blocks, degree buckets, node orders,
    features on the device) once and reuse them at every step. The source, usually a
    :class:`~brlgraph.graph.GraphView`, is matched by identity (a view is not
    hashed or compared by value), so a new view of the same data builds again; the
    tag (the device, or whatever else the value depends on) by equality, a
    ``torch.device`` as its string. One entry only: training and evaluation use one
    graph, and a second graph replaces the first instead of piling up.

    The cache is derived state: ``copy.deepcopy`` of a model and pickling start from
    an empty one, so neither copies the graph or its tensors. Lookups run outside
    ``torch.compile`` (a graph break): the build (numpy, scipy) is not traced, and a
    compiled model guards on no graph's identity, so it runs on graphs it has not seen.
    """

    def __init__(self) -> None:
        self._key: tuple[object, Hashable] | None = None
        self._value: T | None = None

    @torch.compiler.disable
    def get(self, source: object, tag: Hashable, build: Callable[[], T]) -> T:
        """The cached value for ``source`` (by identity) and ``tag`` (by equality, e.g.
        the device), built on a miss."""
        tag = str(tag) if isinstance(tag, torch.device) else tag
        key = self._key
        if key is None or key[0] is not source or key[1] != tag:
            self._key, self._value = None, None  # a failed build leaves nothing stale
            value = build()
            self._key, self._value = (source, tag), value
        return self._value  # type: ignore[return-value]

    def clear(self) -> None:
        self._key, self._value = None, None

    def __deepcopy__(self, memo: dict) -> LastGraphCache[T]:
        return type(self)()

    def __getstate__(self) -> dict:
        return {"_key": None, "_value": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'empty' if self._key is None else 'filled'})"

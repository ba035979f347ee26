"""Cache of processed data sets, keyed by their source files and a format version.

A processed data set is a plain dictionary of tensors, strings and numbers,
saved with :func:`brlgraph.io.atomic_torch_save` under
``<cache>/processed/<name>-<key>.pt``. The key hashes the format version, the
processing options and, for each source file, its resolved path, size and
modification time, so editing or replacing a raw file invalidates the entry.
Entries of the same data set with another key are removed when a new one is
written.

A cache file that does not hold what its reader expects, in any way, is a miss: it
cannot be read, it is not a dictionary, or the reader's ``check`` (the layout
the reader writes: keys, types, shapes, ranges) refuses it. It is then removed and
rebuilt, with a one-line notice naming it. Entries are read with
``weights_only=True``, so a cache file cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from brlgraph.data.sources import cache_root
from brlgraph.errors import notice
from brlgraph.io import atomic_torch_save


def source_key(paths: Iterable[str | os.PathLike], version: int, **options: Any) -> str:
    """A short hash of the source files' identity (path, size, mtime) and options."""
    parts: list[Any] = [version, sorted(options.items())]
    for path in paths:
        st = os.stat(path)
        parts.append([str(Path(path).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps(parts, default=str, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cache_path(name: str, key: str) -> Path:
    return cache_root() / "processed" / f"{name}-{key}.pt"


def expect(ok: bool, what: str) -> None:
    """A ``check`` of :func:`cached` says what is wrong with an entry through this."""
    if not ok:
        raise ValueError(what)


def is_tensor(value: Any, dim: int, rows: int | None = None, kind: str | None = None) -> bool:
    """``value`` is a tensor of ``dim`` dimensions, ``rows`` long in the first (when
    given), of integer or floating-point values (``kind`` "int" / "float", when given)."""
    if not isinstance(value, torch.Tensor) or value.dim() != dim:
        return False
    if rows is not None and value.shape[0] != rows:
        return False
    if kind == "float":
        return value.is_floating_point()
    if kind == "int":
        return not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
    return True


def in_range(index: torch.Tensor, size: int) -> bool:
    """Every entry of the integer tensor ``index`` lies in ``0..size - 1``."""
    return index.numel() == 0 or (int(index.min()) >= 0 and int(index.max()) < size)


def cached(name: str, key: str, build: Callable[[], dict[str, Any]],
           check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Return the cached dictionary for ``(name, key)``, building and saving it on a miss.

    ``check(value)`` raises (with :func:`expect`, or any exception) when a loaded entry
    does not have the layout ``build`` makes; the entry is then a miss, removed and
    rebuilt. A built value is not checked: errors of ``build`` are the reader's own.
    """
    path = cache_path(name, key)
    if path.is_file():
        try:
            value = torch.load(path, weights_only=True, mmap=True)
            expect(isinstance(value, dict), f"a {type(value).__name__}, not a dictionary")
            if check is not None:
                check(value)
            return value
        except Exception as err:  # noqa: BLE001 - a damaged cache entry is rebuilt, never fatal
            why = (str(err).strip().splitlines() or [type(err).__name__])[0]
            if isinstance(err, KeyError):
                why = f"no entry {err}"
            notice(f"cache file {path} does not hold what its reader expects ({why}); "
                   "removed, rebuilding it")
            with contextlib.suppress(OSError):
                path.unlink()
    value = build()
    try:
        atomic_torch_save(value, path)
    except OSError:
        return value  # a read-only cache only costs speed
    for stale in path.parent.glob(f"{name}-*.pt"):
        if stale != path:
            with contextlib.suppress(OSError):
                stale.unlink()
    return value

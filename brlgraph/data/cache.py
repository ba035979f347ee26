"""Cache of processed data sets, keyed by their source files and a format version.

A processed data set is a plain dictionary of tensors, strings and numbers,
saved with :func:`brlgraph.io.atomic_torch_save` under
``<cache>/processed/<name>-<key>.pt``. The key hashes the format version, the
processing options and, for each source file, its resolved path, size and
modification time, so editing or replacing a raw file invalidates the entry.
Entries of the same data set with another key are removed when a new one is
written. A cache file that cannot be read is treated as a miss and rebuilt.
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


def cached(name: str, key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return the cached dictionary for ``(name, key)``, building and saving it on a miss."""
    path = cache_path(name, key)
    if path.is_file():
        try:
            return torch.load(path, weights_only=True, mmap=True)
        except Exception:  # a damaged cache entry is rebuilt, never fatal
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

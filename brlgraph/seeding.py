"""Every seed a run derives from its own seed, in one place.

A run has one seed (``Config.seed``). Each random choice it makes draws from a seed
derived here, one *stream* per purpose, so that two purposes never share random
numbers and a resumed run draws exactly what the uninterrupted run drew:

=================== ================================================ ==========================
stream              derived seed for index ``i``                     what draws from it
=================== ================================================ ==========================
``"sequences"``     ``seed`` for ``i = 0``, else                     the context sequences of
                    ``splitmix64(seed * 1_000_003 + i) >> 1``        the training targets at
                                                                     epoch ``i``
``"batches"``       ``seed * 100_003 + i``                           the batch order of epoch
                                                                     ``i`` (one-sequence data
                                                                     sets: its node order)
``"eval_draw"``     ``seed + 1_000_003 * i``                         evaluation draw ``i`` of
                                                                     the context (or order)
``"member"``        ``seed + 3_000_017 * i``                         the run seed of ensemble
                                                                     member ``i``
=================== ================================================ ==========================

Index 0 of ``"sequences"``, ``"eval_draw"`` and ``"member"`` is the run seed itself, so
a run with one draw and one member draws what a plain run of that seed draws. The
strides are primes far apart, so the seeds of two streams do not meet for any run
seed and index a run uses.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

STREAMS = ("sequences", "batches", "eval_draw", "member")

_U = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (the splitmix64 finaliser), elementwise on uint64."""
    with np.errstate(over="ignore"):
        x = x + _U(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U(30))) * _U(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U(27))) * _U(0x94D049BB133111EB)
    return x ^ (x >> _U(31))


def derive_seed(seed: int, stream: str, index: int) -> int:
    """The seed of ``stream`` (one of :data:`STREAMS`) at ``index`` for run seed ``seed``;
    see the module docstring for each derivation."""
    if stream == "sequences":
        if index == 0:
            return seed
        x = np.array([(seed * 1_000_003 + index) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
        return int(splitmix64(x)[0] >> _U(1))
    if stream == "batches":
        return seed * 100_003 + index
    if stream == "eval_draw":
        return seed + 1_000_003 * index
    if stream == "member":
        return seed + 3_000_017 * index
    raise ValueError(f"unknown seed stream {stream!r}; the streams are {', '.join(STREAMS)}")


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; optionally make torch's kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    # Deterministic mode also fills every new tensor with NaN to expose reads of
    # uninitialised memory; results do not depend on it, and it costs ~20% of a CPU step.
    torch.utils.deterministic.fill_uninitialized_memory = False

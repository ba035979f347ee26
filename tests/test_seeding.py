"""The seeding helper: every derived seed of a run, pinned to its derivation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from brlgraph.seeding import STREAMS, derive_seed, seed_everything, splitmix64


def test_each_stream_keeps_its_derivation():
    # the shipped reproductions depend on these exact numbers
    assert derive_seed(7, "batches", 3) == 7 * 100_003 + 3
    assert derive_seed(7, "eval_draw", 2) == 7 + 2 * 1_000_003
    assert derive_seed(7, "member", 4) == 7 + 4 * 3_000_017
    assert derive_seed(7, "sequences", 0) == 7
    assert derive_seed(7, "sequences", 5) == 2670228044775335534
    assert 0 <= derive_seed(2**40, "sequences", 1) < 2**63


def test_index_zero_is_the_run_itself_and_streams_differ():
    for stream in ("sequences", "eval_draw", "member"):
        assert derive_seed(11, stream, 0) == 11
    seeds = {derive_seed(11, stream, i) for stream in STREAMS for i in range(1, 50)}
    assert len(seeds) == 4 * 49  # no two streams or indices share a seed
    with pytest.raises(ValueError, match="unknown seed stream 'dropout'"):
        derive_seed(1, "dropout", 0)


def test_splitmix64_is_a_bijection_on_a_sample():
    x = np.arange(10_000, dtype=np.uint64)
    assert np.unique(splitmix64(x)).size == x.size


def test_seed_everything_repeats_every_generator():
    draws = []
    for _ in range(2):
        seed_everything(5, deterministic=False)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[1]

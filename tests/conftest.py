"""Shared test fixtures.

Real data comes from ``../shared/data`` beside the repository (or the folder
named by ``BRLGRAPH_TEST_DATA``). Outside CI a test whose data is missing is
skipped; in CI (``CI=true``) it fails, so a missing data set never passes
silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _shared_data_dir() -> Path:
    env = os.environ.get("BRLGRAPH_TEST_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def require_data(*relative: str) -> Path:
    """Return ``<shared data>/<relative>``; skip (or, in CI, fail) when it is missing."""
    path = _shared_data_dir().joinpath(*relative)
    if not path.exists():
        msg = f"test data {path} is missing (set BRLGRAPH_TEST_DATA to the shared data folder)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (holding ``hgb/`` and ``20news/``)."""
    return require_data()


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """An empty processed-data cache, so tests never touch the user's cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("BRLGRAPH_CACHE", str(d))
    return d

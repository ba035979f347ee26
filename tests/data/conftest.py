"""Fixtures of the data tests: each real HGB data set parsed at most once per session."""

from __future__ import annotations

import pytest

from brlgraph.data.hgb import parse_hgb


@pytest.fixture(scope="session")
def real_hgb(shared_data):
    """Parse each real HGB data set at most once per session (no cache involved)."""
    parsed: dict[str, dict] = {}
    multi = {"DBLP": False, "ACM": False, "IMDB": True}

    def get(name: str) -> dict:
        if name not in parsed:
            parsed[name] = parse_hgb(shared_data / "hgb" / f"{name}.zip", multi[name], name=name)
        return parsed[name]

    return get

"""The package brlgraph.nn.attention itself (its __init__): the registry of backend
names and make_attention, the factory that builds a backend by name."""

from __future__ import annotations

import pytest

from brlgraph.errors import ConfigError
from brlgraph.nn import ATTENTION_BACKENDS, make_attention


def test_backend_names():
    assert ATTENTION_BACKENDS == ("brl", "full", "local", "performer", "linformer", "regla")


def test_factory_errors_name_the_problem():
    with pytest.raises(ConfigError, match="'flash'.*brl, full, local"):
        make_attention("flash", 32, 4)
    with pytest.raises(ConfigError, match="'window'"):
        make_attention("full", 32, 4, window=8)
    with pytest.raises(ConfigError, match="heads"):
        make_attention("performer", 30, 4)
    with pytest.raises(ConfigError, match="reservoir_size"):
        make_attention("brl", 32, 4, reservoir_size=0)

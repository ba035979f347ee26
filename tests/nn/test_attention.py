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


def test_a_backend_taking_kwargs_still_gets_the_models_window_and_reservoir(monkeypatch):
    # A constructor wrapped as __init__(self, *args, **kwargs) names no options; the
    # model's window and m must reach it all the same, not fall back to its defaults
    # (window 128, m 64 for BRLAttention) without a word.
    from brlgraph.nn import attention
    from brlgraph.nn.brlformer import backend_options

    class Wrapped(attention.BRLAttention):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(attention._BACKENDS, "wrapped", Wrapped)
    opts = backend_options("wrapped", 16, 8, {"reservoir_weight": 0.25})
    assert opts == {"window": 16, "reservoir_size": 8, "reservoir_weight": 0.25}
    layer = make_attention("wrapped", 32, 4, **opts)
    assert (layer.window, layer.reservoir_size, layer.reservoir_weight) == (16, 8, 0.25)
    with pytest.raises(TypeError, match="no_such_option"):
        make_attention("wrapped", 32, 4, no_such_option=1)

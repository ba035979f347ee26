"""The project's error types: user errors are BRLGraphError; bad arguments are ValueError too."""

from __future__ import annotations

import pytest

from brlgraph.errors import BRLGraphError, CheckpointError, ConfigError, DataError


def test_every_user_error_is_a_brlgraph_error():
    for cls in (ConfigError, DataError, CheckpointError):
        assert issubclass(cls, BRLGraphError)


def test_a_bad_layer_argument_is_a_value_error_as_in_torch():
    from brlgraph.nn import BRLAttention

    with pytest.raises(ValueError, match=r"\(dim=10\) must be a positive multiple of model.heads \(heads=3\)"):
        BRLAttention(dim=10, heads=3)
    with pytest.raises(ValueError, match="window"):
        BRLAttention(dim=8, heads=2, window=0)

"""Feature normalisation of loaded data sets (``data.feature_norm``)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from brlgraph.data import normalize_features
from brlgraph.errors import ConfigError


def _hetero() -> HeteroData:
    data = HeteroData()
    data["paper"].x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    data["author"].x = torch.tensor([[-2.0, 1.0], [0.5, 0.5]])
    data["term"].num_nodes = 5  # featureless
    return data


@pytest.mark.parametrize(("how", "norm"), [("row", lambda x: x.abs().sum(1)), ("l2", lambda x: x.norm(dim=1))])
def test_rows_get_unit_norm_and_zero_rows_stay_zero(how, norm):
    data = _hetero()
    before = {t: data[t].x.clone() for t in ("paper", "author")}
    originals = {t: data[t].x for t in ("paper", "author")}
    out = normalize_features(data, how)
    assert out is data and "x" not in out["term"]
    for t, x in before.items():
        got = out[t].x
        nonzero = x.abs().sum(1) > 0
        torch.testing.assert_close(norm(got)[nonzero], torch.ones(int(nonzero.sum())))
        assert (got[~nonzero] == 0).all()
        # a positive rescaling of each row: directions kept
        torch.testing.assert_close(got * norm(x).clamp(min=1e-30).unsqueeze(1), x)
        assert torch.equal(originals[t], x)  # the old tensors are not written to
    torch.testing.assert_close(out["paper"].x[0], torch.tensor([1.0, 0.0, 1.0, 1.0]) / (3.0 if how == "row" else 3**0.5))


def test_homogeneous_none_and_errors():
    data = Data(x=torch.tensor([[3.0, 4.0]]), num_nodes=1)
    assert torch.equal(normalize_features(data, "none").x, torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(normalize_features(data, "l2").x, torch.tensor([[0.6, 0.8]]))
    with pytest.raises(ConfigError, match="feature normalisation"):
        normalize_features(data, "max")

"""Transforms of loaded data sets (``data.feature_norm``, ``data.featureless``, ``data.drop_types``)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from brlgraph.data import drop_node_types, fill_featureless, normalize_features
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


def test_featureless_types_get_the_mean_features_of_their_neighbours_per_relation():
    data = _hetero()
    # term 0: papers 0 and 2; term 1: paper 0 and author 1; terms 2-4: no neighbour
    # with features (term 2 only has an edge from another term, which must not count)
    data["paper", "has", "term"].edge_index = torch.tensor([[0, 2, 0], [0, 0, 1]])
    data["author", "uses", "term"].edge_index = torch.tensor([[1], [1]])
    data["term", "near", "term"].edge_index = torch.tensor([[0], [2]])
    data["term", "in", "paper"].edge_index = torch.tensor([[0], [1]])  # into a type with features
    paper_x = data["paper"].x.clone()
    out = fill_featureless(data, "mean")
    assert out is data and torch.equal(out["paper"].x, paper_x)
    expected = torch.zeros(5, 6)
    expected[0, :4] = (paper_x[0] + paper_x[2]) / 2
    expected[1, :4] = paper_x[0]
    expected[1, 4:] = torch.tensor([0.5, 0.5])
    torch.testing.assert_close(out["term"].x, expected)


def test_featureless_embedding_keeps_the_data_and_bad_choices_are_named():
    data = _hetero()
    data["paper", "has", "term"].edge_index = torch.tensor([[0], [0]])
    assert "x" not in fill_featureless(data, "embedding")["term"]
    homogeneous = Data(x=torch.ones(2, 1), num_nodes=2)
    assert fill_featureless(homogeneous, "mean") is homogeneous
    with pytest.raises(ConfigError, match="featureless node types 'zeros'"):
        fill_featureless(data, "zeros")


def test_dropped_types_leave_with_every_relation_that_touches_them():
    data = _hetero()
    data["paper"].global_id = torch.tensor([10, 11, 12])
    data.target_type = "paper"
    data["paper", "cites", "paper"].edge_index = torch.tensor([[0, 1], [1, 2]])
    data["paper", "has", "term"].edge_index = torch.tensor([[0, 2], [0, 4]])
    data["term", "in", "paper"].edge_index = torch.tensor([[0, 4], [0, 2]])
    data["author", "writes", "paper"].edge_index = torch.tensor([[1], [0]])
    out = drop_node_types(data, ["term", ""])
    assert out is data
    assert out.node_types == ["paper", "author"]
    assert out.edge_types == [("paper", "cites", "paper"), ("author", "writes", "paper")]
    assert torch.equal(out["paper"].global_id, torch.tensor([10, 11, 12]))  # ids for prediction files kept
    assert torch.equal(out["paper", "cites", "paper"].edge_index, torch.tensor([[0, 1], [1, 2]]))
    assert drop_node_types(out, []) is out and out.node_types == ["paper", "author"]


def test_dropping_an_unknown_or_the_labelled_type_is_a_named_config_error():
    data = _hetero()
    data.target_type = "paper"
    with pytest.raises(ConfigError, match=r"data\.drop_types: no node type 'venue'.*paper, author, term"):
        drop_node_types(data, ["venue"])
    with pytest.raises(ConfigError, match=r"data\.drop_types names the labelled type 'paper'"):
        drop_node_types(data, ["paper"])
    assert data.node_types == ["paper", "author", "term"]  # nothing removed by a refused call
    with pytest.raises(ConfigError, match="heterogeneous"):
        drop_node_types(Data(x=torch.ones(2, 1), num_nodes=2), ["term"])

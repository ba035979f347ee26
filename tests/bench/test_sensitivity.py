"""Sensitivity: Jacobians against autograd's, distances, local reach, the ring sweep, the DBLP configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brlgraph.bench import common
from brlgraph.bench import sensitivity as sv


def test_jacobian_rows_match_the_full_jacobian():
    torch.manual_seed(0)
    w = torch.randn(3, 4)
    x = torch.randn(5, 4, requires_grad=True)

    def f(inp: torch.Tensor) -> torch.Tensor:
        return torch.tanh(inp @ w.t()).sum(0) * inp[2, 0]

    jac = torch.autograd.functional.jacobian(f, x.detach())  # [3, 5, 4]
    expected = jac.abs().sum(dim=(0, 2)) / (3 * 4)
    assert torch.allclose(sv.jacobian_rows(f(x), x), expected, atol=1e-6)


def test_distances_on_a_path():
    graph = common.graph_view_class().from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]), 6)
    dist = sv.distances_from(graph, [0, 2], 3)
    assert dist.tolist() == [[0, 1, 2, 3, -1, -1], [2, 1, 0, 1, 2, -1]]


def test_bucket_averages_over_every_node_at_a_distance():
    sens = np.array([[9.0, 1.0, 3.0, 0.0]])
    dist = np.array([[0, 1, 1, 2]])
    rows = sv.bucket(sens, dist, 3)
    assert rows[1]["mean"] == 2.0 and rows[2]["mean"] == 0.0 and 3 not in rows
    assert rows[1]["share"] == 1.0 and rows[1]["pairs"] == 2 and rows[2]["nonzero"] == 0.0


def _path_former(attention: str):
    """A BRLFormer on a path of 40 nodes and the sequences of its node 0."""
    from brlgraph.nn import BRLFormer
    from brlgraph.sequences import hop_ordered_sequences

    n = 40
    edges = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    graph = common.graph_view_class().from_edge_index(edges, n, x=torch.randn(n, 3))
    former = BRLFormer.from_data(graph, num_classes=2, layers=2, heads=2, attention=attention, window=3,
                                 dropout=0.0, gnn_layers=0, max_hops=30, **common.model_kwargs(8, 2))
    seqs = hop_ordered_sequences(graph, torch.tensor([0, 5]), 32, max_hops=30)
    return former, graph, seqs


def test_local_sensitivity_stops_at_layers_times_window_and_brl_reaches_everything():
    former, graph, seqs = _path_former("local")
    sens = sv.sequence_sensitivity(former, graph, seqs)
    assert sens.shape == (2, 32)
    assert (sens[:, : 2 * 3 + 1] > 0).all() and (sens[:, 2 * 3 + 1:] == 0).all()
    former, graph, seqs = _path_former("brl")
    sens = sv.sequence_sensitivity(former, graph, seqs)
    assert (sens[seqs.mask] > 0).all() and (sens[~seqs.mask] == 0).all() and (~seqs.mask).any()


def test_sequence_sensitivity_of_one_target_equals_its_own_jacobian():
    """Targets are differentiated together: each must get its own Jacobian, not a sum."""
    former, graph, seqs = _path_former("full")
    both = sv.sequence_sensitivity(former, graph, seqs)
    alone = sv.sequence_sensitivity(former, graph, seqs[torch.tensor([1])])
    assert torch.allclose(both[1], alone[0], atol=1e-6)


def test_path_order_is_the_path_itself():
    from brlgraph.sequences import node_order

    graph = common.graph_view_class().from_edge_index(sv.path_edges(50), 50)
    order = node_order(graph, "rcm")
    assert order.tolist() in (list(range(50)), list(range(49, -1, -1)))


def test_path_sweep_writes_table_and_plot(tmp_path):
    budget = sv.SensitivityBudget(path_nodes=64, path_hidden=8, path_heads=2, path_window=4, path_reservoir=2,
                                  path_gcn_layers=2, path_steps=2, path_batch=2, path_targets=4)
    lines: list[str] = []
    sv.run_sensitivity(tmp_path, ["path"], ["brl", "local", "gcn"], [0], budget, progress=False,
                       log=lines.append, command="brlgraph bench sensitivity --test")
    records = {r["model"]: r for r in map(json.loads, (tmp_path / "sensitivity.jsonl").read_text().splitlines())}
    prof = {m: {int(d): v["mean"] for d, v in r["profile"].items()} for m, r in records.items()}
    assert max(prof["brl"]) == 63
    # 2 GCN layers read 2 hops; local attention (2 layers, window 4) 8
    assert all(v == 0 for d, v in prof["gcn"].items() if d > 2) and prof["gcn"][1] > 0
    assert all(v == 0 for d, v in prof["local"].items() if d > 8)
    assert all(v > 0 for v in prof["brl"].values())
    table = (tmp_path / "sensitivity.md").read_text()
    assert "path / brl" in table and "share at d>=33" in table
    assert (tmp_path / "sensitivity.png").exists()


@pytest.mark.parametrize("model", sv.MODELS)
def test_dblp_overrides_are_valid_configs(model):
    from brlgraph.train.config import build_config

    config = build_config("DBLP", None, sv.dblp_overrides(model, sv.SensitivityBudget(), 3))
    assert config.model.path_tokens == 0 and config.seed == 3
    if model == "gcn":
        assert config.model.gnn == "gcn" and config.model.gnn_layers == 3
    else:
        assert config.model.attention == model and config.model.gnn_layers == 0

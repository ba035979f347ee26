"""``brlgraph bench``: a tiny run of each benchmark, budgets from --set, errors, time limits."""

from __future__ import annotations

import json

import pytest

from brlgraph.cli.bench import TIME_LIMIT_STATUS, apply_budget, parse_range, parse_seeds
from brlgraph.cli.main import main
from brlgraph.errors import ConfigError

TREE = ["--depths", "2", "--models", "gcn,brl", "--set", "max_steps=2:10", "--set", "round_steps=5",
        "--set", "hidden=8", "--quiet"]


def test_tree_neighbors_command_writes_tables_and_plot(tmp_path, capsys):
    assert main(["bench", "tree-neighbors", "--out", str(tmp_path), *TREE]) == 0
    out = capsys.readouterr().out
    assert "| model | r=2 |" in out and f"wrote tables and plots to {tmp_path}" in out
    for name in ("tree_neighbors_train.md", "tree_neighbors_train.csv", "tree_neighbors_test.md",
                 "tree_neighbors.png"):
        assert (tmp_path / name).exists()
    record = json.loads((tmp_path / "tree_neighbors.jsonl").read_text().splitlines()[0])
    assert record["budget"]["hidden"] == 8 and record["budget"]["max_steps"] == record["max_steps"] == 10
    assert record["steps"] == 10


def test_longrange_and_sensitivity_commands(tmp_path):
    assert main(["bench", "longrange", "--out", str(tmp_path), "--tasks", "matching", "--models", "brl,local",
                 "--lengths", "32", "--no-cost", "--set", "curriculum=16:2:2", "--set", "hidden=8",
                 "--set", "eval_sequences=8", "--quiet"]) == 0
    assert "matching / local" in (tmp_path / "longrange_accuracy.md").read_text()
    assert main(["bench", "sensitivity", "--out", str(tmp_path), "--settings", "path", "--models", "gcn",
                 "--set", "path_nodes=32", "--set", "path_steps=1", "--set", "path_targets=2",
                 "--set", "path_gcn_layers=2", "--quiet"]) == 0
    assert "path / gcn" in (tmp_path / "sensitivity.md").read_text()


def test_time_limit_stops_with_status_3_and_the_rerun_goes_on(tmp_path, capsys):
    args = ["bench", "tree-neighbors", "--out", str(tmp_path), *TREE]
    assert main([*args, "--time-limit", "0"]) == TIME_LIMIT_STATUS
    assert "run the same command again" in capsys.readouterr().err
    assert main(args) == 0
    assert len((tmp_path / "tree_neighbors.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("argv, message", [
    (["bench", "tree-neighbors", "--set", "width=3"], "unknown budget field 'width'"),
    (["bench", "tree-neighbors", "--set", "hidden=wide"], "not a valid value for hidden"),
    (["bench", "tree-neighbors", "--models", "mlp", "--depths", "2"], "unknown model 'mlp'"),
    (["bench", "oversquashing", "--set", "hidden=8"], "apply to one benchmark"),
    (["bench", "ablation", "--set", "hidden=8"], "takes no --set"),
    (["bench", "ablation", "--groups", "speed"], "unknown ablation group"),
    (["bench", "ablation", "--models", "gcn"], "unknown attention backend 'gcn'"),
])
def test_user_errors_are_one_line_and_status_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_parsers():
    assert parse_range("2-5") == [2, 3, 4, 5] and parse_range("2,8") == [2, 8]
    assert parse_seeds("3", [0]) == [1, 2, 3] and parse_seeds(None, [0]) == [0] and parse_seeds("0", []) == [0]
    with pytest.raises(ConfigError):
        parse_seeds("1,1", [0])

    from brlgraph.bench.tree_neighbors import TreeBudget

    budget = apply_budget(TreeBudget(), ["max_examples=8:8192", "lr=0.01", "reservoir=4"])
    assert budget.max_examples[8] == 8192 and budget.per_depth(budget.max_examples, 6) == 32000
    assert budget.lr == 0.01 and budget.reservoir == 4

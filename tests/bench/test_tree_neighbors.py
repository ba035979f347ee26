"""Tree-NeighborsMatch: the generator against a hand-checked tree, the models, the sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brlgraph.bench import common
from brlgraph.bench import tree_neighbors as tn
from brlgraph.errors import ConfigError


def test_depth_two_tree_is_numbered_in_pre_order():
    tree = tn.binary_tree(2)
    # 0 root; 1 left child with leaves 2, 3; 4 right child with leaves 5, 6
    assert tree.num_nodes == 7 and tree.num_leaves == 4
    assert tree.parent.tolist() == [-1, 0, 1, 1, 0, 4, 4]
    assert tree.node_depth.tolist() == [0, 1, 2, 2, 1, 2, 2]
    assert tree.leaves.tolist() == [2, 3, 5, 6]


def test_edges_point_towards_the_root_with_self_loops():
    tree = tn.binary_tree(2)
    edges = tree.edge_index(self_loops=False)
    assert sorted(map(tuple, edges.t().tolist())) == [(1, 0), (2, 1), (3, 1), (4, 0), (5, 4), (6, 4)]
    loops = tree.edge_index(self_loops=True).t().tolist()
    assert [[i, i] for i in range(7)] == [e for e in loops if e[0] == e[1]] and len(loops) == 13


@pytest.mark.parametrize("depth", [3, 5])
def test_every_parent_is_shallower_and_every_inner_node_has_two_children(depth):
    tree = tn.binary_tree(depth)
    child = np.flatnonzero(tree.parent >= 0)
    assert (tree.node_depth[child] == tree.node_depth[tree.parent[child]] + 1).all()
    assert np.bincount(tree.parent[child], minlength=tree.num_nodes)[tree.node_depth < depth].tolist() == \
        [2] * (tree.num_nodes - tree.num_leaves)
    assert (tree.node_depth[tree.leaves] == depth).all() and len(tree.leaves) == 2 ** depth


def test_depth_zero_is_refused():
    with pytest.raises(ConfigError):
        tn.binary_tree(0)


def test_keys_labels_and_answer_of_a_hand_checked_example():
    data = tn.make_tree_neighbors_match(2, seed=0)
    assert len(data) == 96 and data.num_classes == 5  # all 4! permutations, every key once
    row = int(np.flatnonzero(data.root_key == 3)[0])
    perm = data.perms[data.perm_id[row]]
    keys, labels = data.node_inputs(np.array([row]))
    # leaves 2, 3, 5, 6 carry keys 1..4 left to right and the permutation's labels
    assert keys[0].tolist() == [3, 0, 1, 2, 0, 3, 4]
    assert labels[0].tolist() == [0, 0, perm[0], perm[1], 0, perm[2], perm[3]]
    # the answer: the label of the leaf whose key is the root's (key 3: node 5)
    assert data.y[row] == perm[2] == labels[0, 5]


def test_examples_cover_every_key_of_each_distinct_permutation_and_split_stratified():
    data = tn.make_tree_neighbors_match(3, seed=1)
    k = 8
    assert data.perms.shape == (1000, k) and len({p.tobytes() for p in data.perms}) == 1000
    assert (np.sort(data.perms, axis=1) == np.arange(1, k + 1)).all()
    assert np.bincount(data.perm_id).tolist() == [k] * 1000
    assert len(data.train) == 6400 and len(data.test) == 1600
    assert set(data.train).isdisjoint(data.test) and len(set(data.train) | set(data.test)) == len(data)
    # stratified: every label 1..8 is 1/8 of each split
    assert np.bincount(data.y[data.test], minlength=k + 1)[1:].tolist() == [200] * k


@pytest.mark.parametrize(("depth", "examples"), [(2, 96), (3, 8000), (4, 16000), (5, 32000), (6, 32000),
                                                 (7, 32000), (8, 32000)])
def test_number_of_examples_per_depth_follows_the_authors(depth, examples):
    assert tn.num_permutations(depth) * 2 ** depth == examples


def test_fewer_examples_when_asked():
    assert tn.num_permutations(8, max_examples=8192) == 32
    with pytest.raises(ConfigError, match="max_examples"):
        tn.make_tree_neighbors_match(4, max_examples=32)  # 2 permutations: no test example per label


def test_root_sequences_hold_the_whole_tree_depth_by_depth():
    data = tn.make_tree_neighbors_match(3, seed=0, max_examples=400)
    seqs = tn.root_sequences(data, seed=0, chunk=16).long()
    assert seqs.shape == (len(data), 15)
    assert (torch.sort(seqs, dim=1).values == torch.arange(15)).all()
    depth = torch.from_numpy(data.tree.node_depth)[seqs]
    assert (depth[:, 0] == 0).all() and (depth.diff(dim=1) >= 0).all()  # leaves last
    assert len({tuple(s.tolist()) for s in seqs}) > len(data) // 2  # own order within a depth


@pytest.mark.parametrize("name", tn.TREE_MODELS)
def test_every_model_gives_one_logit_row_per_tree(name):
    data = tn.make_tree_neighbors_match(2, seed=0)
    budget = tn.TreeBudget(hidden=16)
    batcher = tn._Batcher(data, name, 0)
    model = tn.build_model(name, data, budget)
    logits = batcher.logits(model, data.train[:5])
    assert logits.shape == (5, 5)
    if name in tn.MP_MODELS:
        assert len(model.layers) == 3  # r + 1 layers, as in the paper


def test_reservoir_from_target_applies_to_brl_only():
    data = tn.make_tree_neighbors_match(2, seed=0)
    budget = tn.TreeBudget(hidden=16, reservoir_from_target=True)
    assert tn.build_model("brl", data, budget).former.target_write is not None
    for name in ("local", "full"):  # the same budget runs every model
        assert tn.build_model(name, data, budget).former.target_write is None
    assert tn.build_model("brl", data, tn.TreeBudget(hidden=16)).former.target_write is None


def test_message_passing_reads_only_what_reaches_the_root():
    """Edges point to the root: a leaf's label changes the root's output, and the root's
    key does not travel down to the leaves (a GCN with r + 1 layers)."""
    data = tn.make_tree_neighbors_match(2, seed=0)
    model = tn.build_model("gcn", data, tn.TreeBudget(hidden=8)).eval()
    edges = tn._Batcher(data, "gcn", 0).edges(1)
    keys, labels = data.node_inputs(np.array([0]))
    base = model(keys, labels, edges)
    labels2 = labels.clone()
    labels2[0, 6] = (labels[0, 6] % 4) + 1
    assert not torch.allclose(base, model(keys, labels2, edges))


def _fast_budget(**kw) -> tn.TreeBudget:
    # 76 training trees in batches of 32: 3 steps an epoch, rounds of 2 epochs, 3 rounds
    return tn.TreeBudget(hidden=16, max_steps={2: 18}, batch_size={2: 32}, round_steps=5, **kw)


def test_training_resumes_exactly_after_a_time_limit(tmp_path):
    data = tn.make_tree_neighbors_match(2, seed=0)
    whole = tn.train_tree_cell(data, "brl", _fast_budget(patience=50), 0, progress=False)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(common.TimeLimitReached):
        tn.train_tree_cell(data, "brl", _fast_budget(patience=50), 0, progress=False, checkpoint=ckpt,
                           deadline=common.Deadline(0.0))
    assert torch.load(ckpt, weights_only=False)["state"]["round"] == 1
    resumed = tn.train_tree_cell(data, "brl", _fast_budget(patience=50), 0, progress=False, checkpoint=ckpt)
    assert resumed["history"] == whole["history"] and resumed["rounds"] == whole["rounds"] == 3
    assert whole["steps"] == 18 and whole["epochs"] == 6
    with pytest.raises(ConfigError, match="another budget"):
        tn.train_tree_cell(data, "brl", _fast_budget(patience=5), 0, progress=False, checkpoint=ckpt)


def test_sweep_writes_tables_and_plot_and_never_recomputes_a_cell(tmp_path, monkeypatch):
    budget = _fast_budget(conv_max_depth=1)
    lines: list[str] = []
    tn.run_tree_neighbors(tmp_path, ["gcn", "brl", "brlconv"], [2], [0], budget, progress=False,
                          log=lines.append, command="brlgraph bench tree-neighbors --test")
    records = [json.loads(x) for x in (tmp_path / "tree_neighbors.jsonl").read_text().splitlines()]
    assert {(r["model"], r["depth"]) for r in records} == {("gcn", 2), ("brl", 2), ("brlconv", 2)}
    table = (tmp_path / "tree_neighbors_train.md").read_text()
    assert table.splitlines()[0] == "| model | r=2 |" and "| brlconv | not run |" in table
    assert (tmp_path / "tree_neighbors_test.csv").exists() and (tmp_path / "tree_neighbors.png").stat().st_size > 0

    def boom(*a, **k):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(tn, "train_tree_cell", boom)
    tn.run_tree_neighbors(tmp_path, ["gcn", "brl"], [2], [0], budget, progress=False, log=lines.append)


def test_reservoir_probe_reports_interventions_and_write_attention():
    data = tn.make_tree_neighbors_match(3, seed=0, max_examples=400)
    budget = tn.TreeBudget(hidden=16, max_steps={3: 1}, batch_size={3: 64})
    batcher = tn._Batcher(data, "brl", 0)
    model = tn.build_model("brl", data, budget)
    probe = tn.reservoir_probe(model, data, batcher, data.test)
    assert {"acc", "acc_no_read_l1", "acc_no_read_l2", "acc_no_read", "acc_no_carry", "write_root_l1",
            "write_answer_l2", "write_answer_max_l2", "uniform"} <= set(probe)
    assert all(0.0 <= v <= 1.0 for v in probe.values())
    assert probe["write_answer_max_l1"] >= probe["write_answer_l1"] and probe["uniform"] == round(1 / 15, 4)
    # the interventions are undone: the model answers as before
    assert tn.evaluate(model, batcher, data.test, 64) == probe["acc"]
    with pytest.raises(ConfigError, match="BRL attention"):
        tn.reservoir_probe(tn.build_model("full", data, budget), data, tn._Batcher(data, "full", 0), data.test)


# benchmarks/tree_curves.py: read_curve and plot_curves from the command line
CURVES_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tree_curves.py"


def _curve_record(path: Path, model: str, history: list[list[float]]) -> None:
    rec = {"model": model, "depth": 3, "seed": 0, "steps": 200 * len(history), "rounds": len(history),
           "train_acc": max(h[0] for h in history), "test_acc": history[-1][1], "history": history}
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")


def _run_curves(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CURVES_SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_curves_of_two_folders_on_one_plot(tmp_path):
    pytest.importorskip("matplotlib")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _curve_record(a, "gcn", [[0.1, 0.1], [0.2, 0.1]])
    _curve_record(a, "brl", [[0.2, 0.2], [0.9, 0.8], [1.0, 1.0]])
    _curve_record(b, "brl", [[0.1, 0.1]])
    out = tmp_path / "curves.png"
    done = _run_curves("--depth", "3", "--out", str(out), f"brl={a}:brl", f"brl, m = 64={b}")
    assert done.returncode == 0, done.stderr
    assert "brl: 600 steps, best training accuracy 1.000, test 1.000" in done.stdout
    assert "brl, m = 64: 200 steps" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_record_is_one_line_naming_the_file(tmp_path):
    a = tmp_path / "a.jsonl"
    _curve_record(a, "gcn", [[0.1, 0.1]])
    done = _run_curves("--depth", "3", "--out", str(tmp_path / "c.png"), f"x={a}:brl")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"tree_curves.py: error: {a}: no record of brl at r = 3, seed 0"]
    assert not (tmp_path / "c.png").exists()

"""``brlgraph train``: user errors are one line and exit 2; --json ends with the metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from brlgraph.cli.main import main
from tests.conftest import require_data

# A small, fast DBLP model: enough to check the plumbing, not the tuned accuracy.
FAST = ["--set", "train.epochs=2", "--set", "sequences.seq_len=8", "--set", "model.hidden_channels=32",
        "--set", "model.heads=2", "--set", "model.layers=1", "--set", "model.gnn_layers=1",
        "--set", "train.batch_size=2048", "--quiet"]


@pytest.fixture(scope="module")
def dblp_cache(tmp_path_factory):
    """One processed-data cache for this module's real runs (DBLP is parsed once)."""
    return tmp_path_factory.mktemp("cache")


def _one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("brlgraph: error: ") and "Traceback" not in err
    return lines[0]


def test_unknown_dataset(capsys):
    line = _one_error_line(capsys, ["train", "--dataset", "Cora"])
    assert "Cora" in line and "DBLP" in line


@pytest.mark.parametrize("text, words", [
    ("[train\nlr = 0.1\n", ["malformed TOML"]),
    ("[train]\nlearning_rate = 0.1\n", ["train.learning_rate", "unknown"]),
    ("[model]\nlayers = \"two\"\n", ["model.layers", "int"]),
])
def test_malformed_config(capsys, tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--config", str(path)])
    for w in [str(path), *words]:
        assert w in line


def test_bad_set_option_and_device(capsys):
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--set", "train.epochs=many"])
    assert "train.epochs" in line
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--attention", "softmax"])
    assert "model.attention" in line
    import torch

    if not torch.cuda.is_available():
        line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--device", "cuda"])
        assert "CUDA" in line


def test_missing_data_files(capsys, tmp_path, monkeypatch, cache_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("BRLGRAPH_DATA", str(empty))
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--out", str(tmp_path / "o")])
    assert "DBLP" in line and str(empty) in line
    assert not (tmp_path / "o").exists()  # a run that never started leaves no folder behind


def test_resume_of_another_run_is_refused(capsys, tmp_path, monkeypatch, dblp_cache):
    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(dblp_cache))
    out = tmp_path / "run"
    assert main(["train", "--dataset", "DBLP", *FAST, "--set", "train.epochs=1", "--out", str(out)]) == 0
    capsys.readouterr()
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", *FAST, "--set", "model.hidden_channels=16",
                                    "--set", "model.heads=2", "--out", str(out), "--resume"])
    assert str(out / "checkpoint.pt") in line and "model.hidden_channels" in line


def test_json_last_line_and_outputs(tmp_path, dblp_cache):
    data_root = require_data("hgb", "DBLP.zip").parents[1]
    out = tmp_path / "run"
    env = {**os.environ, "BRLGRAPH_DATA": str(data_root), "BRLGRAPH_CACHE": str(dblp_cache)}
    proc = subprocess.run([sys.executable, "-m", "brlgraph", "train", "--dataset", "dblp", *FAST,
                           "--seed", "3", "--json", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("test_micro_f1", "test_macro_f1", "val_micro_f1", "epochs", "seconds"):
        assert key in last
    assert 0.0 <= last["test_micro_f1"] <= 1.0 and last["epochs"] == 2
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    assert record["seed"] == 3 and record["split_seed"] == 3
    assert record["metrics"]["test_micro_f1"] == last["test_micro_f1"]
    rows = (out / "DBLP_3.txt").read_text().splitlines()
    assert len(rows) == 2840 and all(len(r.split("\t")) == 4 for r in rows)


def test_ensemble_run_names_its_members(capsys, tmp_path, monkeypatch, dblp_cache):
    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(dblp_cache))
    out = tmp_path / "ens"
    assert main(["train", "--dataset", "DBLP", *FAST, "--set", "train.epochs=1", "--set", "train.ensemble=2",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    members = record["members"]
    assert len(members) == 2 and record["metrics"]["epochs"] == 2
    assert lines[1] == ("ensemble of 2; test Micro-F1 of each member alone: "
                        f"{100 * members[0]['test_micro_f1']:.2f}, {100 * members[1]['test_micro_f1']:.2f}")
    assert (out / "checkpoint.pt").is_file() and (out / "checkpoint-member1.pt").is_file()


@pytest.mark.parametrize("dataset", ["ogbn-arxiv"])
def test_ogb_runs_score_with_ogbs_evaluator(capsys, tmp_path, monkeypatch, dataset):
    """`brlgraph train --dataset ogbn-*` on data in ogb's raw layout: ogb processes it, the
    run ends with ogb's metric (accuracy, or ROC-AUC for the multi-label ogbn-proteins:
    `reproduce ogb` runs it in tests/cli/test_reproduce_cli.py, ogbn-mag runs in
    tests/train/test_distributed.py)."""
    from tests.data.ogb_samples import WRITERS

    WRITERS[dataset](tmp_path / "data" / "ogb")
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    small = ["--set", "train.epochs=2", "--set", "model.hidden_channels=16", "--set", "model.heads=2",
             "--set", "model.gnn_layers=1", "--set", "model.window=4", "--set", "model.reservoir_size=4"]
    assert main(["train", "--dataset", dataset, *small, "--json", "--quiet", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    key = "test_rocauc" if dataset == "ogbn-proteins" else "test_accuracy"
    assert 0.0 <= summary[key] <= 1.0
    record = json.loads((out / "results.jsonl").read_text())
    assert record["world_size"] == 1 and record["metrics"][key] == summary[key]
    assert (out / f"{dataset}_0.txt").is_file()

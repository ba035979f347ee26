"""``brlgraph reproduce hgb`` on a tiny run: table beside published rows, HGB prediction files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from brlgraph.cli.main import main
from brlgraph.cli.reproduce import parse_seeds
from brlgraph.errors import ConfigError
from brlgraph.train.runner import mean_std, seed_list
from tests.conftest import require_data

TINY = ["--set", "train.epochs=2", "--set", "sequences.seq_len=8", "--set", "model.hidden_channels=32",
        "--set", "model.heads=2", "--set", "model.layers=1", "--set", "model.gnn_layers=1",
        "--set", "train.batch_size=2048"]


def test_reproduce_writes_table_and_hgb_predictions(tmp_path, monkeypatch, capsys, cache_dir):
    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    out = tmp_path / "rep"
    code = main(["reproduce", "hgb", "--datasets", "DBLP,Freebase", "--seeds", "2", "--out", str(out),
                 "--quiet", *TINY])
    assert code == 0
    captured = capsys.readouterr()
    # Freebase has no graph files here: one clear line naming them, and DBLP still ran
    freebase = [line for line in captured.err.splitlines() if "Freebase" in line and "error" in line]
    assert len(freebase) == 1 and "node.dat" in freebase[0] and "link.dat" in freebase[0]
    assert "HINormer" in captured.out
    table = pd.read_csv(out / "hgb_table.csv", index_col=0, keep_default_na=False)
    assert float(table.loc["HINormer", "DBLP Micro-F1"]) == pytest.approx(94.94)
    assert "±" in table.iloc[0]["DBLP Micro-F1"] and table.iloc[0]["Freebase Micro-F1"] == "n/a"
    assert (out / "hgb_table.md").read_text().startswith("| method |")
    gaps = pd.read_csv(out / "hgb_gaps.csv", index_col=0, keep_default_na=False, dtype=str)
    assert list(gaps.index) == ["DBLP Micro-F1", "DBLP Macro-F1"]
    ours = float(table.iloc[0]["DBLP Micro-F1"].split(" ± ")[0])
    assert float(gaps.loc["DBLP Micro-F1", "HINormer"]) == pytest.approx(ours - 94.94, abs=1e-9)
    assert "ours minus published" in captured.out
    global_ids = set()
    for seed in (1, 2):
        rows = (out / f"DBLP_{seed}.txt").read_text().splitlines()
        assert len(rows) == 2840  # one line per test node of label.dat.test
        for row in rows:
            node, empty, node_type, label = row.split("\t")
            assert empty == "" and node_type == "0" and label in {"0", "1", "2", "3"}
            global_ids.add(int(node))
    assert not (out / "Freebase_1.txt").exists()
    scores = json.loads((out / "hgb_scores.json").read_text())
    assert set(scores) == {"DBLP"} and len(scores["DBLP"]) == 2
    assert all(0 <= s["test_micro_f1"] <= 1 and "epochs" in s for s in scores["DBLP"])
    # the ids are node.dat ids of DBLP authors (node.dat lists authors first: 0..4056)
    assert max(global_ids) < 4057 and len(global_ids) == 2840


def test_reproduce_with_nothing_runnable_fails(tmp_path, monkeypatch, capsys, cache_dir):
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "empty"))
    code = main(["reproduce", "hgb", "--datasets", "ACM", "--seeds", "1", "--quiet",
                 "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert "none of ACM could be run" in err and "Traceback" not in err
    assert not (tmp_path / "rep" / "ACM_1.txt").exists()


def test_parallel_runs_equal_sequential_ones(tmp_path, monkeypatch, capsys, cache_dir):
    # two runs at once, each in a process of its own with one thread, against the same runs
    # one after the other in this process with one thread: the same scores and predictions,
    # in seed order, and one results line per run
    import torch

    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["reproduce", "hgb", "--datasets", "DBLP,Freebase", "--seeds", "2", "--quiet", *TINY]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*argv, "--out", str(tmp_path / "seq")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*argv, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    err = capsys.readouterr().err
    assert sum("Freebase" in line and "error" in line for line in err.splitlines()) == 2  # once per call

    def scores(folder):
        return [{k: v for k, v in m.items() if "seconds" not in k}
                for m in json.loads((tmp_path / folder / "hgb_scores.json").read_text())["DBLP"]]

    assert scores("par") == scores("seq") and len(scores("par")) == 2
    for seed in (1, 2):
        assert (tmp_path / "par" / f"DBLP_{seed}.txt").read_text() == \
            (tmp_path / "seq" / f"DBLP_{seed}.txt").read_text()
    lines = (tmp_path / "par" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["seed"] for line in lines) == [1, 2]
    assert (tmp_path / "par" / "hgb_table.md").read_text() == (tmp_path / "seq" / "hgb_table.md").read_text()


def test_jobs_must_be_positive(capsys):
    assert main(["reproduce", "hgb", "--datasets", "DBLP", "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err


@pytest.mark.parametrize("text, seeds", [("3", [1, 2, 3]), ("6-8", [6, 7, 8]), ("4,1,9", [4, 1, 9]),
                                         (" 2 ", [1, 2]), ("5-5", [5])])
def test_seed_specs(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "-2", "8-6", "a", "1-2-3", "1,1", "0,2", "", "2.5"])
def test_bad_seed_specs_name_the_option(text):
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)
    with pytest.raises(ConfigError):
        seed_list(0)
    with pytest.raises(ConfigError):
        seed_list([3, 3])


def test_reproduce_runs_exactly_the_given_seeds_in_their_order(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train(dataset, seed, overrides, out, device, progress, results_file, resume=False,
                   download=False, allow_pickle=False):
        calls.append((dataset, seed))
        m = {"test_micro_f1": seed / 100, "test_macro_f1": seed / 200, "epochs": seed, "seconds": 1.0}
        return {"metrics": m, "dataset": dataset, "attention": "brl", "record": {"seed": seed},
                "predictions": {"global_id": [7], "labels": [[1]], "node_type_id": 0}}

    monkeypatch.setattr("brlgraph.train.runner._train_one", fake_train)
    out = tmp_path / "rep"
    assert main(["reproduce", "hgb", "--datasets", "ACM", "--seeds", "9,6", "--out", str(out), "--quiet"]) == 0
    assert calls == [("ACM", 9), ("ACM", 6)]
    assert sorted(p.name for p in out.glob("ACM_*.txt")) == ["ACM_6.txt", "ACM_9.txt"]
    scores = json.loads((out / "hgb_scores.json").read_text())["ACM"]
    assert [(s["seed"], s["epochs"]) for s in scores] == [(9, 9), (6, 6)]
    mean, std = mean_std([9.0, 6.0])
    assert f"{mean:.2f} ± {std:.2f}" in capsys.readouterr().out


def test_reproduce_resume_reuses_finished_runs_and_refuses_another_config(tmp_path, monkeypatch, capsys,
                                                                         cache_dir):
    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    out = tmp_path / "rep"
    args = ["reproduce", "hgb", "--datasets", "DBLP", "--seeds", "1", "--out", str(out), "--quiet", *TINY]
    assert main(args) == 0
    first = json.loads((out / "hgb_scores.json").read_text())["DBLP"]
    predictions = (out / "DBLP_1.txt").read_text()
    assert main([*args, "--resume"]) == 0
    again = json.loads((out / "hgb_scores.json").read_text())["DBLP"]
    def trained(scores):  # all but the time spent loading the data, which is measured anew
        return [{k: v for k, v in r.items() if k != "setup_seconds"} for r in scores]

    assert trained(again) == trained(first)  # evaluated again, not retrained: same seconds too
    assert (out / "DBLP_1.txt").read_text() == predictions
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["resumed"] for r in records] == [False, True]
    capsys.readouterr()
    assert main([*args, "--resume", "--set", "model.hidden_channels=16"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "DBLP-seed1" in err and "Traceback" not in err


# --------------------------------------------------------------------------- hostile inputs


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("brlgraph: error:")]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_value_out_of_range_is_one_line_before_any_folder(tmp_path, monkeypatch, capsys, jobs):
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "empty"))
    out = tmp_path / "rep"
    for item in ("train.epochs=0", "model.dropout=1.5", "train.lr=-0.01"):
        assert main(["reproduce", "hgb", "--datasets", "DBLP,ACM", "--seeds", "3", "--jobs", jobs,
                     "--set", item, "--out", str(out)]) == 2
        [line] = _error_lines(capsys)
        assert item.split("=")[0] in line
        assert not out.exists()
    assert main(["reproduce", "hgb", "--datasets", "ACM", "--seeds", "4294967290-4294967296",
                 "--out", str(out)]) == 2
    [line] = _error_lines(capsys)
    assert "'seed' must be in 0..4294967295, got 4294967296" in line and not out.exists()


def test_too_many_seeds_are_refused_before_the_list_is_built(capsys):
    for spec in ("1-100000000000", "100000000000", "1001"):
        assert main(["reproduce", "hgb", "--seeds", spec]) == 2
        [line] = _error_lines(capsys)
        assert f"--seeds {spec}" in line and "at most 1000 seeds" in line


def test_reproduce_folders_are_owned_by_one_run(tmp_path, monkeypatch, capsys, cache_dir):
    from brlgraph.io import run_folder_lock

    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "empty"))
    out = tmp_path / "rep"
    argv = ["reproduce", "hgb", "--datasets", "DBLP", "--seeds", "1", "--out", str(out), "--quiet"]
    with run_folder_lock(out):  # another reproduction writing the same tables
        assert main(argv) == 2
        [line] = _error_lines(capsys)
        assert f"output folder {out} is in use by another run" in line
    run = out / "runs" / "DBLP-seed1"
    run.mkdir(parents=True)
    with run_folder_lock(run):  # a train --out of one of its runs
        assert main(argv) == 2
        [line] = _error_lines(capsys)
        assert f"output folder {run} is in use by another run" in line


def test_reproduce_knn_reads_a_mini_imagenet_pickle_only_when_allowed(tmp_path, monkeypatch, capsys,
                                                                      cache_dir):
    import pickle

    import numpy as np

    folder = tmp_path / "data" / "mini-imagenet"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    with open(folder / "mini_imagenet.pkl", "wb") as f:
        pickle.dump({"features": rng.standard_normal((40, 4)) + labels[:, None], "labels": labels}, f)
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "data"))
    argv = ["reproduce", "knn", "--datasets", "Mini-ImageNet", "--seeds", "1", "--quiet",
            "--set", "train.epochs=2", "--set", "model.hidden_channels=16", "--set", "model.gnn_layers=1"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    lines = _error_lines(capsys)
    assert "mini_imagenet.pkl is read as a pickle" in lines[0] and "--allow-pickle" in lines[0]
    assert main([*argv, "--allow-pickle", "--out", str(tmp_path / "allowed")]) == 0
    scores = json.loads((tmp_path / "allowed" / "knn_scores.json").read_text())["Mini-ImageNet"]
    assert len(scores) == 1 and 0 <= scores[0]["test_accuracy"] <= 1


def test_reproduce_ogb_sets_ogbs_metric_beside_the_published_rows(tmp_path, monkeypatch, capsys):
    from tests.data.ogb_samples import write_proteins

    write_proteins(tmp_path / "data" / "ogb")
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(tmp_path / "cache"))
    small = ["--set", "train.epochs=1", "--set", "model.hidden_channels=16", "--set", "model.heads=2",
             "--set", "model.gnn_layers=1"]
    assert main(["reproduce", "ogb", "--datasets", "ogbn-proteins,ogbn-arxiv", "--seeds", "1", *small,
                 "--quiet", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "ogbn-arxiv not found" in captured.err  # reported, skipped; proteins goes on
    table = (tmp_path / "out" / "ogb_table.md").read_text()
    assert "| ogbn-proteins ROC-AUC | ogbn-arxiv accuracy |" in table
    assert "| SGFormer | 79.53 ± 0.38 | 72.63 ± 0.13 |" in table
    assert "| NodeFormer | 77.45 ± 1.15 | n/a |" in table
    ours = next(line for line in table.splitlines() if "(ours)" in line)
    assert ours.endswith("| n/a |") and "±" in ours
    scores = json.loads((tmp_path / "out" / "ogb_scores.json").read_text())
    assert list(scores) == ["ogbn-proteins"] and 0 <= scores["ogbn-proteins"][0]["test_rocauc"] <= 1

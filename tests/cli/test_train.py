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
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("DBLP_3.txt", "checkpoint.pt", "results.jsonl"):  # as the umask says, not 0600
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert not (out / ".lock").exists()


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


def test_download_fetches_a_data_set_found_nowhere_and_trains(tmp_path, monkeypatch, capsys):
    import hashlib
    import zipfile

    from brlgraph.data import sources
    from tests.data.hgb_samples import SMALL_FILES

    # the small data set with 12 labelled authors, so that every split has nodes
    files = dict(SMALL_FILES)
    authors = "".join(f"{10 + i}\ta{i}\t0\t{i},1\n" for i in range(12))
    files["node.dat"] = files["node.dat"] + authors
    files["link.dat"] = files["link.dat"] + "".join(f"{10 + i}\t{4 + i % 4}\t0\t1.0\n{4 + i % 4}\t{10 + i}\t1\t1.0\n"
                                                    for i in range(12))
    files["label.dat"] = "".join(f"{10 + i}\ta{i}\t0\t{i % 3}\n" for i in range(10))
    files["label.dat.test"] = files["label.dat.test"] + "".join(f"{20 + i}\ta{10 + i}\t0\t{i}\n" for i in range(2))
    upstream = tmp_path / "upstream" / "ACM.zip"  # a file:// URL stands in for the network
    upstream.parent.mkdir()
    with zipfile.ZipFile(upstream, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    entry = sources.manifest()["ACM"]
    monkeypatch.setitem(entry, "urls", [upstream.as_uri()])
    monkeypatch.setitem(entry, "sha256", hashlib.sha256(upstream.read_bytes()).hexdigest())
    monkeypatch.setitem(entry, "alt_sha256", [])
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(tmp_path / "cache"))
    argv = ["train", "--dataset", "ACM", "--set", "train.epochs=1", "--set", "train.ensemble=1",
            "--quiet", "--out", str(tmp_path / "run")]
    line = _one_error_line(capsys, argv)  # without --download: not found, and says how to get it
    assert "brlgraph data download ACM" in line
    assert main([*argv, "--download"]) == 0
    assert (tmp_path / "cache" / "downloads" / "hgb" / "ACM.zip").is_file()
    assert "ACM (brl, seed 0): test Micro-F1" in capsys.readouterr().out


# --------------------------------------------------------------------------- hostile inputs


@pytest.fixture
def no_data(tmp_path, monkeypatch, cache_dir):
    """An empty data folder: a run that got as far as loading its data fails there."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("BRLGRAPH_DATA", str(empty))
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(empty))
    monkeypatch.chdir(tmp_path)
    return empty


@pytest.mark.parametrize("item, words", [
    ("train.lr=-0.01", ["'train.lr'", "(0, 1]", "-0.01"]),
    ("train.lr=1e3", ["'train.lr'", "(0, 1]", "1000.0"]),
    ("train.batch_size=0", ["'train.batch_size'", ">= 1", "got 0"]),
    ("train.batch_size=-5", ["'train.batch_size'", ">= 1", "got -5"]),
    ("model.hidden_channels=0", ["'model.hidden_channels'", ">= 1", "got 0"]),
    ("model.dropout=1.5", ["'model.dropout'", "[0, 1)", "1.5"]),
    ("train.weight_decay=-1", ["'train.weight_decay'", ">= 0", "-1"]),
    ("train.epochs=0", ["'train.epochs'", ">= 1", "got 0"]),
    ("train.epochs=-1", ["'train.epochs'", ">= 1", "got -1"]),
    ("train.grad_clip=inf", ["'train.grad_clip'", "finite", "inf"]),
    ("seed=-1", ["'seed'", "0..4294967295", "-1"]),
])
def test_a_value_out_of_range_is_one_line_and_makes_no_folder(capsys, tmp_path, no_data, item, words):
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--set", item, "--out", str(out)])
    for word in words:
        assert word in line
    assert not out.exists() and not (tmp_path / "runs").exists()


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in: read-only, or for root sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return "/sys"


@pytest.mark.parametrize("case", ["a file", "a folder without write permission", "/dev/null/run"])
def test_an_unusable_out_is_one_line(capsys, tmp_path, no_data, case):
    (tmp_path / "file").write_text("x")
    out = {"a file": tmp_path / "file", "/dev/null/run": "/dev/null/run",
           "a folder without write permission": _unwritable_folder(tmp_path)}[case]
    for command in (["train", "--dataset", "DBLP"], ["reproduce", "hgb", "--datasets", "DBLP"]):
        line = _one_error_line(capsys, [*command, "--out", str(out)])
        assert f"output folder {out} " in line and "choose another --out" in line
    assert (tmp_path / "file").read_text() == "x"


def test_a_second_run_on_the_same_out_is_refused(capsys, tmp_path, no_data):
    from brlgraph.io import run_folder_lock

    out = tmp_path / "busy"
    out.mkdir()
    with run_folder_lock(out):
        line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--out", str(out)])
        assert f"output folder {out} is in use by another run (held by pid {os.getpid()})" in line
    # the data, not the folder, stops the run now; and the folder it did not make stays
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", "--out", str(out)])
    assert "DBLP" in line and "in use" not in line
    assert out.is_dir() and not list(out.iterdir())


def test_a_diverging_run_stops_in_one_line_and_keeps_its_last_checkpoint(capsys, tmp_path, monkeypatch,
                                                                         dblp_cache):
    from brlgraph.train.checkpoint import load_checkpoint
    from brlgraph.train.experiment import NodeSequenceTask

    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(dblp_cache))
    calls = []
    loss = NodeSequenceTask.loss

    def diverging(self, batch):  # one step per epoch here: the second epoch's loss is NaN
        calls.append(1)
        return loss(self, batch) * (float("nan") if len(calls) == 2 else 1.0)

    monkeypatch.setattr(NodeSequenceTask, "loss", diverging)
    out = tmp_path / "run"
    line = _one_error_line(capsys, ["train", "--dataset", "DBLP", *FAST, "--set", "train.epochs=4",
                                    "--out", str(out)])
    assert "training diverged: the loss is nan at epoch 2, step 1" in line and "lower train.lr" in line
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # no results, no predictions


def test_a_checkpoint_that_cannot_be_restored_is_one_line(capsys, tmp_path, monkeypatch, dblp_cache):
    import torch

    monkeypatch.setenv("BRLGRAPH_DATA", str(require_data("hgb", "DBLP.zip").parents[1]))
    monkeypatch.setenv("BRLGRAPH_CACHE", str(dblp_cache))
    out = tmp_path / "run"
    argv = ["train", "--dataset", "DBLP", *FAST, "--out", str(out)]
    assert main([*argv, "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["optimizer"]
    torch.save(state, out / "checkpoint.pt")
    line = _one_error_line(capsys, [*argv, "--resume"])
    assert f"checkpoint {out / 'checkpoint.pt'} cannot be restored (KeyError: missing entry 'optimizer')" in line


def test_mini_imagenet_pickles_are_refused_without_allow_pickle(capsys, tmp_path, no_data):
    import pickle

    import numpy as np

    (no_data / "mini-imagenet").mkdir()
    path = no_data / "mini-imagenet" / "mini_imagenet.pkl"
    with open(path, "wb") as f:
        pickle.dump({"features": np.zeros((8, 2)), "labels": np.zeros(8, dtype=int)}, f)
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["train", "--dataset", "Mini-ImageNet", "--out", str(out)])
    assert str(path) in line and "--allow-pickle" in line and not out.exists()


@pytest.mark.parametrize("command", [["train"], ["reproduce"], ["data", "stats"], ["data", "verify"]])
def test_allow_pickle_says_it_runs_code(capsys, command):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--allow-pickle" in text and "unpickling runs code from the file: use only with files you trust" in text


@pytest.mark.parametrize("dataset", ["ogbn-arxiv"])
def test_ogb_runs_score_with_ogbs_evaluator(capsys, tmp_path, monkeypatch, dataset):
    """`brlgraph train --dataset ogbn-*` on data in ogb's raw layout: ogb processes it, the
    run ends with ogb's metric (accuracy, or ROC-AUC for the multi-label ogbn-proteins:
    `reproduce ogb` runs it in tests/cli/test_reproduce.py, ogbn-mag runs in
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

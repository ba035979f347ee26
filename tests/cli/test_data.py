"""The ``brlgraph data`` sub-command on the real files."""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from brlgraph.cli import data as data_cli
from brlgraph.cli.main import main
from tests.data.hgb_samples import SMALL_FILES, write_hgb


def run_data(argv, capsys):
    """Run ``brlgraph data ...`` through the data module's own parser."""
    parser = argparse.ArgumentParser(prog="brlgraph")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    code = args.func(args)
    return code, capsys.readouterr()


def test_stats_json_prints_the_verified_counts(shared_data, cache_dir, capsys):
    code, out = run_data(["stats", "DBLP", "--json", "--root", str(shared_data)], capsys)
    assert code == 0
    stats = json.loads(out.out)
    assert stats["nodes"] == {"author": 4057, "paper": 14328, "term": 7723, "venue": 20}
    assert stats["num_nodes"] == 26128
    assert stats["num_links"] == 239566 and len(stats["edges"]) == 6
    assert stats["features"] == {"author": 334, "paper": 4231, "term": 50, "venue": None}
    assert stats["num_classes"] == 4 and stats["target_type"] == "author"
    assert (stats["labelled"], stats["test"]) == (1217, 2840)
    assert stats["split"] == {"seed": 0, "train": 974, "val": 243, "test": 2840}


def test_list_and_freebase_labels(shared_data, cache_dir, capsys, monkeypatch):
    monkeypatch.setenv("BRLGRAPH_DATA", str(shared_data))
    code, out = run_data(["list"], capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.out.splitlines()}
    assert "present" in lines["DBLP"] and "present" in lines["20News"]
    assert "labels only" in lines["Freebase"]
    code, out = run_data(["stats", "Freebase", "--json"], capsys)
    stats = json.loads(out.out)
    assert (stats["labelled"], stats["test"], stats["num_classes"]) == (2386, 5568, 7)
    assert stats["graph_files"] is False


def test_verify_accepts_the_real_file_and_rejects_a_tampered_copy(shared_data, cache_dir, tmp_path,
                                                                   capsys):
    code, out = run_data(["verify", "ACM", "--root", str(shared_data)], capsys)
    assert code == 0 and "format ok" in out.out
    root = tmp_path / "data"
    (root / "hgb").mkdir(parents=True)
    copy = shutil.copy(shared_data / "hgb" / "ACM.zip", root / "hgb" / "ACM.zip")
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert main(["data", "verify", "ACM", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "ACM.zip" in err and "Traceback" not in err


def test_errors_exit_non_zero_without_traceback(tmp_path, cache_dir, capsys, monkeypatch):
    monkeypatch.delenv("BRLGRAPH_DATA", raising=False)
    assert main(["data", "stats", "DBLP", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brlgraph: error: data set DBLP not found") and "Traceback" not in err
    assert main(["data", "stats", "NoSuchSet"]) == 2
    assert "unknown data set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "stats"])


def test_an_error_during_parsing_starts_a_line_of_its_own(tmp_path, cache_dir, capsys):
    bad_links = SMALL_FILES["link.dat"] + "3\t66\t0\t1.0\n"  # node 66 does not exist
    write_hgb(tmp_path / "hgb" / "DBLP", {**SMALL_FILES, "link.dat": bad_links})
    assert main(["data", "stats", "DBLP", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "parse DBLP" in err  # the progress bar was drawn ...
    # ... and cleared: the error is alone on its line, as the terminal shows it
    shown = [line.split("\r")[-1] for line in err.split("\n") if line.split("\r")[-1].strip()]
    assert len(shown) == 1 and shown[0].startswith("brlgraph: error: ") and "node 66" in shown[0]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("action", ["stats", "verify"])
def test_mini_imagenet_pickles_need_allow_pickle(tmp_path, cache_dir, capsys, action):
    marker = tmp_path / "code-ran"
    path = tmp_path / "mini_imagenet.pkl"
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        pickle.dump({"features": rng.standard_normal((12, 3)), "labels": rng.integers(0, 2, 12),
                     "extra": RunsCode(marker)}, f)
    assert main(["data", action, "Mini-ImageNet", "--path", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "--allow-pickle" in lines[0]
    assert not marker.exists()
    assert main(["data", action, "Mini-ImageNet", "--path", str(path), "--allow-pickle"]) == 0
    assert marker.exists()

"""The processed-data cache: an entry that does not hold what its reader expects, in any
way, is a miss (removed, rebuilt, one notice naming it); nothing in it runs code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brlgraph.data import load_hgb, load_mini_imagenet
from brlgraph.data.cache import cache_path, cached, expect, is_tensor
from tests.data.hgb_samples import SMALL_FILES, write_hgb

GOOD = {"x": torch.arange(6.0).view(3, 2)}


def _check(value):
    expect(is_tensor(value["x"], 2, 3, "float"), "x is not a float [3, d] matrix")


class RunsCode:
    """Pickled, this object calls ``Path.touch(marker)`` when it is loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _notices(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("brlgraph: warning:")]


@pytest.mark.parametrize("case", ["empty dict", "not a dict", "wrong type", "wrong shape", "garbage",
                                  "runs code"])
def test_an_entry_not_holding_what_the_reader_expects_is_rebuilt(cache_dir, tmp_path, capsys, case):
    path = cache_path("Toy", "k1")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    if case == "garbage":
        path.write_bytes(b"PK\x03\x04 not a torch file")
    else:
        torch.save({"empty dict": {}, "not a dict": [1, 2], "wrong type": {"x": "text"},
                    "wrong shape": {"x": torch.zeros(5)}, "runs code": {"x": RunsCode(marker)}}[case], path)
    builds = []
    value = cached("Toy", "k1", lambda: builds.append(1) or GOOD, _check)
    assert builds == [1] and torch.equal(value["x"], GOOD["x"])
    notices = _notices(capsys)
    assert len(notices) == 1 and str(path) in notices[0] and "rebuilding" in notices[0]
    assert not marker.exists()  # read with weights_only: the pickled call never ran
    again = cached("Toy", "k1", lambda: builds.append(2) or GOOD, _check)  # the rebuilt entry is good
    assert builds == [1] and torch.equal(again["x"], GOOD["x"]) and _notices(capsys) == []


def test_a_good_entry_is_served_without_a_notice(cache_dir, capsys):
    cached("Toy", "k2", lambda: GOOD, _check)
    assert cached("Toy", "k2", lambda: pytest.fail("rebuilt"), _check)["x"].shape == (3, 2)
    assert _notices(capsys) == []


@pytest.mark.parametrize("damage", [
    lambda p: {},
    lambda p: {**p, "format": 1},
    lambda p: {**p, "node_types": "author"},
    lambda p: {k: v for k, v in p.items() if k != "y"},
    lambda p: {**p, "edge_index": [torch.tensor([[0], [999]])] + p["edge_index"][1:]},
    lambda p: {**p, "x": {**p["x"], "author": torch.zeros(2, 2)}},
    lambda p: {**p, "test": torch.tensor([10_000])},
    lambda p: {**p, "num_classes": 9},
])
def test_a_processed_hgb_entry_of_another_layout_is_rebuilt(tmp_path, cache_dir, capsys, damage):
    root = tmp_path / "data"
    write_hgb(root / "hgb" / "DBLP", SMALL_FILES)
    first = load_hgb("DBLP", root=root)
    [entry] = (cache_dir / "processed").glob("DBLP-*.pt")
    torch.save(damage(torch.load(entry, weights_only=True)), entry)
    again = load_hgb("DBLP", root=root)
    notices = _notices(capsys)
    assert len(notices) == 1 and str(entry) in notices[0]
    assert torch.equal(again["author"].x, first["author"].x)
    assert torch.equal(again["paper", "to", "author"].edge_index, first["paper", "to", "author"].edge_index)
    load_hgb("DBLP", root=root)
    assert _notices(capsys) == []  # rebuilt and saved: read as it is from now on


def test_a_knn_graph_entry_of_another_layout_is_rebuilt(tmp_path, cache_dir, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", features=rng.standard_normal((20, 4)), labels=rng.integers(0, 3, 20))
    first = load_mini_imagenet(tmp_path / "f.npz", k=3)
    [entry] = (cache_dir / "processed").glob("Mini-ImageNet_knn-*.pt")
    torch.save({"edge_index": torch.tensor([[0, 1], [2, 20]])}, entry)  # node 20 does not exist
    again = load_mini_imagenet(tmp_path / "f.npz", k=3)
    notices = _notices(capsys)
    assert len(notices) == 1 and str(entry) in notices[0] and "edge_index" in notices[0]
    assert torch.equal(again.edge_index, first.edge_index)

"""HGB loaders on the real DBLP, ACM and IMDB files and the real Freebase label files.

Expected counts are the verified ones of ``shared/data/README.md``.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile

import numpy as np
import pytest
import torch

from brlgraph.data import hgb_format, load_hgb
from brlgraph.data.hgb import label_summary, to_hetero_data
from brlgraph.errors import DataError

EXPECTED = {
    "DBLP": dict(
        nodes={"author": 4057, "paper": 14328, "term": 7723, "venue": 20}, links=239566,
        link_types=6, classes=4, labelled=1217, test=2840, target="author", multi=False,
        features={"author": 334, "paper": 4231, "term": 50, "venue": None},
    ),
    "ACM": dict(
        nodes={"paper": 3025, "author": 5959, "subject": 56, "term": 1902}, links=547872,
        link_types=8, classes=3, labelled=907, test=2118, target="paper", multi=False,
        features={"paper": 1902, "author": 1902, "subject": 1902, "term": None},
    ),
    "IMDB": dict(
        nodes={"movie": 4932, "director": 2393, "actor": 6124, "keyword": 7971}, links=86642,
        link_types=6, classes=5, labelled=1371, test=3202, target="movie", multi=True,
        features={"movie": 3489, "director": 3341, "actor": 3341, "keyword": None},
    ),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_counts_match_the_verified_figures(real_hgb, name):
    expected = EXPECTED[name]
    data = to_hetero_data(real_hgb(name), seed=0)
    assert {nt: data[nt].num_nodes for nt in data.node_types} == expected["nodes"]
    for nt, dim in expected["features"].items():
        if dim is None:
            assert "x" not in data[nt]
        else:
            assert data[nt].x.shape == (expected["nodes"][nt], dim)
            assert data[nt].x.dtype == torch.float32
    original = [et for et in data.edge_types if not et[1].startswith("rev_")]
    assert len(original) == expected["link_types"]
    assert sum(data[et].edge_index.shape[1] for et in original) == expected["links"]
    assert data.target_type == expected["target"]
    assert data.num_classes == len(data.class_names) == expected["classes"]
    assert data.multi_label is expected["multi"]
    target = data[expected["target"]]
    assert int((target.train_mask | target.val_mask).sum()) == expected["labelled"]
    assert int(target.test_mask.sum()) == expected["test"]
    assert int(target.val_mask.sum()) == int(expected["labelled"] * 0.2)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_graph_is_consistent(real_hgb, name):
    data = to_hetero_data(real_hgb(name), seed=0)
    # Global ids: HGB numbers types in contiguous ranges, in info.dat's type order.
    offset = 0
    for nt in data.node_types:
        n = data[nt].num_nodes
        assert torch.equal(data[nt].global_id, torch.arange(offset, offset + n))
        offset += n
    # Every edge type has its exact transpose, so every node can reach and be reached.
    keys = {}
    for (src, rel, dst) in data.edge_types:
        ei = data[(src, rel, dst)].edge_index
        assert ei.dtype == torch.long
        assert 0 <= int(ei[0].min()) and int(ei[0].max()) < data[src].num_nodes
        assert 0 <= int(ei[1].min()) and int(ei[1].max()) < data[dst].num_nodes
        keys[(src, rel, dst)] = (ei[0] * data[dst].num_nodes + ei[1]).sort().values
    for (src, rel, dst), ei in ((et, data[et].edge_index) for et in data.edge_types):
        transposed = (ei[1] * data[src].num_nodes + ei[0]).sort().values
        assert any(s == dst and d == src and torch.equal(k, transposed)
                   for (s, _, d), k in keys.items()), (src, rel, dst)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_labels(real_hgb, name):
    data = to_hetero_data(real_hgb(name), seed=0)
    target = data[data.target_type]
    labelled = target.train_mask | target.val_mask | target.test_mask
    if data.multi_label:
        assert target.y.shape == (target.num_nodes, data.num_classes)
        assert target.y.dtype == torch.float32
        assert set(target.y.unique().tolist()) <= {0.0, 1.0}
        assert (target.y[~labelled] == 0).all()
        assert (target.y[labelled].sum(1) >= 1).all()
    else:
        assert target.y.dtype == torch.long
        assert (target.y[~labelled] == -1).all()
        assert target.y[labelled].min() >= 0 and target.y[labelled].max() < data.num_classes
        # Every class is used by the training labels.
        assert len(target.y[target.train_mask].unique()) == data.num_classes


def test_splits_are_seeded_and_disjoint(real_hgb):
    processed = real_hgb("DBLP")
    a, b, c = (to_hetero_data(processed, seed=s)["author"] for s in (0, 0, 1))
    for mask in ("train_mask", "val_mask", "test_mask"):
        assert torch.equal(a[mask], b[mask])
    assert not torch.equal(a.train_mask, c.train_mask)
    assert torch.equal(a.test_mask, c.test_mask)  # label.dat.test is fixed
    assert torch.equal(a.train_mask | a.val_mask, c.train_mask | c.val_mask)
    for x in (a, c):
        assert not (x.train_mask & x.val_mask).any()
        assert not (x.train_mask & x.test_mask).any()
        assert not (x.val_mask & x.test_mask).any()


@pytest.mark.parametrize("name", ["DBLP", "IMDB"])
def test_fast_feature_parsing_equals_the_line_reader(shared_data, real_hgb, name):
    """The vectorised feature readers (digit and pandas paths) agree with float() per value."""
    with zipfile.ZipFile(shared_data / "hgb" / f"{name}.zip") as archive:
        raw = archive.read("node.dat")
    data = to_hetero_data(real_hgb(name), seed=0)
    offset = 0
    lines = raw.split(b"\n")
    for nt in data.node_types:
        n = data[nt].num_nodes
        if "x" in data[nt]:
            rows = [lines[i].split(b"\t")[3] for i in range(offset, offset + min(n, 40))]
            reference = hgb_format._features_slow(rows, list(range(len(rows))), len(rows[0].split(b",")), "x")
            assert np.array_equal(data[nt].x[: len(rows)].numpy(), reference)
        offset += n


def test_load_hgb_caches_and_serves_every_seed(shared_data, cache_dir):
    first_start = time.perf_counter()
    first = load_hgb("acm", root=shared_data, seed=3)
    first_time = time.perf_counter() - first_start
    entries = list((cache_dir / "processed").glob("ACM-*.pt"))
    assert len(entries) == 1
    start = time.perf_counter()
    second = load_hgb("ACM", root=shared_data, seed=3)
    cached_time = time.perf_counter() - start
    assert cached_time < 1.0 and cached_time < first_time
    assert torch.equal(first["paper"].x, second["paper"].x)
    assert torch.equal(first["paper"].train_mask, second["paper"].train_mask)
    other = load_hgb("ACM", root=shared_data, seed=4)
    assert not torch.equal(first["paper"].train_mask, other["paper"].train_mask)
    assert list((cache_dir / "processed").glob("ACM-*.pt")) == entries
    assert (first.name, first.seed, other.seed) == ("ACM", 3, 4)


def test_changed_source_invalidates_the_cache(shared_data, cache_dir, tmp_path):
    root = tmp_path / "data"
    (root / "hgb").mkdir(parents=True)
    copy = shutil.copy(shared_data / "hgb" / "ACM.zip", root / "hgb" / "ACM.zip")
    load_hgb("ACM", root=root)
    before = list((cache_dir / "processed").glob("ACM-*.pt"))
    os.utime(copy, ns=(0, 10**18))  # a new modification time: the source may have changed
    load_hgb("ACM", root=root)
    after = list((cache_dir / "processed").glob("ACM-*.pt"))
    assert len(before) == len(after) == 1 and before != after


def test_extracted_folder_and_env_var(shared_data, cache_dir, tmp_path, monkeypatch):
    folder = tmp_path / "data" / "hgb" / "ACM"
    with zipfile.ZipFile(shared_data / "hgb" / "ACM.zip") as archive:
        archive.extractall(folder)
    monkeypatch.setenv("BRLGRAPH_DATA", str(tmp_path / "data"))
    data = load_hgb("ACM")
    assert data["paper"].num_nodes == 3025
    assert data["paper"].x.shape == (3025, 1902)


def test_missing_data_set_says_where_it_looked(cache_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("BRLGRAPH_DATA", raising=False)
    with pytest.raises(DataError) as err:
        load_hgb("DBLP", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "hgb" / "DBLP.zip") in message
    assert "BRLGRAPH_DATA" in message and "brlgraph data download DBLP" in message
    with pytest.raises(DataError, match="unknown data set"):
        load_hgb("Cora", root=tmp_path)


def test_freebase_without_graph_files_explains(shared_data, cache_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shared_data / "hgb" / "Freebase-labels", root / "hgb" / "Freebase")
    with pytest.raises(DataError, match=r"node\.dat, link\.dat missing.*Freebase\.zip"):
        load_hgb("Freebase", root=root)


def test_real_freebase_label_files(shared_data):
    folder = shared_data / "hgb" / "Freebase-labels"
    summary = label_summary(folder)
    assert summary["labelled"] == 2386
    assert summary["test"] == 5568
    assert summary["num_classes"] == 7
    assert summary["target_type"] == "book"
    assert summary["class_names"][0] == "scholarly_work"
    info = hgb_format.parse_info((folder / "info.dat").read_bytes(), "info.dat")
    assert len(info.node_types) == 8 and len(info.link_types) == 36
    assert info.link_types[6] == (2, 0, "music-in-book")

"""OGB through ogb itself: small data sets in ogb's raw layout, processed by ogb's own code.

Nothing of ogb is mocked: ``PygNodePropPredDataset`` reads the raw CSV files, writes its
processed file and reads the split files; ``Evaluator`` scores. The tests check that
what brlgraph hands on is what was written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from brlgraph.data.ogb import OGB_NAMES, load_ogb, locate_ogb, ogb_evaluate
from brlgraph.errors import DataError
from tests.data.ogb_samples import write_arxiv, write_mag, write_products, write_proteins


def _masks_match(data_or_store, split):
    for ours, theirs in (("train", "train"), ("val", "valid"), ("test", "test")):
        rows = data_or_store[f"{ours}_mask"].nonzero().view(-1).numpy()
        assert np.array_equal(rows, split[theirs]), ours


def test_arxiv_through_ogb(tmp_path):
    written = write_arxiv(tmp_path / "ogb")
    data = load_ogb("ogbn-arxiv", tmp_path)
    assert (tmp_path / "ogb" / "ogbn_arxiv" / "processed" / "geometric_data_processed.pt").is_file()
    assert torch.allclose(data.x, torch.from_numpy(written["x"]))
    assert torch.equal(data.y, torch.from_numpy(written["y"]))
    assert torch.equal(data.edge_index, torch.from_numpy(written["edges"]))  # directed, as given
    _masks_match(data, written["split"])
    assert (data.num_classes, data.multi_label, data.ogb_metric) == (40, False, "acc")
    again = load_ogb("ogbn-arxiv", tmp_path)  # from ogb's processed file this time
    assert torch.equal(again.x, data.x) and torch.equal(again.edge_index, data.edge_index)


def test_products_gets_its_inverse_edges_from_ogb(tmp_path):
    written = write_products(tmp_path / "ogb")
    data = load_ogb("ogbn-products", tmp_path)
    e = written["edges"]
    assert data.edge_index.shape[1] == 2 * e.shape[1]  # ogb's add_inverse_edge
    assert torch.equal(data.edge_index[:, 0::2], torch.from_numpy(e))
    assert torch.equal(data.edge_index[:, 1::2], torch.from_numpy(e[::-1].copy()))
    _masks_match(data, written["split"])
    assert data.num_classes == 47


def test_proteins_features_are_mean_edge_features_and_labels_multi_label(tmp_path):
    written = write_proteins(tmp_path / "ogb")
    data = load_ogb("ogbn-proteins", tmp_path)
    n = data.num_nodes
    e, f = written["edges"], written["edge_feat"]
    both = np.concatenate([e, e[::-1]], 1)  # ogb lists every edge both ways
    feats = np.concatenate([f, f])
    expected = np.zeros((n, 8))
    np.add.at(expected, both[0], feats)
    expected /= np.maximum(np.bincount(both[0], minlength=n), 1)[:, None]
    assert np.allclose(data.x.numpy(), expected, atol=1e-6)
    assert data.y.dtype == torch.float32 and data.y.shape == (n, 112)
    assert torch.equal(data.y, torch.from_numpy(written["labels"]).float())
    _masks_match(data, written["split"])
    assert (data.multi_label, data.ogb_metric, data.num_classes) == (True, "rocauc", 112)


def test_mag_becomes_hgb_style_hetero_data(tmp_path):
    written = write_mag(tmp_path / "ogb")
    data = load_ogb("ogbn-mag", tmp_path)
    assert data.target_type == "paper" and data.num_classes == 349
    assert sorted(data.node_types) == sorted(written["counts"])
    for t, count in written["counts"].items():
        assert data[t].num_nodes == count and torch.equal(data[t].global_id, torch.arange(count))
    paper = data["paper"]
    assert torch.allclose(paper.x, torch.from_numpy(written["x"]))
    assert torch.equal(paper.y, torch.from_numpy(written["y"]))
    assert "x" not in data["author"]  # featureless: the model learns an embedding
    _masks_match(paper, written["split"])
    for key, ei in written["edges"].items():
        assert torch.equal(data[key].edge_index, torch.from_numpy(ei))
    # one-way relations get their reverse; paper-cites-paper goes both ways already
    rev = data["paper", "rev_writes", "author"].edge_index
    assert torch.equal(rev, torch.from_numpy(written["edges"]["author", "writes", "paper"][::-1].copy()))
    assert ("paper", "rev_cites", "paper") not in data.edge_types


def test_ogb_evaluator_scores_accuracy_and_rocauc():
    torch.manual_seed(0)
    logits = torch.randn(30, 40)
    y = torch.randint(0, 40, (30,))
    y[:10] = logits[:10].argmax(-1)
    expected = float((logits.argmax(-1) == y).float().mean())
    assert ogb_evaluate("ogbn-arxiv", logits, y) == {"accuracy": pytest.approx(expected)}
    scores = torch.randn(40, 112)
    labels = (torch.rand(40, 112) < 0.4).float()
    labels[0], labels[1] = 1, 0
    auc = np.mean([roc_auc_score(labels[:, i], scores[:, i]) for i in range(112)])
    assert ogb_evaluate("ogbn-proteins", scores, labels) == {"rocauc": pytest.approx(auc)}


def test_missing_data_names_places_and_download(tmp_path, monkeypatch):
    monkeypatch.delenv("BRLGRAPH_DATA", raising=False)
    monkeypatch.setenv("BRLGRAPH_CACHE", str(tmp_path / "cache"))
    assert locate_ogb("ogbn-arxiv", tmp_path) is None
    with pytest.raises(DataError, match="brlgraph data download ogbn-arxiv"):
        load_ogb("ogbn-arxiv", tmp_path)
    with pytest.raises(DataError, match="unknown OGB data set"):
        load_ogb("ogbn-papers", tmp_path)
    assert len(OGB_NAMES) == 4


def test_unreadable_files_are_a_data_error(tmp_path):
    write_arxiv(tmp_path / "ogb")
    (tmp_path / "ogb" / "ogbn_arxiv" / "raw" / "num-node-list.csv.gz").unlink()
    with pytest.raises(DataError, match="ogb could not read"):
        load_ogb("ogbn-arxiv", tmp_path)


def test_a_failed_ogb_download_leaves_nothing_and_a_finished_one_moves_into_place(tmp_path, monkeypatch):
    from brlgraph.data import ogb

    def failing(name, root):  # ogb's download cut half-way: a partial folder, then an error
        (root / ogb.ogb_folder(name) / "raw").mkdir(parents=True)
        raise DataError("connection reset")

    monkeypatch.setattr(ogb, "_pyg_dataset", failing)
    base = tmp_path / "data" / "ogb"
    with pytest.raises(DataError, match="connection reset"):
        ogb.fetch_ogb("ogbn-arxiv", base)
    assert not (tmp_path / "data").exists()

    def finishing(name, root):
        (root / ogb.ogb_folder(name) / "processed").mkdir(parents=True)
        return None, None

    monkeypatch.setattr(ogb, "_pyg_dataset", finishing)
    assert ogb.fetch_ogb("ogbn-arxiv", base) == base
    assert [p.name for p in base.iterdir()] == ["ogbn_arxiv"]
    assert (base / "ogbn_arxiv" / "processed").is_dir()

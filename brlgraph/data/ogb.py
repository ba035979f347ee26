"""OGB node property prediction through the ``ogb`` package: ogbn-arxiv, -products, -proteins, -mag.

The files are read by ogb's own ``PygNodePropPredDataset`` from ``<root>/ogb/``: the
folder ogb downloads into and processes in place (``ogbn_arxiv/raw/*.csv.gz``,
``ogbn_arxiv/split/time/*.csv.gz``, its ``RELEASE_v<version>.txt`` marker, and the
``processed/`` file ogb writes on first use). ``root`` is, in order, the ``root``
argument, ``BRLGRAPH_DATA``, or ``<cache>/downloads`` (:mod:`brlgraph.data.sources`).
Without the files nothing is downloaded unless ``download=True`` (``brlgraph data
download ogbn-arxiv``), which runs ogb's own download into the first of those folders.

Splits are ogb's official ones (``get_idx_split``), metrics ogb's ``Evaluator``
(:func:`ogb_evaluate`). What each loader returns:

- ``ogbn-arxiv``, ``ogbn-products``: ``Data`` with ``x``, ``edge_index`` (as ogb gives it;
  brlgraph's graph views follow every edge both ways), ``y`` [N] (long),
  ``train_mask`` / ``val_mask`` / ``test_mask``;
- ``ogbn-proteins``: the same with ``y`` [N, 112] (float 0/1, multi-label) and, as node
  features, the mean of the 8 edge features over each node's edges (the proteins have
  none of their own; SGFormer and NodeFormer do the same);
- ``ogbn-mag``: ``HeteroData`` (``author``, ``field_of_study``, ``institution``, ``paper``)
  in the layout of :func:`~brlgraph.data.load_hgb`: ``paper`` is the target type with
  ``x`` (128), ``y``, the masks and ``global_id``; the other types are featureless, with
  a reverse edge type added where ogb gives one direction only.

Every data set also carries ``name``, ``num_classes``, ``multi_label`` and
``ogb_metric`` (``"acc"`` or ``"rocauc"``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brlgraph.data.sources import search_roots
from brlgraph.errors import DataError

#: node property prediction data sets brlgraph loads through ogb
OGB_NAMES = ("ogbn-arxiv", "ogbn-products", "ogbn-proteins", "ogbn-mag")
#: the target node type of the heterogeneous ogbn-mag
MAG_TARGET = "paper"


def ogb_folder(name: str) -> str:
    """ogb's folder name of a data set: ``ogbn-arxiv`` -> ``ogbn_arxiv``."""
    return name.replace("-", "_")


def locate_ogb(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The ``<base>/ogb`` folder that holds ``name`` (its folder with a ``raw/`` inside),
    or ``None``."""
    for base in search_roots(root):
        folder = base / "ogb" / ogb_folder(name)
        if (folder / "raw").is_dir() or (folder / "processed").is_dir():
            return base / "ogb"
    return None


def _check_name(name: str) -> str:
    for known in OGB_NAMES:
        if name.lower() == known:
            return known
    raise DataError(f"unknown OGB data set {name!r}; brlgraph loads {', '.join(OGB_NAMES)}")


@contextlib.contextmanager
def _quiet_ogb():
    """ogb reports its progress on stdout; send it to stderr, where progress goes, so that
    stdout keeps only brlgraph's results (``--json`` ends with a JSON line)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _pyg_dataset(name: str, root: Path):
    """ogb's ``PygNodePropPredDataset`` on ``root``, processing the raw files on first use.

    ogb loads its processed file with ``torch.load``, which (torch >= 2.6) accepts only
    allow-listed classes: the three torch_geometric classes that file holds are allowed
    for that call alone.
    """
    from ogb.nodeproppred import PygNodePropPredDataset
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    with _quiet_ogb(), torch.serialization.safe_globals([DataEdgeAttr, DataTensorAttr, GlobalStorage]):
        try:
            dataset = PygNodePropPredDataset(name, root=str(root))
            split = dataset.get_idx_split()
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise DataError(f"{name}: ogb could not read {root / ogb_folder(name)} "
                            f"({type(err).__name__}: {err}); delete its processed/ folder or "
                            "replace the files with ogb's download") from None
    return dataset, split


def load_ogb(name: str, root: str | os.PathLike | None = None, download: bool = False):
    """``Data`` (arxiv, products, proteins) or ``HeteroData`` (mag) of an OGB node property
    prediction data set, with ogb's official split; see the module docstring."""
    name = _check_name(name)
    base = locate_ogb(name, root)
    if base is None:
        if not download:
            looked = ", ".join(str(b / "ogb" / ogb_folder(name)) for b in search_roots(root))
            raise DataError(f"data set {name} not found; looked for {looked}. Put ogb's folder "
                            f"there (BRLGRAPH_DATA/ogb/{ogb_folder(name)}), or with internet access "
                            f"run `brlgraph data download {name}` (ogb's own download)")
        base = fetch_ogb(name, search_roots(root)[0] / "ogb")
    dataset, split = _pyg_dataset(name, base)
    graph = dataset[0]
    if name == "ogbn-mag":
        data = _mag(graph, split, dataset.num_classes)
    else:
        data = _homogeneous(name, graph, split, dataset.num_classes)
    data.name, data.ogb_metric = name, dataset.eval_metric
    return data


def fetch_ogb(name: str, base: Path) -> Path:
    """Run ogb's download and processing of ``name`` into a staging folder beside
    ``base``/<folder>, then move the finished folder into place: a failed or cut
    download leaves nothing behind (nor ``base`` when it was made for it). Returns
    ``base``."""
    import shutil
    import tempfile

    made = [p for p in (base.parent, base) if not p.exists()]
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{ogb_folder(name)}-", dir=base))
    try:
        _pyg_dataset(name, staging)
        os.replace(staging / ogb_folder(name), base / ogb_folder(name))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return base


def download_ogb(name: str, root: str | os.PathLike | None = None) -> Path:
    """Download and process ``name`` with ogb (into ``<root>/ogb``); the folder it is in."""
    load_ogb(name, root, download=True)
    found = locate_ogb(name, root)
    assert found is not None
    return found / ogb_folder(name)


def _masks(num_nodes: int, split: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for ours, theirs in (("train", "train"), ("val", "valid"), ("test", "test")):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[torch.as_tensor(split[theirs], dtype=torch.long)] = True
        out[f"{ours}_mask"] = mask
    return out


def _homogeneous(name: str, graph, split: dict[str, Any], num_classes: int):
    from torch_geometric.data import Data

    n = int(graph.num_nodes)
    edge_index = graph.edge_index.long()
    if name == "ogbn-proteins":
        # node features: the mean of each node's edge features (ogb lists each edge both ways)
        attr = graph.edge_attr.float()
        total = torch.zeros(n, attr.shape[1]).index_add_(0, edge_index[0], attr)
        count = torch.bincount(edge_index[0], minlength=n).clamp(min=1)
        x = total / count[:, None]
        y = graph.y.float()
        multi_label, classes = True, int(y.shape[1])
    else:
        x = graph.x.float()
        y = graph.y.view(-1).long()
        multi_label, classes = False, int(num_classes)
    data = Data(x=x, edge_index=edge_index, y=y, **_masks(n, split))
    data.num_nodes, data.num_classes, data.multi_label = n, classes, multi_label
    data.class_names = [str(c) for c in range(classes)]
    return data


def _mag(graph, split: dict[str, Any], num_classes: int):
    from torch_geometric.data import HeteroData

    data = HeteroData()
    counts = {t: int(c) for t, c in graph.num_nodes_dict.items()}
    for t in sorted(counts):
        data[t].num_nodes = counts[t]
        data[t].global_id = torch.arange(counts[t])
        x = graph.x_dict.get(t) if getattr(graph, "x_dict", None) else None
        if x is not None:
            data[t].x = x.float()
    given = {tuple(k): v for k, v in graph.edge_index_dict.items()}
    for (src, rel, dst), ei in sorted(given.items()):
        data[src, rel, dst].edge_index = ei.long()
    # relations given one way only also go back, as HGB's loader adds rev_<rel>
    for (src, rel, dst), ei in sorted(given.items()):
        if src != dst and not any(s == dst and d == src for s, _, d in given):
            data[dst, f"rev_{rel}", src].edge_index = ei.flip(0).long()
    paper = data[MAG_TARGET]
    y = graph.y_dict[MAG_TARGET].view(-1).long()
    paper.y = y
    for key, mask in _masks(counts[MAG_TARGET], {k: v[MAG_TARGET] for k, v in split.items()}).items():
        paper[key] = mask
    data.target_type, data.num_classes, data.multi_label = MAG_TARGET, int(num_classes), False
    data.class_names = [str(c) for c in range(int(num_classes))]
    return data


def ogb_evaluate(name: str, logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """ogb's ``Evaluator`` on model outputs: ``{"accuracy": ...}`` for the arg-max class
    (``acc`` data sets) or ``{"rocauc": ...}`` for the per-label scores (ogbn-proteins)."""
    from ogb.nodeproppred import Evaluator

    evaluator = Evaluator(_check_name(name))
    if evaluator.eval_metric == "rocauc":
        y_true, y_pred = target.detach().cpu().numpy(), logits.detach().float().cpu().numpy()
        return {"rocauc": float(evaluator.eval({"y_true": y_true, "y_pred": y_pred})["rocauc"])}
    y_true = target.detach().cpu().view(-1, 1).numpy()
    y_pred = logits.detach().argmax(-1).cpu().view(-1, 1).numpy().astype(np.int64)
    return {"accuracy": float(evaluator.eval({"y_true": y_true, "y_pred": y_pred})["acc"])}

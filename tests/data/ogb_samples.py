"""Small OGB node property prediction data sets written in ogb's own raw on-disk layout.

Each writer produces what ogb's download unpacks to (``<root>/<name with _>/raw/*.csv.gz``,
``split/<split type>/...``, the ``RELEASE_v<version>.txt`` marker that tells ogb the files
are current), with the files, columns and header conventions that ogb 1.3.6's readers
(``ogb/io/read_graph_raw.py``, ``ogb/nodeproppred/dataset_pyg.py``) parse and the
additional files its ``master.csv`` names (``node_year``, ``node_species``,
``edge_reltype``). ogb then processes them for real: nothing of ogb is replaced.

Every writer returns the arrays it wrote, so tests can check what ogb read back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _csv(path: Path, rows, header: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(np.asarray(rows))
    frame.to_csv(path, header=header, index=False, compression="gzip")


def _release(folder: Path, version: int) -> None:
    (folder / f"RELEASE_v{version}.txt").write_text(f"version {version}\n")


def _split(folder: Path, n: int, rng: np.random.Generator, fractions=(0.6, 0.2)) -> dict[str, np.ndarray]:
    perm = rng.permutation(n)
    a, b = int(fractions[0] * n), int((fractions[0] + fractions[1]) * n)
    split = {"train": np.sort(perm[:a]), "valid": np.sort(perm[a:b]), "test": np.sort(perm[b:])}
    for key, idx in split.items():
        _csv(folder / f"{key}.csv.gz", idx[:, None])
    return split


def _homophilous_edges(y: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m directed edges, 80 % of them inside a class, so that a graph model can learn."""
    n = len(y)
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    same = rng.random(m) < 0.8
    for i in np.nonzero(same)[0]:
        peers = np.nonzero(y == y[src[i]])[0]
        dst[i] = peers[rng.integers(0, len(peers))]
    return np.stack([src, dst])


def write_arxiv(root: Path, num_nodes: int = 120, num_features: int = 16, signal: float = 1.0,
                seed: int = 0) -> dict:
    """ogbn-arxiv: directed citations, float node features (class centroid times ``signal``
    plus noise), a year per node, 40 classes (all used), the ``time`` split."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_arxiv"
    raw = folder / "raw"
    y = np.arange(num_nodes) % 40
    rng.shuffle(y)
    centroids = signal * rng.normal(size=(40, num_features))
    x = (centroids[y] + rng.normal(size=(num_nodes, num_features))).astype(np.float32)
    edges = _homophilous_edges(y, 4 * num_nodes, rng)
    _csv(raw / "edge.csv.gz", edges.T)
    _csv(raw / "node-feat.csv.gz", x)
    _csv(raw / "node-label.csv.gz", y[:, None])
    _csv(raw / "node_year.csv.gz", rng.integers(1990, 2020, (num_nodes, 1)))
    _csv(raw / "num-node-list.csv.gz", [[num_nodes]])
    _csv(raw / "num-edge-list.csv.gz", [[edges.shape[1]]])
    split = _split(folder / "split" / "time", num_nodes, rng)
    _release(folder, 1)
    return {"x": x, "y": y, "edges": edges, "split": split}


def write_products(root: Path, num_nodes: int = 100, num_features: int = 10, seed: int = 1) -> dict:
    """ogbn-products: undirected co-purchases listed once (ogb adds the inverse), 47
    classes, the ``sales_ranking`` split."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_products"
    raw = folder / "raw"
    y = rng.integers(0, 47, num_nodes)
    x = rng.normal(size=(num_nodes, num_features)).astype(np.float32)
    edges = _homophilous_edges(y, 3 * num_nodes, rng)
    _csv(raw / "edge.csv.gz", edges.T)
    _csv(raw / "node-feat.csv.gz", x)
    _csv(raw / "node-label.csv.gz", y[:, None])
    _csv(raw / "num-node-list.csv.gz", [[num_nodes]])
    _csv(raw / "num-edge-list.csv.gz", [[edges.shape[1]]])
    split = _split(folder / "split" / "sales_ranking", num_nodes, rng)
    _release(folder, 1)
    return {"x": x, "y": y, "edges": edges, "split": split}


def write_proteins(root: Path, num_nodes: int = 90, num_tasks: int = 112, seed: int = 2) -> dict:
    """ogbn-proteins: no node features, 8 edge features, 112 binary tasks, a species per
    node (the ``species`` split), edges listed once (ogb adds the inverse)."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_proteins"
    raw = folder / "raw"
    edges = rng.integers(0, num_nodes, (2, 5 * num_nodes))
    edges = edges[:, edges[0] != edges[1]]
    edge_feat = rng.random((edges.shape[1], 8)).astype(np.float32).round(3)
    labels = (rng.random((num_nodes, num_tasks)) < 0.3).astype(np.int64)
    labels[0], labels[1] = 1, 0  # every task has both classes somewhere
    _csv(raw / "edge.csv.gz", edges.T)
    _csv(raw / "edge-feat.csv.gz", edge_feat)
    _csv(raw / "node-label.csv.gz", labels)
    _csv(raw / "node_species.csv.gz", rng.integers(3702, 3710, (num_nodes, 1)))
    _csv(raw / "num-node-list.csv.gz", [[num_nodes]])
    _csv(raw / "num-edge-list.csv.gz", [[edges.shape[1]]])
    split = _split(folder / "split" / "species", num_nodes, rng, (0.5, 0.25))
    # validation and test must each hold both classes of every task for ROC-AUC
    for key in ("valid", "test"):
        labels[split[key][0]], labels[split[key][1]] = 1, 0
    _csv(raw / "node-label.csv.gz", labels)
    _release(folder, 1)
    return {"edges": edges, "edge_feat": edge_feat, "labels": labels, "split": split}


#: ogbn-mag's four relations (head type, relation, tail type), as ogb names them
MAG_TRIPLETS = (("author", "affiliated_with", "institution"), ("author", "writes", "paper"),
                ("paper", "cites", "paper"), ("paper", "has_topic", "field_of_study"))


def write_mag(root: Path, counts: dict[str, int] | None = None, num_features: int = 8,
              num_classes: int = 349, signal: float = 0.0, seed: int = 3) -> dict:
    """ogbn-mag (release 2): four node types, features and labels for papers only, one
    folder per relation with ``edge_reltype``, the ``time`` split per node type. With
    ``signal`` > 0 a paper's features are its class centroid (that scale) plus noise."""
    rng = np.random.default_rng(seed)
    counts = counts or {"author": 50, "field_of_study": 12, "institution": 6, "paper": 80}
    folder = root / "ogbn_mag"
    raw = folder / "raw"
    types = sorted(counts)
    _csv(raw / "num-node-dict.csv.gz", pd.DataFrame({t: [counts[t]] for t in types}), header=True)
    _csv(raw / "triplet-type-list.csv.gz", [list(t) for t in MAG_TRIPLETS])
    edges = {}
    for r, (head, rel, tail) in enumerate(MAG_TRIPLETS):
        m = 3 * counts[head]
        ei = np.stack([rng.integers(0, counts[head], m), rng.integers(0, counts[tail], m)])
        edges[head, rel, tail] = ei
        sub = raw / "relations" / f"{head}___{rel}___{tail}"
        _csv(sub / "edge.csv.gz", ei.T)
        _csv(sub / "num-edge-list.csv.gz", [[m]])
        _csv(sub / "edge_reltype.csv.gz", np.full((m, 1), r))
    y = rng.integers(0, num_classes, counts["paper"])
    x = rng.normal(size=(counts["paper"], num_features)).astype(np.float32)
    x += (signal * rng.normal(size=(num_classes, num_features)))[y].astype(np.float32)
    _csv(raw / "node-feat" / "paper" / "node-feat.csv.gz", x)
    _csv(raw / "node-feat" / "paper" / "node_year.csv.gz", rng.integers(2010, 2020, (counts["paper"], 1)))
    _csv(raw / "node-label" / "paper" / "node-label.csv.gz", y[:, None])
    _csv(raw / "nodetype-has-label.csv.gz", pd.DataFrame({t: [t == "paper"] for t in types}), header=True)
    split_dir = folder / "split" / "time"
    _csv(split_dir / "nodetype-has-split.csv.gz", pd.DataFrame({t: [t == "paper"] for t in types}),
         header=True)
    split = _split(split_dir / "paper", counts["paper"], rng)
    _release(folder, 2)
    return {"counts": counts, "edges": edges, "x": x, "y": y, "split": split}


WRITERS = {"ogbn-arxiv": write_arxiv, "ogbn-products": write_products,
           "ogbn-proteins": write_proteins, "ogbn-mag": write_mag}

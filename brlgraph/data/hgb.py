"""HGB node-classification data sets (DBLP, ACM, IMDB, Freebase) as ``HeteroData``.

:func:`parse_hgb` reads HGB's five text files (:mod:`brlgraph.data.hgb_format`) into a
plain dictionary of tensors (cached, see :mod:`brlgraph.data.cache`);
:func:`to_hetero_data` applies the seeded train/validation split and builds the
:class:`~torch_geometric.data.HeteroData`.

Node ids are mapped to per-type local indices in ascending id order; each type
keeps the original ids as ``global_id``. Relation names follow the link
meaning: ``paper-cite-paper`` gives ``('paper', 'cite', 'paper')``, a two-part
meaning (``author-paper``, ``movie->director``) gives ``'to'``. A link type whose
exact transpose is not among the link types gets a reverse type ``rev_<rel>``.
Link weights (all 1 in DBLP/ACM/IMDB) become ``edge_weight`` only where some differ from 1.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData

from brlgraph.data import sources
from brlgraph.data.cache import cached, expect, in_range, is_tensor, source_key
from brlgraph.data.hgb_format import (
    REQUIRED_FILES,
    HGBFiles,
    HGBInfo,
    HGBLabels,
    HGBLinks,
    HGBNodes,
    fail_at,
    first_duplicate,
    parse_info,
    parse_labels,
    parse_links,
    parse_nodes,
)
from brlgraph.errors import DataError, notice

#: Bump when the processed layout or parsing rules change: old cache entries are ignored.
FORMAT_VERSION = 2
HGB_NAMES = ("DBLP", "ACM", "IMDB", "Freebase")
VAL_FRACTION = 0.2


# --------------------------------------------------------------------------- sources


# --------------------------------------------------------------------------- info.dat


# --------------------------------------------------------------------------- node.dat


# --------------------------------------------------------------------------- link.dat


# --------------------------------------------------------------------------- label files


def label_summary(folder: str | os.PathLike, multi_label: bool = False) -> dict[str, Any]:
    """Counts of an HGB data set's label files alone (Freebase here ships only these)."""
    files = HGBFiles(folder)
    info = parse_info(files.read("info.dat"), files.where("info.dat"))
    train = parse_labels(files.read("label.dat"), files.where("label.dat"), multi_label)
    test = parse_labels(files.read("label.dat.test"), files.where("label.dat.test"), multi_label)
    num_classes = 1 + max(max(c) for c in train.labels + test.labels)
    return {
        "target_type": info.node_types.get(train.node_type, str(train.node_type)),
        "labelled": len(train.ids),
        "test": len(test.ids),
        "num_classes": num_classes,
        "class_names": _class_names(info, num_classes, files.where("info.dat")),
    }


# --------------------------------------------------------------------------- whole data set


def parse_hgb(path: str | os.PathLike, multi_label: bool | None = None, name: str | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Parse an HGB data set (zip or folder) into a cacheable dictionary.

    ``multi_label=None`` detects it from the label files (a comma in a label).
    The result holds no split, and features that are single-digit counts stay
    uint8 (a quarter of the cache); :func:`to_hetero_data` makes both.
    """
    from tqdm import tqdm

    files = HGBFiles(path)
    # closed on an error too, so that the error starts a line of its own
    with tqdm(total=4, desc=f"parse {files.path.name}", file=sys.stderr, disable=not progress,
              leave=False) as bar:
        info = parse_info(files.read("info.dat"), files.where("info.dat"))
        nodes = parse_nodes(files.read("node.dat"), files.where("node.dat"), info)
        bar.update(2)
        links = parse_links(files.read("link.dat"), files.where("link.dat"), info, nodes)
        bar.update(1)
        raw_train, raw_test = files.read("label.dat"), files.read("label.dat.test")
        if multi_label is None:
            multi_label = any(b"," in line.split(b"\t")[-1] for line in raw_train.splitlines()[:1000])
        train = parse_labels(raw_train, files.where("label.dat"), multi_label)
        test = parse_labels(raw_test, files.where("label.dat.test"), multi_label)
        bar.update(1)

    names = info.node_types
    result: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "name": name or files.path.name.split(".")[0],
        "node_types": [names[t] for t in sorted(names)],
        "num_nodes": {names[t]: nodes.num_nodes[t] for t in names},
        "global_id": {names[t]: torch.from_numpy(nodes.global_ids[t].copy()) for t in names},
        "x": {names[t]: torch.from_numpy(np.ascontiguousarray(x)) for t, x in nodes.features.items()},
    }
    result.update(_edges(info, nodes, links))
    result.update(_targets(info, nodes, train, test, multi_label, files))
    return result


def _edges(info: HGBInfo, nodes: HGBNodes, links: HGBLinks) -> dict[str, Any]:
    names = info.node_types
    per_type = {}
    for lt, (s, d, meaning) in sorted(info.link_types.items()):
        sel = links.link_type == lt
        per_type[lt] = (links.src[sel], links.dst[sel], links.weight[sel], s, d, meaning)

    edge_types, edge_index, edge_weight, is_reverse = [], [], [], []
    used = set()

    def add(key: tuple[str, str, str], src: np.ndarray, dst: np.ndarray, w: np.ndarray, rev: bool):
        base, n = key[1], 1
        while key in used:  # two link types with one name: keep both, distinctly named
            n += 1
            key = (key[0], f"{base}_{n}", key[2])
        used.add(key)
        edge_types.append(list(key))
        edge_index.append(torch.from_numpy(np.stack([src, dst])))
        edge_weight.append(None if np.all(w == 1.0) else torch.from_numpy(w.astype(np.float32)))
        is_reverse.append(rev)

    def keys(src: np.ndarray, dst: np.ndarray, n_dst: int) -> np.ndarray:
        return np.sort(src * max(n_dst, 1) + dst)

    sorted_keys = {lt: keys(v[0], v[1], nodes.num_nodes[v[4]]) for lt, v in per_type.items()}
    for src, dst, w, s, d, meaning in per_type.values():
        rel = _relation_name(meaning)
        add((names[s], rel, names[d]), src, dst, w, False)
        transposed = keys(dst, src, nodes.num_nodes[s])
        has_reverse = any(
            per_type[other][3] == d and per_type[other][4] == s
            and np.array_equal(sorted_keys[other], transposed)
            for other in per_type
        )
        if not has_reverse:
            add((names[d], f"rev_{rel}", names[s]), dst, src, w, True)
    return {
        "edge_types": edge_types, "edge_index": edge_index,
        "edge_weight": edge_weight, "reverse_added": is_reverse,
    }


def _targets(info: HGBInfo, nodes: HGBNodes, train: HGBLabels, test: HGBLabels,
             multi_label: bool, files: HGBFiles) -> dict[str, Any]:
    target = train.node_type
    if test.node_type != target:
        raise DataError(
            f"{files.where('label.dat.test')}: labels node type {test.node_type}, "
            f"but label.dat labels type {target}"
        )
    if info.label_type is not None and info.label_type != target:
        raise DataError(
            f"{files.where('label.dat')}: labels node type {target}, but info.dat says the "
            f"labelled type is {info.label_type}"
        )
    if not info.class_names:
        raise DataError(f"{files.where('info.dat')}: names no classes for the labelled node type")
    limit = len(info.class_names)
    local = {}
    for part, member in ((train, "label.dat"), (test, "label.dat.test")):
        where = files.where(member)
        found, types, idx = nodes.lookup(part.ids)
        fail_at(~found, where, "labelled node {} is not in node.dat", part.ids, part.lines)
        fail_at(types != target, where, "labelled node {} is not of the labelled type", part.ids,
                 part.lines)
        top = np.fromiter((max(c) for c in part.labels), dtype=np.int64, count=len(part.labels))
        fail_at(top >= limit, where, f"label {{}} out of range (info.dat names {limit} classes)",
                 top, part.lines)
        dup = first_duplicate(idx)
        if dup is not None:
            raise DataError(f"{where}, line {part.lines[dup]}: node {part.ids[dup]} is labelled twice")
        local[member] = idx
    both = np.intersect1d(local["label.dat"], local["label.dat.test"])
    if len(both):
        raise DataError(
            f"{files.where('label.dat.test')}: {len(both)} nodes are also in label.dat; "
            f"test and training labels must be disjoint"
        )
    num_classes = 1 + max(max(c) for c in train.labels + test.labels)
    n = nodes.num_nodes[target]
    if multi_label:
        y = torch.zeros(n, num_classes)
    else:
        y = torch.full((n,), -1, dtype=torch.long)
    for part, member in ((train, "label.dat"), (test, "label.dat.test")):
        idx = torch.from_numpy(local[member])
        if multi_label:
            rows = torch.repeat_interleave(idx, torch.tensor([len(c) for c in part.labels]))
            cols = torch.tensor([c for cs in part.labels for c in cs], dtype=torch.long)
            y[rows, cols] = 1.0
        else:
            y[idx] = torch.tensor([c[0] for c in part.labels], dtype=torch.long)
    return {
        "target_type": info.node_types[target],
        "class_names": _class_names(info, num_classes, files.where("info.dat")),
        "num_classes": num_classes,
        "multi_label": bool(multi_label),
        "y": y,
        "labelled": torch.from_numpy(local["label.dat"]),
        "test": torch.from_numpy(local["label.dat.test"]),
    }


def check_processed(p: dict[str, Any]) -> None:
    """Raise ValueError unless ``p`` has the layout :func:`parse_hgb` makes: what
    :func:`to_hetero_data` and the model read, with every index in range (the check of
    a cache entry)."""
    expect(p["format"] == FORMAT_VERSION, f"format {p['format']!r}, not {FORMAT_VERSION}")
    expect(isinstance(p["name"], str), "name is not a string")
    types = p["node_types"]
    expect(isinstance(types, list) and len(types) > 0 and all(isinstance(t, str) for t in types),
           "node_types is not a list of names")
    expect(set(p["num_nodes"]) == set(types) and set(p["global_id"]) == set(types)
           and set(p["x"]) <= set(types), "the node types of num_nodes, global_id and x differ")
    n = p["num_nodes"]
    for t in types:
        expect(isinstance(n[t], int) and n[t] >= 0, f"num_nodes of {t} is not a count")
        expect(is_tensor(p["global_id"][t], 1, n[t], "int"), f"global_id of {t} is malformed")
        if t in p["x"]:
            expect(is_tensor(p["x"][t], 2, n[t]), f"x of {t} is malformed")
    count = len(p["edge_types"])
    expect(len(p["edge_index"]) == len(p["edge_weight"]) == len(p["reverse_added"]) == count,
           "the edge lists differ in length")
    for et, ei, ew, rev in zip(p["edge_types"], p["edge_index"], p["edge_weight"], p["reverse_added"],
                               strict=True):
        expect(isinstance(et, list) and len(et) == 3 and et[0] in n and et[2] in n
               and isinstance(et[1], str), f"edge type {et!r} is malformed")
        expect(is_tensor(ei, 2, 2, "int") and in_range(ei[0], n[et[0]]) and in_range(ei[1], n[et[2]]),
               f"edge_index of {et} is malformed")
        expect(ew is None or is_tensor(ew, 1, ei.shape[1], "float"), f"edge_weight of {et} is malformed")
        expect(isinstance(rev, bool), "reverse_added is not a list of booleans")
    target = p["target_type"]
    expect(target in n, f"target type {target!r} is not a node type")
    classes = p["num_classes"]
    expect(isinstance(classes, int) and classes >= 1 and isinstance(p["class_names"], list)
           and len(p["class_names"]) == classes, "num_classes and class_names disagree")
    expect(isinstance(p["multi_label"], bool), "multi_label is not a boolean")
    y = p["y"]
    expect(is_tensor(y, 2, n[target], "float") and y.shape[1] == classes if p["multi_label"]
           else is_tensor(y, 1, n[target], "int") and (y.numel() == 0 or int(y.max()) < classes),
           "y is malformed")
    for part in ("labelled", "test"):
        expect(is_tensor(p[part], 1, None, "int") and in_range(p[part], n[target]), f"{part} is malformed")


def to_hetero_data(processed: dict[str, Any], seed: int = 0) -> HeteroData:
    """Build the ``HeteroData`` from :func:`parse_hgb`'s dictionary, splitting with ``seed``.

    ``label.dat`` nodes are shuffled with ``torch.Generator().manual_seed(seed)``;
    the first ``floor(0.2 n)`` become validation, the rest training (HGB's rule).
    """
    data = HeteroData()
    for nt in processed["node_types"]:
        store = data[nt]
        store.num_nodes = processed["num_nodes"][nt]
        store.global_id = processed["global_id"][nt]
        if nt in processed["x"]:
            store.x = processed["x"][nt].to(torch.float32)  # digit counts are cached as uint8
    for et, ei, ew in zip(processed["edge_types"], processed["edge_index"],
                          processed["edge_weight"], strict=True):
        data[tuple(et)].edge_index = ei
        if ew is not None:
            data[tuple(et)].edge_weight = ew

    target = data[processed["target_type"]]
    n = target.num_nodes
    labelled = processed["labelled"]
    generator = torch.Generator().manual_seed(int(seed))
    shuffled = labelled[torch.randperm(len(labelled), generator=generator)]
    n_val = int(len(labelled) * VAL_FRACTION)
    target.y = processed["y"]
    target.train_mask = _mask(n, shuffled[n_val:])
    target.val_mask = _mask(n, shuffled[:n_val])
    target.test_mask = _mask(n, processed["test"])

    data.name = processed["name"]
    data.target_type = processed["target_type"]
    data.class_names = list(processed["class_names"])
    data.num_classes = int(processed["num_classes"])
    data.multi_label = bool(processed["multi_label"])
    data.seed = int(seed)
    return data


def load_hgb(name: str, root: str | os.PathLike | None = None, seed: int = 0, *,
             download: bool = False, progress: bool = False) -> HeteroData:
    """Load an HGB node-classification data set (DBLP, ACM, IMDB or Freebase).

    Files are looked for under ``root``, then ``BRLGRAPH_DATA``, then the
    download cache (see :mod:`brlgraph.data.sources`); with ``download=True`` a
    missing data set is fetched from its official URL and verified. The parsed
    graph is cached under ``BRLGRAPH_CACHE``; the train/validation split is
    drawn afterwards from ``seed``, so one cache entry serves every seed.
    """
    name = sources.canonical_name(name)
    if name not in HGB_NAMES:
        raise DataError(f"{name} is not an HGB data set; HGB data sets: {', '.join(HGB_NAMES)}")
    located = sources.locate(name, root)
    if located is None and download:
        sources.download(name, progress=progress)
        located = sources.locate(name, root)
    if located is None:
        raise DataError(sources.missing_message(name, root) + _freebase_hint(name))
    files = HGBFiles(located.path)
    missing = [f for f in REQUIRED_FILES if not files.has(f)]
    if missing:
        raise DataError(
            f"{located.path}: {', '.join(missing)} missing; an HGB data set needs "
            f"{', '.join(REQUIRED_FILES)}" + _freebase_hint(name)
        )
    entry = sources.manifest()[name]
    key = source_key(files.stat_paths(), FORMAT_VERSION, multi_label=entry["multi_label"])
    processed = cached(
        name, key,
        lambda: parse_hgb(located.path, entry["multi_label"], name=name, progress=progress),
        check_processed,
    )
    warn_about(files, processed)
    return to_hetero_data(processed, seed)


def warn_about(files: HGBFiles, processed: dict[str, Any]) -> None:
    """Notices (:func:`~brlgraph.errors.notice`) on valid files that are likely a mistake,
    at every load: an empty link.dat, and the older HGB release's label.dat.test_full."""
    if not any(ei.shape[1] for ei, rev in zip(processed["edge_index"], processed["reverse_added"],
                                              strict=True) if not rev):
        notice(f"{files.where('link.dat')} holds no links: the graph has no edges, and "
               "each node is classified from its own features alone")
    if files.has("label.dat.test_full"):
        notice(f"{files.where('label.dat.test_full')} is ignored: it is the older HGB release's "
               "whole test set with randomly replaced labels (THUDM/HGB issue 30); test scores "
               "are of label.dat.test, the part of the test set with its true labels")


# --------------------------------------------------------------------------- helpers


def _freebase_hint(name: str) -> str:
    if name != "Freebase":
        return ""
    return (
        ". Freebase's graph files (node.dat, link.dat) are not shipped with the label files: "
        "download Freebase.zip from HGB (see datasets/README.md) and place it as hgb/Freebase.zip"
    )


def _class_names(info: HGBInfo, num_classes: int, where: str) -> list[str]:
    if num_classes > len(info.class_names):
        raise DataError(f"{where}: names {len(info.class_names)} classes, but the labels use "
                        f"{num_classes}")
    return list(info.class_names[:num_classes])


def _relation_name(meaning: str) -> str:
    parts = [p.strip() for p in re.split(r"->|-", meaning) if p.strip()]
    return parts[1].lower() if len(parts) == 3 else "to"


def _mask(n: int, index: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[index] = True
    return mask

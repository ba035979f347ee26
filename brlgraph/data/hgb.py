"""HGB node-classification data sets (DBLP, ACM, IMDB, Freebase) as ``HeteroData``.

The Heterogeneous Graph Benchmark ships each data set as five text files:

* ``info.dat``: node types, link types (start type, end type, meaning) and the
  class names of the labelled type; JSON for DBLP/ACM/IMDB, plain text for
  Freebase.
* ``node.dat``: ``id<TAB>name<TAB>type[<TAB>f1,f2,...]``.
* ``link.dat``: ``src<TAB>dst<TAB>link_type<TAB>weight``.
* ``label.dat`` / ``label.dat.test``: ``id<TAB>name<TAB>type<TAB>label[,label...]``.

:func:`parse_hgb` turns them into a plain dictionary of tensors (cached, see
:mod:`brlgraph.data.cache`); :func:`to_hetero_data` applies the seeded
train/validation split and builds the :class:`~torch_geometric.data.HeteroData`.
The large files are read with vectorised fast paths (numpy, pandas); when a fast
path meets anything unexpected, a plain line-by-line reader of the same format
takes over, which either yields the same arrays or raises
:class:`~brlgraph.errors.DataError` naming the file and line.

Node ids are mapped to per-type local indices in ascending id order; each type
keeps the original ids as ``global_id``. Relation names follow the link
meaning: ``paper-cite-paper`` gives ``('paper', 'cite', 'paper')``, a two-part
meaning (``author-paper``, ``movie->director``) gives ``'to'``. A link type whose
exact transpose is not among the link types gets a reverse type ``rev_<rel>``.
Link weights (all 1 in DBLP/ACM/IMDB) become ``edge_weight`` only where some differ from 1.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from brlgraph.data import sources
from brlgraph.data.cache import cached, source_key
from brlgraph.errors import DataError


@functools.cache
def _exact_floats() -> dict[str, Any]:
    """``read_csv`` options that parse floats exactly as Python's ``float()`` (the line-by-line
    readers). Some pandas versions' default C parser can land one unit in the last place away
    (it does on 900719925.8203125); "round_trip" is exact there. Where the default already gets
    that value right (pandas 3.1 is exact and deprecates the option), no option is passed."""
    probe = b"900719925.8203125\n"
    got = pd.read_csv(io.BytesIO(probe), header=None, dtype=np.float64, engine="c")[0].iloc[0]
    return {} if got == float(probe) else {"float_precision": "round_trip"}

#: Bump when the processed layout or parsing rules change: old cache entries are ignored.
FORMAT_VERSION = 2
HGB_NAMES = ("DBLP", "ACM", "IMDB", "Freebase")
REQUIRED_FILES = ("info.dat", "node.dat", "link.dat", "label.dat", "label.dat.test")
VAL_FRACTION = 0.2



# --------------------------------------------------------------------------- sources


class HGBFiles:
    """The raw files of one HGB data set, in a zip archive or an extracted folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.is_archive = self.path.is_file()
        self._members: dict[str, str] = {}
        if self.is_archive:
            try:
                with zipfile.ZipFile(self.path) as archive:
                    names = [n for n in archive.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"{self.path}: cannot open as a zip archive ({err})") from None
            # Flat archives and archives with one top folder (DBLP/node.dat) both occur.
            for member in sorted(names, key=lambda n: n.count("/")):
                if member.count("/") <= 1:
                    self._members.setdefault(Path(member).name, member)
        elif self.path.is_dir():
            for child in self.path.iterdir():
                if child.is_file():
                    self._members[child.name] = child.name
        else:
            raise DataError(f"{self.path}: no such file or folder")

    def has(self, name: str) -> bool:
        return name in self._members

    def where(self, name: str) -> str:
        """How error messages name a member: ``DBLP.zip:node.dat`` or ``DBLP/node.dat``."""
        if self.is_archive:
            return f"{self.path}:{self._members.get(name, name)}"
        return str(self.path / name)

    def read(self, name: str) -> bytes:
        if name not in self._members:
            raise DataError(
                f"{self.path}: {name} is missing; an HGB data set needs "
                f"{', '.join(REQUIRED_FILES)}"
            )
        try:
            if self.is_archive:
                with zipfile.ZipFile(self.path) as archive:
                    return archive.read(self._members[name])
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DataError(f"{self.where(name)}: cannot be read ({err})") from None

    def stat_paths(self) -> list[Path]:
        """The files whose size and modification time key the cache."""
        if self.is_archive:
            return [self.path]
        return [self.path / self._members[n] for n in REQUIRED_FILES if n in self._members]


# --------------------------------------------------------------------------- info.dat


@dataclass
class HGBInfo:
    node_types: dict[int, str]
    link_types: dict[int, tuple[int, int, str]]  # id -> (start type, end type, meaning)
    label_type: int | None = None
    class_names: list[str] = field(default_factory=list)


def parse_info(raw: bytes, where: str) -> HGBInfo:
    """Parse ``info.dat`` (JSON for DBLP/ACM/IMDB, plain text for Freebase)."""
    text = _decode(raw, where)
    if text.lstrip().startswith("{"):
        return _parse_info_json(text, where)
    return _parse_info_text(text, where)


def _parse_info_json(text: str, where: str) -> HGBInfo:
    try:
        info = json.loads(text)
        node_types = {int(k): str(v) for k, v in info["node.dat"]["node type"].items()}
        link_types = {
            int(k): (int(v["start"]), int(v["end"]), str(v.get("meaning", "")))
            for k, v in info["link.dat"]["link type"].items()
        }
        label_type, class_names = None, []
        labels = info.get("label.dat", {}).get("node type", {})
        if labels:
            key = sorted(labels, key=int)[0]
            label_type = int(key)
            classes = {int(c): str(n) for c, n in labels[key].items()}
            class_names = [classes[c] for c in sorted(classes)]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{where}: not a valid HGB info file ({type(err).__name__}: {err})") from None
    return _checked_info(HGBInfo(node_types, link_types, label_type, class_names), where)


def _parse_info_text(text: str, where: str) -> HGBInfo:
    """Freebase's layout: sections with a header row and tab-separated rows."""
    node_types: dict[int, str] = {}
    link_types: dict[int, tuple[int, int, str]] = {}
    classes: dict[int, str] = {}
    label_type = None
    section = None
    for number, line in enumerate(text.splitlines(), 1):
        fields = [f for f in line.strip().split("\t") if f != ""]
        if not fields:
            section = None
            continue
        header = tuple(f.upper() for f in fields)
        if header == ("TYPE", "MEANING"):
            section = "node"
        elif header == ("LINK", "START", "END", "MEANING"):
            section = "link"
        elif header == ("TYPE", "CLASS", "MEANING"):
            section = "label"
        elif section is not None:
            try:
                if section == "node" and len(fields) == 2:
                    node_types[int(fields[0])] = fields[1].lower()
                elif section == "link" and len(fields) == 4:
                    link_types[int(fields[0])] = (int(fields[1]), int(fields[2]), fields[3].lower())
                elif section == "label" and len(fields) == 3:
                    label_type = int(fields[0]) if label_type is None else label_type
                    classes[int(fields[1])] = fields[2]
                else:
                    raise ValueError(f"{len(fields)} fields")
            except ValueError as err:
                raise DataError(f"{where}, line {number}: malformed {section} row ({err})") from None
    if not node_types or not link_types:
        raise DataError(f"{where}: no node-type or link-type table found; not an HGB info file")
    info = HGBInfo(node_types, link_types, label_type, [classes[c] for c in sorted(classes)])
    return _checked_info(info, where)


def _checked_info(info: HGBInfo, where: str) -> HGBInfo:
    for lt, (s, d, _) in info.link_types.items():
        if s not in info.node_types or d not in info.node_types:
            raise DataError(f"{where}: link type {lt} joins undeclared node types {s} and {d}")
    if len(set(info.node_types.values())) != len(info.node_types):
        raise DataError(f"{where}: node type names are not unique")
    return info


# --------------------------------------------------------------------------- node.dat


@dataclass
class HGBNodes:
    ids: np.ndarray  # sorted global ids of all nodes
    types: np.ndarray  # node type of each entry of ``ids``
    local: np.ndarray  # per-type local index of each entry of ``ids``
    num_nodes: dict[int, int]
    global_ids: dict[int, np.ndarray]
    features: dict[int, np.ndarray]

    def lookup(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map global ids to ``(found, type, local index)``."""
        pos = np.searchsorted(self.ids, query)
        pos_clipped = np.minimum(pos, max(len(self.ids) - 1, 0))
        found = (pos < len(self.ids)) & (self.ids[pos_clipped] == query) if len(self.ids) else (
            np.zeros(len(query), dtype=bool)
        )
        return found, self.types[pos_clipped], self.local[pos_clipped]


def parse_nodes(raw: bytes, where: str, info: HGBInfo) -> HGBNodes:
    """Parse ``node.dat``: ids, types and (per type) the feature matrix."""
    ids, types, feats_by_type, lines_by_type = [], [], {}, {}
    for number, line in enumerate(_lines(raw), 1):
        if line is None:
            continue
        fields = _fields(line, where, number, "id, name, type[, features]", (3, 4))
        node_id = _int(fields[0], where, number, "node id")
        node_type = _int(fields[2], where, number, "node type")
        if node_type not in info.node_types:
            raise DataError(f"{where}, line {number}: node type {node_type} is not declared in info.dat")
        ids.append(node_id)
        types.append(node_type)
        has_features = len(fields) == 4 and fields[3].strip() != b""
        feats = feats_by_type.setdefault(node_type, [])
        lines = lines_by_type.setdefault(node_type, [])
        if has_features != bool(feats) and lines:
            raise DataError(
                f"{where}, line {number}: node type {node_type} has features on some rows "
                f"and not on others"
            )
        if has_features:
            feats.append(fields[3])
        lines.append(number)
    if not ids:
        raise DataError(f"{where}: no nodes")
    ids_arr = np.asarray(ids, dtype=np.int64)
    types_arr = np.asarray(types, dtype=np.int64)
    order = np.argsort(ids_arr, kind="stable")
    sorted_ids = ids_arr[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        line_numbers = np.flatnonzero(ids_arr == sorted_ids[dup[0]]) + 1
        raise DataError(
            f"{where}: node id {sorted_ids[dup[0]]} appears twice "
            f"(lines {line_numbers[0]} and {line_numbers[1]})"
        )
    sorted_types = types_arr[order]
    local = np.empty_like(sorted_ids)
    num_nodes, global_ids, features = {}, {}, {}
    for t in info.node_types:
        mask = sorted_types == t
        count = int(mask.sum())
        local[mask] = np.arange(count)
        num_nodes[t] = count
        global_ids[t] = sorted_ids[mask]
        if feats_by_type.get(t):
            # Rows were collected in file order; reorder them to ascending id.
            file_order = np.argsort(ids_arr[types_arr == t], kind="stable")
            matrix = parse_feature_rows(feats_by_type[t], lines_by_type[t], where)
            in_order = bool(np.all(file_order[1:] > file_order[:-1]))
            features[t] = matrix if in_order else matrix[file_order]
    return HGBNodes(sorted_ids, sorted_types, local, num_nodes, global_ids, features)


def parse_feature_rows(rows: list[bytes], line_numbers: list[int], where: str) -> np.ndarray:
    """Comma-separated feature rows -> matrix; every row must have the same length.

    float32, or uint8 when every value is a single digit (bag-of-words counts).
    """
    widths = np.fromiter((r.count(b",") for r in rows), dtype=np.int64, count=len(rows)) + 1
    bad = np.flatnonzero(widths != widths[0])
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}, line {line_numbers[i]}: {widths[i]} features, but line "
            f"{line_numbers[0]} of the same node type has {widths[0]}"
        )
    dim = int(widths[0])
    try:
        matrix = _features_fast(rows, dim)
    except Exception:  # the fast path only handles well-formed input
        matrix = None
    if matrix is None or (matrix.dtype.kind == "f" and not np.isfinite(matrix).all()):
        matrix = _features_slow(rows, line_numbers, dim, where)
    return matrix


def _features_fast(rows: list[bytes], dim: int) -> np.ndarray | None:
    n = len(rows)
    joined = b",".join(rows)
    if len(joined) == 2 * n * dim - 1:
        # Every value is a single character: bag-of-words counts 0-9 (DBLP, ACM).
        buf = np.frombuffer(joined, dtype=np.uint8)
        digits = buf[0::2] - np.uint8(ord("0"))  # wraps non-digits to values > 9
        if (buf[1::2] == ord(",")).all() and (digits <= 9).all():
            # Kept as uint8 (a quarter of float32 to cache); to_hetero_data converts.
            return digits.reshape(n, dim)
    # One value per line: pandas parses a single long column much faster than
    # thousands of columns; the row widths were checked before.
    column = joined.replace(b",", b"\n")
    frame = pd.read_csv(
        io.BytesIO(column), header=None, names=[0], dtype=np.float32, engine="c",
        skip_blank_lines=False, na_filter=False, quoting=csv.QUOTE_NONE, **_exact_floats(),
    )
    values = frame[0].to_numpy(dtype=np.float32, copy=True)  # pandas may hand out read-only views
    if values.shape != (n * dim,):
        return None
    return values.reshape(n, dim)


def _features_slow(rows: list[bytes], line_numbers: list[int], dim: int, where: str) -> np.ndarray:
    matrix = np.empty((len(rows), dim), dtype=np.float32)
    for i, (row, number) in enumerate(zip(rows, line_numbers, strict=True)):
        values = row.split(b",")
        for j, value in enumerate(values):
            try:
                v = float(value)
            except ValueError:
                raise DataError(
                    f"{where}, line {number}: feature {j + 1} is not a number: {_show(value)}"
                ) from None
            if not np.isfinite(v):
                raise DataError(f"{where}, line {number}: feature {j + 1} is not finite ({v})")
            matrix[i, j] = v
    return matrix


# --------------------------------------------------------------------------- link.dat


@dataclass
class HGBLinks:
    src: np.ndarray  # local index into the start type
    dst: np.ndarray  # local index into the end type
    link_type: np.ndarray
    weight: np.ndarray


def parse_links(raw: bytes, where: str, info: HGBInfo, nodes: HGBNodes) -> HGBLinks:
    """Parse ``link.dat`` and check every link against the node and link types."""
    try:
        table = _links_fast(raw)
    except Exception:  # anything unusual: the line reader below names the problem
        table = None
    if table is None:
        table = _links_slow(raw, where)
    src_id, dst_id, link_type, weight = table
    known = np.isin(link_type, np.fromiter(info.link_types, dtype=np.int64))
    _fail_at(~known, where, "link type {} is not declared in info.dat", link_type)
    start = np.zeros_like(link_type)
    end = np.zeros_like(link_type)
    for lt, (s, d, _) in info.link_types.items():
        start[link_type == lt] = s
        end[link_type == lt] = d
    found_s, type_s, local_s = nodes.lookup(src_id)
    found_d, type_d, local_d = nodes.lookup(dst_id)
    _fail_at(~found_s, where, "source node {} is not in node.dat", src_id)
    _fail_at(~found_d, where, "target node {} is not in node.dat", dst_id)
    _fail_at(type_s != start, where, "source node {} has the wrong type for its link type", src_id)
    _fail_at(type_d != end, where, "target node {} has the wrong type for its link type", dst_id)
    return HGBLinks(local_s, local_d, link_type, weight)


def _links_fast(raw: bytes) -> tuple[np.ndarray, ...] | None:
    if not raw.endswith(b"\n"):
        raw += b"\n"
    buf = np.frombuffer(raw, dtype=np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    tabs = np.flatnonzero(buf == ord("\t"))
    tabs_per_line = np.bincount(np.searchsorted(newlines, tabs), minlength=len(newlines))
    if len(newlines) == 0 or (tabs_per_line != 3).any():
        return None
    frame = pd.read_csv(
        io.BytesIO(raw), sep="\t", header=None, names=range(4), engine="c",
        dtype={0: np.int64, 1: np.int64, 2: np.int64, 3: np.float64},
        skip_blank_lines=False, na_filter=False, quoting=csv.QUOTE_NONE, **_exact_floats(),
    )
    if len(frame) != len(newlines):
        return None
    weight = frame[3].to_numpy()
    if not np.isfinite(weight).all():
        return None
    return frame[0].to_numpy(), frame[1].to_numpy(), frame[2].to_numpy(), weight


def _links_slow(raw: bytes, where: str) -> tuple[np.ndarray, ...]:
    src, dst, link_type, weight = [], [], [], []
    for number, line in enumerate(_lines(raw, allow_blank=False, where=where), 1):
        fields = _fields(line, where, number, "source, target, link type, weight", (4,))
        src.append(_int(fields[0], where, number, "source node id"))
        dst.append(_int(fields[1], where, number, "target node id"))
        link_type.append(_int(fields[2], where, number, "link type"))
        try:
            w = float(fields[3])
        except ValueError:
            raise DataError(f"{where}, line {number}: weight is not a number: {_show(fields[3])}") from None
        if not np.isfinite(w):
            raise DataError(f"{where}, line {number}: weight is not finite ({w})")
        weight.append(w)
    return (
        np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
        np.asarray(link_type, dtype=np.int64), np.asarray(weight, dtype=np.float64),
    )


# --------------------------------------------------------------------------- label files


@dataclass
class HGBLabels:
    node_type: int  # the type of every labelled node
    ids: np.ndarray  # global ids, file order
    labels: list[list[int]]  # class indices of each node (one for single-label data)
    lines: list[int]


def parse_labels(raw: bytes, where: str, multi_label: bool) -> HGBLabels:
    """Parse ``label.dat`` / ``label.dat.test`` (without checking against node.dat)."""
    ids, labels, line_numbers, node_type = [], [], [], None
    for number, line in enumerate(_lines(raw, allow_blank=False, where=where), 1):
        fields = _fields(line, where, number, "id, name, type, label", (4,))
        ids.append(_int(fields[0], where, number, "node id"))
        t = _int(fields[2], where, number, "node type")
        if node_type is None:
            node_type = t
        elif t != node_type:
            raise DataError(
                f"{where}, line {number}: labelled node of type {t}, but line 1 labels type "
                f"{node_type}; all labelled nodes must have one type"
            )
        classes = [_int(v, where, number, "label") for v in fields[3].split(b",")]
        if not multi_label and len(classes) != 1:
            raise DataError(f"{where}, line {number}: {len(classes)} labels on a single-label data set")
        if min(classes) < 0:
            raise DataError(f"{where}, line {number}: negative label {min(classes)}")
        labels.append(classes)
        line_numbers.append(number)
    if node_type is None:
        raise DataError(f"{where}: no labelled nodes")
    return HGBLabels(node_type, np.asarray(ids, dtype=np.int64), labels, line_numbers)


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
    bar = tqdm(total=4, desc=f"parse {files.path.name}", file=sys.stderr, disable=not progress)
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
    bar.close()

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
        _fail_at(~found, where, "labelled node {} is not in node.dat", part.ids, part.lines)
        _fail_at(types != target, where, "labelled node {} is not of the labelled type", part.ids,
                 part.lines)
        top = np.fromiter((max(c) for c in part.labels), dtype=np.int64, count=len(part.labels))
        _fail_at(top >= limit, where, f"label {{}} out of range (info.dat names {limit} classes)",
                 top, part.lines)
        dup = _first_duplicate(idx)
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
    )
    return to_hetero_data(processed, seed)


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


def _lines(raw: bytes, allow_blank: bool = True, where: str = "") -> Any:
    """Yield the lines of ``raw`` without line ends; blank lines as ``None`` (or an error)."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, 1):
        line = line.rstrip(b"\r")
        if not line.strip():
            if not allow_blank:
                raise DataError(f"{where}, line {number}: empty line")
            yield None
            continue
        yield line


def _fields(line: bytes, where: str, number: int, columns: str, counts: tuple[int, ...]) -> list[bytes]:
    """The tab-separated fields of one line; DataError naming file and line on a wrong count."""
    fields = line.split(b"\t")
    if len(fields) not in counts:
        expected = " or ".join(map(str, counts))
        raise DataError(f"{where}, line {number}: expected {expected} tab-separated fields "
                        f"({columns}), found {len(fields)}")
    return fields


def _int(value: bytes, where: str, number: int, what: str) -> int:
    try:
        if b"_" in value:  # int() accepts 1_000; HGB files never write it
            raise ValueError
        result = int(value)
    except ValueError:
        raise DataError(f"{where}, line {number}: {what} is not an integer: {_show(value)}") from None
    if not -(2**62) <= result < 2**62:
        raise DataError(f"{where}, line {number}: {what} {result} is out of range")
    return result


def _show(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text ({err})") from None


def _fail_at(bad: np.ndarray, where: str, message: str, values: np.ndarray,
             lines: list[int] | None = None) -> None:
    """Raise for the first ``True`` in ``bad``, naming its line (row + 1 unless given)."""
    hits = np.flatnonzero(bad)
    if len(hits):
        i = int(hits[0])
        number = lines[i] if lines is not None else i + 1
        raise DataError(f"{where}, line {number}: " + message.format(values[i]))


def _first_duplicate(values: np.ndarray) -> int | None:
    order = np.argsort(values, kind="stable")
    same = np.flatnonzero(values[order][1:] == values[order][:-1])
    return int(order[same[0] + 1]) if len(same) else None


def _mask(n: int, index: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[index] = True
    return mask

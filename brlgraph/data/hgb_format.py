"""Parsers of HGB's text files: ``info.dat``, ``node.dat``, ``link.dat`` and the label files.

The Heterogeneous Graph Benchmark ships each data set as five text files:

* ``info.dat``: node types, link types (start type, end type, meaning) and the
  class names of the labelled type; JSON for DBLP/ACM/IMDB, plain text for
  Freebase.
* ``node.dat``: ``id<TAB>name<TAB>type[<TAB>f1,f2,...]``.
* ``link.dat``: ``src<TAB>dst<TAB>link_type<TAB>weight``.
* ``label.dat`` / ``label.dat.test``: ``id<TAB>name<TAB>type<TAB>label[,label...]``.

The large files are read with vectorised fast paths (numpy, pandas); when a fast
path meets anything unexpected, a plain line-by-line reader of the same format
takes over, which either yields the same arrays or raises
:class:`~brlgraph.errors.DataError` naming the file and line. Each fast path
(``_features_fast``, ``_links_fast``) has its line reader (``_features_slow``,
``_links_slow``) beside it, and the tests compare them. :mod:`brlgraph.data.hgb`
assembles the parsed files into a data set.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


REQUIRED_FILES = ("info.dat", "node.dat", "link.dat", "label.dat", "label.dat.test")


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
    fail_at(~known, where, "link type {} is not declared in info.dat", link_type)
    start = np.zeros_like(link_type)
    end = np.zeros_like(link_type)
    for lt, (s, d, _) in info.link_types.items():
        start[link_type == lt] = s
        end[link_type == lt] = d
    found_s, type_s, local_s = nodes.lookup(src_id)
    found_d, type_d, local_d = nodes.lookup(dst_id)
    fail_at(~found_s, where, "source node {} is not in node.dat", src_id)
    fail_at(~found_d, where, "target node {} is not in node.dat", dst_id)
    fail_at(type_s != start, where, "source node {} has the wrong type for its link type", src_id)
    fail_at(type_d != end, where, "target node {} has the wrong type for its link type", dst_id)
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


def fail_at(bad: np.ndarray, where: str, message: str, values: np.ndarray,
             lines: list[int] | None = None) -> None:
    """Raise for the first ``True`` in ``bad``, naming its line (row + 1 unless given)."""
    hits = np.flatnonzero(bad)
    if len(hits):
        i = int(hits[0])
        number = lines[i] if lines is not None else i + 1
        raise DataError(f"{where}, line {number}: " + message.format(values[i]))


def first_duplicate(values: np.ndarray) -> int | None:
    order = np.argsort(values, kind="stable")
    same = np.flatnonzero(values[order][1:] == values[order][:-1])
    return int(order[same[0] + 1]) if len(same) else None

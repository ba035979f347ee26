"""The ``brlgraph data`` sub-command: list, inspect, verify and download data sets.

    brlgraph data list                 # known data sets and whether their files are present
    brlgraph data stats DBLP [--json]  # nodes/edges per type, feature sizes, classes, splits
    brlgraph data verify DBLP          # checksums against the manifest, then a full parse
    brlgraph data download DBLP        # official download, checksum-verified, into the cache
    brlgraph data download ogbn-arxiv  # ogb's own download into $BRLGRAPH_DATA/ogb

``--root`` names the data folder (default ``BRLGRAPH_DATA``). Progress bars go to
stderr; results to stdout. Problems with the data raise
:class:`~brlgraph.errors.DataError`, which ``brlgraph`` prints as one line.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path
from typing import Any

from brlgraph.cli.train import add_allow_pickle
from brlgraph.errors import DataError
from brlgraph.io import json_text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data", help="list, inspect, verify and download data sets",
        description="List, inspect, verify and download data sets. Raw files are looked for "
                    "under --root, then $BRLGRAPH_DATA, then the download cache.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    def add(name: str, func: Any, help_text: str, with_name: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        if with_name:
            p.add_argument("name", metavar="NAME", help="data set (see `brlgraph data list`)")
        p.add_argument("--root", default=None, help="data folder (default: $BRLGRAPH_DATA)")
        p.set_defaults(func=func)
        return p

    add("list", _list, "known data sets and whether their files are present", with_name=False)
    stats = add("stats", _stats, "nodes, edges, features, classes and split sizes")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    verify = add("verify", _verify, "check checksums against the manifest and parse the files")
    for p in (stats, verify):
        p.add_argument("--path", default=None, help="Mini-ImageNet: its feature file or folder")
        add_allow_pickle(p)
    add("download", _download, "download from the official URL (checksum-verified) into the cache")


# --------------------------------------------------------------------------- list


def _list(args: argparse.Namespace) -> int:
    from brlgraph.data import DATASETS, sources

    width = max(map(len, DATASETS))
    for name in DATASETS:
        print(f"{name:<{width}}  {_status(name, args.root, sources)}")
    return 0


def _status(name: str, root: str | None, sources: Any) -> str:
    entry = sources.manifest()[name]
    if not entry.get("archive"):
        return "user-provided files (pass --path to stats/verify)"
    located = sources.locate(name, root)
    if located is not None:
        return f"present: {located.path}"
    labels = _labels_only_folder(name, root, sources)
    if labels is not None:
        return f"labels only: {labels} (graph files missing)"
    return f"missing (looked in {sources.looked_in(name, root)})"


def _labels_only_folder(name: str, root: str | None, sources: Any) -> Path | None:
    relative = sources.manifest()[name].get("labels_only")
    if not relative:
        return None
    for base in sources.search_roots(root):
        if (base / relative).is_dir():
            return base / relative
    return None


# --------------------------------------------------------------------------- stats


def collect_stats(name: str, root: str | None = None, seed: int = 0, path: str | None = None,
                  progress: bool = False, allow_pickle: bool = False) -> dict[str, Any]:
    """The statistics ``brlgraph data stats`` prints, as a dictionary (``allow_pickle``:
    Mini-ImageNet's pickles may be read)."""
    from brlgraph.data import HGB_NAMES, load_20news, load_hgb, load_mini_imagenet, sources
    from brlgraph.data.hgb import label_summary

    name = sources.canonical_name(name)
    if name in HGB_NAMES:
        if sources.locate(name, root) is None:
            labels = _labels_only_folder(name, root, sources)
            if labels is not None:
                summary = label_summary(labels, sources.manifest()[name]["multi_label"])
                return {"name": name, "kind": "hgb", "graph_files": False, **summary}
        return _hetero_stats(load_hgb(name, root, seed, progress=progress))
    if name == "20News":
        return _homogeneous_stats(load_20news(root, seed=seed, progress=progress))
    if path is None:
        raise DataError(f"{name} has no standard location: pass --path to its files")
    return _homogeneous_stats(load_mini_imagenet(path, seed=seed, progress=progress,
                                                 allow_pickle=allow_pickle))


def _hetero_stats(data: Any) -> dict[str, Any]:
    target = data[data.target_type]
    edges = []
    for edge_type in data.edge_types:
        edges.append({"type": list(edge_type), "count": int(data[edge_type].edge_index.shape[1]),
                      "reverse_added": edge_type[1].startswith("rev_")})
    nodes = {nt: int(data[nt].num_nodes) for nt in data.node_types}
    return {
        "name": data.name, "kind": "hgb", "graph_files": True,
        "num_nodes": sum(nodes.values()), "nodes": nodes,
        "num_links": sum(e["count"] for e in edges if not e["reverse_added"]),
        "num_edges": sum(e["count"] for e in edges), "edges": edges,
        "features": {nt: (int(data[nt].x.shape[1]) if "x" in data[nt] else None)
                     for nt in data.node_types},
        "target_type": data.target_type, "num_classes": data.num_classes,
        "class_names": data.class_names, "multi_label": data.multi_label,
        "labelled": int((target.train_mask | target.val_mask).sum()),
        "test": int(target.test_mask.sum()),
        "split": {"seed": data.seed, "train": int(target.train_mask.sum()),
                  "val": int(target.val_mask.sum()), "test": int(target.test_mask.sum())},
    }


def _homogeneous_stats(data: Any) -> dict[str, Any]:
    return {
        "name": data.name, "kind": "knn", "num_nodes": int(data.num_nodes),
        "num_edges": int(data.edge_index.shape[1]), "features": int(data.x.shape[1]),
        "num_classes": int(data.num_classes), "class_names": list(data.class_names),
        "split": {"seed": data.seed, "train": int(data.train_mask.sum()),
                  "val": int(data.val_mask.sum()), "test": int(data.test_mask.sum())},
    }


def _stats(args: argparse.Namespace) -> int:
    stats = collect_stats(args.name, args.root, args.seed, args.path, progress=True,
                          allow_pickle=args.allow_pickle)
    if args.json:
        print(json_text(stats, indent=2))
        return 0
    print(f"{stats['name']}")
    if stats["kind"] == "hgb" and not stats["graph_files"]:
        print("  graph files (node.dat, link.dat) not present; label files only")
    if "nodes" in stats:
        print(f"  nodes: {stats['num_nodes']:,}")
        for nt, count in stats["nodes"].items():
            dim = stats["features"][nt]
            print(f"    {nt:<12} {count:>9,}   features: {dim if dim is not None else '-'}")
        print(f"  edges: {stats['num_edges']:,} ({stats['num_links']:,} from link.dat)")
        for e in stats["edges"]:
            note = "  (reverse added)" if e["reverse_added"] else ""
            print(f"    {'/'.join(e['type']):<28} {e['count']:>9,}{note}")
    elif "num_edges" in stats:
        print(f"  nodes: {stats['num_nodes']:,}   edges: {stats['num_edges']:,}   "
              f"features: {stats['features']}")
    labelled = f"target: {stats['target_type']}, " if "target_type" in stats else ""
    print(f"  {labelled}classes: {stats['num_classes']} ({', '.join(stats['class_names'])})")
    if "split" in stats:
        s = stats["split"]
        print(f"  split (seed {s['seed']}): train {s['train']:,} / val {s['val']:,} / test {s['test']:,}")
    else:
        print(f"  labelled: {stats['labelled']:,}   test: {stats['test']:,}")
    return 0


# --------------------------------------------------------------------------- verify


def _verify(args: argparse.Namespace) -> int:
    from brlgraph.data import HGB_NAMES, sources

    name = sources.canonical_name(args.name)
    entry = sources.manifest()[name]
    if not entry.get("archive"):
        if args.path is None:
            raise DataError(f"{name} has no standard location: pass --path to its files")
        _format_check(name, args.root, args.path, args.allow_pickle)
        print(f"{name}: {args.path}: format ok")
        return 0
    located = sources.locate(name, args.root)
    if located is None:
        labels = _labels_only_folder(name, args.root, sources)
        if labels is None:
            raise DataError(sources.missing_message(name, args.root))
        for member, expected in entry["members"].items():
            _check_digest(labels / member, _sha256(labels / member), expected)
        print(f"{name}: label files at {labels}: checksums ok; graph files not present")
        return 0
    if located.is_archive:
        digest = sources.verify_file(located.path, entry.get("sha256"), entry.get("alt_sha256"))
        print(f"{name}: {located.path}: sha256 {digest[:16]}... ok")
        if located.path.suffix == ".zip":
            with zipfile.ZipFile(located.path) as archive:
                by_base = {Path(n).name: n for n in archive.namelist() if not n.endswith("/")}
                for member, expected in entry["members"].items():
                    if member in by_base:
                        _check_digest(f"{located.path}:{member}",
                                      hashlib.sha256(archive.read(by_base[member])).hexdigest(),
                                      expected)
    else:
        for member, expected in entry["members"].items():
            if (located.path / member).is_file():
                _check_digest(located.path / member, _sha256(located.path / member), expected)
        print(f"{name}: {located.path}: member checksums ok")
    _format_check(name, args.root, args.path, args.allow_pickle)
    print(f"{name}: format ok" + (" (parsed every file)" if name in HGB_NAMES else ""))
    return 0


def _format_check(name: str, root: str | None, path: str | None, allow_pickle: bool = False) -> None:
    from brlgraph.data import HGB_NAMES, sources
    from brlgraph.data.hgb import HGBFiles, parse_hgb, warn_about
    from brlgraph.data.mini_imagenet import load_mini_imagenet
    from brlgraph.data.newsgroups import read_20news_archive

    if name in HGB_NAMES:
        located = sources.locate(name, root)
        processed = parse_hgb(located.path, sources.manifest()[name]["multi_label"], name=name,
                              progress=True)
        warn_about(HGBFiles(located.path), processed)
    elif name == "20News":
        documents, _ = read_20news_archive(sources.locate(name, root).path, progress=True)
        print(f"{name}: {len(documents):,} documents of the ten groups")
    else:
        load_mini_imagenet(path, progress=True, allow_pickle=allow_pickle)


def _check_digest(where: Any, digest: str, expected: str) -> None:
    if digest != expected:
        raise DataError(f"{where}: checksum mismatch (sha256 {digest}, expected {expected})")


def _sha256(path: Path) -> str:
    from brlgraph.data.sources import sha256_file

    return sha256_file(path)


# --------------------------------------------------------------------------- download


def _download(args: argparse.Namespace) -> int:
    from brlgraph.data import sources
    from brlgraph.data.ogb import OGB_NAMES, download_ogb, locate_ogb

    if args.name.lower() in OGB_NAMES:  # ogb's own download and processing, into <root>/ogb
        name = args.name.lower()
        found = locate_ogb(name, args.root)
        if found is not None:
            print(f"{name}: already present at {found}")
            return 0
        print(f"{name}: downloaded by ogb into {download_ogb(name, args.root)}")
        return 0
    name = sources.canonical_name(args.name)
    located = sources.locate(name, args.root)
    if located is not None:
        print(f"{name}: already present at {located.path}")
        return 0
    path = sources.download(name, progress=sys.stderr.isatty())
    print(f"{name}: downloaded and verified: {path}")
    return 0

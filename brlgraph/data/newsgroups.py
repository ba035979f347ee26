"""20 Newsgroups as a kNN graph, following NodeFormer's protocol.

Ten groups (:data:`GROUPS`), train and test parts of the "bydate" corpus
together, raw messages with their headers kept (scikit-learn's
``fetch_20newsgroups`` default ``remove=()``), decoded as Latin-1; features are
``TfidfTransformer(smooth_idf=False)`` of ``CountVectorizer(stop_words='english',
min_df=0.05)``. That gives 9,607 documents, 236 features and 10 classes.
Labels index the sorted group names. The graph is the exact kNN graph of the
features (by default NodeFormer's: Euclidean, ``k=5``, each document its own
first neighbour, directed); the split is random 50/25/25 from ``seed``.

Documents come from ``20news/20news-bydate.tar.gz`` under ``root`` or
``BRLGRAPH_DATA``, else from scikit-learn's own download cache; ``download=True``
fetches scikit-learn's official archive (checksum-verified) into the cache.
Features and kNN graphs are cached under ``BRLGRAPH_CACHE``.
"""

from __future__ import annotations

import os
import sys
import tarfile
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from brlgraph.data import sources
from brlgraph.data.cache import cached, source_key
from brlgraph.data.splits import check_node_features, knn_node_data
from brlgraph.errors import DataError

NAME = "20News"
FORMAT_VERSION = 1
GROUPS = (
    "alt.atheism", "comp.sys.ibm.pc.hardware", "misc.forsale", "rec.autos",
    "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med", "sci.space",
    "talk.politics.guns",
)
_PARTS = ("20news-bydate-train", "20news-bydate-test")


def read_20news_archive(path: str | os.PathLike, groups: tuple[str, ...] = GROUPS,
                        progress: bool = False) -> tuple[list[str], np.ndarray]:
    """Documents and label indices (into sorted ``groups``) from the bydate tarball.

    Train before test, each sorted by group and file name (scikit-learn's order
    with ``shuffle=False``).
    """
    from tqdm import tqdm

    names = sorted(groups)
    found: dict[tuple[int, str, str], str] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            for member in tqdm(members, desc="read 20news", file=sys.stderr, disable=not progress):
                parts = member.name.split("/")
                if len(parts) != 3 or parts[0] not in _PARTS or parts[1] not in names:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                found[(_PARTS.index(parts[0]), parts[1], parts[2])] = handle.read().decode("latin-1")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read the 20 Newsgroups archive ({err})") from None
    if not found:
        raise DataError(f"{path}: holds no 20news-bydate-train/<group>/<id> files of the ten groups")
    missing = sorted(set(names) - {g for _, g, _ in found})
    if missing:
        raise DataError(f"{path}: no documents of {', '.join(missing)}")
    keys = sorted(found)
    labels = np.array([names.index(k[1]) for k in keys], dtype=np.int64)
    return [found[k] for k in keys], labels


def tfidf_features(documents: list[str]) -> np.ndarray:
    """NodeFormer's features: TF-IDF (``smooth_idf=False``) of English-stop-word counts, min_df 5%."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

    counts = CountVectorizer(stop_words="english", min_df=0.05).fit_transform(documents)
    return TfidfTransformer(smooth_idf=False).fit_transform(counts).toarray()


def load_20news(root: str | os.PathLike | None = None, k: int = 5, seed: int = 0, *,
                metric: str = "euclidean", loop: bool = True, symmetric: bool = False,
                download: bool = False, progress: bool = False) -> Data:
    """The 20 Newsgroups kNN graph (see the module docstring for the protocol)."""
    located = sources.locate(NAME, root)
    if located is None and download:
        sources.download(NAME, progress=progress)
        located = sources.locate(NAME, root)
    if located is not None and not located.is_archive:
        raise DataError(f"{located.path}: expected the archive 20news-bydate.tar.gz, found a folder")
    if located is not None:
        key = source_key([located.path], FORMAT_VERSION)

        def build() -> dict[str, Any]:
            documents, labels = read_20news_archive(located.path, progress=progress)
            return _processed(documents, labels)
    else:
        key = source_key([], FORMAT_VERSION, source="sklearn")

        def build() -> dict[str, Any]:
            documents, labels = _from_sklearn(root)
            return _processed(documents, labels)

    processed = cached(NAME, key, build, check_node_features)
    return knn_node_data(NAME, processed, key, version=FORMAT_VERSION, k=k, metric=metric,
                         loop=loop, symmetric=symmetric, seed=seed)


def _processed(documents: list[str], labels: np.ndarray) -> dict[str, Any]:
    return {
        "x": torch.from_numpy(tfidf_features(documents)),  # float64: exact kNN ties as sklearn
        "y": torch.from_numpy(labels),
        "class_names": sorted(GROUPS),
    }


def _from_sklearn(root: str | os.PathLike | None) -> tuple[list[str], np.ndarray]:
    """The same documents from scikit-learn's own cache (``~/scikit_learn_data``), if there."""
    from sklearn.datasets import fetch_20newsgroups

    try:
        bunch = fetch_20newsgroups(
            subset="all", categories=list(GROUPS), shuffle=False, remove=(),
            download_if_missing=False,
        )
    except OSError as err:
        raise DataError(
            sources.missing_message(NAME, root)
            + f" (scikit-learn's 20 Newsgroups cache is not there either: {err})"
        ) from None
    names = list(bunch.target_names)
    labels = np.array([sorted(GROUPS).index(names[t]) for t in bunch.target], dtype=np.int64)
    return list(bunch.data), labels


"""Mini-ImageNet as a kNN graph (NodeFormer's protocol), from features or from images.

Two layouts are read:

(a) **Pre-extracted features**, as NodeFormer reads them: a pickle, ``.pt`` or
    ``.npz`` file holding either ``x_train``/``x_val``/``x_test`` with
    ``y_train``/``y_val``/``y_test`` (concatenated in that order) or
    ``features``/``labels`` (also ``x``/``y``).
(b) **The 84x84 image caches** ``mini-imagenet-cache-{train,val,test}.pkl``, each a
    pickle of ``{"image_data": uint8 [N, 84, 84, 3], "class_dict": {class: [row
    indices]}}``. Labels index the sorted class names of all three files. Images
    become features by ``features="pca"`` (default: raw pixels scaled to [0, 1],
    centred, projected on their top ``pca_dim`` principal directions by a
    seeded randomised SVD computed in chunks, so the float pixels of all images
    are never held at once), ``"pixels"`` (the raw pixels, small images only)
    or ``"torchvision:<arch>"`` with ``weights=<state dict file>`` (penultimate
    layer of a torchvision model; torchvision is imported only then).

``path`` is one of those files or a folder holding them (``mini_imagenet.pkl``
or the three cache files). Unpickling runs whatever code the file holds, so a
pickle is read only with ``allow_pickle=True`` (the CLI's ``--allow-pickle``),
for files you trust; without it a pickle is a :class:`~brlgraph.errors.DataError`
saying how to go on. ``.npz`` (read without ``allow_pickle``) and ``.pt`` (read
with ``weights_only=True``) cannot run code. The graph is
the exact kNN graph (NodeFormer's: Euclidean, ``k=5``, self included, directed)
and the split random 50/25/25 from ``seed``. Image-derived features and kNN
graphs are cached under ``BRLGRAPH_CACHE``.
"""

from __future__ import annotations

import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from brlgraph.data import sources
from brlgraph.data.cache import cached, source_key
from brlgraph.data.splits import check_node_features, knn_node_data
from brlgraph.errors import ConfigError, DataError

NAME = "Mini-ImageNet"
FORMAT_VERSION = 1
CACHE_FILES = tuple(f"mini-imagenet-cache-{part}.pkl" for part in ("train", "val", "test"))
#: looked for in this order: a converted copy, which cannot run code, before the pickle
FEATURE_FILES = ("mini_imagenet.npz", "mini_imagenet.pt", "mini_imagenet.pkl")
_SPLIT_KEYS = (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test"))


def load_mini_imagenet(path: str | os.PathLike | None = None, k: int = 5, seed: int = 0, *,
                       root: str | os.PathLike | None = None, features: str = "pca", pca_dim: int = 128,
                       weights: str | None = None, metric: str = "euclidean", loop: bool = True,
                       symmetric: bool = False, progress: bool = False,
                       allow_pickle: bool = False) -> Data:
    """Mini-ImageNet kNN graph from a feature file or the image caches (see module docstring).

    ``path`` is a file or folder; ``None`` looks for the folder ``mini-imagenet/`` under
    ``root``, ``BRLGRAPH_DATA`` and the download cache (:func:`~brlgraph.data.sources.locate`).
    ``allow_pickle=True`` lets pickle files be read: only for files you trust (unpickling
    runs code from the file). Image caches already processed into the cache are not
    read again.
    """
    if path is None:
        located = sources.locate(NAME, root)
        if located is None:
            raise DataError(sources.missing_message(NAME, root) + "; it holds NodeFormer's "
                            f"mini_imagenet.pkl (or .npz/.pt) or {', '.join(CACHE_FILES)}")
        path = located.path
    files = _resolve(Path(path))
    if files[0].name in CACHE_FILES:
        key = source_key(files, FORMAT_VERSION, features=features, pca_dim=pca_dim,
                         weights=str(weights))

        def build() -> dict[str, Any]:
            images, labels, classes = read_image_caches(files, allow_pickle=allow_pickle)
            # The PCA's own random draw is fixed, so every split seed shares one cache entry.
            x = image_features(images, features, pca_dim=pca_dim, weights=weights,
                               progress=progress)
            return {"x": torch.from_numpy(x), "y": torch.from_numpy(labels), "class_names": classes}

        processed = cached(NAME, key, build, check_node_features)
    else:
        key = source_key(files, FORMAT_VERSION)
        x, labels = read_feature_file(files[0], allow_pickle=allow_pickle)
        processed = {"x": torch.from_numpy(x), "y": torch.from_numpy(labels),
                     "class_names": [str(c) for c in range(int(labels.max()) + 1)]}
    return knn_node_data(NAME, processed, key, version=FORMAT_VERSION, k=k, metric=metric,
                         loop=loop, symmetric=symmetric, seed=seed)


# --------------------------------------------------------------------------- (a) feature files


def refuse_pickle(path: Path) -> DataError:
    """The error of a pickle read without ``allow_pickle``."""
    return DataError(f"{path} is read as a pickle, and unpickling runs whatever code the file holds; "
                     "convert it to .npz (numpy.savez with features= and labels=) or, for a "
                     "file you trust, pass --allow-pickle (allow_pickle=True)")


def read_feature_file(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32 [N, d]) and labels (int64 [N]) from a .npz, .pt or pickle file
    (a pickle only with ``allow_pickle``: see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".pt") and not allow_pickle:
        raise refuse_pickle(path)
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                content = {key: archive[key] for key in archive.files}
        elif suffix == ".pt":
            content = torch.load(path, weights_only=True, map_location="cpu")
        else:
            with open(path, "rb") as f:
                content = pickle.load(f)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            RuntimeError, AttributeError, ImportError, IndexError, TypeError) as err:
        raise DataError(f"{path}: cannot be read as a feature file ({type(err).__name__}: {err})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a dictionary of arrays, found {type(content).__name__}")
    if all(x in content and y in content for x, y in _SPLIT_KEYS):
        xs = [_matrix(content[x], path, x) for x, _ in _SPLIT_KEYS]
        ys = [_labels(content[y], path, y) for _, y in _SPLIT_KEYS]
        for (xk, yk), xv, yv in zip(_SPLIT_KEYS, xs, ys, strict=True):
            if len(xv) != len(yv):
                raise DataError(f"{path}: {xk} has {len(xv)} rows but {yk} {len(yv)} labels")
        if len({xv.shape[1] for xv in xs}) != 1:
            raise DataError(f"{path}: x_train, x_val and x_test have different feature sizes")
        return np.concatenate(xs), np.concatenate(ys)
    for xk, yk in (("features", "labels"), ("x", "y")):
        if xk in content and yk in content:
            x, y = _matrix(content[xk], path, xk), _labels(content[yk], path, yk)
            if len(x) != len(y):
                raise DataError(f"{path}: {xk} has {len(x)} rows but {yk} {len(y)} labels")
            return x, y
    raise DataError(
        f"{path}: found keys {sorted(map(str, content))}; expected x_train/x_val/x_test with "
        f"y_train/y_val/y_test (NodeFormer's layout) or features/labels"
    )


def _matrix(value: Any, path: Path, key: str) -> np.ndarray:
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim != 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: {key} must be a non-empty numeric matrix, found shape {array.shape} "
                        f"of {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {key} contains NaN or infinite values")
    return array


def _labels(value: Any, path: Path, key: str) -> np.ndarray:
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    array = array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: {key} must be a vector of integer class labels, found "
                        f"shape {array.shape} of {array.dtype}")
    if len(array) and array.min() < 0:
        raise DataError(f"{path}: {key} holds a negative label ({array.min()})")
    return array.astype(np.int64)


# --------------------------------------------------------------------------- (b) image caches


def read_image_caches(paths: list[Path], allow_pickle: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (uint8 [N, H, W, C]), labels and class names from the cache pickles, in order
    (only with ``allow_pickle``: see the module docstring)."""
    parts = []
    for path in paths:
        if not allow_pickle:
            raise refuse_pickle(path)
        try:
            with open(path, "rb") as f:
                content = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError,
                ValueError, IndexError, TypeError) as err:
            raise DataError(f"{path}: cannot be unpickled ({type(err).__name__}: {err})") from None
        if not isinstance(content, dict) or "image_data" not in content or "class_dict" not in content:
            raise DataError(f"{path}: expected a dictionary with 'image_data' and 'class_dict'")
        images = np.asarray(content["image_data"])
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[0] == 0:
            raise DataError(f"{path}: image_data must be uint8 [N, H, W, C], found shape "
                            f"{images.shape} of {images.dtype}")
        class_dict = content["class_dict"]
        if not isinstance(class_dict, dict):
            raise DataError(f"{path}: class_dict must map class names to lists of row indices")
        parts.append((path, images, class_dict))
    shapes = {images.shape[1:] for _, images, _ in parts}
    if len(shapes) != 1:
        raise DataError(f"{paths[0].parent}: the cache files hold images of different sizes {shapes}")
    classes = sorted({str(c) for _, _, class_dict in parts for c in class_dict})
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for path, images, class_dict in parts:
        y = np.full(len(images), -1, dtype=np.int64)
        for name, rows in class_dict.items():
            rows = np.asarray(rows).reshape(-1)
            if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0
                              or rows.max() >= len(images)):
                raise DataError(f"{path}: class {name} lists rows outside 0..{len(images) - 1}")
            rows = rows.astype(np.int64)
            if (y[rows] != -1).any() or len(np.unique(rows)) != len(rows):
                raise DataError(f"{path}: an image of class {name} is listed under two classes or twice")
            y[rows] = index[str(name)]
        if (y == -1).any():
            raise DataError(f"{path}: {int((y == -1).sum())} images belong to no class in class_dict")
        labels.append(y)
    images = np.concatenate([images for _, images, _ in parts])
    return images, np.concatenate(labels), classes


def image_features(images: np.ndarray, method: str = "pca", *, pca_dim: int = 128,
                   weights: str | None = None, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Turn uint8 images [N, H, W, C] into float32 features (see the module docstring)."""
    if method == "pixels":
        return images.reshape(len(images), -1).astype(np.float32) / 255.0
    if method == "pca":
        return pixel_pca(images.reshape(len(images), -1), pca_dim, seed=seed)
    if method.startswith("torchvision:"):
        return _torchvision_features(images, method.split(":", 1)[1], weights, progress)
    raise ConfigError(f"image features must be 'pca', 'pixels' or 'torchvision:<arch>', got {method!r}")


def pixel_pca(pixels: np.ndarray, dim: int, *, seed: int = 0, chunk: int = 1024,
              power_iterations: int = 2, oversample: int = 16) -> np.ndarray:
    """Project uint8 pixel rows (scaled to [0, 1], centred) on their top ``dim`` principal axes.

    A randomised SVD (Halko et al.) whose every pass over the data converts
    ``chunk`` rows at a time to float, so memory stays ``O(N * dim + d * dim)``
    beside the uint8 input. When ``dim + oversample`` reaches the pixel count it
    is an exact SVD. Signs are fixed so each axis has a positive largest loading.
    """
    n, d = pixels.shape
    if not 1 <= dim <= min(n, d):
        raise ConfigError(f"pca_dim={dim} must lie in 1..{min(n, d)} for {n} images of {d} pixels")

    def rows(start: int) -> np.ndarray:
        return pixels[start:start + chunk].astype(np.float64) / 255.0

    mean = sum(rows(s).sum(axis=0) for s in range(0, n, chunk)) / n
    width = min(dim + oversample, d)
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((d, width))  # columns span the directions explored
    for _ in range(power_iterations + 1):
        # Y = (X - mean) @ basis, then back: Z = (X - mean)^T @ orth(Y).
        y = np.concatenate([(rows(s) - mean) @ basis for s in range(0, n, chunk)])
        q, _ = np.linalg.qr(y)
        z = sum((rows(s) - mean).T @ q[s:s + chunk] for s in range(0, n, chunk))
        basis, _ = np.linalg.qr(z)
    # Exact SVD within the explored subspace: B = (X - mean) @ basis.
    b = np.concatenate([(rows(s) - mean) @ basis for s in range(0, n, chunk)])
    _, _, vt = np.linalg.svd(b, full_matrices=False)
    axes = basis @ vt[:dim].T  # [d, dim]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(dim)])
    axes *= np.where(signs == 0, 1.0, signs)
    out = np.concatenate([(rows(s) - mean) @ axes for s in range(0, n, chunk)])
    return out.astype(np.float32)


def _torchvision_features(images: np.ndarray, arch: str, weights: str | None,
                          progress: bool) -> np.ndarray:
    try:
        import torchvision
    except ImportError:
        raise ConfigError(
            "image features from a torchvision model need torchvision (pip install torchvision); "
            "use features='pca' otherwise"
        ) from None
    if weights is None or not Path(weights).is_file():
        raise ConfigError(f"torchvision:{arch} needs weights=<path to its state dict>; got {weights!r}")
    builder = getattr(torchvision.models, arch, None)
    if builder is None:
        raise ConfigError(f"torchvision has no model {arch!r}")
    from tqdm import tqdm

    model = builder(weights=None)
    model.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
    model.fc = torch.nn.Identity()  # penultimate layer (ResNet-style heads)
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for s in tqdm(range(0, len(images), 256), desc=f"features {arch}", file=sys.stderr,
                      disable=not progress):
            batch = torch.from_numpy(images[s:s + 256]).permute(0, 3, 1, 2).float() / 255.0
            out.append(model((batch - mean) / std).flatten(1))
    return torch.cat(out).numpy().astype(np.float32)


def _resolve(path: Path) -> list[Path]:
    if path.is_file():
        if path.name in CACHE_FILES:
            siblings = [path.with_name(name) for name in CACHE_FILES]
            return [p for p in siblings if p.is_file()]
        return [path]
    if path.is_dir():
        caches = [path / name for name in CACHE_FILES]
        if all(p.is_file() for p in caches):
            return caches
        for folder in (path, path / "mini_imagenet"):
            for name in FEATURE_FILES:
                if (folder / name).is_file():
                    return [folder / name]
        present = [p.name for p in caches if p.is_file()]
        if present:
            missing = sorted(set(CACHE_FILES) - set(present))
            raise DataError(f"{path}: image caches incomplete, {', '.join(missing)} missing")
    raise DataError(
        f"Mini-ImageNet not found at {path}: give a feature file (NodeFormer's mini_imagenet.pkl, "
        f"or .pt/.npz with features and labels) or a folder holding {', '.join(CACHE_FILES)}"
    )

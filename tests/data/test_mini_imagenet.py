"""Mini-ImageNet loaders on small synthetic files in the real layouts, and the
image -> features -> kNN path on scikit-learn's digits images."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from brlgraph.data import knn_graph, load_mini_imagenet
from brlgraph.data.mini_imagenet import CACHE_FILES, pixel_pca, read_feature_file
from brlgraph.errors import ConfigError, DataError


def split_features(rng, sizes=(12, 6, 6), dim=8):
    xs = [rng.standard_normal((n, dim)).astype(np.float32) for n in sizes]
    ys = [rng.integers(0, 4, n) for n in sizes]
    return xs, ys


def test_nodeformer_pickle_layout(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    xs, ys = split_features(rng)
    content = {f"x_{p}": torch.from_numpy(x) for p, x in zip(("train", "val", "test"), xs, strict=True)}
    content.update({f"y_{p}": y for p, y in zip(("train", "val", "test"), ys, strict=True)})
    folder = tmp_path / "mini_imagenet"
    folder.mkdir()
    with open(folder / "mini_imagenet.pkl", "wb") as f:
        pickle.dump(content, f)
    data = load_mini_imagenet(tmp_path, k=3, seed=2, allow_pickle=True)  # NodeFormer's data_dir layout
    assert torch.equal(data.x, torch.from_numpy(np.concatenate(xs)))
    assert torch.equal(data.y, torch.from_numpy(np.concatenate(ys)))
    assert data.edge_index.shape == (2, 24 * 3)
    assert torch.equal(data.edge_index, knn_graph(data.x, 3, "euclidean", symmetric=False))
    assert [int(data[m].sum()) for m in ("train_mask", "val_mask", "test_mask")] == [12, 6, 6]
    assert data.name == "Mini-ImageNet" and data.seed == 2


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_features_and_labels_files(tmp_path, cache_dir, suffix):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    path = tmp_path / f"features{suffix}"
    if suffix == ".npz":
        np.savez(path, features=x, labels=y)
    else:
        torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, path)
    data = load_mini_imagenet(path, k=2)
    assert torch.equal(data.x, torch.from_numpy(x.astype(np.float32)))
    assert data.y.tolist() == y.tolist()
    assert data.num_classes == int(y.max()) + 1


def test_feature_file_errors(tmp_path):
    np.savez(tmp_path / "a.npz", features=np.zeros((3, 2)), labels=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match=r"a\.npz: features has 3 rows but labels 4"):
        read_feature_file(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", images=np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"b\.npz: found keys \['images'\]"):
        read_feature_file(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=np.array([[0.0], [np.inf]]), y=np.zeros(2, dtype=int))
    with pytest.raises(DataError, match="NaN or infinite"):
        read_feature_file(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match="integer class labels"):
        read_feature_file(tmp_path / "d.npz")
    (tmp_path / "e.pkl").write_bytes(b"\x80\x04 definitely not a pickle")
    with pytest.raises(DataError, match=r"e\.pkl: cannot be read"):
        read_feature_file(tmp_path / "e.pkl", allow_pickle=True)
    with pytest.raises(DataError, match="Mini-ImageNet not found"):
        load_mini_imagenet(tmp_path / "nowhere")


class RunsCode:
    """Pickled, this object calls ``Path.touch(marker)`` when it is unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_are_read_only_when_allowed(tmp_path, cache_dir, digits):
    marker = tmp_path / "code-ran"
    folder = tmp_path / "mini_imagenet"
    folder.mkdir()
    with open(folder / "mini_imagenet.pkl", "wb") as f:
        pickle.dump({"features": np.zeros((4, 2)), "labels": np.zeros(4, dtype=int), "x": RunsCode(marker)}, f)
    with pytest.raises(DataError) as err:
        load_mini_imagenet(tmp_path)
    message = str(err.value)
    assert str(folder / "mini_imagenet.pkl") in message and "--allow-pickle" in message and ".npz" in message
    assert not marker.exists()  # refused before a byte was unpickled
    images, target = digits
    write_image_caches(tmp_path / "caches", images[:30], target[:30])
    with pytest.raises(DataError, match=r"mini-imagenet-cache-train\.pkl is read as a pickle.*--allow-pickle"):
        load_mini_imagenet(tmp_path / "caches", pca_dim=4)
    assert not [p for p in cache_dir.rglob("*") if p.is_file()]
    # asked for, the pickle is read, and runs what it holds: hence the option
    load_mini_imagenet(tmp_path, k=2, allow_pickle=True)
    assert marker.exists()


def test_a_converted_copy_is_read_before_the_pickle(tmp_path, cache_dir):
    rng = np.random.default_rng(3)
    xs, ys = split_features(rng)
    content = {f"{kind}_{part}": value for part, x, y in zip(("train", "val", "test"), xs, ys, strict=True)
               for kind, value in (("x", x), ("y", y))}
    folder = tmp_path / "mini_imagenet"
    folder.mkdir()
    with open(folder / "mini_imagenet.pkl", "wb") as f:
        pickle.dump(content, f)
    # the conversion datasets/README.md gives
    with open(folder / "mini_imagenet.pkl", "rb") as f:
        loaded = pickle.load(f)
    np.savez(folder / "mini_imagenet.npz", **{key: np.asarray(value) for key, value in loaded.items()})
    data = load_mini_imagenet(tmp_path, k=3)  # no allow_pickle needed
    assert torch.equal(data.x, torch.from_numpy(np.concatenate(xs)))


def write_image_caches(folder, images, labels, parts=3):
    """Split ``images`` into the three cache pickles, with class_dict in the real layout."""
    folder.mkdir(parents=True, exist_ok=True)
    order = []
    for name, idx in zip(CACHE_FILES, np.array_split(np.arange(len(images)), parts), strict=True):
        class_dict: dict[str, list[int]] = {}
        for row, i in enumerate(idx):
            class_dict.setdefault(f"n{labels[i]:08d}", []).append(row)
        with open(folder / name, "wb") as f:
            pickle.dump({"image_data": images[idx], "class_dict": class_dict}, f)
        order.extend(idx)
    return np.array(order)


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    images = np.repeat((bunch.images / 16 * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    return images, bunch.target  # [1797, 8, 8, 3] uint8, the caches' layout at 8x8


def test_image_caches_to_pca_features_to_knn(tmp_path, cache_dir, digits):
    images, target = digits
    order = write_image_caches(tmp_path / "mini", images, target)
    data = load_mini_imagenet(tmp_path / "mini", k=5, pca_dim=16, allow_pickle=True)
    assert data.x.shape == (1797, 16)
    assert data.y.tolist() == target[order].tolist()  # classes sorted by name: n00000000 -> 0
    assert data.class_names == [f"n{c:08d}" for c in range(10)]
    # The PCA features are scikit-learn's PCA of the [0, 1] pixels (up to sign per axis).
    reference = PCA(16, svd_solver="full").fit_transform(images[order].reshape(1797, -1) / 255.0)
    assert np.allclose(np.abs(data.x.numpy()[:, :8]), np.abs(reference[:, :8]), atol=1e-3)
    # Neighbours in PCA space mostly share their digit: the path keeps the images' structure.
    src, dst = data.edge_index
    others = src != dst
    assert (data.y[src[others]] == data.y[dst[others]]).float().mean() > 0.95
    again = load_mini_imagenet(tmp_path / "mini", k=5, pca_dim=16, seed=1)  # from the cache: no pickle read
    assert torch.equal(again.x, data.x) and not torch.equal(again.train_mask, data.train_mask)


def test_pixel_features_and_exact_pca(tmp_path, cache_dir, digits):
    images, target = digits
    order = write_image_caches(tmp_path / "mini", images[:300], target[:300])
    data = load_mini_imagenet(tmp_path / "mini" / CACHE_FILES[0], k=3, features="pixels", allow_pickle=True)
    assert data.x.shape == (300, 192)
    assert torch.allclose(data.x, torch.from_numpy(images[:300][order].reshape(300, -1) / 255.0).float())
    pixels = images[:300].reshape(300, -1)
    exact = PCA(4, svd_solver="full").fit_transform(pixels / 255.0)
    ours = pixel_pca(pixels, 4, oversample=200)  # the explored subspace is every pixel: exact
    assert np.allclose(np.abs(ours), np.abs(exact), atol=1e-4)


def test_image_cache_errors(tmp_path, cache_dir, digits):
    images, target = digits
    write_image_caches(tmp_path / "a", images[:30], target[:30])
    (tmp_path / "a" / CACHE_FILES[2]).unlink()
    with pytest.raises(DataError, match=r"image caches incomplete, mini-imagenet-cache-test\.pkl missing"):
        load_mini_imagenet(tmp_path / "a", allow_pickle=True)
    write_image_caches(tmp_path / "b", images[:30], target[:30])
    with open(tmp_path / "b" / CACHE_FILES[1], "wb") as f:
        pickle.dump({"image_data": images[:10], "class_dict": {"n1": list(range(9))}}, f)
    with pytest.raises(DataError, match=r"cache-val\.pkl: 1 images belong to no class"):
        load_mini_imagenet(tmp_path / "b", allow_pickle=True)
    with open(tmp_path / "b" / CACHE_FILES[1], "wb") as f:
        pickle.dump({"image_data": images[:10], "class_dict": {"n1": [0, 99]}}, f)
    with pytest.raises(DataError, match="rows outside 0..9"):
        load_mini_imagenet(tmp_path / "b", allow_pickle=True)
    with open(tmp_path / "b" / CACHE_FILES[1], "wb") as f:
        pickle.dump({"image_data": images[:10].astype(np.float32), "class_dict": {}}, f)
    with pytest.raises(DataError, match="must be uint8"):
        load_mini_imagenet(tmp_path / "b", allow_pickle=True)
    assert not [p for p in cache_dir.rglob("*") if p.is_file()]


def test_feature_options(tmp_path, cache_dir, digits):
    images, target = digits
    write_image_caches(tmp_path / "m", images[:60], target[:60])
    with pytest.raises(ConfigError, match="'pca', 'pixels' or 'torchvision:<arch>'"):
        load_mini_imagenet(tmp_path / "m", features="sift", allow_pickle=True)
    with pytest.raises(ConfigError, match="pca_dim=500"):
        load_mini_imagenet(tmp_path / "m", pca_dim=500, allow_pickle=True)
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="need torchvision"):
            load_mini_imagenet(tmp_path / "m", features="torchvision:resnet18", allow_pickle=True)
    else:
        with pytest.raises(ConfigError, match="needs weights"):
            load_mini_imagenet(tmp_path / "m", features="torchvision:resnet18", allow_pickle=True)

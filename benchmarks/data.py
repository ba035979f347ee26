"""Benchmark of the data layer: HGB loading and exact kNN graphs.

Measures, in one run on the machine it runs on:

1. for DBLP, ACM and IMDB: ``load_hgb`` from the zip with an empty cache (first
   load), from the cache (second load), and torch-geometric's ``HGBDataset`` on the
   same files (its raw layout set up in a temporary folder; its processing time);
2. ``knn_graph`` vs ``sklearn.neighbors.kneighbors_graph`` at 10,000 and 60,000
   random points x 512 dims (float32), k = 5, cosine and Euclidean: wall time and
   peak memory above the input. Each kNN measurement runs in a fresh subprocess
   so its peak resident memory is its own.

Run: ``python benchmarks/data.py [--data /path/to/shared/data] [--sizes 10000 60000]
[--skip-pyg]``. Prints a table and writes ``benchmarks/results/data.json``;
``--sizes`` (or ``--hgb``) with no values reruns only the other half.
Targets: first load of DBLP >= 5x faster than ``HGBDataset``; ``knn_graph`` no
slower than scikit-learn at 60,000 x 512, k = 5, with bounded memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package
RESULTS = REPO / "benchmarks" / "results" / "data.json"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mib() -> float:
    # Not ru_maxrss: it survives fork+exec, so a child would report its parent's peak.
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024


# --------------------------------------------------------------------------- HGB


def bench_hgb(data_root: Path, names: list[str], skip_pyg: bool) -> list[dict]:
    from brlgraph.data import load_hgb

    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["BRLGRAPH_CACHE"] = str(Path(tmp) / "cache")
            start = time.perf_counter()
            first = load_hgb(name, root=data_root)
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            second = load_hgb(name, root=data_root, seed=1)
            cached_s = time.perf_counter() - start
            # The cache is memory-mapped: also time reading every feature once.
            for nt in second.node_types:
                if "x" in second[nt]:
                    float(second[nt].x.sum())
            cached_touched_s = time.perf_counter() - start
            pyg_s = None if skip_pyg else pyg_hgb_time(data_root / "hgb" / f"{name}.zip", name, Path(tmp))
        rows.append({
            "data_set": name, "nodes": sum(first[nt].num_nodes for nt in first.node_types),
            "first_load_s": first_s, "cached_load_s": cached_s,
            "cached_load_and_read_features_s": cached_touched_s, "pyg_hgbdataset_s": pyg_s,
            "speedup_first_vs_pyg": None if pyg_s is None else pyg_s / first_s,
        })
        print(f"  {name}: first {first_s:.2f} s, cached {cached_s:.3f} s "
              f"(+ reading features {cached_touched_s:.3f} s)"
              + ("" if pyg_s is None else f", HGBDataset {pyg_s:.1f} s ({pyg_s / first_s:.1f}x)"),
              flush=True)
    return rows


def pyg_hgb_time(archive: Path, name: str, tmp: Path) -> float:
    """Processing time of torch-geometric's HGBDataset on the same files."""
    from torch_geometric.datasets import HGBDataset

    root = tmp / "pyg"
    raw = root / name.lower() / "raw" / name  # HGBDataset reads <root>/<name>/raw/<NAME>/*.dat
    raw.mkdir(parents=True)
    with zipfile.ZipFile(archive) as z:
        z.extractall(raw)
    start = time.perf_counter()
    HGBDataset(str(root), name.lower())
    elapsed = time.perf_counter() - start
    shutil.rmtree(root)
    return elapsed


# --------------------------------------------------------------------------- kNN


def knn_worker(impl: str, n: int, dim: int, k: int, metric: str) -> dict:
    """One kNN measurement (run in its own process)."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    if impl == "brlgraph":
        from brlgraph.data import knn_graph

        def run():
            return knn_graph(x, k, metric=metric, loop=True, symmetric=False)
    else:
        from sklearn.neighbors import kneighbors_graph

        def run():
            return kneighbors_graph(x, k, metric=metric, include_self=True)
    reset_peak_rss()
    before = rss_mib()
    start = time.perf_counter()
    out = run()
    elapsed = time.perf_counter() - start
    edges = out.shape[1] if impl == "brlgraph" else out.nnz
    return {"impl": impl, "n": n, "dim": dim, "k": k, "metric": metric, "seconds": elapsed,
            "peak_mib_above_input": peak_rss_mib() - before, "input_mib": x.nbytes / 2**20,
            "edges": int(edges)}


def bench_knn(sizes: list[int], dim: int, k: int) -> list[dict]:
    rows = []
    for n in sizes:
        for metric in ("cosine", "euclidean"):
            for impl in ("brlgraph", "sklearn"):
                out = subprocess.run(
                    [sys.executable, __file__, "--knn-worker", impl, str(n), str(dim), str(k), metric],
                    capture_output=True, text=True, check=True, cwd=REPO,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"  {impl:<9} n={n:<6} {metric:<9} {row['seconds']:7.2f} s   "
                      f"peak +{row['peak_mib_above_input']:7.0f} MiB", flush=True)
    return rows


# --------------------------------------------------------------------------- main


def print_tables(hgb: list[dict], knn: list[dict]) -> None:
    print("\nHGB loading (seconds)")
    print(f"{'data set':<8} {'first load':>10} {'cached':>8} {'cached+read':>12} {'HGBDataset':>11} "
          f"{'speed-up':>9}")
    for r in hgb:
        pyg = "-" if r["pyg_hgbdataset_s"] is None else f"{r['pyg_hgbdataset_s']:.1f}"
        up = "-" if r["speedup_first_vs_pyg"] is None else f"{r['speedup_first_vs_pyg']:.1f}x"
        print(f"{r['data_set']:<8} {r['first_load_s']:>10.2f} {r['cached_load_s']:>8.3f} "
              f"{r['cached_load_and_read_features_s']:>12.3f} {pyg:>11} {up:>9}")
    print("\nkNN graph, k = 5, float32 (seconds / peak MiB above the input)")
    print(f"{'n x d':<12} {'metric':<10} {'knn_graph':>18} {'scikit-learn':>18}")
    for n in sorted({r["n"] for r in knn}):
        for metric in ("cosine", "euclidean"):
            cells = {r["impl"]: r for r in knn if r["n"] == n and r["metric"] == metric}
            if len(cells) < 2:
                continue
            text = [f"{cells[i]['seconds']:.2f} s / {cells[i]['peak_mib_above_input']:.0f}"
                    for i in ("brlgraph", "sklearn")]
            size = f"{n} x {cells['sklearn']['dim']}"
            print(f"{size:<12} {metric:<10} {text[0]:>18} {text[1]:>18}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("BRLGRAPH_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--hgb", nargs="*", default=["DBLP", "ACM", "IMDB"])
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 60_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--skip-pyg", action="store_true", help="do not time torch-geometric's HGBDataset")
    parser.add_argument("--knn-worker", nargs=5, metavar=("IMPL", "N", "DIM", "K", "METRIC"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.knn_worker:
        impl, n, dim, k, metric = args.knn_worker
        print(json.dumps(knn_worker(impl, int(n), int(dim), int(k), metric)))
        return

    print(f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}")
    # A section left out (--hgb or --sizes with no values) keeps its previous results.
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if args.hgb:
        print("HGB loading")
        hgb = {"date": stamp, "rows": bench_hgb(args.data, args.hgb, args.skip_pyg)}
    else:
        hgb = previous.get("hgb", {"rows": []})
    if args.sizes:
        print("kNN graphs")
        knn = {"date": stamp, "rows": bench_knn(args.sizes, args.dim, args.k)}
    else:
        knn = previous.get("knn", {"rows": []})
    print_tables(hgb["rows"], knn["rows"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from brlgraph.bench.common import machine
    from brlgraph.io import atomic_write

    with atomic_write(RESULTS) as f:
        json.dump({
            "machine": {**machine(), "platform": platform.platform(),
                        "torch_threads": torch.get_num_threads(), "python": platform.python_version()},
            "hgb": hgb, "knn": knn,
        }, f, indent=2)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

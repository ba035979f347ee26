"""Multi-seed reproductions: HGB tables beside the published rows, HGB prediction files.

``reproduce_hgb`` trains the tuned default config of each data set once per seed
(seeds 1..N, each also the seed of the train/validation split), then

- prints and saves (``hgb_table.md``, ``hgb_table.csv``) our mean +- std of the
  test Micro-/Macro-F1 (%) beside the published rows of
  :mod:`brlgraph.train.published`;
- writes ``<DATA>_<seed>.txt`` with the test predictions in HGB's submission
  format (``global_node_id<TAB><TAB>node_type<TAB>label[,label...]``);
- appends every run to ``results.jsonl`` and keeps every seed's metrics in
  ``hgb_scores.json`` (``reproduce_knn``: ``knn_scores.json``).

A data set that cannot be loaded (Freebase: no graph files here) is reported as
one line and skipped; the others go on.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from brlgraph.errors import DataError
from brlgraph.io import atomic_write
from brlgraph.train.published import PUBLISHED_HGB, PUBLISHED_KNN

OURS = "brlgraph BRLFormer (ours)"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def hgb_table(scores: dict[str, list[dict[str, float]]], datasets: Sequence[str],
              attention: str = "brl") -> pd.DataFrame:
    """Our mean +- std (test Micro-/Macro-F1, %) beside the published rows.

    ``scores[data set]`` is the list of per-seed metric dicts (fractions);
    a data set without runs shows "n/a" in our row.
    """
    columns = [f"{d} {m}" for d in datasets for m in ("Micro-F1", "Macro-F1")]
    ours_name = OURS if attention == "brl" else f"brlgraph ({attention} attention)"
    rows: dict[str, list[str]] = {ours_name: []}
    for d in datasets:
        runs = scores.get(d, [])
        for key in ("test_micro_f1", "test_macro_f1"):
            if runs:
                mean, std = mean_std([100 * r[key] for r in runs])
                rows[ours_name].append(f"{mean:.2f} ± {std:.2f}")
            else:
                rows[ours_name].append("n/a")
    for method, per_data in PUBLISHED_HGB.items():
        rows[method] = [f"{v:.2f}" for d in datasets for v in per_data[d]]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame.index.name = "method"
    return frame


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' own needs the optional ``tabulate``)."""
    header = [frame.index.name or ""] + list(frame.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in frame.iterrows():
        lines.append("| " + " | ".join([str(name)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def write_scores(path: str | Path, scores: dict[str, list[dict[str, Any]]]) -> None:
    """Every seed's numeric metrics per data set as JSON (NaN and non-numbers dropped)."""
    with atomic_write(path) as f:
        json.dump({d: [{k: v for k, v in r.items() if isinstance(v, (int, float))
                        and not (isinstance(v, float) and math.isnan(v))} for r in rs]
                   for d, rs in scores.items()}, f, indent=1)


def write_hgb_predictions(path: str | Path, predictions: dict[str, Any]) -> None:
    """One line per test node: ``global_id<TAB><TAB>node_type<TAB>label[,label...]``."""
    with atomic_write(path) as f:
        for gid, labels in zip(predictions["global_id"], predictions["labels"], strict=True):
            f.write(f"{gid}\t\t{predictions['node_type_id']}\t{','.join(map(str, labels))}\n")


def reproduce_hgb(datasets: Sequence[str], seeds: int, out: str | Path, device: str = "cpu",
                  overrides: Sequence[str] = (), progress: bool = True,
                  log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Train every data set ``seeds`` times; write the table and prediction files into ``out``."""
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import run_experiment

    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    scores: dict[str, list[dict[str, float]]] = {}
    attention = "brl"
    for dataset in datasets:
        runs: list[dict[str, float]] = []
        try:
            for seed in range(1, seeds + 1):
                config = build_config(dataset, None, [*overrides, f"seed={seed}",
                                                       f"data.split_seed={seed}"])
                attention = config.model.attention
                result = run_experiment(config, out / "runs" / f"{config.data.name}-seed{seed}",
                                        device=device, progress=progress,
                                        results_file=out / "results.jsonl")
                write_hgb_predictions(out / f"{config.data.name}_{seed}.txt", result["predictions"])
                m = result["metrics"]
                runs.append(m)
                log(f"{config.data.name} seed {seed}: test Micro-F1 {100 * m['test_micro_f1']:.2f}"
                    f"  Macro-F1 {100 * m['test_macro_f1']:.2f}  ({m['epochs']} epochs, "
                    f"{m['seconds']:.0f} s)")
        except DataError as err:
            log(f"brlgraph: error: {dataset}: {err} -- skipping {dataset}")
        if runs:
            scores[dataset] = runs
    frame = hgb_table(scores, datasets, attention)
    with atomic_write(out / "hgb_table.md") as f:
        f.write(to_markdown(frame))
    with atomic_write(out / "hgb_table.csv") as f:
        frame.to_csv(f)
    write_scores(out / "hgb_scores.json", scores)
    return frame


def reproduce_knn(seeds: int, out: str | Path, device: str = "cpu", overrides: Sequence[str] = (),
                  progress: bool = True, log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """20News as one sequence (kNN graph, k = 5): test accuracy over ``seeds`` random splits."""
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import run_experiment

    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    accuracies, runs = [], []
    attention = "brl"
    for seed in range(1, seeds + 1):
        config = build_config("20News", None, [*overrides, f"seed={seed}", f"data.split_seed={seed}"])
        attention = config.model.attention
        result = run_experiment(config, out / "runs" / f"20News-seed{seed}", device=device,
                                progress=progress, results_file=out / "results.jsonl")
        m = result["metrics"]
        runs.append(m)
        accuracies.append(100 * m["test_accuracy"])
        log(f"20News seed {seed}: test accuracy {accuracies[-1]:.2f}  ({m['epochs']} epochs, "
            f"{m['seconds']:.0f} s)")
    mean, std = mean_std(accuracies)
    ours = OURS if attention == "brl" else f"brlgraph ({attention} attention)"
    frame = pd.DataFrame.from_dict(
        {ours: [f"{mean:.2f} ± {std:.2f}"],
         "NodeFormer (published)": [f"{PUBLISHED_KNN['20News']:.2f}"]},
        orient="index", columns=["20News accuracy (kNN, k = 5)"])
    frame.index.name = "method"
    with atomic_write(out / "knn_table.md") as f:
        f.write(to_markdown(frame))
    with atomic_write(out / "knn_table.csv") as f:
        frame.to_csv(f)
    write_scores(out / "knn_scores.json", {"20News": runs})
    return frame

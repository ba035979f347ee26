"""Multi-seed reproductions: HGB tables beside the published rows, HGB prediction files.

``reproduce_hgb`` trains the tuned default config of each data set once per seed
(seeds 1..N, or any list of seeds; each also the seed of the train/validation
split), then

- prints and saves (``hgb_table.md``, ``hgb_table.csv``) our mean +- std of the
  test Micro-/Macro-F1 (%) beside the published rows of
  :mod:`brlgraph.train.published` (for ensembles, ``train.ensemble``, also a row of
  their member 0 alone, the one-model run), and (``hgb_gaps.md``, ``hgb_gaps.csv``) our mean
  minus each published figure beside the standard error of our mean;
- writes ``<DATA>_<seed>.txt`` with the test predictions in HGB's submission
  format (``global_node_id<TAB><TAB>node_type<TAB>label[,label...]``);
- appends every run to ``results.jsonl`` and keeps every seed's metrics in
  ``hgb_scores.json`` (``reproduce_knn``, the kNN graphs beside NodeFormer: ``knn_scores.json``).

A data set that cannot be loaded (Freebase: no graph files here) is reported as
one line and skipped; the others go on.

Under ``torchrun --nproc_per_node=N -m brlgraph reproduce ...`` the N processes share the
runs out the same way (:func:`_run_shared`); rank 0 writes the tables and results.

``jobs`` > 1 trains that many runs (seeds and data sets) at once, each in a process
of its own with cores / jobs torch threads (or ``OMP_NUM_THREADS`` where it is set),
without progress bars. Each run is seeded on its own, so its scores are those of a
sequential run with the same threads per run; the tables list runs in seed order
whatever order they end in, and only the parent process writes ``results.jsonl``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from brlgraph.errors import ConfigError, DataError
from brlgraph.io import append_line, atomic_write, json_text, run_folder_lock
from brlgraph.train import distributed
from brlgraph.train.published import PUBLISHED_HGB, PUBLISHED_KNN, PUBLISHED_OGB

OURS = "brlgraph BRLFormer (ours)"


#: the most seeds of one reproduction: far more than any table needs, and the list of
#: seeds is built before the first run
MAX_SEEDS = 1000


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """The seeds of a reproduction: ``N`` means 1..N; a sequence is taken as given
    (positive, no repeats: a repeated seed would count one run twice in the mean;
    at most :data:`MAX_SEEDS`)."""
    if isinstance(seeds, int):
        if not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"seeds: need 1..{MAX_SEEDS} seeds, got {seeds}")
        return list(range(1, seeds + 1))
    out = [int(s) for s in seeds]
    if not out or min(out) < 1 or len(set(out)) != len(out) or len(out) > MAX_SEEDS:
        raise ConfigError(f"seeds: need 1..{MAX_SEEDS} distinct positive seeds, got {list(seeds)}")
    return out


#: the HGB metrics we report: (key of a run's metrics, column name), in the published order
HGB_METRICS = (("test_micro_f1", "Micro-F1"), ("test_macro_f1", "Macro-F1"))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


#: prefix of a run's metrics of its first ensemble member alone (``train.ensemble`` > 1)
ONE_MODEL = "one_model_"


def hgb_table(scores: dict[str, list[dict[str, float]]], datasets: Sequence[str],
              attention: str = "brl") -> pd.DataFrame:
    """Our mean +- std (test Micro-/Macro-F1, %) beside the published rows.

    ``scores[data set]`` is the list of per-seed metric dicts (fractions);
    a data set without runs shows "n/a" in our row. When some runs are ensembles
    (their dicts also hold ``one_model_test_micro_f1`` etc., the scores of member 0,
    which is the one-model run of that seed), a second row of ours gives the one
    model's figures, so the ensemble's gain is read off the same runs; a data set
    without an ensemble shows its runs there as they are.
    """
    columns = [f"{d} {m}" for d in datasets for _, m in HGB_METRICS]
    ours_name = _ours(attention)
    rows: dict[str, list[str]] = {}
    ensembles = any(ONE_MODEL + key in r for runs in scores.values() for r in runs for key, _ in HGB_METRICS)
    variants = [(ours_name, "")] + ([(f"{ours_name}, one model (ensemble member 0)", ONE_MODEL)]
                                    if ensembles else [])
    for name, prefix in variants:
        rows[name] = []
        for d in datasets:
            runs = scores.get(d, [])
            for key, _ in HGB_METRICS:
                if runs:
                    mean, std = mean_std([100 * r.get(prefix + key, r[key]) for r in runs])
                    rows[name].append(f"{mean:.2f} ± {std:.2f}")
                else:
                    rows[name].append("n/a")
    for method, per_data in PUBLISHED_HGB.items():
        rows[method] = [f"{v:.2f}" for d in datasets for v in per_data[d]]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame.index.name = "method"
    return frame


def hgb_gaps(scores: dict[str, list[dict[str, float]]], datasets: Sequence[str]) -> pd.DataFrame:
    """Our mean minus each published row (points of test Micro-/Macro-F1, %), one row per
    data set and metric, beside our mean and its standard error (std / sqrt(seeds)).

    The standard error says how far the mean of this many seeds moves between
    repetitions; a difference well inside it is not a difference the runs can show.
    Data sets without runs are left out.
    """
    rows: dict[str, dict[str, Any]] = {}
    for d in datasets:
        runs = scores.get(d, [])
        if not runs:
            continue
        for i, (key, metric) in enumerate(HGB_METRICS):
            mean, std = mean_std([100 * r[key] for r in runs])
            row = {"ours": f"{mean:.2f}", "standard error": f"{std / math.sqrt(len(runs)):.2f}"}
            for method, per_data in PUBLISHED_HGB.items():  # from the rounded mean the table shows
                gap = round(round(mean, 2) - per_data[d][i], 2) or 0.0  # no "-0.00"
                row[method] = f"{gap:+.2f}"
            rows[f"{d} {metric}"] = row
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["ours", "standard error", *PUBLISHED_HGB])
    frame.index.name = "ours minus published"
    return frame


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' own needs the optional ``tabulate``)."""
    header = [frame.index.name or ""] + list(frame.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in frame.iterrows():
        lines.append("| " + " | ".join([str(name)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def write_table(out: Path, stem: str, frame: pd.DataFrame) -> None:
    """``frame`` as ``out/<stem>.md`` (Markdown) and ``out/<stem>.csv``, each written atomically."""
    with atomic_write(out / f"{stem}.md") as f:
        f.write(to_markdown(frame))
    with atomic_write(out / f"{stem}.csv") as f:
        frame.to_csv(f)


def write_scores(path: str | Path, scores: dict[str, list[dict[str, Any]]]) -> None:
    """Every seed's numeric metrics per data set as JSON (NaN, infinities and non-numbers
    dropped: JSON has no word for the first two)."""
    with atomic_write(path) as f:
        json.dump({d: [{k: v for k, v in r.items() if isinstance(v, (int, float))
                        and (not isinstance(v, float) or math.isfinite(v))} for r in rs]
                   for d, rs in scores.items()}, f, indent=1)


def write_hgb_predictions(path: str | Path, predictions: dict[str, Any]) -> None:
    """One line per test node: ``global_id<TAB><TAB>node_type<TAB>label[,label...]``."""
    with atomic_write(path) as f:
        for gid, labels in zip(predictions["global_id"], predictions["labels"], strict=True):
            f.write(f"{gid}\t\t{predictions['node_type_id']}\t{','.join(map(str, labels))}\n")


def _train_one(dataset: str, seed: int, overrides: Sequence[str], out: Path, device: str,
               progress: bool, results_file: Path | None, resume: bool = False,
               download: bool = False, allow_pickle: bool = False) -> dict[str, Any]:
    """One reproduction run: the data set's tuned config at ``seed`` (also its split seed);
    ``resume`` continues from the run folder's checkpoint where there is one. The run
    holds its folder's lock (:func:`~brlgraph.io.run_folder_lock`) while it trains."""
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import run_experiment

    config = build_config(dataset, None, [*overrides, f"seed={seed}"])
    folder = out / "runs" / f"{config.data.name}-seed{seed}"
    with run_folder_lock(folder):
        result = run_experiment(config, folder, device=device, resume=resume, progress=progress,
                                results_file=results_file, download=download,
                                allow_pickle=allow_pickle)
    return {**result, "dataset": config.data.name, "attention": config.model.attention}


def _init_worker(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _run_all(runs: Sequence[tuple[str, int]], overrides: Sequence[str], out: Path, device: str,
             progress: bool, jobs: int, resume: bool = False,
             download: bool = False, allow_pickle: bool = False) -> Iterator[tuple[str, int, dict[str, Any] | DataError]]:
    """Train every (data set, seed) of ``runs``; yield (data set, seed, result) as each
    ends (in order when ``jobs`` = 1). A data set whose files cannot be read yields its
    DataError once, for its first failing seed, and no more runs (one by one, its other
    seeds are not started: they would fail alike)."""
    failed: set[str] = set()
    rank, world = distributed.group_rank_and_size()
    if world > 1:  # under torchrun: the processes share the runs out
        yield from _run_shared(runs, overrides, out, device, rank, world, resume)
        return
    if jobs == 1:
        for dataset, seed in runs:
            if dataset in failed:
                continue
            try:
                yield dataset, seed, _train_one(dataset, seed, overrides, out, device, progress,
                                                out / "results.jsonl", resume, download, allow_pickle)
            except DataError as err:
                failed.add(dataset)
                yield dataset, seed, err
        return
    jobs = min(jobs, len(runs))  # a process more than there are runs would only start and wait
    threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    try:
        # each run writes its record into its own folder; this process alone appends to
        # the shared results.jsonl, so no line is lost to two writers
        futures = {pool.submit(_train_one, dataset, seed, overrides, out, device, False, None, resume,
                               download, allow_pickle): (dataset, seed)
                   for dataset, seed in runs}
        for future in as_completed(futures):
            dataset, seed = futures[future]
            try:
                result = future.result()
            except DataError as err:
                if dataset not in failed:
                    failed.add(dataset)
                    yield dataset, seed, err
                continue
            append_line(out / "results.jsonl", json_text(result["record"], sort_keys=True))
            yield dataset, seed, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_shared(runs: Sequence[tuple[str, int]], overrides: Sequence[str], out: Path, device: str,
                rank: int, world: int, resume: bool) -> Iterator[tuple[str, int, dict[str, Any] | DataError]]:
    """torchrun's process ``rank`` of ``world`` trains runs ``rank``, ``rank + world``, ...,
    each a one-process run writing its own folder; rank 0 gathers every result, appends
    them to ``results.jsonl`` and yields them in the order of ``runs`` (the other ranks
    yield nothing). A data set that fails is reported once."""
    mine: list[tuple[str, int, dict[str, Any] | DataError]] = []
    with distributed.one_process():
        for dataset, seed in runs[rank::world]:
            try:
                result = _train_one(dataset, seed, overrides, out, device, False, None, resume)
            except DataError as err:
                mine.append((dataset, seed, err))
                continue
            mine.append((dataset, seed, {k: result[k] for k in ("metrics", "predictions", "record",
                                                               "dataset", "attention")}))
    gathered = distributed.gather(mine)
    if rank != 0:
        return
    done = {(d, s): r for part in gathered for d, s, r in part}
    failed: set[str] = set()
    for dataset, seed in runs:
        result = done[dataset, seed]
        if isinstance(result, DataError):
            if dataset not in failed:
                failed.add(dataset)
                yield dataset, seed, result
            continue
        append_line(out / "results.jsonl", json.dumps(result["record"], sort_keys=True))
        yield dataset, seed, result


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _collect_scores(datasets: Sequence[str], seeds: list[int], out: Path, log: Callable[[str], None],
                    record: Callable[[str, int, dict[str, Any]], dict[str, Any]], overrides: Sequence[str],
                    device: str, progress: bool, jobs: int, resume: bool, download: bool = False,
                    allow_pickle: bool = False) -> tuple[dict[str, list[dict[str, Any]]], str] | None:
    """Train every (data set, seed) of a reproduction (see :func:`_run_all`) and keep what
    ``record(dataset, seed, result)`` makes of each finished run (it may also write files
    and log). A data set whose files cannot be read is logged once and skipped.

    Returns the records of each data set in seed order and the runs' attention backend,
    or None in a torchrun process other than rank 0 (which writes the tables)."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    attention = "brl"
    runs = [(d, seed) for d in datasets for seed in seeds]
    for dataset, seed, result in _run_all(runs, overrides, out, device, progress, jobs, resume,
                                          download, allow_pickle):
        if isinstance(result, DataError):
            log(f"brlgraph: error: {dataset}: {result} -- skipping {dataset}")
            continue
        attention = result["attention"]
        done[dataset, seed] = record(dataset, seed, result)
    if not distributed.is_main():
        return None
    return {d: [done[d, s] for s in seeds if (d, s) in done] for d in datasets}, attention


def _ours(attention: str) -> str:
    """Our row's name in a reproduction table."""
    return OURS if attention == "brl" else f"brlgraph ({attention} attention)"


def _mean_cell(values: Sequence[float]) -> str:
    """``mean ± std`` of percentages, or "n/a" for a data set that did not run."""
    if not values:
        return "n/a"
    mean, std = mean_std(list(values))
    return f"{mean:.2f} ± {std:.2f}"


def reproduce_hgb(datasets: Sequence[str], seeds: int | Sequence[int], out: str | Path, device: str = "cpu",
                  overrides: Sequence[str] = (), progress: bool = True,
                  log: Callable[[str], None] | None = None, jobs: int = 1,
                  resume: bool = False, download: bool = False,
                  allow_pickle: bool = False) -> pd.DataFrame:
    """Train every data set once per seed (``seeds``: see :func:`seed_list`; ``jobs``
    runs at once); write the table and prediction files into ``out``. With ``resume``
    each run continues from its checkpoint in ``out``/runs (a finished run is only
    evaluated again; a run without one starts afresh)."""
    log = log or _stderr
    out, seeds = Path(out), seed_list(seeds)

    def record(dataset: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
        name, m = result["dataset"], result["metrics"]
        write_hgb_predictions(out / f"{name}_{seed}.txt", result["predictions"])
        members = result["record"].get("members")
        one = {ONE_MODEL + key: members[0][key] for key, _ in HGB_METRICS} if members else {}
        log(f"{name} seed {seed}: test Micro-F1 {100 * m['test_micro_f1']:.2f}"
            f"  Macro-F1 {100 * m['test_macro_f1']:.2f}"
            + (f" (ensemble of {len(members)}; member 0 alone {100 * members[0]['test_micro_f1']:.2f}"
               f" / {100 * members[0]['test_macro_f1']:.2f})" if members else "")
            + f"  ({m['epochs']} epochs, {m['seconds']:.0f} s)")
        return {"seed": seed, **m, **one}

    collected = _collect_scores(datasets, seeds, out, log, record, overrides, device, progress, jobs,
                                resume, download, allow_pickle)
    if collected is None:
        return pd.DataFrame()
    per_data, attention = collected
    scores = {d: rs for d, rs in per_data.items() if rs}
    frame = hgb_table(scores, datasets, attention)
    write_table(out, "hgb_table", frame)
    write_scores(out / "hgb_scores.json", scores)
    write_table(out, "hgb_gaps", hgb_gaps(scores, datasets))
    return frame


def reproduce_knn(datasets: Sequence[str], seeds: int | Sequence[int], out: str | Path, device: str = "cpu",
                  overrides: Sequence[str] = (), progress: bool = True,
                  log: Callable[[str], None] | None = None, jobs: int = 1,
                  resume: bool = False, download: bool = False,
                  allow_pickle: bool = False) -> pd.DataFrame:
    """kNN graphs (20News, Mini-ImageNet) as one sequence: test accuracy over one random
    50/25/25 split per seed (``seeds``: see :func:`seed_list`; ``jobs`` runs at once;
    ``resume`` as in :func:`reproduce_hgb`), beside NodeFormer's published accuracy.
    A data set that cannot be loaded is reported as one line and shows "n/a".
    ``allow_pickle`` lets Mini-ImageNet's pickles be read (unpickling runs code from the file)."""
    log = log or _stderr
    out, seeds = Path(out), seed_list(seeds)

    def record(dataset: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
        m = {"seed": seed, **result["metrics"]}
        log(f"{dataset} seed {seed}: test accuracy {100 * m['test_accuracy']:.2f}  ({m['epochs']} epochs, "
            f"{m['seconds']:.0f} s)")
        return m

    collected = _collect_scores(datasets, seeds, out, log, record, overrides, device, progress, jobs,
                                resume, download, allow_pickle)
    if collected is None:
        return pd.DataFrame()
    scores, attention = collected
    ours = _ours(attention)
    row = [_mean_cell([100 * m["test_accuracy"] for m in scores[d]]) for d in datasets]
    frame = pd.DataFrame.from_dict(
        {ours: row, "NodeFormer (published)": [f"{PUBLISHED_KNN[d]:.2f}" for d in datasets]},
        orient="index", columns=[f"{d} accuracy (kNN, k = 5)" for d in datasets])
    frame.index.name = "method"
    write_table(out, "knn_table", frame)
    write_scores(out / "knn_scores.json", {d: rs for d, rs in scores.items() if rs})
    return frame


def ogb_metric_key(dataset: str) -> tuple[str, str]:
    """(key of a run's metrics, column label) of an OGB data set's official metric."""
    from brlgraph.train.config import ROCAUC_DATASETS

    return ("test_rocauc", "ROC-AUC") if dataset in ROCAUC_DATASETS else ("test_accuracy", "accuracy")


def reproduce_ogb(datasets: Sequence[str], seeds: int | Sequence[int], out: str | Path, device: str = "cpu",
                  overrides: Sequence[str] = (), progress: bool = True,
                  log: Callable[[str], None] | None = None, jobs: int = 1,
                  resume: bool = False, download: bool = False) -> pd.DataFrame:
    """OGB node property prediction: ogb's official split for every seed (the seed changes
    the initialisation, dropout and context draws only), ogb's Evaluator's metric
    (accuracy; ROC-AUC for ogbn-proteins), our mean +- std beside SGFormer, NodeFormer and
    Polynormer (:data:`~brlgraph.train.published.PUBLISHED_OGB`, "n/a" where a paper has
    no figure on the official split). Writes ``ogb_table.md``/``.csv`` and ``ogb_scores.json``;
    ``seeds``, ``jobs``, ``resume`` and ``download`` (ogb's own download) as in
    :func:`reproduce_hgb`."""
    log = log or _stderr
    out, seeds = Path(out), seed_list(seeds)

    def record(dataset: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
        m = {"seed": seed, **result["metrics"]}
        key, label = ogb_metric_key(dataset)
        log(f"{dataset} seed {seed}: test {label} {100 * m[key]:.2f}  ({m['epochs']} epochs, "
            f"{m['seconds']:.0f} s)")
        return m

    collected = _collect_scores(datasets, seeds, out, log, record, overrides, device, progress, jobs,
                                resume, download)
    if collected is None:
        return pd.DataFrame()
    scores, attention = collected
    ours = _ours(attention)
    rows: dict[str, list[str]] = {ours: [_mean_cell([100 * m[ogb_metric_key(d)[0]] for m in scores[d]])
                                         for d in datasets]}
    for method, per_data in PUBLISHED_OGB.items():
        rows[method] = [("n/a" if d not in per_data else f"{per_data[d][0]:.2f}" if per_data[d][1] is None
                         else f"{per_data[d][0]:.2f} ± {per_data[d][1]:.2f}") for d in datasets]
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=[f"{d} {ogb_metric_key(d)[1]}" for d in datasets])
    frame.index.name = "method"
    write_table(out, "ogb_table", frame)
    write_scores(out / "ogb_scores.json", {d: rs for d, rs in scores.items() if rs})
    return frame

"""Ablations on real data: attention backends, window against context, reservoir size.

Every cell is one training run of the project's pipeline
(:func:`~brlgraph.train.experiment.run_experiment`) with a data set's shipped config
and a few ``--set`` overrides, at one seed (seed s is also the split seed, as in
``brlgraph reproduce``), always as one model (``train.ensemble = 1``). Groups:

- ``backends``: every attention backend on the same sequences, DBLP and 20News;
- ``hgb``: ``brl``, ``full``, ``local`` on ACM and IMDB;
- ``long``: ``brl``, ``full``, ``local`` on DBLP with S = 256 tokens per target (the
  window of 16 then sees a fraction of the context);
- ``reservoir``: BRL with m = 0, 4, 16, 64 reservoir tokens on DBLP and 20News
  (m = 0 is BRL without its reservoir: the ``local`` backend, the same cell).

Each run is a fresh process, so its peak resident memory (``ru_maxrss``: data,
sequences, model and training together) is its own; time per epoch is the run's
training seconds (validation included) over its epochs. Results go to
``ablation.jsonl`` one run per line, so a sweep interrupted or split over several
commands never reruns a finished cell; an interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from brlgraph.bench import common
from brlgraph.errors import ConfigError, DataError

GROUPS = ("backends", "hgb", "long", "reservoir")
ALL_BACKENDS = ("brl", "full", "local", "performer", "linformer", "regla")
THREE = ("brl", "full", "local")
RESERVOIR_SIZES = (0, 4, 16, 64)
LONG_SEQ_LEN = 256
#: the end of a ``long`` variant's name
LONG_SUFFIX = f" S={LONG_SEQ_LEN}"


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: a data set and the overrides that make the variant."""

    dataset: str
    name: str
    overrides: tuple[str, ...]
    group: str

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}"

    @property
    def backend(self) -> str:
        """The attention backend the variant trains (its ``model.attention`` override)."""
        return next(o.split("=", 1)[1] for o in self.overrides if o.startswith("model.attention="))


def variants(groups: Sequence[str] = GROUPS) -> list[Variant]:
    """The variants of ``groups`` in table order (a cell shared by two groups once)."""
    common.check_choices("ablation group", groups, GROUPS)
    seq_len = common.config_key("seq_len")
    reservoir = common.config_key("reservoir")
    out: dict[str, Variant] = {}

    def add(dataset: str, name: str, overrides: tuple[str, ...], group: str) -> None:
        v = Variant(dataset, name, overrides, group)
        out.setdefault(v.key, v)

    for g in groups:
        if g == "backends":
            for d in ("DBLP", "20News"):
                for b in ALL_BACKENDS:
                    add(d, b, (f"model.attention={b}",), g)
        elif g == "hgb":
            for d in ("ACM", "IMDB"):
                for b in THREE:
                    add(d, b, (f"model.attention={b}",), g)
        elif g == "long":
            for b in THREE:
                add("DBLP", f"{b}{LONG_SUFFIX}", (f"model.attention={b}", f"{seq_len}={LONG_SEQ_LEN}"), g)
        elif g == "reservoir":
            for d in ("DBLP", "20News"):
                for m in RESERVOIR_SIZES:
                    if m == 0:  # no reservoir: the local backend, the same run as its own cell
                        add(d, "local", ("model.attention=local",), g)
                    else:
                        add(d, f"brl m={m}", ("model.attention=brl", f"{reservoir}={m}"), g)
    return list(out.values())


def canonical(variant: Variant) -> Variant:
    """A reservoir variant whose m is the data set's shipped one is the ``brl`` cell."""
    from brlgraph.train.config import default_config

    if not variant.name.startswith("brl m="):
        return variant
    shipped = common.config_value(default_config(variant.dataset), "reservoir")
    if int(variant.name.split("=")[1]) == shipped:
        return Variant(variant.dataset, "brl", ("model.attention=brl",), variant.group)
    return variant


def run_cell(dataset: str, overrides: list[str], seed: int, out: str, device: str = "cpu") -> dict[str, Any]:
    """One training run (in a fresh process: see :func:`~brlgraph.bench.common.run_isolated`)."""
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import run_experiment

    config = build_config(dataset, None, [*overrides, "train.ensemble=1", f"seed={seed}",
                                          f"data.split_seed={seed}"])
    result = run_experiment(config, out, device=device, resume=True, progress=False)
    m = result["metrics"]
    return {"metrics": {k: v for k, v in m.items() if isinstance(v, (int, float))},
            "peak_rss_mib": common.peak_rss_mib()}


def run_ablation(out: str | Path, groups: Sequence[str] = GROUPS, seeds: Sequence[int] = (1, 2, 3, 4, 5),
                 datasets: Sequence[str] | None = None, deadline: common.Deadline | None = None,
                 device: str = "cpu", progress: bool = True, log: Callable[[str], None] | None = None,
                 command: str = "", code: str = "", backends: Sequence[str] | None = None) -> pd.DataFrame:
    """Every (variant, seed) cell of ``groups`` not yet in ``out``/ablation.jsonl, seeds
    in the inner loop of each variant (so a cut sweep has whole rows), until
    ``deadline`` passes; then the table and plot of all finished cells.
    ``datasets`` restricts the data sets and ``backends`` the attention backends (full
    attention over 20News's one sequence of 9,607 tokens costs far more than the
    rest of its row); ``code`` labels the code that measured the times."""
    log = log or common._stderr
    out = Path(out)
    store = common.ResultStore(out / "ablation.jsonl", ("dataset", "variant", "seed"))
    chosen = [canonical(v) for v in variants(groups)]
    if datasets is not None:
        wanted = {d.lower() for d in datasets}
        chosen = [v for v in chosen if v.dataset.lower() in wanted]
    if backends is not None:
        common.check_choices("attention backend", backends, ALL_BACKENDS)
        chosen = [v for v in chosen if v.backend in backends]
    seen: set[str] = set()
    cells = []
    for v in chosen:
        if v.key not in seen:
            seen.add(v.key)
            cells.extend((v, s) for s in seeds)
    todo = [(v, s) for v, s in cells if store.get(dataset=v.dataset, variant=v.name, seed=s) is None]
    failed: set[str] = set()
    frame = pd.DataFrame()
    try:
        _sweep(todo, store, out, device, progress, log, deadline, failed, code)
    finally:
        if len(store):
            frame = ablation_table(store.records(), chosen, out)
            plot_ablation(store.records(), chosen, out, command or "brlgraph bench ablation", log)
    if failed and not store.records():
        raise DataError(f"no ablation cell could run ({', '.join(sorted(failed))}: data missing)")
    return frame


def _sweep(todo: list[tuple[Variant, int]], store: common.ResultStore, out: Path, device: str,
           progress: bool, log: Callable[[str], None], deadline: common.Deadline | None,
           failed: set[str], code: str) -> None:
    for v, seed in common.progress(todo, len(todo), "ablation", progress):
        if deadline is not None:
            deadline.check()
        if v.dataset in failed:
            continue
        run_dir = out / "runs" / f"{v.dataset}-{v.name.replace(' ', '_').replace('=', '')}-seed{seed}"
        try:
            record = common.run_isolated(run_cell, v.dataset, list(v.overrides), seed, str(run_dir), device)
        except DataError as err:
            failed.add(v.dataset)
            log(f"ablation: {v.dataset}: {err} -- skipping {v.dataset}")
            continue
        except ConfigError as err:  # one line naming the cell, not a traceback
            raise ConfigError(f"ablation cell {v.key} seed {seed}: {err}") from None
        m = record["metrics"]
        store.add({"dataset": v.dataset, "variant": v.name, "group": v.group, "seed": seed,
                   "overrides": list(v.overrides), "metrics": m, "peak_rss_mib": record["peak_rss_mib"],
                   "epoch_seconds": m["seconds"] / max(m["epochs"], 1), "code": code})
        log(f"ablation {v.key} seed {seed}: {_score_text(v.dataset, m)}, {m['epochs']} epochs, "
            f"{m['seconds'] / max(m['epochs'], 1):.1f} s/epoch, peak {record['peak_rss_mib']:.0f} MiB")


def _metric_keys(dataset: str) -> tuple[tuple[str, str], ...]:
    if dataset == "20News":
        return (("test_accuracy", "accuracy"),)
    return (("test_micro_f1", "Micro-F1"), ("test_macro_f1", "Macro-F1"))


def _score_text(dataset: str, m: dict[str, float]) -> str:
    return ", ".join(f"test {label} {100 * m[key]:.2f}" for key, label in _metric_keys(dataset))


def _stats(values: list[float]) -> tuple[float, float, float]:
    """Mean, std and standard error (std / sqrt(n); 0 for one value)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std, std / math.sqrt(len(values))


def ablation_table(records: list[dict], chosen: list[Variant], out: Path) -> pd.DataFrame:
    """``ablation``: one row per variant with runs: seeds run, test scores (%, mean ±
    std), the first score's mean minus that of ``local`` and of ``full`` on the same
    data set and sequences (with their standard errors), time per epoch and peak memory."""
    rows: dict[str, dict[str, str]] = {}
    by = {}
    for r in records:
        by.setdefault((r["dataset"], r["variant"]), []).append(r)
    order = [(v.dataset, v.name) for v in chosen] + sorted(k for k in by if k not in {(v.dataset, v.name) for v in chosen})
    for key in dict.fromkeys(order):
        runs = sorted(by.get(key, []), key=lambda r: r["seed"])
        if not runs:
            continue
        dataset, name = key
        metrics = _metric_keys(dataset)
        row = {"seeds": ",".join(str(r["seed"]) for r in runs)}
        for mkey, label in metrics:
            row[f"test {label} (%)"] = common.mean_std_text([r["metrics"][mkey] for r in runs], 2, 100)
        first = metrics[0][0]
        mean, _, se = _stats([100 * r["metrics"][first] for r in runs])
        suffix = LONG_SUFFIX if name.endswith(LONG_SUFFIX) else ""
        for ref in ("local", "full"):
            other = by.get((dataset, f"{ref}{suffix}"), [])
            if other and (ref + suffix) != name:
                omean, _, ose = _stats([100 * r["metrics"][first] for r in other])
                row[f"minus {ref} (SE)"] = f"{mean - omean:+.2f} ({se:.2f} / {ose:.2f})"
            else:
                row[f"minus {ref} (SE)"] = ""
        row["s / epoch"] = common.mean_std_text([r["epoch_seconds"] for r in runs], 1)
        row["peak RSS (MiB)"] = f"{statistics.fmean(r['peak_rss_mib'] for r in runs):.0f}"
        rows[f"{dataset} / {name}"] = row
    # a data set has its own metrics (20News: accuracy): the others' cells stay empty
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    frame.index.name = "data set / variant"
    common.write_table(out, "ablation", frame)
    return frame


def plot_ablation(records: list[dict], chosen: list[Variant], out: Path, command: str,
                  log: Callable[[str], None] | None = None) -> Path | None:
    """``ablation.png``: per data set, the first test score (mean ± std) of each variant
    against its time per epoch."""
    plt = common.plotting(log)
    if plt is None or not records:
        return None
    groups = {}
    for r in records:
        groups.setdefault(r["dataset"] + (LONG_SUFFIX if r["variant"].endswith(LONG_SUFFIX) else ""),
                          {}).setdefault(r["variant"], []).append(r)
    names = list(groups)
    # one colour per variant name (its backend and m, without the S = 256 suffix) in every panel
    base = sorted({v.removesuffix(LONG_SUFFIX) for g in groups.values() for v in g})
    colours = {v: f"C{i % 10}" for i, v in enumerate(base)}
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, g in zip(axes[0], names, strict=True):
        dataset = g.split(" ")[0]
        key, label = _metric_keys(dataset)[0]
        times = []
        for variant, runs in sorted(groups[g].items()):
            ys = [100 * r["metrics"][key] for r in runs]
            xs = [r["epoch_seconds"] for r in runs]
            mean, std, _ = _stats(ys)
            times.append(statistics.fmean(xs))
            ax.errorbar(times[-1], mean, yerr=std, fmt="o", capsize=3, label=variant,
                        color=colours[variant.removesuffix(LONG_SUFFIX)])
        # most panels' times differ by tens of percent (a linear axis shows them); full
        # attention over 20News's one long sequence costs ten times the rest
        if max(times) > 4 * min(times) > 0:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap
        ax.margins(x=0.15)
        ax.set_xlabel("seconds per epoch (one CPU thread)")
        ax.set_ylabel(f"test {label} (%)")
        ax.set_title(g)
        ax.grid(alpha=0.3)
        common.legend(ax, fontsize=6)
    return common.save_figure(fig, out / "ablation.png", command)

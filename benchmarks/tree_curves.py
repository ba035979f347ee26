"""Training curves of Tree-NeighborsMatch cells run under different settings, on one plot.

``brlgraph bench tree-neighbors`` keeps one record per (model, depth, seed) in its
``--out`` folder, so variants of one model (another reservoir size, another number of
layers) run in folders of their own. This script puts their per-round training and
test accuracy on one figure, against optimiser steps, with chance marked:

    python benchmarks/tree_curves.py --depth 6 --out curves.png \\
        "full=runs/tree-r6-full/tree_neighbors.jsonl:full" \\
        "brl, m = 64=runs/tree-r6-m64/tree_neighbors.jsonl:brl"

Each curve is ``LABEL=FILE[:MODEL]``: the record of ``MODEL`` (default: the file's
first record) at ``--depth`` and ``--seed`` in ``FILE``. Records read from a stopped
run's checkpoint are plotted the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from brlgraph.bench import common
from brlgraph.errors import ConfigError


def read_curve(spec: str, depth: int, seed: int) -> tuple[str, dict]:
    """``LABEL=FILE[:MODEL]`` -> (label, record)."""
    label, sep, rest = spec.rpartition("=")  # labels may hold "=" (m = 64), paths rarely do
    if not sep or not label or not rest:
        raise ConfigError(f"curve {spec!r}: give LABEL=FILE[:MODEL]")
    path, _, model = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"curve {label!r}: {path} is not a file (a tree_neighbors jsonl)")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: line {n} is not JSON") from None
        if rec.get("depth") == depth and rec.get("seed") == seed and (not model or rec.get("model") == model):
            if not rec.get("history"):
                raise ConfigError(f"{path}: the record of {rec.get('model')} at r = {depth} has no history")
            return label, rec
    raise ConfigError(f"{path}: no record{' of ' + model if model else ''} at r = {depth}, seed {seed}")


def plot_curves(curves: list[tuple[str, dict]], depth: int, out: Path, command: str) -> Path | None:
    plt = common.plotting()
    if plt is None:
        return None
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for i, (label, rec) in enumerate(curves):
        history = rec["history"]
        per_round = rec["steps"] / max(rec.get("rounds", len(history)), 1)
        steps = [per_round * (k + 1) for k in range(len(history))]
        colour = f"C{i}"
        ax_train.plot(steps, [h[0] for h in history], color=colour, label=label)
        ax_test.plot(steps, [h[1] for h in history], color=colour, label=label)
    chance = 1.0 / 2**depth
    for ax, title in ((ax_train, "training accuracy"), (ax_test, "test accuracy")):
        ax.axhline(chance, color="0.5", lw=0.8, ls=":", label=f"chance ({chance:.3f})")
        ax.set_title(f"Tree-NeighborsMatch r = {depth}: {title}", fontsize=10)
        ax.set_xlabel("optimiser steps")
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("accuracy")
    common.legend(ax_test, fontsize=8)
    return common.save_figure(fig, out, command)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curves", nargs="+", metavar="LABEL=FILE[:MODEL]")
    p.add_argument("--depth", type=int, required=True, help="tree depth r")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    try:
        curves = [read_curve(spec, args.depth, args.seed) for spec in args.curves]
    except ConfigError as err:
        print(f"tree_curves.py: error: {err}", file=sys.stderr)
        return 2
    command = "python benchmarks/tree_curves.py " + " ".join(sys.argv[1:] if argv is None else argv)
    written = plot_curves(curves, args.depth, args.out, command)
    for label, rec in curves:
        print(f"{label}: {rec['steps']} steps, best training accuracy {rec['train_acc']:.3f}, "
              f"test {rec['test_acc']:.3f}")
    if written:
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

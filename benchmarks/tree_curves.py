"""Training curves of Tree-NeighborsMatch cells run under different settings, on one plot.

``brlgraph bench tree-neighbors`` keeps one record per (model, depth, seed) in its
``--out`` folder, so variants of one model (another reservoir size, another number of
layers) run in folders of their own. This script puts their per-round training and
test accuracy on one figure, against optimiser steps, with chance marked
(:func:`brlgraph.bench.tree_neighbors.plot_curves`):

    python benchmarks/tree_curves.py --depth 6 --out curves.png \\
        "full=runs/tree-r6-full/tree_neighbors.jsonl:full" \\
        "brl, m = 64=runs/tree-r6-m64/tree_neighbors.jsonl:brl"

Each curve is ``LABEL=FILE[:MODEL]``: the record of ``MODEL`` (default: the file's
first record) at ``--depth`` and ``--seed`` in ``FILE``. Records read from a stopped
run's checkpoint are plotted the same way.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from brlgraph.bench.tree_neighbors import plot_curves, read_curve
from brlgraph.errors import ConfigError


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
    command = shlex.join(["python", "benchmarks/tree_curves.py",
                          *(sys.argv[1:] if argv is None else argv)])
    written = plot_curves(curves, args.depth, args.out, command)
    for label, rec in curves:
        print(f"{label}: {rec['steps']} steps, best training accuracy {rec['train_acc']:.3f}, "
              f"test {rec['test_acc']:.3f}")
    if written:
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

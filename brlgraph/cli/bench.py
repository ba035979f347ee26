"""``brlgraph bench``: what the reservoir buys, measured.

    brlgraph bench oversquashing [--out DIR] [--seeds 0] [--time-limit MIN]   # the three below
    brlgraph bench tree-neighbors [--models gcn,...] [--depths 2-8] [--set KEY=VALUE]
    brlgraph bench longrange [--tasks retrieval,matching] [--models brl,local,full] [--lengths ...]
    brlgraph bench sensitivity [--settings dblp,path] [--models brl,local,full,gcn]
    brlgraph bench ablation [--groups backends,hgb,long,reservoir] [--datasets DBLP] [--models brl,local]
                            [--seeds 5]

Each writes Markdown and CSV tables and PNG plots (with the optional matplotlib extra)
into ``--out`` and keeps one JSON line per finished cell there, so running the same
command again only computes the cells that are missing. With ``--time-limit`` a
sweep stops after that many minutes (long cells at an epoch's checkpoint), writes
the tables of what finished and exits with status 3; run it again to go on.
``--set KEY=VALUE`` changes a field of the benchmark's budget (see
docs/oversquashing.md); a per-depth field takes ``depth:value,...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from brlgraph.errors import ConfigError

BENCHMARKS = ("oversquashing", "tree-neighbors", "longrange", "sensitivity", "ablation")
#: exit status when --time-limit stopped a sweep before its end
TIME_LIMIT_STATUS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="over-squashing benchmarks, sensitivity and ablations",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark", choices=BENCHMARKS,
                   help="oversquashing: tree-neighbors, longrange and sensitivity in turn")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/bench-<benchmark>)")
    p.add_argument("--seeds", default=None, metavar="N|A-B|A,B,...",
                   help="seeds (ablation: default 5, i.e. 1..5; others: default 0)")
    p.add_argument("--models", default=None, metavar="A,B,...", help="models to run (ablation: attention backends; default: all)")
    p.add_argument("--depths", default=None, metavar="A-B|A,B", help="tree-neighbors: depths r (default 2-8)")
    p.add_argument("--tasks", default=None, metavar="A,B", help="longrange: retrieval, matching")
    p.add_argument("--lengths", default=None, metavar="N,N,...", help="longrange: evaluation lengths")
    p.add_argument("--no-cost", action="store_true", help="longrange: skip the time and memory measurements")
    p.add_argument("--settings", default=None, metavar="A,B", help="sensitivity: dblp, path")
    p.add_argument("--groups", default=None, metavar="A,B,...",
                   help="ablation: backends, hgb, long, reservoir (default: all)")
    p.add_argument("--datasets", default=None, metavar="A,B", help="ablation: only these data sets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a budget field (repeatable), e.g. --set hidden=64 or --set max_steps=7:2000,8:1000")
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                   help="stop after MIN minutes (resumable), exit status 3")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help="ablation runs' device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _csv(text: str | None, kind=str) -> list | None:
    if text is None:
        return None
    try:
        items = [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a comma-separated list") from None
    if not items:
        raise ConfigError(f"empty list {text!r}")
    return items


def parse_range(text: str) -> list[int]:
    """``A-B`` -> A..B, ``A,B`` -> those."""
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(t) for t in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as A-B or A,B,...") from None


def parse_seeds(text: str | None, default: list[int]) -> list[int]:
    if text is None:
        return default
    spec = text.strip()
    if spec.isdigit():
        return list(range(1, int(spec) + 1)) if int(spec) > 0 else [0]
    seeds = parse_range(spec)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text}: give N, A-B or distinct seeds A,B,...")
    return seeds


def apply_budget(budget, overrides: list[str]):
    """Set ``KEY=VALUE`` fields of a budget dataclass, checking name and type."""
    hints = typing.get_type_hints(type(budget))
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(budget))
            raise ConfigError(f"--set {item}: unknown budget field {key!r} (fields: {known})")
        tp = hints[key]
        current = getattr(budget, key)
        try:
            if isinstance(current, dict):
                new = dict(current)
                for part in value.split(","):
                    k, _, v = part.partition(":")
                    new[int(k)] = int(v)
                setattr(budget, key, new)
            elif isinstance(current, list):  # longrange curriculum: n:batch:steps,...
                setattr(budget, key, [tuple(int(x) for x in part.split(":")) for part in value.split(",")])
            elif tp is bool:
                setattr(budget, key, value.lower() in ("1", "true", "yes"))
            else:
                setattr(budget, key, tp(value))
        except ValueError:
            raise ConfigError(f"--set {item}: {value!r} is not a valid value for {key}") from None
    return budget


def run(args: argparse.Namespace) -> int:
    from brlgraph.bench import common

    out = Path(args.out or f"runs/bench-{args.benchmark}")
    deadline = common.Deadline(args.time_limit * 60 if args.time_limit is not None else None)
    command = common.command_line()
    progress = not args.quiet
    if args.benchmark == "oversquashing" and (args.overrides or args.models):
        raise ConfigError("--set and --models apply to one benchmark: run tree-neighbors, longrange or "
                          "sensitivity on its own to change them")
    try:
        if args.benchmark in ("tree-neighbors", "oversquashing"):
            _tree(args, out, deadline, command, progress)
        if args.benchmark in ("longrange", "oversquashing"):
            _longrange(args, out, deadline, command, progress)
        if args.benchmark in ("sensitivity", "oversquashing"):
            _sensitivity(args, out, deadline, command, progress)
        if args.benchmark == "ablation":
            _ablation(args, out, deadline, command, progress)
    except common.TimeLimitReached as stop:
        print(f"brlgraph bench: {stop}: finished cells are in {out}; run the same command again to go on",
              file=sys.stderr)
        return TIME_LIMIT_STATUS
    print(f"wrote tables and plots to {out}")
    return 0


def _tree(args, out: Path, deadline, command: str, progress: bool) -> None:
    from brlgraph.bench import common
    from brlgraph.bench.tree_neighbors import DEPTHS, TREE_MODELS, TreeBudget, run_tree_neighbors

    budget = apply_budget(TreeBudget(), args.overrides if args.benchmark == "tree-neighbors" else [])
    models = (_csv(args.models) or list(TREE_MODELS)) if args.benchmark == "tree-neighbors" else list(TREE_MODELS)
    depths = parse_range(args.depths) if args.depths else list(DEPTHS)
    frame = run_tree_neighbors(out, models, depths, parse_seeds(args.seeds, [0]), budget, progress,
                               command=command, deadline=deadline)
    print(common.markdown(frame), end="")


def _longrange(args, out: Path, deadline, command: str, progress: bool) -> None:
    from brlgraph.bench import common
    from brlgraph.bench.longrange import EVAL_LENGTHS, MODELS, TASKS, LongRangeBudget, run_longrange

    budget = apply_budget(LongRangeBudget(), args.overrides if args.benchmark == "longrange" else [])
    models = (_csv(args.models) or list(MODELS)) if args.benchmark == "longrange" else list(MODELS)
    frame = run_longrange(out, _csv(args.tasks) or list(TASKS), models,
                          _csv(args.lengths, int) or list(EVAL_LENGTHS), parse_seeds(args.seeds, [0]),
                          budget, progress, cost=not args.no_cost, command=command, deadline=deadline)
    print(common.markdown(frame), end="")


def _sensitivity(args, out: Path, deadline, command: str, progress: bool) -> None:
    from brlgraph.bench import common
    from brlgraph.bench.sensitivity import MODELS, SETTINGS, SensitivityBudget, run_sensitivity

    budget = apply_budget(SensitivityBudget(), args.overrides if args.benchmark == "sensitivity" else [])
    models = (_csv(args.models) or list(MODELS)) if args.benchmark == "sensitivity" else list(MODELS)
    frame = run_sensitivity(out, _csv(args.settings) or list(SETTINGS), models, parse_seeds(args.seeds, [1]),
                            budget, progress, command=command, deadline=deadline)
    print(common.markdown(frame), end="")


def _ablation(args, out: Path, deadline, command: str, progress: bool) -> None:
    from brlgraph.bench import common
    from brlgraph.bench.ablation import GROUPS, run_ablation

    if args.overrides:
        raise ConfigError("bench ablation takes no --set: its cells are the shipped configs "
                          "(see docs/oversquashing.md)")
    frame = run_ablation(out, _csv(args.groups) or list(GROUPS), parse_seeds(args.seeds, [1, 2, 3, 4, 5]),
                         _csv(args.datasets), deadline=deadline, device=args.device, progress=progress,
                         command=command, backends=_csv(args.models))
    print(common.markdown(frame), end="")

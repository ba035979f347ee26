"""``brlgraph reproduce``: multi-seed runs of the tuned configs beside published results.

    brlgraph reproduce hgb [--datasets DBLP,ACM,IMDB,Freebase] [--seeds 5] [--jobs N] [--out DIR] [--resume]
    brlgraph reproduce knn [--datasets 20News,Mini-ImageNet] [--seeds 5] [--jobs N] [--out DIR] [--resume]
                           [--allow-pickle]
    brlgraph reproduce ogb [--datasets ogbn-arxiv,ogbn-proteins,...] [--seeds 5] [--jobs N] [--out DIR] [--resume]

``--seeds`` is N (seeds 1..N), a range ``6-10`` or a list ``1,4,9``.

``hgb`` prints our mean +- std of the test Micro-/Macro-F1 (%) beside HINormer,
SeHGNN, LMSPS and the best published row, then our mean minus each of them
beside the standard error of our mean; saves both tables as Markdown and CSV,
and writes HGB-format prediction files ``<DATA>_<seed>.txt`` into ``--out``.
``knn`` does the same for the kNN graphs, 20News and Mini-ImageNet (k = 5; accuracy
over random 50/25/25 splits), beside NodeFormer. ``ogb`` runs OGB node property
prediction on ogb's official splits (accuracy; ROC-AUC for ogbn-proteins, both from
ogb's Evaluator) beside SGFormer, NodeFormer and Polynormer (docs/ogb.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from brlgraph.cli.train import add_allow_pickle
from brlgraph.errors import ConfigError, DataError

DEFAULT_DATASETS = {"hgb": "DBLP,ACM,IMDB,Freebase", "knn": "20News",
                    "ogb": "ogbn-arxiv,ogbn-products,ogbn-proteins,ogbn-mag"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce a results table over several seeds",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark", choices=["hgb", "knn", "ogb"],
                   help="hgb: HGB node classification; knn: kNN graphs (20News, Mini-ImageNet); "
                        "ogb: OGB node property prediction")
    p.add_argument("--datasets", default=None, metavar="A,B,...",
                   help=f"comma-separated data sets (default: hgb {DEFAULT_DATASETS['hgb']}; "
                        f"knn {DEFAULT_DATASETS['knn']}; ogb {DEFAULT_DATASETS['ogb']})")
    p.add_argument("--seeds", default="5", metavar="N|A-B|A,B,...",
                   help="N: seeds 1..N (default 5); A-B: seeds A..B; A,B,...: those seeds")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default runs/reproduce-<benchmark>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every data set (repeatable)")
    p.add_argument("--device", default=None, metavar="cpu|cuda", help="default: cuda when available")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once, each in its own process with cores/N threads "
                        "(OMP_NUM_THREADS where set) and no progress bar (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--download", action="store_true",
                   help="fetch data sets not found locally from their official URLs (checksum-verified; "
                        "OGB through ogb's own download)")
    p.add_argument("--resume", action="store_true",
                   help="continue each run from its checkpoint under --out (finished runs are "
                        "only evaluated again); use the same --out, config and --set as before")
    add_allow_pickle(p)
    p.set_defaults(func=run)


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``N`` -> 1..N, ``A-B`` -> A..B, ``A,B,...`` -> those; checked by
    :func:`~brlgraph.train.runner.seed_list` (positive, distinct, at least one)."""
    from brlgraph.train.runner import MAX_SEEDS, seed_list

    spec = text.strip()
    try:
        if "," in spec:
            seeds = [int(s) for s in spec.split(",") if s.strip()]
        elif "-" in spec:
            lo, hi = (int(s) for s in spec.split("-"))
            if hi - lo >= MAX_SEEDS:  # refused before a huge range is built
                raise ValueError
            seeds = list(range(lo, hi + 1))
        else:
            seeds = int(spec)
        return seed_list(seeds)
    except (ValueError, ConfigError):
        raise ConfigError(f"--seeds {text}: give N (seeds 1..N), a range A-B with 1 <= A <= B, "
                          f"or distinct positive seeds A,B,...; at most {MAX_SEEDS} seeds") from None


def run(args: argparse.Namespace) -> int:
    from brlgraph.cli.train import resolve_device
    from brlgraph.io import run_folder_lock
    from brlgraph.train import distributed
    from brlgraph.train.config import (
        HGB_DATASETS,
        KNN_DATASETS,
        OGB_DATASETS,
        build_config,
        canonical_dataset,
    )

    out = args.out or f"runs/reproduce-{args.benchmark}"
    seeds = parse_seeds(args.seeds)
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: need at least 1")
    device = resolve_device(args.device)
    spec = args.datasets if args.datasets is not None else DEFAULT_DATASETS[args.benchmark]
    datasets = [canonical_dataset(d.strip()) for d in spec.split(",") if d.strip()]
    allowed = {"hgb": HGB_DATASETS, "knn": KNN_DATASETS, "ogb": OGB_DATASETS}[args.benchmark]
    if not datasets:
        raise ConfigError(f"--datasets: give at least one data set, e.g. --datasets {allowed[0]}")
    for d in datasets:
        if d not in allowed:
            raise ConfigError(f"--datasets: {d} is not a data set of `reproduce {args.benchmark}` "
                              f"({', '.join(allowed)})")
        # every run's config is checked before the first one starts, or any folder is made
        # (the runs of a data set differ in their seed alone)
        for seed in {min(seeds), max(seeds)}:
            build_config(d, None, [*args.overrides, f"seed={seed}"])
    device = distributed.setup(device)  # under torchrun: join the group
    try:
        with run_folder_lock(out):  # under torchrun, rank 0 alone holds it
            return _reproduce(args, datasets, seeds, out, device)
    finally:
        distributed.shutdown()


def _reproduce(args: argparse.Namespace, datasets: list[str], seeds: list[int], out: str,
               device: str) -> int:
    from brlgraph.train import distributed
    from brlgraph.train.runner import reproduce_hgb, reproduce_knn, reproduce_ogb, to_markdown

    common = {"device": device, "overrides": args.overrides, "progress": not args.quiet,
              "jobs": args.jobs, "resume": args.resume, "download": args.download}
    if args.benchmark == "ogb":
        frame = reproduce_ogb(datasets, seeds, out, **common)
    elif args.benchmark == "knn":
        frame = reproduce_knn(datasets, seeds, out, **common, allow_pickle=args.allow_pickle)
    else:
        frame = reproduce_hgb(datasets, seeds, out, **common)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    print(to_markdown(frame), end="")
    ran = [d for d in datasets if any(v != "n/a" for k, v in frame.iloc[0].items() if k.startswith(d + " "))]
    if not ran:
        raise DataError(f"none of {', '.join(datasets)} could be run (see the errors above); "
                        f"nothing but an empty table was written to {out}")
    if args.benchmark != "hgb":
        print(f"wrote {out}/{args.benchmark}_table.md and {args.benchmark}_table.csv")
        return 0
    print()
    print((Path(out) / "hgb_gaps.md").read_text(), end="")
    print(f"wrote {out}/hgb_table.md, hgb_table.csv, hgb_gaps.md, hgb_gaps.csv and the prediction "
          f"files of {', '.join(ran)}")
    return 0

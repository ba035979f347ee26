"""``brlgraph train``: train and evaluate one model on one data set.

    brlgraph train --dataset DBLP [--attention brl] [--config FILE.toml]
                   [--set key=value ...] [--seed N] [--device cpu|cuda]
                   [--json] [--resume] [--out DIR] [--allow-pickle]

The configuration is the data set's tuned defaults (``brlgraph/configs``), then
``--config``, then ``--set`` overrides, then the ``--attention``/``--seed``
flags. The run writes ``checkpoint.pt`` (resumable with ``--resume``),
appends its result to ``results.jsonl`` and writes the test predictions in
HGB's format into ``--out``. With ``--json`` the last line of the output is a
JSON object of the final metrics.

The configuration is checked whole before anything is written; ``--out`` is created
only then, and is owned by the run while it trains (a second run on the same folder
is refused).

    torchrun --nproc_per_node=N -m brlgraph train --dataset DBLP ...

trains the same run in N processes with DistributedDataParallel (gloo on the CPU, nccl
with ``--device cuda``, one GPU each), each step's targets shared out over them; rank 0
writes the files and the output (:mod:`brlgraph.train.distributed`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from brlgraph.errors import ConfigError

SUMMARY_KEYS = ("test_micro_f1", "test_macro_f1", "val_micro_f1", "epochs", "seconds")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train and evaluate a model on one data set",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="DBLP, ACM, IMDB, Freebase (HGB), 20News, Mini-ImageNet (kNN graphs) or "
                        "ogbn-arxiv, ogbn-products, ogbn-proteins, ogbn-mag (OGB)")
    p.add_argument("--attention", default=None, metavar="NAME",
                   help="attention backend: brl (default), full, local, performer, linformer, regla")
    p.add_argument("--config", default=None, metavar="FILE.toml", help="config file over the defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set train.lr=5e-4 (repeatable)")
    p.add_argument("--seed", type=int, default=None,
                   help="run seed; also the seed of the split unless data.split_seed is set")
    p.add_argument("--device", default=None, metavar="cpu|cuda", help="default: cuda when available")
    p.add_argument("--json", action="store_true", help="end the output with a JSON line of metrics")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default runs/<dataset>-<attention>-seed<seed>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--download", action="store_true",
                   help="fetch the data set from its official URL (checksum-verified, into the "
                        "cache) when its files are not found locally")
    add_allow_pickle(p)
    p.set_defaults(func=run)


#: help of ``--allow-pickle``, the same on every command that has it
ALLOW_PICKLE_HELP = ("read Mini-ImageNet's .pkl files; unpickling runs code from the file: "
                     "use only with files you trust")


def add_allow_pickle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE_HELP)


def resolve_device(name: str | None) -> str:
    """``cpu``/``cuda`` (default: cuda when available); ConfigError when cuda is missing."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"--device {name!r}: choose cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available; "
                          "use --device cpu")
    return name


def run(args: argparse.Namespace) -> int:
    from brlgraph.train import distributed
    from brlgraph.train.config import build_config

    overrides = list(args.overrides)
    if args.attention is not None:
        overrides.append(f"model.attention={args.attention}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    config = build_config(args.dataset, args.config, overrides)
    device = distributed.setup(resolve_device(args.device))  # under torchrun: join the group
    try:
        return _train(args, config, device)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, config, device: str) -> int:
    from brlgraph.io import json_text, run_folder_lock
    from brlgraph.train import distributed
    from brlgraph.train.config import KNN_DATASETS, OGB_DATASETS
    from brlgraph.train.experiment import run_experiment
    from brlgraph.train.runner import write_hgb_predictions

    out = Path(args.out) if args.out else Path("runs") / (
        f"{config.data.name}-{config.model.attention}-seed{config.seed}")
    with run_folder_lock(out):  # under torchrun, rank 0 alone holds it
        result = run_experiment(config, out, device=device, resume=args.resume, progress=not args.quiet,
                                download=args.download, allow_pickle=args.allow_pickle)
        if not distributed.is_main():  # under torchrun, rank 0 reports and writes
            return 0
        write_hgb_predictions(out / f"{config.data.name}_{config.seed}.txt", result["predictions"])
    m = result["metrics"]
    score = "accuracy" if config.data.name in KNN_DATASETS + OGB_DATASETS else "micro_f1"
    print(f"{config.data.name} ({config.model.attention}, seed {config.seed}): "
          f"test Micro-F1 {100 * m['test_micro_f1']:.2f}  Macro-F1 {100 * m['test_macro_f1']:.2f}"
          + (f"  accuracy {100 * m['test_accuracy']:.2f}" if score == "accuracy" and "test_accuracy" in m else "")
          + (f"  ROC-AUC {100 * m['test_rocauc']:.2f}" if "test_rocauc" in m else "")
          + f"  (val Micro-F1 {100 * m['val_micro_f1']:.2f}, {m['epochs']} epochs, "
          f"{m['seconds']:.1f} s)")
    members = result["record"].get("members")
    if members:  # train.ensemble > 1: what each member scored alone
        print(f"ensemble of {len(members)}; test Micro-F1 of each member alone: "
              + ", ".join(f"{100 * r['test_micro_f1']:.2f}" for r in members))
    print(f"wrote {out}/")
    if args.json:
        print(json_text({k: m[k] for k in (*SUMMARY_KEYS, "test_accuracy", "test_rocauc") if k in m}))
    return 0

"""Benchmark of training: time per epoch of the DBLP model, BRL beside full attention.

Both backends train the same DBLP model (the shipped config, sequence length S
changed) on the same hop-ordered sequences, at S = 256 and S = 2,048. An epoch
is ceil(974 train targets / batch) optimiser steps; each step runs the GNN
pre-encoder over the whole graph and the attention blocks over the batch.
``--dataset`` times another HGB data set's shipped model the same way.

On a CPU a whole epoch at S = 2,048 takes minutes, so the script times
``--steps`` full training steps (forward, backward, AdamW) after one warm-up
step and reports the mean step time and the epoch time it implies
(steps per epoch x mean step); ``--steps 0`` times whole epochs instead.

    python benchmarks/training.py                     # S = 256, 2048; brl, full
    python benchmarks/training.py --lengths 256 --steps 0 --batch-size 64
    python benchmarks/training.py --set model.path_tokens=0   # any config change
    python benchmarks/training.py --dataset ACM --lengths 50 --backends brl --batch-size 256

Prints a table and writes ``benchmarks/results/training.json`` (DBLP, the README's
table) or ``benchmarks/results/training_<DATASET>.json``, unless ``--out`` names a file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))


def time_backend(data, attention: str, length: int, args) -> dict:
    import torch

    from brlgraph.seeding import seed_everything
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import build_task

    overrides = [f"model.attention={attention}", f"sequences.seq_len={length}",
                 f"train.batch_size={args.batch_size}", "train.deterministic=false",
                 "sequences.eval_draws=1", *args.set]  # only training is timed
    config = build_config(args.dataset, None, overrides)
    seed_everything(0, False)
    task = build_task(data, config, args.device)
    model = task.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    steps_per_epoch = task.steps_per_epoch()

    def step(batch) -> None:
        loss = task.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    model.train()
    batches = list(task.train_batches(0))
    step(batches[0])  # warm-up
    sync()
    if args.steps > 0:
        timed = [batches[i % len(batches)] for i in range(args.steps)]
        t0 = time.perf_counter()
        for batch in timed:
            step(batch)
        sync()
        step_s = (time.perf_counter() - t0) / len(timed)
        epoch_s, measured = step_s * steps_per_epoch, f"{len(timed)} steps"
    else:
        t0 = time.perf_counter()
        for batch in task.train_batches(1):
            step(batch)
        sync()
        epoch_s = time.perf_counter() - t0
        step_s, measured = epoch_s / steps_per_epoch, "1 epoch"
    return {"dataset": args.dataset, "attention": attention, "length": length, "batch_size": args.batch_size,
            "steps_per_epoch": steps_per_epoch, "step_seconds": step_s,
            "epoch_seconds": epoch_s, "measured": measured,
            "config": config.to_dict()}


def main(argv: list[str] | None = None) -> int:
    from brlgraph.train.config import HGB_DATASETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="DBLP", choices=HGB_DATASETS, help="HGB data set and shipped config")
    p.add_argument("--lengths", default="256,2048", help="sequence lengths S")
    p.add_argument("--backends", default="brl,full")
    p.add_argument("--batch-size", type=int, default=32, help="target nodes per step")
    p.add_argument("--steps", type=int, default=3, help="timed steps (0: a whole epoch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="further config overrides of the model, e.g. --set model.path_tokens=0")
    p.add_argument("--data", default=None, help="folder holding hgb/<DATASET>.zip (else BRLGRAPH_DATA)")
    p.add_argument("--out", default=None,
                   help="JSON file to write (default: benchmarks/results/training.json for DBLP, "
                        "training_<DATASET>.json for the others, so they never replace DBLP's)")
    args = p.parse_args(argv)
    if args.out is None:
        name = "training.json" if args.dataset == "DBLP" else f"training_{args.dataset}.json"
        args.out = str(ROOT / "benchmarks" / "results" / name)
    if args.data:
        os.environ["BRLGRAPH_DATA"] = args.data

    import torch

    from brlgraph.data import load_hgb
    from brlgraph.io import atomic_write

    data = load_hgb(args.dataset, seed=0)
    rows = []
    for length in (int(s) for s in args.lengths.split(",")):
        for attention in args.backends.split(","):
            row = time_backend(data, attention, length, args)
            rows.append(row)
            print(f"S={length:>5}  {attention:<6} {1000 * row['step_seconds']:9.0f} ms/step  "
                  f"{row['epoch_seconds']:8.1f} s/epoch ({row['steps_per_epoch']} steps, "
                  f"measured over {row['measured']})", flush=True)

    print("\n| S | backend | ms / step | s / epoch | BRL speed-up |\n|---|---|---|---|---|")
    for row in rows:
        full = next((r for r in rows if r["length"] == row["length"] and r["attention"] == "full"), None)
        speedup = (f"{full['epoch_seconds'] / row['epoch_seconds']:.2f}x"
                   if full and row["attention"] == "brl" else "")
        print(f"| {row['length']:,} | {row['attention']} | {1000 * row['step_seconds']:.0f} | "
              f"{row['epoch_seconds']:.1f} | {speedup} |")
    from brlgraph.bench.common import machine

    meta = {**machine(), "threads": torch.get_num_threads(),
            "device": args.device, "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with atomic_write(args.out) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")
    return 0 if all(math.isfinite(r["epoch_seconds"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

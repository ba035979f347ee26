"""Benchmark of torchrun: time per epoch of one process against N processes on one machine.

Trains the same run with ``brlgraph train`` (a shipped config, ``--epochs`` epochs):

- one process with 1 torch thread, and one with ``--threads`` (``OMP_NUM_THREADS``);
- ``torchrun --standalone --nproc_per_node=N``: N processes with ``threads / N``
  threads each, every step's targets shared out (DistributedDataParallel over gloo);

and reports the training seconds per epoch of each (brlgraph's own ``seconds``, which
leaves out loading the data and building the model), the speed-up of the N processes
over the faster one-process run, and whether the metrics agree (with dropout they
differ as two seeds do, see brlgraph.train.distributed).
Writes ``benchmarks/results/torchrun_cpu.json`` (``--out``).

    python benchmarks/torchrun.py                        # DBLP, 3 epochs, 2 processes, 2 threads
    python benchmarks/torchrun.py --set model.dropout=0.0 --set model.input_dropout=0.0

On the project's 2-core CPU: ``flock /tmp/brlgraph-heavy.lock python benchmarks/torchrun.py``
(both cores: the one process uses two threads, the two processes one each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))


def train(args: argparse.Namespace, nproc: int, threads: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    cmd = [*launcher, "-m", "brlgraph", "train", "--dataset", args.dataset, "--device", "cpu",
           "--set", f"train.epochs={args.epochs}", "--set", f"train.patience={args.epochs}",
           *(x for s in args.set for x in ("--set", s)), "--json", "--quiet", "--out", str(out)]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    m = record["metrics"]
    return {"processes": nproc, "threads_per_process": threads, "epochs": m["epochs"],
            "epoch_seconds": m["seconds"] / m["epochs"], "wall_seconds": wall,
            "world_size": record["world_size"],
            "metrics": {k: v for k, v in m.items() if k not in ("seconds", "setup_seconds")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="DBLP")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--nproc", type=int, default=2, help="processes of the torchrun run")
    p.add_argument("--threads", type=int, default=2, help="torch threads in all (cores to use)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "torchrun_cpu.json"))
    args = p.parse_args(argv)

    from brlgraph.io import atomic_write

    with tempfile.TemporaryDirectory() as tmp:
        singles = [train(args, 1, t, Path(tmp) / f"one-{t}") for t in sorted({1, args.threads})]
        many = train(args, args.nproc, max(1, args.threads // args.nproc), Path(tmp) / "many")
    one = min(singles, key=lambda r: r["epoch_seconds"])  # the faster one-process run
    speedup = one["epoch_seconds"] / many["epoch_seconds"]
    same = one["metrics"] == many["metrics"]
    for row in (*singles, many):
        print(f"{row['processes']} process(es) x {row['threads_per_process']} thread(s): "
              f"{row['epoch_seconds']:.1f} s/epoch ({row['epochs']} epochs, {row['wall_seconds']:.0f} s "
              f"with start-up), test Micro-F1 {100 * row['metrics']['test_micro_f1']:.2f}")
    print(f"speed-up per epoch over the faster one-process run: x{speedup:.2f}; "
          f"metrics {'equal' if same else 'differ'}")
    from brlgraph.bench.common import machine

    meta = {**machine(), "dataset": args.dataset,
            "overrides": args.set, "load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": "python benchmarks/torchrun.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    with atomic_write(args.out) as f:
        json.dump({"meta": meta, "speedup": speedup, "metrics_equal": same, "rows": [*singles, many]},
                  f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

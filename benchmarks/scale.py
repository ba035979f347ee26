"""Benchmark of scale: whole graphs of 10^4 to 10^6 nodes as one sequence, on the CPU.

Each size runs in a process of its own, so that its peak memory is its own:

1. a stochastic block model (:func:`brlgraph.data.synthetic.sbm_graph`: 10 classes,
   average degree 10, 128 features whose class signal is weak in one node and clear
   over its neighbours; a random 50/25/25 split);
2. the graph-as-one-sequence model (``BRLGraphSequenceModel``, :data:`CONFIG`): node
   input projection, a 2-layer SAGE pre-encoder over the whole graph, every node in
   reverse Cuthill-McKee order as one sequence of N tokens through a BRL block
   (window 16, 16 reservoir tokens, width 64), with activation checkpointing;
3. ``--epochs`` epochs of brlgraph's training loop (:func:`brlgraph.train.loop.fit`):
   each is one full-batch optimiser step over all training nodes plus one forward pass
   over the whole graph to score the validation nodes.

Writes ``benchmarks/results/scale_cpu.json`` (``--out``): one object per size with
``num_nodes``, ``epoch_seconds`` (mean over the epochs after the first), ``peak_mib``
(the process's peak resident memory, data and graph included), ``accuracy`` (test
accuracy of the best validation epoch), ``mode`` (``"whole"``: one sequence of all N
nodes; ``"chunked"`` with ``--set sequences.chunk_size=c``), and the parts:
``setup_peak_mib`` (the peak before training: data, graph view, model, order),
``forward_seconds`` (one forward pass without gradients, by part: ``encoder``, ``gnn``,
``blocks``, ``readout``), ``data_seconds`` (generating the graph), ``build_seconds``
(its symmetric CSR view and the model), ``order_seconds`` (RCM), ``first_epoch_seconds``, ``eval_seconds``
(one forward pass over the whole graph), ``num_edges``.

    python benchmarks/scale.py                                  # 10^4, 10^5, 10^6 nodes
    python benchmarks/scale.py --sizes 10000,100000 --epochs 5 --out /tmp/scale.json
    python benchmarks/scale.py --set model.checkpoint=false     # any config change

On the project's 2-core CPU run it as the heavy jobs are run there:
``flock /tmp/brlgraph-heavy.lock env OMP_NUM_THREADS=1 python benchmarks/scale.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

#: the model and training of every size (config keys of brlgraph.train.config)
CONFIG = {
    "model": {"hidden_channels": 64, "heads": 4, "layers": 1, "window": 16, "reservoir_size": 16,
              "gnn": "hsage", "gnn_layers": 2, "dropout": 0.2, "input_dropout": 0.0,
              "logit_norm": 0.0, "checkpoint": True},
    "sequences": {"order": "rcm", "resample": False},
    "train": {"lr": 0.01, "weight_decay": 0.0, "monitor": "val_accuracy", "deterministic": False},
}


#: jemalloc for the measured processes (``--allocator``), set to keep the memory it frees
#: for the next step (``oversize_threshold:0`` keeps large allocations in its ordinary
#: size classes; no decay returns them to the system). With glibc's malloc every
#: allocation above 32 MiB is a fresh mmap, unmapped on free, so each [10^6, 64] float
#: tensor (256 MiB) of every step is page-faulted and zeroed anew; keeping freed memory
#: in glibc's heap instead (MALLOC_MMAP_THRESHOLD_) fragments it. One epoch at 3 x 10^5
#: nodes, this model, one thread: glibc 18.3 s / 2.2 GiB peak; glibc's heap 10.2 s /
#: 4.6 GiB; glibc with transparent huge pages 12.7 s / 2.2 GiB; jemalloc as here
#: 9.2 s / 2.1 GiB (docs/scaling.md).
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
JEMALLOC_CONF = "oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def peak_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(num_nodes: int, epochs: int, overrides: list[str], seed: int) -> dict:
    """Generate, build and train one size; the row of the results file."""
    import torch

    from brlgraph.data.synthetic import sbm_graph
    from brlgraph.seeding import seed_everything
    from brlgraph.train.config import Config, apply_mapping, parse_override
    from brlgraph.train.experiment import build_task
    from brlgraph.train.loop import fit

    config = apply_mapping(Config(), CONFIG, "benchmarks/scale.py")
    for item in overrides:
        key, value = parse_override(item)
        apply_mapping(config, {key: value}, f"--set {item}")
    config.seed, config.data.name = seed, "20News"  # a graph-as-one-sequence data set, for validate
    config.train.epochs, config.train.patience = epochs, epochs
    seed_everything(seed, config.train.deterministic)

    t0 = time.perf_counter()
    data = sbm_graph(num_nodes, seed=seed)
    data_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    task = build_task(data, config)  # the graph's symmetric CSR view, the model
    build_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    task.model.node_permutation(task.graph)  # cached: every forward pass reuses it
    order_seconds = time.perf_counter() - t0

    setup_peak = peak_mib()  # the data, its graph view, the model and the order
    stamps = [time.perf_counter()]
    config.data.name = f"SBM-{num_nodes}"
    summary = fit(task, config, None, progress=False,
                  on_epoch_end=lambda epoch, metrics: stamps.append(time.perf_counter()))
    epoch_times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    t0 = time.perf_counter()
    test = task.evaluate("test")
    eval_seconds = time.perf_counter() - t0
    parts = forward_parts(task) if not config.sequences.chunk_size else {}
    later = epoch_times[1:] or epoch_times
    return {"num_nodes": num_nodes, "epoch_seconds": sum(later) / len(later),
            "peak_mib": peak_mib(), "accuracy": test["accuracy"],
            "mode": "chunked" if config.sequences.chunk_size else "whole", "setup_peak_mib": setup_peak,
            "epochs": len(epoch_times), "best_epoch": summary["best_epoch"],
            "first_epoch_seconds": epoch_times[0], "epoch_seconds_each": epoch_times,
            "data_seconds": data_seconds, "build_seconds": build_seconds,
            "order_seconds": order_seconds, "eval_seconds": eval_seconds, "forward_seconds": parts,
            "num_edges": task.graph.num_edges // 2, "threads": torch.get_num_threads(),
            "config": config.to_dict()}


def forward_parts(task) -> dict[str, float]:
    """Seconds of each part of one forward pass without gradients over the whole graph:
    input projection, GNN pre-encoder, the blocks over the sequence, readout."""
    import torch

    from brlgraph.sequences import inverse_permutation

    model, graph = task.model, task.graph
    model.eval()
    out = {}
    with torch.no_grad():
        t0 = time.perf_counter()
        h = model.encoder(graph)
        out["encoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        h = model.gnn(h, graph) if model.gnn is not None else h
        out["gnn"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        perm = model.node_permutation(graph)
        x, _ = model.blocks(h[perm].unsqueeze(0))
        out["blocks"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.readout(x[0][inverse_permutation(perm)])
        out["readout"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="numbers of nodes")
    p.add_argument("--epochs", type=int, default=8, help="training epochs per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override on top of CONFIG, e.g. --set model.checkpoint=false")
    p.add_argument("--allocator", choices=["jemalloc", "glibc"], default=None,
                   help="memory allocator of the measured processes (default: jemalloc where "
                        "installed, see JEMALLOC; else glibc's malloc)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_cpu.json"))
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.epochs, args.set, args.seed)))
        return 0

    from brlgraph.io import atomic_write

    env = dict(os.environ)
    allocator = args.allocator or ("jemalloc" if Path(JEMALLOC).is_file() else "glibc")
    if allocator == "jemalloc":
        if not Path(JEMALLOC).is_file():
            raise SystemExit(f"--allocator jemalloc: {JEMALLOC} not found (Debian: apt-get install libjemalloc2)")
        env.update(LD_PRELOAD=JEMALLOC, MALLOC_CONF=JEMALLOC_CONF)
    else:
        print("measuring with glibc's malloc: at 10^6 nodes an epoch takes about twice as long "
              "(see JEMALLOC)", file=sys.stderr)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--epochs", str(args.epochs),
               "--seed", str(args.seed), *(f"--set={s}" for s in args.set)]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            rows.append({"num_nodes": n, "error": result.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"N = {n:>9,}: {row['epoch_seconds']:7.1f} s/epoch  peak {row['peak_mib']:7.0f} MiB  "
              f"test accuracy {100 * row['accuracy']:5.1f} %  ({row['mode']}; RCM {row['order_seconds']:.1f} s, "
              f"data {row['data_seconds']:.1f} s)", flush=True)
    done = [r for r in rows if "error" not in r]
    for a, b in zip(done, done[1:], strict=False):
        print(f"{a['num_nodes']:,} -> {b['num_nodes']:,} nodes: time x{b['epoch_seconds'] / a['epoch_seconds']:.1f}, "
              f"memory x{b['peak_mib'] / a['peak_mib']:.1f}")

    from brlgraph.bench.common import machine

    meta = {**machine(),
            "allocator": allocator if allocator == "glibc" else f"jemalloc ({JEMALLOC_CONF})",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "epochs": args.epochs,
            "load_average": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    with atomic_write(args.out) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")
    return 0 if len(done) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

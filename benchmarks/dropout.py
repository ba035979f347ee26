"""Dropout on the CPU: torch's ``F.dropout`` against :func:`brlgraph.nn.dropout.dropout`.

Prints milliseconds per forward and per forward+backward for tensors of the sizes an
HGB training step drops (a batch of 256 token sequences of 80 tokens at d = 64 / 128,
and the feed-forward's hidden layer), and writes them as JSON.

    OMP_NUM_THREADS=1 python benchmarks/dropout.py [--out benchmarks/results/dropout_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from brlgraph.io import atomic_write
from brlgraph.nn.dropout import dropout

SHAPES = [(256, 80, 64), (256, 80, 128), (256, 80, 256)]


def timed(fn, repeat: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


def measure(name: str, fn, x: torch.Tensor, grad: torch.Tensor, p: float, repeat: int) -> dict[str, float]:
    """Forward and forward+backward milliseconds of ``fn(x, p, True)``."""
    return {f"{name}_forward_ms": timed(lambda: fn(x.detach(), p, True), repeat),
            f"{name}_forward_backward_ms": timed(lambda: fn(x, p, True).backward(grad), repeat)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=float, default=0.4, help="dropout probability (default 0.4)")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", default=None, help="JSON file for the figures (default: print only)")
    args = ap.parse_args()
    rows = []
    for shape in SHAPES:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)
        row = {"shape": list(shape), "threads": torch.get_num_threads()}
        for name, fn in (("torch", torch.nn.functional.dropout), ("brlgraph", dropout)):
            row.update(measure(name, fn, x, g, args.p, args.repeat))
        rows.append(row)
        print(f"{str(tuple(shape)):>16}  forward torch {row['torch_forward_ms']:7.2f} ms  ours "
              f"{row['brlgraph_forward_ms']:7.2f} ms  |  forward+backward torch "
              f"{row['torch_forward_backward_ms']:7.2f} ms  ours {row['brlgraph_forward_backward_ms']:7.2f} ms")
    if args.out:
        with atomic_write(Path(args.out)) as f:
            json.dump({"p": args.p, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

"""Benchmark the attention operators: forward, forward+backward time and peak memory.

Every backend runs at the operator level on the same split-head inputs
(q, k, v: [1, heads, n, head_dim], fp32 on CPU, bf16 on CUDA), without the q/k/v/o
projections that every module adds alike:

    brl              BRL-Attention as dispatched (window w + m reservoir tokens,
                     learnable temperatures and lambda)
    brl-chunked      the same forced onto the chunked path (impl="chunked"; brl-fused
                     and brl-sdpa likewise)
    local            the same window alone (reservoir weight 0, no reservoir work)
    full             scaled_dot_product_attention
    performer        FAVOR+ with 2 * head_dim random features
    linformer        sequence projection to k = 128 rows
    regla            ReGLA features + bidirectional gated scan (chunk 32)
    local-attention  the `local-attention` package, window_size = w, look_backward = 1,
                     look_forward = 1 (non-causal), as a peer in the same run

Each (backend, n) runs in fresh subprocesses, one for time and one for memory, after
a warm-up on a short sequence. Peak memory on CPU is the growth of the process's
resident set during one forward+backward over its size just before (VmHWM after
resetting it through /proc/self/clear_refs, minus VmRSS; in that process glibc's mmap
threshold is fixed at 64 KiB so freed tensors leave the resident set); the inputs
are allocated before and not counted. On CUDA it is torch.cuda.max_memory_allocated
above the allocation before the step, and times come from CUDA events. Times are the
minimum over --repeats runs after one warm-up run (a run slower than
--single-run-seconds is measured once). On CPU the process CPU time is recorded too
(fwd_cpu_ms, fwdbwd_cpu_ms): with one thread it equals the wall time on an idle
machine and is much less disturbed by other jobs on shared cores. Cases whose cost would be out of reach (full
attention beyond --full-max-n) are reported as "not run".

    python benchmarks/attention.py                       # CPU, n = 1,024 .. 65,536
    python benchmarks/attention.py --device cuda         # n up to 262,144
    python benchmarks/attention.py --backends brl,local-attention --ns 8192,65536

``--modules`` measures the other regime, batches of many short sequences as the graph
transformer feeds them, at the module level (``make_attention(name, 128, 4)`` with its
q/k/v/o projections): forward + backward of ``--batch`` sequences of S tokens, the last
quarter of the tokens padded in half of the sequences, w = 16, 16 reservoir tokens.
Backends ``brl`` (the dispatcher's choice: the fused C++ kernel up to 1,024 tokens),
``brl-sdpa`` and ``brl-chunked`` (the same module forced onto the flash-kernel and the
chunked path), ``full`` and ``local`` run interleaved in one fresh process per S,
so that their ratios see the same load; times are process CPU times, minimum over
--repeats runs. Results go to ``results/attention_modules_cpu.json``.

    python benchmarks/attention.py --modules             # S = 16 .. 4,096

``--flash-keys`` times ATen's CPU flash kernel alone (forward + backward, 256 x 4 heads
x 128 queries, d_h = 32) against the number of keys per query: 128 (full attention
at S = 128), 80 and 48 (the window of a 64- and a 16-query bucket) and 16 (the read hop
over m = 16 reservoir keys). It shows the kernel's cost per query row, which every
extra pass of the short-sequence path pays again (docs/attention.md).

    python benchmarks/attention.py --flash-keys
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))
BACKENDS = ("brl", "brl-chunked", "local", "full", "performer", "linformer", "regla",
            "local-attention")
CPU_NS = tuple(2**p for p in range(10, 17))  # 1,024 .. 65,536
CUDA_NS = tuple(2**p for p in range(10, 19))  # .. 262,144
MODULE_BACKENDS = ("brl", "brl-sdpa", "brl-chunked", "full", "local")
# module backends that run the brl module with its operator forced onto one path
FORCED = {"brl-chunked": "chunked", "brl-sdpa": "sdpa", "brl-fused": "fused"}
MODULE_SS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Sequences per batch beyond 512 tokens: the batch shrinks as S grows, as in the issue
# that set the targets (1,024 x 16, 2,048 x 8, 4,096 x 4).
MODULE_LONG_BATCH = {1024: 16, 2048: 8, 4096: 4}


# --------------------------------------------------------------------------- worker


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(backend: str, n: int, args):
    """Leaf inputs and a closure running the operator forward."""
    import torch

    from brlgraph.nn.attention import (
        full_attention,
        linformer_attention,
        performer_attention,
        regla_attention,
    )
    from brlgraph.nn.attention.performer import orthogonal_gaussian
    from brlgraph.ops.brl import brl_attention

    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    H, D, w, m = args.heads, args.head_dim, args.window, args.reservoir_size
    g = torch.Generator(device="cpu").manual_seed(0)

    def leaf(*shape, scale=1.0, offset=0.0):
        t = torch.randn(*shape, generator=g) * scale + offset
        return t.to(dev, dtype).requires_grad_()

    q, k, v = (leaf(1, H, n, D) for _ in range(3))
    leaves = [q, k, v]
    if backend in ("brl", "brl-chunked"):
        rq, rk = leaf(1, H, m, D), leaf(1, H, m, D)
        gq, gk1, gk2 = (leaf(H, scale=0.1) for _ in range(3))
        theta = leaf(H, scale=0.0)
        leaves += [rq, rk, gq, gk1, gk2, theta]

        def fwd():
            y, _, _ = brl_attention(q, k, v, rq, rk, tau_w=torch.exp(gq * gk1),
                                    tau_r=torch.exp(gq * gk2), lam=torch.sigmoid(theta),
                                    window=w, impl="chunked" if backend == "brl-chunked" else "auto")
            return y
    elif backend == "local":
        def fwd():
            return brl_attention(q, k, v, window=w)[0]
    elif backend == "full":
        def fwd():
            return full_attention(q, k, v)
    elif backend == "performer":
        proj = orthogonal_gaussian(2 * D, D, generator=g).to(dev, dtype)

        def fwd():
            return performer_attention(q, k, v, proj)
    elif backend == "linformer":
        pk, pv = leaf(128, n, scale=128**-0.5), leaf(128, n, scale=128**-0.5)
        leaves += [pk, pv]

        def fwd():
            return linformer_attention(q, k, v, pk, pv)
    elif backend == "regla":
        gate_logits = leaf(1, H, n, D, offset=2.0)
        leaves.append(gate_logits)

        def fwd():
            return regla_attention(q, k, v, torch.sigmoid(gate_logits).clamp_min(0.14))
    elif backend == "local-attention":
        from local_attention import LocalAttention

        la = LocalAttention(window_size=w, causal=False, look_backward=1, look_forward=1,
                            autopad=True)

        def fwd():
            return la(q, k, v)
    else:
        raise SystemExit(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return leaves, fwd


def worker(backend: str, n: int, args) -> dict:
    """One case in this process: ``args.mode`` "mem" (peak memory) or "time"."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def make_step(leaves, fwd):
        grads = {}

        def step(backward: bool):
            for t in leaves:
                t.grad = None
            y = fwd()
            if backward:
                y.backward(grads.setdefault("y", torch.randn_like(y)))
            sync()

        return step

    # Load kernels and libraries on a short sequence first (twice: some allocations
    # happen on the second backward only), so one-time costs are not counted.
    warm = make_step(*_build(backend, min(n, 1024), args))
    warm(True)
    warm(True)
    del warm
    step = make_step(*_build(backend, n, args))

    if args.mode == "mem":
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(True)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _rss_kib("VmRSS")
            step(True)
            peak = (_rss_kib("VmHWM") - base) / 1024
        return dict(peak_mib=round(peak, 1))

    start, cpu_start = time.perf_counter(), time.process_time()
    step(True)  # warm-up at full size
    first = (time.perf_counter() - start) * 1e3
    first_cpu = (time.process_time() - cpu_start) * 1e3
    repeats = 1 if first > args.single_run_seconds * 1e3 else args.repeats

    def timed(backward: bool) -> tuple[float, float | None]:
        """Minimum wall-clock ms and (CPU) minimum process CPU ms over the repeats."""
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            if cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                step(backward)
                b.record()
                sync()
                best = min(best, a.elapsed_time(b))
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                step(backward)
                best = min(best, (time.perf_counter() - t0) * 1e3)
                best_cpu = min(best_cpu, (time.process_time() - c0) * 1e3)
        return best, (None if cuda else best_cpu)

    fwd_ms, fwd_cpu = timed(False)
    fwdbwd_ms, fwdbwd_cpu = (first, first_cpu) if repeats == 1 else timed(True)
    row = dict(fwd_ms=round(fwd_ms, 2), fwdbwd_ms=round(fwdbwd_ms, 2), repeats=repeats)
    if not cuda:
        row.update(fwd_cpu_ms=round(fwd_cpu, 2), fwdbwd_cpu_ms=round(fwdbwd_cpu, 2))
    return row


def _module(name: str, dim: int, heads: int, window: int, reservoir: int):
    """One attention module of the short-sequence table (the only place that names the
    modules' options)."""
    from brlgraph.nn.attention import make_attention

    if name == "brl" or name in FORCED:
        return make_attention("brl", dim, heads, window=window, reservoir_size=reservoir)
    if name == "local":
        return make_attention("local", dim, heads, window=window)
    return make_attention(name, dim, heads)


def module_worker(length: int, args) -> list[dict]:
    """All module backends at one S in this process, runs interleaved."""
    import functools

    import torch

    import brlgraph.nn.attention.brl as brl_module
    from brlgraph.ops.brl import brl_attention, select_impl

    torch.set_num_threads(args.threads or torch.get_num_threads())
    batch = args.batch if length <= 512 else MODULE_LONG_BATCH.get(length, args.batch)
    dim, heads = 128, 4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, dim, generator=g).requires_grad_()
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[: batch // 2, length - length // 4 :] = False
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    modules = {b: _module(b, dim, heads, 16, 16) for b in names}
    forced = {b: functools.partial(brl_attention, impl=i) for b, i in FORCED.items()}
    auto = brl_module.brl_attention

    def step(name: str) -> float:
        # brl-chunked: the same module, its operator forced onto the chunked path
        brl_module.brl_attention = forced.get(name, auto)
        module = modules[name]
        x.grad = None
        module.zero_grad(set_to_none=True)
        c0 = time.process_time()
        out, _ = module(x, mask)
        out.backward(torch.ones_like(out))
        return (time.process_time() - c0) * 1e3

    for name in names:  # warm-up
        step(name)
    best = dict.fromkeys(names, float("inf"))
    for _ in range(args.repeats):
        for name in names:
            best[name] = min(best[name], step(name))
    brl_module.brl_attention = auto
    q = torch.empty(batch, heads, length, dim // heads)
    return [dict(backend=name, S=length, batch=batch, fwdbwd_cpu_ms=round(best[name], 2),
                 impl=select_impl(q) if name == "brl" else FORCED.get(name))
            for name in names]


def modules_main(args) -> int:
    ss = [int(x) for x in args.ns.split(",")] if args.ns else list(MODULE_SS)
    print(f"# module level, cpu, float32, dim 128, heads 4, w 16, m 16, batch {args.batch} "
          f"(S > 512: {MODULE_LONG_BATCH}), threads {args.threads or 'default'}, "
          f"fwd+bwd process CPU ms, min of {args.repeats}")
    rows = []
    for length in ss:
        cmd = [sys.executable, __file__, "--modules-worker", str(length), "--backends",
               args.backends, "--batch", str(args.batch), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise SystemExit(f"S={length} failed: {tail}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        full = next((r["fwdbwd_cpu_ms"] for r in got if r["backend"] == "full"), None)
        for r in got:
            if full:
                r["ratio_to_full"] = round(r["fwdbwd_cpu_ms"] / full, 3)
        rows += got
        print(f"S={length:>5,} B={got[0]['batch']:>3}  " + "  ".join(
            f"{r['backend']} {r['fwdbwd_cpu_ms']:,.0f}"
            + (f" ({r['ratio_to_full']:.2f})" if full else "") for r in got), flush=True)

    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    print("\n| S (batch) | " + " | ".join(f"{b} ms" for b in names)
          + " | " + " | ".join(f"{b} / full" for b in names if b != "full") + " |")
    print("|---" * (1 + 2 * len(names) - ("full" in names)) + "|")
    for length in ss:
        sel = {r["backend"]: r for r in rows if r["S"] == length}
        cells = [f"{sel[b]['fwdbwd_cpu_ms']:,.0f}" for b in names]
        ratios = [f"{sel[b].get('ratio_to_full', float('nan')):.2f}" for b in names if b != "full"]
        print(f"| {length:,} ({sel[names[0]]['batch']}) | " + " | ".join(cells + ratios) + " |")

    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        "attention_modules_cpu.json")
    from brlgraph.bench.common import machine

    meta = {**machine(), "threads": args.threads, "repeats": args.repeats, "dim": 128, "heads": 4,
            "window": 16, "reservoir": 16, "padding": "last quarter of the tokens in half of "
            "the sequences", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "load_average": os.getloadavg()}
    from brlgraph.io import atomic_write

    with atomic_write(out) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {out}")
    return 0


def flash_keys_main(args) -> int:
    """Kernel time against keys per query, relative to 128 keys (``--flash-keys``)."""
    import torch

    from brlgraph.ops.brl.sdpa import _FLASH, _FLASH_BWD

    if _FLASH is None or _FLASH_BWD is None:
        raise SystemExit("this PyTorch has no CPU flash-attention kernel")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    g = torch.Generator().manual_seed(0)
    q = torch.randn(256, 4, 128, 32, generator=g)
    keys = (128, 80, 48, 16)
    kv = {n: (torch.randn(256, 4, n, 32, generator=g), torch.randn(256, 4, n, 32, generator=g))
          for n in keys}
    best = dict.fromkeys(keys, float("inf"))
    for _ in range(args.repeats or 5):
        for n in keys:
            k, v = kv[n]
            c0 = time.process_time()
            o, lse = _FLASH(q, k, v)
            _FLASH_BWD(torch.ones_like(o), q, k, v, o, lse, 0.0, False)
            best[n] = min(best[n], time.process_time() - c0)
    print("| keys per query | " + " | ".join(str(n) for n in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    print("| fwd+bwd CPU ms | " + " | ".join(f"{1e3 * best[n]:.1f}" for n in keys) + " |")
    print("| time / 128 keys | " + " | ".join(f"{best[n] / best[128]:.2f}" for n in keys) + " |")
    return 0


# --------------------------------------------------------------------------- driver


def _skip_reason(backend: str, n: int, args) -> str | None:
    if backend == "full" and n > args.full_max_n:
        return f"not run (n > --full-max-n={args.full_max_n}: O(n^2) time)"
    return None


def run_case(backend: str, n: int, args) -> dict:
    """Time in one fresh subprocess, peak memory in another."""
    row = dict(backend=backend, n=n, device=args.device)
    for mode in ("time", "mem"):
        env = dict(os.environ)
        if mode == "mem":
            env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # freed tensors leave the resident set
        cmd = [sys.executable, __file__, "--worker", backend, str(n), "--mode", mode,
               "--device", args.device, "--dtype", args.dtype, "--heads", str(args.heads),
               "--head-dim", str(args.head_dim), "--window", str(args.window),
               "--reservoir-size", str(args.reservoir_size), "--repeats", str(args.repeats),
               "--threads", str(args.threads),
               "--single-run-seconds", str(args.single_run_seconds)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=args.timeout)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return dict(row, fwd_ms=None, fwdbwd_ms=None, peak_mib=None,
                        note=f"failed ({mode}): {tail}")
        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return row


def _fmt(x, unit="") -> str:
    return "-" if x is None else f"{x:,.1f}{unit}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--ns", default=None, help="comma-separated sequence lengths")
    p.add_argument("--repeats", type=int, default=None, help="3 (--modules: 4)")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA)")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=None, help="32 on CPU, 64 on CUDA")
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--reservoir-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (0: torch's default). 1 by default: on a CPU shared "
                        "with other jobs, OpenMP barriers of several threads stall")
    p.add_argument("--full-max-n", type=int, default=None,
                   help="largest n for full attention (CPU 32,768; CUDA 262,144)")
    p.add_argument("--single-run-seconds", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    p.add_argument("--out", default=None, help="JSON path (default results/attention_<dev>.json)")
    p.add_argument("--merge", action="store_true",
                   help="update the cases run here in an existing JSON file, keep the rest")
    p.add_argument("--modules", action="store_true",
                   help="the short-sequence table: module level, batches of short sequences")
    p.add_argument("--batch", type=int, default=256, help="--modules: sequences per batch")
    p.add_argument("--flash-keys", action="store_true",
                   help="the CPU flash kernel's time against keys per query")
    p.add_argument("--worker", nargs=2, metavar=("BACKEND", "N"), help=argparse.SUPPRESS)
    p.add_argument("--modules-worker", type=int, metavar="S", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="time", choices=("time", "mem"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.modules_worker:
        print(json.dumps(module_worker(args.modules_worker, args)))
        return 0
    if args.flash_keys:
        return flash_keys_main(args)
    if args.modules:
        if args.backends == ",".join(BACKENDS):
            args.backends = ",".join(MODULE_BACKENDS)
        args.repeats = args.repeats or 4
        return modules_main(args)
    args.repeats = args.repeats or 3
    cuda = args.device == "cuda"
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.head_dim = args.head_dim or (64 if cuda else 32)
    args.full_max_n = args.full_max_n or (2**18 if cuda else 2**15)

    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args)))
        return 0

    if cuda:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise SystemExit(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    ns = [int(x) for x in args.ns.split(",")] if args.ns else list(CUDA_NS if cuda else CPU_NS)

    from brlgraph.bench.common import machine_text

    machine = machine_text()
    print(f"# {args.device} ({machine}), {args.dtype}, batch 1, heads {args.heads}, head_dim "
          f"{args.head_dim}, w {args.window}, m {args.reservoir_size}, threads "
          f"{args.threads or 'default'}; min of {args.repeats}")
    print(f"{'backend':<16}{'n':>9}{'fwd ms':>12}{'fwd+bwd ms':>13}{'peak MiB':>11}"
          f"{'cpu fwd ms':>13}{'cpu f+b ms':>13}  note")
    rows = []
    for n in ns:
        for b in backends:
            reason = _skip_reason(b, n, args)
            row = (dict(backend=b, n=n, device=args.device, fwd_ms=None, fwdbwd_ms=None,
                        peak_mib=None, note=reason) if reason else run_case(b, n, args))
            rows.append(row)
            print(f"{b:<16}{n:>9,}{_fmt(row['fwd_ms']):>12}{_fmt(row['fwdbwd_ms']):>13}"
                  f"{_fmt(row['peak_mib']):>11}{_fmt(row.get('fwd_cpu_ms')):>13}"
                  f"{_fmt(row.get('fwdbwd_cpu_ms')):>13}  {row.get('note') or ''}", flush=True)

    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"attention_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = dict(dtype=args.dtype, heads=args.heads, head_dim=args.head_dim, window=args.window,
                 reservoir_size=args.reservoir_size, threads=args.threads, machine=machine)
    rows = [dict(r, **setup) for r in rows]
    if args.merge and out.exists():
        # Replace the re-measured (backend, n) cases, keep the others.
        fresh = {(r["backend"], r["n"]) for r in rows}
        old = [r for r in json.loads(out.read_text()) if (r["backend"], r["n"]) not in fresh]
        rows = sorted(old + rows, key=lambda r: (r["n"], BACKENDS.index(r["backend"])))
    from brlgraph.io import atomic_write

    with atomic_write(out) as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

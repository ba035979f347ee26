"""Benchmark of the hop-ordered sequence builder (spec 4.1) and the node orders (4.2).

Measures, on this machine:

1. all DBLP authors (4,057) at S = 256 (needs ``BRLGRAPH_DATA`` with ``hgb/DBLP.zip``
   and ``brlgraph.data.load_hgb``; skipped otherwise);
2. 100,000 targets of a random 1,000,000-node graph of average degree ~10 at S = 256;
3. RCM / BFS orders of the 1,000,000-node graph.

Run: ``python benchmarks/sequences.py [--nodes 1000000 --targets 100000 --seq-len 256]``.
Targets: (1) under 2 s, (2) under 60 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from brlgraph.graph import GraphView
from brlgraph.sequences import bandwidth, bfs_order, hop_ordered_sequences, rcm_order


def random_graph(num_nodes: int, avg_degree: float, seed: int = 0) -> GraphView:
    """An Erdos-Renyi-like graph: num_nodes * avg_degree / 2 random undirected edges."""
    rng = np.random.default_rng(seed)
    m = int(num_nodes * avg_degree / 2)
    ei = torch.from_numpy(rng.integers(0, num_nodes, size=(2, m), dtype=np.int64))
    return GraphView.from_edge_index(ei, num_nodes)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def timed_runs(repeats: int, fn, *args, **kwargs):
    """Result and wall times of ``repeats`` runs (the machine is shared: report them all)."""
    times = []
    for _ in range(repeats):
        out, t = timed(fn, *args, **kwargs)
        times.append(t)
    return out, times


def fmt(times: list[float]) -> str:
    return f"best {min(times):.2f} s, runs " + " / ".join(f"{t:.2f}" for t in times)


def describe(seqs) -> str:
    filled = seqs.mask.sum(1).float()
    return (f"mean tokens {filled.mean():.1f}, full rows {(filled == seqs.seq_len).float().mean():.1%}, "
            f"max hop {int(seqs.hops.max())}")


def bench_dblp(seq_len: int) -> None:
    """All target nodes of DBLP (authors)."""
    try:
        from brlgraph.data import load_hgb

        data = load_hgb("DBLP")
    except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not fail
        print(f"DBLP: skipped ({type(e).__name__}: {e})")
        return
    graph, t_view = timed(GraphView.from_data, data)
    target = data.target_type
    n_t = graph.num_nodes_dict[target]
    seqs, times = timed_runs(3, hop_ordered_sequences, graph, None, seq_len, node_type=target, seed=0)
    print(f"DBLP: {graph.num_nodes} nodes, {graph.num_edges} directed edges, view {t_view:.2f} s")
    print(f"DBLP: {n_t} {target} targets at S = {seq_len}: {fmt(times)} ({describe(seqs)})")


def bench_synthetic(num_nodes: int, num_targets: int, seq_len: int, degree: float) -> GraphView:
    graph, t_build = timed(random_graph, num_nodes, degree)
    print(f"synthetic: {num_nodes} nodes, {graph.num_edges} directed edges, built in {t_build:.1f} s")
    targets = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(0))[:num_targets]
    seqs, t = timed(hop_ordered_sequences, graph, targets, seq_len, seed=0)
    print(f"synthetic: {num_targets} targets at S = {seq_len}: {t:.1f} s "
          f"({num_targets / t:,.0f} targets/s; {describe(seqs)})")
    return graph


def bench_orders(graph: GraphView) -> None:
    for name, fn in (("rcm", rcm_order), ("bfs", bfs_order)):
        order, t = timed(fn, graph)
        print(f"order {name}: {t:.1f} s, bandwidth {bandwidth(graph, order):,} "
              f"(identity: {bandwidth(graph, torch.arange(graph.num_nodes)):,})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--targets", type=int, default=100_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--degree", type=float, default=10.0)
    p.add_argument("--skip-orders", action="store_true")
    args = p.parse_args()
    bench_dblp(args.seq_len)
    graph = bench_synthetic(args.nodes, args.targets, args.seq_len, args.degree)
    if not args.skip_orders:
        bench_orders(graph)


if __name__ == "__main__":
    main()

"""PyG conv layers side by side: GCNConv, SAGEConv, TransformerConv, GPSConv, BRLConv.

Every layer sits in the same model, ``Linear(F, d) -> 2 x [conv(d, d) -> ReLU ->
dropout] -> Linear(d, C)``, at the same width ``d`` (4 heads where a layer has
heads), trained full-batch with the same optimiser for the same number of steps on the
same graphs. Reported: test accuracy at the best validation accuracy (checked every 10
steps), and the median milliseconds of a training step (forward, backward, Adam).

Graphs (fixed seeds):

- ``sbm``: a 1,000-node stochastic block model, 4 blocks of 250, edge probability
  0.02 within and 0.002 across blocks (mean degree 6.5); features are a weak class
  signal in noise (a feature-only classifier is far from perfect), so a layer has to
  pool many same-block neighbours.
- ``chains``: a long-range graph, 125 undirected paths of 8 nodes. The label of every
  node is the class of its path's first node, the only node whose features carry it:
  a node at distance k from the head needs a receptive field of k hops (up to 7).

BRLConv (seq_len 32, window 8, 8 reservoir tokens, max_hops 2 by default) is run with
its sequences built once before training (``BRLConv.sequences``, the documented
full-batch use; the time to build them is reported apart); further rows give it four
hops per layer, and rebuild the sequences in every step.

    OMP_NUM_THREADS=1 python benchmarks/pyg_layers.py [--steps 200] [--seeds 0 1 2 3 4]
        [--out FILE.json]  (default benchmarks/results/pyg_layers.json)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GPSConv, SAGEConv, TransformerConv
from torch_geometric.utils import stochastic_blockmodel_graph, to_undirected

from brlgraph.bench.common import machine_text
from brlgraph.io import atomic_write
from brlgraph.nn import BRLConv

LAYERS = ("GCNConv", "SAGEConv", "TransformerConv", "GPSConv", "BRLConv", "BRLConv (max_hops=4)",
          "BRLConv (sequences each step)")


def sbm_graph(seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # stochastic_blockmodel_graph draws from the global generator
    sizes, classes, features = [250] * 4, 4, 32
    probs = torch.full((classes, classes), 0.002).fill_diagonal_(0.02)
    edge_index = stochastic_blockmodel_graph(sizes, probs)
    y = torch.arange(classes).repeat_interleave(torch.tensor(sizes))
    centres = torch.randn(classes, features, generator=g)
    x = 0.25 * centres[y] + torch.randn(y.numel(), features, generator=g)
    return dict(x=x, edge_index=edge_index, y=y, **splits(y.numel(), g))


def chains_graph(seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    chains, length, classes, features = 125, 8, 4, 32
    n = chains * length
    node = torch.arange(n).view(chains, length)
    edge_index = to_undirected(torch.stack([node[:, :-1].reshape(-1), node[:, 1:].reshape(-1)]))
    label = torch.randint(0, classes, (chains,), generator=g)
    y = label.repeat_interleave(length)
    centres = 3.0 * torch.randn(classes, features, generator=g)
    x = torch.randn(n, features, generator=g)
    x[node[:, 0]] += centres[label]  # only the head knows the class
    return dict(x=x, edge_index=edge_index, y=y, **splits(n, g))


def splits(n: int, g: torch.Generator) -> dict[str, Tensor]:
    """20 % train, 20 % validation, 60 % test."""
    perm = torch.randperm(n, generator=g)
    masks = {}
    for name, (lo, hi) in {"train": (0, 0.2), "val": (0.2, 0.4), "test": (0.4, 1.0)}.items():
        m = torch.zeros(n, dtype=torch.bool)
        m[perm[int(lo * n):int(hi * n)]] = True
        masks[f"{name}_mask"] = m
    return masks


GRAPHS = {"sbm": sbm_graph, "chains": chains_graph}


def make_conv(name: str, width: int, heads: int) -> nn.Module:
    if name.startswith("BRLConv"):
        max_hops = 4 if "max_hops=4" in name else 2
        return BRLConv(width, width, heads=heads, seq_len=32, window=8, reservoir_size=8,
                       max_hops=max_hops)
    if name == "GCNConv":
        return GCNConv(width, width)
    if name == "SAGEConv":
        return SAGEConv(width, width)
    if name == "TransformerConv":
        return TransformerConv(width, width // heads, heads=heads)
    return GPSConv(width, GCNConv(width, width), heads=heads)


class Model(nn.Module):
    """Linear -> 2 x [conv -> ReLU -> dropout] -> Linear."""

    def __init__(self, layer: str, in_dim: int, classes: int, width: int, heads: int,
                 dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.convs = nn.ModuleList(make_conv(layer, width, heads) for _ in range(2))
        self.out = nn.Linear(width, classes)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor, sequences=None) -> Tensor:
        h = self.inp(x)
        for conv in self.convs:
            h = conv(h, edge_index, sequences) if sequences is not None else conv(h, edge_index)
            h = nn.functional.dropout(h.relu(), self.dropout, self.training)
        return self.out(h)


def run(layer: str, data: dict[str, Tensor], seed: int, steps: int, width: int, heads: int,
        lr: float, dropout: float) -> dict[str, float]:
    torch.manual_seed(seed)
    classes = int(data["y"].max()) + 1
    model = Model(layer, data["x"].shape[1], classes, width, heads, dropout)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    x, ei, y = data["x"], data["edge_index"], data["y"]
    sequences, build_ms = None, 0.0
    if layer.startswith("BRLConv") and "each step" not in layer:  # both layers share them
        t0 = time.perf_counter()
        sequences = model.convs[0].sequences(ei, x.shape[0])
        build_ms = 1e3 * (time.perf_counter() - t0)
    times, best_val, test_at_best = [], -1.0, 0.0
    for step in range(1, steps + 1):
        model.train()
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x, ei, sequences)[data["train_mask"]],
                                           y[data["train_mask"]])
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        if step % 10 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                pred = model(x, ei, sequences).argmax(1)
            val = (pred == y)[data["val_mask"]].float().mean().item()
            if val > best_val:
                best_val, test_at_best = val, (pred == y)[data["test_mask"]].float().mean().item()
    return {"test_acc": test_at_best, "val_acc": best_val,
            "ms_per_step": 1e3 * statistics.median(times[1:]), "sequence_build_ms": build_ms}


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        "# PyG layers side by side",
        "",
        f"Machine: {result['machine']}; command: `{result['command']}`.",
        f"Model: Linear -> 2 x [conv -> ReLU -> dropout {cfg['dropout']}] -> Linear, width "
        f"{cfg['width']}, {cfg['heads']} heads; Adam lr {cfg['lr']}, weight decay 5e-4, "
        f"{cfg['steps']} full-batch steps; seeds {cfg['seeds']} (mean +- std). Test accuracy "
        "at the best validation accuracy; ms per training step is the median over steps "
        "(then the mean over seeds). BRLConv: seq_len 32, window 8, reservoir 8, max_hops 2 "
        "unless the row says otherwise; its sequences are built once before training "
        "except in the last row.",
        "",
    ]
    for graph, rows in result["graphs"].items():
        lines += [f"## {graph}", "", "| layer | test accuracy | ms / step |", "|---|---|---|"]
        for layer in LAYERS:
            r = rows[layer]
            lines.append(f"| {layer} | {r['test_acc_mean']:.3f} +- {r['test_acc_std']:.3f} | "
                         f"{r['ms_per_step_mean']:.1f} |")
        build = rows["BRLConv"]["sequence_build_ms_mean"]
        lines += ["", f"BRLConv's sequences, built once before training: {build:.1f} ms.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--graphs", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "pyg_layers.json"),
                    help="JSON file; a .md table is written beside it")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {
        "machine": f"{machine_text()}, {torch.get_num_threads()} torch thread(s)",
        "command": "OMP_NUM_THREADS=1 python benchmarks/pyg_layers.py "
                   + " ".join(f"--{k} {v if not isinstance(v, list) else ' '.join(map(str, v))}"
                              for k, v in vars(args).items() if k != "out" and v is not None),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "graphs": {},
    }
    for graph in args.graphs:
        rows = {}
        for layer in LAYERS:
            runs = [run(layer, GRAPHS[graph](seed), seed, args.steps, args.width, args.heads,
                        args.lr, args.dropout) for seed in args.seeds]
            row = {"runs": runs}
            for key in ("test_acc", "ms_per_step", "sequence_build_ms"):
                vals = [r[key] for r in runs]
                row[f"{key}_mean"] = statistics.fmean(vals)
                row[f"{key}_std"] = statistics.pstdev(vals)
            rows[layer] = row
            print(f"{graph:7s} {layer:32s} test acc {row['test_acc_mean']:.3f} "
                  f"+- {row['test_acc_std']:.3f}   {row['ms_per_step_mean']:7.1f} ms/step", flush=True)
        result["graphs"][graph] = rows
    out = Path(args.out)
    with atomic_write(out) as f:
        json.dump(result, f, indent=1)
    with atomic_write(out.with_suffix(".md")) as f:
        f.write(markdown(result) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

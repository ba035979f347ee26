r"""Sensitivity of trained models to far nodes (Topping et al., ICLR 2022).

For a trained model with input states :math:`x_u` (the node's input projection,
before any message passing or attention) and output states :math:`h_v` (the state
the classifier reads), the sensitivity of v to u is the mean absolute entry of the
Jacobian block

.. math::
    s(v, u) = \frac{1}{d^2} \sum_{k, j} \Big| \frac{\partial h_{v,k}}{\partial x_{u,j}} \Big|,

computed with ``torch.autograd`` (one vector-Jacobian product per output coordinate). It is averaged over target nodes v and over every node u
at shortest-path distance d(u, v) = d; a node the model never reads counts as 0.
The table also gives each distance's share of the total sensitivity.

Two settings:

- ``dblp``: HGB DBLP (authors), the shipped config without its GNN pre-encoder and
  path tokens, so every path from u to v runs through the attention; S = 256 tokens
  per target. ``brl``, ``local`` and ``full`` attention, and ``gcn``: the same
  pipeline with one token per target (S = 1) after a 3-layer GCN pre-encoder, so
  every path runs through message passing. Trained by the project's training loop.
- ``path``: a path of 2,048 nodes; one node, at a random place, is the source and
  carries one of 4 classes, every other node carries nothing; every node must
  output the source's class. ``brl``, ``local``, ``full``: brlgraph's graph-as-one-sequence
  model (:class:`~brlgraph.nn.brlformer.BRLGraphSequenceModel`, the nodes in reverse
  Cuthill-McKee order, which on a path is the path itself, so that the distance
  between two positions of the sequence is their distance in the graph); ``gcn``: 8
  GCN layers. Trained on fresh draws of the source.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from brlgraph.bench import common

SETTINGS = ("dblp", "path")
MODELS = ("brl", "local", "full", "gcn")


# ----------------------------------------------------------------------------- Jacobians
def abs_jacobian(outputs: Tensor, inputs: Tensor) -> Tensor:
    """:math:`\\sum_k |\\partial (\\sum_t o_{t,k}) / \\partial x|` for ``outputs`` [T, d]:
    one backward pass per output coordinate k (BRL-Attention's fused backward has no
    batching rule for ``is_grads_batched``). Where every input row reaches a single
    output row (sequences that never mix), this is each row's own Jacobian; returns
    the shape of ``inputs``."""
    total = torch.zeros_like(inputs)
    d = outputs.shape[-1]
    for k in range(d):
        (grad,) = torch.autograd.grad(outputs[..., k].sum(), inputs, retain_graph=True)
        total += grad.abs()
    return total


def jacobian_rows(outputs: Tensor, inputs: Tensor) -> Tensor:
    """For one target's state ``outputs`` [d] and ``inputs`` [M, d_in]: [M] holding
    :math:`\\sum_{k,j} |\\partial o_k / \\partial x_{m,j}| / (d \\cdot d_{in})`."""
    return abs_jacobian(outputs.unsqueeze(0), inputs).sum(-1) / (outputs.shape[-1] * inputs.shape[-1])


def sequence_sensitivity(former, graph, seqs, batch: int = 64) -> Tensor:
    """[T, S] sensitivity of each target's output state to each token of its own
    sequence, for a node-as-sequence model without GNN (sequences never mix, so all
    targets of a batch are differentiated at once)."""
    from brlgraph.sequences import NodeSequences

    former.eval()
    node_states = former.node_states(graph).detach()  # input projection of every node
    out = torch.zeros(seqs.ids.shape, dtype=torch.float32)
    for start in range(0, len(seqs), batch):
        part = seqs[start:start + batch]
        t, s = part.ids.shape
        # one row of inputs per token, so each token's gradient stays its own
        x = node_states[part.ids.clamp(min=0).reshape(-1)].clone().requires_grad_(True)
        own = NodeSequences(torch.arange(t * s).view(t, s), part.hops, part.node_types, part.mask,
                            part.seed, part.max_hops)
        h, _ = former.blocks(former.tokens(graph, own, node_states=x), part.mask)
        state = h[:, 0]  # [T, d]
        d = state.shape[-1]
        sens = abs_jacobian(state, x).sum(-1) / (d * x.shape[-1])
        out[start:start + t] = (sens.view(t, s) * part.mask).detach()
    return out


def distances_from(graph, targets: Sequence[int], max_distance: int) -> np.ndarray:
    """[T, N] shortest-path distances (hops, undirected) from each target, -1 beyond
    ``max_distance`` or unreachable."""
    indptr, indices = graph.indptr, graph.indices
    out = np.full((len(targets), graph.num_nodes), -1, dtype=np.int64)
    for row, v in enumerate(targets):
        frontier = np.array([v])
        out[row, v] = 0
        for d in range(1, max_distance + 1):
            nbrs = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in frontier]) if len(frontier) else frontier
            nbrs = np.unique(nbrs)
            nbrs = nbrs[out[row, nbrs] < 0]
            if not len(nbrs):
                break
            out[row, nbrs] = d
            frontier = nbrs
    return out


def bucket(sens: np.ndarray, dist: np.ndarray, max_distance: int) -> dict[int, dict[str, float]]:
    """Mean sensitivity per distance 1..max_distance over all (target, node) pairs at
    that distance (``sens`` and ``dist``: [T, N], sens 0 where the model does not read
    the node), and each distance's share of the targets' total sensitivity."""
    rows = {}
    total = sum(float(sens[dist == d].sum()) for d in range(1, max_distance + 1))
    for d in range(1, max_distance + 1):
        at = dist == d
        if at.any():
            rows[d] = {"mean": float(sens[at].mean()), "share": float(sens[at].sum()) / total if total > 0 else 0.0,
                       "pairs": int(at.sum()), "nonzero": float((sens[at] > 0).mean())}
    return rows


# ----------------------------------------------------------------------------- DBLP
@dataclass
class SensitivityBudget:
    dblp_seq_len: int = 256
    dblp_targets: int = 200
    dblp_max_distance: int = 4
    dblp_gcn_layers: int = 3
    path_nodes: int = 2048
    path_classes: int = 4
    path_hidden: int = 32
    path_layers: int = 2
    path_heads: int = 4
    path_window: int = 16
    path_reservoir: int = 8
    path_gcn_layers: int = 8
    path_steps: int = 400
    path_batch: int = 4
    path_targets: int = 32
    lr: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dblp_overrides(model: str, budget: SensitivityBudget, seed: int) -> list[str]:
    """``--set`` overrides of the DBLP model ``model`` (see the module docstring)."""
    common_keys = ["model.path_tokens=0", "sequences.eval_draws=1", f"seed={seed}", f"data.split_seed={seed}"]
    if model == "gcn":
        return [*common_keys, "model.attention=full", f"{common.config_key('seq_len')}=1", "model.gnn=gcn",
                f"model.gnn_layers={budget.dblp_gcn_layers}"]
    return [*common_keys, f"model.attention={model}", "model.gnn_layers=0",
            f"{common.config_key('seq_len')}={budget.dblp_seq_len}"]


def dblp_cell(model: str, budget: SensitivityBudget, seed: int, workdir: Path, progress: bool,
              deadline: common.Deadline | None = None) -> dict[str, Any]:
    """Train ``model`` on DBLP with the project's loop, then its sensitivity profile."""
    from brlgraph.sequences import hop_ordered_sequences
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import build_task, load_dataset, seed_everything
    from brlgraph.train.loop import fit

    config = build_config("DBLP", None, dblp_overrides(model, budget, seed))
    seed_everything(config.seed, config.train.deterministic)
    data = load_dataset(config)
    task = build_task(data, config)
    workdir.mkdir(parents=True, exist_ok=True)

    def stop_at_deadline(epoch: int, metrics: dict) -> None:  # after the epoch's checkpoint
        if deadline is not None and epoch < config.train.epochs:
            deadline.check()

    summary = fit(task, config, workdir / f"dblp-{model}-seed{seed}.pt", resume=True, progress=progress,
                  desc=f"DBLP {model}", on_epoch_end=stop_at_deadline)
    test = task.evaluate("test")
    torch.use_deterministic_algorithms(False)  # autograd's batched gradients have no deterministic kernel
    former, graph = task.model, task.graph
    rng = np.random.default_rng(seed)
    test_rows = task.rows["test"].numpy()
    pick = np.sort(rng.choice(test_rows, size=min(budget.dblp_targets, len(test_rows)), replace=False))
    offset = graph.offsets[data.target_type]
    targets = pick + offset
    dist = distances_from(graph, targets, budget.dblp_max_distance)
    sens = np.zeros(dist.shape, dtype=np.float64)
    t0 = time.perf_counter()
    if model == "gcn":
        sens[:] = _whole_graph_sensitivity_dblp(former, graph, targets)
    else:
        seqs = hop_ordered_sequences(graph, torch.from_numpy(targets), common.config_value(config, "seq_len"),
                                     max_hops=config.sequences.max_hops, seed=seed)
        per_token = sequence_sensitivity(former, graph, seqs).numpy()
        for row in range(len(targets)):
            ids = seqs.ids[row].numpy()
            valid = ids >= 0
            np.add.at(sens[row], ids[valid], per_token[row][valid])
    return {"metrics": {"test_micro_f1": test["micro_f1"], "test_macro_f1": test["macro_f1"]},
            "epochs": summary["epochs"], "train_seconds": round(summary["seconds"], 1),
            "jacobian_seconds": round(time.perf_counter() - t0, 1),
            "profile": bucket(sens, dist, budget.dblp_max_distance), "targets": len(targets)}


def _whole_graph_sensitivity_dblp(former, graph, targets: np.ndarray) -> np.ndarray:
    """[T, N] for the S = 1 model: the GCN pre-encoder carries everything, so each
    target's state is differentiated against the input projection of every node."""
    from brlgraph.sequences import hop_ordered_sequences

    former.eval()
    x = former.encoder(graph).detach().requires_grad_(True)
    h = former.gnn(x, graph)
    seqs = hop_ordered_sequences(graph, torch.from_numpy(targets), 1, max_hops=0)
    z = former.tokens(graph, seqs, node_states=h)
    out, _ = former.blocks(z, seqs.mask)
    state = out[:, 0]
    rows = [jacobian_rows(state[i], x).detach().numpy() for i in range(len(targets))]
    return np.stack(rows)


# ----------------------------------------------------------------------------- the path
def path_edges(n: int) -> Tensor:
    i = torch.arange(n - 1)
    return torch.stack([i, i + 1])


def source_batch(n: int, classes: int, batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(features [B, n, 1 + classes], labels [B]): a source flag and its one-hot class at
    one random node; every node's label is the source's class."""
    src = torch.randint(0, n, (batch,), generator=gen)
    cls = torch.randint(0, classes, (batch,), generator=gen)
    x = torch.zeros(batch, n, 1 + classes)
    rows = torch.arange(batch)
    x[rows, src, 0] = 1.0
    x[rows, src, 1 + cls] = 1.0
    return x, cls


class PathGCN(nn.Module):
    """Input projection, L GCN layers (h <- LN(h + ReLU(GCN(h)))), linear readout per node."""

    def __init__(self, features: int, hidden: int, layers: int, classes: int) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.proj = nn.Linear(features, hidden)
        self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Linear(hidden, classes)

    def project(self, x: Tensor) -> Tensor:
        return self.proj(x)

    def states(self, h: Tensor, edge_index: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(h + torch.relu(conv(h, edge_index)))
        return h

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.head(self.states(self.project(x), edge_index))


class PathSequence(nn.Module):
    """brlgraph's graph-as-one-sequence model on the path (one node type, features =
    source flag and class), with the node order computed once."""

    def __init__(self, attention: str, features: int, budget: SensitivityBudget, order: Tensor) -> None:
        super().__init__()
        from brlgraph.nn.brlformer import BRLGraphSequenceModel

        self.model = BRLGraphSequenceModel([features], [budget.path_nodes], budget.path_classes,
                                           layers=budget.path_layers, heads=budget.path_heads,
                                           attention=attention, window=budget.path_window, dropout=0.0,
                                           gnn_layers=0, **common.model_kwargs(budget.path_hidden,
                                                                               budget.path_reservoir))
        self.register_buffer("order", order)

    def _graph(self, x: Tensor, edge_index: Tensor):
        GraphView = common.graph_view_class()
        return GraphView.from_edge_index(edge_index, x.shape[0], x=x)

    def project(self, x: Tensor) -> Tensor:
        return self.model.encoder(self._graph(x, _path_cache(x.shape[0])))

    def states(self, h: Tensor, edge_index: Tensor) -> Tensor:
        from brlgraph.sequences import inverse_permutation

        out, _ = self.model.blocks(h[self.order].unsqueeze(0))
        return out[0][inverse_permutation(self.order)]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.model.readout(self.states(self.project(x), edge_index))


_PATH: dict[int, Tensor] = {}


def _path_cache(n: int) -> Tensor:
    if n not in _PATH:
        _PATH[n] = path_edges(n)
    return _PATH[n]


def path_cell(model: str, budget: SensitivityBudget, seed: int, progress: bool) -> dict[str, Any]:
    """Train ``model`` on fresh draws of the source, then its sensitivity profile on one
    test draw, for targets spread evenly along the path."""
    from brlgraph.sequences import node_order

    torch.manual_seed(seed)
    n, c = budget.path_nodes, budget.path_classes
    edges = _path_cache(n)
    GraphView = common.graph_view_class()
    graph = GraphView.from_edge_index(edges, n)
    net: nn.Module = (PathGCN(1 + c, budget.path_hidden, budget.path_gcn_layers, c) if model == "gcn"
                      else PathSequence(model, 1 + c, budget, node_order(graph, "rcm")))
    optimizer = torch.optim.Adam(net.parameters(), lr=budget.lr)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    recent: list[float] = []
    bar = common.progress(range(budget.path_steps), budget.path_steps, f"path {model}", progress)
    net.train()
    for _ in bar:
        x, y = source_batch(n, c, budget.path_batch, gen)
        loss = 0.0
        correct = 0.0
        for b in range(len(y)):
            logits = net(x[b], edges)
            loss = loss + nn.functional.cross_entropy(logits, y[b].expand(n))
            correct += float((logits.argmax(-1) == y[b]).float().mean())
        loss = loss / len(y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        recent = (recent + [correct / len(y)])[-25:]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{float(loss):.3f}", acc=f"{np.mean(recent):.3f}")
    train_seconds = time.perf_counter() - t0
    net.eval()
    test_gen = torch.Generator().manual_seed(1_000_003 + seed)
    with torch.no_grad():
        accs = []
        for _ in range(8):
            x, y = source_batch(n, c, 1, test_gen)
            accs.append(float((net(x[0], edges).argmax(-1) == y[0]).float().mean()))
    # sensitivity on one test draw, targets spread evenly along the path
    x, _ = source_batch(n, c, 1, test_gen)
    targets = np.linspace(0, n, budget.path_targets, endpoint=False).astype(np.int64)
    t1 = time.perf_counter()
    h0 = net.project(x[0]).detach().requires_grad_(True)
    states = net.states(h0, edges)
    sens = np.stack([jacobian_rows(states[v], h0).detach().numpy() for v in targets])
    max_d = n - 1
    dist = distances_from(graph, targets, max_d)
    return {"metrics": {"test_accuracy": float(np.mean(accs))}, "train_seconds": round(train_seconds, 1),
            "jacobian_seconds": round(time.perf_counter() - t1, 1), "targets": len(targets),
            "profile": bucket(sens, dist, max_d)}


# ----------------------------------------------------------------------------- the sweep
def run_sensitivity(out: str | Path, settings: Sequence[str] = SETTINGS, models: Sequence[str] = MODELS,
                    seeds: Sequence[int] = (1,), budget: SensitivityBudget | None = None,
                    progress: bool = True, log: Callable[[str], None] | None = None,
                    command: str = "", deadline: common.Deadline | None = None) -> pd.DataFrame:
    """Every (setting, model, seed) not yet in ``out``/sensitivity.jsonl, then the
    table and plot of all finished cells (also when ``deadline`` stops the sweep)."""
    log = log or common._stderr
    budget = budget or SensitivityBudget()
    common.check_choices("sensitivity setting", settings, SETTINGS)
    common.check_choices("model", models, MODELS)
    out = Path(out)
    store = common.ResultStore(out / "sensitivity.jsonl", ("setting", "model", "seed"))
    try:
        for setting in settings:
            for seed in seeds:
                for m in models:
                    if store.get(setting=setting, model=m, seed=seed) is not None:
                        continue
                    if deadline is not None:
                        deadline.check()
                    if setting == "dblp":
                        record = dblp_cell(m, budget, seed, out / "checkpoints", progress, deadline)
                    else:
                        record = path_cell(m, budget, seed, progress)
                    record["profile"] = {str(k): v for k, v in record["profile"].items()}
                    store.add({"setting": setting, "model": m, "seed": seed, "budget": budget.to_dict(),
                               **record})
                    log(f"sensitivity {setting} {m} seed {seed}: {record['metrics']}")
    finally:
        frame = sensitivity_table(store.records(), out)
        plot_sensitivity(store.records(), out, command or "brlgraph bench sensitivity", log)
    return frame


def _profile(records: list[dict], setting: str, model: str, key: str) -> dict[int, float]:
    cells = [r for r in records if r["setting"] == setting and r["model"] == model]
    if not cells:
        return {}
    ds = sorted({int(d) for r in cells for d in r["profile"]})
    return {d: float(np.mean([r["profile"][str(d)][key] for r in cells if str(d) in r["profile"]])) for d in ds}


#: distances listed in the path's table (every distance is in the plot)
PATH_TABLE_DISTANCES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2047)


def sensitivity_table(records: list[dict], out: Path) -> pd.DataFrame:
    """``sensitivity``: per setting and model, the mean sensitivity at each distance
    (DBLP: every distance; path: powers of two) and the share of the total beyond the
    first distances (DBLP: d >= 3; path: d > 32, beyond a window of 16 over 2 layers)."""
    frames = []
    for setting, far in (("dblp", 3), ("path", 33)):
        models = [m for m in MODELS if any(r["setting"] == setting and r["model"] == m for r in records)]
        if not models:
            continue
        dists = sorted({int(d) for r in records if r["setting"] == setting for d in r["profile"]})
        shown = dists if setting == "dblp" else [d for d in PATH_TABLE_DISTANCES if d in dists]
        rows = {}
        for m in models:
            mean, share = _profile(records, setting, m, "mean"), _profile(records, setting, m, "share")
            metrics = [r["metrics"] for r in records if r["setting"] == setting and r["model"] == m]
            score_key = "test_micro_f1" if setting == "dblp" else "test_accuracy"
            row = {f"d={d}": f"{mean[d]:.2e}" for d in shown if d in mean}
            row[f"share at d>={far}"] = f"{sum(v for d, v in share.items() if d >= far):.3f}"
            row["test score"] = common.mean_std_text([x[score_key] for x in metrics], 2, 100)
            rows[f"{setting} / {m}"] = row
        frames.append(pd.DataFrame.from_dict(rows, orient="index"))
    frame = pd.concat(frames) if frames else pd.DataFrame()
    frame = frame.fillna("")
    frame.index.name = "setting / model"
    common.write_table(out, "sensitivity", frame)
    return frame


def plot_sensitivity(records: list[dict], out: Path, command: str,
                     log: Callable[[str], None] | None = None) -> Path | None:
    """``sensitivity.png``: mean sensitivity against distance, DBLP and the path."""
    plt = common.plotting(log)
    if plt is None or not records:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"brl": "C0", "local": "C1", "full": "C2", "gcn": "C3"}
    for ax, setting, title in ((axes[0], "dblp", "DBLP (authors)"), (axes[1], "path", "path graph")):
        for m in MODELS:
            prof = _profile(records, setting, m, "mean")
            pts = [(d, v) for d, v in sorted(prof.items()) if v > 0]
            if pts:
                ax.plot(*zip(*pts, strict=True), "-o" if setting == "dblp" else "-", color=colors[m],
                        label=m, markersize=4)
        ax.set_yscale("log")
        if setting == "path":
            ax.set_xscale("log", base=2)
        ax.set_xlabel("shortest-path distance d(u, v)")
        ax.set_ylabel("mean |dh_v / dx_u|")
        ax.set_title(f"sensitivity: {title}")
        ax.grid(alpha=0.3)
        common.legend(ax, fontsize=7)
    return common.save_figure(fig, out / "sensitivity.png", command)

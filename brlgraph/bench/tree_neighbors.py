"""Tree-NeighborsMatch (Alon & Yahav, ICLR 2021): over-squashing on a binary tree.

The problem of "On the Bottleneck of Graph Neural Networks and its Practical
Implications", section 4.1. An example of depth r is a complete binary tree of depth
r, its edges directed towards the root:

- leaf i (left to right, i = 0..K-1, K = 2^r) carries the key i + 1 and a label
  ``perm[i]``, ``perm`` a permutation of 1..K;
- the root carries a key k in 1..K (and label 0); the other nodes carry (0, 0);
- the answer is the label of the leaf whose key is k, ``perm[k - 1]``: one of K
  classes (K + 1 outputs, class 0 is never the answer, as in the paper's model).

Every node of the tree is numbered in pre-order, as in the authors' generator (root
0, then the left subtree, then the right one). For each sampled permutation, every
key gives one example, so each label occurs equally often; the examples are split
80/20 (stratified by label) into training and test sets. Number of permutations:
all 4! = 24 at r = 2, 1,000 distinct ones at r = 3, and min(1000, 32000 / K) at
r >= 4, so 96, 8,000, 16,000 and then 32,000 examples (``max_examples`` lowers the
last). docs/oversquashing.md says where this matches the authors' code and where not.

Models (same width and training budget for all):

- ``gcn``, ``gin``, ``gat``: torch-geometric layers, r + 1 of them, each followed by
  ReLU, a residual connection and LayerNorm, key and label embeddings summed at the
  input, a linear readout of the root (the paper's ``GraphModel``);
- ``brlconv``: the same stack with :class:`~brlgraph.nn.BRLConv` layers;
- ``brl``, ``local``, ``full``: brlgraph's node-as-sequence transformer
  (:class:`~brlgraph.nn.BRLFormer`): the root's hop-ordered sequence of the whole tree
  (S = 2^(r+1) - 1 tokens, the leaves last), its key and label embeddings summed as
  node states, a readout of the root token.

Training as in the paper: Adam at lr 1e-3, learning rate halved when the training
accuracy stops improving (``ReduceLROnPlateau``), stopped early on training accuracy
(or at 1.0), all counted in rounds of at least 100 steps (the paper's evaluations);
training accuracy is the running accuracy of a round's passes, test accuracy is
measured after each round, both reported at the round of best training accuracy.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from brlgraph.bench import common
from brlgraph.errors import ConfigError
from brlgraph.io import atomic_torch_save

MP_MODELS = ("gcn", "gin", "gat", "brlconv")
SEQUENCE_MODELS = ("brl", "local", "full")
TREE_MODELS = ("gcn", "gin", "gat", "brl", "local", "full", "brlconv")
DEPTHS = tuple(range(2, 9))


# ----------------------------------------------------------------------------- the tree
@dataclass(frozen=True, eq=False)
class BinaryTree:
    """A complete binary tree of depth ``depth`` numbered in pre-order.

    Attributes:
        depth: r (the root is at depth 0, the leaves at depth r).
        num_nodes: 2^(r+1) - 1.
        parent: int64 [N], the parent of each node (-1 at the root).
        node_depth: int64 [N], the depth of each node.
        leaves: int64 [2^r], the leaves from left to right.
    """

    depth: int
    num_nodes: int
    parent: np.ndarray
    node_depth: np.ndarray
    leaves: np.ndarray

    @property
    def num_leaves(self) -> int:
        return 1 << self.depth

    def edge_index(self, self_loops: bool = True) -> Tensor:
        """[2, E]: every child -> its parent (towards the root), then one self-loop per
        node when ``self_loops`` (the paper adds them for its GNN layers)."""
        child = np.flatnonzero(self.parent >= 0)
        edges = np.stack([child, self.parent[child]])
        if self_loops:
            nodes = np.arange(self.num_nodes)
            edges = np.concatenate([edges, np.stack([nodes, nodes])], axis=1)
        return torch.from_numpy(edges.astype(np.int64))


def binary_tree(depth: int) -> BinaryTree:
    """The complete binary tree of ``depth`` (>= 1), nodes numbered in pre-order."""
    if depth < 1:
        raise ConfigError(f"tree depth must be >= 1, got {depth}")
    n = (1 << (depth + 1)) - 1
    parent = np.full(n, -1, dtype=np.int64)
    node_depth = np.zeros(n, dtype=np.int64)
    leaves: list[int] = []
    # (node, its depth); in pre-order a node of height h has its left child at node + 1
    # and its right child after the 2^h - 1 nodes of the left subtree
    stack = [(0, 0)]
    while stack:
        node, d = stack.pop()
        node_depth[node] = d
        height = depth - d
        if height == 0:
            leaves.append(node)
            continue
        left, right = node + 1, node + (1 << height)
        parent[left] = parent[right] = node
        stack.append((right, d + 1))
        stack.append((left, d + 1))  # popped first: the left subtree is numbered first
    return BinaryTree(depth, n, parent, node_depth, np.array(sorted(leaves), dtype=np.int64))


# ----------------------------------------------------------------------------- the data
@dataclass(eq=False)
class TreeNeighborsMatch:
    """The examples of one depth.

    Attributes:
        tree: the shared tree structure.
        perms: int64 [P, K], ``perms[p, i]`` the label (1..K) of leaf i in permutation p.
        perm_id: int64 [E], the permutation of each example.
        root_key: int64 [E], the root's key (1..K) of each example.
        train, test: int64 indices of the examples of each split.
    """

    tree: BinaryTree
    perms: np.ndarray
    perm_id: np.ndarray
    root_key: np.ndarray
    train: np.ndarray
    test: np.ndarray
    seed: int = 0

    @property
    def depth(self) -> int:
        return self.tree.depth

    @property
    def num_classes(self) -> int:
        """K + 1 outputs (labels 1..K; the paper's readout has one spare output)."""
        return self.tree.num_leaves + 1

    @property
    def y(self) -> np.ndarray:
        """[E] the answer of each example: the label of the leaf whose key is the root's."""
        return self.perms[self.perm_id, self.root_key - 1]

    def __len__(self) -> int:
        return len(self.perm_id)

    def node_inputs(self, rows: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """(keys, labels) int64 [B, N] of examples ``rows``: leaf i holds (i + 1,
        perm[i]), the root (its key, 0), every other node (0, 0)."""
        rows = np.asarray(rows)
        tree = self.tree
        keys = np.zeros((len(rows), tree.num_nodes), dtype=np.int64)
        labels = np.zeros_like(keys)
        keys[:, tree.leaves] = np.arange(1, tree.num_leaves + 1)
        labels[:, tree.leaves] = self.perms[self.perm_id[rows]]
        keys[:, 0] = self.root_key[rows]
        return torch.from_numpy(keys), torch.from_numpy(labels)


def _distinct_permutations(k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct permutations of 1..k, drawn uniformly (all of them, in random
    order, when k! <= count)."""
    if math.factorial(k) <= count:
        perms = np.array(list(itertools.permutations(range(1, k + 1))), dtype=np.int64)
        return perms[rng.permutation(len(perms))]
    seen: set[bytes] = set()
    out = []
    while len(out) < count:
        p = rng.permutation(k) + 1
        if p.tobytes() not in seen:
            seen.add(p.tobytes())
            out.append(p)
    return np.stack(out).astype(np.int64)


def num_permutations(depth: int, max_permutations: int = 1000, max_examples: int = 32000) -> int:
    """Permutations sampled at ``depth``: min(max_permutations, K!, max_examples // K)
    (the authors' rule at depth >= 4; at depths 2 and 3 the cap of 32,000 examples
    does not bind, so it is theirs there too)."""
    k = 1 << depth
    return max(1, min(max_permutations, math.factorial(min(k, 20)), max_examples // k))


def make_tree_neighbors_match(depth: int, seed: int = 0, train_fraction: float = 0.8,
                              max_permutations: int = 1000, max_examples: int = 32000) -> TreeNeighborsMatch:
    """The examples of ``depth``: every key of every sampled permutation, split
    ``train_fraction`` / rest, stratified by label (all drawn from ``seed``)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    tree = binary_tree(depth)
    k = tree.num_leaves
    rng = np.random.default_rng(seed)
    perms = _distinct_permutations(k, num_permutations(depth, max_permutations, max_examples), rng)
    perm_id = np.repeat(np.arange(len(perms)), k)
    root_key = np.tile(np.arange(1, k + 1), len(perms))
    y = perms[perm_id, root_key - 1]
    rows = np.arange(len(perm_id))
    if len(perms) * (1 - train_fraction) < 1:  # too few per label for a stratified split
        raise ConfigError(f"depth {depth}: {len(perms)} permutations leave no test example per label; "
                          "raise max_examples")
    train, test = train_test_split(rows, train_size=train_fraction, shuffle=True, stratify=y,
                                   random_state=seed)
    return TreeNeighborsMatch(tree, perms, perm_id, root_key, np.sort(train), np.sort(test), seed)


def root_sequences(data: TreeNeighborsMatch, seed: int = 0, chunk: int = 512) -> Tensor:
    """[E, S] the root's hop-ordered sequence of every example, as node ids of the tree.

    Drawn by :func:`~brlgraph.sequences.hop_ordered_sequences` on the disjoint union of
    ``chunk`` trees (S = N: the whole tree, depth by depth, random order within a
    depth), so each example has its own order within a depth.
    """
    from brlgraph.sequences import hop_ordered_sequences

    tree, n = data.tree, data.tree.num_nodes
    GraphView = common.graph_view_class()
    base = tree.edge_index(self_loops=False)
    out = torch.empty(len(data), n, dtype=torch.int32)
    for c, start in enumerate(range(0, len(data), chunk)):
        b = min(chunk, len(data) - start)
        union = torch.cat([base + i * n for i in range(b)], dim=1)
        graph = GraphView.from_edge_index(union, b * n)
        seqs = hop_ordered_sequences(graph, torch.arange(b) * n, n, max_hops=tree.depth,
                                     seed=seed * 1_000_003 + c)
        if not bool(seqs.mask.all()):
            raise RuntimeError("a root's sequence does not hold its whole tree")  # cannot happen
        out[start:start + b] = (seqs.ids - (torch.arange(b) * n)[:, None]).to(torch.int32)
    return out


# ----------------------------------------------------------------------------- models
class TreeMessagePassing(nn.Module):
    """The paper's ``GraphModel``: key and label embeddings summed, ``layers`` GNN
    layers (each h <- LN(h + ReLU(conv(h)))), a bias-free linear readout of the root.

    ``kind``: ``gcn``, ``gin`` (MLP with BatchNorm, as the authors'), ``gat`` (4 heads
    concatenated) or ``brlconv`` (:class:`~brlgraph.nn.BRLConv`, options in ``conv``).
    """

    def __init__(self, kind: str, num_classes: int, hidden: int, layers: int,
                 conv: dict[str, Any] | None = None) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv, GINConv

        from brlgraph.nn import BRLConv

        def make() -> nn.Module:
            if kind == "gcn":
                return GCNConv(hidden, hidden)
            if kind == "gin":
                return GINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                             nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU()))
            if kind == "gat":
                return GATConv(hidden, hidden // 4, heads=4)
            if kind == "brlconv":
                return BRLConv(hidden, hidden, hidden_channels=hidden, **(conv or {}))
            raise ConfigError(f"unknown message-passing model {kind!r} ({', '.join(MP_MODELS)})")

        self.kind = kind
        self.keys = nn.Embedding(num_classes, hidden)
        self.labels = nn.Embedding(num_classes, hidden)
        self.layers = nn.ModuleList(make() for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, num_classes, bias=False)

    def forward(self, keys: Tensor, labels: Tensor, edge_index: Tensor) -> Tensor:
        """keys, labels [B, N]; ``edge_index`` of the B trees' disjoint union -> [B, C]."""
        b, n = keys.shape
        h = (self.keys(keys) + self.labels(labels)).reshape(b * n, -1)
        for conv, norm in zip(self.layers, self.norms, strict=True):
            h = norm(h + torch.relu(conv(h, edge_index)))
        return self.out(h.view(b, n, -1)[:, 0])


class TreeSequenceModel(nn.Module):
    """brlgraph's node-as-sequence transformer on the root's sequence of the whole tree.

    The node states are the summed key and label embeddings; :class:`BRLFormer` adds
    the hop embedding, runs its blocks over the sequence and reads the root token out.
    """

    def __init__(self, attention: str, num_classes: int, depth: int, hidden: int, layers: int,
                 heads: int, window: int, reservoir: int,
                 attention_options: dict[str, Any] | None = None, from_target: bool = False) -> None:
        super().__init__()
        from brlgraph.nn import BRLFormer

        self.keys = nn.Embedding(num_classes, hidden)
        self.labels = nn.Embedding(num_classes, hidden)
        # one featureless node type of one node: the former's own input encoder is
        # not used (the node states are given), so it stays as small as it can be
        self.former = BRLFormer([None], [1], num_classes, layers=layers, heads=heads,
                                attention=attention, window=window, dropout=0.0,
                                gnn_layers=0, max_hops=depth, attention_options=attention_options,
                                reservoir_from_target=from_target, **common.model_kwargs(hidden, reservoir))
        self.former.encoder.requires_grad_(False)
        self._graph = None

    def forward(self, keys: Tensor, labels: Tensor, order: Tensor, hops: Tensor) -> Tensor:
        """keys, labels [B, N]; ``order`` [B, S] the sequences (tree node ids), ``hops``
        [S] their depths -> logits [B, C]."""
        from brlgraph.sequences import NodeSequences

        b, n = keys.shape
        h = (self.keys(keys) + self.labels(labels)).reshape(b * n, -1)
        ids = order.long() + (torch.arange(b, device=order.device) * n)[:, None]
        seqs = NodeSequences(ids, hops.expand(b, -1), torch.zeros_like(ids),
                             torch.ones_like(ids, dtype=torch.bool), max_hops=int(hops.max()))
        return self.former(self._graph, seqs, node_states=h)


# ----------------------------------------------------------------------------- budget
@dataclass
class TreeBudget:
    """Width and training budget, the same for every model of a depth.

    Training runs in rounds (the paper's "evaluations"): a round is the fewest whole
    epochs that make at least ``round_steps`` optimiser steps. After each round the
    training accuracy of the round and the test accuracy are recorded, the learning
    rate is halved after ``plateau_patience`` rounds without a better training
    accuracy, and training stops after ``patience`` such rounds, at training accuracy
    1.0, or once ``max_steps`` steps are done. Per-depth fields map a depth to a value
    (the entry of the largest depth <= r applies).
    """

    hidden: int = 32
    max_steps: dict[int, int] = field(default_factory=lambda: {2: 5000, 3: 10000, 4: 4000})
    batch_size: dict[int, int] = field(default_factory=lambda: {2: 16, 3: 64, 4: 256})
    lr: float = 1e-3
    #: optimiser steps per round at least (the paper evaluates every 100 epochs)
    round_steps: int = 100
    #: rounds without a better training accuracy before stopping (paper: 20 evaluations)
    patience: int = 20
    #: rounds of ReduceLROnPlateau (halving) on the training accuracy (paper: 10 evaluations)
    plateau_patience: int = 10
    #: examples per depth at most (the paper's 32,000; fewer at r = 7, 8 keep them affordable)
    max_examples: dict[int, int] = field(default_factory=lambda: {2: 32000, 7: 16000, 8: 8192})
    # sequence models: layers, heads, window, reservoir size m, for brl/local/full
    seq_layers: int = 2
    seq_heads: int = 4
    window: int = 16
    reservoir: int = 16
    #: brl only: each tree's reservoir starts from E + W_t (root token), not E alone
    #: (BRLFormer's ``reservoir_from_target``); without it BRL does not fit r = 6
    reservoir_from_target: bool = False
    # BRLConv: tokens per node's sequence and reservoir size
    conv_seq_len: int = 8
    conv_window: int = 4
    conv_reservoir: int = 2
    #: deepest tree BRLConv runs on: it attends over conv_seq_len tokens per node and
    #: layer, so a tree costs about conv_seq_len times a GNN layer's work
    conv_max_depth: int = 3

    def per_depth(self, table: dict[int, int], depth: int) -> int:
        keys = sorted(table)
        return table[max([k for k in keys if k <= depth] or keys[:1])]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at(self, depth: int) -> dict[str, Any]:
        """The budget of ``depth`` alone (per-depth fields resolved): what a cell's record
        and checkpoint keep, so that changing another depth's entry leaves it valid."""
        return {k: (self.per_depth(v, depth) if isinstance(v, dict) else v) for k, v in self.to_dict().items()}


def build_model(name: str, data: TreeNeighborsMatch, budget: TreeBudget) -> nn.Module:
    """Model ``name`` for ``data``'s depth under ``budget``."""
    r, c, d = data.depth, data.num_classes, budget.hidden
    if name in SEQUENCE_MODELS:
        return TreeSequenceModel(name, c, r, d, budget.seq_layers, budget.seq_heads, budget.window,
                                 budget.reservoir, from_target=budget.reservoir_from_target and name == "brl")
    if name in MP_MODELS:
        conv = ({"heads": budget.seq_heads, "seq_len": budget.conv_seq_len, "window": budget.conv_window,
                 common.RENAMED["conv.reservoir_kwarg"]: budget.conv_reservoir, "max_hops": r}
                if name == "brlconv" else None)
        return TreeMessagePassing(name, c, d, r + 1, conv)
    raise ConfigError(f"unknown model {name!r}; choose from {', '.join(TREE_MODELS)}")


# ----------------------------------------------------------------------------- training
class _Batcher:
    """Inputs of a batch of examples for either kind of model."""

    def __init__(self, data: TreeNeighborsMatch, name: str, seed: int) -> None:
        self.data, self.sequence = data, name in SEQUENCE_MODELS
        tree = data.tree
        self.order = root_sequences(data, seed) if self.sequence else None
        self.hops = (torch.from_numpy(tree.node_depth)[self.order[0].long()] if self.sequence else None)
        self.base_edges = tree.edge_index(self_loops=True)
        self._edges: dict[int, Tensor] = {}  # one tensor per batch size: BRLConv caches by identity
        self.y = torch.from_numpy(data.y)

    def edges(self, b: int) -> Tensor:
        if b not in self._edges:
            n = self.data.tree.num_nodes
            self._edges[b] = torch.cat([self.base_edges + i * n for i in range(b)], dim=1)
        return self._edges[b]

    def logits(self, model: nn.Module, rows: np.ndarray) -> Tensor:
        keys, labels = self.data.node_inputs(rows)
        if self.sequence:
            return model(keys, labels, self.order[torch.from_numpy(rows)], self.hops)
        return model(keys, labels, self.edges(len(rows)))


def train_tree_cell(data: TreeNeighborsMatch, name: str, budget: TreeBudget, seed: int = 0,
                    progress: bool = True, checkpoint: Path | None = None,
                    deadline: common.Deadline | None = None) -> dict[str, Any]:
    """Train model ``name`` on ``data`` under ``budget`` (see :class:`TreeBudget`); the
    record of the cell.

    The record holds the best round's training accuracy and the test accuracy after
    that round, the rounds, epochs and steps run, the seconds and the number of
    parameters. With ``checkpoint`` the state is saved after every round and a run that
    finds one continues from it; when ``deadline`` has passed after a round,
    :class:`~brlgraph.bench.common.TimeLimitReached` is raised (the checkpoint then
    holds the round).
    """
    torch.manual_seed(seed)
    r = data.depth
    batch_size = budget.per_depth(budget.batch_size, r)
    max_steps = budget.per_depth(budget.max_steps, r)
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    epochs_per_round = math.ceil(budget.round_steps / steps_per_epoch)
    batcher = _Batcher(data, name, seed)
    model = build_model(name, data, budget)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=budget.lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=budget.plateau_patience, threshold=1e-4,
        threshold_mode="abs")
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {"best": {"train_acc": -1.0, "test_acc": float("nan"), "round": 0},
                             "since": 0, "round": 0, "steps": 0, "seconds": 0.0, "history": [],
                             "done": False}
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        if saved["budget"] != budget.at(r) or saved["examples"] != len(data):
            raise ConfigError(f"{checkpoint} was written under another budget or data; remove it "
                              "or use another --out")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        plateau.load_state_dict(saved["plateau"])
        gen.set_state(saved["generator"])
        state = saved["state"]
    rounds = math.ceil(max_steps / (epochs_per_round * steps_per_epoch))
    bar = common.progress(range(state["round"], rounds), rounds - state["round"], f"{name} r={r}", progress)
    for _ in bar:
        if state["done"]:
            break
        t0 = time.perf_counter()
        model.train()
        correct = seen = 0
        for _epoch in range(epochs_per_round):
            perm = data.train[torch.randperm(len(data.train), generator=gen).numpy()]
            for start in range(0, len(perm), batch_size):
                rows = perm[start:start + batch_size]
                logits = batcher.logits(model, rows)
                y = batcher.y[rows]
                loss = nn.functional.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                correct += int((logits.argmax(-1) == y).sum())
                seen += len(rows)
                state["steps"] += 1
        train_acc = correct / seen
        test_acc = evaluate(model, batcher, data.test, batch_size)
        plateau.step(train_acc)
        state["round"] += 1
        state["history"].append((round(train_acc, 4), round(test_acc, 4)))
        if train_acc > state["best"]["train_acc"] + 1e-4:
            state["best"] = {"train_acc": train_acc, "test_acc": test_acc, "round": state["round"]}
            state["since"] = 0
        else:
            state["since"] += 1
        state["seconds"] += time.perf_counter() - t0
        state["done"] = (train_acc >= 1.0 or state["since"] >= budget.patience
                         or state["steps"] >= max_steps)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(train=f"{train_acc:.3f}", test=f"{test_acc:.3f}")
        if checkpoint is not None:
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "plateau": plateau.state_dict(), "generator": gen.get_state(),
                               "state": state, "budget": budget.at(r), "examples": len(data)},
                              checkpoint)
        if deadline is not None and not state["done"]:
            deadline.check()
    best = state["best"]
    return {"model": name, "depth": r, "seed": seed, "train_acc": best["train_acc"],
            "test_acc": best["test_acc"], "best_round": best["round"], "rounds": state["round"],
            "epochs": state["round"] * epochs_per_round, "steps": state["steps"],
            "seconds": round(state["seconds"], 1), "examples": len(data),
            "train_examples": len(data.train), "batch_size": batch_size, "max_steps": max_steps,
            "parameters": sum(p.numel() for p in params), "history": state["history"]}


@torch.no_grad()
def evaluate(model: nn.Module, batcher: _Batcher, rows: np.ndarray, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        correct += int((batcher.logits(model, part).argmax(-1) == batcher.y[part]).sum())
    return correct / max(len(rows), 1)


# ----------------------------------------------------------------------------- the probe
def probe_cell(data: TreeNeighborsMatch, budget: TreeBudget, seed: int, checkpoint: Path) -> dict[str, float]:
    """:func:`reservoir_probe` of the ``brl`` model saved in ``checkpoint`` (its last
    round), on the test examples."""
    batcher = _Batcher(data, "brl", seed)
    model = build_model("brl", data, budget)
    model.load_state_dict(torch.load(checkpoint, weights_only=False)["model"])
    return reservoir_probe(model, data, batcher, data.test,
                           budget.per_depth(budget.batch_size, data.depth))


@torch.no_grad()
def reservoir_probe(model: TreeSequenceModel, data: TreeNeighborsMatch, batcher: _Batcher,
                    rows: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """How a trained ``brl`` model answers, read off its test accuracy under interventions
    and its write-hop attention (docs/oversquashing.md).

    - ``acc``: as trained;
    - ``acc_no_read_l<k>``: the reservoir's read removed at layer k (lambda = 0 there);
    - ``acc_no_read``: removed at every layer (what the window alone gives);
    - ``acc_no_carry``: layer 1 writes nothing into the reservoir stream (W_Oc = 0), so
      later layers' write queries no longer depend on the sequence;
    - ``write_root_l<k>``: the write-hop attention mass on the root token at layer k, and
      ``write_answer_l<k>`` on the leaf that holds the answer, averaged over reservoir
      tokens and heads (the uniform share would be 1 / S);
    - ``write_answer_max_l<k>``: that mass for the reservoir token and head that put the
      most on it, averaged over examples.
    """
    blocks = model.former.blocks
    if not all(getattr(b.attn, "uses_reservoir", False) for b in blocks):
        raise ConfigError("reservoir_probe needs a model with BRL attention in every layer")

    def accuracy() -> float:
        return evaluate(model, batcher, rows, batch_size)

    out: dict[str, float] = {"acc": accuracy()}
    saved = [b.attn.theta.detach().clone() for b in blocks]
    for k, block in enumerate(blocks, 1):
        block.attn.theta.fill_(-1e4)  # lambda = sigmoid(-1e4) = 0: the window alone
        out[f"acc_no_read_l{k}"] = accuracy()
        block.attn.theta.copy_(saved[k - 1])
    for block in blocks:
        block.attn.theta.fill_(-1e4)
    out["acc_no_read"] = accuracy()
    for block, theta in zip(blocks, saved, strict=True):
        block.attn.theta.copy_(theta)
    if len(blocks) > 1:
        w, b = blocks[0].attn.reservoir_out.weight, blocks[0].attn.reservoir_out.bias
        kept = (w.detach().clone(), b.detach().clone())
        w.zero_()
        b.zero_()
        out["acc_no_carry"] = accuracy()
        w.copy_(kept[0])
        b.copy_(kept[1])
    # write-hop attention, from the inputs each layer's attention sees
    seen: list[tuple] = []

    def recording(attn):
        inner = attn.attend  # blocks call attend(), which forward hooks do not see

        def attend(x, mask=None, reservoir=None):
            seen.append((attn, (x, mask, reservoir)))
            return inner(x, mask, reservoir)
        return attend

    part = rows[:batch_size]
    for blk in blocks:
        blk.attn.attend = recording(blk.attn)
    try:
        model.eval()
        batcher.logits(model, part)
    finally:
        for blk in blocks:
            del blk.attn.attend
    order = batcher.order[torch.from_numpy(part)].long()
    answer_node = torch.from_numpy(data.tree.leaves[data.root_key[part] - 1])
    answer_pos = (order == answer_node[:, None]).float().argmax(1)
    for k, (attn, args) in enumerate(seen, 1):
        x, _mask, reservoir = args
        _, key, _, rq, _, _ = attn._project(x, reservoir)
        tau_w, _ = attn.temperatures()
        scores = tau_w[None, :, None, None] * (rq @ key.transpose(-1, -2)) / math.sqrt(attn.head_dim)
        p = scores.softmax(-1)  # [B, H, m, S]
        idx = torch.arange(len(part))
        out[f"write_root_l{k}"] = float(p[..., 0].mean())
        on_answer = p[idx, :, :, answer_pos]  # [B, H, m]
        out[f"write_answer_l{k}"] = float(on_answer.mean())
        out[f"write_answer_max_l{k}"] = float(on_answer.flatten(1).max(1).values.mean())
    out["uniform"] = 1.0 / data.tree.num_nodes
    return {k: round(v, 4) for k, v in out.items()}


# ----------------------------------------------------------------------------- the sweep
def run_tree_neighbors(out: str | Path, models: Sequence[str] = TREE_MODELS,
                       depths: Sequence[int] = DEPTHS, seeds: Sequence[int] = (0,),
                       budget: TreeBudget | None = None, progress: bool = True,
                       log: Callable[[str], None] | None = None, command: str = "",
                       deadline: common.Deadline | None = None) -> pd.DataFrame:
    """Every (model, depth, seed) cell not yet in ``out``/tree_neighbors.jsonl, then the
    tables and the plot of all finished cells (also when ``deadline`` stops the sweep:
    then :class:`~brlgraph.bench.common.TimeLimitReached` is raised after them)."""
    log = log or common._stderr
    budget = budget or TreeBudget()
    common.check_choices("model", models, TREE_MODELS)
    for r in depths:
        if r not in DEPTHS and not 1 <= r <= 10:
            raise ConfigError(f"depth {r} is out of range (2..8)")
    out = Path(out)
    store = common.ResultStore(out / "tree_neighbors.jsonl", ("model", "depth", "seed"))
    try:
        for r in depths:
            for seed in seeds:
                todo = [m for m in models if store.get(model=m, depth=r, seed=seed) is None]
                if not todo:
                    continue
                data = make_tree_neighbors_match(r, seed=seed,
                                                 max_examples=budget.per_depth(budget.max_examples, r))
                for m in todo:
                    if m == "brlconv" and r > budget.conv_max_depth:
                        store.add({"model": m, "depth": r, "seed": seed, "train_acc": None, "test_acc": None,
                                   "note": f"not run (conv_max_depth = {budget.conv_max_depth})",
                                   "budget": budget.at(r)})
                        continue
                    if deadline is not None:
                        deadline.check()
                    ckpt = out / "checkpoints" / f"tree-{m}-r{r}-seed{seed}.pt"
                    ckpt.parent.mkdir(parents=True, exist_ok=True)
                    record = train_tree_cell(data, m, budget, seed, progress, ckpt, deadline)
                    if m == "brl":
                        record["probe"] = probe_cell(data, budget, seed, ckpt)
                    record["budget"] = budget.at(r)
                    store.add(record)
                    log(f"tree r={r} {m} seed {seed}: train {record['train_acc']:.3f} test "
                        f"{record['test_acc']:.3f} ({record['steps']} steps, {record['seconds']:.0f} s)")
    finally:
        frame = tree_tables(store.records(), out) if len(store) else pd.DataFrame()
        plot_tree(store.records(), out, command or "brlgraph bench tree-neighbors", log)
    return frame


def tree_tables(records: list[dict[str, Any]], out: Path) -> pd.DataFrame:
    """``tree_neighbors_train`` / ``_test`` tables: accuracy per model (rows) and depth
    (columns), mean ± std over seeds."""
    depths = sorted({r["depth"] for r in records})
    models = [m for m in TREE_MODELS if any(r["model"] == m for r in records)]
    frames = {}
    for metric in ("train_acc", "test_acc"):
        rows: dict[str, list[str]] = {}
        for m in models:
            rows[m] = []
            for r in depths:
                cell = [x for x in records if x["model"] == m and x["depth"] == r]
                ran = [x[metric] for x in cell if x.get(metric) is not None]
                rows[m].append(common.mean_std_text(ran) if ran else ("not run" if cell else ""))
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=[f"r={r}" for r in depths])
        frame.index.name = "model"
        common.write_table(out, f"tree_neighbors_{metric.split('_')[0]}", frame)
        frames[metric] = frame
    probes = {x["depth"]: x["probe"] for x in records if x["model"] == "brl" and x.get("probe")
              and x["seed"] == min(y["seed"] for y in records if y["model"] == "brl" and y.get("probe"))}
    if probes:
        keys = list(dict.fromkeys(k for p in probes.values() for k in p))
        frame = pd.DataFrame({f"r={r}": [common.fmt(probes[r].get(k), 3) for k in keys] for r in sorted(probes)},
                             index=pd.Index(keys, name="brl probe (test examples)"))
        common.write_table(out, "tree_neighbors_probe", frame)
    return frames["train_acc"]


def plot_tree(records: list[dict[str, Any]], out: Path, command: str,
              log: Callable[[str], None] | None = None) -> Path | None:
    """``tree_neighbors.png``: training and test accuracy against r, one line per model."""
    plt = common.plotting(log)
    if plt is None or not records:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    depths = sorted({r["depth"] for r in records})
    for ax, metric, title in ((axes[0], "train_acc", "training accuracy"), (axes[1], "test_acc", "test accuracy")):
        for m in TREE_MODELS:
            pts = [(r, np.mean([x[metric] for x in records if x["model"] == m and x["depth"] == r
                                and x.get(metric) is not None]))
                   for r in depths if any(x["model"] == m and x["depth"] == r and x.get(metric) is not None
                                          for x in records)]
            if pts:
                style = "-o" if m in SEQUENCE_MODELS else "--s"
                ax.plot(*zip(*pts, strict=True), style, label=m, markersize=4)
        ax.plot(depths, [1.0 / (1 << r) for r in depths], color="0.3", linewidth=0.8, label="chance")
        ax.set_xlabel("tree depth r")
        ax.set_xticks(depths)
        ax.set_title(f"Tree-NeighborsMatch: {title}")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    common.legend(axes[1], fontsize=7, loc="lower left")
    return common.save_figure(fig, out / "tree_neighbors.png", command)


def read_curve(spec: str, depth: int, seed: int = 0) -> tuple[str, dict[str, Any]]:
    """``LABEL=FILE[:MODEL]`` -> (label, the record of ``MODEL`` (default: the file's
    first) at ``depth`` and ``seed`` in ``FILE``, a sweep's ``tree_neighbors.jsonl``)."""
    label, sep, rest = spec.rpartition("=")  # labels may hold "=" (m = 64), paths rarely do
    if not sep or not label or not rest:
        raise ConfigError(f"curve {spec!r}: give LABEL=FILE[:MODEL]")
    path, _, model = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"curve {label!r}: {path} is not a file (a tree_neighbors jsonl)")
    store = common.ResultStore(path, ("model", "depth", "seed"))
    found = [r for r in store.records() if r["depth"] == depth and r["seed"] == seed
             and (not model or r["model"] == model)]
    if not found:
        raise ConfigError(f"{path}: no record{' of ' + model if model else ''} at r = {depth}, seed {seed}")
    if not found[0].get("history"):
        raise ConfigError(f"{path}: the record of {found[0]['model']} at r = {depth} has no history")
    return label, found[0]


def plot_curves(curves: list[tuple[str, dict[str, Any]]], depth: int, out: Path, command: str) -> Path | None:
    """Training and test accuracy per round against optimiser steps of several cells at
    one depth (variants of one model run in folders of their own), with chance marked."""
    plt = common.plotting()
    if plt is None:
        return None
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for i, (label, rec) in enumerate(curves):
        history = rec["history"]
        per_round = rec["steps"] / max(rec.get("rounds", len(history)), 1)
        steps = [per_round * (k + 1) for k in range(len(history))]
        ax_train.plot(steps, [h[0] for h in history], color=f"C{i}", label=label)
        ax_test.plot(steps, [h[1] for h in history], color=f"C{i}", label=label)
    chance = 1.0 / 2**depth
    for ax, title in ((ax_train, "training accuracy"), (ax_test, "test accuracy")):
        ax.axhline(chance, color="0.5", lw=0.8, ls=":", label=f"chance ({chance:.3f})")
        ax.set_title(f"Tree-NeighborsMatch r = {depth}: {title}", fontsize=10)
        ax.set_xlabel("optimiser steps")
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("accuracy")
    common.legend(ax_test, fontsize=8)
    return common.save_figure(fig, out, command)

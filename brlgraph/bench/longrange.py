"""Long-range sequence tasks at length: what a local window cannot reach, and at what cost.

Two synthetic tasks, both read out at token 0, whose answer sits in the second half
of the sequence, so at n >= 1,024 it lies hundreds of positions beyond what L
layers of a window of half-width w reach (L * w = 32 tokens with the defaults):

- ``retrieval``: tokens are random symbols (``vocab`` of them); one position p, drawn
  uniformly from [n/2, n), is marked; the answer is the symbol at p (chance 1 / vocab).
- ``matching``: two positions p1 != p2 in [n/2, n) carry two different marks; the
  answer is whether their symbols are equal (half the examples are; chance 0.5).

Token 0 is a query token of its own. No positional encoding: the marks carry all
the information, so nothing in the model depends on n except the softmax over n keys.

Models (same width, depth and training steps): the encoder blocks of brlgraph's
transformer (:class:`~brlgraph.nn.brlformer.BRLBlocks`) with ``brl`` (window plus
reservoir), ``local`` (the same window, no reservoir) or ``full`` attention, then
LayerNorm and a linear readout of token 0. Training runs through a curriculum of
lengths (the same for every model) that ends at the training length; the trained
models are then evaluated at n = 1,024 .. 65,536 without retraining. Full
attention is run up to ``full_max_length`` and reported "not run" beyond (its time
grows as n^2). The trained ``brl`` model is evaluated a second time (row ``LOG_N``)
with ``write_scale_length`` set to the training length: beyond it the write
temperature grows as log n, so the key a reservoir token picks keeps its share of the
write softmax over n keys.

Time and memory: for each model and n, one training step (forward, backward, Adam)
on one sequence and one forward pass, timed in a fresh process whose peak resident
memory (``ru_maxrss``) is read after the step; the resident memory before the step
(model and data) is reported beside it.
"""

from __future__ import annotations

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

TASKS = ("retrieval", "matching")
MODELS = ("brl", "local", "full")
#: evaluated, not trained: the trained ``brl`` model with its write temperature scaled
#: by log n / log(training length) beyond the training length (``write_scale_length``)
LOG_N = "brl, log-n write"
#: rows of the accuracy table and lines of its plot, in this order
ROWS = ("brl", LOG_N, "local", "full")
EVAL_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)


def num_classes(task: str, vocab: int) -> int:
    return vocab if task == "retrieval" else 2


def make_batch(task: str, batch: int, n: int, vocab: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(symbols [B, n], marks [B, n], answers [B]) of ``task`` at length ``n``.

    ``symbols`` are 0..vocab-1 except token 0, the query token ``vocab``; ``marks`` are
    0 except at the marked positions (1, and 2 for the second mark of ``matching``).
    """
    if task not in TASKS:
        raise ConfigError(f"unknown long-range task {task!r}; choose from {', '.join(TASKS)}")
    if n < 4:
        raise ConfigError(f"sequence length must be >= 4, got {n}")
    half = n // 2
    symbols = torch.randint(0, vocab, (batch, n), generator=gen)
    symbols[:, 0] = vocab
    marks = torch.zeros(batch, n, dtype=torch.long)
    rows = torch.arange(batch)
    p1 = torch.randint(half, n, (batch,), generator=gen)
    marks[rows, p1] = 1
    if task == "retrieval":
        return symbols, marks, symbols[rows, p1]
    # a second position, different from the first, in the same half
    p2 = half + (p1 - half + torch.randint(1, n - half, (batch,), generator=gen)) % (n - half)
    marks[rows, p2] = 2
    same = torch.rand(batch, generator=gen) < 0.5
    other = (symbols[rows, p1] + torch.randint(1, vocab, (batch,), generator=gen)) % vocab
    symbols[rows, p2] = torch.where(same, symbols[rows, p1], other)
    return symbols, marks, same.long()


class LongRangeModel(nn.Module):
    """Symbol and mark embeddings -> L encoder blocks of brlgraph's transformer with
    ``attention`` -> LayerNorm -> linear readout of token 0."""

    def __init__(self, attention: str, vocab: int, classes: int, hidden: int = 32, layers: int = 2,
                 heads: int = 4, window: int = 16, reservoir: int = 8,
                 attention_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        from brlgraph.nn.brlformer import BRLBlock, BRLBlocks

        self.symbols = nn.Embedding(vocab + 1, hidden)
        self.marks = nn.Embedding(3, hidden)
        opts = common.block_options(attention, window, reservoir, attention_options)
        self.blocks = BRLBlocks(BRLBlock(hidden, heads, attention, 2, 0.0, opts) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, symbols: Tensor, marks: Tensor) -> Tensor:
        x, _ = self.blocks(self.symbols(symbols) + self.marks(marks))
        return self.head(self.norm(x[:, 0]))


@dataclass
class LongRangeBudget:
    """Model sizes and training curriculum (the same for every model)."""

    hidden: int = 32
    layers: int = 2
    heads: int = 4
    window: int = 16
    reservoir: int = 8
    vocab: int = 8
    lr: float = 1e-3
    #: (length, batch size, steps) of the curriculum; the last length is the training length
    curriculum: list[tuple[int, int, int]] = field(
        default_factory=lambda: [(256, 32, 400), (1024, 8, 300), (4096, 2, 300)])
    #: test sequences per length (full attention: fewer above 4,096 tokens, see ``sequences_at``)
    eval_sequences: int = 256
    eval_tokens: int = 2**20
    full_max_length: int = 16384

    @property
    def train_length(self) -> int:
        return self.curriculum[-1][0]

    def sequences_at(self, n: int, model: str = "brl") -> int:
        """Test sequences at length n: ``eval_sequences``; for full attention, whose time
        grows as n^2, at most ``eval_tokens`` tokens in all (at least 64 sequences)."""
        if model != "full":
            return self.eval_sequences
        return max(min(64, self.eval_sequences), min(self.eval_sequences, self.eval_tokens // n))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(task: str, attention: str, budget: LongRangeBudget) -> LongRangeModel:
    return LongRangeModel(attention, budget.vocab, num_classes(task, budget.vocab), budget.hidden,
                          budget.layers, budget.heads, budget.window, budget.reservoir)


def train_model(task: str, attention: str, budget: LongRangeBudget, seed: int = 0,
                progress: bool = True, checkpoint: Path | None = None,
                deadline: common.Deadline | None = None,
                every: int = 50) -> tuple[LongRangeModel, dict[str, Any]]:
    """Train through the curriculum; the model and its record (accuracy on the last 50
    training batches, seconds). With ``checkpoint`` the state is saved every ``every``
    steps and a run that finds one continues from it; past ``deadline`` (checked at
    those saves) :class:`~brlgraph.bench.common.TimeLimitReached` is raised."""
    torch.manual_seed(seed)
    model = build_model(task, attention, budget)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    gen = torch.Generator().manual_seed(seed)
    total = sum(steps for _, _, steps in budget.curriculum)
    state: dict[str, Any] = {"step": 0, "recent": [], "seconds": 0.0}
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        if saved["budget"] != budget.to_dict():
            raise ConfigError(f"{checkpoint} was written under another budget; remove it or use another --out")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        state = saved["state"]
    stages = [(n, b) for n, b, steps in budget.curriculum for _ in range(steps)]
    bar = common.progress(range(state["step"], total), total - state["step"], f"{task} {attention}", progress)
    t0 = time.perf_counter()
    model.train()
    for i in bar:
        n, b = stages[i]
        symbols, marks, y = make_batch(task, b, n, budget.vocab, gen)
        logits = model(symbols, marks)
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["recent"] = (state["recent"] + [float((logits.argmax(-1) == y).float().mean())])[-50:]
        state["step"] = i + 1
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(n=n, loss=f"{loss.item():.3f}", acc=f"{np.mean(state['recent']):.3f}")
        if checkpoint is not None and (state["step"] % every == 0) and state["step"] < total:
            state["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "generator": gen.get_state(), "state": state, "budget": budget.to_dict()},
                              checkpoint)
            if deadline is not None:
                deadline.check()
    state["seconds"] += time.perf_counter() - t0
    return model, {"train_seconds": round(state["seconds"], 1),
                   "final_train_acc": float(np.mean(state["recent"])) if state["recent"] else float("nan")}


@torch.no_grad()
def accuracy(model: nn.Module, task: str, n: int, count: int, vocab: int, seed: int,
             max_tokens: int = 2**16) -> float:
    """Accuracy on ``count`` fresh test sequences of length n (drawn from ``seed``)."""
    model.eval()
    gen = torch.Generator().manual_seed(10_000_019 * (seed + 1) + n)
    batch = max(1, min(count, max_tokens // n))
    correct = 0
    for start in range(0, count, batch):
        b = min(batch, count - start)
        symbols, marks, y = make_batch(task, b, n, vocab, gen)
        correct += int((model(symbols, marks).argmax(-1) == y).sum())
    return correct / count


def measure_cost(task: str, attention: str, n: int, budget_dict: dict[str, Any]) -> dict[str, Any]:
    """One timed training step and one timed forward pass on a sequence of length n
    (after a warm-up of each); run in a fresh process by :func:`~brlgraph.bench.common.run_isolated`,
    so ``ru_maxrss`` is this measurement's own peak."""
    budget = LongRangeBudget(**{**budget_dict, "curriculum": [tuple(c) for c in budget_dict["curriculum"]]})
    torch.manual_seed(0)
    model = build_model(task, attention, budget)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    gen = torch.Generator().manual_seed(0)
    symbols, marks, y = make_batch(task, 1, n, budget.vocab, gen)
    before = common.current_rss_mib()

    def step() -> None:
        loss = nn.functional.cross_entropy(model(symbols, marks), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    step()
    t0 = time.perf_counter()
    step()
    step_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        model(symbols, marks)
        t0 = time.perf_counter()
        model(symbols, marks)
        forward_s = time.perf_counter() - t0
    return {"step_ms": 1000 * step_s, "forward_ms": 1000 * forward_s,
            "peak_rss_mib": common.peak_rss_mib(), "base_rss_mib": before}


# ----------------------------------------------------------------------------- the sweep
def run_longrange(out: str | Path, tasks: Sequence[str] = TASKS, models: Sequence[str] = MODELS,
                  lengths: Sequence[int] = EVAL_LENGTHS, seeds: Sequence[int] = (0,),
                  budget: LongRangeBudget | None = None, progress: bool = True, cost: bool = True,
                  log: Callable[[str], None] | None = None, command: str = "",
                  deadline: common.Deadline | None = None) -> pd.DataFrame:
    """Train every (task, model, seed) not yet trained in ``out``, evaluate every
    (task, model, seed, n) not yet evaluated, time every (model, n) not yet timed;
    then write the tables and plots of everything finished (also when ``deadline``
    stops the sweep)."""
    log = log or common._stderr
    budget = budget or LongRangeBudget()
    common.check_choices("long-range task", tasks, TASKS)
    common.check_choices("model", models, MODELS)
    out = Path(out)
    trained = common.ResultStore(out / "longrange_train.jsonl", ("task", "model", "seed"))
    evals = common.ResultStore(out / "longrange_eval.jsonl", ("task", "model", "seed", "n"))
    costs = common.ResultStore(out / "longrange_cost.jsonl", ("model", "n"))
    try:
        _sweep(out, tasks, models, lengths, seeds, budget, progress, cost, log, deadline, trained, evals, costs)
    finally:
        frame = longrange_tables(trained.records(), evals.records(), costs.records(), out, budget)
        plot_longrange(evals.records(), costs.records(), out, command or "brlgraph bench longrange", log, budget)
    return frame


def _sweep(out: Path, tasks: Sequence[str], models: Sequence[str], lengths: Sequence[int],
           seeds: Sequence[int], budget: LongRangeBudget, progress: bool, cost: bool,
           log: Callable[[str], None], deadline: common.Deadline | None, trained: common.ResultStore,
           evals: common.ResultStore, costs: common.ResultStore) -> None:
    budget_key = budget.to_dict()
    for task in tasks:
        for seed in seeds:
            for m in models:
                path = out / "models" / f"{task}-{m}-seed{seed}.pt"
                model = None
                if trained.get(task=task, model=m, seed=seed) is None or not path.exists():
                    if deadline is not None:
                        deadline.check()
                    ckpt = out / "checkpoints" / f"longrange-{task}-{m}-seed{seed}.pt"
                    ckpt.parent.mkdir(parents=True, exist_ok=True)
                    model, record = train_model(task, m, budget, seed, progress, ckpt, deadline)
                    atomic_torch_save(model.state_dict(), path)
                    trained.add({"task": task, "model": m, "seed": seed, "train_length": budget.train_length,
                                 "budget": budget_key, **record})
                    log(f"{task} {m} seed {seed}: trained ({record['train_seconds']:.0f} s, last "
                        f"training accuracy {record['final_train_acc']:.3f})")
                for name in (m, LOG_N) if m == "brl" else (m,):
                    for n in lengths:
                        if evals.get(task=task, model=name, seed=seed, n=n) is not None:
                            continue
                        if m == "full" and n > budget.full_max_length:
                            evals.add({"task": task, "model": m, "seed": seed, "n": n, "accuracy": None,
                                       "sequences": 0, "note": "not run"})
                            continue
                        if model is None:
                            model = build_model(task, m, budget)
                            model.load_state_dict(torch.load(path, weights_only=True))
                        set_write_scale(model, budget.train_length if name == LOG_N else None)
                        count = budget.sequences_at(n, m)
                        t0 = time.perf_counter()
                        acc = accuracy(model, task, n, count, budget.vocab, seed)
                        evals.add({"task": task, "model": name, "seed": seed, "n": n, "accuracy": acc,
                                   "sequences": count, "seconds": round(time.perf_counter() - t0, 1)})
                        log(f"{task} {name} seed {seed}: n = {n}: accuracy {acc:.3f} ({count} sequences)")
    if cost:
        for m in models:
            for n in timed_lengths(lengths, m, budget):
                if costs.get(model=m, n=n) is None:
                    if deadline is not None:
                        deadline.check()
                    record = common.run_isolated(measure_cost, tasks[0], m, n, budget_key)
                    costs.add({"model": m, "n": n, "task": tasks[0], **record})
                    log(f"cost {m} n = {n}: step {record['step_ms']:.0f} ms, forward "
                        f"{record['forward_ms']:.0f} ms, peak RSS {record['peak_rss_mib']:.0f} MiB")


def set_write_scale(model: nn.Module, length: int | None) -> None:
    """Set ``write_scale_length`` of every BRL-Attention layer of ``model``."""
    from brlgraph.nn.attention.brl import BRLAttention

    for module in model.modules():
        if isinstance(module, BRLAttention):
            module.write_scale_length = length


def timed_lengths(lengths: Sequence[int], model: str, budget: LongRangeBudget) -> list[int]:
    """The lengths at which ``model`` is timed (full attention: up to ``full_max_length``)."""
    return [n for n in lengths if model != "full" or n <= budget.full_max_length]


def _chance(task: str, vocab: int) -> float:
    return 1.0 / vocab if task == "retrieval" else 0.5


def longrange_tables(trained: list[dict], evals: list[dict], costs: list[dict], out: Path,
                     budget: LongRangeBudget) -> pd.DataFrame:
    """``longrange_accuracy`` (rows task / model, columns n; mean ± std over seeds) and
    ``longrange_cost`` (rows model, columns n: step ms, forward ms, peak RSS MiB)."""
    lengths = sorted({r["n"] for r in evals} | {r["n"] for r in costs})
    rows: dict[str, list[str]] = {}
    for task in TASKS:
        for m in ROWS:
            cells = [r for r in evals if r["task"] == task and r["model"] == m]
            if not cells:
                continue
            line = []
            for n in lengths:
                at = [r for r in cells if r["n"] == n]
                if not at:
                    line.append("")
                elif all(r["accuracy"] is None for r in at):
                    line.append("not run")
                else:
                    line.append(common.mean_std_text([r["accuracy"] for r in at if r["accuracy"] is not None], 3))
            rows[f"{task} / {m} (chance {_chance(task, budget.vocab):.3f})"] = line
    acc = pd.DataFrame.from_dict(rows, orient="index", columns=[f"n={n}" for n in lengths])
    acc.index.name = "task / model"
    common.write_table(out, "longrange_accuracy", acc)
    crow: dict[str, list[str]] = {}
    for m in MODELS:
        for key, label, digits in (("step_ms", "training step (ms)", 0), ("forward_ms", "forward (ms)", 0),
                                   ("peak_rss_mib", "peak RSS (MiB)", 0), ("base_rss_mib", "RSS before the step (MiB)", 0)):
            cells = {r["n"]: r for r in costs if r["model"] == m}
            if not cells:
                continue
            crow[f"{m}: {label}"] = [common.fmt(cells[n][key], digits) if n in cells else "not run"
                                     for n in lengths]
    cost = pd.DataFrame.from_dict(crow, orient="index", columns=[f"n={n}" for n in lengths])
    cost.index.name = "model: measure (one sequence)"
    common.write_table(out, "longrange_cost", cost)
    return acc


def plot_longrange(evals: list[dict], costs: list[dict], out: Path, command: str,
                   log: Callable[[str], None] | None, budget: LongRangeBudget) -> Path | None:
    """``longrange.png``: accuracy against n per task, and time and memory against n."""
    plt = common.plotting(log)
    if plt is None or not (evals or costs):
        return None
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    colors = {"brl": "C0", "local": "C1", "full": "C2", LOG_N: "C0"}
    for ax, task in zip(axes[:2], TASKS, strict=True):
        for m in ROWS:
            pts = sorted((r["n"], r["accuracy"]) for r in evals
                         if r["task"] == task and r["model"] == m and r["accuracy"] is not None)
            if pts:
                ns = sorted({n for n, _ in pts})
                ax.plot(ns, [np.mean([a for k, a in pts if k == n]) for n in ns],
                        "--s" if m == LOG_N else "-o", color=colors[m], label=m, markersize=4,
                        fillstyle="none" if m == LOG_N else "full")
        ax.axhline(_chance(task, budget.vocab), color="0.4", linestyle=":", label="chance")
        ax.axvline(budget.train_length, color="0.7", linestyle="--", linewidth=0.8, label="training length")
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{task}: test accuracy")
        ax.set_xlabel("sequence length n")
        ax.grid(alpha=0.3)
        common.legend(ax, fontsize=7)
    for ax, key, label in ((axes[2], "step_ms", "training step, one sequence (ms)"),
                           (axes[3], "peak_rss_mib", "peak resident memory (MiB)")):
        for m in MODELS:
            pts = sorted((r["n"], r[key]) for r in costs if r["model"] == m)
            if pts:
                ax.plot(*zip(*pts, strict=True), "-o", color=colors[m], label=m, markersize=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("sequence length n")
        ax.grid(alpha=0.3)
        common.legend(ax, fontsize=7)
    return common.save_figure(fig, out / "longrange.png", command)

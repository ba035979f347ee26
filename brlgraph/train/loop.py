"""The training loop: AdamW, constant or cosine schedule, early stopping, checkpoints.

The loop knows nothing about graphs. A :class:`Task` gives it the model, the
mini-batches of one epoch, the loss of a batch and the metrics of a split;
:mod:`brlgraph.train.experiment` builds the tasks (HGB node classification,
kNN graphs as one sequence).

After every epoch the loop writes a checkpoint holding everything the next
epoch depends on (model, optimiser, schedule, RNG states, best state, history),
so ``fit(..., resume=True)`` after an interruption ends exactly where the
uninterrupted run would have.

With ``train.ema > 0`` the loop also keeps an exponential moving average of the
weights (:func:`ema_update`); validation, early stopping and the returned model
then use the average, not the last step's weights. On the small HGB validation
sets this smooths the epoch-to-epoch noise that early stopping otherwise picks
from.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from brlgraph.errors import TrainingError
from brlgraph.train import distributed
from brlgraph.train.checkpoint import load_checkpoint, restore_state, rng_state, save_checkpoint
from brlgraph.train.config import Config, TrainConfig


class Task(Protocol):
    """What the loop needs from an experiment."""

    model: torch.nn.Module

    def steps_per_epoch(self) -> int: ...

    def train_batches(self, epoch: int) -> Iterable[Any]: ...

    def loss(self, batch: Any) -> torch.Tensor: ...

    def evaluate(self, split: str) -> dict[str, float]: ...


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at optimiser step ``step``: 1 (``"constant"``),
    or a cosine from 1 to 0 over ``train.epochs`` (``"cosine"``)."""
    if cfg.schedule == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total)))
    return 1.0


def score_of(metrics: dict[str, float], monitor: str) -> tuple[float, float]:
    """Early-stopping score, higher is better; ties are broken by the lower loss."""
    loss = metrics.get("val_loss", 0.0)
    main = -loss if monitor == "val_loss" else metrics[monitor]
    return (main, -loss)


def ema_decay(updates: int, decay: float) -> float:
    """Decay of the average's next update after ``updates`` updates, bias-corrected.

    ``decay * (1 - decay**n) / (1 - decay**(n + 1))``: the average is then exactly
    ``sum_i decay**(n - i) * w_i / sum_i decay**(n - i)`` over the weights seen so
    far (as Adam corrects its moments), so the starting weights carry no extra
    mass in a short run; it tends to ``decay``.
    """
    return decay * (1.0 - decay**updates) / (1.0 - decay ** (updates + 1))


@torch.no_grad()
def ema_update(average: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * weights`` for floating-point entries.

    Integer buffers (counters) are copied as they are.
    """
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            average[name].lerp_(value, 1.0 - decay)
        else:
            average[name].copy_(value)


@contextmanager
def weights_swapped(model: torch.nn.Module, state: dict[str, torch.Tensor] | None) -> Iterator[None]:
    """Run the block with ``state`` loaded into ``model`` (nothing when None), then restore."""
    if state is None:
        yield
        return
    live = copy.deepcopy(model.state_dict())
    model.load_state_dict(state)
    try:
        yield
    finally:
        model.load_state_dict(live)


def diverged_message(loss: float, epoch: int, step: int, cfg: TrainConfig,
                     checkpoint: str | Path | None) -> str:
    """What :func:`fit` says when the loss stops being a number."""
    kept = ""
    if checkpoint is not None:
        kept = (f"; {checkpoint} holds epoch {epoch - 1}, the last finished one" if epoch > 1
                else "; no epoch finished, so this run wrote no checkpoint")
    return (f"training diverged: the loss is {loss} at epoch {epoch}, step {step}{kept}. "
            f"The learning rate is the likely cause: lower train.lr (now {cfg.lr:g})"
            + ("" if cfg.grad_clip > 0 else " or set train.grad_clip (now 0, no clipping)"))


def fit(task: Task, config: Config, checkpoint: str | Path | None = None, resume: bool = False,
        progress: bool = True, on_epoch_end: Callable[[int, dict], None] | None = None,
        desc: str | None = None) -> dict[str, Any]:
    """Train ``task.model`` under ``config.train``; return the best epoch's summary.

    The model is left holding the best validation state. ``on_epoch_end(epoch,
    metrics)`` is called after each epoch's checkpoint is written (tests use it to
    interrupt a run). ``desc`` labels the progress bar (default: the data set).

    Under torchrun the steps run through DistributedDataParallel (:mod:`brlgraph.train.distributed`);
    rank 0 alone writes the checkpoint and shows progress.
    """
    cfg, model = config.train, task.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = task.steps_per_epoch()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, steps))
    epoch, stopped, history, seconds = 0, False, [], 0.0
    best: dict[str, Any] = {"score": [-math.inf, -math.inf], "epoch": -1, "model": None, "metrics": {}}
    average = copy.deepcopy(model.state_dict()) if cfg.ema > 0 else None
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, config.to_dict())
        restore_state(checkpoint, state, model, optimizer, scheduler, ema=average is not None,
                      rank=distributed.rank(), world_size=distributed.world_size())
        epoch, stopped, history, best = state["epoch"], state["stopped"], state["history"], state["best"]
        seconds = state["seconds"]
        if average is not None:
            average = state["ema"]

    wrapped = distributed.wrap(model)  # the model itself in one process
    bar = tqdm(total=cfg.epochs, initial=epoch, desc=desc or config.data.name, file=sys.stderr,
               disable=not progress or not distributed.is_main(), dynamic_ncols=True, leave=False)
    while epoch < cfg.epochs and not stopped:
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(task.train_batches(epoch)):
            with distributed.training_forward(task, wrapped):
                loss = task.loss(batch)
            if not torch.isfinite(loss):  # stop before the step spreads it into the weights
                bar.close()
                raise TrainingError(diverged_message(loss.item(), epoch + 1, step + 1, cfg, checkpoint))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            if average is not None:
                ema_update(average, model, ema_decay(scheduler.last_epoch, cfg.ema))
            scheduler.step()
            total, count = total + distributed.mean(loss.item()), count + 1

        with weights_swapped(model, average):
            val = task.evaluate("val")
        metrics = {"epoch": epoch + 1, "train_loss": total / max(count, 1),
                   **{f"val_{k}": v for k, v in val.items()}}
        seconds += time.perf_counter() - t0
        history.append(metrics)
        score = list(score_of(metrics, cfg.monitor))
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1, "metrics": metrics,
                    "model": copy.deepcopy(average if average is not None else model.state_dict())}
        epoch += 1
        stopped = epoch - best["epoch"] >= cfg.patience
        rngs = distributed.gather(rng_state()) if distributed.active() else None
        if checkpoint is not None and distributed.is_main():
            save_checkpoint(checkpoint, {
                "config": config.to_dict(), "epoch": epoch, "stopped": stopped, "seconds": seconds,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(),
                "best": best, "history": history, "ema": average,
                **({"rng_by_rank": rngs} if rngs else {})})
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", val=f"{score[0]:.4f}",
                        best=f"{best['score'][0]:.4f}@{best['epoch']}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    bar.close()

    if best["model"] is not None:
        model.load_state_dict(best["model"])
    return {"epochs": epoch, "best_epoch": best["epoch"], "seconds": seconds,
            "best_val": best["metrics"], "history": history}

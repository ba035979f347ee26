"""Checkpoints that resume a run exactly, and refuse to resume a different one.

A checkpoint is a plain dict of tensors and primitive containers, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled code is executed):

    format       CHECKPOINT_FORMAT
    config       the run's config as a dict (Config.to_dict())
    fingerprint  what must match to resume (data set, model, sequences, seed, ...)
    epoch        epochs completed
    model, optimizer, scheduler   state dicts
    best         {"score", "epoch", "model" (state dict), "metrics"}
    history      list of per-epoch metric dicts
    rng          torch / cuda / numpy / python RNG states, all as tensors

It is written atomically (:func:`brlgraph.io.atomic_torch_save`), so an
interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brlgraph.errors import CheckpointError
from brlgraph.io import atomic_torch_save
from brlgraph.train.config import Config

CHECKPOINT_FORMAT = 1

#: keys that may change between an interrupted run and its resumption
RESUMABLE_KEYS = ("train.epochs", "train.patience", "train.eval_batch_size")


def config_fingerprint(config: dict[str, Any]) -> str:
    """The config as canonical JSON, without the keys a resumed run may change."""
    flat = {}
    for section, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{section}.{k}": v for k, v in value.items()})
        else:
            flat[section] = value
    for key in RESUMABLE_KEYS:
        flat.pop(key, None)
    return json.dumps(flat, sort_keys=True)


def rng_state() -> dict[str, Any]:
    """Every RNG the run draws from, as tensors (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python": torch.tensor(py_internal, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (see the module docstring) atomically to ``path``."""
    state = dict(state, format=CHECKPOINT_FORMAT, fingerprint=config_fingerprint(state["config"]))
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint; with ``config``, raise CheckpointError unless it belongs to that run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (run without --resume to start afresh)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); "
                              "delete it or choose another --out") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a brlgraph checkpoint (format "
                              f"{CHECKPOINT_FORMAT}); delete it or choose another --out")
    if config is not None and state.get("fingerprint") != config_fingerprint(config):
        diff = fingerprint_differences(json.loads(state["fingerprint"]), json.loads(config_fingerprint(config)))
        if diff:
            shown = ", ".join(f"{k}: {there!r} there, {here!r} here" for k, there, here in diff[:3])
            raise CheckpointError(f"checkpoint {path} belongs to another run ({shown}); "
                                  "use the same config, or another --out to start afresh")
    return state


def restore_state(path: str | Path, state: dict[str, Any], model: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, scheduler: Any, ema: bool = False,
                  rank: int = 0, world_size: int = 1) -> None:
    """Load the model, optimiser, schedule and RNG states of ``state`` (read from ``path``)
    into the live objects, after checking every part a resumed run will use.

    A checkpoint can pass its fingerprint and still not fit (edited, or written by a
    different version of the model code): a missing entry, another tensor shape, an
    optimiser state of other sizes. Each is a :class:`CheckpointError` naming the
    file, raised before training goes on. A torchrun run's checkpoint keeps each
    process's RNG state (``rng_by_rank``): process ``rank`` of ``world_size`` takes its
    own when the process count is the same, the first process's otherwise."""
    try:
        for key, kind in (("epoch", int), ("stopped", bool), ("seconds", float), ("history", list),
                          ("best", dict)):
            if not isinstance(state[key], kind):
                raise TypeError(f"'{key}' is {type(state[key]).__name__}, not {kind.__name__}")
        best = state["best"]
        if not (isinstance(best["epoch"], int) and len(best["score"]) == 2
                and isinstance(best["metrics"], dict)):
            raise ValueError("'best' is malformed")
        # torch checks every key and shape; the live weights are loaded last
        for extra in (best["model"], state["ema"] if ema else None):
            if extra is not None:
                model.load_state_dict(extra)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # load_state_dict checks counts, not shapes
            for param in group["params"]:
                for name, value in optimizer.state.get(param, {}).items():
                    if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                        raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)}, "
                                         f"its parameter {tuple(param.shape)}")
        scheduler.load_state_dict(state["scheduler"])
        by_rank = state.get("rng_by_rank")
        set_rng_state(by_rank[rank] if by_rank and len(by_rank) == world_size else state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        what = f"missing entry {err}" if isinstance(err, KeyError) else " ".join(str(err).split())
        what = what if len(what) <= 300 else what[:300] + "..."  # torch lists every key
        raise CheckpointError(f"checkpoint {path} cannot be restored ({type(err).__name__}: {what}); "
                              "delete it, or run without --resume to start afresh") from None


def fingerprint_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, checkpoint's value, this run's value) for every key on which two flat
    fingerprints differ.

    A key the checkpoint does not have was added to brlgraph after it was written;
    every new option's default keeps the runs before it unchanged, so such a key
    differs only when this run sets it to something else.
    """
    defaults = json.loads(config_fingerprint(Config().to_dict()))
    out = []
    for key in sorted(set(theirs) | set(ours)):
        there = theirs[key] if key in theirs else defaults.get(key)
        here = ours.get(key)
        if there != here:
            out.append((key, theirs.get(key), here))
    return out

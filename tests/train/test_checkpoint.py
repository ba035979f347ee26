"""Checkpoints: what they hold, and the checks that refuse one of another run or one
that does not fit. They are written and resumed by :func:`brlgraph.train.loop.fit`
on the small MLP task of tests/train/test_loop.py."""

from __future__ import annotations

import pytest
import torch

from brlgraph.errors import CheckpointError
from brlgraph.train.checkpoint import load_checkpoint
from brlgraph.train.loop import fit
from tests.train.test_loop import MLPTask, _config


def test_checkpoint_of_another_run_is_refused(tmp_path):
    cfg = _config(epochs=2)
    fit(MLPTask(), cfg, tmp_path / "d.pt", progress=False)
    other = _config(epochs=2)
    other.model.hidden_channels = 17
    with pytest.raises(CheckpointError, match=r"d\.pt.*model\.hidden_channels"):
        fit(MLPTask(), other, tmp_path / "d.pt", resume=True, progress=False)
    (tmp_path / "e.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"e\.pt"):
        fit(MLPTask(), cfg, tmp_path / "e.pt", resume=True, progress=False)


def test_checkpoint_from_before_a_new_option_resumes_while_the_option_is_at_its_default(tmp_path):
    from brlgraph.train.checkpoint import config_fingerprint

    cfg = _config(epochs=3)
    fit(MLPTask(), cfg, tmp_path / "old.pt", progress=False)
    state = torch.load(tmp_path / "old.pt", weights_only=True)
    # as written by a brlgraph without model.embedding_std
    del state["config"]["model"]["embedding_std"]
    state["fingerprint"] = config_fingerprint(state["config"])
    torch.save(state, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", cfg.to_dict())["epoch"] == 3
    changed = _config(epochs=3)
    changed.model.embedding_std = 0.5
    with pytest.raises(CheckpointError, match=r"model\.embedding_std: None there, 0\.5 here"):
        load_checkpoint(tmp_path / "old.pt", changed.to_dict())


def test_checkpoint_loads_with_weights_only(tmp_path):
    fit(MLPTask(), _config(epochs=1), tmp_path / "f.pt", progress=False)
    state = torch.load(tmp_path / "f.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "best", "epoch", "config"} <= set(state)
    assert isinstance(state["rng"]["torch"], torch.Tensor)


def _tampered(tmp_path, change, ema=0.0):
    """A two-epoch checkpoint of ``_config`` changed by ``change(state)``, saved back
    under the same fingerprint."""
    cfg = _config(epochs=2)
    cfg.train.ema = ema
    path = tmp_path / "t.pt"
    fit(MLPTask(), cfg, path, progress=False)
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    cfg.train.epochs = 4
    return cfg, path


def _drop(*keys):
    def change(state):
        target = state
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return change


def _reshape(*keys):
    def change(state):
        target = state
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = torch.zeros(5, 5)
    return change


@pytest.mark.parametrize("change, ema, words", [
    (_drop("optimizer"), 0.0, "missing entry 'optimizer'"),
    (_drop("optimizer", "state"), 0.0, "missing entry 'state'"),
    (_drop("rng"), 0.0, "missing entry 'rng'"),
    (_drop("model", "0.weight"), 0.0, "0.weight"),
    (_reshape("model", "0.weight"), 0.0, "size mismatch"),
    (_reshape("best", "model", "3.bias"), 0.0, "size mismatch"),
    (_reshape("ema", "0.bias"), 0.9, "size mismatch"),
    (_reshape("optimizer", "state", 0, "exp_avg"), 0.0, "optimizer state 'exp_avg' has shape (5, 5)"),
    (lambda s: s.update(epoch="two"), 0.0, "'epoch' is str"),
])
def test_a_checkpoint_that_passes_its_fingerprint_but_does_not_fit_is_one_error(tmp_path, change, ema,
                                                                                 words):
    cfg, path = _tampered(tmp_path, change, ema)
    with pytest.raises(CheckpointError) as err:
        fit(MLPTask(), cfg, path, resume=True, progress=False)
    message = str(err.value)
    assert message.startswith(f"checkpoint {path} cannot be restored") and words in message
    assert "\n" not in message

"""The training loop: schedule, early stopping, exact resumption, EMA, NaN stops.

These tests drive :func:`brlgraph.train.loop.fit` with a small MLP task on fixed
random data (with dropout, so the RNG state matters); the real-data version of
the resume test lives in tests/train/test_experiment.py, and the checkpoint checks
(which reuse this task) in tests/train/test_checkpoint.py.
"""

from __future__ import annotations

import pytest
import torch

from brlgraph.errors import ConfigError
from brlgraph.train.checkpoint import load_checkpoint
from brlgraph.train.config import Config, build_config
from brlgraph.train.loop import ema_decay, ema_update, fit, lr_factor
from brlgraph.train.metrics import classification_loss, classification_metrics


class MLPTask:
    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(300, 16, generator=g)
        self.y = (self.x[:, :4].sum(1) > 0).long() + (self.x[:, 4] > 1).long()
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                         torch.nn.Dropout(0.3), torch.nn.Linear(32, 3))
        self.seed = seed

    def steps_per_epoch(self) -> int:
        return 4

    def train_batches(self, epoch):
        perm = torch.randperm(200, generator=torch.Generator().manual_seed(self.seed * 1000 + epoch))
        return perm.split(50)

    def loss(self, batch):
        return classification_loss(self.model(self.x[batch]), self.y[batch])

    @torch.no_grad()
    def evaluate(self, split):
        self.model.eval()
        idx = slice(200, 250) if split == "val" else slice(250, 300)
        logits = self.model(self.x[idx])
        return {**classification_metrics(logits, self.y[idx]),
                "loss": classification_loss(logits, self.y[idx]).item()}


def _config(epochs=12, patience=100):
    cfg = Config()
    cfg.train.epochs, cfg.train.patience, cfg.train.lr = epochs, patience, 1e-2
    cfg.train.schedule = "cosine"
    return cfg


def test_lr_schedule_is_constant_or_a_cosine_to_zero():
    cfg = _config(epochs=10).train
    f = [lr_factor(s, cfg, 4) for s in range(41)]
    assert f[0] == 1.0 and f[20] == pytest.approx(0.5) and f[40] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))
    cfg.schedule = "constant"
    assert {lr_factor(s, cfg, 4) for s in range(41)} == {1.0}


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_interrupt_matches_uninterrupted(tmp_path, ema):
    cfg = _config()
    cfg.train.ema = ema
    whole = MLPTask()
    ref = fit(whole, cfg, tmp_path / "a.pt", progress=False)

    def interrupt(epoch, metrics):
        if epoch == 5:
            raise KeyboardInterrupt

    part = MLPTask()
    with pytest.raises(KeyboardInterrupt):
        fit(part, cfg, tmp_path / "b.pt", progress=False, on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 5
    torch.manual_seed(999)  # the RNG state must come from the checkpoint, not from here
    resumed = MLPTask(seed=0)
    torch.manual_seed(999)
    out = fit(resumed, cfg, tmp_path / "b.pt", resume=True, progress=False)
    assert out["epochs"] == ref["epochs"] == 12
    assert [h["train_loss"] for h in out["history"]] == [h["train_loss"] for h in ref["history"]]
    assert out["best_val"] == ref["best_val"]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_and_best_state(tmp_path):
    cfg = _config(epochs=200, patience=3)
    cfg.train.lr = 0.0  # nothing improves after the first epoch
    out = fit(MLPTask(), cfg, tmp_path / "c.pt", progress=False)
    assert out["best_epoch"] == 1 and out["epochs"] == 4
    # resuming a finished run trains no further
    again = fit(MLPTask(), cfg, tmp_path / "c.pt", resume=True, progress=False)
    assert again["epochs"] == 4 and again["history"] == out["history"]


def test_ema_update_is_the_bias_corrected_exponential_average():
    model = torch.nn.Linear(3, 2)
    model.register_buffer("count", torch.tensor(0))
    average = {k: v.clone() for k, v in model.state_dict().items()}
    seen, decay = [], 0.5
    for step in range(6):
        with torch.no_grad():
            model.weight.add_(torch.randn(2, 3))
            model.count += 1
        seen.append(model.weight.detach().clone())
        ema_update(average, model, ema_decay(step, decay))
    # closed form: weights decay ** (age) over their sum; the initial weights drop out
    coef = torch.tensor([decay ** (len(seen) - 1 - i) for i in range(len(seen))])
    expected = sum(c * w for c, w in zip(coef, seen, strict=True)) / coef.sum()
    torch.testing.assert_close(average["weight"], expected)
    assert average["count"].item() == 6  # integer buffers are copied, not averaged
    assert ema_decay(0, 0.99) == 0.0 and ema_decay(10_000, 0.99) == pytest.approx(0.99)


def test_ema_weights_are_what_is_validated_and_returned(tmp_path):
    cfg = _config(epochs=8)
    cfg.train.ema = 0.9
    task = MLPTask()
    out = fit(task, cfg, tmp_path / "g.pt", progress=False)
    state = load_checkpoint(tmp_path / "g.pt")
    # the model ends holding the averaged weights of the best epoch, not the raw ones
    for name, value in task.model.state_dict().items():
        assert torch.equal(value, state["best"]["model"][name])
    assert not torch.equal(state["ema"]["0.weight"], state["model"]["0.weight"])
    # ... and validating them again gives the early-stopping figures
    again = task.evaluate("val")
    assert again["micro_f1"] == out["best_val"]["val_micro_f1"]
    assert again["loss"] == pytest.approx(out["best_val"]["val_loss"])


def test_ema_outside_its_range_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train\.ema.*\[0, 1\)"):
        build_config("DBLP", None, ["train.ema=1.0"])
    assert build_config("DBLP", None, ["train.ema=0.99"]).train.ema == 0.99


class DivergingTask(MLPTask):
    """An MLPTask whose training loss becomes NaN at step 2 of ``epoch`` (1-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.diverge_at, self.epoch, self.step = epoch, 0, 0

    def train_batches(self, epoch):
        self.epoch, self.step = epoch + 1, 0
        for batch in super().train_batches(epoch):
            self.step += 1
            yield batch

    def loss(self, batch):
        loss = super().loss(batch)
        return loss * float("nan") if (self.epoch, self.step) == (self.diverge_at, 2) else loss


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    from brlgraph.errors import TrainingError

    cfg = _config(epochs=10)
    with pytest.raises(TrainingError) as err:
        fit(DivergingTask(epoch=3), cfg, tmp_path / "n.pt", progress=False)
    message = str(err.value)
    assert "loss is nan at epoch 3, step 2" in message and "train.lr" in message
    assert str(tmp_path / "n.pt") in message and "holds epoch 2" in message and "\n" not in message
    state = load_checkpoint(tmp_path / "n.pt")
    assert state["epoch"] == 2  # the checkpoint of the last finished epoch, untouched
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_loss_that_is_nan_from_the_start_leaves_no_checkpoint(tmp_path):
    from brlgraph.errors import TrainingError

    with pytest.raises(TrainingError, match="epoch 1, step 2.*wrote no checkpoint"):
        fit(DivergingTask(epoch=1), _config(epochs=3), tmp_path / "m.pt", progress=False)
    assert not (tmp_path / "m.pt").exists()

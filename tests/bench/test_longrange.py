"""Long-range sequence tasks: what the examples are, why local attention cannot answer, the sweep."""

from __future__ import annotations

import json

import pytest
import torch

from brlgraph.bench import longrange as lr
from brlgraph.errors import ConfigError


def test_retrieval_answer_is_the_marked_symbol_in_the_second_half():
    gen = torch.Generator().manual_seed(0)
    symbols, marks, y = lr.make_batch("retrieval", 64, 40, 8, gen)
    assert symbols.shape == marks.shape == (64, 40)
    assert (symbols[:, 0] == 8).all() and (symbols[:, 1:] < 8).all()
    assert ((marks == 1).sum(1) == 1).all() and (marks <= 1).all()
    pos = (marks == 1).float().argmax(1)
    assert (pos >= 20).all()
    assert (y == symbols[torch.arange(64), pos]).all()


def test_matching_marks_two_positions_and_asks_whether_they_are_equal():
    gen = torch.Generator().manual_seed(1)
    symbols, marks, y = lr.make_batch("matching", 2000, 64, 8, gen)
    p1, p2 = (marks == 1).float().argmax(1), (marks == 2).float().argmax(1)
    assert ((marks == 1).sum(1) == 1).all() and ((marks == 2).sum(1) == 1).all()
    assert (p1 != p2).all() and (p1 >= 32).all() and (p2 >= 32).all()
    rows = torch.arange(2000)
    assert (y == (symbols[rows, p1] == symbols[rows, p2]).long()).all()
    assert 0.45 < y.float().mean() < 0.55


def test_unknown_task_and_short_sequences_are_refused():
    gen = torch.Generator()
    with pytest.raises(ConfigError, match="unknown"):
        lr.make_batch("sorting", 1, 16, 4, gen)
    with pytest.raises(ConfigError, match="length"):
        lr.make_batch("retrieval", 1, 2, 4, gen)


def _readout_grad(model: torch.nn.Module, n: int) -> torch.Tensor:
    """|d logits / d token input| per position, summed over classes."""
    gen = torch.Generator().manual_seed(0)
    symbols, marks, _ = lr.make_batch("retrieval", 1, n, 8, gen)
    x = (model.symbols(symbols) + model.marks(marks)).detach().requires_grad_(True)
    h, _ = model.blocks(x)
    model.head(model.norm(h[:, 0])).sum().backward()
    return x.grad.abs().sum(-1)[0]


def test_local_attention_cannot_see_past_layers_times_window_and_brl_can():
    budget = lr.LongRangeBudget(hidden=16, layers=2, heads=2, window=4, reservoir=2)
    local = _readout_grad(lr.build_model("retrieval", "local", budget), 64)
    assert local[: 2 * 4 + 1].min() > 0 and (local[2 * 4 + 1:] == 0).all()
    brl = _readout_grad(lr.build_model("retrieval", "brl", budget), 64)
    assert (brl > 0).all()


def test_cost_measurement_reports_times_and_memory():
    budget = lr.LongRangeBudget(hidden=8, heads=2)
    out = lr.measure_cost("retrieval", "brl", 64, budget.to_dict())
    assert out["step_ms"] > 0 and out["forward_ms"] > 0 and out["peak_rss_mib"] >= out["base_rss_mib"] > 0


def _tiny(**kw) -> lr.LongRangeBudget:
    return lr.LongRangeBudget(hidden=8, heads=2, window=2, reservoir=2, curriculum=[(16, 4, 3), (32, 2, 2)],
                              eval_sequences=8, full_max_length=32, **kw)


def test_sweep_trains_once_evaluates_each_length_and_marks_full_not_run(tmp_path, monkeypatch):
    lines: list[str] = []
    lr.run_longrange(tmp_path, ["retrieval"], ["brl", "full"], [32, 64], [0], _tiny(), progress=False,
                     cost=False, log=lines.append, command="brlgraph bench longrange --test")
    evals = [json.loads(x) for x in (tmp_path / "longrange_eval.jsonl").read_text().splitlines()]
    cells = {(r["model"], r["n"]): r for r in evals}
    assert set(cells) == {("brl", 32), ("brl", 64), ("full", 32), ("full", 64),
                          (lr.LOG_N, 32), (lr.LOG_N, 64)}
    assert cells["full", 64]["accuracy"] is None and cells["full", 64]["note"] == "not run"
    assert 0.0 <= cells["brl", 64]["accuracy"] <= 1.0
    # the log-n row is the same model: at the training length (32) the scale is 1
    assert cells[lr.LOG_N, 32]["accuracy"] == cells["brl", 32]["accuracy"]
    table = (tmp_path / "longrange_accuracy.md").read_text()
    assert "not run" in table and "retrieval / brl (chance 0.125)" in table
    assert f"retrieval / {lr.LOG_N} (chance 0.125)" in table
    assert (tmp_path / "models" / "retrieval-brl-seed0.pt").exists()
    assert (tmp_path / "longrange.png").exists()

    def boom(*a, **k):
        raise AssertionError("a trained model was trained again")

    monkeypatch.setattr(lr, "train_model", boom)
    lr.run_longrange(tmp_path, ["retrieval"], ["brl"], [32, 64, 128], [0], _tiny(), progress=False,
                     cost=False, log=lines.append)
    evals = [json.loads(x) for x in (tmp_path / "longrange_eval.jsonl").read_text().splitlines()]
    # only the new length was evaluated, once as trained and once with the log-n write
    assert sorted(r["model"] for r in evals if r["n"] == 128) == sorted(["brl", lr.LOG_N])


def test_log_n_evaluation_sets_the_write_scale_of_every_brl_layer():
    model = lr.build_model("retrieval", "brl", _tiny())
    x = torch.randint(0, 8, (2, 200)), torch.zeros(2, 200, dtype=torch.long)
    before = model(*x)
    lr.set_write_scale(model, 32)
    layers = [m for m in model.modules() if type(m).__name__ == "BRLAttention"]
    assert len(layers) == 2 and all(m.write_scale_length == 32 for m in layers)
    assert not torch.allclose(model(*x), before)  # 200 tokens > 32: the write sharpens
    lr.set_write_scale(model, None)
    torch.testing.assert_close(model(*x), before)


def test_training_resumes_from_its_checkpoint(tmp_path):
    from brlgraph.bench.common import Deadline, TimeLimitReached

    budget = _tiny()
    whole, _ = lr.train_model("matching", "brl", budget, 0, progress=False)
    ckpt = tmp_path / "c.pt"
    with pytest.raises(TimeLimitReached):
        lr.train_model("matching", "brl", budget, 0, progress=False, checkpoint=ckpt, deadline=Deadline(0), every=2)
    resumed, _ = lr.train_model("matching", "brl", budget, 0, progress=False, checkpoint=ckpt)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)

"""torchrun with two CPU processes (gloo) against one process, on small OGB-layout data.

"Equal" here: the same batches and the same gradient up to the order of the
floating-point sums (DDP sums the two processes' parts). The tests compare every
epoch's training and validation loss within 1e-5 (relative) and every validation and
test metric exactly, for a run resumed under torchrun too. Dropout is 0: with dropout
each process draws the masks of its own part, so the runs would differ as two seeds do.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brlgraph.cli.main import main
from brlgraph.train import distributed
from brlgraph.train.checkpoint import load_checkpoint
from brlgraph.train.experiment import sharded_rows
from tests.data.ogb_samples import write_arxiv, write_mag

ROOT = Path(__file__).resolve().parents[2]
# small and exact: no dropout (see the module doc), two layers of everything kept tiny
COMMON = ["--set", "model.hidden_channels=16", "--set", "model.heads=2", "--set", "model.window=4",
          "--set", "model.reservoir_size=4", "--set", "model.dropout=0.0",
          "--set", "model.input_dropout=0.0", "--set", "train.lr=0.01", "--json", "--quiet"]
MAG = ["--dataset", "ogbn-mag", "--set", "train.batch_size=25", "--set", "sequences.seq_len=8",
       "--set", "sequences.eval_draws=1", "--set", "model.gnn_layers=1"]
ARXIV = ["--dataset", "ogbn-arxiv", "--set", "model.gnn_layers=1"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_mag(data / "ogb", counts={"author": 30, "field_of_study": 8, "institution": 4, "paper": 130},
              num_classes=5, signal=2.0)
    write_arxiv(data / "ogb", num_nodes=160, signal=3.0)
    return {"BRLGRAPH_DATA": str(data), "BRLGRAPH_CACHE": str(data / "cache"), "OMP_NUM_THREADS": "1"}


def torchrun(args: list[str], nproc: int, env: dict[str, str], timeout: float = 300
             ) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone`` with ``nproc`` CPU processes, each
    running ``python *args`` from the repository root (the tests' import root too); the
    calling test fails with the end of the output when the run fails."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    result = subprocess.run([*launcher, *args], env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _train(env, out: Path, args: list[str], nproc: int = 1) -> dict:
    """One run: in this process (``nproc`` 1, as ``brlgraph train`` runs it) or under
    torchrun with ``nproc`` processes; its records, checkpoint and output."""
    if nproc == 1:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                assert main(["train", *args, *COMMON, "--out", str(out)]) == 0
            stdout = buffer.getvalue()
    else:
        stdout = torchrun(["-m", "brlgraph", "train", *args, *COMMON, "--out", str(out)], nproc,
                          env).stdout
    lines = (out / "results.jsonl").read_text().splitlines()
    return {"stdout": stdout, "records": [json.loads(x) for x in lines],
            "checkpoint": load_checkpoint(out / "checkpoint.pt")}


def _same_run(one: dict, two: dict) -> None:
    h1, h2 = one["checkpoint"]["history"], two["checkpoint"]["history"]
    assert len(h1) == len(h2)
    for a, b in zip(h1, h2, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if "loss" in key:
                assert b[key] == pytest.approx(a[key], rel=1e-5), key
            else:
                assert b[key] == a[key], key
    m1, m2 = one["records"][-1]["metrics"], two["records"][-1]["metrics"]
    for key in m1:
        if key in ("seconds", "setup_seconds"):
            continue
        assert m2[key] == (pytest.approx(m1[key], rel=1e-5) if "loss" in key else m1[key]), key


EPOCHS = ["--set", "train.epochs=4"]


@pytest.fixture(scope="module")
def mag_runs(env, tmp_path_factory):
    """ogbn-mag (node as sequence; batches of 25 of 78 targets, so parts of 13 and 12 rows
    and a last batch of 3 in parts of 2 and 1): four epochs in one process, and under
    torchrun with two processes two epochs, then ``--resume`` to four."""
    out = tmp_path_factory.mktemp("mag")
    one = _train(env, out / "one", [*MAG, *EPOCHS])
    first = _train(env, out / "two", [*MAG, "--set", "train.epochs=2"], nproc=2)
    resumed = _train(env, out / "two", [*MAG, *EPOCHS, "--resume"], nproc=2)
    return one, first, resumed


def _written_once(one: dict, two: dict) -> None:
    """Rank 0 alone wrote: records naming the world size, one summary on stdout."""
    assert {r["world_size"] for r in one["records"]} == {1}
    assert {r["world_size"] for r in two["records"]} == {2}
    assert two["stdout"].count("wrote ") == 1
    assert len(two["checkpoint"]["rng_by_rank"]) == 2 and "rng_by_rank" not in one["checkpoint"]


def test_two_processes_equal_one_node_as_sequence(mag_runs):
    one, first, resumed = mag_runs
    _same_run({**one, "checkpoint": {"history": one["checkpoint"]["history"][:2]}},
              {**first, "records": one["records"]})  # the first two epochs
    _same_run(one, resumed)  # all four, the last two after --resume under torchrun
    _written_once(one, resumed)
    assert [r["resumed"] for r in resumed["records"]] == [False, True]
    assert one["records"][-1]["metrics"]["val_accuracy"] > 0.4  # 5 classes: the data is learned


@pytest.mark.parametrize("dataset", ["ogbn-mag", "ogbn-arxiv"])
def test_weighted_parts_give_the_one_process_gradient(env, monkeypatch, dataset):
    """What DDP averages over two processes (each part's mean loss times its weight) is
    the one-process gradient, for both tasks: the sharding torchrun runs above for the
    node-as-sequence task, checked here in one process for both."""
    import torch

    from brlgraph.data.ogb import load_ogb
    from brlgraph.train.config import build_config
    from brlgraph.train.experiment import build_task

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = build_config(dataset, None, [c for c in COMMON if c.startswith("model.")]
                          + ["train.batch_size=25", "sequences.seq_len=8"] * (dataset == "ogbn-mag"))
    task = build_task(load_ogb(dataset), config)
    task.model.train()
    batch = next(iter(task.train_batches(0)))

    def gradient(parts: int | None) -> list[torch.Tensor]:
        task.model.zero_grad()
        if parts is None:
            task.loss(batch).backward()
        for r in range(parts or 0):
            monkeypatch.setattr(distributed, "active", lambda: True)
            monkeypatch.setattr(distributed, "world_size", lambda: parts)
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            (task.loss(batch) / parts).backward()  # DDP's average over the processes
        monkeypatch.undo()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return [p.grad.clone() for p in task.model.parameters() if p.grad is not None]

    whole = gradient(None)
    for parts in (2, 3):
        split = gradient(parts)
        assert len(split) == len(whole)
        for a, b in zip(whole, split, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_one_process_is_not_sharded():
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(10) is None
    # a part holds its rows and weighs its mean by its share of the batch; an empty part
    # (fewer rows than processes) runs row 0 with weight 0
    rows, share = sharded_rows((slice(3, 5), 2 * 2 / 5), 5)
    assert rows.tolist() == [3, 4] and share == pytest.approx(0.8)
    rows, share = sharded_rows((slice(1, 1), 0.0), 1)
    assert rows.tolist() == [0] and share == 0.0

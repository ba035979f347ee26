"""benchmarks/tree_curves.py: training curves of several Tree-NeighborsMatch records on one plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tree_curves.py"


def _record(path: Path, model: str, history: list[list[float]]) -> None:
    rec = {"model": model, "depth": 3, "seed": 0, "steps": 200 * len(history), "rounds": len(history),
           "train_acc": max(h[0] for h in history), "test_acc": history[-1][1], "history": history}
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_curves_of_two_folders_on_one_plot(tmp_path):
    pytest.importorskip("matplotlib")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _record(a, "gcn", [[0.1, 0.1], [0.2, 0.1]])
    _record(a, "brl", [[0.2, 0.2], [0.9, 0.8], [1.0, 1.0]])
    _record(b, "brl", [[0.1, 0.1]])
    out = tmp_path / "curves.png"
    done = _run("--depth", "3", "--out", str(out), f"brl={a}:brl", f"brl, m = 64={b}")
    assert done.returncode == 0, done.stderr
    assert "brl: 600 steps, best training accuracy 1.000, test 1.000" in done.stdout
    assert "brl, m = 64: 200 steps" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_record_is_one_line_naming_the_file(tmp_path):
    a = tmp_path / "a.jsonl"
    _record(a, "gcn", [[0.1, 0.1]])
    done = _run("--depth", "3", "--out", str(tmp_path / "c.png"), f"x={a}:brl")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"tree_curves.py: error: {a}: no record of brl at r = 3, seed 0"]
    assert not (tmp_path / "c.png").exists()

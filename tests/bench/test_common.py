"""What the benchmarks share: result files, tables, plots without matplotlib, memory, time limits."""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from brlgraph.bench import common
from brlgraph.errors import ConfigError, DataError


def test_result_store_keeps_cells_across_instances_and_replaces_by_key(tmp_path):
    path = tmp_path / "r.jsonl"
    store = common.ResultStore(path, ("model", "seed"))
    store.add({"model": "brl", "seed": 1, "acc": 0.5})
    store.add({"model": "gcn", "seed": 1, "acc": 0.2})
    store.add({"model": "brl", "seed": 1, "acc": 0.9})  # a later line wins
    again = common.ResultStore(path, ("model", "seed"))
    assert len(again) == 2 and again.get(model="brl", seed=1)["acc"] == 0.9
    assert again.get(model="brl", seed=2) is None
    assert len(path.read_text().splitlines()) == 3


def test_result_store_names_a_broken_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"model": "a", "seed": 0}) + "\n{not json\n")
    with pytest.raises(ConfigError, match="line 2"):
        common.ResultStore(path, ("model", "seed"))


def test_tables_are_markdown_and_csv(tmp_path):
    frame = pd.DataFrame({"r=2": ["1.00"], "r=3": ["0.50 ± 0.01"]}, index=pd.Index(["gcn"], name="model"))
    common.write_table(tmp_path, "t", frame)
    assert (tmp_path / "t.md").read_text().splitlines() == ["| model | r=2 | r=3 |", "|---|---|---|",
                                                            "| gcn | 1.00 | 0.50 ± 0.01 |"]
    assert pd.read_csv(tmp_path / "t.csv", index_col=0).loc["gcn", "r=3"] == "0.50 ± 0.01"


def test_mean_std_text():
    assert common.mean_std_text([0.9, 0.92], 2, 100) == "91.00 ± 1.41"
    assert common.mean_std_text([0.5]) == "0.50"
    assert common.mean_std_text([]) == "n/a"
    assert common.fmt(None) == "n/a" and common.fmt(1.234, 1) == "1.2"


def test_without_matplotlib_plots_are_skipped_with_one_clear_line(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    lines: list[str] = []
    assert common.plotting(lines.append) is None
    assert len(lines) == 1 and "matplotlib is not installed" in lines[0] and "brlgraph[plot]" in lines[0]
    assert "tables were written" in lines[0]


def test_figure_footer_names_the_command(tmp_path):
    plt = common.plotting()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    path = common.save_figure(fig, tmp_path / "f.png", "brlgraph bench x --out y")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("brlgraph bench x --out y" in t.get_text() for t in fig.texts)


def test_a_long_footer_wraps_inside_the_figure(tmp_path):
    """A command wider than the figure is wrapped, every word kept, inside its width and
    below the axes."""
    plt = common.plotting()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2], [3, 4])
    command = ("brlgraph bench tree-neighbors --depths 7 --models brl --set max_steps=7:9000 "
               "--set reservoir_from_target=true --set max_examples=7:32000 --out runs/tree-r7")
    common.save_figure(fig, tmp_path / "f.png", command)
    footer = fig.texts[-1]
    assert footer.get_text().count("\n") >= 2
    assert " ".join(footer.get_text().split()) == f"made by: {command}"
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # save_figure closed the figure
    box = footer.get_window_extent(renderer)
    assert box.x1 <= fig.bbox.x1
    assert box.y1 <= ax.get_tightbbox(renderer).y0


def _allocate(mib: int) -> dict:
    import numpy as np

    before = common.peak_rss_mib()
    # the peak is a high-water mark (imports may have set it above the current size):
    # a block of before + mib MiB raises it by more than mib whatever the current size
    block = np.ones(int(before + mib) * 2**20 // 8)
    return {"before": before, "after": common.peak_rss_mib(), "sum": float(block[:10].sum())}


def test_isolated_run_sees_its_own_peak_memory():
    out = common.run_isolated(_allocate, 200)
    assert out["sum"] == 10.0
    assert out["after"] - out["before"] > 150


def _fail() -> dict:
    raise ValueError("bad cell")


def test_isolated_failure_is_reported():
    with pytest.raises(RuntimeError, match="ValueError: bad cell"):
        common.run_isolated(_fail)


def _data_error() -> dict:
    raise DataError("hgb/IMDB.zip not found; run brlgraph data download IMDB")


def test_isolated_brlgraph_error_is_raised_again_as_itself():
    with pytest.raises(DataError, match="hgb/IMDB.zip not found"):
        common.run_isolated(_data_error)


def _die() -> dict:
    os._exit(3)


def test_isolated_child_dying_without_an_answer_raises_instead_of_hanging():
    with pytest.raises(RuntimeError, match="_die ended without an answer .exit code 3"):
        common.run_isolated(_die)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_isolated_child_ends_when_its_parent_is_killed():
    # a sweep killed from outside must not leave its running cell behind as an orphan
    parent = subprocess.Popen([sys.executable, "-c",
                               "import time; from brlgraph.bench import common; common.run_isolated(time.sleep, 120)"])
    try:
        deadline = time.monotonic() + 60
        while not (children := _children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert children, "the isolated child did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while any(_running(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(c) for c in children)
    finally:
        parent.kill()
        for c in children if "children" in locals() else []:
            if _running(c):
                os.kill(c, signal.SIGKILL)


def test_deadline():
    common.Deadline(None).check()
    common.Deadline(3600).check()
    with pytest.raises(common.TimeLimitReached):
        common.Deadline(0).check()


def test_renamed_names_are_read_from_one_place():
    assert common.config_key("seq_len") == common.RENAMED["config.seq_len"]
    kw = common.model_kwargs(32, 4)
    assert set(kw) == {common.RENAMED["model.hidden_kwarg"], common.RENAMED["model.reservoir_kwarg"]}


def test_machine_names_the_cpu_model_and_its_vector_extension():
    info = common.machine()
    assert set(info) == {"cpu", "vector", "cpus", "torch"}
    assert info["cpus"] == os.cpu_count() and info["vector"] in ("avx512f", "avx2", "asimd", "other")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        names = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        if names:
            assert info["cpu"] == names[0]
        if " avx2" in text and " avx512f" not in text:
            assert info["vector"] == "avx2"
    assert info["cpu"] in common.machine_text() and info["vector"] in common.machine_text()

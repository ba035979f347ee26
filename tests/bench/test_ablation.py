"""Ablation sweep: which cells exist, how they are resumed and cut, what the table says."""

from __future__ import annotations

import json

import pytest

from brlgraph.bench import ablation as ab
from brlgraph.bench import common
from brlgraph.errors import ConfigError, DataError


def test_variants_cover_the_groups_once():
    keys = [v.key for v in ab.variants()]
    assert len(keys) == len(set(keys))
    assert {f"DBLP/{b}" for b in ab.ALL_BACKENDS} <= set(keys)
    assert {f"20News/{b}" for b in ab.ALL_BACKENDS} <= set(keys)
    assert {"ACM/brl", "ACM/full", "ACM/local", "IMDB/brl", "IMDB/full", "IMDB/local"} <= set(keys)
    assert {"DBLP/brl S=256", "DBLP/full S=256", "DBLP/local S=256"} <= set(keys)
    assert {"DBLP/brl m=4", "DBLP/brl m=16", "DBLP/brl m=64", "20News/brl m=4"} <= set(keys)
    # m = 0 is BRL without its reservoir: the local backend's cell, not a cell of its own
    assert not any("m=0" in k for k in keys)
    with pytest.raises(ConfigError, match="unknown ablation group"):
        ab.variants(["speed"])


def test_long_variants_set_the_sequence_length_and_reservoir_variants_the_size():
    long = {v.name: v for v in ab.variants(["long"])}
    assert f"{common.config_key('seq_len')}=256" in long["brl S=256"].overrides
    res = {v.key: v for v in ab.variants(["reservoir"])}
    assert f"{common.config_key('reservoir')}=16" in res["DBLP/brl m=16"].overrides


def test_a_reservoir_variant_at_the_shipped_size_is_the_brl_cell():
    size = common.config_key("reservoir")
    v = ab.Variant("20News", "brl m=64", ("model.attention=brl", f"{size}=64"), "reservoir")
    assert ab.canonical(v).name == "brl"  # 20News ships m = 64
    v = ab.Variant("DBLP", "brl m=64", ("model.attention=brl", f"{size}=64"), "reservoir")
    assert ab.canonical(v).name == "brl m=64"


@pytest.mark.parametrize("variant", ab.variants(), ids=lambda v: v.key)
def test_every_variant_is_a_valid_config(variant):
    from brlgraph.train.config import build_config

    build_config(variant.dataset, None, [*variant.overrides, "train.ensemble=1", "seed=2", "data.split_seed=2"])


def _fake_run(calls):
    def run(fn, dataset, overrides, seed, out, device):
        calls.append((dataset, tuple(overrides), seed))
        score = 0.9 if "model.attention=brl" in overrides else 0.8
        m = {"test_micro_f1": score + seed / 1000, "test_macro_f1": score, "test_accuracy": score,
             "epochs": 10, "seconds": 20.0}
        return {"metrics": m, "peak_rss_mib": 500.0}
    return run


def test_sweep_resumes_cuts_at_the_deadline_and_tabulates(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(common, "run_isolated", _fake_run(calls))
    lines: list[str] = []
    with pytest.raises(common.TimeLimitReached):
        ab.run_ablation(tmp_path, ["hgb"], [1, 2], ["ACM"], deadline=common.Deadline(0), progress=False,
                        log=lines.append)
    assert calls == []
    ab.run_ablation(tmp_path, ["hgb"], [1, 2], ["ACM"], progress=False, log=lines.append, code="test")
    assert [(c[0], c[2]) for c in calls] == [("ACM", 1), ("ACM", 2)] * 3
    ab.run_ablation(tmp_path, ["hgb"], [1, 2, 3], ["ACM"], progress=False, log=lines.append)
    assert len(calls) == 9  # only seed 3 of each variant was new
    records = [json.loads(x) for x in (tmp_path / "ablation.jsonl").read_text().splitlines()]
    assert all(r["epoch_seconds"] == 2.0 for r in records) and len(records) == 9
    table = (tmp_path / "ablation.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| ACM / brl |"))
    # Micro-F1 90.1, 90.2, 90.3 against local's 80.1, 80.2, 80.3
    assert "| 1,2,3 |" in row and "90.20 ± 0.10" in row and "+10.00 (0.06 / 0.06)" in row
    assert (tmp_path / "ablation.png").exists()


def test_backends_restrict_the_cells_to_those_attention_backends(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(common, "run_isolated", _fake_run(calls))
    ab.run_ablation(tmp_path, ["backends", "reservoir"], [1], ["20News"], progress=False,
                    log=lambda line: None, backends=["brl", "local"])
    # brl, local, and the reservoir sizes (BRL) but neither full attention nor the others
    assert sorted(c[1] for c in calls) == sorted([
        ("model.attention=brl",), ("model.attention=local",),
        ("model.attention=brl", f"{common.config_key('reservoir')}=4"),
        ("model.attention=brl", f"{common.config_key('reservoir')}=16")])
    ab.run_ablation(tmp_path, ["backends"], [1], ["DBLP"], progress=False, log=lambda line: None,
                    backends=["brl"])
    table = (tmp_path / "ablation.md").read_text()  # accuracy for 20News, F1 for DBLP, no "nan"
    assert "test accuracy (%)" in table and "test Micro-F1 (%)" in table and "nan" not in table
    with pytest.raises(ConfigError, match="unknown attention backend 'mlp'"):
        ab.run_ablation(tmp_path, ["backends"], [1], backends=["mlp"], progress=False)


def test_a_cell_with_a_config_error_stops_the_sweep_with_one_line_naming_it(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise ConfigError("sequence length 9607 exceeds linformer max_len=4096")

    monkeypatch.setattr(common, "run_isolated", refuse)
    with pytest.raises(ConfigError, match="ablation cell 20News/linformer seed 1: sequence length 9607"):
        ab.run_ablation(tmp_path, ["backends"], [1], ["20News"], progress=False, backends=["linformer"])


def test_sweep_skips_a_data_set_whose_files_are_missing(tmp_path, monkeypatch):
    def missing(*a, **k):
        raise DataError("hgb/IMDB.zip not found")

    monkeypatch.setattr(common, "run_isolated", missing)
    lines: list[str] = []
    with pytest.raises(Exception, match="no ablation cell"):
        ab.run_ablation(tmp_path, ["hgb"], [1], ["IMDB"], progress=False, log=lines.append)
    assert any("skipping IMDB" in line for line in lines)


def test_plot_gives_a_variant_one_colour_in_every_panel_and_a_log_axis_to_wide_times(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    figures = []
    monkeypatch.setattr(common, "save_figure", lambda fig, path, command: figures.append(fig))

    def rec(dataset, variant, seconds):
        return {"dataset": dataset, "variant": variant, "seed": 1, "epoch_seconds": seconds,
                "metrics": {"test_micro_f1": 0.9, "test_macro_f1": 0.9, "test_accuracy": 0.7}}

    records = [rec("DBLP", "brl", 2.0), rec("DBLP", "local", 1.8), rec("DBLP", "local S=256", 6.0),
               rec("DBLP", "brl S=256", 6.2), rec("20News", "brl", 0.3), rec("20News", "full", 3.9)]
    ab.plot_ablation(records, ab.variants(), tmp_path, "test")
    (fig,) = figures
    colour = {}
    for ax in fig.axes:
        for container in ax.containers:
            name = container.get_label().removesuffix(" S=256")
            colour.setdefault(name, set()).add(container.lines[0].get_color())
    assert set(colour) == {"brl", "local", "full"} and all(len(c) == 1 for c in colour.values())
    assert [ax.get_xscale() for ax in fig.axes] == ["linear", "linear", "log"]

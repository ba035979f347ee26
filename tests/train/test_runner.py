"""The reproduce runner: result tables beside the published rows, gaps, score files."""

from __future__ import annotations

import json
import math

from brlgraph.train.published import PUBLISHED_HGB
from brlgraph.train.runner import hgb_gaps, hgb_table, mean_std, write_scores


def test_table_rows_and_values():
    runs = [{"test_micro_f1": 0.9, "test_macro_f1": 0.8}, {"test_micro_f1": 0.92, "test_macro_f1": 0.84}]
    frame = hgb_table({"DBLP": runs}, ["DBLP", "IMDB"])
    assert list(frame.columns) == ["DBLP Micro-F1", "DBLP Macro-F1", "IMDB Micro-F1", "IMDB Macro-F1"]
    ours = frame.iloc[0]
    mean, std = mean_std([90.0, 92.0])
    assert ours["DBLP Micro-F1"] == f"{mean:.2f} ± {std:.2f}" == "91.00 ± 1.41"
    assert ours["IMDB Micro-F1"] == "n/a"
    assert frame.loc["HINormer", "DBLP Micro-F1"] == "94.94"
    assert frame.loc["HINormer", "DBLP Macro-F1"] == "94.57"
    assert set(PUBLISHED_HGB) <= set(frame.index)


def test_gaps_are_our_shown_mean_minus_each_published_row():
    runs = [{"test_micro_f1": 0.9383, "test_macro_f1": 0.93}, {"test_micro_f1": 0.9383, "test_macro_f1": 0.95}]
    frame = hgb_gaps({"ACM": runs}, ["ACM", "IMDB"])
    assert list(frame.index) == ["ACM Micro-F1", "ACM Macro-F1"]  # IMDB has no runs
    assert list(frame.columns) == ["ours", "standard error", *PUBLISHED_HGB]
    # HINormer's ACM row is 93.83 / 93.91: an exact tie shows as +0.00, not -0.00
    assert frame.loc["ACM Micro-F1", "HINormer"] == "+0.00"
    assert frame.loc["ACM Micro-F1", "standard error"] == "0.00"
    assert frame.loc["ACM Macro-F1", "ours"] == "94.00"
    assert frame.loc["ACM Macro-F1", "HINormer"] == "+0.09"
    assert frame.loc["ACM Macro-F1", "LMSPS (2024)"] == "-0.73"
    assert frame.loc["ACM Macro-F1", "standard error"] == f"{math.sqrt(2.0) / math.sqrt(2):.2f}" == "1.00"


def test_scores_file_keeps_the_numbers_of_every_seed(tmp_path):
    write_scores(tmp_path / "s.json", {"20News": [{"test_accuracy": 0.68, "epochs": 300, "val_loss": math.nan,
                                                   "note": "text", "train_loss": math.inf},
                                                  {"test_accuracy": 0.66, "epochs": 250}]})
    assert json.loads((tmp_path / "s.json").read_text()) == {
        "20News": [{"test_accuracy": 0.68, "epochs": 300}, {"test_accuracy": 0.66, "epochs": 250}]}


def test_table_adds_a_one_model_row_when_runs_are_ensembles():
    ensemble = [{"test_micro_f1": 0.94, "test_macro_f1": 0.93, "one_model_test_micro_f1": 0.92,
                 "one_model_test_macro_f1": 0.91}] * 2
    plain = [{"test_micro_f1": 0.95, "test_macro_f1": 0.945}]
    frame = hgb_table({"ACM": ensemble, "DBLP": plain}, ["DBLP", "ACM"])
    ours, one = frame.index[0], frame.index[1]
    assert one == f"{ours}, one model (ensemble member 0)"
    assert frame.loc[ours, "ACM Micro-F1"] == "94.00 ± 0.00" and frame.loc[one, "ACM Micro-F1"] == "92.00 ± 0.00"
    assert frame.loc[one, "ACM Macro-F1"] == "91.00 ± 0.00"
    assert frame.loc[one, "DBLP Micro-F1"] == frame.loc[ours, "DBLP Micro-F1"]  # no ensemble: the runs as they are
    assert len(hgb_table({"DBLP": plain}, ["DBLP"])) == len(PUBLISHED_HGB) + 1  # no ensembles, no extra row


def test_reproduce_keeps_member_zero_of_an_ensemble_beside_the_ensemble(tmp_path, monkeypatch):
    from brlgraph.train import runner

    def fake_runs(runs, *args, **kwargs):  # two seeds of a two-member ensemble, no training
        for dataset, seed in runs:
            m = {"test_micro_f1": 0.9 + seed / 100, "test_macro_f1": 0.8, "epochs": 4, "seconds": 1.0}
            member = {"seed": seed, "test_micro_f1": 0.9, "test_macro_f1": 0.7 + seed / 100}
            yield dataset, seed, {"dataset": dataset, "attention": "brl", "metrics": m,
                                  "record": {"members": [member, {**member, "seed": seed + 7}]},
                                  "predictions": {"global_id": [5], "node_type_id": 0, "labels": [[1]]}}

    monkeypatch.setattr(runner, "_run_all", fake_runs)
    lines = []
    frame = runner.reproduce_hgb(["ACM"], 2, tmp_path, log=lines.append)
    scores = json.loads((tmp_path / "hgb_scores.json").read_text())["ACM"]
    assert [s["one_model_test_macro_f1"] for s in scores] == [0.71, 0.72]
    assert frame.iloc[1]["ACM Macro-F1"] == "71.50 ± 0.71" and frame.iloc[0]["ACM Macro-F1"] == "80.00 ± 0.00"
    assert "ensemble of 2; member 0 alone 90.00 / 71.00" in lines[0]

"""``brlgraph`` as a whole under random arguments: it returns 0 or 2 (argparse's own usage
errors exit 2), prints each error as one line, and no other exception escapes.

No run trains: the data folder is empty (and so is scikit-learn's), so a run that gets
past its checks stops at its data with a DataError, and downloads are refused."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brlgraph.cli.main import main
from brlgraph.errors import DataError
from brlgraph.train.config import DATASETS, _flatten, default_config

KEYS = sorted(_flatten(default_config("DBLP").to_dict()))
NAMES = st.one_of(st.sampled_from([*DATASETS, "dblp", "Cora", "", "Mini-ImageNet", "20news"]),
                  st.text(max_size=8))
VALUES = st.one_of(st.sampled_from(["0", "-1", "1", "1e3", "-0.01", "nan", "inf", "1.5", "true", "brl",
                                    "[1]", "{a = 1}", "99999999999999999999", "'x'", ""]),
                   st.text(max_size=10))
TEXT = st.one_of(st.sampled_from(["", "-", "--", "-1", "0", "1", "x", "DBLP", "1-3", "1,1", "/dev/null/x"]),
                 st.text(max_size=10))


def _option(name: str, value):
    return st.tuples(st.just(name), value).map(list)


def _flag(name: str):
    return st.just([name])


SET = st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), VALUES).map(
    lambda kv: ["--set", f"{kv[0]}={kv[1]}"])
OUT = st.sampled_from(["out", "out/nested/run", "/dev/null/run", "file.txt", "."]).map(lambda o: ["--out", o])
COMMON = [SET, OUT, _option("--device", st.sampled_from(["cpu", "cuda", "tpu", ""])), _flag("--quiet"),
          _flag("--resume"), _flag("--allow-pickle")]
#: a stray word, a missing value: argparse's usage errors
STRAY = st.tuples(TEXT).map(list)
TRAIN = [_option("--attention", TEXT), _option("--seed", TEXT),
         _option("--config", st.sampled_from(["bad.toml", "missing.toml", "file.txt"])), _flag("--json")]
REPRODUCE = [_option("--datasets", st.lists(NAMES, max_size=3).map(",".join)),
             _option("--seeds", st.one_of(TEXT, st.sampled_from(["2", "0", "3-1", "1,2", "5000", "1-99999"]))),
             _option("--jobs", st.sampled_from(["1", "0", "-2", "x"]))]
DATA = [_option("--root", st.sampled_from(["data", "nowhere", "file.txt"])), _option("--path", TEXT),
        _flag("--json"), _option("--seed", TEXT), _flag("--allow-pickle")]


def _argv(head, options):
    return st.tuples(head, st.lists(st.one_of(*options), max_size=6)).map(
        lambda t: [*t[0], *(part for option in t[1] for part in option)])


TRAIN_ARGV = _argv(NAMES.map(lambda name: ["train", "--dataset", name]), TRAIN + COMMON)
REPRODUCE_ARGV = _argv(st.sampled_from([["reproduce", "hgb"], ["reproduce", "knn"]]), REPRODUCE + COMMON)
DATA_ARGV = _argv(st.tuples(st.sampled_from(["stats", "verify", "list", "download"]), NAMES).map(
    lambda t: ["data", t[0], *([t[1]] if t[0] != "list" else [])]), DATA)
WILD_ARGV = st.one_of(
    _argv(st.sampled_from([["train"], ["reproduce"], ["reproduce", "x"], ["data"], ["data", "x"], []]),
          [*TRAIN, *REPRODUCE, *DATA, *COMMON, STRAY]),
    st.lists(TEXT, max_size=4),
)
#: mostly commands that pass argparse and meet brlgraph's own checks, some that do not
ARGV = st.one_of(TRAIN_ARGV, TRAIN_ARGV, TRAIN_ARGV, REPRODUCE_ARGV, REPRODUCE_ARGV, DATA_ARGV, DATA_ARGV,
                 WILD_ARGV)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    empty = tmp_path / "data"
    empty.mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "bad.toml").write_text("[train\nlr = ")
    for name, value in {"BRLGRAPH_DATA": empty, "SCIKIT_LEARN_DATA": empty,
                        "BRLGRAPH_CACHE": tmp_path / "cache"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refuse_download(*args, **kwargs):
    raise DataError("no downloads in this test")


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ARGV)
def test_fuzz_cli_returns_0_or_2_with_one_line_errors(sandbox, argv):
    err = io.StringIO()
    with mock.patch("brlgraph.data.sources.download", _refuse_download), \
            mock.patch("brlgraph.data.ogb.fetch_ogb", _refuse_download), \
            contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
            code = exit_.code
    assert code in (0, 2), (argv, err.getvalue())
    text = err.getvalue()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("brlgraph: error:")]
    if code == 2 and errors:
        assert all("\n" not in line for line in errors)
    assert Path.cwd() == sandbox and os.listdir(sandbox / "data") == []

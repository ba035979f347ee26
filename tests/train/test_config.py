"""Config loading: shipped defaults, TOML files, --set overrides with type checks."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brlgraph.errors import ConfigError
from brlgraph.train.config import (
    DATASETS,
    Config,
    _flatten,
    apply_mapping,
    build_config,
    config_from_dict,
    default_config,
    load_file,
    parse_override,
    validate,
)


@pytest.mark.parametrize("name", DATASETS)
def test_shipped_defaults_load_and_name_their_dataset(name):
    from importlib import resources

    assert (resources.files("brlgraph") / "configs" / f"{name.lower()}.toml").is_file()
    cfg = default_config(name.lower())
    assert cfg.data.name == name
    assert cfg.train.epochs > 0 and cfg.sequences.seq_len > 0


@pytest.mark.parametrize("name", DATASETS)
def test_shipped_configs_hold_only_what_differs_from_the_defaults(name):
    from importlib import resources

    from brlgraph.train.config import _flatten, parse_toml

    text = (resources.files("brlgraph") / "configs" / f"{name.lower()}.toml").read_text()
    assert len(text.splitlines()) <= 40
    defaults = _flatten(Config().to_dict())
    for key, value in _flatten(parse_toml(text, name)).items():
        assert key == "data.name" or value != defaults[key], f"{key} = {value!r} is the default"


def test_split_seed_is_the_run_seed_unless_set():
    assert build_config("DBLP", None, ["seed=4"]).split_seed == 4
    cfg = build_config("DBLP", None, ["seed=4", "data.split_seed=2"])
    assert (cfg.seed, cfg.split_seed) == (4, 2)
    assert Config().data.split_seed is None


@pytest.mark.parametrize(("dataset", "item", "task"), [
    ("DBLP", "data.knn_k=10", "graph-as-one-sequence"),
    ("ACM", "sequences.order=bfs", "graph-as-one-sequence"),
    ("20News", "sequences.seq_len=30", "node-as-sequence"),
    ("20News", "model.path_tokens=1", "node-as-sequence"),
    ("20News", "model.reservoir_from_target=true", "node-as-sequence"),
    ("20News", "train.batch_size=64", "node-as-sequence"),
    ("DBLP", "train.positive_weight=2", "multi-label"),
    ("20News", "train.positive_weight=2", "multi-label"),
])
def test_a_key_of_another_task_is_an_error_in_both_directions(dataset, item, task):
    key = item.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')} = .* applies to {task} data sets only; "
                                          rf"{dataset} "):
        build_config(dataset, None, [item])


def test_keys_of_the_data_sets_own_task_are_taken():
    assert build_config("20News", None, ["data.knn_k=10"]).data.knn_k == 10
    assert build_config("IMDB", None, ["train.positive_weight=2"]).train.positive_weight == 2.0
    assert build_config("DBLP", None, ["train.batch_size=64"]).train.batch_size == 64


def test_overrides_are_typed_and_layered(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('seed = 7\n[train]\nlr = 0.01\nschedule = "cosine"\n[model]\nlayers = 3\n')
    cfg = build_config("DBLP", path, ["train.lr=5e-4", "model.attention=full",
                                      "train.deterministic=false", "train.weight_decay=0"])
    assert cfg.seed == 7 and cfg.model.layers == 3 and cfg.train.schedule == "cosine"
    assert cfg.train.lr == 5e-4 and cfg.model.attention == "full"
    assert cfg.train.deterministic is False
    assert isinstance(cfg.train.weight_decay, float)  # an int is accepted for a float key


def test_round_trip_through_dict():
    cfg = build_config("IMDB", None, ["model.hidden_channels=64"])
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("item, words", [
    ("train.lrr=1", ["train.lrr", "unknown"]),
    ("nosuch.key=1", ["nosuch", "unknown"]),
    ("train.epochs=1.5", ["train.epochs", "int"]),
    ("train.deterministic=1", ["train.deterministic", "bool"]),
    ("model.attention=softmax", ["model.attention", "brl"]),
    ("train.schedule=linear", ["train.schedule", "cosine"]),
    ("noequals", ["key=value"]),
])
def test_bad_override_names_the_key(item, words):
    with pytest.raises(ConfigError) as err:
        build_config("DBLP", None, [item])
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("text, words", [
    ("[train\nlr = 1", ["malformed TOML"]),
    ("[train]\nbatchsize = 3\n", ["train.batchsize", "unknown"]),
    ("[model]\nhidden_channels = 'big'\n", ["model.hidden_channels", "int"]),
])
def test_bad_file_names_file_and_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_file(path)
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_missing_file_and_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_file(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="unknown data set 'Cora'"):
        build_config("Cora")


def test_parse_override_reads_toml_values():
    assert parse_override("train.lr=1e-3") == ("train.lr", 1e-3)
    assert parse_override("model.attention=brl") == ("model.attention", "brl")
    assert parse_override("x = true") == ("x", True)
    assert Config().model.attention == "brl"


@pytest.mark.parametrize(("item", "message"), [("model.path_tokens=5", r"model\.path_tokens.*0\.\.4"),
                                               ("model.path_tokens=-1", r"model\.path_tokens"),
                                               ("train.ema=1.0", r"train\.ema.*\[0, 1\)"),
                                               ("model.gnn=gin", r"model\.gnn.*gcn, sage, gat, hsage, rsage"),
                                               ("model.embedding_std=0", r"model\.embedding_std.*> 0"),
                                               ("train.lr=-0.01", r"'train\.lr' must be in \(0, 1\], got -0\.01"),
                                               ("train.lr=1000.0", r"'train\.lr' must be in \(0, 1\]"),
                                               ("train.epochs=0", r"'train\.epochs' must be >= 1, got 0"),
                                               ("train.batch_size=-5", r"'train\.batch_size' must be >= 1"),
                                               ("model.hidden_channels=0", r"'model\.hidden_channels' must be >= 1"),
                                               ("model.dropout=1.5", r"'model\.dropout' must be in \[0, 1\)"),
                                               ("train.weight_decay=-1", r"'train\.weight_decay' must be >= 0"),
                                               ("model.window=0", r"'model\.window' must be >= 1"),
                                               ("model.reservoir_size=-1", r"'model\.reservoir_size' must be >= 1"),
                                               ("model.reservoir_weight=1.0", r"'model\.reservoir_weight' must be in \(0, 1\)"),
                                               ("model.reservoir_weight=0", r"'model\.reservoir_weight' must be in \(0, 1\)"),
                                               ("sequences.seq_len=0", r"'sequences\.seq_len' must be >= 1"),
                                               ("model.hidden_channels=30", r"hidden_channels \(30\) must be divisible"),
                                               ])
def test_values_out_of_range_are_errors_naming_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        build_config("ACM", None, [item])


def test_reservoir_from_target_is_a_model_key():
    assert build_config("DBLP", None, []).model.reservoir_from_target is False
    config = build_config("DBLP", None, ["model.reservoir_from_target=true"])
    assert config.model.reservoir_from_target is True


def test_path_tokens_only_for_node_as_sequence_data_sets():
    assert build_config("IMDB", None, ["model.path_tokens=2"]).model.path_tokens == 2
    with pytest.raises(ConfigError, match=r"model\.path_tokens.*20News"):
        build_config("20News", None, ["model.path_tokens=1"])
    by_hand = build_config("20News")
    by_hand.model.path_tokens = 1  # set in code, past the checks of build_config
    with pytest.raises(ConfigError, match=r"model\.path_tokens.*20News"):
        validate(by_hand)



@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", ["train.lr", "train.grad_clip", "train.weight_decay", "model.logit_norm",
                                 "model.embedding_std", "model.dropout"])
def test_nan_and_infinity_are_refused_for_every_float_key(key, value):
    with pytest.raises(ConfigError, match=rf"'{key}' must be a finite number, got {value}"):
        build_config("DBLP", None, [f"{key}={value}"])
    cfg = build_config("DBLP")
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, float(value))  # set in code: validate catches it
    with pytest.raises(ConfigError, match=rf"'{key}' must be a finite number"):
        validate(cfg)


@pytest.mark.parametrize(("item", "message"), [
    ("seed=-1", r"'seed' must be in 0\.\.4294967295, got -1"),
    ("seed=4294967296", r"'seed' must be in 0\.\.4294967295"),
    ("data.split_seed=-2", r"'data\.split_seed' must be unset or in 0\.\.4294967295"),
    ("train.epochs=99999999999999999999", r"'train\.epochs' must be at most 2147483647"),
    ("train.batch_size=2147483648", r"'train\.batch_size' must be at most 2147483647"),
])
def test_seeds_and_sizes_stay_within_what_torch_takes(item, message):
    with pytest.raises(ConfigError, match=message):
        build_config("DBLP", None, [item])
    assert build_config("DBLP", None, ["seed=4294967295"]).seed == 4294967295


# --------------------------------------------------------------------------- fuzzing

KEYS = sorted(_flatten(Config().to_dict()))
#: values of every type TOML has, with the edges of each range
VALUES = st.one_of(
    st.integers(), st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63, -(2**63), 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=12),
    st.none(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
#: ``--set`` text: TOML literals, bare words, and anything else
RAW = st.one_of(
    st.sampled_from(["0", "-1", "1e3", "-0.01", "nan", "inf", "-inf", "1.5", "true", "''", "[]", "{}",
                     "[1, 2]", "{a = 1}", "99999999999999999999", "brl", "cosine", "0x10", "1_000"]),
    st.text(max_size=16),
)


def _only_config_errors(build) -> None:
    """``build()`` succeeds or raises a ConfigError; anything else fails the test."""
    with contextlib.suppress(ConfigError):
        build()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DATASETS), st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)),
                                                         RAW), max_size=4))
def test_fuzz_overrides_raise_only_config_errors(dataset, items):
    _only_config_errors(lambda: build_config(dataset, None, [f"{k}={v}" for k, v in items]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(DATASETS), st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
def test_fuzz_config_values_raise_only_config_errors(dataset, values):
    def build():
        cfg = build_config(dataset)
        nested: dict = {}
        for key, value in values.items():
            *sections, name = key.split(".")
            target = nested
            for section in sections:
                target = target.setdefault(section, {})
            target[name] = value
        validate(apply_mapping(cfg, nested, "fuzz.toml"))

    _only_config_errors(build)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_config_files_raise_only_config_errors(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _only_config_errors(lambda: build_config("DBLP", path))

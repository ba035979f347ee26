"""Config loading: shipped defaults, TOML files, --set overrides with type checks."""

from __future__ import annotations

import pytest

from brlgraph.errors import ConfigError
from brlgraph.train.config import (
    DATASETS,
    Config,
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
    assert cfg.train.epochs > 0 and cfg.sequences.length > 0


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
    cfg = build_config("IMDB", None, ["model.hidden=64"])
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
    ("[model]\nhidden = 'big'\n", ["model.hidden", "int"]),
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
                                               ("model.embedding_std=0", r"model\.embedding_std.*> 0")])
def test_values_out_of_range_are_errors_naming_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        build_config("ACM", None, [item])


def test_path_tokens_only_for_node_as_sequence_data_sets():
    assert build_config("IMDB", None, ["model.path_tokens=2"]).model.path_tokens == 2
    with pytest.raises(ConfigError, match=r"model\.path_tokens.*20News"):
        build_config("20News", None, ["model.path_tokens=1"])
    by_hand = build_config("20News")
    by_hand.model.path_tokens = 1  # set in code, past the checks of build_config
    with pytest.raises(ConfigError, match=r"model\.path_tokens.*20News"):
        validate(by_hand)


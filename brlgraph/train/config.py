"""Run configuration: a dataclass per section, loaded from TOML, overridden by ``--set``.

A configuration has four sections, mirroring the path of the data::

    [data]       which data set, its split seed
    [sequences]  how each node becomes a token sequence
    [model]      the BRLFormer (attention backend, sizes, GNN pre-encoder)
    [train]      optimiser, schedule, early stopping, determinism

The tuned defaults of each data set ship in ``brlgraph/configs/<name>.toml``.
Every key is type-checked; an unknown key, a wrong type or a malformed file
raises :class:`~brlgraph.errors.ConfigError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from brlgraph.errors import ConfigError

HGB_DATASETS = ("DBLP", "ACM", "IMDB", "Freebase")
KNN_DATASETS = ("20News",)
DATASETS = HGB_DATASETS + KNN_DATASETS


@dataclass
class DataConfig:
    name: str = "DBLP"
    #: seed of the random train/validation split (HGB) or 50/25/25 split (kNN)
    split_seed: int = 0
    #: neighbours per node of the kNN graph (20News)
    knn_k: int = 5


@dataclass
class SequenceConfig:
    #: tokens per sequence, the target node included (node-as-sequence mode)
    length: int = 50
    #: deepest hop sampled for the context
    max_hops: int = 3
    #: draw fresh context nodes at every epoch (train sequences only); one-sequence
    #: data sets (20News): a fresh node order every epoch (``order``'s ties broken at random)
    resample: bool = True
    #: evaluation averages the logits of this many independently drawn sequences
    #: per target (test-time ensembling over the sampled context; 1 = one draw);
    #: one-sequence data sets: over this many node orders (the first is ``order``'s own)
    eval_draws: int = 1
    #: node order of the graph-as-one-sequence mode ("rcm" or "bfs")
    order: str = "rcm"


@dataclass
class ModelConfig:
    #: attention backend: brl, full, local, performer, linformer, regla
    attention: str = "brl"
    hidden: int = 256
    layers: int = 2
    heads: int = 8
    dropout: float = 0.2
    #: half-width of the local window of BRL/local attention
    window: int = 16
    #: compressed reservoir tokens (m) of BRL attention
    reservoir: int = 16
    #: GNN pre-encoder layers over the whole graph (0 = none)
    gnn_layers: int = 2
    #: kind of GNN pre-encoder: gcn, sage, gat, hsage (SAGE with a weight per node-type
    #: pair), rsage (SAGE with a weight per edge type, each followed in its own direction)
    gnn: str = "gcn"
    #: dropout applied to raw input features
    input_dropout: float = 0.0
    #: node-as-sequence models: one extra token per type path of 1..K edges from the
    #: target's type, the mean node state along it (SeHGNN's metapaths); 0 = none
    path_tokens: int = 0
    #: > 0: the logits are L2-normalised and scaled by this (HINormer uses 1); 0 = off
    logit_norm: float = 0.0
    #: initial standard deviation of every learned embedding table (featureless nodes,
    #: node types, hops, path steps); nn.Embedding's default is 1, so embeddings start
    #: with norms near sqrt(hidden) while projected bag-of-words rows start at 0.2-1.5
    embedding_std: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 100
    #: stop after this many epochs without a better validation score
    patience: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "constant"
    grad_clip: float = 1.0
    #: multi-label only: BCE's pos_weight on every label. A weight w moves the 0.5
    #: threshold on the trained model's output to a probability of 1 / (1 + w) under
    #: the unweighted loss
    positive_weight: float = 1.0
    #: decay of an exponential moving average of the weights, updated after every
    #: optimiser step; validation, early stopping and the final model use the
    #: average (0 = off, the weights as trained)
    ema: float = 0.0
    #: torch.use_deterministic_algorithms + seeded everything. On the CPU two runs are
    #: identical; on an H100 (torch 2.11) two runs gave the same predictions and scores
    #: and a test loss 2e-7 apart (relative)
    deterministic: bool = True
    #: validation metric used for early stopping
    monitor: str = "val_micro_f1"
    #: rows of target nodes per forward pass during evaluation
    eval_batch_size: int = 1024
    #: members of a deep ensemble: the run trains this many models on the same split,
    #: member k from seed ``derive_seed(seed, "member", k)`` (member 0 is the run itself),
    #: each early-stopped on validation alone, and evaluates the mean of their predicted
    #: probabilities; 1 = one model. Costs that many times the training time
    ensemble: int = 1


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


CHOICES = {
    "model.attention": ("brl", "full", "local", "performer", "linformer", "regla"),
    "train.schedule": ("constant", "cosine"),
    "train.monitor": ("val_micro_f1", "val_macro_f1", "val_accuracy", "val_loss"),
    "sequences.order": ("rcm", "bfs", "identity"),
    "model.gnn": ("gcn", "sage", "gat", "hsage", "rsage"),
}

#: keys whose values must lie in a range: key -> (test, what the range is)
BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "train.ema": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (0 = off)"),
    "train.positive_weight": (lambda v: v > 0.0, "> 0 (1 = unweighted)"),
    "model.path_tokens": (lambda v: 0 <= v <= 4, "in 0..4 (0 = none)"),
    "model.embedding_std": (lambda v: v > 0.0, "> 0"),
    "sequences.eval_draws": (lambda v: v >= 1, ">= 1"),
    "train.ensemble": (lambda v: 1 <= v <= 32, "in 1..32 (1 = one model)"),
}


#: keys that only node-as-sequence models (HGB) read: elsewhere they must keep their default
NODE_SEQUENCE_ONLY = ("model.path_tokens",)


def _section_names() -> list[str]:
    return [k for k, tp in typing.get_type_hints(Config).items() if dataclasses.is_dataclass(tp)]


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_type(value: Any, tp: Any, key: str, source: str) -> Any:
    """Return ``value`` converted to ``tp`` when that is lossless, else raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
        for arg in typing.get_args(tp):
            if arg is not type(None):
                try:
                    return _check_type(value, arg, key, source)
                except ConfigError:
                    pass
        raise ConfigError(f"{source}: '{key}' must be {tp}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{source}: '{key}' must be of type {name}, got {value!r} ({type(value).__name__})")


def _apply(cfg: Config, key: str, value: Any, source: str) -> None:
    """Set dotted ``key`` (``train.lr`` or ``seed``) on ``cfg``, checking name and type."""
    parts = key.split(".")
    target: Any = cfg
    for i, part in enumerate(parts[:-1]):
        sub = getattr(target, part, None) if part in _field_types(type(target)) else None
        if sub is None or not dataclasses.is_dataclass(sub):
            raise ConfigError(f"{source}: unknown config key '{'.'.join(parts[: i + 1])}' "
                              f"(sections: {', '.join(_section_names())})")
        target = sub
    name = parts[-1]
    types_ = _field_types(type(target))
    if name not in types_ or dataclasses.is_dataclass(getattr(target, name)):
        known = ", ".join(k for k in types_ if not dataclasses.is_dataclass(getattr(target, k)))
        raise ConfigError(f"{source}: unknown config key '{key}' (known here: {known})")
    value = _check_type(value, types_[name], key, source)
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if key in BOUNDS and not BOUNDS[key][0](value):
        raise ConfigError(f"{source}: '{key}' must be {BOUNDS[key][1]}, got {value!r}")
    setattr(target, name, value)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def apply_mapping(cfg: Config, mapping: dict[str, Any], source: str) -> Config:
    """Apply a (nested) mapping of TOML values to ``cfg``; keys are checked."""
    for key, value in _flatten(mapping).items():
        _apply(cfg, key, value, source)
    return cfg


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: malformed TOML: {err}") from None


def load_file(path: str | Path, cfg: Config | None = None) -> Config:
    """Load ``path`` (TOML) on top of ``cfg`` (default: the built-in defaults)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    return apply_mapping(cfg or Config(), parse_toml(text, str(path)), str(path))


def canonical_dataset(name: str) -> str:
    """The canonical spelling of a data set name (case-insensitive), or ConfigError."""
    for known in DATASETS:
        if name.lower() == known.lower():
            return known
    raise ConfigError(f"unknown data set '{name}' (choose one of {', '.join(DATASETS)})")


def default_config(dataset: str) -> Config:
    """The tuned defaults shipped for ``dataset`` (``brlgraph/configs/<name>.toml``)."""
    dataset = canonical_dataset(dataset)
    res = resources.files("brlgraph") / "configs" / f"{dataset.lower()}.toml"
    cfg = Config()
    cfg.data.name = dataset
    if res.is_file():
        source = f"brlgraph/configs/{dataset.lower()}.toml"
        apply_mapping(cfg, parse_toml(res.read_text(), source), source)
        cfg.data.name = canonical_dataset(cfg.data.name)
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as a TOML value (bare words are strings)."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected key=value, e.g. --set train.lr=0.001")
    key, raw = (s.strip() for s in item.split("=", 1))
    if not key:
        raise ConfigError(f"--set '{item}': empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as cosine or brl
    return key, value


def build_config(dataset: str, config_file: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults of ``dataset`` <- ``config_file`` <- ``--set`` overrides, all checked."""
    cfg = default_config(dataset)
    if config_file is not None:
        cfg = load_file(config_file, cfg)
    for item in overrides:
        key, value = parse_override(item)
        _apply(cfg, key, value, f"--set {item}")
    cfg.data.name = canonical_dataset(cfg.data.name)
    return validate(cfg)


def validate(cfg: Config) -> Config:
    """The checks no single key can make, and the ranges of :data:`BOUNDS` again for a
    Config built or changed in code (keys set from files and ``--set`` were checked
    as they were read, with their source in the message)."""
    flat = _flatten(cfg.to_dict())
    for key, (ok, what) in BOUNDS.items():
        if not ok(flat[key]):
            raise ConfigError(f"'{key}' must be {what}, got {flat[key]!r}")
    if cfg.data.name not in HGB_DATASETS:
        defaults = _flatten(Config().to_dict())
        for key in NODE_SEQUENCE_ONLY:
            if flat[key] != defaults[key]:
                raise ConfigError(f"{key} applies to node-as-sequence models (HGB data sets); "
                                  f"{cfg.data.name} runs as one sequence: set it to {defaults[key]!r}")
    return cfg


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from :meth:`Config.to_dict` output (e.g. from a checkpoint)."""
    return apply_mapping(Config(), d, "checkpoint config")

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
import math
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
KNN_DATASETS = ("20News", "Mini-ImageNet")
#: OGB node property prediction, read by ogb itself (brlgraph.data.ogb); official splits
OGB_DATASETS = ("ogbn-arxiv", "ogbn-products", "ogbn-proteins", "ogbn-mag")
DATASETS = HGB_DATASETS + KNN_DATASETS + OGB_DATASETS
#: data sets whose nodes carry several labels at once (binary cross-entropy, threshold 0.5)
MULTI_LABEL_DATASETS = ("IMDB", "ogbn-proteins")
#: data sets whose official metric is ogb's ROC-AUC (``val_rocauc``, ``test_rocauc``)
ROCAUC_DATASETS = ("ogbn-proteins",)
#: data sets where every target node is a sequence of its own (the heterogeneous ones);
#: the others are one graph as one sequence
NODE_SEQUENCE_DATASETS = HGB_DATASETS + ("ogbn-mag",)


@dataclass
class DataConfig:
    name: str = "DBLP"
    #: seed of the random train/validation split (HGB) or 50/25/25 split (kNN graphs);
    #: unset, the run's own seed
    split_seed: int | None = None
    #: neighbours per node of the kNN graph (kNN data sets)
    knn_k: int = 5


@dataclass
class SequenceConfig:
    #: S, tokens per context sequence, the target node included (node-as-sequence)
    seq_len: int = 50
    #: deepest hop sampled for the context (node-as-sequence)
    max_hops: int = 3
    #: draw fresh context nodes at every epoch (training sequences only); one-sequence
    #: data sets: a fresh node order every epoch (``order``'s ties broken at random)
    resample: bool = True
    #: evaluation averages the logits of this many independently drawn sequences
    #: per target (1 = one draw); one-sequence data sets: over this many node orders
    eval_draws: int = 1
    #: node order of the graph-as-one-sequence mode: rcm, bfs or identity
    order: str = "rcm"
    #: graph as one sequence: 0 = the whole graph is one sequence; c > 0 = train and
    #: evaluate on consecutive chunks of c positions of the order, each a sequence over
    #: the subgraph its nodes induce (brlgraph.train.chunked; docs/scaling.md)
    chunk_size: int = 0


@dataclass
class ModelConfig:
    #: attention backend: brl, full, local, performer, linformer, regla
    attention: str = "brl"
    #: d, the width of every token and layer
    hidden_channels: int = 64
    #: transformer blocks
    layers: int = 1
    heads: int = 4
    #: dropout of the residual branches, the token inputs and the readout
    dropout: float = 0.5
    #: dropout on the raw input features
    input_dropout: float = 0.5
    #: w, half-width of the local window of brl and local attention
    window: int = 16
    #: m, reservoir tokens of brl attention
    reservoir_size: int = 8
    #: lambda_0, the initial reservoir weight of brl attention (learned from there; in
    #: runs of a few hundred steps it stays close, docs/oversquashing.md section 4)
    reservoir_weight: float = 0.5
    #: GNN pre-encoder layers over the whole graph (0 = none)
    gnn_layers: int = 2
    #: kind of GNN pre-encoder: gcn, sage, gat, hsage (SAGE with a weight per node-type
    #: pair), rsage (SAGE with a weight per edge type, each followed in its own direction)
    gnn: str = "hsage"
    #: K: one extra token per type path of 1..K edges from the target's type, the mean
    #: node state along it (SeHGNN's metapaths); 0 = none (node-as-sequence)
    path_tokens: int = 0
    #: start each target's reservoir from E + W_t z_0 (the target token), not E alone
    #: (brl, node-as-sequence): the first write then knows the target; Tree-NeighborsMatch
    #: r = 6 needs it (docs/oversquashing.md)
    reservoir_from_target: bool = False
    #: > 0: the logits are L2-normalised and scaled by this (HINormer's readout); 0 = off
    logit_norm: float = 1.0
    #: initial standard deviation of every learned embedding table (featureless nodes,
    #: node types, hops, path steps); 1 is nn.Embedding's default
    embedding_std: float = 1.0
    #: activation checkpointing while training: each GNN layer and each half of a block
    #: keeps only its input and recomputes the rest in the backward pass (same values and
    #: gradients; less memory for more time, measured in docs/scaling.md)
    checkpoint: bool = False


@dataclass
class TrainConfig:
    epochs: int = 60
    #: stop after this many epochs without a better validation score
    patience: int = 15
    #: target nodes per step (node-as-sequence; one-sequence data sets train full-batch)
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-3
    #: learning-rate schedule: constant, or cosine (from lr to 0 over ``epochs``)
    schedule: str = "constant"
    #: clip the gradient norm to this (0 = no clipping)
    grad_clip: float = 1.0
    #: multi-label data sets only: BCE's pos_weight on every label. A weight w moves
    #: the 0.5 threshold on the trained model's output to a probability of 1 / (1 + w)
    #: under the unweighted loss
    positive_weight: float = 1.0
    #: decay of an exponential moving average of the weights, updated after every
    #: optimiser step; validation, early stopping and the final model use the
    #: average (0 = off, the weights as trained)
    ema: float = 0.0
    #: torch.use_deterministic_algorithms + seeded everything. On the CPU two runs are
    #: identical; on an H100 (torch 2.11) two runs gave the same predictions and scores
    #: and a test loss 2e-7 apart (relative)
    deterministic: bool = True
    #: validation metric of early stopping: val_micro_f1, val_macro_f1, val_accuracy,
    #: val_rocauc (ogbn-proteins), val_loss
    monitor: str = "val_micro_f1"
    #: target nodes per forward pass during evaluation (node-as-sequence)
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

    @property
    def split_seed(self) -> int:
        """The seed of the split: ``data.split_seed``, or the run seed when it is unset."""
        return self.seed if self.data.split_seed is None else self.data.split_seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


CHOICES = {
    "model.attention": ("brl", "full", "local", "performer", "linformer", "regla"),
    "train.schedule": ("constant", "cosine"),
    "train.monitor": ("val_micro_f1", "val_macro_f1", "val_accuracy", "val_rocauc", "val_loss"),
    "sequences.order": ("rcm", "bfs", "identity"),
    "model.gnn": ("gcn", "sage", "gat", "hsage", "rsage"),
}


def _at_least(low: float, what: str = "") -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f">= {low:g}{what}"


def _fraction() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: 0.0 <= v < 1.0), "in [0, 1)"


SEED_MAX = 2**32 - 1
#: the largest value of every other integer key: far above any useful size, and small
#: enough that no product of two sizes overflows torch's 64-bit indices
INT_MAX = 2**31 - 1

#: keys whose values must lie in a range: key -> (test, what the range is)
BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    # the seeds derived from these stay within the 64 bits torch's generators take
    "seed": (lambda v: 0 <= v <= SEED_MAX, f"in 0..{SEED_MAX}"),
    "data.split_seed": (lambda v: v is None or 0 <= v <= SEED_MAX, f"unset or in 0..{SEED_MAX}"),
    "data.knn_k": _at_least(1),
    "sequences.seq_len": _at_least(1),
    "sequences.max_hops": _at_least(1),
    "sequences.eval_draws": _at_least(1),
    "sequences.chunk_size": _at_least(0, " (0 = the whole graph)"),
    "model.hidden_channels": _at_least(1),
    "model.layers": _at_least(1),
    "model.heads": _at_least(1),
    "model.dropout": _fraction(),
    "model.input_dropout": _fraction(),
    "model.window": _at_least(1),
    "model.reservoir_size": _at_least(1),
    "model.reservoir_weight": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "model.gnn_layers": _at_least(0, " (0 = none)"),
    "model.path_tokens": (lambda v: 0 <= v <= 4, "in 0..4 (0 = none)"),
    "model.logit_norm": _at_least(0, " (0 = off)"),
    "model.embedding_std": (lambda v: v > 0.0, "> 0"),
    "train.epochs": _at_least(1),
    "train.patience": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.lr": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "train.weight_decay": _at_least(0),
    "train.grad_clip": _at_least(0, " (0 = no clipping)"),
    "train.positive_weight": (lambda v: v > 0.0, "> 0 (1 = unweighted)"),
    "train.ema": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (0 = off)"),
    "train.eval_batch_size": _at_least(1),
    "train.ensemble": (lambda v: 1 <= v <= 32, "in 1..32 (1 = one model)"),
}

#: keys that only one task reads: task -> keys. On a data set of another task each must
#: keep its default (a value set there would be silently ignored)
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "node-as-sequence": ("sequences.seq_len", "sequences.max_hops", "model.path_tokens",
                         "model.reservoir_from_target", "train.batch_size", "train.eval_batch_size"),
    "graph-as-one-sequence": ("data.knn_k", "sequences.order", "sequences.chunk_size"),
    "multi-label": ("train.positive_weight",),
}


def task_of(dataset: str) -> str:
    """``"node-as-sequence"`` (HGB data sets, ogbn-mag) or ``"graph-as-one-sequence"``
    (kNN graphs, the homogeneous OGB graphs)."""
    return "node-as-sequence" if dataset in NODE_SEQUENCE_DATASETS else "graph-as-one-sequence"


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
            if not math.isfinite(value):  # TOML has nan and inf; no key means either
                raise ConfigError(f"{source}: '{key}' must be a finite number, got {value!r}")
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
    if _too_large(key, value):
        raise ConfigError(f"{source}: '{key}' must be at most {INT_MAX}, got {value!r}")
    setattr(target, name, value)


def _too_large(key: str, value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value > INT_MAX
            and key not in ("seed", "data.split_seed"))


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
    as they were read, with their source in the message).

    A key that only another task reads (:data:`TASK_KEYS`) must keep its default:
    ``sequences.seq_len`` on 20News, ``data.knn_k`` on DBLP and ``train.positive_weight``
    on a single-label data set are errors naming the key, not silently ignored."""
    flat = _flatten(cfg.to_dict())
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
        if _too_large(key, value):
            raise ConfigError(f"'{key}' must be at most {INT_MAX}, got {value!r}")
    for key, (ok, what) in BOUNDS.items():
        if not ok(flat[key]):
            raise ConfigError(f"'{key}' must be {what}, got {flat[key]!r}")
    if cfg.model.hidden_channels % cfg.model.heads:
        raise ConfigError(f"model.hidden_channels ({cfg.model.hidden_channels}) must be divisible by "
                          f"model.heads ({cfg.model.heads})")
    name = cfg.data.name
    if cfg.train.monitor == "val_rocauc" and name not in ROCAUC_DATASETS:
        raise ConfigError(f"train.monitor = 'val_rocauc': only {', '.join(ROCAUC_DATASETS)} report a "
                          f"ROC-AUC; {name} does not")
    tasks = {task_of(name)} | ({"multi-label"} if name in MULTI_LABEL_DATASETS else set())
    defaults = _flatten(Config().to_dict())
    for task, keys in TASK_KEYS.items():
        if task in tasks:
            continue
        for key in keys:
            if flat[key] != defaults[key]:
                runs = "is single-label" if task == "multi-label" else f"runs {task_of(name)}"
                raise ConfigError(f"{key} = {flat[key]!r} applies to {task} data sets only; {name} {runs}: "
                                  f"leave it at its default {defaults[key]!r}")
    return cfg


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from :meth:`Config.to_dict` output (e.g. from a checkpoint)."""
    return apply_mapping(Config(), d, "checkpoint config")

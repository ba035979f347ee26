"""One experiment: load data -> build sequences -> build the model -> train -> evaluate.

Two tasks share the loop of :mod:`brlgraph.train.loop`:

- :class:`NodeSequenceTask` (HGB; spec 4.1): every target node is a hop-ordered
  sequence of context nodes; mini-batches of target nodes; the training
  sequences are re-drawn every epoch from a seed that depends only on
  (run seed, epoch), so a resumed run sees the same sequences;
- :class:`GraphSequenceTask` (kNN graphs such as 20News; spec 4.2): the whole
  graph is one sequence in a locality-preserving order; full-batch training.

:func:`run_experiment` drives either, records the seeds and metrics, appends
one JSON line to the results file and returns the test predictions. With
``train.ensemble = K`` it trains K members on the same split and evaluates their
mean probability (a deep ensemble; member 0 is the one-model run).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch

from brlgraph.errors import DataError
from brlgraph.graph import GraphView
from brlgraph.io import append_line, json_text
from brlgraph.seeding import derive_seed, seed_everything
from brlgraph.sequences import HopSequenceSampler, hop_ordered_sequences, node_order
from brlgraph.train import distributed
from brlgraph.train.config import HGB_DATASETS, OGB_DATASETS, Config, task_of, validate
from brlgraph.train.loop import fit
from brlgraph.train.metrics import (
    classification_loss,
    classification_metrics,
    ensemble_logits,
    predict_labels,
)


def load_dataset(config: Config, download: bool = False, allow_pickle: bool = False):
    """The data set of ``config`` with the split of ``config.split_seed`` (``data.split_seed``,
    or the run seed when it is unset). With ``download``, a data set whose files are not
    found locally is fetched from its official URL first (checksum-verified, into the cache).
    ``allow_pickle``: Mini-ImageNet's pickles may be read
    (unpickling runs code from the file)."""
    from brlgraph.data import load_20news, load_hgb, load_mini_imagenet

    name, seed = config.data.name, config.split_seed
    if name in HGB_DATASETS:
        return load_hgb(name, seed=seed, download=download, progress=download)
    if name in OGB_DATASETS:  # ogb's official split: no split seed
        from brlgraph.data.ogb import load_ogb

        return load_ogb(name, download=download)
    if name == "Mini-ImageNet":
        return load_mini_imagenet(k=config.data.knn_k, seed=seed, allow_pickle=allow_pickle)
    return load_20news(k=config.data.knn_k, seed=seed, download=download, progress=download)


def model_options(config: Config) -> dict[str, Any]:
    from brlgraph.nn.attention import attention_options

    m = config.model
    # model keys that only some backends take reach those that do (as window and m do)
    extra = {k: v for k, v in {"reservoir_weight": m.reservoir_weight}.items()
             if k in attention_options(m.attention)}
    return dict(hidden_channels=m.hidden_channels, layers=m.layers, heads=m.heads, attention=m.attention,
                window=m.window, reservoir_size=m.reservoir_size, dropout=m.dropout,
                input_dropout=m.input_dropout, gnn_layers=m.gnn_layers, gnn=m.gnn,
                logit_norm=m.logit_norm, embedding_std=m.embedding_std, checkpoint=m.checkpoint,
                attention_options=extra or None)


def ogb_name(data) -> str | None:
    """The OGB name of ``data`` when ogb's ``Evaluator`` scores it, else None."""
    return data.name if getattr(data, "ogb_metric", None) is not None else None


def official_metrics(ogb: str | None, logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The data set's own evaluator where it has one: ogb's ``Evaluator`` for OGB data
    (``accuracy`` or ``rocauc``; its accuracy replaces brlgraph's); else nothing."""
    if ogb is None:
        return {}
    from brlgraph.data.ogb import ogb_evaluate

    return ogb_evaluate(ogb, logits, target)


def sharded_rows(part: tuple[slice, float], n: int) -> tuple[torch.Tensor, float]:
    """Row indices of :func:`~brlgraph.train.distributed.shard`'s part and its weight. An
    empty part (a batch smaller than the number of processes) takes row 0 with weight 0:
    every process runs the same forward and backward, as DDP needs."""
    span, share = part
    if span.stop > span.start:
        return torch.arange(span.start, span.stop), share
    return torch.zeros(min(n, 1), dtype=torch.long), 0.0


def train_weights(config: Config, num_classes: int, device: torch.device | str) -> torch.Tensor | None:
    """BCE's ``pos_weight`` of the training loss: ``train.positive_weight`` on every label
    (multi-label data sets; :func:`~brlgraph.train.config.validate` refuses it elsewhere).
    None when it is 1, the unweighted loss."""
    positive = config.train.positive_weight
    return positive * torch.ones(num_classes, device=device) if positive != 1.0 else None


def check_splits(rows: dict[str, torch.Tensor], name: str) -> None:
    """A DataError naming the data set when a split holds no node (nothing to train on,
    validate or test: the split's metrics would be undefined)."""
    empty = [split for split, r in rows.items() if len(r) == 0]
    if empty:
        raise DataError(f"{name}: the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} "
                        f"hold{'' if len(empty) > 1 else 's'} no labelled node "
                        f"({', '.join(f'{k} {len(r)}' for k, r in rows.items())}); "
                        "the data set has too few labelled nodes to train and evaluate on")


class NodeSequenceTask:
    """HGB node classification with each target node as a hop-ordered sequence."""

    def __init__(self, data, config: Config, device: str = "cpu") -> None:
        from brlgraph.nn import BRLFormer

        self.config, self.device = config, device
        self.multi_label = bool(getattr(data, "multi_label", False))
        self.graph = GraphView.from_data(data)
        self.ogb = ogb_name(data)
        target = data[data.target_type]
        self.target_type, self.global_id = data.target_type, target.global_id
        self.type_id = list(data.node_types).index(data.target_type)
        offset = self.graph.offsets[data.target_type]
        s = config.sequences
        self.rows = {split: target[f"{split}_mask"].nonzero().view(-1)
                     for split in ("train", "val", "test")}
        check_splits(self.rows, data.name)
        self.y = {split: target.y[rows].to(device) for split, rows in self.rows.items()}
        self.weight = train_weights(config, data.num_classes, device)
        self.sampler = HopSequenceSampler(self.graph, self.rows["train"] + offset, s.seq_len,
                                          max_hops=s.max_hops, seed=config.seed)
        # draw d of the evaluation sequences; draw 0 uses the run seed, as one draw does
        self.eval_seqs = {split: [hop_ordered_sequences(self.graph, self.rows[split] + offset, s.seq_len,
                                                        max_hops=s.max_hops,
                                                        seed=derive_seed(config.seed, "eval_draw", d))
                                  for d in range(s.eval_draws)]
                          for split in ("val", "test")}
        self.model = BRLFormer.from_data(
            self.graph, num_classes=data.num_classes, max_hops=s.max_hops,
            path_tokens=config.model.path_tokens, reservoir_from_target=config.model.reservoir_from_target,
            **model_options(config)).to(device)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.rows["train"]) / self.config.train.batch_size)

    def train_batches(self, epoch: int):
        """(sequences, labels) per mini-batch of training targets."""
        seqs = self.sampler(epoch if self.config.sequences.resample else 0)
        gen = torch.Generator().manual_seed(derive_seed(self.config.seed, "batches", epoch))
        order = torch.randperm(len(seqs), generator=gen)
        for rows in order.split(self.config.train.batch_size):
            yield seqs[rows], self.y["train"][rows.to(self.device)]

    def loss(self, batch) -> torch.Tensor:
        seqs, y = batch
        part = distributed.shard(len(y))  # under torchrun: this process's part of the batch
        if part is None:
            return classification_loss(self.model(self.graph, seqs), y, self.multi_label, self.weight)
        rows, share = sharded_rows(part, len(y))
        loss = classification_loss(self.model(self.graph, seqs[rows]), y[rows.to(y.device)],
                                   self.multi_label, self.weight)
        return share * loss

    @torch.no_grad()
    def logits(self, split: str) -> torch.Tensor:
        self.model.eval()
        h = self.model.node_states(self.graph)
        bs = self.config.train.eval_batch_size
        if distributed.active():  # under torchrun: each process its part of the targets
            return torch.stack([self._shared_logits(seqs, h) for seqs in self.eval_seqs[split]]).mean(0)
        draws = [torch.cat([self.model(self.graph, seqs[i:i + bs], node_states=h)
                            for i in range(0, len(seqs), bs)])
                 for seqs in self.eval_seqs[split]]
        return torch.stack(draws).mean(0)

    def _shared_logits(self, seqs, h: torch.Tensor) -> torch.Tensor:
        """Logits of all of ``seqs``: this process computes its part, then all gather."""
        part = distributed.shard(len(seqs))
        assert part is not None
        mine = seqs[torch.arange(part[0].start, part[0].stop)]
        bs = self.config.train.eval_batch_size
        out = [self.model(self.graph, mine[i:i + bs], node_states=h) for i in range(0, len(mine), bs)]
        local = torch.cat(out) if out else h.new_zeros(0, self.model.head.out_features)
        return distributed.gather_rows(local, len(seqs))

    def evaluate(self, split: str, logits: torch.Tensor | None = None) -> dict[str, float]:
        logits = self.logits(split) if logits is None else logits
        return {**classification_metrics(logits, self.y[split], self.multi_label),
                **official_metrics(self.ogb, logits, self.y[split]),
                "loss": classification_loss(logits, self.y[split], self.multi_label).item()}

    def predictions(self, split: str = "test", logits: torch.Tensor | None = None) -> dict[str, Any]:
        """HGB submission rows: node ids in node.dat, the type id, predicted class indices."""
        logits = self.logits(split) if logits is None else logits
        pred = predict_labels(logits, self.multi_label).cpu()
        labels = ([row.nonzero().view(-1).tolist() for row in pred] if self.multi_label
                  else [[int(p)] for p in pred])
        return {"global_id": self.global_id[self.rows[split]].tolist(),
                "node_type_id": self.type_id, "labels": labels}


class GraphSequenceTask:
    """Node classification on a homogeneous (kNN) graph as one sequence, full batch."""

    def __init__(self, data, config: Config, device: str = "cpu") -> None:
        from brlgraph.nn.attention import attention_options
        from brlgraph.nn.brlformer import BRLGraphSequenceModel

        self.config, self.device = config, device
        self.multi_label = bool(getattr(data, "multi_label", False))
        self.graph = GraphView.from_data(data)
        self.ogb = ogb_name(data)
        self.rows = {split: data[f"{split}_mask"].nonzero().view(-1).to(device)
                     for split in ("train", "val", "test")}
        check_splits(self.rows, getattr(data, "name", config.data.name))
        self.y = data.y.to(device)
        self.weight = train_weights(config, data.num_classes, device)
        self._eval_orders: list[torch.Tensor | None] | None = None
        options = model_options(config)
        if "max_len" in attention_options(config.model.attention):
            # a backend bounded in length (Linformer projects along the sequence) spans
            # the longest sequence the model sees: the graph, or a chunk of its order
            options["attention_options"] = {**(options["attention_options"] or {}),
                                            "max_len": config.sequences.chunk_size or self.graph.num_nodes}
        self.model = BRLGraphSequenceModel.from_data(
            self.graph, num_classes=data.num_classes, order=config.sequences.order, **options).to(device)

    def steps_per_epoch(self) -> int:
        return 1

    def order(self, seed: int | None):
        """The node order of a forward pass: the model's own (``seed`` None) or the same
        kind of order with its ties broken at random from ``seed``."""
        return None if seed is None else node_order(self.graph, self.config.sequences.order, seed=seed)

    def train_batches(self, epoch: int):
        """(training rows of the loss, node order or None): one full batch. With
        ``sequences.resample`` every epoch runs on a fresh node order."""
        resample = self.config.sequences.resample
        yield self.rows["train"], self.order(derive_seed(self.config.seed, "batches", epoch) if resample else None)

    def loss(self, batch) -> torch.Tensor:
        rows, order = batch
        part = distributed.shard(len(rows))  # under torchrun: this process's training rows
        if part is not None:
            index, share = sharded_rows(part, len(rows))
            rows = rows[index.to(rows.device)]
            logits = self.model(self.graph, order=order)[rows]
            return share * classification_loss(logits, self.y[rows], self.multi_label, self.weight)
        logits = self.model(self.graph, order=order)[rows]
        return classification_loss(logits, self.y[rows], self.multi_label, self.weight)

    @torch.no_grad()
    def logits(self, split: str) -> torch.Tensor:
        """Logits of ``split``, averaged over ``sequences.eval_draws`` node orders (draw 0:
        the model's own order)."""
        self.model.eval()
        if self._eval_orders is None:
            self._eval_orders = [self.order(None if d == 0 else derive_seed(self.config.seed, "eval_draw", d))
                                 for d in range(self.config.sequences.eval_draws)]
        draws = [self.model(self.graph, order=order)[self.rows[split]] for order in self._eval_orders]
        return torch.stack(draws).mean(0)

    def evaluate(self, split: str, logits: torch.Tensor | None = None) -> dict[str, float]:
        logits = self.logits(split) if logits is None else logits
        y = self.y[self.rows[split]]
        return {**classification_metrics(logits, y, self.multi_label), **official_metrics(self.ogb, logits, y),
                "loss": classification_loss(logits, y, self.multi_label).item()}

    def predictions(self, split: str = "test", logits: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.logits(split) if logits is None else logits
        pred = predict_labels(logits, self.multi_label).cpu()
        labels = ([row.nonzero().view(-1).tolist() for row in pred] if self.multi_label
                  else [[int(p)] for p in pred])
        return {"global_id": self.rows[split].cpu().tolist(), "node_type_id": 0, "labels": labels}


def build_task(data, config: Config, device: str = "cpu") -> NodeSequenceTask | GraphSequenceTask:
    validate(config)  # build_config did; a Config made or changed in code may not have been
    if task_of(config.data.name) == "node-as-sequence":
        return NodeSequenceTask(data, config, device)
    if config.sequences.chunk_size:
        from brlgraph.train.chunked import ChunkedGraphSequenceTask

        return ChunkedGraphSequenceTask(data, config, device)
    return GraphSequenceTask(data, config, device)


def member_checkpoint(out: Path, member: int) -> Path:
    """Checkpoint file of ensemble member ``member``: ``checkpoint.pt`` for member 0
    (a one-model run's file), ``checkpoint-member<k>.pt`` for the others."""
    return out / ("checkpoint.pt" if member == 0 else f"checkpoint-member{member}.pt")


def run_experiment(config: Config, out: str | Path, device: str = "cpu", resume: bool = False,
                   progress: bool = True, results_file: str | Path | None = None,
                   on_epoch_end=None, download: bool = False, allow_pickle: bool = False) -> dict[str, Any]:
    """Train and evaluate ``config``; write ``out``/checkpoint.pt and append a results line.

    Returns ``{"metrics": {...}, "predictions": {...}, "config": {...}}``; the metrics
    hold test/val Micro- and Macro-F1 (and accuracy for single-label data),
    ``epochs`` trained, ``best_epoch`` and training ``seconds``.

    With ``train.ensemble = K > 1`` the run trains K models on the same data and
    split, one after the other: member k is the run with seed
    ``derive_seed(seed, "member", k)`` (:mod:`brlgraph.seeding`; member 0 is exactly the
    one-model run), its own
    context draws, initialisation and dropout, early-stopped on its own validation
    score, checkpointed in :func:`member_checkpoint` (so ``resume`` continues the
    member that was interrupted). The metrics and predictions are those of the
    members' mean probability (:func:`~brlgraph.train.metrics.ensemble_logits`);
    ``epochs`` and ``seconds`` add up over the members, ``best_epoch`` is member 0's,
    and the record's ``members`` holds each member's own seed, epochs and scores.
    ``allow_pickle`` goes to :func:`load_dataset`.
    """
    out = Path(out)
    seed_everything(config.seed, config.train.deterministic)
    t0 = time.perf_counter()
    data = load_dataset(config, download, allow_pickle)
    setup_seconds = time.perf_counter() - t0
    members = config.train.ensemble
    logits: dict[str, list[torch.Tensor]] = {"val": [], "test": []}
    summaries, member_records = [], []
    for k in range(members):
        # every member trains on the run's split, whatever its own seed
        member = config if k == 0 else dataclasses.replace(
            config, seed=derive_seed(config.seed, "member", k),
            data=dataclasses.replace(config.data, split_seed=config.split_seed))
        if k:  # member 0 keeps the one-model run's order: seed, load, build, train
            seed_everything(member.seed, member.train.deterministic)
        t1 = time.perf_counter()
        task = build_task(data, member, device)
        setup_seconds += time.perf_counter() - t1
        out.mkdir(parents=True, exist_ok=True)  # only once there is a run to write: no empty folders
        summary = fit(task, member, member_checkpoint(out, k), resume=resume, progress=progress,
                      on_epoch_end=on_epoch_end,
                      desc=config.data.name if members == 1 else f"{config.data.name} {k + 1}/{members}")
        # The best model's logits of each split, computed once for the metrics and the predictions.
        for split in ("val", "test"):
            logits[split].append(task.logits(split))
        summaries.append(summary)
        if members > 1:
            scores = {f"{split}_{key}": v for split in ("val", "test")
                      for key, v in task.evaluate(split, logits[split][-1]).items()}
            member_records.append({"seed": member.seed, "epochs": summary["epochs"],
                                   "best_epoch": summary["best_epoch"], "seconds": summary["seconds"],
                                   **scores})
    combined = {split: ensemble_logits(logits[split], task.multi_label) for split in ("val", "test")}
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        metrics.update({f"{split}_{k}": v for k, v in task.evaluate(split, combined[split]).items()})
    metrics.update(epochs=sum(s["epochs"] for s in summaries), best_epoch=summaries[0]["best_epoch"],
                   seconds=sum(s["seconds"] for s in summaries), setup_seconds=setup_seconds)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "dataset": config.data.name,
              "seed": config.seed, "split_seed": config.split_seed, "device": device,
              "resumed": resume, "world_size": distributed.world_size(), "metrics": metrics,
              "config": config.to_dict()}
    if member_records:
        record["members"] = member_records
    results = Path(results_file) if results_file is not None else out / "results.jsonl"
    if distributed.is_main():  # under torchrun, rank 0 alone
        append_line(results, json_text(record, sort_keys=True))
    return {"metrics": metrics, "predictions": task.predictions("test", combined["test"]),
            "config": config.to_dict(), "history": summaries[0]["history"], "record": record}

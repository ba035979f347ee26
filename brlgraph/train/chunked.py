"""The graph as one sequence, trained on chunks of its order when one sequence does not fit.

With ``sequences.chunk_size = c > 0`` the node order of the graph-as-one-sequence model
(reverse Cuthill-McKee) is cut into K = ceil(N / c) consecutive chunks of about c
positions, fixed for the run. Each chunk is a sequence of its own over the subgraph
its nodes induce:

- the GNN pre-encoder runs on that subgraph (the edges inside the chunk; an RCM order
  keeps neighbours close, so few edges cross a cut: Cluster-GCN's partitions, drawn
  from the order itself);
- the BRL blocks run over the chunk's tokens in order: the window holds graph
  neighbours, and the chunk's reservoir, written from all c tokens and read by each,
  carries the context of the whole chunk, tens of thousands of nodes apart, which no
  window or GNN layer reaches; what lies in other chunks reaches a node only through
  the trained weights;
- an epoch is K optimiser steps, one per chunk in a random order drawn from (seed,
  epoch); evaluation runs every chunk the same way, without gradients.

Memory then follows c, not N: a step holds the activations of one chunk. The cost is
the context beyond the chunk; docs/scaling.md measures both modes at 10^6 nodes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.seeding import derive_seed
from brlgraph.train import distributed
from brlgraph.train.config import Config
from brlgraph.train.experiment import GraphSequenceTask, sharded_rows
from brlgraph.train.metrics import classification_loss


def induced_view(graph: GraphView, nodes: np.ndarray) -> GraphView:
    """The subgraph of ``graph`` induced by ``nodes`` (global ids), its node i being
    ``nodes[i]``; features are attached per use (:meth:`ChunkedGraphSequenceTask.chunk`)."""
    n = len(nodes)
    position = np.full(graph.num_nodes, -1, dtype=np.int64)
    position[nodes] = np.arange(n)
    starts, counts = graph.indptr[nodes], np.diff(graph.indptr)[nodes]
    total = int(counts.sum())
    # the neighbour lists of ``nodes``, back to back, without a Python loop
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    neighbours = position[graph.indices[offsets + np.arange(total)]]
    rows = np.repeat(np.arange(n), counts)
    keep = neighbours >= 0
    edge_index = torch.from_numpy(np.stack([rows[keep], neighbours[keep]]))
    return GraphView.from_edge_index(edge_index, n)


class ChunkedGraphSequenceTask(GraphSequenceTask):
    """:class:`~brlgraph.train.experiment.GraphSequenceTask` on chunks of the node order
    (see the module doc); the loop sees K steps per epoch."""

    def __init__(self, data, config: Config, device: str = "cpu") -> None:
        s = config.sequences
        if s.resample or s.eval_draws != 1:
            raise ConfigError("sequences.chunk_size > 0 trains on fixed chunks of one node order: "
                              "set sequences.resample = false and sequences.eval_draws = 1")
        super().__init__(data, config, device)
        order = self.model.node_permutation(self.graph).numpy()
        parts = math.ceil(self.graph.num_nodes / s.chunk_size)
        self.chunks = [np.asarray(p) for p in np.array_split(order, parts)]
        self._views: dict[int, GraphView] = {}
        x = self.graph.x_dict.get(self.graph.node_types[0])
        self.x = x
        self.is_train = torch.zeros(self.graph.num_nodes, dtype=torch.bool)
        self.is_train[self.rows["train"].cpu()] = True

    def steps_per_epoch(self) -> int:
        return len(self.chunks)

    def chunk(self, k: int) -> tuple[torch.Tensor, GraphView]:
        """Chunk k's nodes (global ids, in sequence order) and its induced view, with
        their features (gathered per use, so the cached views hold no second copy)."""
        if k not in self._views:
            self._views[k] = induced_view(self.graph, self.chunks[k])
        view = self._views[k]
        nodes = torch.from_numpy(self.chunks[k])
        view.x_dict = {view.node_types[0]: None if self.x is None else self.x[nodes]}
        return nodes, view

    def chunk_logits(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        nodes, view = self.chunk(k)
        logits = self.model(view, order=torch.arange(len(nodes)))
        view.x_dict = {view.node_types[0]: None}  # the gathered features go with the step
        return nodes, logits

    def train_batches(self, epoch: int):
        """One chunk index per step, in a random order drawn from (seed, epoch)."""
        gen = torch.Generator().manual_seed(derive_seed(self.config.seed, "batches", epoch))
        yield from (int(k) for k in torch.randperm(len(self.chunks), generator=gen))

    def loss(self, batch: Any) -> torch.Tensor:
        nodes, logits = self.chunk_logits(batch)
        local = self.is_train[nodes].nonzero().view(-1)
        part = distributed.shard(len(local))  # under torchrun: this process's training rows
        share = 1.0
        if part is not None:
            index, share = sharded_rows(part, len(local))
            local = local[index] if len(local) else local
        if not len(local):  # a chunk without training nodes: a zero loss with the graph of a real one
            return logits.sum() * 0.0
        rows = nodes[local].to(self.device)
        loss = classification_loss(logits[local], self.y[rows], self.multi_label, self.weight)
        return loss if part is None else share * loss

    @torch.no_grad()
    def logits(self, split: str) -> torch.Tensor:
        self.model.eval()
        out = None
        for k in range(len(self.chunks)):
            nodes, logits = self.chunk_logits(k)
            if out is None:
                out = logits.new_empty(self.graph.num_nodes, logits.shape[-1])
            out[nodes.to(out.device)] = logits
        assert out is not None
        return out[self.rows[split]]

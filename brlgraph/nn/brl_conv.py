"""BRLConv: BRL-Attention over each node's directed hop-ordered context, as a PyG layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, to_edge_index

from brlgraph.errors import ConfigError
from brlgraph.nn.attention import attention_options as attention_options_of
from brlgraph.nn.attention import make_attention
from brlgraph.sequences import DirectedSequences, directed_hop_sequences

# Two hops per layer: stacked layers multiply it (a NeighborLoader samples the sum over
# the layers), two hops fill S = 32 tokens from a mean degree of about 5, and farther
# hops thinned the signal of near ones (benchmarks/pyg_layers.py, the block model:
# test accuracy 0.897 with 2, 0.894 with 3, 0.874 with 4; docs/pyg.md).
DEFAULT_MAX_HOPS = 2


class BRLConv(MessagePassing):
    r"""Each destination node attends over the nodes whose messages reach it, ordered
    by hop, with BRL-Attention (a local window plus ``m`` reservoir tokens).

    For a destination node :math:`v` the context sequence is
    :math:`T(v) = [v, t_1, \dots, t_{S-1}]`: the nodes with a directed path to
    :math:`v` (edges ``j -> i`` of ``edge_index`` under ``flow="source_to_target"``,
    reversed under ``"target_to_source"``) of at most ``max_hops`` edges, by the length
    :math:`h(t)` of their shortest path (hop 1, hop 2, ...). A hop with more nodes than
    the tokens left is sampled uniformly without replacement, and the order within a
    hop is random: both follow a priority :math:`\mathrm{hash}(\mathrm{seed},
    \mathrm{id}(v), \mathrm{id}(t))`, where ids are ``n_id`` when given (global ids of a
    mini-batch) and positions otherwise. Shorter sequences are padded and masked. Then,
    with :math:`\tilde z = \mathrm{LN}(z)`, heads :math:`h` of size :math:`d_h`,
    :math:`s = d_h^{-1/2}` and the learned reservoir :math:`E \in \mathbb{R}^{m \times d}`:

    .. math::
        z_0 = W_{\mathrm{dst}} x_v + e_0, \qquad
        z_j = W_{\mathrm{src}} x_{t_j} + e_{h(t_j)} \quad (j \ge 1)

        q = W_Q \tilde z_0, \quad k_j = W_K \tilde z_j, \quad v_j = W_V \tilde z_j,
        \quad r_c = W_R E_c, \quad \kappa_c = W_{Kc} E_c

        u_c = \sum_{j} \mathrm{softmax}_j(\tau_w s\, r_c \cdot k_j)\, v_j, \qquad
        y = (1 - \lambda) \sum_{j \le w} \mathrm{softmax}_j(s\, q \cdot k_j)\, v_j
            + \lambda \sum_c \mathrm{softmax}_c(\tau_r s\, q \cdot \kappa_c)\, u_c

        x'_v = W_{\mathrm{out}} \big(z_0 + W_O \Vert_h y\big) + b

    per head, over valid tokens only, with per-head learned :math:`\tau_w, \tau_r` and
    :math:`\lambda \in (0, 1)` (BRL-Attention's write temperature, read temperature and
    reservoir weight). Only the query of :math:`v` itself is formed: the layer reads
    out token 0, so its cost is :math:`O(N S m d)`.

    **Equivariance.** The hop sets depend only on the graph, so relabelling the nodes
    and passing the same ``n_id`` (carried along) permutes the output rows exactly.
    Without ``n_id`` the order within a hop (and the sample of a hop larger than the
    budget) follows the labels: the layer is then permutation equivariant in
    distribution over ``seed``, not for one seed. Repeated edges and self-loops are
    ignored; the order of the edges does not matter. One layer reaches ``max_hops``
    hops, not one.

    **Mini-batches.** On a ``NeighborLoader`` batch (edges towards the seeds) a seed
    reaches only what the sampled, directed edges give it. A seed whose whole
    ``max_hops`` in-neighbourhood was sampled gets the output it gets on the full graph
    when ``n_id=batch.n_id`` is passed (use ``max_hops = len(num_neighbors)``).

    Args:
        in_channels: F_in, ``-1`` to infer it at the first call, or ``(F_src, F_dst)``
            for bipartite input (each may be ``-1``).
        out_channels: F_out.
        heads: attention heads.
        seq_len: S, tokens per node (the node itself included).
        window: ``w``, local window half-width of BRL-Attention (default
            ``max(1, seq_len // 4)``).
        reservoir_size: ``m``, reservoir tokens (default ``max(1, seq_len // 4)``).
        hidden_channels: width ``d`` of the tokens (default
            ``max(out_channels, 8 * heads)``, rounded up to a multiple of ``heads``).
        max_hops: the longest path followed (default 2; the hop embedding has
            ``max_hops + 1`` rows).
        seed: seed of the sampling within a hop.
        flow: ``"source_to_target"`` (default) or ``"target_to_source"``.
        attention: an attention backend of ``brlgraph.nn.ATTENTION_BACKENDS``
            (``"brl"`` by default); other backends read out token 0 of their output.
        attention_options: further options of ``make_attention`` (e.g. ``dropout``).

    Shapes:
        - input: x [N, F_in] or ``(x_src [N_src, F_src], x_dst [N_dst, F_dst])``;
          edge_index: LongTensor [2, E], ``torch_sparse.SparseTensor`` or torch.sparse
          matrix (``adj_t``, [N_dst, N_src], ``flow="source_to_target"`` only);
          sequences (optional): :class:`~brlgraph.sequences.DirectedSequences` [N_dst, S]
          from :meth:`sequences`, to build them once for a fixed graph; n_id (optional):
          global node ids [N] (or a pair) the sampling is keyed on.
        - output: [N_dst, F_out].
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 4,
        seq_len: int = 32,
        window: int | None = None,
        reservoir_size: int | None = None,
        hidden_channels: int | None = None,
        max_hops: int = DEFAULT_MAX_HOPS,
        seed: int = 0,
        flow: str = "source_to_target",
        attention: str = "brl",
        attention_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(aggr=None, flow=flow, node_dim=0)
        if seq_len < 1:
            raise ConfigError(f"BRLConv: seq_len must be >= 1, got {seq_len}")
        if max_hops < 0:
            raise ConfigError(f"BRLConv: max_hops must be >= 0, got {max_hops}")
        hidden = hidden_channels or max(out_channels, 8 * heads)
        hidden = -(-hidden // heads) * heads
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.hidden_channels, self.seq_len, self.max_hops, self.seed = hidden, seq_len, max_hops, seed
        self.window = window if window is not None else max(1, seq_len // 4)
        self.reservoir_size = reservoir_size if reservoir_size is not None else max(1, seq_len // 4)
        self.attention = attention
        accepted = attention_options_of(attention)
        # the layer reads token 0 and no reservoir after it: without W_Oc every
        # parameter gets a gradient (plain DistributedDataParallel)
        common = {"window": self.window, "reservoir_size": self.reservoir_size,
                  "reservoir_update": False}
        opts = {k: v for k, v in common.items() if k in accepted}
        opts.update(attention_options or {})
        self._options = {k: v for k, v in opts.items() if k in ("window", "reservoir_size")}

        src_in, dst_in = in_channels if isinstance(in_channels, (tuple, list)) else (in_channels,) * 2
        self.lin_src = Linear(src_in, hidden)
        self.lin_dst = Linear(dst_in, hidden)
        self.hop_emb = nn.Embedding(max_hops + 1, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.attn = make_attention(attention, hidden, heads, **opts)
        self.lin_out = Linear(hidden, out_channels)
        # BRL-Attention can form the query of token 0 alone; other backends attend in full
        self._first_only = hasattr(self.attn, "attend_first") and not getattr(self.attn, "causal", False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for module in (self.lin_src, self.lin_dst, self.hop_emb, self.norm, self.lin_out):
            module.reset_parameters()
        if hasattr(self.attn, "reset_parameters"):
            self.attn.reset_parameters()
        else:
            for module in self.attn.modules():
                if module is not self.attn and hasattr(module, "reset_parameters"):
                    module.reset_parameters()

    def sequences(
        self,
        edge_index: Tensor | SparseTensor,
        num_nodes: int | tuple[int, int] | None = None,
        n_id: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> DirectedSequences:
        """The context sequences of every destination node, [N_dst, S].

        Build them once for a graph that does not change and pass them to
        :meth:`forward` (``sequences=``): training then never rebuilds them. ``num_nodes``
        is N, or ``(N_src, N_dst)`` for bipartite input; a sparse ``adj_t`` gives it when
        it is not passed (N when square); ``n_id`` as in :meth:`forward`.
        """
        edge_index, sparse_size = _as_edge_index(edge_index, self.flow)
        if num_nodes is None:
            if sparse_size is None:
                raise ConfigError("BRLConv.sequences: pass num_nodes with an edge_index")
            square = sparse_size[0] == sparse_size[1]
            num_nodes = sparse_size[0] if square else sparse_size
        return directed_hop_sequences(
            edge_index, num_nodes, self.seq_len, max_hops=self.max_hops, seed=self.seed,
            flow=self.flow if sparse_size is None else "source_to_target", node_ids=n_id)

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor],
        edge_index: Tensor | SparseTensor | None,
        sequences: DirectedSequences | None = None,
        n_id: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x [N, F_in] or (x_src, x_dst); edge_index or ``adj_t``; optional precomputed
        ``sequences`` (then ``edge_index`` is not read) and global ids ``n_id`` ->
        [N_dst, F_out]."""
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if sequences is None:
            num_nodes = x_src.shape[0] if isinstance(x, Tensor) else (x_src.shape[0], x_dst.shape[0])
            sequences = self.sequences(edge_index, num_nodes, n_id)
        elif not torch.compiler.is_compiling():
            self._check_sequences(sequences)
        ids, hops = sequences
        mask = ids >= 0
        h_src, h_dst = self.lin_src(x_src), self.lin_dst(x_dst)
        # Every token is a row of one table: (source, hop 1..max_hops) rows, then the
        # destinations (hop 0), then a zero row for padding. LayerNorm is per token, so
        # it runs over the table's rows, as do BRL-Attention's projections; the
        # N_dst x S tokens are gathered from it.
        table = torch.cat([(h_src.unsqueeze(1) + self.hop_emb.weight[1:]).flatten(0, 1),
                           h_dst + self.hop_emb.weight[0], h_src.new_zeros(1, h_src.shape[1])])
        first = h_src.shape[0] * self.max_hops
        index = torch.cat([first + ids[:, :1], ids[:, 1:] * self.max_hops + hops[:, 1:] - 1], 1)
        index = torch.where(mask, index, table.shape[0] - 1)
        if self._first_only:  # projections over the table's rows, not the tokens
            a = self.attn.attend_first(self.norm(table), mask, index=index)
        else:
            a = self.attn.attend(self.norm(table)[index], mask)[0][:, 0]
        return self.lin_out(table[index[:, 0]] + a)

    def _check_sequences(self, sequences: DirectedSequences) -> None:
        """Sequences passed in must fit the layer (a deeper hop would index another row)."""
        if not isinstance(sequences, tuple) or len(sequences) != 2:
            raise TypeError("BRLConv: sequences must be a DirectedSequences (ids, hops), "
                            "e.g. from BRLConv.sequences")
        hops = sequences.hops
        if hops.numel() and int(hops.max()) > self.max_hops:
            raise ConfigError(f"BRLConv: the sequences reach hop {int(hops.max())}, the layer "
                              f"was built with max_hops={self.max_hops}")

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self._options.items())
        if self.attention != "brl":
            extra += f", attention={self.attention!r}"
        if self.max_hops != DEFAULT_MAX_HOPS:
            extra += f", max_hops={self.max_hops}"
        if self.flow != "source_to_target":
            extra += f", flow={self.flow!r}"
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads}, seq_len={self.seq_len}{extra})")


def _as_edge_index(adj: Tensor | SparseTensor, flow: str) -> tuple[Tensor, tuple[int, int] | None]:
    """``edge_index`` [2, E] of a LongTensor, ``SparseTensor`` or torch.sparse ``adj_t``,
    and (N_src, N_dst) for the sparse ones.

    A sparse ``adj_t`` is PyG's transposed adjacency: entry (i, j) carries j's message
    to i, so it defines the direction itself, as in PyG's own layers.
    """
    if isinstance(adj, SparseTensor) or is_torch_sparse_tensor(adj):
        if flow != "source_to_target":
            raise ValueError('BRLConv: flow="target_to_source" is invalid with a sparse '
                             "adj_t (it already says who sends to whom); transpose it instead")
        num_dst, num_src = int(adj.size(0)), int(adj.size(1))
        index, _ = to_edge_index(adj)  # [row = destination, col = source]
        return index.flip(0), (num_src, num_dst)
    if not isinstance(adj, Tensor):
        raise TypeError(f"BRLConv: edge_index must be a LongTensor [2, E], a SparseTensor or "
                        f"a torch.sparse adjacency, got {type(adj).__name__}")
    return adj, None

"""BRLConv: BRL-Attention over hop-ordered neighbourhoods, as a torch-geometric layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.nn.attention import attention_options as attention_options_of
from brlgraph.nn.attention import make_attention
from brlgraph.sequences import DEFAULT_MAX_HOPS, NodeSequences, hop_ordered_sequences


class BRLConv(nn.Module):
    r"""Each node attends over its own hop-ordered context sequence (spec 4.1).

    For every node v, the sequence :math:`T(v) = [v, t_1, \dots, t_{S-1}]` holds its
    neighbourhood ordered by hop (built from ``edge_index`` with a fixed seed, cached
    per ``edge_index``). Then

    .. math::
        z_j = W_{\mathrm{in}} x_{t_j} + e_{\mathrm{hop}(t_j)}, \qquad
        a = \mathrm{Attn}(\mathrm{LN}(Z), \mathrm{mask})_0, \qquad
        x'_v = W_{\mathrm{out}} (z_0 + a)

    with Attn a BRL-Attention layer (``window``, ``reservoir_size``), or any backend of
    ``make_attention`` via ``attention``.

    Args:
        in_channels: F_in.
        out_channels: F_out.
        heads: attention heads.
        seq_len: S, tokens per node (the node itself included).
        window: local window half-width of BRL-Attention (default ``seq_len // 4``).
        reservoir_size: m, reservoir tokens (default ``seq_len // 4``).
        hidden_channels: width of the tokens (default ``max(out_channels, 8 * heads)``,
            rounded up to a multiple of ``heads``).
        max_hops: deepest hop in a sequence.
        seed: seed of the context sampling.
        attention: backend name (``"brl"`` by default).
        attention_options: further options of ``make_attention``.
        chunk_size: nodes per attention call (bounds memory), all at once if ``None``.

    Shapes: x [N, F_in], edge_index [2, E] -> [N, F_out].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 4,
        seq_len: int = 32,
        window: int | None = None,
        reservoir_size: int | None = None,
        hidden_channels: int | None = None,
        max_hops: int = DEFAULT_MAX_HOPS,
        seed: int = 0,
        attention: str = "brl",
        attention_options: dict[str, Any] | None = None,
        chunk_size: int | None = 4096,
    ) -> None:
        super().__init__()
        if seq_len < 1:
            raise ConfigError(f"BRLConv: seq_len (sequences.seq_len of a config) must be >= 1, got {seq_len}")
        hidden = hidden_channels or max(out_channels, 8 * heads)
        hidden = -(-hidden // heads) * heads
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.seq_len, self.max_hops, self.seed, self.chunk_size = seq_len, max_hops, seed, chunk_size
        self.window = window if window is not None else max(1, seq_len // 4)
        self.reservoir_size = reservoir_size if reservoir_size is not None else max(1, seq_len // 4)
        accepted = attention_options_of(attention)
        common = {"window": self.window, "reservoir_size": self.reservoir_size}
        opts = {k: v for k, v in common.items() if k in accepted}
        opts.update(attention_options or {})
        self.attention = attention
        self.lin_in = nn.Linear(in_channels, hidden)
        self.hop_emb = nn.Embedding(max_hops + 1, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.attn = make_attention(attention, hidden, heads, **opts)
        self.lin_out = nn.Linear(hidden, out_channels)
        self._cache: tuple[Tensor, tuple[int, int], NodeSequences] | None = None

    def reset_parameters(self) -> None:
        for module in (self.lin_in, self.hop_emb, self.norm, self.lin_out):
            module.reset_parameters()
        if hasattr(self.attn, "reset_parameters"):
            self.attn.reset_parameters()
        else:
            for module in self.attn.modules():
                if module is not self.attn and hasattr(module, "reset_parameters"):
                    module.reset_parameters()

    def sequences(self, edge_index: Tensor, num_nodes: int) -> NodeSequences:
        """Hop-ordered sequences of all nodes, cached for the last ``edge_index`` seen."""
        # Keyed by the tensor itself (held, so its memory is not reused by another
        # edge_index) and its version counter (bumped by in-place changes).
        c = self._cache
        if c is None or c[0] is not edge_index or c[1] != (edge_index._version, num_nodes):
            graph = GraphView.from_edge_index(edge_index, num_nodes)
            seqs = hop_ordered_sequences(
                graph, None, self.seq_len, max_hops=self.max_hops, seed=self.seed
            )
            self._cache = c = (edge_index, (edge_index._version, num_nodes), seqs.to(edge_index.device))
        return c[2]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        seqs = self.sequences(edge_index, x.shape[0])
        h = self.lin_in(x)
        step = self.chunk_size or x.shape[0]
        out = []
        for start in range(0, x.shape[0], step):
            part = seqs[start:start + step]
            z = h[part.ids.clamp(min=0)] + self.hop_emb(part.hops.clamp(min=0))
            z = z * part.mask.unsqueeze(-1)
            a, _ = self.attn.attend(self.norm(z), part.mask, None)
            out.append(z[:, 0] + a[:, 0])
        return self.lin_out(torch.cat(out))

    def __repr__(self) -> str:
        extra = "" if self.attention == "brl" else f", attention={self.attention!r}"
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads}, seq_len={self.seq_len}{extra})")

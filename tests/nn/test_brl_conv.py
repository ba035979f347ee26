"""BRLConv as a torch-geometric layer."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GCNConv, Sequential

from brlgraph.errors import ConfigError
from brlgraph.nn import BRLConv


def planted_partition(n_per: int = 60, p_in: float = 0.15, p_out: float = 0.01, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2).repeat_interleave(n_per)
    n = y.numel()
    same = y[:, None] == y[None, :]
    prob = torch.where(same, p_in, p_out)
    adj = torch.rand(n, n, generator=g) < prob
    adj = torch.triu(adj, 1)
    edge_index = adj.nonzero().t()
    x = 0.5 * torch.nn.functional.one_hot(y, 2).float() + torch.randn(n, 8, generator=g)[:, :2] * 1.0
    x = torch.cat([x, torch.randn(n, 6, generator=g)], 1)
    return x, edge_index, y


def test_repr_and_shapes():
    conv = BRLConv(16, 32, heads=4, seq_len=32)
    assert repr(conv) == "BRLConv(16, 32, heads=4, seq_len=32)"
    x, edge_index = torch.randn(10, 16), torch.randint(0, 10, (2, 30))
    assert conv(x, edge_index).shape == (10, 32)
    assert repr(BRLConv(4, 4, heads=2, attention="full")) == "BRLConv(4, 4, heads=2, seq_len=32, attention='full')"


def test_sequences_cached_per_edge_index_and_isolated_nodes():
    conv = BRLConv(5, 3, heads=2, seq_len=8).eval()
    x = torch.randn(6, 5)
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])  # nodes 4 and 5 isolated
    s1 = conv.sequences(ei, 6)
    assert conv.sequences(ei, 6) is s1
    ei2 = torch.tensor([[0, 1], [1, 2]])
    assert conv.sequences(ei2, 6) is not s1
    ei[1, 2] = 4  # in place: 3 -> 4
    s3 = conv.sequences(ei, 6)
    assert s3.ids[4, 1] == 2 and s3.mask[3].sum() == 1
    ei[1, 2] = 3
    out = conv(x, ei)
    # an isolated node's output depends only on its own features
    x2 = x.clone()
    x2[:4] += 3.0
    torch.testing.assert_close(conv(x2, ei)[4:], out[4:])
    assert (conv(x2, ei)[:4] - out[:4]).abs().amax() > 1e-4


def test_reset_parameters():
    conv = BRLConv(5, 3, heads=2, seq_len=8)
    before = [p.detach().clone() for p in conv.parameters()]
    torch.manual_seed(123)
    conv.reset_parameters()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, conv.parameters(), strict=True))
    assert changed >= 2


def test_trains_in_sequential_with_gcn():
    x, edge_index, y = planted_partition()
    torch.manual_seed(0)
    model = Sequential("x, edge_index", [
        (GCNConv(8, 16), "x, edge_index -> x"),
        torch.nn.ReLU(),
        (BRLConv(16, 16, heads=2, seq_len=16), "x, edge_index -> x"),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 2),
    ])
    train = torch.zeros(y.numel(), dtype=torch.bool)
    train[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(1))[:40]] = True
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x, edge_index)[train], y[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    model.eval()
    acc = (model(x, edge_index).argmax(1) == y)[~train].float().mean()
    assert acc > 0.85, float(acc)


def test_a_bad_sequence_length_names_its_config_key():
    with pytest.raises(ConfigError, match=r"seq_len \(sequences\.seq_len of a config\) must be >= 1, got 0"):
        BRLConv(4, 4, heads=2, seq_len=0)

"""BRLConv against PyG's conv contract: inputs, direction, mini-batches, compile, DDP."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys

import pytest
import torch
import torch.distributed as dist
from torch_geometric.data import Data
from torch_geometric.datasets import FakeHeteroDataset
from torch_geometric.nn import GCNConv, Sequential, to_hetero

from brlgraph.errors import ConfigError
from brlgraph.nn import BRLConv
from brlgraph.sequences import DirectedSequences

# torch_geometric's Sequential compiles its forward in a module that runs ``from <the
# caller's file name> import *``; this file is imported as tests.nn.test_brl_conv, so
# that name has to find it too (else Sequential falls back to a forward without None).
sys.modules.setdefault(__name__.rpartition(".")[2], sys.modules[__name__])

HAS_TORCH_SPARSE = importlib.util.find_spec("torch_sparse") is not None
HAS_SAMPLER = HAS_TORCH_SPARSE or importlib.util.find_spec("pyg_lib") is not None
HAS_C_COMPILER = any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


def planted_partition(n_per: int = 60, p_in: float = 0.15, p_out: float = 0.01, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2).repeat_interleave(n_per)
    n = y.numel()
    same = y[:, None] == y[None, :]
    prob = torch.where(same, p_in, p_out)
    adj = torch.rand(n, n, generator=g) < prob
    adj = torch.triu(adj, 1)
    edge_index = adj.nonzero().t()
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
    x = 0.5 * torch.nn.functional.one_hot(y, 2).float() + torch.randn(n, 8, generator=g)[:, :2] * 1.0
    x = torch.cat([x, torch.randn(n, 6, generator=g)], 1)
    return x, edge_index, y


def random_graph(n: int, m: int, seed: int, features: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, n, (2, m), generator=g)


def test_repr_and_shapes():
    conv = BRLConv(16, 32, heads=4, seq_len=32)
    assert repr(conv) == "BRLConv(16, 32, heads=4, seq_len=32, window=8, reservoir_size=8)"
    x, edge_index = torch.randn(10, 16), torch.randint(0, 10, (2, 30))
    assert conv(x, edge_index).shape == (10, 32)
    assert repr(BRLConv(64, 64, heads=8, seq_len=32, window=4, reservoir_size=16)) == (
        "BRLConv(64, 64, heads=8, seq_len=32, window=4, reservoir_size=16)")
    assert repr(BRLConv(4, 4, heads=2, attention="full")) == (
        "BRLConv(4, 4, heads=2, seq_len=32, attention='full')")
    assert repr(BRLConv((-1, 5), 4, heads=2, seq_len=8, max_hops=3, flow="target_to_source")) == (
        "BRLConv((-1, 5), 4, heads=2, seq_len=8, window=2, reservoir_size=2, max_hops=3, "
        "flow='target_to_source')")


def test_every_constructor_argument_is_documented():
    import inspect

    doc = BRLConv.__doc__
    for name in inspect.signature(BRLConv.__init__).parameters:
        if name != "self":
            assert f"{name}:" in doc, name
    assert BRLConv.forward.__doc__ and BRLConv.sequences.__doc__
    assert "spec" not in doc.lower()  # self-contained: the spec is not installed


@pytest.mark.parametrize("layout", ["coo", "csr", "csc"])
def test_torch_sparse_adjacency_equals_edge_index(layout):
    x, ei = random_graph(40, 150, 0)
    conv = BRLConv(8, 6, heads=2, seq_len=12).eval()
    # PyG's adj_t: row = destination, column = source
    adj_t = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.shape[1]), (40, 40)).coalesce()
    adj_t = {"coo": adj_t, "csr": adj_t.to_sparse_csr(), "csc": adj_t.to_sparse_csc()}[layout]
    torch.testing.assert_close(conv(x, adj_t), conv(x, ei))
    seqs = conv.sequences(adj_t)  # the size comes from the matrix
    assert torch.equal(seqs.ids, conv.sequences(ei, 40).ids)
    with pytest.raises(ValueError, match="target_to_source"):
        BRLConv(8, 6, heads=2, flow="target_to_source")(x, adj_t)


@pytest.mark.skipif(not HAS_TORCH_SPARSE, reason="torch_sparse is not installed")
def test_sparse_tensor_adjacency_equals_edge_index():
    from torch_sparse import SparseTensor

    x, ei = random_graph(40, 150, 1)
    conv = BRLConv(8, 6, heads=2, seq_len=12).eval()
    adj_t = SparseTensor(row=ei[1], col=ei[0], sparse_sizes=(40, 40))
    torch.testing.assert_close(conv(x, adj_t), conv(x, ei))


def test_bad_edge_index_type_is_refused():
    with pytest.raises(TypeError, match="edge_index"):
        BRLConv(8, 6, heads=2)(torch.randn(4, 8), [[0, 1], [1, 2]])


def test_direction_follows_flow():
    x = torch.randn(4, 5)
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])  # a path 0 -> 1 -> 2 -> 3
    conv = BRLConv(5, 3, heads=1, seq_len=4, max_hops=3).eval()
    out = conv(x, ei)
    assert not torch.allclose(conv(x, ei.flip(0)), out)  # reversing the edges matters
    x2 = x.clone()
    x2[3] += 5.0  # node 3 sends nothing: only its own output changes
    torch.testing.assert_close(conv(x2, ei)[:3], out[:3])
    x2 = x.clone()
    x2[0] += 5.0  # node 0 reaches everyone downstream
    assert ((conv(x2, ei) - out).abs().amax(1) > 1e-4).all()
    back = BRLConv(5, 3, heads=1, seq_len=4, max_hops=3, flow="target_to_source").eval()
    back.load_state_dict(conv.state_dict())
    torch.testing.assert_close(back(x, ei), conv(x, ei.flip(0)))


def test_bipartite_input():
    g = torch.Generator().manual_seed(0)
    x_src, x_dst = torch.randn(30, 5, generator=g), torch.randn(10, 7, generator=g)
    ei = torch.stack([torch.randint(0, 30, (60,), generator=g), torch.randint(0, 10, (60,), generator=g)])
    conv = BRLConv((5, 7), 4, heads=2, seq_len=16).eval()
    out = conv((x_src, x_dst), ei)
    assert out.shape == (10, 4)
    seqs = conv.sequences(ei, (30, 10))
    assert (seqs.hops <= 1).all()  # sources receive nothing: one hop
    unused = torch.ones(30, dtype=torch.bool)
    unused[ei[0]] = False
    x_src2 = x_src.clone()
    x_src2[unused] += 3.0  # sources without an edge do not matter
    torch.testing.assert_close(conv((x_src2, x_dst), ei), out)
    lazy = BRLConv(-1, 4, heads=2, seq_len=16)  # one lazy size for both sides
    assert lazy((x_src, x_dst), ei).shape == (10, 4)
    assert lazy.lin_src.weight.shape[1] == 5 and lazy.lin_dst.weight.shape[1] == 7


def test_lazy_in_channels_and_reset_parameters():
    x, ei = random_graph(20, 60, 2, features=11)
    conv = BRLConv(-1, 6, heads=2, seq_len=8)
    assert conv(x, ei).shape == (20, 6)
    assert conv.lin_src.weight.shape == (16, 11)
    before = [p.detach().clone() for p in conv.parameters()]
    torch.manual_seed(123)
    conv.reset_parameters()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, conv.parameters(), strict=True))
    assert changed >= 6


def test_precomputed_sequences_equal_built_ones_and_isolated_nodes():
    conv = BRLConv(5, 3, heads=2, seq_len=8).eval()
    x = torch.randn(6, 5)
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])  # nodes 4 and 5 isolated
    seqs = conv.sequences(ei, 6)
    assert isinstance(seqs, DirectedSequences) and seqs.ids.shape == (6, 8)
    out = conv(x, ei)
    torch.testing.assert_close(conv(x, None, sequences=seqs), out)
    deeper = BRLConv(5, 3, heads=2, seq_len=8, max_hops=4).sequences(ei, 6)
    with pytest.raises(ConfigError, match="max_hops"):
        conv(x, None, sequences=deeper)  # hop 3 does not fit a layer of max_hops 2
    x2 = x.clone()
    x2[:4] += 3.0  # an isolated node's output depends only on its own features
    torch.testing.assert_close(conv(x2, ei)[4:], out[4:])
    assert (conv(x2, ei)[1:4] - out[1:4]).abs().amax() > 1e-4


def test_permutation_equivariance_with_node_ids():
    x, ei = random_graph(40, 160, 3)
    conv = BRLConv(8, 4, heads=2, seq_len=6).eval()  # short: hops are sampled
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(4))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(40)
    out = conv(x, ei, n_id=torch.arange(40))
    moved = conv(x[perm], inv[ei], n_id=perm)  # node i of the new numbering is perm[i]
    torch.testing.assert_close(moved, out[perm])


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


def test_every_parameter_gets_a_gradient():
    x, ei = random_graph(30, 90, 5)
    for attention in ("brl", "full", "local"):
        conv = BRLConv(8, 4, heads=2, seq_len=8, attention=attention)
        conv(x, ei).square().sum().backward()
        for name, p in conv.named_parameters():
            assert p.grad is not None, (attention, name)


# ----------------------------------------------------------------------- to_hetero
class TwoLayers(torch.nn.Module):
    def __init__(self, out: int) -> None:
        super().__init__()
        self.conv1 = BRLConv(-1, 16, heads=2, seq_len=8, max_hops=2)
        self.conv2 = BRLConv(-1, out, heads=2, seq_len=8, max_hops=2)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def test_to_hetero_on_fake_hetero_dataset():
    random.seed(0)
    torch.manual_seed(0)
    data = FakeHeteroDataset(num_graphs=1, avg_num_nodes=40, avg_degree=4, avg_num_channels=6,
                             num_classes=3)[0]
    model = to_hetero(TwoLayers(3), data.metadata(), aggr="sum")
    out = model(data.x_dict, data.edge_index_dict)
    dst_types = {dst for _, _, dst in data.edge_types}
    for t in dst_types:
        assert out[t].shape == (data[t].num_nodes, 3)
    # each destination type sums one BRLConv per relation into it; bipartite relations
    # get (x_src, x_dst), relations within a type get x alone
    h = {t: sum(model.conv1[f"{s}__{r}__{d}"]((data[s].x, data[d].x) if s != d else data[s].x,
                                               data[s, r, d].edge_index)
                for s, r, d in data.edge_types if d == t) for t in dst_types}
    first = next(iter(dst_types))
    expected = sum(model.conv2[f"{s}__{r}__{d}"](
        (h[s].relu(), h[d].relu()) if s != d else h[s].relu(), data[s, r, d].edge_index)
        for s, r, d in data.edge_types if d == first and s in h)
    torch.testing.assert_close(out[first], expected)
    y, t = data["v0"].y, "v0"
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(data.x_dict, data.edge_index_dict)[t], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


# ----------------------------------------------------------------------- mini-batches
def neighbor_batch(edge_index: torch.Tensor, seeds: torch.Tensor, num_hops: int):
    """What ``NeighborLoader(num_neighbors=[-1] * num_hops)`` returns (full fan-out):
    ``n_id`` with the seeds first and every in-edge of the nodes within
    ``num_hops - 1`` hops of a seed, relabelled, pointing towards the seeds."""
    n_id, depth = seeds.tolist(), {int(s): 0 for s in seeds}
    frontier, edges = list(n_id), []
    for d in range(num_hops):
        nxt = []
        for v in frontier:
            senders = edge_index[0, edge_index[1] == v].tolist()
            for u in senders:
                edges.append((u, v))
                if u not in depth:
                    depth[u] = d + 1
                    n_id.append(u)
                    nxt.append(u)
        frontier = nxt
    n_id_t = torch.tensor(n_id)
    local = {v: i for i, v in enumerate(n_id)}
    ei = torch.tensor([[local[u] for u, _ in edges], [local[v] for _, v in edges]]).view(2, -1)
    return n_id_t, ei


def test_neighbor_batches_give_seeds_their_full_graph_output():
    """Seeds with their whole in-neighbourhood sampled get their full-graph output,
    whichever other seeds share the batch (the layer follows the sampled, directed
    edges only; with undirected walks it went through other seeds' neighbourhoods)."""
    x, ei = random_graph(300, 900, 6)
    one = BRLConv(8, 4, heads=2, seq_len=64, max_hops=2).eval()  # covers every neighbourhood
    sampled = BRLConv(8, 4, heads=2, seq_len=6, max_hops=2).eval()  # hops are sampled
    two = Sequential("x, edge_index, n_id", [
        (BRLConv(8, 8, heads=2, seq_len=6, max_hops=1), "x, edge_index, None, n_id -> x"),
        torch.nn.ReLU(),
        (BRLConv(8, 4, heads=2, seq_len=6, max_hops=1), "x, edge_index, None, n_id -> x"),
    ]).eval()
    everyone = torch.arange(300)
    full = {m: m(x, ei, n_id=everyone) if m is not two else m(x, ei, everyone)
            for m in (one, sampled, two)}
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    for batch in (perm[:25], perm[:100:4], torch.cat([perm[:10], perm[200:240]])):
        n_id, bei = neighbor_batch(ei, batch, num_hops=2)
        for m in (one, sampled):
            out = m(x[n_id], bei, n_id=n_id)[: batch.numel()]
            torch.testing.assert_close(out, full[m][batch])
        torch.testing.assert_close(two(x[n_id], bei, n_id)[: batch.numel()], full[two][batch])


@pytest.mark.skipif(not HAS_SAMPLER, reason="NeighborLoader needs pyg-lib or torch-sparse")
def test_neighbor_loader_batches_match_the_full_graph():
    from torch_geometric.loader import NeighborLoader

    x, ei = random_graph(200, 600, 7)
    conv = BRLConv(8, 4, heads=2, seq_len=64, max_hops=2).eval()
    full = conv(x, ei, n_id=torch.arange(200))
    data = Data(x=x, edge_index=ei, num_nodes=200)
    for batch_size in (7, 50):
        for batch in NeighborLoader(data, num_neighbors=[-1, -1], batch_size=batch_size,
                                    shuffle=True):
            out = conv(batch.x, batch.edge_index, n_id=batch.n_id)[: batch.batch_size]
            torch.testing.assert_close(out, full[batch.n_id[: batch.batch_size]])


# ----------------------------------------------------------------------- compile
class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = BRLConv(8, 16, heads=2, seq_len=8)
        self.conv2 = BRLConv(16, 3, heads=2, seq_len=8, max_hops=2)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def test_compiles_on_unseen_graphs_with_fullgraph():
    torch._dynamo.reset()
    model = Net()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for n in (30, 45, 61):  # the second size makes the shapes dynamic; the third reuses them
        x, ei = random_graph(n, 3 * n, n)
        out = compiled(x, ei)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        ref = model(x, ei)
        ref.square().sum().backward()
        torch.testing.assert_close(out, ref)
        for g, p in zip(grads, model.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad)
        model.zero_grad()


@pytest.mark.skipif(not HAS_C_COMPILER, reason="inductor needs a C compiler")
def test_compiles_with_inductor():
    torch._dynamo.reset()
    conv = BRLConv(8, 4, heads=2, seq_len=8).eval()
    compiled = torch.compile(conv, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for n in (30, 45):
            x, ei = random_graph(n, 3 * n, n)
            torch.testing.assert_close(compiled(x, ei), conv(x, ei), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------- DDP
def ddp_worker(out_dir: str) -> None:
    """One torchrun process: three DDP steps of ``Net`` on a graph of its own, then its
    weights saved (run by :func:`test_distributed_data_parallel_two_gloo_processes`)."""
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        model = DistributedDataParallel(Net())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            x, ei = random_graph(25 + rank, 80, 100 * rank + step)  # each rank its own graph
            loss = model(x, ei).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # neither process leaves while the other still talks to it
    finally:
        dist.destroy_process_group()


def test_distributed_data_parallel_two_gloo_processes(tmp_path):
    """Plain DDP (no find_unused_parameters) over two CPU processes started by torchrun:
    every parameter gets its gradient in every step, so both end with the same weights."""
    from tests.train.test_distributed import torchrun

    torchrun(["-m", "tests.nn.test_brl_conv", str(tmp_path)], 2, {"OMP_NUM_THREADS": "1"},
             timeout=600)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.manual_seed(0)
    start = Net().state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert any(not torch.equal(a[k], start[k]) for k in a)  # the steps changed the weights


if __name__ == "__main__":  # a torchrun process of the DDP test
    ddp_worker(sys.argv[1])

"""BRLFormer / BRLGraphSequenceModel: shapes, streams, equivalences, a real-data overfit."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from brlgraph.errors import ConfigError
from brlgraph.graph import GraphView
from brlgraph.nn import ATTENTION_BACKENDS
from brlgraph.nn.brlformer import BRLFormer, BRLGraphSequenceModel
from brlgraph.sequences import hop_ordered_sequences


def toy_hetero(seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["author"].x = torch.randn(30, 6, generator=g)
    data["paper"].x = torch.randn(50, 9, generator=g)
    data["venue"].num_nodes = 4  # featureless: learned embedding
    data["author", "writes", "paper"].edge_index = torch.stack(
        [torch.randint(0, 30, (80,), generator=g), torch.randint(0, 50, (80,), generator=g)]
    )
    data["paper", "in", "venue"].edge_index = torch.stack([torch.arange(50), torch.arange(50) % 4])
    data["author"].num_nodes = 30
    data.num_classes = 3
    return data


SMALL = dict(hidden_channels=16, heads=2, layers=2, window=2, reservoir_size=4, dropout=0.0)


@pytest.mark.parametrize("attention", ATTENTION_BACKENDS)
def test_shapes_for_every_backend(attention):
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, attention=attention, **SMALL)
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author", max_hops=3)
    logits = model(graph, seqs[:7])
    assert logits.shape == (7, 3) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    for name in ("encoder.proj.0.weight", "encoder.proj.2.weight", "hop_emb.weight", "head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("attention", ["brl", "full"])
def test_rows_are_independent_and_padding_ignored(attention):
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, attention=attention, **SMALL).eval()
    seqs = hop_ordered_sequences(graph, None, 40, node_type="author")  # long: many padded rows
    assert (~seqs.mask).any()
    full = model(graph, seqs)
    alone = torch.cat([model(graph, seqs[i:i + 1]) for i in (0, 5, 29)])
    torch.testing.assert_close(alone, full[[0, 5, 29]], rtol=1e-4, atol=1e-5)
    # features of nodes outside a target's sequence do not matter (no GNN)
    row = int(seqs.mask.sum(1).argmin())
    outside = torch.ones(graph.num_nodes, dtype=torch.bool)
    outside[seqs.ids[row][seqs.mask[row]]] = False
    data2 = toy_hetero()
    data2["paper"].x[outside[30:80]] += 5.0
    data2["author"].x[outside[:30]] += 5.0
    out2 = model(GraphView.from_data(data2), seqs[row:row + 1])
    torch.testing.assert_close(out2, full[row:row + 1], rtol=1e-4, atol=1e-5)


def test_reservoir_stream_is_carried_through_layers():
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, attention="brl", **SMALL).eval()
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author")
    x = model.tokens(graph, seqs)
    out, reservoir = model.blocks(x, seqs.mask)
    block0 = model.blocks[0]
    assert reservoir.shape == (30, block0.attn.reservoir_size, block0.attn.reservoir_dim)
    # the reservoir differs per sequence (written from each sequence)
    assert (reservoir - reservoir[:1]).abs().amax() > 1e-4
    before = model(graph, seqs)
    # block 0's reservoir feed-forward reaches the output only through the carried stream
    # (a random shift: a constant one would vanish in the next LayerNorm)
    with torch.no_grad():
        block0.ff_c[-1].bias.add_(torch.randn(block0.attn.reservoir_dim))
    assert (model(graph, seqs) - before).abs().amax() > 1e-5
    # the last block's reservoir feed-forward cannot reach the output
    with torch.no_grad():
        after = model(graph, seqs)
        model.blocks[-1].ff_c[-1].bias.add_(torch.randn(block0.attn.reservoir_dim))
        torch.testing.assert_close(model(graph, seqs), after)


@pytest.mark.parametrize("gnn", ["gcn", "sage", "gat", "hsage"])
def test_gnn_encoder_and_precomputed_states(gnn):
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, gnn_layers=2, gnn=gnn, **SMALL).eval()
    seqs = hop_ordered_sequences(graph, None, 4, node_type="author")
    with torch.no_grad():
        h = model.node_states(graph)
        assert h.shape == (graph.num_nodes, 16)
        before = model(graph, seqs)
        torch.testing.assert_close(model(graph, seqs, node_states=h), before)
        # with a GNN, a paper next to the sequence (but not in it) reaches the target
        row = 0
        inside = set(seqs.ids[row][seqs.mask[row]].tolist())
        ei = graph.edge_index
        near = {int(v) for u, v in ei.t().tolist() if u in inside and v not in inside and 30 <= v < 80}
        paper = min(near) - 30
        data["paper"].x[paper] += 3.0
        after = model(GraphView.from_data(data), seqs)
    assert (after[row] - before[row]).abs().amax() > 1e-5


def test_homogeneous_data_and_errors():
    data = Data(x=torch.randn(20, 5), edge_index=torch.randint(0, 20, (2, 60)), num_classes=4)
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, **SMALL)
    seqs = hop_ordered_sequences(graph, None, 8, max_hops=4)
    assert model(graph, seqs).shape == (20, 4)
    deep = hop_ordered_sequences(graph, None, 8, max_hops=4)
    small = BRLFormer.from_data(data, max_hops=1, **SMALL)
    if int(deep.hops.max()) > 1:
        with pytest.raises(ConfigError, match="max_hops"):
            small(graph, deep)
    with pytest.raises(ConfigError, match="divisible"):
        BRLFormer.from_data(data, hidden_channels=15, heads=2)
    with pytest.raises(ConfigError, match="num_classes"):
        BRLFormer.from_data(Data(x=torch.randn(3, 2), edge_index=torch.zeros(2, 0, dtype=torch.long)))


def test_graph_sequence_model():
    data = Data(x=torch.randn(40, 5), edge_index=torch.randint(0, 40, (2, 120)), num_classes=3)
    graph = GraphView.from_data(data)
    model = BRLGraphSequenceModel.from_data(data, attention="full", order="rcm", **SMALL).eval()
    out = model(graph)
    assert out.shape == (40, 3)
    # full attention has no notion of position: any order gives the same per-node logits
    perm = torch.randperm(40)
    torch.testing.assert_close(model(graph, order=perm), out, rtol=1e-4, atol=1e-5)
    # BRL's window makes the order matter
    brl = BRLGraphSequenceModel.from_data(data, attention="brl", order="bfs", **SMALL).eval()
    assert (brl(graph, order=perm) - brl(graph)).abs().amax() > 1e-5
    assert brl.node_permutation(graph) is brl.node_permutation(graph)


def test_overfits_a_few_dblp_authors(shared_data, monkeypatch, cache_dir):
    monkeypatch.setenv("BRLGRAPH_DATA", str(shared_data))
    from brlgraph.data import load_hgb

    data = load_hgb("DBLP")
    graph = GraphView.from_data(data)
    torch.manual_seed(0)
    labelled = torch.nonzero(data["author"].train_mask).squeeze(1)[:48]
    seqs = hop_ordered_sequences(graph, labelled, 16, node_type="author", max_hops=2)
    y = data["author"].y[labelled]
    model = BRLFormer.from_data(data, hidden_channels=32, heads=4, layers=1, window=4, reservoir_size=4, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(graph, seqs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (model(graph, seqs).argmax(1) == y).float().mean()
    assert acc >= 0.95, (float(loss), float(acc))


def test_causal_reservoir_is_not_written_from_the_sequence():
    data = toy_hetero()
    graph = GraphView.from_data(data)
    model = BRLFormer.from_data(data, attention="brl", attention_options={"causal": True}, **SMALL)
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author")
    _, reservoir = model.blocks(model.tokens(graph, seqs), seqs.mask)
    # C' = C + FFN_c(LN(C)) only: the same for every sequence
    torch.testing.assert_close(reservoir, reservoir[:1].expand_as(reservoir))
    assert model(graph, seqs).shape == (30, 3)


def test_attention_options_reach_the_backend():
    data = toy_hetero()
    model = BRLFormer.from_data(
        data, attention="brl", attention_options={"window_mode": "block"}, **SMALL
    )
    attn = model.blocks[0].attn
    assert (attn.window, attn.reservoir_size, attn.window_mode) == (2, 4, "block")
    graph = GraphView.from_data(data)
    assert model(graph, hop_ordered_sequences(graph, None, 9, node_type="author")).shape == (30, 3)
    # model-level window/reservoir are not forced on backends without them
    assert BRLFormer.from_data(data, attention="performer", **SMALL).blocks[0].attn is not None
    with pytest.raises(ConfigError, match="no option"):
        BRLFormer.from_data(data, attention="full", attention_options={"reservoir_size": 3}, **SMALL)
    with pytest.raises(ConfigError, match="node order"):
        BRLGraphSequenceModel.from_data(data, order="spectral", **SMALL)


def test_embedding_std_scales_every_embedding_table_and_nothing_else():
    data = toy_hetero()
    models = []
    for std in (1.0, 0.02):
        torch.manual_seed(3)
        models.append(BRLFormer.from_data(data, path_tokens=2, embedding_std=std, gnn_layers=1, **SMALL))
    plain, small = (dict(m.named_parameters()) for m in models)
    embeddings = {name for name, module in models[0].named_modules() if isinstance(module, torch.nn.Embedding)}
    # the input tables are scaled: featureless venue nodes, node types, hops, path steps;
    # the reservoir's initial tokens inside the attention are not
    assert embeddings == {"encoder.proj.2", "encoder.type_emb", "hop_emb", "path_emb",
                          "blocks.0.attn.embedding", "blocks.1.attn.embedding"}
    embeddings = {name for name in embeddings if not name.startswith("blocks.")}
    for name, weight in plain.items():
        expected = 0.02 * weight if name.rsplit(".", 1)[0] in embeddings else weight
        torch.testing.assert_close(small[name], expected, rtol=0, atol=0)  # same draws, scaled
    assert 0.5 < float(plain["hop_emb.weight"].std()) < 2.0
    with pytest.raises(ConfigError, match=r"model\.embedding_std must be > 0"):
        BRLFormer.from_data(data, embedding_std=0.0, **SMALL)


def test_logit_norm_bounds_the_logits():
    data = toy_hetero()
    graph = GraphView.from_data(data)
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author")
    torch.manual_seed(0)
    plain = BRLFormer.from_data(data, **SMALL).eval()
    torch.manual_seed(0)
    normed = BRLFormer.from_data(data, logit_norm=2.0, **SMALL).eval()
    a, b = plain(graph, seqs), normed(graph, seqs)
    torch.testing.assert_close(b.norm(dim=-1), torch.full((30,), 2.0))
    torch.testing.assert_close(b, 2.0 * a / a.norm(dim=-1, keepdim=True))  # same direction
    with pytest.raises(ConfigError, match="logit_norm"):
        BRLFormer.from_data(data, logit_norm=-1.0, **SMALL)


def test_path_tokens_join_the_sequence():
    data = toy_hetero()
    graph = GraphView.from_data(data)
    torch.manual_seed(0)
    model = BRLFormer.from_data(data, path_tokens=2, **SMALL).eval()
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author", max_hops=3)[:6]
    h = model.node_states(graph)
    paths, tokens = model.path_token_inputs(graph, seqs.ids[:, 0], h)
    assert len(paths) == tokens.shape[1] >= 2 and tokens.shape == (6, len(paths), 16)
    with torch.no_grad():
        logits = model(graph, seqs)
        torch.testing.assert_close(model(graph, seqs, node_states=h), logits)
        # the blocks see [target, path tokens, context]: the same thing by hand
        z = model.tokens(graph, seqs, h)
        z = torch.cat([z[:, :1], tokens, z[:, 1:]], 1)
        mask = torch.cat([seqs.mask[:, :1], torch.ones(6, len(paths), dtype=torch.bool), seqs.mask[:, 1:]], 1)
        torch.testing.assert_close(model.readout(model.blocks(z, mask)[0][:, 0]), logits)
    model.train()
    model(graph, seqs).square().sum().backward()
    assert model.path_emb.weight.grad.abs().sum() > 0
    mixed = hop_ordered_sequences(graph, torch.tensor([0, 35]), 12, max_hops=3)  # an author and a paper
    with pytest.raises(ConfigError, match="path_tokens"):
        model(graph, mixed)
    with pytest.raises(ConfigError, match="path_tokens"):
        BRLFormer.from_data(data, path_tokens=-1, **SMALL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_on_cuda_matches_the_cpu():
    # relation-aware GNN, path tokens and BRL attention, on the GPU
    data = toy_hetero()
    graph = GraphView.from_data(data)
    torch.manual_seed(0)
    model = BRLFormer.from_data(data, path_tokens=2, gnn="hsage", gnn_layers=2, **SMALL).eval()
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author", max_hops=3)
    with torch.no_grad():
        cpu = model(graph, seqs)
        gpu = model.cuda()(graph, seqs)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    model.train()
    model(graph, seqs).square().sum().backward()
    assert all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_path_means_are_computed_once_and_passed_explicitly():
    """Evaluation over many batches and draws computes the path means once
    (``path_means``) and passes them; nothing is cached behind the caller's back, so a
    node-state tensor changed in place, or an inference tensor, needs no version counter."""
    data = toy_hetero()
    graph = GraphView.from_data(data)
    torch.manual_seed(0)
    model = BRLFormer.from_data(data, path_tokens=2, **SMALL).eval()
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author", max_hops=3)
    h = model.node_states(graph).detach()
    with torch.enable_grad():
        expected = model(graph, seqs, node_states=h).detach()  # row-restricted
    with torch.no_grad():
        means = model.path_means(graph, h, "author")
        assert means.means.shape[:2] == (30, len(means.paths))
        batches = torch.cat([model(graph, seqs[:10], node_states=h, path_means=means),
                             model(graph, seqs[10:], node_states=h, path_means=means)])
        torch.testing.assert_close(batches, expected)
        # without them, the same numbers bit for bit: every node's means, then the rows
        plain = torch.cat([model(graph, seqs[:10], node_states=h), model(graph, seqs[10:], node_states=h)])
        assert torch.equal(plain, batches)
        h.mul_(2.0)
        changed = model(graph, seqs, node_states=h)
    with torch.enable_grad():
        torch.testing.assert_close(changed, model(graph, seqs, node_states=h).detach())
    with torch.inference_mode():
        hi = model.node_states(graph)
        torch.testing.assert_close(model(graph, seqs, node_states=hi), expected)
    with pytest.raises(ConfigError, match="node type"):
        model(graph, seqs, node_states=h, path_means=model.path_means(graph, h, "paper"))


def test_compiles_and_runs_on_graphs_it_has_not_seen():
    """The graph-derived tensors (features on the device, adjacency blocks) are built
    outside the compiled region, so a compiled model meets a new graph without error."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = BRLFormer.from_data(toy_hetero(), gnn_layers=1, gnn="hsage", path_tokens=2, **SMALL)
    compiled = torch.compile(model, backend="aot_eager")
    for seed in (1, 2):
        data = toy_hetero(seed)
        graph = GraphView.from_data(data)
        seqs = hop_ordered_sequences(graph, None, 12, node_type="author", max_hops=3)
        out = compiled(graph, seqs[:20])
        out.square().sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        ref = model(graph, seqs[:20])
        ref.square().sum().backward()
        torch.testing.assert_close(out, ref)
        for n, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6)
        model.zero_grad()


def test_activation_checkpointing_gives_the_same_values_and_gradients(attention="brl"):
    """model.checkpoint recomputes each GNN layer and half-block in the backward pass
    with the dropout masks of the forward pass: the same loss and gradients, bitwise."""
    from brlgraph.data.synthetic import sbm_graph

    data = sbm_graph(300, num_features=12, seed=1)
    graph = GraphView.from_data(data)
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(5)
        model = BRLGraphSequenceModel.from_data(
            graph, num_classes=10, attention=attention, gnn="hsage", gnn_layers=2, checkpoint=checkpoint,
            **{**SMALL, "dropout": 0.3})
        model.train()
        loss = torch.nn.functional.cross_entropy(model(graph), data.y)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()], torch.get_rng_state()))
    (l0, g0, rng0), (l1, g1, rng1) = results
    assert torch.equal(l0, l1) and torch.equal(rng0, rng1)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("path_tokens", [0, 1])
def test_reservoir_from_target_starts_as_the_plain_model_and_then_reads_the_target(path_tokens):
    data = toy_hetero()
    graph = GraphView.from_data(data)
    seqs = hop_ordered_sequences(graph, None, 12, node_type="author")
    torch.manual_seed(0)
    plain = BRLFormer.from_data(data, attention="brl", path_tokens=path_tokens, **SMALL).eval()
    torch.manual_seed(0)
    model = BRLFormer.from_data(data, attention="brl", path_tokens=path_tokens, reservoir_from_target=True,
                                **SMALL).eval()
    assert plain.target_write is None and model.target_write is not None
    # W_t starts at zero and is drawn after every other parameter: the same model at the start
    torch.testing.assert_close(model(graph, seqs), plain(graph, seqs))
    model(graph, seqs).square().sum().backward()
    grad = model.target_write.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    with torch.no_grad():
        model.target_write.weight.normal_()
    z = model.tokens(graph, seqs)
    c0 = model.first_reservoir(z)
    e = model.blocks[0].attn.initial_reservoir(len(z))
    torch.testing.assert_close(c0, e + (z[:, 0] @ model.target_write.weight.T)[:, None])
    assert (model(graph, seqs) - plain(graph, seqs)).abs().amax() > 1e-4
    # rows stay independent: a target's reservoir is written from its own target token
    torch.testing.assert_close(model(graph, seqs[3:4]), model(graph, seqs)[3:4], rtol=1e-4, atol=1e-5)


def test_reservoir_from_target_needs_a_reservoir():
    with pytest.raises(ConfigError, match="reservoir_from_target needs an attention backend with a reservoir"):
        BRLFormer.from_data(toy_hetero(), attention="full", reservoir_from_target=True, **SMALL)

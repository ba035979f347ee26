"""Real training on DBLP from the shared data: accuracy, determinism, exact resumption."""

from __future__ import annotations

import pytest

from brlgraph.errors import CheckpointError, ConfigError
from brlgraph.train.checkpoint import load_checkpoint
from brlgraph.train.config import build_config
from brlgraph.train.experiment import featureless_types, run_experiment
from tests.conftest import require_data

# Small enough for CI (a few seconds per epoch on two CPU cores), big enough to learn DBLP.
# The shipped model shrunk; its L2-normalised logits learn too slowly for 8 epochs, so off.
FAST = ["train.epochs=8", "train.patience=8", "sequences.length=16", "model.hidden=32",
        "model.heads=2", "model.layers=1", "model.gnn=hsage", "model.gnn_layers=2",
        "model.logit_norm=0.0",
        "train.batch_size=256", "train.lr=0.01", "seed=1", "data.split_seed=1"]
RESUME_AT = 3


@pytest.fixture(scope="module")
def dblp_env(tmp_path_factory):
    root = require_data("hgb", "DBLP.zip").parents[1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRLGRAPH_DATA", str(root))
        mp.setenv("BRLGRAPH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def reference(dblp_env):
    return run_experiment(build_config("DBLP", None, FAST), dblp_env / "a", progress=False)


def _same(a, b):
    drop = ("seconds", "setup_seconds")
    assert {k: v for k, v in a["metrics"].items() if k not in drop} == \
        {k: v for k, v in b["metrics"].items() if k not in drop}
    assert [{k: v for k, v in h.items()} for h in a["history"]] == b["history"]
    assert a["predictions"] == b["predictions"]


def test_short_dblp_run_learns(reference):
    m = reference["metrics"]
    assert m["test_micro_f1"] >= 0.85, m
    assert m["epochs"] == 8 and 1 <= m["best_epoch"] <= 8
    assert len(reference["predictions"]["global_id"]) == 2840


@pytest.fixture(scope="module")
def interrupted(dblp_env):
    """The reference config run again, interrupted (KeyboardInterrupt) after RESUME_AT epochs."""

    def interrupt(epoch, metrics):
        if epoch == RESUME_AT:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(build_config("DBLP", None, FAST), dblp_env / "c", progress=False,
                       on_epoch_end=interrupt)
    return dblp_env / "c"


def test_same_seed_same_result(reference, interrupted):
    # a second run of the same config, in the same process after other runs, repeats the
    # first one's epochs exactly (train loss and validation metrics)
    state = load_checkpoint(interrupted / "checkpoint.pt")
    assert state["epoch"] == RESUME_AT
    assert state["history"] == reference["history"][:RESUME_AT]


def test_resume_after_interrupt_ends_where_uninterrupted_run_ends(reference, interrupted):
    resumed = run_experiment(build_config("DBLP", None, FAST), interrupted, resume=True,
                             progress=False)
    _same(reference, resumed)
    assert resumed["metrics"]["epochs"] == 8


#: the DBLP config above, shorter: an ensemble trains it once per member
SHORT = [*FAST, "train.epochs=2", "train.patience=2"]


@pytest.fixture(scope="module")
def ensemble_pair(dblp_env):
    """The short config as one model and as a two-member ensemble."""
    one = run_experiment(build_config("DBLP", None, SHORT), dblp_env / "one", progress=False)
    two = run_experiment(build_config("DBLP", None, [*SHORT, "train.ensemble=2"]), dblp_env / "two",
                         progress=False)
    return one, two


def test_ensemble_member_zero_is_the_one_model_run(ensemble_pair):
    from brlgraph.train.experiment import MEMBER_SEED_STEP

    one, two = ensemble_pair
    members = two["record"]["members"]
    assert [m["seed"] for m in members] == [1, 1 + MEMBER_SEED_STEP]
    assert "members" not in one["record"]
    for key, value in one["metrics"].items():  # member 0 is the one-model run, bitwise
        if key.startswith(("val_", "test_")):
            assert members[0][key] == value, key
    assert members[0]["best_epoch"] == one["metrics"]["best_epoch"] == two["metrics"]["best_epoch"]
    assert two["history"] == one["history"]
    assert members[1]["test_loss"] != members[0]["test_loss"]  # another model, not a copy
    m = two["metrics"]
    assert m["epochs"] == members[0]["epochs"] + members[1]["epochs"] == 4
    assert m["seconds"] == pytest.approx(members[0]["seconds"] + members[1]["seconds"])


def test_ensemble_predicts_the_mean_probability_of_its_members_best_models(dblp_env, ensemble_pair):
    import torch

    from brlgraph.train.experiment import build_task, load_dataset, member_checkpoint, member_seed
    from brlgraph.train.metrics import classification_metrics, ensemble_logits

    _, two = ensemble_pair
    logits = []
    for k in range(2):  # each member's best state, read back from its own checkpoint
        config = build_config("DBLP", None, [*SHORT, "train.ensemble=2", f"seed={member_seed(1, k)}"])
        task = build_task(load_dataset(config), config)
        task.model.load_state_dict(load_checkpoint(member_checkpoint(dblp_env / "two", k))["best"]["model"])
        logits.append(task.logits("test"))
    combined = ensemble_logits(logits)
    assert two["predictions"]["labels"] == [[int(c)] for c in combined.argmax(-1)]
    assert two["metrics"]["test_micro_f1"] == classification_metrics(combined, task.y["test"])["micro_f1"]
    assert not torch.equal(logits[0].argmax(-1), logits[1].argmax(-1))  # the members disagree somewhere


def test_resume_inside_an_ensemble_ends_where_the_uninterrupted_ensemble_ends(dblp_env, ensemble_pair):
    _, two = ensemble_pair
    calls = []

    def interrupt(epoch, metrics):  # member 1's first epoch: member 0 is done, member 1 started
        calls.append(epoch)
        if len(calls) == 3:
            raise KeyboardInterrupt

    config = build_config("DBLP", None, [*SHORT, "train.ensemble=2"])
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, dblp_env / "two-cut", progress=False, on_epoch_end=interrupt)
    assert load_checkpoint(dblp_env / "two-cut" / "checkpoint-member1.pt")["epoch"] == 1
    resumed = run_experiment(config, dblp_env / "two-cut", resume=True, progress=False)
    _same(two, resumed)
    drop = ("seconds",)
    assert [{k: v for k, v in m.items() if k not in drop} for m in resumed["record"]["members"]] == \
        [{k: v for k, v in m.items() if k not in drop} for m in two["record"]["members"]]
    # a one-model config does not take over the ensemble's checkpoints
    with pytest.raises(CheckpointError, match=r"train\.ensemble: 2 there, 1 here"):
        run_experiment(build_config("DBLP", None, SHORT), dblp_env / "two-cut", resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"train\.ensemble.*1\.\.32"):
        build_config("DBLP", None, ["train.ensemble=0"])


@pytest.mark.parametrize(("mode", "expected"), [("all", []), ("target", ["paper", "venue"]),
                                                 ("none", ["author", "paper", "venue"])])
def test_model_features_option_names_the_featureless_types(mode, expected):
    config = build_config("DBLP", None, [f"model.features={mode}"])
    assert featureless_types(config, ["author", "paper", "venue"], "author") == expected


def test_eval_draws_average_the_logits_of_independent_sequence_draws(dblp_env):
    import torch

    from brlgraph.sequences import hop_ordered_sequences
    from brlgraph.train.experiment import build_task, eval_seed, load_dataset

    config = build_config("DBLP", None, [*FAST, "sequences.eval_draws=3"])
    task = build_task(load_dataset(config), config)
    draws = task.eval_seqs["val"]
    assert len(draws) == 3 and not torch.equal(draws[0].ids, draws[1].ids)
    offset = task.graph.offsets[task.target_type]
    expected = []
    task.model.eval()
    with torch.no_grad():
        for d in range(3):
            seqs = hop_ordered_sequences(task.graph, task.rows["val"] + offset, config.sequences.length,
                                         max_hops=config.sequences.max_hops, seed=eval_seed(config.seed, d))
            expected.append(task.model(task.graph, seqs))
    torch.testing.assert_close(task.logits("val"), torch.stack(expected).mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="eval_draws"):
        build_task(load_dataset(config), build_config("DBLP", None, [*FAST, "sequences.eval_draws=0"]))
    config.sequences.eval_draws = 0  # a Config changed in code is checked too
    with pytest.raises(ConfigError, match="eval_draws"):
        build_task(load_dataset(config), config)


def test_label_balance_weights_the_training_loss_by_the_training_labels(dblp_env):
    import torch

    from brlgraph.train.experiment import build_task, load_dataset
    from brlgraph.train.metrics import class_weights

    config = build_config("DBLP", None, [*FAST, "train.label_balance=1.0"])
    task = build_task(load_dataset(config), config)
    y = task.y["train"]
    torch.testing.assert_close(task.weight, class_weights(y, int(y.max()) + 1))
    assert task.weight.min() < 0.99 < 1.01 < task.weight.max()  # DBLP's classes are not balanced
    seqs, target, table, pair = next(iter(task.train_batches(0)))
    assert table is None and pair is None  # no label inputs, no consistency views
    task.model.eval()
    logits = task.model(task.graph, seqs)
    torch.testing.assert_close(task.loss((seqs, target, None, None)),
                               torch.nn.functional.cross_entropy(logits, target, weight=task.weight))
    plain = build_config("DBLP", None, FAST)
    assert build_task(load_dataset(plain), plain).weight is None


def test_positive_weight_scales_bce_pos_weight_and_is_refused_for_single_label_data():
    import torch

    from brlgraph.train.experiment import train_weights
    from brlgraph.train.metrics import class_weights

    y = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]])
    config = build_config("IMDB", None, ["train.positive_weight=2.0", "train.label_balance=0.0"])
    torch.testing.assert_close(train_weights(config, y, 3, multi_label=True), torch.full((3,), 2.0))
    config.train.label_balance = 0.5
    torch.testing.assert_close(train_weights(config, y, 3, multi_label=True),
                               2.0 * class_weights(y, 3, multi_label=True, power=0.5))
    config.train.positive_weight, config.train.label_balance = 1.0, 0.0
    assert train_weights(config, y, 3, multi_label=True) is None
    dblp = build_config("DBLP", None, ["train.positive_weight=1.5"])
    with pytest.raises(ConfigError, match="positive_weight.*multi-label"):
        train_weights(dblp, torch.tensor([0, 1, 1]), 2)
    with pytest.raises(ConfigError, match=r"train\.positive_weight.*> 0"):
        build_config("IMDB", None, ["train.positive_weight=0"])


def test_label_inputs_never_show_the_labels_a_step_learns_from(dblp_env):
    import torch

    from brlgraph.train.experiment import build_task, load_dataset

    config = build_config("DBLP", None, [*FAST, "model.label_inputs=0.6"])
    task = build_task(load_dataset(config), config)
    train, n = task.label_nodes, task.graph.num_nodes
    onehot = torch.nn.functional.one_hot(task.y["train"], task.model.head.out_features).float()
    outside = torch.ones(n, dtype=torch.bool)
    outside[train] = False  # validation, test and other node types
    batches = list(task.train_batches(0))
    assert len(batches) == task.steps_per_epoch()
    for seqs, y, table, _ in batches:
        targets = seqs.ids[:, 0]
        assert table[targets].abs().sum() == 0  # the batch's own labels are hidden
        assert table[outside].abs().sum() == 0  # no validation or test label, ever
        shown = table[train].sum(1) > 0
        torch.testing.assert_close(table[train][shown], onehot[shown])
        others = ~torch.isin(train, targets)
        assert not (shown & ~others).any()
        assert 0.5 < shown[others].float().mean() < 0.7  # about p of the other training nodes
        loss = task.loss((seqs, y, table, None))
        assert torch.isfinite(loss)
    # the draws depend only on (seed, epoch): a resumed run sees the same ones
    for (_, _, a, _), (_, _, b, _) in zip(batches, task.train_batches(0), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(batches[0][2], next(iter(task.train_batches(1)))[2])
    # evaluation shows every training label and nothing else
    torch.testing.assert_close(task.eval_labels[train], onehot)
    assert task.eval_labels[outside].abs().sum() == 0


def _random_split_graph(n: int, num_classes: int, seed: int):
    """A small random homogeneous graph with a random train/val/test split (one-sequence tasks)."""
    import torch
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    split = torch.randint(0, 3, (n,), generator=g)
    return Data(x=torch.randn(n, 6, generator=g), edge_index=torch.randint(0, n, (2, 3 * n), generator=g),
                y=torch.randint(0, num_classes, (n,), generator=g), num_classes=num_classes,
                train_mask=split == 0, val_mask=split == 1, test_mask=split == 2)


def test_label_inputs_of_the_one_sequence_task(tmp_path):
    import torch

    from brlgraph.train.experiment import GraphSequenceTask

    n = 80
    data = _random_split_graph(n, num_classes=4, seed=0)
    config = build_config("20News", None, ["model.label_inputs=0.5", "model.hidden=16", "model.heads=2",
                                           "model.layers=1", "model.reservoir=4", "model.window=4"])
    task = GraphSequenceTask(data, config)
    train = task.rows["train"]
    (rows, table, order), = task.train_batches(0)
    assert torch.equal(order.sort().values, torch.arange(n))  # 20News trains on a fresh order per epoch
    shown = table[train].sum(1) > 0
    assert torch.equal(torch.sort(torch.cat([rows, train[shown]])).values, train)  # loss xor shown
    assert table[rows].abs().sum() == 0 and table[~data.train_mask].abs().sum() == 0
    assert 0 < len(rows) < len(train)
    assert torch.isfinite(task.loss((rows, table, order)))
    assert torch.equal(task.eval_labels[train].argmax(1), data.y[train])
    assert task.logits("val").shape == (int(data.val_mask.sum()), 4)
    with pytest.raises(ConfigError, match=r"label_inputs.*< 1"):
        build_config("20News", None, ["model.label_inputs=1.0"])


def test_one_sequence_task_resamples_and_averages_node_orders():
    import torch

    from brlgraph.sequences import node_order
    from brlgraph.train.experiment import GraphSequenceTask, eval_seed

    data = _random_split_graph(70, num_classes=3, seed=1)
    config = build_config("20News", None, ["sequences.resample=true", "sequences.eval_draws=3", "model.hidden=16",
                                           "model.heads=2", "model.reservoir=4", "model.window=2", "seed=4"])
    task = GraphSequenceTask(data, config)
    (_, _, first), = task.train_batches(0)
    (_, _, again), = task.train_batches(0)
    (_, _, later), = task.train_batches(1)
    assert torch.equal(first, again) and not torch.equal(first, later)  # per (seed, epoch): resumable
    assert torch.equal(first, node_order(task.graph, "rcm", seed=4 * 100_003))
    model = task.model.eval()
    with torch.no_grad():
        orders = [None, *(node_order(task.graph, "rcm", seed=eval_seed(4, d)) for d in (1, 2))]
        expected = torch.stack([model(task.graph, order=o)[task.rows["val"]] for o in orders]).mean(0)
    torch.testing.assert_close(task.logits("val"), expected)


def test_exclude_types_keeps_a_node_type_out_of_the_contexts(dblp_env):
    import torch

    from brlgraph.train.experiment import build_task, load_dataset

    config = build_config("DBLP", None, [*FAST, "sequences.exclude_types=term, venue"])
    task = build_task(load_dataset(config), config)
    skipped = [task.graph.node_types.index(t) for t in ("term", "venue")]
    seqs = [task.sampler(0), *task.eval_seqs["val"], *task.eval_seqs["test"]]
    for s in seqs:
        assert not torch.isin(s.node_types[s.mask], torch.tensor(skipped)).any()
        assert (s.hops.max() >= 2)  # author - paper - author paths remain
    assert task.model.gnn is not None and task.graph.num_edges > task.sampler.graph.num_edges  # the GNN sees all
    for bad, message in [("sequences.exclude_types=tag", r"exclude_types.*unknown node types \['tag'\]"),
                         ("sequences.exclude_types=author", r"exclude_types names the target type 'author'")]:
        cfg = build_config("DBLP", None, [*FAST, bad])
        with pytest.raises(ConfigError, match=message):
            build_task(load_dataset(cfg), cfg)
    with pytest.raises(ConfigError, match=r"exclude_types.*20News"):
        build_config("20News", None, ["sequences.exclude_types=term"])


def test_consistency_views_are_unlabelled_targets_seen_twice(dblp_env):
    import torch

    from brlgraph.train.experiment import build_task, load_dataset
    from brlgraph.train.metrics import classification_loss, consistency_loss

    config = build_config("DBLP", None, [*FAST, "train.consistency=2.0", "train.consistency_temperature=0.5"])
    task = build_task(load_dataset(config), config)
    train = set(task.label_nodes.tolist())
    batches = list(task.train_batches(0))
    for seqs, _, _, (a, b) in batches:
        assert len(a) == len(b) == len(seqs)
        assert torch.equal(a.targets, b.targets)  # the same nodes ...
        assert not train & set(a.targets.tolist())  # ... none with a training label
        assert not torch.equal(a.ids, b.ids)  # ... with two different context draws
    seqs, y, table, pair = batches[0]
    model = task.model.eval()  # no dropout: the loss can be recomputed by hand
    with torch.no_grad():
        h = model.node_states(task.graph)
        expected = classification_loss(model(task.graph, seqs, node_states=h), y) + 2.0 * consistency_loss(
            [model(task.graph, view, node_states=h) for view in pair], temperature=0.5)
        torch.testing.assert_close(task.loss(batches[0]), expected)
    with pytest.raises(ConfigError, match=r"consistency.*20News"):
        build_config("20News", None, ["train.consistency=1.0"])


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_short_dblp_run_on_cuda_learns_and_repeats(dblp_env):
    # the CI run above on the GPU. Deterministic mode there gave the same predictions, F1
    # scores and epochs twice, but a test loss 2e-7 apart (relative) on an H100: compare the
    # losses with a tolerance and everything else exactly.
    runs = [run_experiment(build_config("DBLP", None, FAST), dblp_env / f"cuda{i}", device="cuda",
                           progress=False) for i in (1, 2)]
    assert runs[0]["metrics"]["test_micro_f1"] >= 0.85, runs[0]["metrics"]
    assert runs[0]["predictions"] == runs[1]["predictions"]
    for a, b in [(runs[0]["metrics"], runs[1]["metrics"]),
                 *zip(runs[0]["history"], runs[1]["history"], strict=True)]:
        assert a.keys() == b.keys()
        for key in a:
            if "loss" in key:
                assert a[key] == pytest.approx(b[key], rel=1e-5), key
            elif "seconds" not in key:
                assert a[key] == b[key], key

"""Multimodal shared layers (issue 17): lower layers kept apart, shared layers fed by both modalities, the
regularisers between the shared codes, the target branch predicting, retrieval precision@k, exact resume."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qianyi.errors import ConfigError, DataError
from qianyi.methods import get_method
from qianyi.methods.multimodal import (REGULARISERS, chance_precision, chance_recall, precision_at_k, recall_at_k,
                                      shared_codes)
from qianyi.nn import LayerOutputs, backbone_for, predict_logits
from qianyi.train import TrainConfig, Trainer, load_checkpoint, run
from qianyi.train.artefact import load_model
from qianyi.train.checkpoint import FILENAME

from .conftest import toy_task
from .test_engine import _interrupt_after

SHAPE = (1, 8, 8)
FAST = dict(epochs=3, steps_per_epoch=8, batch_size=16, progress=False)


def _set_up(**kw):
    torch.manual_seed(0)
    net = backbone_for(SHAPE, 3)  # LeNet: conv1, conv2 | fc1, fc2, logits
    m = get_method("multimodal", **kw)
    m.input_shape = SHAPE
    m.setup(net, net.eval()(torch.zeros(2, *SHAPE)))
    net.train()
    return m, net


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _sgd(m, net):
    groups = m.optimizers({n: {"params": list(g.parameters())} for n, g in net.groups.items()})["main"]
    return torch.optim.SGD(groups, lr=0.5)


def test_the_split_gives_each_modality_its_own_lower_layers_and_shares_the_rest():
    m, net = _set_up()
    assert m.n_lower == 2 and list(m.target_lower) == ["conv1", "conv2"]
    own = {id(p) for p in m.target_lower.parameters()}
    assert own and not own & {id(p) for p in net.parameters()}  # separate parameters, not views of the same
    target = m.inference_model(net)
    assert target.groups["conv1"] is m.target_lower["conv1"] and target.groups["fc1"] is net.groups["fc1"]
    # vectors (an MLP): fc1 is modality-specific, fc2 (the bottleneck) and the logits are shared
    v = get_method("multimodal")
    mlp = backbone_for((6,), 3)
    v.setup(mlp, mlp.eval()(torch.zeros(2, 6)))
    assert list(v.target_lower) == ["fc1"]


def _one_step_each_way(m, net, shape):
    """Step on a source-only loss, then on a target-only loss; whether each moved (target lower, source lower)."""
    opt = _sgd(m, net)
    xs, xt = torch.randn(8, *shape), torch.randn(8, *shape)
    first = next(iter(net.groups))
    moved = []
    for side in (0, 1):
        before_t, before_s = _params(m.target_lower), _params(net.groups[first])
        outs = m.forward_modalities(net, [xs], [xt])  # both batches pass, one side's loss is taken
        opt.zero_grad()
        F.cross_entropy(outs[side].logits, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])).backward()
        opt.step()
        moved.append((not all(torch.equal(a, b) for a, b in zip(before_t, _params(m.target_lower))),
                      not all(torch.equal(a, b) for a, b in zip(before_s, _params(net.groups[first])))))
    return moved


def test_a_step_on_a_source_only_loss_leaves_the_target_lower_layers_unchanged():
    m, net = _set_up()
    net.eval(), m.eval()  # batch norm on running statistics: the separation of the parameters alone
    assert _one_step_each_way(m, net, SHAPE) == [(False, True), (True, False)]


def test_in_training_mode_only_the_joint_batch_statistics_couple_the_branches():
    # the shared layers normalise source and target codes together (as every method's joint forward does):
    # a source loss then reaches the target lower layers through the batch mean and variance, and only so
    from qianyi.nn import mlp

    torch.manual_seed(0)
    for batch_norm, coupled in ((False, False), (True, True)):
        net = mlp(6, 3, dropout=0.0, batch_norm=batch_norm)
        m = get_method("multimodal")
        m.setup(net, net.eval()(torch.zeros(2, 6)))
        net.train(), m.train()
        (t_moved_by_source, s_moved_by_source), (t_moved_by_target, s_moved_by_target) = \
            _one_step_each_way(m, net, (6,))
        assert s_moved_by_source and t_moved_by_target
        assert t_moved_by_source == coupled and s_moved_by_target == coupled


@pytest.mark.parametrize("side", [0, 1])
def test_the_shared_layers_learn_from_either_modality(side):
    m, net = _set_up()
    outs = m.forward_modalities(net, [torch.randn(8, *SHAPE)], [torch.randn(8, *SHAPE)])
    outs[side].logits.pow(2).sum().backward()
    for name in ("fc1", "fc2", "logits"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.groups[name].parameters()), name


def _codes(z: torch.Tensor) -> LayerOutputs:
    return LayerOutputs(OrderedDict(fc2=z, logits=z[:, :3]), "fc2")


@pytest.mark.parametrize("reg", ["mmd", "coral", "cmmd"])
def test_the_regulariser_is_zero_for_identical_codes_and_positive_otherwise(reg):
    m, _ = _set_up(regulariser=reg)
    torch.manual_seed(1)
    z, y = torch.randn(30, 5, dtype=torch.float64), torch.arange(30) % 3
    conf = dict(target_mask=torch.ones(30, dtype=torch.bool), target_labels=y) if reg == "cmmd" else {}
    same = m.regularise(_codes(z), _codes(z.clone()), y, **conf)
    moved = z * torch.tensor([3.0, 1, 1, 1, 0.2], dtype=torch.float64) + 1.0
    other = m.regularise(_codes(z), _codes(moved), y, **conf)
    assert abs(float(same)) < 1e-9 and float(other) > 1e-3
    if reg == "cmmd":  # no confident pseudo-label yet: nothing to align
        assert float(m.regularise(_codes(z), _codes(moved), y, torch.zeros(30, dtype=torch.bool), y)) == 0.0


@pytest.mark.parametrize("reg", ["mmd", "coral", "cmmd"])
def test_the_regulariser_of_the_networks_codes_reaches_both_lower_branches(reg):
    m, net = _set_up(regulariser=reg)
    net.eval(), m.eval()  # both branches start from the same weights: the same inputs give the same codes
    x = torch.randn(12, *SHAPE)
    y = torch.arange(12) % 3
    s, t = m.forward_modalities(net, [x], [x.clone()])
    pred = t.logits.argmax(1)
    mask = torch.ones(12, dtype=torch.bool)
    assert float(m.regularise(s, t, pred, mask, pred).detach()) < 1e-6
    s, t = m.forward_modalities(net, [x], [x.flip(2) + 0.5])
    r = m.regularise(s, t, y, mask, t.logits.argmax(1))
    assert float(r.detach()) > 0
    r.backward()
    for module in (net.groups["conv1"], m.target_lower["conv1"]):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_the_inference_model_is_the_target_branch_and_loads_as_the_plain_backbone():
    m, net = _set_up()
    x = torch.randn(6, *SHAPE)
    base = predict_logits(m.inference_model(net), x)
    with torch.no_grad():
        net.groups["conv1"][0].weight.add_(1.0)  # the source lower layers: no effect on target predictions
    assert torch.equal(predict_logits(m.inference_model(net), x), base)
    with torch.no_grad():
        m.target_lower["conv1"][0].weight.add_(1.0)
    assert not torch.equal(predict_logits(m.inference_model(net), x), base)
    # model.pt holds the target branch under the backbone's own names: a fresh LeNet loads it
    fresh = backbone_for(SHAPE, 3)
    fresh.load_state_dict(m.inference_model(net).state_dict())
    assert torch.equal(predict_logits(fresh, x), predict_logits(m.inference_model(net), x))
    assert torch.equal(predict_logits(m.branch(net, "source"), x), predict_logits(net, x))
    with pytest.raises(ConfigError, match="modality"):
        m.branch(net, "audio")


def test_a_saved_run_predicts_with_the_target_branch(tmp_path):
    task = toy_task(shift=2.0)
    res, fit = run("multimodal", task, TrainConfig(**FAST), out=tmp_path)
    saved = load_model(tmp_path)
    X = task.target_test.X
    assert torch.equal(predict_logits(saved.network, X), predict_logits(fit.model, X))
    assert res.hparams["regulariser"] == "mmd" and "mmd" in res.history[-1] and "source_acc" in res.history[-1]


def test_precision_at_k_on_a_hand_made_case():
    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    g_labels = np.array([0, 0, 1, 1, 2])
    queries = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -0.1]])
    q_labels = np.array([0, 1, 2])
    # top-2 by cosine: q0 -> items 0, 1 (class 0, 0); q1 -> 2, 3 (1, 1); q2 -> 4, 2 (2, 1)
    assert precision_at_k(queries, q_labels, gallery, g_labels, k=2) == pytest.approx((1 + 1 + 0.5) / 3)
    assert precision_at_k(queries, q_labels, gallery, g_labels, k=1) == 1.0
    assert precision_at_k(queries, q_labels, gallery, g_labels, k=5) == pytest.approx((2 + 2 + 1) / 15)
    # cosine, not Euclidean: the scale of a code does not matter
    assert precision_at_k(queries * 100, q_labels, gallery * 0.01, g_labels, k=2) == pytest.approx(2.5 / 3)
    assert chance_precision(q_labels, g_labels) == pytest.approx((0.4 + 0.4 + 0.2) / 3)
    with pytest.raises(DataError, match="k must be"):
        precision_at_k(queries, q_labels, gallery, g_labels, k=6)
    with pytest.raises(DataError, match="one label per row"):
        precision_at_k(queries, q_labels[:2], gallery, g_labels)


def test_recall_at_k_counts_queries_with_one_hit_on_a_hand_made_case():
    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    g_labels = np.array([0, 0, 1, 1, 2])
    queries = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -0.1]])
    # q2 is labelled 1 here: its top-1 is item 4 (class 2), its top-2 adds item 2 (class 1)
    q_labels = np.array([0, 1, 1])
    assert recall_at_k(queries, q_labels, gallery, g_labels, k=1) == pytest.approx(2 / 3)
    assert recall_at_k(queries, q_labels, gallery, g_labels, k=2) == 1.0
    # one hit of two counts fully for recall, half for precision
    assert precision_at_k(queries, q_labels, gallery, g_labels, k=2) == pytest.approx(2.5 / 3)
    # chance: 1 - C(n - n_c, k) / C(n, k); class 0 has 2 of 5 items, k = 2: 1 - (3 * 2) / (5 * 4)
    assert chance_recall(np.array([0]), g_labels, k=2) == pytest.approx(1 - 6 / 20)
    assert chance_recall(np.array([2]), g_labels, k=5) == 1.0
    with pytest.raises(DataError, match="recall_at_k: k must be"):
        recall_at_k(queries, q_labels, gallery, g_labels, k=0)


def test_random_codes_retrieve_at_chance_level():
    rng = np.random.default_rng(0)
    y = np.arange(400) % 10
    p = precision_at_k(rng.normal(size=(400, 16)), y, rng.normal(size=(400, 16)), y, k=10)
    assert abs(p - 0.1) < 0.03
    r = recall_at_k(rng.normal(size=(400, 16)), y, rng.normal(size=(400, 16)), y, k=10)
    assert abs(r - chance_recall(y, y, k=10)) < 0.08 and 0.6 < chance_recall(y, y, k=10) < 0.7


def test_settings_are_checked_with_the_choices_named():
    with pytest.raises(ConfigError, match="none, mmd, coral, cmmd"):
        get_method("multimodal", regulariser="dann")
    with pytest.raises(ConfigError, match="not shared"):
        _set_up(layers=("conv2",))
    with pytest.raises(ConfigError, match="shared_from"):
        _set_up(shared_from="conv1")
    with pytest.raises(ConfigError, match="attach_pairs"):
        _set_up(pairs=4)
    with pytest.raises(DataError, match="pairs=4"):
        get_method("multimodal", pairs=4).attach_pairs(np.zeros((3, *SHAPE)), np.zeros((3, *SHAPE)))


def test_shared_codes_of_each_modality():
    m, net = _set_up()
    x = torch.randn(5, *SHAPE)
    src, tgt = shared_codes(m, net, x, "source"), shared_codes(m, net, x, "target")
    assert src.shape == tgt.shape == (5, 128)
    assert torch.allclose(src, tgt)  # the branches start as copies of each other


@pytest.mark.parametrize("reg", ["cmmd", "none"])
def test_multimodal_resumes_to_identical_weights(tmp_path, reg):
    task = toy_task(shift=2.0)
    cfg = dict(epochs=4, steps_per_epoch=10, batch_size=32, progress=False)
    _, whole = run("multimodal", task, TrainConfig(**cfg), regulariser=reg)
    _interrupt_after(Trainer(get_method("multimodal", regulariser=reg), TrainConfig(**cfg, checkpoint_dir=str(tmp_path))),
                     task, steps=20)
    assert load_checkpoint(tmp_path / FILENAME)["step"] == 20
    _, resumed = run("multimodal", task, TrainConfig(**cfg), out=tmp_path, regulariser=reg)
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    for (k, a), (_, b) in zip(whole.method.state_dict().items(), resumed.method.state_dict().items()):
        assert torch.equal(a, b), k


def test_the_paired_protocol_pulls_paired_codes_together_and_is_marked():
    task = toy_task(shift=2.0)
    ys, yt = task.source.y, task.target.y
    idx_s = [int(np.flatnonzero(ys == c)[0]) for c in range(3)] * 2
    idx_t = [int(np.flatnonzero(yt == c)[1]) for c in range(3)] * 2
    m = get_method("multimodal", regulariser="none", pairs=6).attach_pairs(task.source.X[idx_s], task.target.X[idx_t])
    res, fit = run(m, task, TrainConfig(**FAST))
    assert res.hparams["pairs"] == 6 and "pair" in res.history[-1]
    assert res.history[-1]["pair"] < res.history[0]["pair"]
    flat = get_method("multimodal", regulariser="none", pairs=6).attach_pairs(task.source.X[idx_s][:, :5],
                                                                             task.target.X[idx_t])
    with pytest.raises(DataError, match=r"attach_pairs got source inputs of shape \(5,\)"):  # was: RuntimeError
        run(flat, task, TrainConfig(**FAST))


@pytest.mark.parametrize("reg", REGULARISERS)
def test_each_regulariser_trains_end_to_end(reg):
    res, _ = run("multimodal", toy_task(), TrainConfig(epochs=1, steps_per_epoch=4, progress=False), regulariser=reg)
    assert 0.0 <= res.target_accuracy <= 1.0
    assert (reg in res.history[-1]) == (reg != "none")  # (cmmd: 0 until its warm-up ends)


def test_freeze_keeps_the_target_branch_frozen_groups_batch_norm_statistics():
    # --freeze k froze the copied target lower groups' weights, but the engine set only the backbone's
    # frozen groups to eval: the target branch (the one that predicts) kept updating its BN statistics
    torch.manual_seed(0)
    net = backbone_for(SHAPE, 3)
    net.groups["conv1"].requires_grad_(False)  # what the engine does for --freeze 1, before setup
    m = get_method("multimodal")
    m.input_shape = SHAPE
    m.setup(net, net.eval()(torch.zeros(2, *SHAPE)))
    net.train()
    m.train()
    assert not m.target_lower["conv1"].training and m.target_lower["conv2"].training
    before = {k: v.clone() for k, v in m.target_lower["conv1"].state_dict().items()}
    m.target_lower["conv1"](torch.randn(8, *SHAPE) * 3 + 1)  # a forward pass in the training step's mode
    assert all(torch.equal(before[k], v) for k, v in m.target_lower["conv1"].state_dict().items())


def test_l2sp_anchors_the_target_branch_lower_layers_too(tmp_path):
    # the target lower layers (the branch that predicts) start from the copied weights, but L2-SP anchored only
    # the backbone's groups: the predicting branch was decayed towards 0 instead of pulled to its start
    from qianyi.train.engine import TrainData

    task = toy_task()
    run("source-only", task, TrainConfig(**FAST), out=tmp_path / "src")
    tr = Trainer(get_method("multimodal"), TrainConfig(**FAST, init_from=str(tmp_path / "src" / "model.pt"),
                                                       l2sp=0.1))
    tr.config = tr.base_config.for_task(task)
    parts = tr._build(TrainData.from_task(task), task.n_classes)
    own = {id(p) for p in tr.method.target_lower.parameters()}
    anchored = {id(p) for p, _ in parts.anchors}
    assert own and own <= anchored
    start = torch.load(tmp_path / "src" / "model.pt", weights_only=True)
    lower = next(iter(tr.method.target_lower))
    for p, p0 in parts.anchors:
        if id(p) in own:
            assert any(torch.equal(p0, v) for k, v in start.items() if k.startswith(f"groups.{lower}."))
    for group in parts.optimizers["main"].param_groups:
        if {id(p) for p in group["params"]} <= own:
            assert group["weight_decay"] == 0.0
    # runs of the earlier form (copies not anchored) are not reused as these; other methods' fingerprints stay
    from qianyi.train.store import fingerprint

    cfg = TrainConfig(**FAST, init_from=str(tmp_path / "src" / "model.pt"), l2sp=0.1)
    assert fingerprint(get_method("multimodal"), cfg, task).get("l2sp_copies") is True
    assert "l2sp_copies" not in fingerprint(get_method("dann"), cfg, task)

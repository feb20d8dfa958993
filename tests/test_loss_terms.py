"""Each method's terms, schedules and summary numbers against their definitions, computed by hand.

A mutation review (planting one plausible bug at a time) found these survived the rest of the suite: a
test that computes its expectation with the function under test, or a toy task on which the term makes no
difference, cannot fail. Each assertion here was checked to fail on its planted bug (the value in the
comment)."""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qianyi.distances import GaussianKernel, lmmd2, mk_mmd2
from qianyi.distances.adistance import proxy_a_distance
from qianyi.methods import Batch, get_method
from qianyi.methods.base import StepContext
from qianyi.nn import Backbone
from qianyi.nn.backbones import LayerOutputs, mlp
from qianyi.schedules import adaptation_ramp, annealed_lr

from .test_distances import brute_mmd2
from .test_methods_discrepancy import brute_lmmd2


class Capture(StepContext):
    """A step context whose update records the terms (and the optimizers named) instead of stepping."""

    def update(self, terms, optimizers=None):  # noqa: ANN001
        self.logged.setdefault("_terms", []).append(({k: v.detach().clone() for k, v in terms.items()}, optimizers))


def _outputs(f: torch.Tensor, logits: torch.Tensor) -> LayerOutputs:
    return LayerOutputs(OrderedDict(fc=f, logits=logits), "fc")


def _labelled_batch(seed: int = 0):
    torch.manual_seed(seed)
    f, y = torch.randn(64, 8), torch.arange(64) % 4
    return f, y, 8.0 * F.one_hot(y, 4).float() + 0.5 * torch.randn(64, 4)


# ---------------------------------------------------------------- distances
def test_the_default_kernel_family_is_dans_quarter_to_four_times_the_median():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(13, 4)), rng.normal(size=(11, 4)) + 0.7
    Z = np.concatenate([X, Y])
    pairs = sorted(float(((a - b) ** 2).sum()) for a, b in itertools.combinations(Z, 2))
    med = pairs[(len(pairs) - 1) // 2]
    want = brute_mmd2(X, Y, [m * med for m in (0.25, 0.5, 1.0, 2.0, 4.0)], True)
    assert mk_mmd2(X, Y).item() == pytest.approx(want, rel=1e-9)  # 0.0877; (0.5 .. 8): 0.0735


def test_lmmd_leaves_out_a_class_no_target_row_predicts():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 3])
    probs = torch.softmax(torch.randn(10, 5, generator=g, dtype=torch.float64) * 2, 1)
    probs[:, 3] *= 0.01
    probs = probs / probs.sum(1, keepdim=True)
    assert 3 not in probs.argmax(1).tolist()  # class 3: source rows only, no target prediction
    kern = GaussianKernel(bandwidth=2.0, multipliers=(0.5, 1.0, 2.0))
    want = brute_lmmd2(x, y, labels, probs, [1.0, 2.0, 4.0])
    assert lmmd2(x, y, labels, probs, kern).item() == pytest.approx(want, rel=1e-9)  # 0.384; keeping class 3: 0.444


def test_the_a_distance_is_scored_on_held_out_rows():
    rng = np.random.default_rng(0)  # 200 dimensions, 50 training rows a side: a linear classifier memorises them
    assert proxy_a_distance(rng.normal(size=(100, 200)), rng.normal(size=(100, 200))) < 0.5  # 0.0; on its rows 1.96


# ---------------------------------------------------------------- schedules and weights
def test_the_ramp_and_the_annealed_learning_rate_are_ganin_and_lempitskys():
    assert adaptation_ramp(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)  # 0.4621; gamma 5: 0.2449
    assert adaptation_ramp(0.0) == 0.0 and adaptation_ramp(1.0) == pytest.approx(0.99991, abs=1e-5)
    assert annealed_lr(0.01, 1.0) == pytest.approx(0.01 / 11 ** 0.75)  # 0.00166; without beta 0.00091
    assert annealed_lr(0.01, 0.5) == pytest.approx(0.01 / 6 ** 0.75)


@pytest.mark.parametrize("name,key", [("dsan", "lmmd"), ("jan", "jmmd"), ("dan", "mmd")])
def test_a_discrepancy_weight_follows_the_ramp(name, key):
    f, y, logits = _labelled_batch()
    m = get_method(name, layers=("fc", "logits")) if name == "dan" else get_method(name)
    m.eval()
    terms = {p: m.loss(Batch(_outputs(f, logits), _outputs(1.5 * f + 2.0, 1.5 * logits + 2.0), y, None, p))[key].item()
             for p in (0.0, 0.1, 1.0)}
    assert terms[0.0] == 0.0  # without the ramp: lmmd 0.22, jmmd 0.29 at the start
    assert terms[0.1] / terms[1.0] == pytest.approx(adaptation_ramp(0.1) / adaptation_ramp(1.0), rel=1e-6)


def test_jan_reads_probabilities_not_raw_logits():
    f, y, logits = _labelled_batch()
    jan = get_method("jan")
    v = jan.loss(Batch(_outputs(f, logits), _outputs(f.clone(), logits + 3.0), y, None, 1.0))["jmmd"].item()
    assert v < 1e-6  # softmax(l + 3) = softmax(l): the same joint distribution; raw logits gave 0.10


# ---------------------------------------------------------------- adversarial and self-training steps
def test_adda_starts_the_target_encoder_from_the_source_and_minimises_the_inverted_label_loss():
    torch.manual_seed(0)
    net = mlp(6, 3, dropout=0.0)
    m = get_method("adda")
    m.setup(net, net(torch.randn(4, 6)))
    net.train()
    xs, xt = torch.randn(16, 6), torch.randn(16, 6) + 1.0
    ctx = Capture(net, m, xs, torch.randint(0, 3, (16,)), xt, None, 0.75, 30, {})
    m.training_step(ctx)
    for n in m._encoder:  # stage 2 starts from M_s
        a, b = net.groups[n].state_dict(), m.target_net.groups[n].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k), n
    (terms, _), = [t for t in ctx.logged["_terms"] if t[1] == "target"]
    with torch.no_grad():
        want = -F.logsigmoid(m.discriminator(m.encode(m.target_net, xt))).mean()  # target labelled "source"
    assert terms["g_loss"].item() == pytest.approx(want.item(), rel=1e-5)  # 0.733; label not inverted: 0.655


def test_self_train_keeps_the_most_confident_share():
    torch.manual_seed(0)
    net = mlp(6, 3, dropout=0.0).eval()
    m = get_method("self-train", keep=0.7, augment=False)
    m.setup(net, net(torch.randn(4, 6)))
    ctx = Capture(net, m, None, None, torch.randn(100, 6), None, 0.5, 0, {})
    m.training_step(ctx)
    assert ctx.logged["pseudo_share"][0] == pytest.approx(0.7, abs=0.011)  # keeping the least confident: 0.30


def _two_class_net() -> Backbone:
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
        lin.bias.zero_()
    return Backbone([("features", nn.Identity()), ("logits", lin)])


def test_adamatch_threshold_is_relative_to_the_source_and_the_target_is_aligned_to_its_distribution(monkeypatch):
    import qianyi.methods.self_training as st

    monkeypatch.setattr(st, "weak_view", lambda x, kind=None: x)
    monkeypatch.setattr(st, "strong_view", lambda x, kind=None: x)
    net = _two_class_net()
    m = get_method("adamatch")  # threshold 0.9, trade_off 1
    m.setup(net, net(torch.zeros(2, 2)))
    xs = torch.tensor([[4.0, 0.0]]).repeat(8, 1)  # source: p0 = sigmoid(4) = 0.982
    xt = torch.tensor([[1.0, 0.0]]).repeat(8, 1)  # target: p0 = sigmoid(1) = 0.731
    ctx = Capture(net, m, xs, torch.zeros(8, dtype=torch.long), xt, None, 0.5, 0, {})
    m.training_step(ctx)
    ps0, pt0 = 1 / (1 + math.exp(-4)), 1 / (1 + math.exp(-1))
    assert ctx.logged["threshold"][0] == pytest.approx(0.9 * ps0, rel=1e-5)  # 0.884; from the target: 0.658
    assert ctx.logged["pseudo_share"][0] == 1.0  # aligned to the source's (0.982, 0.018); ratio inverted: 0.0
    (terms, _), = ctx.logged["_terms"]
    assert terms["pseudo"].item() == pytest.approx(-math.log(pt0), rel=1e-5)  # mu(0.5) = 1


def test_cbst_pseudo_label_weight_starts_at_zero_when_the_warm_up_ends():
    torch.manual_seed(0)
    net = mlp(6, 3, dropout=0.0)
    m = get_method("cbst", warmup=0.25, augment=False)
    m.setup(net, net(torch.randn(4, 6)))
    net.train()
    ctx = Capture(net, m, torch.randn(16, 6), torch.randint(0, 3, (16,)), torch.randn(16, 6), None, 0.25, 0, {})
    m.training_step(ctx)
    (terms, _), = ctx.logged["_terms"]
    assert ctx.logged["pseudo_share"][0] > 0 and terms["pseudo"].item() == 0.0  # ramp from progress 0: 0.155


def test_cbst_decides_its_labels_on_the_clean_batch_in_eval_mode_and_the_student_learns_them_on_the_view(
        monkeypatch):
    """As the authors' labelling pass (model.eval(), un-augmented images); the labels came from the augmented
    training forward the student then learned."""
    import qianyi.methods.self_training as ST

    torch.manual_seed(0)
    net = mlp(6, 3, dropout=0.5)
    m = get_method("cbst", warmup=0.0)
    m.setup(net, net(torch.randn(4, 6)))
    net.train()
    xt = torch.randn(16, 6)
    monkeypatch.setattr(ST, "weak_view", lambda x, kind=None: x.flip(0) * 3.0)  # a view unlike the batch
    ctx = Capture(net, m, torch.randn(16, 6), torch.randint(0, 3, (16,)), xt, None, 0.5, 0, {})
    m.training_step(ctx)  # (Capture takes no optimizer step: the weights and statistics are those that labelled)
    assert all(sub.training for sub in net.modules())  # train mode given back
    net.eval()
    with torch.no_grad():
        conf, pred = net(xt).logits.softmax(1).max(1)
    assert torch.allclose(m._conf, conf) and torch.equal(m._pred, pred)


# ---------------------------------------------------------------- generative terms
def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()


def test_cycada_generator_terms_match_their_definitions():
    from .test_generative import _cycada_setup

    model, m, _, shape = _cycada_setup(identity=0.5)
    xs, xt = torch.rand(6, *shape), 1 - torch.rand(6, *shape)
    ctx = Capture(model, m, xs, torch.randint(0, 3, (6,)), xt, None, 0.5, 1, {})
    with torch.no_grad():  # before the step: f_S's batch-norm statistics move in its own update
        f = m.source_classifier.eval()
        st0, ts0 = m.g_st(xs), m.g_ts(xt)
        sem = F.cross_entropy(f(st0).logits, f(xs).logits.argmax(1)) + F.cross_entropy(f(ts0).logits,
                                                                                      f(xt).logits.argmax(1))
    m.train()
    m.training_step(ctx)
    terms, opt = ctx.logged["_terms"][0]
    assert opt == "generators"
    with torch.no_grad():
        st, ts = m.g_st(xs), m.g_ts(xt)
        cycle = 10.0 * (_l1(m.g_ts(st), xs) + _l1(m.g_st(ts), xt))
        identity = 0.5 * (_l1(m.g_st(xt), xt) + _l1(m.g_ts(xs), xs))
    assert torch.allclose(terms["cycle"], cycle, rtol=1e-5)  # one direction only: 2.63 vs 5.25
    assert torch.allclose(terms["identity"], identity, rtol=1e-5)
    assert torch.allclose(terms["semantic"], ctx.ramp * sem, rtol=1e-5)  # labels of the other domain: fails


def test_discogan_reconstructs_both_ways():
    from qianyi.methods.generative import DiscoGAN

    torch.manual_seed(0)
    shape = (1, 12, 12)
    m = DiscoGAN(width=4, disc_width=4, downsamplings=2)
    m.input_shape = shape
    m.setup(None, None)
    xa, xb = torch.rand(4, *shape), torch.rand(4, *shape)
    m.eval()  # batch norm on running statistics: the check below sees the same generators
    ctx = Capture(None, m, xa, torch.zeros(4, dtype=torch.long), xb, None, 0.5, 0, {})
    m.training_step(ctx)
    terms, _ = ctx.logged["_terms"][0]
    with torch.no_grad():
        want = F.mse_loss(m.g_ts(m.g_st(xa)), xa) + F.mse_loss(m.g_st(m.g_ts(xb)), xb)
    assert terms["reconstruction"].item() == pytest.approx(want.item(), rel=1e-5)  # one way: 0.085 vs 0.168


# ---------------------------------------------------------------- reports
def test_the_bench_choice_of_a_lower_is_better_validator_is_its_lowest_score():
    from qianyi.bench.runner import choice_accuracy
    from qianyi.train.result import RunResult

    hist = [{"oracle_target_acc": a, "score_entropy": e} for a, e in ((0.5, 0.9), (0.8, 0.2), (0.6, 0.5))]
    r = RunResult(method="dan", source="a", target="b", seed=0, target_accuracy=0.6, source_accuracy=0.9,
                  train_seconds=1.0, selection="last", oracle=False, hparams={}, config={}, n_source=1,
                  n_target_train=1, n_target_test=1, device="cpu", history=hist)
    assert choice_accuracy(r, "entropy") == 0.8  # by the raw score: 0.5 (the worst epoch)
    # as the engine chooses: an epoch scored NaN never (it won the comparison), none scored: the last epoch
    r.history = [{**row, "score_entropy": math.nan if i == 0 else row["score_entropy"]} for i, row in enumerate(hist)]
    assert choice_accuracy(r, "entropy") == 0.8
    r.history = [{**row, "score_entropy": math.nan} for row in hist]
    assert choice_accuracy(r, "entropy") == 0.6


def test_transferability_findings_have_the_signs_yosinski_reads():
    from qianyi.measure.transferability import TransferabilityResult

    runs = [dict(pair="p", condition="base", k=0, seed=0, accuracy=0.9)]
    runs += [dict(pair="p", condition=c, k=1, seed=0, accuracy=a) for c, a in
             (("BnB", 0.88), ("BnB+", 0.91), ("AnB", 0.7), ("AnB+", 0.93))]
    f = TransferabilityResult(["p"], [1], ["conv1", "logits"], [0], runs).findings()["p"]
    assert f["anb_drop_at_top_k"] == pytest.approx(0.2) and f["anb_drop_max"] == pytest.approx(0.2)  # flipped: -0.2
    assert f["anb_plus_minus_base"] == pytest.approx(0.03) and f["bnb_drop_max"] == pytest.approx(0.02)

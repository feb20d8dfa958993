"""Issue-4 methods: JAN, Deep CORAL, DSAN (LMMD), DSN (with its collapse guard), DRCN."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from qianyi.distances import GaussianKernel, lmmd2, mk_mmd2
from qianyi.errors import DataError, UnknownNameError
from qianyi.methods import Batch, available_methods, get_method
from qianyi.methods.dsn import code_floor, difference_loss
from qianyi.methods.reconstruction import Decoder, encoder_copy, si_mse
from qianyi.nn import backbone_for
from qianyi.nn.backbones import LayerOutputs
from qianyi.train import TrainConfig, run

from .conftest import toy_task

NEW = ["jan", "coral", "dsan", "dsn", "drcn"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small batches: one intra-op thread is faster, and far faster on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
ALIGN_TERM = {"jan": "jmmd", "coral": "coral", "dsan": "lmmd"}


def outputs(features: torch.Tensor, logits: torch.Tensor) -> LayerOutputs:
    return LayerOutputs(OrderedDict(fc=features, logits=logits), "fc")


def test_new_methods_are_registered_with_their_paper():
    methods = available_methods()
    for name in NEW:
        doc = methods[name].__doc__ + __import__(methods[name].__module__, fromlist=["_"]).__doc__
        assert methods[name].summary() and any(str(y) in doc for y in (2016, 2017, 2020)), name
    with pytest.raises(UnknownNameError, match="similarity"):
        get_method("dsn", similarity="wasserstein")
    with pytest.raises(UnknownNameError, match="reconstruct"):
        get_method("drcn", reconstruct="source")


@pytest.mark.parametrize("name", ["jan", "coral", "dsan"])
def test_alignment_term_is_zero_for_identical_and_positive_for_shifted_domains(name):
    torch.manual_seed(0)
    f = torch.randn(64, 8)
    y = torch.arange(64) % 4
    logits = 8.0 * F.one_hot(y, 4).float() + 0.5 * torch.randn(64, 4)  # predictions agree with the labels
    m = get_method(name)
    m.eval()
    same = m.loss(Batch(outputs(f, logits), outputs(f.clone(), logits.clone()), y, None, progress=1.0))
    moved = m.loss(Batch(outputs(f, logits), outputs(1.5 * f + 2.0, 1.5 * logits + 2.0), y, None, progress=1.0))
    key = ALIGN_TERM[name]
    assert abs(same[key].item()) < 1e-5
    assert moved[key].item() > 1e-3 and moved["cls"].item() == pytest.approx(same["cls"].item())


def brute_lmmd2(x, y, labels, probs, sigma2s):
    """Class by class: squared RKHS distance between weighted mean embeddings, double loops."""
    def k(a, b):
        return sum(math.exp(-float(((a - b) ** 2).sum()) / (2 * s)) for s in sigma2s) / len(sigma2s)
    C = probs.shape[1]
    classes = [c for c in range(C) if (labels == c).any() and (probs.argmax(1) == c).any()]
    total = 0.0
    for c in classes:
        ws = [(1.0 if labels[i] == c else 0.0) for i in range(len(x))]
        ws = [w / sum(ws) for w in ws]
        wt = [float(probs[j, c]) for j in range(len(y))]
        wt = [w / sum(wt) for w in wt]
        pts = list(x) + list(y)
        wts = ws + [-w for w in wt]
        total += sum(wts[i] * wts[j] * k(pts[i], pts[j]) for i in range(len(pts)) for j in range(len(pts)))
    return total / len(classes)


def test_lmmd_matches_double_loop_and_only_counts_classes_on_both_sides():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 3])  # class 3: source only
    probs = torch.softmax(torch.randn(10, 5, generator=g, dtype=torch.float64) * 2, 1)
    kern = GaussianKernel(bandwidth=2.0, multipliers=(0.5, 1.0, 2.0))
    sig = [1.0, 2.0, 4.0]
    assert lmmd2(x, y, labels, probs, kern).item() == pytest.approx(brute_lmmd2(x, y, labels, probs, sig), rel=1e-9)


def test_lmmd_sees_class_misalignment_that_marginal_mmd_misses():
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    y = torch.arange(90) % 3
    x = centers[y] + 0.3 * torch.randn(90, 2)
    right = F.one_hot(y, 3).float()
    swapped = F.one_hot((y + 1) % 3, 3).float()  # same points, every class's predictions point at another class
    assert mk_mmd2(x, x.clone(), estimator="biased").item() < 1e-6
    assert lmmd2(x, x.clone(), y, right).item() < 1e-6
    assert lmmd2(x, x.clone(), y, swapped).item() > 0.1


def test_lmmd_names_bad_inputs():
    x = torch.randn(6, 2)
    with pytest.raises(DataError, match="integer class indices"):
        lmmd2(x, x, torch.zeros(6), torch.ones(6, 2) / 2)
    with pytest.raises(DataError, match="softmax"):
        lmmd2(x, x, torch.zeros(6, dtype=torch.long), torch.zeros(6))
    with pytest.raises(DataError, match="2 classes"):
        lmmd2(x, x, torch.full((6,), 5), torch.ones(6, 2) / 2)
    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)) * 2
    with pytest.raises(DataError, match="not the logits themselves"):  # was a silent NaN
        lmmd2(x, x, torch.zeros(6, dtype=torch.long), logits)
    assert torch.isfinite(lmmd2(x, x + 1, torch.zeros(6, dtype=torch.long), logits.softmax(1).bfloat16()))
    nan = torch.full((6, 2), float("nan"))
    with pytest.raises(DataError, match="NaN or infinite"):  # named as such, not as logits
        lmmd2(x, x, torch.zeros(6, dtype=torch.long), nan)
    # in training (features with gradients) a diverged network's NaN reaches the engine, which names the run
    assert torch.isnan(lmmd2(x.requires_grad_(), x, torch.zeros(6, dtype=torch.long), nan))


def test_jan_aligns_the_joint_not_only_the_marginals():
    torch.manual_seed(0)
    f = torch.randn(80, 4)
    logits = 6.0 * F.one_hot((f[:, 0] > 0).long(), 2).float()
    flipped = logits.flip(1)  # same features, same class proportions, opposite feature-class relation
    jan = get_method("jan")
    assert mk_mmd2(f, f.clone(), estimator="biased").item() < 1e-6
    src, tgt_same, tgt_flip = outputs(f, logits), outputs(f.clone(), logits.clone()), outputs(f.clone(), flipped)
    y = (f[:, 0] > 0).long()
    same, flip = (jan.loss(Batch(src, t, y, None, 1.0))["jmmd"].item() for t in (tgt_same, tgt_flip))
    assert same < 1e-6 and flip > 0.01


def test_coral_term_weights_the_shared_distance():
    torch.manual_seed(0)
    f, g = torch.randn(32, 5), 3 * torch.randn(32, 5)
    y = torch.zeros(32, dtype=torch.long)
    from qianyi.distances import coral
    m = get_method("coral", trade_off=2.0, layers=("fc", "logits"))
    term = m.loss(Batch(outputs(f, f[:, :3]), outputs(g, g[:, :3]), y, None, 0.0))["coral"]
    assert term.item() == pytest.approx(2.0 * (coral(f, g) + coral(f[:, :3], g[:, :3])).item(), rel=1e-6)


# --- reconstruction family -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (1, 9, 9), (10,)])
def test_decoder_reconstructs_the_input_shape(shape):
    net = backbone_for(shape, 4)
    x = torch.rand(5, *shape)
    net.eval()
    probe = net(x)
    dec = Decoder(probe.features.shape[1], net, probe)
    assert dec(probe.features, x).shape == x.shape
    enc = encoder_copy(net)
    enc.eval()
    assert enc(x).shape == probe.features.shape
    assert not isinstance(enc[-1][-1], torch.nn.ReLU)  # the guarded private code is linear (cannot die)


def test_si_mse_is_blind_to_a_constant_offset_only():
    x = torch.rand(4, 1, 8, 8)
    assert si_mse(x, x + 0.7).item() == pytest.approx(0.0, abs=1e-6)
    assert si_mse(x, x.flip(-1)).item() > 1e-3


def test_guarded_difference_loss_is_scale_invariant_and_has_no_pull_towards_zero():
    torch.manual_seed(0)
    shared, private = torch.randn(32, 16), torch.randn(32, 16) + 0.5 * torch.randn(32, 1)
    guarded, raw = difference_loss(shared, private), difference_loss(shared, private, normalise=False)
    assert difference_loss(shared, 1e-3 * private).item() == pytest.approx(guarded.item(), rel=1e-4)
    assert difference_loss(shared, 1e-3 * private, normalise=False).item() == pytest.approx(1e-6 * raw.item(), rel=1e-4)
    # scale invariance <=> the gradient is orthogonal to the code itself: no descent direction shrinks it
    for normalise, radial in [(True, 0.0), (False, None)]:
        p = private.clone().requires_grad_(True)
        difference_loss(shared, p, normalise).backward()
        along = (p.grad * p).sum().item()
        if radial is None:
            assert along > 0  # the raw loss decreases fastest by shrinking the private code
        else:
            assert abs(along) < 1e-5 * p.grad.norm().item() * p.norm().item()


def test_code_floor_is_zero_while_alive_and_pushes_back_when_collapsing():
    torch.manual_seed(0)
    shared = torch.randn(64, 16)
    assert code_floor(torch.randn(64, 16), shared, 0.5).item() == 0.0
    dying = (1e-3 * torch.randn(64, 16)).requires_grad_(True)
    pen = code_floor(dying, shared, 0.5)
    assert pen.item() == pytest.approx(0.5, abs=0.01)
    pen.backward()
    with torch.no_grad():
        assert code_floor(dying - 10.0 * dying.grad, shared, 0.5).item() < pen.item()  # descent spreads it


def test_dsn_mmd_similarity_is_zero_for_identical_and_positive_for_shifted_domains():
    torch.manual_seed(0)
    net = backbone_for((6,), 3)
    net.eval()
    x = torch.randn(32, 6)
    y = torch.randint(0, 3, (32,))
    m = get_method("dsn", similarity="mmd")
    m.setup(net, net(x))
    m.eval()
    same = m.loss(Batch(net(x), net(x.clone()), y, None, 1.0, x, x.clone()))
    moved = m.loss(Batch(net(x), net(x + 3.0), y, None, 1.0, x, x + 3.0))
    assert abs(same["similarity"].item()) < 1e-6 and moved["similarity"].item() > 1e-3


def _collapse_run(task, guard: bool):
    cfg = TrainConfig(epochs=2, steps_per_epoch=60, batch_size=32, progress=False, seed=1)
    # moderate weights, the same for both runs: only the guard differs
    res, fit = run(get_method("dsn", collapse_guard=guard, recon_weight=0.1, difference_weight=0.1), task, cfg)
    m = fit.method
    m.train()
    with torch.no_grad():
        X = torch.as_tensor(task.target.X[:128])
        fit.model.train()
        shared = fit.model(X).features
        private = m.private_target(X).flatten(1)
    return res, shared, private


def test_collapse_guard_keeps_both_codes_alive(digits_task):
    """Unguarded, the difference loss is driven to ~0 by switching a code off, sample by sample (with the
    shared code gone the classifier falls to chance); guarded, both codes live and the task is learnt."""
    def zero_rows(*codes):
        return torch.stack([c.abs().amax(1) < 1e-6 for c in codes]).any(0).float().mean().item()

    res_raw, shared_raw, private_raw = _collapse_run(digits_task, guard=False)
    diff = [h["difference"] for h in res_raw.history]
    assert diff[-1] < 0.01 * diff[0]
    assert res_raw.source_accuracy < 0.5 and zero_rows(shared_raw, private_raw) > 0.5

    res, shared, private = _collapse_run(digits_task, guard=True)
    assert res.source_accuracy > 0.9 and zero_rows(shared, private) == 0.0
    assert private.std(0).min() >= 0.5 * 0.5 * shared.std(0).mean()  # floor 0.5 x shared spread, with slack
    assert all(h["private_floor"] < 0.05 for h in res.history)


@pytest.mark.parametrize("name", ["dsn", "drcn"])
def test_the_decoder_is_the_methods_own_module_stepped_by_the_engine(name):
    # that each method learns (beats source-only, aligns) is tested in test_learning.py
    _, fit = run(name, toy_task(shift=2.0), TrainConfig(epochs=1, steps_per_epoch=5, progress=False))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fit.method.decoder.parameters())


@pytest.mark.parametrize("name", ["dsan", "dsn"])
def test_new_methods_fine_tune_from_a_saved_model_with_frozen_layers(name, tmp_path):
    run("source-only", toy_task(), TrainConfig(epochs=1, steps_per_epoch=10, progress=False), out=tmp_path)
    start = torch.load(tmp_path / "model.pt", weights_only=True)
    _, fit = run(name, toy_task(seed=3), TrainConfig(epochs=1, steps_per_epoch=10, progress=False,
                                                    init_from=str(tmp_path / "model.pt"), freeze=1))
    end = fit.model.state_dict()
    assert all(torch.equal(start[k], end[k]) for k in start if k.startswith("groups.fc1."))
    assert not torch.equal(start["groups.logits.weight"], end["groups.logits.weight"])


def test_drcn_decoder_reads_the_layer_it_is_told():
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, progress=False)
    _, fit = run(get_method("drcn", layer="fc1"), toy_task(), cfg)
    assert fit.method.decoder.fc[0].in_features == fit.model.feature_dim("fc1") != fit.model.feature_dim()
    for bad in ("conv9", "logits"):
        with pytest.raises(UnknownNameError, match=bad):
            run(get_method("drcn", layer=bad), toy_task(), cfg)


@pytest.mark.parametrize("scheme", ["alternate", "joint"])
def test_denoising_drcn_corrupts_what_the_encoder_sees_not_what_it_reconstructs(scheme):
    m = get_method("drcn", noise=0.5, scheme=scheme)
    fed, targets = [], []
    corrupt, reconstruction = m.corrupt, m.reconstruction
    m.corrupt = lambda x: fed.append((x, corrupt(x))) or fed[-1][1]  # type: ignore[method-assign]
    m.reconstruction = lambda x, code: targets.append(x) or reconstruction(x, code)  # type: ignore[method-assign]
    task = toy_task()
    run(m, task, TrainConfig(epochs=1, steps_per_epoch=3, progress=False))
    clean, noisy = fed[-1]
    zeroed = (noisy == 0) & (clean != 0)
    assert 0.35 < zeroed.float().mean() < 0.65 and torch.equal(noisy[~zeroed], clean[~zeroed])
    assert torch.equal(targets[-1], clean[-len(targets[-1]):])  # the decoder's target is the clean batch
    assert torch.equal(get_method("drcn", noise=0.0).corrupt(clean), clean)
    with pytest.raises(ValueError, match="noise"):
        get_method("drcn", noise=1.0)

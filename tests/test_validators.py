"""Label-free validators (qianyi.select): formulas, rankings, and that no target label can reach them."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qianyi.errors import DataError, UnknownNameError
from qianyi.nn import Backbone, mlp
from qianyi.nn.inference import accuracy, predict_features, predict_logits
from qianyi.select import (VALIDATORS, Predictions, SelectionData, SplitOutputs, Validator, atc_from_probs,
                           available_validators, dev_details, get_validator, register_validator, score_all)
from qianyi.select import validators as V

from .conftest import toy_task

SEVEN = ["atc", "dev", "entropy", "iwv", "rv", "snd", "source-val"]


# --------------------------------------------------------------------------------------------------
# models: a short plain torch loop (not qianyi.train)


def _train(X: np.ndarray, y: np.ndarray, n_classes: int, steps: int = 300, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    model = mlp(X.shape[1], n_classes)
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(X_t), (64,), generator=g)
        loss = F.cross_entropy(model(X_t[i]).logits, y_t[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class _RandomFourier(nn.Module):
    """Fixed random high-frequency features sin(x W + b)."""

    def __init__(self, d_in: int, d_out: int, freq: float, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(d_in, d_out, generator=g) * freq)
        self.register_buffer("b", torch.rand(d_out, generator=g) * 2 * math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x @ self.W + self.b)


def _scattering_model(d_in: int, n_classes: int, seed: int = 0) -> Backbone:
    """Confident predictions with no cluster structure: a random high-frequency function of the input."""
    torch.manual_seed(seed)
    head = nn.Linear(64, n_classes)
    with torch.no_grad():
        head.weight.normal_(0.0, 10.0 / 8)
        head.bias.zero_()
    return Backbone([("rff", _RandomFourier(d_in, 64, 3.0, seed)), ("logits", head)]).eval()


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    task = toy_task()  # 3 Gaussian blobs, target shifted by 1 in every coordinate
    k, d = task.n_classes, task.sample_shape[0]
    # a wrong but learnable labelling: terciles of a random projection (cuts through the class blobs)
    z = task.source.X @ np.random.default_rng(1).normal(size=d)
    wrong = np.digitize(z, np.quantile(z, [1 / 3, 2 / 3]))
    torch.manual_seed(0)
    models = {"good": _train(task.source.X, task.source.y, k),
              "wrong-labels": _train(task.source.X, wrong, k),
              "untrained": mlp(d, k).eval(),
              "scattering": _scattering_model(d, k)}
    return task, SelectionData.from_task(task), models


# --------------------------------------------------------------------------------------------------
# formulas against brute force, float64


def _synthetic(n_t: int = 7, k: int = 3, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    split = lambda n, lab: SplitOutputs(rng.normal(size=(n, 4)), 3 * rng.normal(size=(n, k)),  # noqa: E731
                                         rng.integers(0, k, n) if lab else None)
    return Predictions(split(12, True), split(9, True), split(n_t, False))


def test_split_outputs_softmax_is_stable_float64():
    out = SplitOutputs(np.zeros((2, 3)), np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
    assert out.probs.dtype == np.float64 and np.isfinite(out.probs).all()
    np.testing.assert_allclose(out.probs.sum(1), 1.0)
    np.testing.assert_allclose(out.probs[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    assert out.probs[0, 0] == 1.0


def test_snd_matches_double_loop():
    p = _synthetic(n_t=7)
    probs, tau = p.target.probs, 0.05
    total = 0.0
    for i in range(len(probs)):
        sims = {}
        for j in range(len(probs)):
            if j != i:
                cos = sum(a * b for a, b in zip(probs[i], probs[j])) / (
                    math.sqrt(sum(a * a for a in probs[i])) * math.sqrt(sum(b * b for b in probs[j])))
                sims[j] = math.exp(cos / tau)
        z = sum(sims.values())
        total += -sum(s / z * math.log(s / z) for s in sims.values())
    assert get_validator("snd")(p) == pytest.approx(total / len(probs), rel=1e-12)


def test_entropy_matches_definition():
    p = _synthetic()
    expected = np.mean([-sum(q * math.log(q) for q in row) for row in p.target.probs])
    assert get_validator("entropy")(p) == pytest.approx(expected, rel=1e-12)


def test_atc_hand_made():
    # max-softmax on source-val 0.9, 0.8, 0.7, 0.6, all predicting class 0; two are right: accuracy 1/2,
    # so t = the median confidence 0.75; two of the four target confidences exceed it
    conf_val = np.array([0.9, 0.8, 0.7, 0.6])
    probs_val = np.stack([conf_val, 1 - conf_val], 1)
    probs_t = np.stack([c := np.array([0.95, 0.5, 0.76, 0.74]), 1 - c], 1)
    assert atc_from_probs(probs_val, np.array([0, 0, 1, 1]), probs_t) == 0.5
    # on the source-val itself (distinct confidences) ATC returns the source-val accuracy
    assert atc_from_probs(probs_val, np.array([0, 0, 1, 1]), probs_val) == 0.5
    assert atc_from_probs(probs_val, np.array([0, 1, 1, 1]), probs_val) == 0.25


def test_dev_and_iwv_match_direct_formula(monkeypatch):
    p = _synthetic()
    w = np.random.default_rng(3).uniform(0.2, 3.0, len(p.source_val))
    monkeypatch.setattr(V, "_importance_weights", lambda _p: w)
    n = len(w)
    ce = [-math.log(p.source_val.probs[i, p.source_val.labels[i]]) for i in range(n)]
    L = [w[i] * ce[i] for i in range(n)]
    mL, mw = sum(L) / n, sum(w) / n
    cov = sum((L[i] - mL) * (w[i] - mw) for i in range(n)) / (n - 1)
    var = sum((w[i] - mw) ** 2 for i in range(n)) / (n - 1)
    eta = -cov / var
    d = dev_details(p)
    assert d["dev"] == pytest.approx(mL + eta * mw - eta, rel=1e-10)
    assert d["iw_risk"] == pytest.approx(sum(L) / sum(w), rel=1e-12)
    assert d["mean_weight"] == pytest.approx(mw, rel=1e-12)
    assert get_validator("dev")(p) == d["dev"] and get_validator("iwv")(p) == pytest.approx(d["iw_risk"], rel=1e-12)


def test_dev_with_every_weight_alike_is_the_loss_or_unscored_not_rounding_noise(monkeypatch):
    """Every weight clipped to one value: np.var gave ~1e-40, eta was noise over noise and DEV any sign (it moved
    with the order of the rows, and a negative value won the choice)."""
    p = _synthetic()
    n = len(p.source_val)
    for value, want in ((1e-4 / (1 - 1e-4), math.nan), (1.0, float(p.source_val.cross_entropy().mean()))):
        monkeypatch.setattr(V, "_importance_weights", lambda _p, v=value: np.full(n, v))
        got = dev_details(p)["dev"]
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12), (value, got)


def test_split_outputs_refuse_non_finite_outputs_and_labels_outside_the_classes():
    with pytest.raises(DataError, match="logits hold NaN or inf \\(first in row 1\\)"):
        SplitOutputs(np.zeros((3, 2)), np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 0.0]]))
    for bad in (-1, 7):
        with pytest.raises(DataError, match=f"label {bad} is not a class index of the 4 logits"):
            SplitOutputs(np.zeros((2, 2)), np.zeros((2, 4)), np.array([0, bad]))


def test_importance_weights_are_one_without_shift():
    # a domain classifier cannot tell identical feature sets apart: p_t = 1/2, weights 1, IWV = mean CE
    p = _synthetic()
    p.target = SplitOutputs(p.source.features.copy(), p.source.logits.copy())
    w = V._importance_weights(p)
    np.testing.assert_allclose(w, 1.0, atol=1e-6)
    assert get_validator("iwv")(p) == pytest.approx(p.source_val.cross_entropy().mean(), rel=1e-5)


def test_rv_single_pseudo_class_falls_back_to_class_share():
    p = _synthetic()
    p.target.logits[:] = [5.0, 0.0, 0.0]  # every target sample predicted class 0
    assert get_validator("rv")(p) == pytest.approx(np.mean(p.source_val.labels == 0))


# --------------------------------------------------------------------------------------------------
# rankings: each validator prefers a clearly better model to a clearly worse one

# Which worse model, and why the validator must rank it below the source-trained "good" model:
WORSE = {
    # trained to confidence on a wrong (random-projection) labelling: chance accuracy on source-val
    "source-val": "wrong-labels",
    # untrained: near-uniform softmax, the most uncertain predictions (the wrong-labels model is confident
    # too, and entropy cannot tell confident-and-wrong from confident-and-right)
    "entropy": "untrained",
    # confident and wrong on source-val: a large cross-entropy that no importance weight can bring down
    "iwv": "wrong-labels",
    "dev": "wrong-labels",
    # SND rewards predictions clustered into dense soft neighbourhoods and penalises ones scattered over the
    # simplex; the scattering model predicts confidently but as a random high-frequency function of the input.
    # (An untrained, near-uniform model would score *higher*: SND rewards uniform or collapsed outputs, a
    # limitation Saito et al. note; it compares models that are all confident.)
    "snd": "scattering",
    # ATC is calibrated on the model's own source-val accuracy, which is at chance for the wrong labelling,
    # and its confidences transfer like the good model's (a smooth fit, not memorised noise)
    "atc": "wrong-labels",
    # pseudo-labels from the wrong labelling teach the reverse classifier that labelling: wrong on source-val
    "rv": "wrong-labels",
}


def test_worse_models_are_worse_on_the_target(setup):
    task, _, models = setup
    good = accuracy(models["good"], task.target_test)
    assert good > 0.9
    for name in set(WORSE.values()):
        assert accuracy(models[name], task.target_test) < good - 0.3, name


@pytest.mark.parametrize("name", SEVEN)
def test_validator_ranks_better_model_first(setup, name):
    _, data, models = setup
    v = get_validator(name)
    good, worse = v.evaluate(models["good"], data), v.evaluate(models[WORSE[name]], data)
    assert np.isfinite(good) and np.isfinite(worse)
    assert v.utility(good) > v.utility(worse), (name, good, worse)


def test_source_val_equals_accuracy(setup):
    task, data, models = setup
    assert get_validator("source-val").evaluate(models["good"], data) == pytest.approx(
        accuracy(models["good"], task.source_val))


# --------------------------------------------------------------------------------------------------
# honesty: target labels and the target test split cannot reach a validator


def test_selection_data_refuses_target_labels(setup):
    task, _, _ = setup
    with pytest.raises(DataError, match="never see target labels.*from_task"):
        SelectionData(task.source, task.source_val, task.target)
    with pytest.raises(DataError, match="source_val"):
        SelectionData(task.source, task.source_val.replace(y=None), task.target.replace(y=None))


def test_from_task_strips_labels_and_holds_no_test_split(setup):
    task, data, _ = setup
    assert [f.name for f in dataclasses.fields(SelectionData)] == ["source", "source_val", "target"]
    assert data.target.y is None and task.target.y is not None  # the task itself is untouched
    assert len(data.target) == len(task.target) and np.array_equal(data.target.X, task.target.X)
    assert data.source is task.source and data.source_val is task.source_val
    assert not any(v is task.target_test for v in vars(data).values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.target = task.target_test  # type: ignore[misc]
    with pytest.raises(DataError, match="SelectionData"):
        Predictions.compute(mlp(6, 3), task)  # a TransferTask is refused


def test_predictions_refuse_labelled_target():
    with pytest.raises(DataError, match="target labels"):
        Predictions(None, None, SplitOutputs(np.zeros((2, 1)), np.zeros((2, 3)), np.array([0, 1])))


class _Spy(Validator):
    name, higher_is_better, needs, paper = "spy", True, frozenset({"source", "source_val", "target"}), "-"

    def __init__(self) -> None:
        self.seen: list[Predictions] = []

    def __call__(self, p: Predictions) -> float:
        self.seen.append(p)
        return 0.0


def test_validator_sees_only_unlabelled_target_train_rows(setup):
    task, data, models = setup
    model = models["good"].train()  # evaluation restores the mode
    spy = _Spy()
    spy.evaluate(model, data, max_samples=None)
    spy.evaluate(model, data, max_samples=50)
    assert model.training
    model.eval()
    full, sub = spy.seen
    assert [f.name for f in dataclasses.fields(Predictions)] == ["source", "source_val", "target", "seed", "cache"]
    assert full.target.labels is None and sub.target.labels is None
    assert len(full.target) == len(task.target) and len(sub.target) == 50
    # the rows are the target train split's, in order (not the test split's)
    np.testing.assert_allclose(full.target.logits, predict_logits(model, task.target.X).double().numpy())
    feats, _ = predict_features(model, task.target.X)
    assert full.target.features.dtype == np.float64 and full.target.features.shape == tuple(feats.shape)
    np.testing.assert_array_equal(full.source_val.labels, task.source_val.y)
    assert len(sub.source) == 50 and len(sub.source_val) == min(50, len(task.source_val))
    # subsampled rows are rows of the split, and source rows keep their own labels
    pos = {tuple(np.round(r, 4)) for r in predict_logits(model, task.target.X).double().numpy()}
    assert all(tuple(np.round(r, 4)) in pos for r in sub.target.logits)
    src_logits = predict_logits(model, task.source.X).double().numpy()
    for row, label in zip(sub.source.logits, sub.source.labels):
        i = int(np.abs(src_logits - row).sum(1).argmin())
        assert task.source.y[i] == label


def test_predictions_deterministic_and_per_split(setup):
    _, data, models = setup
    a = Predictions.compute(models["good"], data, max_samples=50, seed=3)
    b = Predictions.compute(models["good"], data, needs=["target"], max_samples=50, seed=3)
    c = Predictions.compute(models["good"], data, max_samples=50, seed=4)
    assert b.source is None and b.source_val is None
    np.testing.assert_array_equal(a.target.logits, b.target.logits)  # independent of the other splits
    assert not np.array_equal(a.target.logits, c.target.logits)
    with pytest.raises(DataError, match="needs"):
        b.get("source")
    with pytest.raises(UnknownNameError):
        Predictions.compute(models["good"], data, needs=["target_test"])


# --------------------------------------------------------------------------------------------------
# registry and score_all


def test_registry():
    assert available_validators() == SEVEN
    for name in SEVEN:
        cls = VALIDATORS[name]
        assert cls.name == name and cls.needs <= {"source", "source_val", "target"} and cls.paper
        assert cls.__doc__ and len(cls.__doc__.strip().splitlines()) >= 3
        assert isinstance(get_validator(name), Validator)
    with pytest.raises(UnknownNameError) as err:
        get_validator("nope")
    assert all(n in str(err.value) for n in SEVEN)

    class Other(_Spy):
        name = "source-val"

    with pytest.raises(ValueError, match="already registered"):
        register_validator(Other)
    assert VALIDATORS["source-val"] is V.SourceVal


def test_score_all_equals_each_validator(setup):
    _, data, models = setup
    scores = score_all(models["good"], data, SEVEN, max_samples=100, seed=2)
    assert list(scores) == SEVEN
    for name in SEVEN:
        assert scores[name] == get_validator(name).evaluate(models["good"], data, max_samples=100, seed=2), name
    with pytest.raises(UnknownNameError):
        score_all(models["good"], data, ["entropy", "nope"])


def test_advisor_atc_estimate_delegates(setup):
    from qianyi.measure.advisor import atc_estimate

    task, data, models = setup
    est = atc_estimate(models["good"], task.source_val, data.target.X, "cpu")
    ps = torch.softmax(predict_logits(models["good"], task.source_val.X), 1).numpy()
    pt = torch.softmax(predict_logits(models["good"], data.target.X), 1).numpy()
    assert est == atc_from_probs(ps, task.source_val.y, pt)
    assert abs(est - get_validator("atc").evaluate(models["good"], data, max_samples=None)) <= 0.02


def test_atc_ties_at_the_threshold_share_the_mass():
    # a saturated softmax: every source-val confidence is exactly 1.0, 22 of 25 right (acc 0.88). The
    # threshold is 1.0 and nothing lies above it; without sharing the tie, ATC said 0.0 for any target.
    probs_val = np.tile([1.0, 0.0], (25, 1))
    y_val = np.r_[np.zeros(22, int), np.ones(3, int)]
    assert atc_from_probs(probs_val, y_val, probs_val) == pytest.approx(0.88)
    # a collapsed network (one output for every input) on balanced labels: the source-val accuracy, 0.5
    same = np.tile([0.7, 0.3], (10, 1))
    assert atc_from_probs(same, np.r_[np.zeros(5, int), np.ones(5, int)], same) == pytest.approx(0.5)
    # source-val all right: t is the lowest confidence, which counts in full (not 3 of 4)
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    probs = np.stack([conf, 1 - conf], 1)
    assert atc_from_probs(probs, np.zeros(4, int), probs) == 1.0
    # target confidences above, at and below a tied threshold: above counts 1, at counts r, below 0
    probs_t = np.array([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.9, 0.1]])
    assert atc_from_probs(probs_val, y_val, probs_t) == pytest.approx(0.5 * 0.88)


def test_a_validator_plugin_is_found_by_its_entry_point_and_select_keeps_its_cache(tmp_path, monkeypatch):
    """`qianyi.validators` entry points load where names are checked (`qianyi validators`, --select, bench's
    --validators all); select records qianyi's validators plus the one asked, so installing a plugin retrains
    no cached run."""
    import importlib.metadata as md
    import sys

    from qianyi.bench.selection import select_hparams
    from qianyi.cli import main
    from qianyi.select import validators as V
    from qianyi.train import TrainConfig

    cfg = TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    kw = dict(grid=[{"trade_off": 1.0}], out=tmp_path, config=cfg, log=None)
    select_hparams("dann", ["digits->digits+rot30@100"], validator="dev", **kw)
    (tmp_path / "qy_val_plugin.py").write_text(
        "from qianyi.select.validators import Validator, register_validator\n"
        "@register_validator\nclass Mean(Validator):\n"
        "    name, higher_is_better, needs, paper = 'qy-mean', True, frozenset({'target'}), 'test'\n"
        "    def __call__(self, p):\n        return float(p.target.probs.max(1).mean())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(V, "VALIDATORS", dict(V.VALIDATORS))  # the plugin's registration is undone after
    monkeypatch.delitem(sys.modules, "qy_val_plugin", raising=False)
    eps = [md.EntryPoint("mean", "qy_val_plugin", V.PLUGIN_GROUP)]
    monkeypatch.setattr(md, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    monkeypatch.setattr(V, "_plugins_loaded", False)
    assert "qy-mean" in V.available_validators() and "qy-mean" not in V.builtin_validators()
    assert main(["validators"]) == 0
    n = len(list(tmp_path.rglob("result.json")))
    select_hparams("dann", ["digits->digits+rot30@100"], validator="dev", **kw)
    assert len(list(tmp_path.rglob("result.json"))) == n  # the plugin changed no cached run's key
    res = select_hparams("dann", ["digits->digits+rot30@100"], validator="qy-mean", **kw)
    assert np.isfinite(res.scores).all()


def test_atc_and_snd_refuse_what_is_not_probabilities():
    good = np.full((4, 2), 0.5)
    for bad, says in ((np.array([[np.nan, 0.5], [0.5, 0.5]]), "pass softmax"), (np.array([[2.0, 1.0], [1.0, 0.0]]),
                                                                                   "summing to 1"),
                      (np.zeros((0, 2)), "non-empty")):
        with pytest.raises(DataError, match=says):
            atc_from_probs(good, np.zeros(4, int), bad)
    with pytest.raises(DataError, match="4 source-val rows but 3 labels"):
        atc_from_probs(good, np.zeros(3, int), good)
    with pytest.raises(DataError, match="SND: rows must be probabilities"):
        V.snd_from_probs(np.array([[3.0, -1.0], [0.5, 0.5]]))

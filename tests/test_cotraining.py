"""Co-training (``cotrain``) and the two-view ``mfeat`` data: views kept apart, labels crossing over,
exact resume, the oracle audit kept out of training, the domain split."""
from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import qianyi
from qianyi.data.builtin import DATASETS
from qianyi.data.domain import Domain, TransferTask
from qianyi.data.mfeat import VIEWS, domain_mask, load_mfeat, view_widths
from qianyi.errors import ConfigError, DataError, DatasetNotFoundError, UnknownNameError
from qianyi.methods import StepContext, get_method
from qianyi.methods.cotraining import TwoViewNet, pseudo_label_audit, pseudo_label_monitor
from qianyi.nn import backbone_for
from qianyi.nn.inference import accuracy, predict_logits
from qianyi.train import TrainConfig, Trainer, load_checkpoint, run
from qianyi.train.checkpoint import FILENAME

from .conftest import DATA, requires_data, toy_task
from .test_engine import _interrupt_after

FAST = dict(epochs=3, steps_per_epoch=10, batch_size=32, progress=False)


def _set_up(width: int = 10, classes: int = 3, **kw):
    m = get_method("cotrain", **kw)
    m.input_shape = (width,)
    net = backbone_for((width,), classes)
    m.setup(net, net.eval()(torch.zeros(2, width)))
    return m, net


def test_each_view_network_reads_only_its_own_columns():
    torch.manual_seed(0)
    m, _ = _set_up(split=4)
    net = m.net.eval()
    x = torch.randn(16, 10)
    moved_b, moved_a = x.clone(), x.clone()
    moved_b[:, 4:] += torch.randn(16, 6) * 5  # another view b
    moved_a[:, :4] += torch.randn(16, 4) * 5  # another view a
    base, ob, oa = net(x), net(moved_b), net(moved_a)
    assert torch.equal(base["view_a"], ob["view_a"]) and torch.equal(base["logits_a"], ob["logits_a"])
    assert torch.equal(base["view_b"], oa["view_b"]) and torch.equal(base["logits_b"], oa["logits_b"])
    assert not torch.equal(base["logits_b"], ob["logits_b"]) and not torch.equal(base["logits_a"], oa["logits_a"])
    # and no gradient flows from a view's output into the other view's columns
    x.requires_grad_(True)
    out = net(x)
    (ga,) = torch.autograd.grad(out["logits_a"].sum(), x, retain_graph=True)
    (gb,) = torch.autograd.grad(out["logits_b"].sum(), x)
    assert ga[:, 4:].abs().max() == 0 and ga[:, :4].abs().max() > 0
    assert gb[:, :4].abs().max() == 0 and gb[:, 4:].abs().max() > 0


def _with_view_b(task: TransferTask, fill: float) -> TransferTask:
    def swap(d):
        X = d.X.copy()
        X[:, 3:] = fill
        return d.replace(X=X)
    return TransferTask(swap(task.source), swap(task.source_val), swap(task.target),
                        None if task.target_test is None else swap(task.target_test))


def test_without_pseudo_labels_view_a_trains_the_same_whatever_view_b_holds():
    task = toy_task()  # 6 columns: view a = 0..2, view b = 3..5
    nets = []
    for fill in (0.0, 7.0):
        m = get_method("cotrain", split=3, trade_off=0.0)
        Trainer(m, TrainConfig(**FAST)).fit(_with_view_b(task, fill))
        nets.append(m.net)
    for (k, a), (_, b) in zip(nets[0].view_a.state_dict().items(), nets[1].view_a.state_dict().items()):
        assert torch.equal(a, b), k
    assert not torch.equal(nets[0].view_b.groups["fc1"][1].weight, nets[1].view_b.groups["fc1"][1].weight)


def test_each_views_confident_labels_train_the_other_view():
    torch.manual_seed(0)
    m, backbone = _set_up(split=4, warmup=0.0, start=1.0, end=1.0)  # portion 1: every target sample labelled
    with torch.no_grad():  # view a: class 2 for everything, confidently; view b: untrained
        m.net.view_a.groups["logits"].bias.copy_(torch.tensor([0.0, 0.0, 50.0]))
    xs, ys, xt = torch.randn(8, 10), torch.randint(0, 3, (8,)), torch.randn(8, 10)
    before, rng = copy.deepcopy(m.net), torch.get_rng_state()
    conf, pred = m.labels(xt)
    assert (pred[0] == 2).all() and not (pred[1] == 2).all()
    ctx = StepContext(backbone, m, xs, ys, xt, None, progress=1.0, step=0,
                      optimizers={"main": torch.optim.SGD(m.optimizers({})["main"], lr=0.1)})
    m.training_step(ctx)
    torch.set_rng_state(rng)  # the step's dropout draws, replayed on the network as it was
    with torch.no_grad():
        a, b = before.views(torch.cat([xs, xt]))
    weight = 2.0 / (1.0 + math.exp(-10)) - 1.0
    assert ctx.logged["pseudo_b"][0] == pytest.approx(weight * float(F.cross_entropy(b.logits[8:], pred[0])), rel=1e-5)
    assert ctx.logged["pseudo_a"][0] == pytest.approx(weight * float(F.cross_entropy(a.logits[8:], pred[1])), rel=1e-5)
    assert ctx.logged["pseudo_b"][0] != pytest.approx(weight * float(F.cross_entropy(b.logits[8:], pred[1])), rel=1e-3)
    assert ctx.logged["a_to_b"] == [1.0] and ctx.logged["b_to_a"] == [1.0]
    assert ctx.logged["agree"][0] == pytest.approx(float((pred[0] == pred[1]).float().mean()))


def test_single_view_baseline_trains_and_predicts_with_one_view_only():
    task = toy_task()
    m = get_method("cotrain", split=3, view="a")
    fit = Trainer(m, TrainConfig(**FAST)).fit(task)
    assert "pseudo_share" in fit.history[-1] and "a_to_b" not in fit.history[-1]
    assert {id(p) for g in m.optimizers({})["main"] for p in g["params"]} == {id(p) for p in m.net.view_a.parameters()}
    x = torch.as_tensor(task.target_test.X)
    out = m.net.eval()(x)
    assert torch.allclose(out.logits, F.log_softmax(out["logits_a"], 1), atol=1e-5)
    with pytest.raises(ConfigError, match="view must be one of both, a, b"):
        get_method("cotrain", view="c")


def test_inference_model_predicts_the_average_of_the_two_views_probabilities():
    task = toy_task()
    m = get_method("cotrain", split=3)
    fit = Trainer(m, TrainConfig(**FAST)).fit(task)
    assert fit.model is m.net
    x = torch.as_tensor(task.target_test.X)
    out = fit.model.eval()(x)
    mean = (out["logits_a"].softmax(1) + out["logits_b"].softmax(1)) / 2
    assert torch.allclose(out.logits.exp(), mean, atol=1e-5)
    assert out.features.shape == (len(x), 2 * 128)
    acc = accuracy(fit.model, task.target_test)
    assert acc == pytest.approx(float((predict_logits(fit.model, x).argmax(1).numpy() == task.target_test.y).mean()))
    with pytest.raises(ConfigError, match="split .* from 1 to 5 .* got 6"):
        Trainer(get_method("cotrain", split=6), TrainConfig(**FAST)).fit(task)


def test_resume_after_an_interrupt_gives_identical_weights(tmp_path):
    task = toy_task()
    kw = dict(split=3, warmup=0.2)  # pseudo-labels (and the memory) are in play before the interrupt
    _, whole = run(get_method("cotrain", **kw), task, TrainConfig(**FAST))
    trainer = Trainer(get_method("cotrain", **kw), TrainConfig(**FAST, checkpoint_dir=str(tmp_path)))
    _interrupt_after(trainer, task, steps=10)
    assert load_checkpoint(tmp_path / FILENAME)["step"] == 10
    _, resumed = run(get_method("cotrain", **kw), task, TrainConfig(**FAST), out=tmp_path)
    assert resumed.resumed_from_step == 10
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    for (k, a), (_, b) in zip(whole.method.state_dict().items(), resumed.method.state_dict().items()):
        assert torch.equal(a, b), k
    # the saved run rebuilds its two view networks (qianyi predict failed: model.json described the backbone)
    from qianyi.train.artefact import load_model

    saved = load_model(tmp_path)
    x = torch.as_tensor(task.target_test.X)
    assert isinstance(saved.network, TwoViewNet) and torch.allclose(saved.network(x).logits,
                                                                     resumed.model.eval()(x).logits)


def test_the_oracle_audit_changes_nothing_in_training_and_counts_right_labels():
    task = toy_task()
    plain = get_method("cotrain", split=3)
    Trainer(plain, TrainConfig(**FAST)).fit(task)
    audited = get_method("cotrain", split=3)
    fit = Trainer(audited, TrainConfig(**FAST)).fit(task, monitor=pseudo_label_monitor(audited, task.target_test))
    for (k, a), (_, b) in zip(plain.state_dict().items(), audited.state_dict().items()):
        assert torch.equal(a, b), k
    row = fit.history[-1]
    assert {"oracle_a_given", "oracle_a_right", "oracle_b_given", "oracle_b_right"} <= set(row)
    # brute force: the rule applied sample by sample
    audit = pseudo_label_audit(audited, task.target_test)
    conf, pred = audited.labels(torch.as_tensor(task.target_test.X))
    for v, name in enumerate("ab"):
        given = right = 0
        for j in range(len(task.target_test)):
            if conf[v, j] >= audited.thresholds[v, pred[v, j]]:
                given += 1
                right += int(pred[v, j]) == int(task.target_test.y[j])
        assert audit[f"{name}_given"] == pytest.approx(given / len(task.target_test))
        assert audit[f"{name}_right"] == pytest.approx(right / len(task.target_test))
    with pytest.raises(DataError, match="labelled target test"):
        pseudo_label_monitor(audited, task.target_test.replace(y=None))


def test_domain_split_rule_halves_every_class_by_the_feature():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 6)
    mor = rng.normal(size=(18, 6))
    mor[:, 5] = np.round(mor[:, 5], 0)  # ties: broken by row number
    a = domain_mask(mor, y, 5)
    for c in range(3):
        rows = np.flatnonzero(y == c)
        assert a[rows].sum() == 3
        assert mor[rows[a[rows]], 5].max() <= mor[rows[~a[rows]], 5].min()
    assert np.array_equal(a, domain_mask(mor, y, 5))


def test_mfeat_without_its_folder_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="uci-mfeat is absent"):
        load_mfeat(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="QIANYI_DATA is not set"):
        load_mfeat(None)
    assert view_widths(["fou_0", "fou_1", "kar_0"]) == [("fou", 2), ("kar", 1)]
    with pytest.raises(DataError, match="no column names"):
        view_widths(None)


@requires_data("uci-mfeat")
def test_mfeat_domains_are_reproducible_disjoint_and_balanced():
    a = qianyi.load_domain("mfeat?views=fou,kar&domain=A", data_dir=DATA)
    b = qianyi.load_domain("mfeat?views=fou,kar&domain=B", data_dir=DATA)
    again = load_mfeat(DATA, views="fou,kar", domain="A")  # (not through the loader's cache)
    assert np.array_equal(a.X, again.X) and np.array_equal(a.y, again.y)
    assert a.X.shape == (1000, 140) and view_widths(a.feature_names) == [("fou", VIEWS["fou"]), ("kar", VIEWS["kar"])]
    assert (np.bincount(a.y) == 100).all() and (np.bincount(b.y) == 100).all()
    rows = {r.tobytes() for r in a.X}
    assert not any(r.tobytes() in rows for r in b.X)  # no digit on both sides
    every = qianyi.load_domain("mfeat?views=fou,kar", data_dir=DATA)
    assert len(every) == 2000 and every.origin != a.origin != b.origin
    task = qianyi.load_task("mfeat?views=fou,kar&domain=A", "mfeat?views=fou,kar&domain=B", data_dir=DATA)
    assert len(task.source) + len(task.source_val) == 1000 and len(task.target) + len(task.target_test) == 1000
    assert DATASETS["mfeat"].options == ("views", "domain", "by")


@requires_data("uci-mfeat")
@pytest.mark.parametrize("spec, message", [
    ("mfeat?domain=C", "mfeat\\?domain=C: the domain must be A, B or all"),
    ("mfeat?views=fou,nope", "mfeat\\?views=fou,nope: unknown view"),
    ("mfeat?views=kar,mor&domain=B", "mor view decides the domain split"),
    ("mfeat?by=1", "mfeat\\?by=1: the split feature must be one of"),
    ("mfeat?views=fou,fou", "named twice"),
])
def test_mfeat_refuses_bad_options_naming_them(spec, message):
    with pytest.raises(DataError, match=message):
        qianyi.load_domain(spec, data_dir=DATA)


def test_mfeat_refuses_unknown_options():
    with pytest.raises(UnknownNameError, match="'mfeat\\?view=fou': the mfeat dataset has no option 'view'"):
        qianyi.load_domain("mfeat?view=fou")


def test_the_default_split_warns_when_it_cuts_a_named_view():
    from qianyi.errors import QianyiWarning

    rng = np.random.default_rng(0)
    names = tuple([f"a_{i}" for i in range(3)] + [f"b_{i}" for i in range(5)])  # views of 3 and 5 columns
    X, y = rng.normal(size=(120, 8)).astype(np.float32), np.arange(120) % 2
    task = TransferTask.from_domains(Domain(X, y, "s", feature_names=names), Domain(X + 0.5, y, "t", feature_names=names))
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=16, progress=False)
    with pytest.warns(QianyiWarning, match=r"split=0 takes the first half of the columns \(4 of 8\).*set split=3"):
        run("cotrain", task, cfg)
    import warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run("cotrain", task, cfg, split=3)  # the first view's width: no warning
    assert not [w for w in seen if "cuts a view" in str(w.message)]


def test_interleaved_views_are_refused_and_a_given_split_or_a_third_view_is_warned():
    from qianyi.data.domain import ViewOrderError
    from qianyi.errors import QianyiWarning

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 9)).astype(np.float32), np.arange(120) % 2
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=16, progress=False)

    def task(names):
        return TransferTask.from_domains(Domain(X, y, "s", feature_names=names),
                                         Domain(X + 0.5, y, "t", feature_names=names))
    mixed = ("img_0", "txt_0", "img_1", "txt_1", "img_2", "txt_2", "img_3", "img_4", "img_5")
    with pytest.raises(ViewOrderError, match="'img' are not side by side"):
        run("cotrain", task(mixed), cfg)
    grouped = tuple([f"img_{i}" for i in range(6)] + [f"txt_{i}" for i in range(3)])
    with pytest.warns(QianyiWarning, match=r"split=4 takes \(4 of 9\), which cuts a view.*set split=6"):
        run("cotrain", task(grouped), cfg, split=4)
    three = tuple(f"{v}_{i}" for v in ("img", "txt", "aud") for i in range(3))
    with pytest.warns(QianyiWarning, match=r"takes two views.*view a is img and view b txt \+ aud"):
        run("cotrain", task(three), cfg, split=3)
    with pytest.warns(QianyiWarning, match="not side by side.*split=6 is used as given"):
        run("cotrain", task(mixed), cfg, split=6)  # the user's split: warned, not refused
    import warnings
    plain = ("radius_mean", "texture_mean", "area_mean", "radius_se", "texture_se", "area_se", "a_x", "b_y", "c_z")
    with warnings.catch_warnings(record=True) as seen:  # names with '_' that are not VIEW_J: the split is the user's
        warnings.simplefilter("always")
        run("cotrain", task(plain), cfg, split=3)
    assert not [w for w in seen if "view" in str(w.message)]


def test_fine_tuning_settings_are_refused_for_methods_that_train_a_network_of_their_own(tmp_path):
    # cotrain (its two view networks) and discogan (its generators) took --init-from/--freeze/--l2sp, trained without
    # them and recorded them as used; --freeze alone advised adding --init-from, which was then ignored too
    from qianyi.train.run import check_shallow_settings

    task = toy_task()
    run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=2, progress=False), out=tmp_path / "src")
    start = str(tmp_path / "src" / "model.pt")
    for cfg, named in ((TrainConfig(**FAST, freeze=1), "freeze (--freeze) does"),
                       (TrainConfig(**FAST, init_from=start, freeze=1, l2sp=0.1),
                        "init_from, freeze, l2sp (--init-from --freeze --l2sp) do")):
        with pytest.raises(ConfigError, match=rf"cotrain does not train the engine's network \(it trains its two view "
                                              rf"networks, built apart from it\), so {re.escape(named)} not apply to it"):
            run(get_method("cotrain", split=3), task, cfg)
    with pytest.raises(ConfigError, match="discogan does not train the engine's network"):  # bench's and select's check
        check_shallow_settings(get_method("discogan"), TrainConfig(init_from=start, init_layers=1))
    check_shallow_settings(get_method("dann"), TrainConfig(init_from=start, freeze=1))  # a method that trains it

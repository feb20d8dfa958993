"""Level-2 methods: several optimizers, an EMA teacher, alternating updates — on the one engine."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import qianyi
from qianyi.methods import Method, StepContext, register
from qianyi.nn.layers import ema_update_
from qianyi.train import TrainConfig, Trainer, load_checkpoint, run
from qianyi.train.checkpoint import FILENAME

from .conftest import toy_task
from .test_engine import _interrupt_after


@register
class TwoOptimizersAndTeacher(Method):
    """Test method: a second head with its own optimizer and learning rate, alternating updates, an EMA teacher."""

    name = "_two-opt-ema"
    seen_lrs: list = []

    def __init__(self, decay: float = 0.9) -> None:
        super().__init__()
        self.decay = decay

    def setup(self, backbone, sample_batch):
        self.head2 = nn.Linear(sample_batch.features.shape[1], sample_batch.logits.shape[1])
        self.teacher = copy.deepcopy(backbone).requires_grad_(False)

    def optimizers(self, backbone):
        return {"body": [g for n, g in backbone.items() if n != "logits"],
                "heads": [backbone["logits"], {"params": list(self.head2.parameters()), "lr_mult": 0.5}]}

    def training_step(self, ctx: StepContext) -> None:
        type(self).seen_lrs.append([g["lr"] for g in ctx.optimizers["heads"].param_groups])
        source, target = ctx.forward(ctx.source_inputs, ctx.target_inputs)
        ys = ctx.source_labels
        ctx.update({"heads": F.cross_entropy(source.logits, ys) + F.cross_entropy(self.head2(source.features), ys)},
                   "heads")
        (source,) = ctx.forward(ctx.source_inputs + 0.1 * torch.randn_like(ctx.source_inputs))  # a random view
        ctx.update({"body": F.cross_entropy(source.logits, ys)}, ["body", "heads"])
        ema_update_(self.teacher, ctx.model, self.decay, buffers=True)

    def inference_model(self, backbone):
        return self.teacher


CFG = dict(epochs=3, steps_per_epoch=10, batch_size=32, progress=False)


def test_named_optimizers_with_their_own_learning_rates_and_the_teacher_predicts():
    TwoOptimizersAndTeacher.seen_lrs = []
    res, fit = run("_two-opt-ema", toy_task(), TrainConfig(**CFG))
    lrs = TwoOptimizersAndTeacher.seen_lrs
    assert len(lrs) == 30 and all(b == pytest.approx(0.5 * a) for a, b in lrs)
    assert lrs[-1][0] < lrs[0][0]  # the engine's annealing schedule drives every optimizer
    assert fit.model is fit.method.teacher and fit.model is not fit.backbone
    assert {"heads", "body", "source_val_acc"} <= set(res.history[-1])
    assert res.target_accuracy > 0.5


def test_ema_teacher_is_the_moving_average_of_the_student():
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    t0 = [p.detach().clone() for p in teacher.parameters()]
    ema_update_(teacher, student, 0.9)
    for t, t_old, s in zip(teacher.parameters(), t0, student.parameters()):
        assert torch.allclose(t, 0.9 * t_old + 0.1 * s)


def test_frozen_layers_stay_put_in_student_and_teacher(tmp_path):
    run("source-only", toy_task(), TrainConfig(epochs=1, steps_per_epoch=5, progress=False), out=tmp_path)
    start = torch.load(tmp_path / "model.pt", weights_only=True)
    _, fit = run("_two-opt-ema", toy_task(seed=2), TrainConfig(**CFG, init_from=str(tmp_path / "model.pt"), freeze=1))
    for net in (fit.backbone, fit.method.teacher):
        state = net.state_dict()
        assert all(torch.equal(start[k], state[k]) for k in start if k.startswith("groups.fc1."))
    assert not torch.equal(start["groups.logits.weight"], fit.backbone.state_dict()["groups.logits.weight"])


def test_level_two_method_resumes_exactly(tmp_path):
    task = toy_task()
    _, whole = run("_two-opt-ema", task, TrainConfig(**CFG))
    trainer = Trainer(qianyi.get_method("_two-opt-ema"), TrainConfig(**CFG, checkpoint_dir=str(tmp_path)))
    _interrupt_after(trainer, task, steps=10)
    state = load_checkpoint(tmp_path / FILENAME)
    assert state["step"] == 10 and set(state["optimizers"]) == {"body", "heads"}
    _, resumed = run("_two-opt-ema", task, TrainConfig(**CFG), out=tmp_path)
    assert resumed.resumed_from_step == 10
    for net_a, net_b in ((whole.backbone, resumed.backbone), (whole.method, resumed.method)):
        for (k, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
            assert torch.equal(a, b), k


def test_an_optimizer_with_nothing_to_train_is_named(tmp_path):
    _, fit = run("source-only", toy_task(), TrainConfig(**CFG))
    torch.save(fit.model.state_dict(), tmp_path / "start.pt")
    with pytest.raises(qianyi.errors.DataError, match="body"):
        run("_two-opt-ema", toy_task(), TrainConfig(**CFG, init_from=str(tmp_path / "start.pt"), freeze=2))
    with pytest.raises(qianyi.errors.ConfigError, match=r"fixed at their random initialisation.*--init-from"):
        run("_two-opt-ema", toy_task(), TrainConfig(**CFG, freeze=2))  # nothing copied into the frozen groups


def test_mcd_steps_generator_and_classifiers_separately():
    _, fit = run("mcd", toy_task(), TrainConfig(epochs=1, steps_per_epoch=2, progress=False))
    m = fit.method
    assert m._generator == ("fc1",) and isinstance(m.classifier2, nn.Sequential)
    # the second classifier has the first's shape but its own weights
    w1, w2 = fit.backbone.groups["logits"].weight, m.classifier2[-1].weight
    assert w1.shape == w2.shape and not torch.equal(w1, w2)
    # trade_off weighs step B only (the paper's step C has no weight): at 0 step C still aligns (it was 0 * d)
    _, fit0 = run("mcd", toy_task(), TrainConfig(epochs=1, steps_per_epoch=2, progress=False), trade_off=0.0)
    assert fit0.history[-1]["disc_b"] == 0 and fit0.history[-1]["disc_c"] > 0


@pytest.mark.parametrize("name", ["mcd", "att"])
def test_two_classifier_methods_split_every_network_below_its_bottleneck(name):
    # the default split 'fc1' exists only in the LeNet and the MLP: on a ResNet or a text network mcd stopped
    from types import SimpleNamespace

    from qianyi.methods import get_method
    from qianyi.nn.backbones import lenet, mlp
    from qianyi.nn.resnet import resnet
    from qianyi.nn.text import text_cnn

    for net, split in [(lenet(1, 12, 3), "fc1"), (mlp(6, 3), "fc1"), (resnet(18, 3), "pool"), (text_cnn(50, 2), "E")]:
        m = get_method(name)
        m.setup(net, SimpleNamespace(logits=torch.zeros(1, 3)))  # (att reads the class count off a batch)
        assert m._split == split and m.split is None  # the setting stays as asked: the run records it
        with pytest.raises(qianyi.errors.UnknownNameError, match="split must be a layer group below the logits"):
            get_method(name, split="logits").setup(net, SimpleNamespace(logits=torch.zeros(1, 3)))


def test_mean_teacher_terms_have_the_authors_normalisation():
    # French et al.'s code: squared difference averaged over the K classes, masked, averaged over the
    # batch; class balance summed over classes and scaled by the confident share. Their weights
    # (3, 0.005) assume these scales: a sum over classes would weigh consistency K times more.
    from qianyi.methods.mean_teacher import self_ensembling_terms

    ps = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    pt = torch.tensor([[0.98, 0.01, 0.01], [0.05, 0.9, 0.05], [0.97, 0.02, 0.01], [0.4, 0.3, 0.3]])
    consistency, balance, confident = self_ensembling_terms(ps, pt, threshold=0.968)
    m = [1.0, 0.0, 1.0, 0.0]  # teacher max 0.98, 0.9, 0.97, 0.4
    sq = [sum((a - b) ** 2 for a, b in zip(ps[j].tolist(), pt[j].tolist())) / 3 for j in range(4)]
    assert consistency.item() == pytest.approx(sum(mj * s for mj, s in zip(m, sq)) / 4, rel=1e-6)
    pbar = ps.mean(0).tolist()
    bce = sum(-(1 / 3) * torch.log(torch.tensor(p)).item() - (2 / 3) * torch.log(torch.tensor(1 - p)).item()
              for p in pbar)
    assert balance.item() == pytest.approx(0.5 * bce, rel=1e-5) and confident == 0.5


@register
class _ForgottenHead(TwoOptimizersAndTeacher):
    """Its optimizers leave head2 out: head2 would never move."""

    name = "_forgotten-head"

    def optimizers(self, backbone):
        return {"body": [g for n, g in backbone.items() if n != "logits"], "heads": [backbone["logits"]]}


def test_a_method_module_in_no_optimizer_is_warned():
    with pytest.warns(qianyi.errors.QianyiWarning, match=r"in no optimizer \(e.g. 'head2.weight'\)"):
        run("_forgotten-head", toy_task(), TrainConfig(**CFG))

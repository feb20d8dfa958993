"""Asymmetric tri-training (issue 14): the weight constraint, which target samples get labels, the target
network that predicts, resuming."""
from __future__ import annotations

import pytest
import torch

from qianyi.errors import UnknownNameError
from qianyi.methods import get_method
from qianyi.methods.tritraining import first_linear, weight_overlap
from qianyi.nn import Backbone
from qianyi.train import TrainConfig, Trainer, run
from qianyi.train.artefact import load_model

from .conftest import toy_task
from .test_engine import _interrupt_after

CFG = dict(epochs=4, steps_per_epoch=10, batch_size=32, progress=False)


def test_weight_overlap_is_the_absolute_sum_of_the_weight_product():
    w1 = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])  # (d_out, d_in), as nn.Linear holds it
    w2 = torch.tensor([[0.0, -1.0, 1.0], [3.0, 0.0, 0.0]])
    # rows of W1 against rows of W2: [[2, 3], [-1, 0]] -> 6
    assert float(weight_overlap(w1, w2)) == pytest.approx(6.0)
    orthogonal = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert float(weight_overlap(torch.tensor([[1.0, 0.0, 0.0]]), orthogonal)) == 0.0


def _trained(tmp_path=None, **hp):
    task = toy_task(shift=1.0)
    res, fit = run("att", task, TrainConfig(**CFG), out=tmp_path, **hp)
    return task, res, fit


def test_labels_go_only_where_both_labelling_networks_agree_and_one_is_confident():
    _, res, _ = _trained(threshold=1.0)  # no probability exceeds 1: no target label, ever
    after = [h for h in res.history if "labelled_share" in h]
    assert after and all(h["labelled_share"] == 0.0 and h["target_net"] == 0.0 for h in after)
    _, res, _ = _trained(threshold=0.0, start=1.0, end=1.0)  # no quota: every agreed sample is labelled
    after = [h for h in res.history if "labelled_share" in h]
    assert all(h["labelled_share"] == pytest.approx(h["agree"]) == pytest.approx(h["candidates"]) for h in after)
    assert all(h["labelled_share"] > 0 for h in after)
    # the quota: the most confident fifth of each class's recent candidates (a little more of the current batch
    # when confidence rises over the memory's batches), far from all of them
    _, res, _ = _trained(threshold=0.0, start=0.2, end=0.2)
    after = [h for h in res.history if "labelled_share" in h]
    assert all(0 < h["labelled_share"] < 0.4 * h["candidates"] for h in after)
    # before the warm-up ends (0.25 of training: the first epoch) nothing is labelled, all fit the source
    assert "labelled_share" not in res.history[0] and "cls" in res.history[0]


def test_the_target_network_predicts_and_saves_as_a_plain_backbone(tmp_path):
    task, res, fit = _trained(tmp_path)
    net, method = fit.model, fit.method
    assert isinstance(net, Backbone) and method.predict == "ft"
    x = torch.as_tensor(task.target_test.X[:16], dtype=torch.float32)
    with torch.no_grad():
        h = fit.backbone.eval()(x)[method._split]
        assert torch.allclose(net.eval()(x).logits, method.ft.eval()(h))  # F_t's logits on the shared features
        assert not torch.allclose(net(x).logits, fit.backbone(x).logits)  # not F_1's
        saved = load_model(tmp_path).network  # model.pt: the backbone's layer names, F_t as its classifier
        assert torch.allclose(saved.eval()(x).logits, net(x).logits, atol=1e-6)
    with pytest.raises(UnknownNameError, match="predict must be one of ft, f1"):
        get_method("att", predict="f2")


def test_the_weight_constraint_pushes_the_two_labelling_networks_apart():
    def overlap(fit) -> float:
        f1 = torch.nn.Sequential(*[fit.backbone.groups[n] for n in fit.method._above])
        return float(weight_overlap(first_linear(f1).weight, first_linear(fit.method.f2).weight).detach())

    free, held = _trained(trade_off=0.0)[2], _trained(trade_off=1.0)[2]
    assert overlap(held) < 0.5 * overlap(free)


def test_att_resumes_to_identical_weights(tmp_path):
    task = toy_task(shift=2.0)
    _, whole = run("att", task, TrainConfig(**CFG))
    _interrupt_after(Trainer(get_method("att"), TrainConfig(**CFG, checkpoint_dir=str(tmp_path))), task, steps=20)
    _, resumed = run("att", task, TrainConfig(**CFG), out=tmp_path)
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_first_linear_finds_the_head_layer():
    head = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), torch.nn.Linear(3, 2))
    assert first_linear(head).in_features == 4
    with pytest.raises(UnknownNameError):
        first_linear(torch.nn.Sequential(torch.nn.ReLU()))


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta:UserWarning")
def test_memory_buffers_stay_each_process_own_and_follow_the_method_device():
    from qianyi.train.distributed import shared_buffers

    task = toy_task(shift=1.0)
    _, fit = run("att", task, TrainConfig(**CFG))
    m = fit.method
    assert len(m._conf) > 0  # candidates were remembered
    shared = {id(b) for b in shared_buffers(m)}
    assert id(m._conf) not in shared and id(m._pred) not in shared  # never all-reduced across processes
    assert any(id(b) in shared for b in m.f2.buffers() if b.is_floating_point())  # batch-norm statistics are
    state = {k: v.clone() for k, v in m.state_dict().items()}
    fresh = get_method("att")
    fresh.setup(fit.backbone, fit.backbone(torch.as_tensor(task.source.X[:4], dtype=torch.float32)))
    fresh.to("meta")  # another device than the checkpoint's (checkpoints load on the CPU)
    fresh.load_state_dict(state, assign=False)
    assert fresh._conf.device.type == "meta" and fresh._conf.shape == state["_conf"].shape

from __future__ import annotations

import pytest
import torch

from qianyi.errors import UnknownNameError
from qianyi.nn import GradientReversal, backbone_for, grad_reverse


def test_gradient_reversal_flips_and_scales_gradient():
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64)
    (grad_reverse(x, 0.5) * w).sum().backward()
    assert torch.allclose(x.grad, -0.5 * w.expand(7, 3))
    y = torch.randn(4, 3)
    assert torch.equal(GradientReversal(2.0)(y), y)  # identity forward


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (20,)])
def test_backbones_have_named_groups_and_one_return_type(shape):
    net = backbone_for(shape, 5)
    x = torch.randn(4, *shape)
    train_out = net(x)
    net.eval()
    eval_out = net(x)
    assert type(train_out) is type(eval_out)
    assert eval_out.names == net.group_names and eval_out.names[-1] == "logits"
    assert eval_out.logits.shape == (4, 5)
    assert eval_out.features.shape == (4, net.feature_dim())
    assert torch.equal(eval_out["features"], eval_out.features)
    with pytest.raises(UnknownNameError, match="no layer group"):
        eval_out["fc9"]



def test_layer_outputs_iterate_like_a_read_only_mapping_of_layer_names():
    """list(out) gave 'UnknownNameError: no layer group 0' (iteration fell back to out[0]); out.items() and
    dict(out) did not exist."""
    net = backbone_for((1, 8, 8), 3).eval()
    out = net(torch.rand(2, 1, 8, 8))
    assert list(out) == list(out.keys()) == list(net.group_names) and len(out) == len(net.group_names)
    assert all(torch.equal(v, out[k]) for k, v in out.items())
    assert [v.shape for v in out.values()] == [out[k].shape for k in out]
    assert dict(out).keys() == set(net.group_names) and torch.equal(dict(out)["logits"], out.logits)
    assert "fc1" in out and "features" in out and "fc9" not in out and 0 not in out  # as out[...] answers
    assert out.get("fc9") is None and torch.equal(out.get("features"), out.features)

def test_logits_only_makes_a_backbone_traceable_and_exportable():
    """A backbone returns LayerOutputs: jit.trace and torch.export refuse it; LogitsOnly returns a tensor."""
    from qianyi.nn import LogitsOnly, backbone_for

    for shape in ((1, 28, 28), (20,)):
        net = backbone_for(shape, 3).eval()
        x = torch.rand(4, *shape)
        wrapped = LogitsOnly(net).eval()
        assert torch.allclose(torch.jit.trace(wrapped, x)(x), net(x).logits)
        assert torch.allclose(torch.export.export(wrapped, (x,)).module()(x), net(x).logits)
        probs = torch.nn.Sequential(wrapped, torch.nn.Softmax(1))(x)
        assert torch.allclose(probs.sum(1), torch.ones(4))
    # the text networks (token ids; float ids as a run's arrays hold them): their check of the ids read the data,
    # which torch.export refused (aten.equal; int(ids.min()))
    from qianyi.nn.text import TextEncoder

    for name in ("embbag", "textcnn", "memnet"):
        net = TextEncoder(name, vocab_size=50)((12,), 3).eval()
        ids = torch.randint(0, 50, (4, 12))
        for x in (ids, ids.float()):
            wrapped = LogitsOnly(net).eval()
            assert torch.allclose(torch.jit.trace(wrapped, x)(x), net(x).logits), name
            assert torch.allclose(torch.export.export(wrapped, (x,)).module()(x), net(x).logits), name

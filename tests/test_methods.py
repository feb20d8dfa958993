"""Methods: registry, loss terms on identical vs shifted inputs, adding a method without engine edits."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from qianyi.errors import UnknownNameError
from qianyi.methods import Batch, Method, available_methods, get_method, register
from qianyi.nn import backbone_for
from qianyi.nn.backbones import LayerOutputs
from qianyi.train import TrainConfig, run

from .conftest import toy_task

DA = ["ddc", "dan", "dann"]
DISCREPANCY = ["ddc", "dan"]


def test_registry_lists_required_methods_with_summaries():
    methods = available_methods()
    for name in ["source-only", "oracle", "ddc", "dan", "dann"]:
        assert name in methods and methods[name].summary()
    with pytest.raises(UnknownNameError, match="available"):
        get_method("danne")
    with pytest.raises(UnknownNameError, match="no hyper-parameter 'alpha'"):
        get_method("dan", alpha=1)


def _outputs(net, x):
    net.eval()  # batch norm in eval mode: identical inputs give identical features
    return net(x)


@pytest.mark.parametrize("name", DISCREPANCY)
def test_alignment_term_is_zero_for_identical_and_positive_for_shifted_domains(name):
    torch.manual_seed(0)
    net = backbone_for((10,), 3)
    x = torch.randn(64, 10)
    y = torch.randint(0, 3, (64,))
    m = get_method(name)
    out = _outputs(net, x)
    m.setup(net, out)
    m.eval()
    same = m.loss(Batch(out, _outputs(net, x.clone()), y, None, progress=1.0))
    shifted = m.loss(Batch(out, _outputs(net, x + 3.0), y, None, progress=1.0))
    key = next(k for k in same if k != "cls")
    if name == "dann":
        # an untrained discriminator cannot tell identical domains apart: loss = log 2 exactly
        d_same = same[key].item()
        assert d_same == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
        assert shifted[key].item() != pytest.approx(d_same, abs=1e-4)
    else:
        assert abs(same[key].item()) < 1e-3
        assert shifted[key].item() > 10 * max(abs(same[key].item()), 1e-6)


def test_dann_reverses_gradient_into_features():
    torch.manual_seed(0)
    m = get_method("dann")
    f = torch.randn(8, 5, requires_grad=True)
    outs = LayerOutputs(OrderedDict(fc=f, logits=torch.randn(8, 2, requires_grad=True)), "fc")
    m.setup(None, outs)
    src, tgt = outs.split(4)
    terms = m.loss(Batch(src, tgt, torch.zeros(4, dtype=torch.long), None, progress=1.0))
    terms["domain"].backward()
    g_reversed = f.grad.clone()
    f.grad = None
    d = m.discriminator(f)
    dom = torch.cat([torch.ones(4), torch.zeros(4)])
    torch.nn.functional.binary_cross_entropy_with_logits(d, dom).backward()
    lam = m.trade_off * Batch(None, None, None, None, 1.0).ramp
    assert torch.allclose(g_reversed, -lam * f.grad, atol=1e-6)


def test_the_oracle_bounds_source_only_on_a_shift():
    # every adaptation method is checked against source-only in test_learning.py
    so, _ = run("source-only", toy_task(shift=3.0, n=400), TrainConfig(epochs=3, steps_per_epoch=20, progress=False))
    orc, _ = run("oracle", toy_task(shift=3.0, n=400), TrainConfig(epochs=3, steps_per_epoch=20, progress=False))
    assert orc.oracle and orc.target_accuracy > so.target_accuracy


def test_a_new_method_is_one_registered_class():
    @register
    class MeanMatch(Method):
        """Match feature means (test method)."""

        name = "_mean-match"

        def __init__(self, weight: float = 1.0) -> None:
            super().__init__()
            self.weight = weight

        def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
            gap = batch.source.features.mean(0) - batch.target.features.mean(0)
            return {"cls": self.source_ce(batch), "means": self.weight * (gap ** 2).sum()}

    assert "_mean-match" in available_methods()
    res, _ = run("_mean-match", toy_task(), TrainConfig(epochs=1, steps_per_epoch=10, progress=False), weight=0.5)
    assert res.hparams == {"weight": 0.5} and "means" in res.history[0]


def test_a_new_methods_constant_terms_are_logged_and_terms_without_gradient_are_named():
    """Plain numbers as terms (a weight switched off) gave an AttributeError, no terms a TypeError from torch."""
    from qianyi.errors import TrainingError

    @register
    class Gated(Method):
        """A term that is a plain number until half-way, then nothing at all (test method)."""

        name = "_gated"

        def __init__(self, mode: str = "number") -> None:
            super().__init__()
            self.mode = mode

        def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
            if self.mode == "number":
                return {"cls": self.source_ce(batch), "extra": 0.25}
            if self.mode == "vector":
                return {"cls": self.source_ce(batch), "per_sample": batch.source.features.mean(1)}
            return {} if self.mode == "none" else {"const": torch.tensor(1.0)}

    cfg = TrainConfig(epochs=1, steps_per_epoch=4, progress=False)
    res, _ = run("_gated", toy_task(), cfg, mode="number")
    assert res.history[0]["extra"] == 0.25
    with pytest.raises(TrainingError, match="_gated: no loss term with a gradient to minimise at step 0.*terms: none"):
        run("_gated", toy_task(), cfg, mode="none")
    with pytest.raises(TrainingError, match="no loss term with a gradient.*terms: \\['const'\\]"):
        run("_gated", toy_task(), cfg, mode="constant")
    with pytest.raises(TrainingError, match="'per_sample': 'a tensor of shape \\(64,\\)'.*scalar tensor"):
        run("_gated", toy_task(), TrainConfig(epochs=1, steps_per_epoch=4, batch_size=64, progress=False),
            mode="vector")


def test_a_broken_method_plugin_is_named_and_later_plugins_still_load(monkeypatch):
    import importlib.metadata as md
    import sys
    import types

    from qianyi.errors import QianyiWarning
    from qianyi.methods import registry
    from qianyi.methods.base import Method

    registry.available_methods()  # the built-ins loaded first (their modules register once per process)
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))  # the plugin's registration is undone after
    good = types.ModuleType("qy_plugin_good")
    exec("from qianyi.methods.registry import register\nfrom qianyi.methods.base import Method\n"
         "@register\nclass Mine(Method):\n    name = 'qy-plugin-mine'\n", good.__dict__)
    monkeypatch.setitem(sys.modules, "qy_plugin_good", good)
    eps = [md.EntryPoint("broken", "qy_plugin_missing_module", registry.PLUGIN_GROUP),
           md.EntryPoint("mine", "qy_plugin_good", registry.PLUGIN_GROUP)]
    monkeypatch.setattr(md, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    with pytest.warns(QianyiWarning, match=r"plugin 'broken' \(qy_plugin_missing_module\) failed to load"):
        methods = registry.available_methods()
    assert "qy-plugin-mine" in methods and issubclass(methods["qy-plugin-mine"], Method)


def test_a_setting_stored_under_another_name_is_named_not_a_traceback(monkeypatch):
    from qianyi.errors import ConfigError
    from qianyi.methods import Method, registry

    registry.available_methods()  # the built-ins loaded first: the copy below holds them
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))

    @registry.register
    class Renamed(Method):
        name = "_renamed"

        def __init__(self, trade_off: float = 1.0) -> None:
            super().__init__()
            self.lam = trade_off

        def loss(self, batch):
            return {"cls": self.source_ce(batch)}
    with pytest.raises(ConfigError, match=r"__init__ takes 'trade_off'.*self.trade_off = trade_off"):
        registry.get_method("_renamed").hparams()


def test_summary_of_runs_whose_method_is_not_installed_tabulates_them(tmp_path, capsys):
    """A plugin's (or a script's) runs read where the plugin is absent: a row under its name and a warning,
    not 'unknown method' for the whole folder."""
    import json

    from qianyi.bench.runner import bench
    from qianyi.cli import main
    from qianyi.train import TrainConfig

    bench(["dann"], ["digits->digits+rot30@100"], seeds=1, out=tmp_path,
          config=TrainConfig(epochs=1, steps_per_epoch=2, progress=False), log=None)
    (path,) = [p for p in tmp_path.rglob("result.json") if json.loads(p.read_text())["method"] == "dann"]
    res = json.loads(path.read_text())
    res["method"] = res["fingerprint"]["method"] = "qy-absent-plugin"
    path.write_text(json.dumps(res))
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "| qy-absent-plugin |" in out.out and "'qy-absent-plugin' is not installed here" in out.err


def test_a_predicting_network_model_json_cannot_describe_is_warned_at_the_run(tmp_path, monkeypatch):
    """A plugin whose inference_model is not a Backbone (and defines no network_spec) is told when the run
    saves it, not first at `qianyi predict`."""
    from torch import nn

    from qianyi.errors import QianyiWarning
    from qianyi.methods import Method, registry
    from qianyi.train import TrainConfig, run

    from .conftest import toy_task

    class Averaged(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    registry.available_methods()
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))

    @registry.register
    class Wrapped(Method):
        name = "_wrapped"

        def loss(self, batch):
            return {"cls": self.source_ce(batch)}

        def inference_model(self, backbone):
            return Averaged(backbone)
    with pytest.warns(QianyiWarning, match="_wrapped predicts with a Averaged.*network_spec"):
        run("_wrapped", toy_task(), TrainConfig(epochs=1, steps_per_epoch=2, progress=False), out=tmp_path)


def test_a_string_for_a_list_setting_is_refused_naming_the_list_it_wants():
    """DANN(hidden="256") was refused echoing ['2', '5', '6']: tuple() had split the text before the check."""
    from qianyi.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dann: setting hidden must be a list like \[256, 256\], got the string '256'"):
        get_method("dann", hidden="256")
    for wrong in (256, b"256"):  # a TypeError traceback; bytes taken as the widths [50, 53, 54]
        with pytest.raises(ConfigError, match="dann: setting hidden must be a list like"):
            get_method("dann", hidden=wrong)
    assert get_method("dann", hidden=[128]).hidden == (128,) and get_method("dann", hidden=(64, 32)).hidden == (64, 32)

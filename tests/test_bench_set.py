"""`qianyi bench --set METHOD.NAME=VALUE`: a method's settings for one bench, checked before anything trains."""
from __future__ import annotations

import pytest

from qianyi.cli import parse_bench_hparams
from qianyi.errors import UnknownNameError
from qianyi.methods import get_method


def test_bench_settings_are_grouped_by_method_and_typed():
    hp = parse_bench_hparams(["cbst", "dann"], ["cbst.align=dann", "cbst.end=0.8", "dann.trade_off=0.3"])
    assert hp == {"cbst": {"align": "dann", "end": 0.8}, "dann": {"trade_off": 0.3}}
    assert parse_bench_hparams(["dann"], []) == {}


@pytest.mark.parametrize("item, match", [("align=dann", "METHOD.NAME=VALUE"), ("cbst.align", "METHOD.NAME=VALUE"),
                                         ("dan.trade_off=1", "not one of --methods"),
                                         ("cbst.nope=1", "no hyper-parameter 'nope'")])
def test_bad_bench_settings_name_the_item(item, match):
    with pytest.raises(UnknownNameError, match=match):
        parse_bench_hparams(["cbst"], [item])


def test_variant_label_names_the_settings_that_differ_from_the_defaults():
    from qianyi.bench.runner import variant_label

    assert variant_label("dann", {"trade_off": 1.0}) == "dann"
    cbst = {**get_method("cbst").hparams(), "align": "dann", "end": 0.8}
    assert variant_label("cbst", cbst, 2) == "cbst (end=0.8, align=dann)"
    # runs of cbst's first revision (labels decided on the augmented view, before 2026-12-04) are a variant
    assert variant_label("cbst", cbst) == "cbst (end=0.8, align=dann, revision=1)"
    old = {"augment": True, "keep": 0.9, "memory": 20, "source_weight": 0.0}  # stored before pretrain/noisy existed
    assert variant_label("self-train", old) == "self-train"
    assert variant_label("self-train", {**old, "pretrain": "dann"}) == "self-train (pretrain=dann)"


def test_bench_names_a_method_of_the_current_revision_plainly(tmp_path):
    # mean-teacher is revision 2: its fresh runs are the method itself, not "mean-teacher (revision=1)"
    from qianyi.bench import bench
    from qianyi.train import TrainConfig

    res = bench(["mean-teacher"], ["digits->digits+rot30"], seeds=1, out=tmp_path, max_samples=150, log=None,
                config=TrainConfig(epochs=1, steps_per_epoch=2, progress=False))
    assert "mean-teacher" in res.methods and not any("revision" in m for m in res.methods)
    assert "| mean-teacher |" in (tmp_path / "results.md").read_text()

"""`qianyi bench --set METHOD.NAME=VALUE`: a method's settings for one bench, checked before anything trains."""
from __future__ import annotations

import pytest

from qianyi.cli import parse_bench_hparams
from qianyi.errors import UnknownNameError


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

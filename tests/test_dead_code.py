"""Code that nothing reached (review: health, section B) stays deleted; private helpers take no unread parameter."""
from __future__ import annotations

import inspect

from qianyi import proxy, proxy_table
from qianyi.nn import backbones, minilm
from qianyi.shallow import tca
from qianyi.train import estimator


def test_unreached_names_are_gone():
    assert not hasattr(backbones.Backbone, "lower_groups")  # freezing and copying use group_names / group_index
    assert not hasattr(minilm, "n_parameters")
    assert not hasattr(proxy, "COUNTRIES")  # country_splits uses the codes in the data
    assert not hasattr(estimator, "UNLABELLED")  # DomainAdapter takes unlabelled= from the user


def test_private_helpers_take_only_what_they_read():
    assert list(inspect.signature(proxy_table._write).parameters) == ["out", "model", "t", "pred_t", "pred_p", "result"]
    assert list(inspect.signature(tca._TransferBase._finish).parameters) == ["self"]

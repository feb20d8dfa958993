"""A practitioner's workflow: unlabelled targets, a separate labelled test set, saved models that
describe themselves, predictions on new data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qianyi.data import load_task

from .test_hostile import FAST, _blobs, _cli


def test_an_unlabelled_target_trains_and_reports_label_free_scores(capsys, tmp_path):
    """The usual case in practice: no target labels at all. Accuracy is unknown, and said so."""
    src = _blobs(tmp_path / "s.npz")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "tu.npz", X=(rng.normal(0, 1, (90, 5)) + 3 * np.eye(3, 5)[np.arange(90) % 3]).astype("f4"))
    test = _blobs(tmp_path / "tl.npz", seed=4)
    rc, err = _cli(capsys, "run", "dan", "--source", src, "--target", f"npz:{tmp_path / 'tu.npz'}", *FAST,
                   "--out", str(tmp_path / "u"))
    assert rc == 0, err
    res = json.loads((tmp_path / "u" / "result.json").read_text())
    assert res["target_accuracy"] is None and res["n_target_test"] == 0 and res["n_target_train"] == 90
    assert {"atc", "source-val", "entropy", "snd"} <= set(res["scores"])
    rc, err = _cli(capsys, "run", "dan", "--source", src, "--target", f"npz:{tmp_path / 'tu.npz'}", *FAST,
                   "--target-test", test, "--out", str(tmp_path / "v"))
    assert rc == 0, err
    res = json.loads((tmp_path / "v" / "result.json").read_text())
    assert 0 <= res["target_accuracy"] <= 1 and res["n_target_test"] == 90 and res["n_target_train"] == 90
    with pytest.raises(Exception, match="no labels to score"):
        load_task(src, f"npz:{tmp_path / 'tu.npz'}", target_test=f"npz:{tmp_path / 'tu.npz'}")
    task = load_task(src, test, test_fraction=0.0)  # --target-all: train on all of a labelled target
    assert task.target_test is None and len(task.target) == 90

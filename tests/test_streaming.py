"""Streamed image folders (folder:DIR?stream=1): lazy decoding, the same numbers as in memory, exact resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from qianyi import load_task
from qianyi.data import load_domain
from qianyi.data.lazy import LazyImages
from qianyi.errors import DataError
from qianyi.train.config import TrainConfig
from qianyi.train.run import run


def office_layout(root: Path, domains=("amazon", "webcam"), per_class: int = 24, size: int = 20) -> Path:
    """An Office-31-style tree DOMAIN/CLASS/*.jpg made from the UCI digits (classes 0..3); the second
    domain is inverted and colour-tinted, images of mixed sizes."""
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    for k, dom in enumerate(domains):
        for c in range(4):
            (root / dom / f"class{c}").mkdir(parents=True, exist_ok=True)
            idx = np.flatnonzero(y == c)[k * per_class:(k + 1) * per_class]
            for j, i in enumerate(idx):
                a = (X[i].reshape(8, 8) / 16 * 255).astype(np.uint8)
                if k:
                    a = 255 - a
                rgb = np.stack([a, a, (a * 0.5).astype(np.uint8)], -1) if k else np.stack([a] * 3, -1)
                side = size + int(rng.integers(0, 12))
                Image.fromarray(rgb).resize((side, side)).save(root / dom / f"class{c}" / f"{j}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def office(tmp_path_factory) -> Path:
    return office_layout(tmp_path_factory.mktemp("office31"))


def test_lazy_folder_decodes_what_the_eager_reader_decodes(office):
    eager = load_domain(f"folder:{office}/webcam?size=16")
    lazy = load_domain(f"folder:{office}/webcam?size=16&stream=1")
    assert isinstance(lazy.X, LazyImages) and not isinstance(eager.X, LazyImages)
    assert lazy.X.shape == eager.X.shape and lazy.class_names == eager.class_names
    np.testing.assert_array_equal(lazy.y, eager.y)
    np.testing.assert_array_equal(lazy.X[[3, 0, 7]], eager.X[[3, 0, 7]])
    np.testing.assert_array_equal(lazy.X[5:9], eager.X[5:9])
    np.testing.assert_array_equal(lazy.X[2], eager.X[2])
    sub = lazy.subset([4, 1])  # a split keeps the files unread
    assert isinstance(sub.X, LazyImages) and len(sub) == 2
    np.testing.assert_array_equal(sub.X[:], eager.X[[4, 1]])


def test_streamed_task_trains_to_the_same_numbers_as_in_memory(office):
    s, t = f"folder:{office}/amazon?size=16", f"folder:{office}/webcam?size=16"
    cfg = dict(epochs=3, batch_size=16, lr=0.05, progress=False)
    eager = load_task(s, t)
    lazy = load_task(s + "&stream=1", t + "&stream=1")
    assert isinstance(lazy.target.X, LazyImages) and isinstance(lazy.target_test.X, LazyImages)
    assert lazy.sample_shape == eager.sample_shape == (3, 16, 16)
    r_eager, f_eager = run("dann", eager, TrainConfig(**cfg))
    r_lazy, f_lazy = run("dann", lazy, TrainConfig(**cfg))
    r_workers, f_workers = run("dann", lazy, TrainConfig(**cfg, workers=2))
    assert r_eager.source_accuracy > 0.5  # it learnt something, so equal numbers mean something
    for other in (f_lazy, f_workers):  # every loss of every epoch: the same batches, the same values
        assert len(other.history) == len(f_eager.history) == 3
        for a, b in zip(other.history, f_eager.history):
            assert a == pytest.approx(b, rel=1e-5)
    assert r_lazy.target_accuracy == r_eager.target_accuracy == r_workers.target_accuracy
    assert r_lazy.source_accuracy == r_eager.source_accuracy


def test_augmented_stream_resumes_exactly(office, tmp_path):
    from tests.test_engine import _interrupt_after
    from qianyi.train.engine import Trainer
    from qianyi.train.checkpoint import FILENAME, load_checkpoint
    import qianyi
    import torch

    spec = f"folder:{office}/amazon?size=16&stream=1&augment=flip,crop"
    task = load_task(spec, f"folder:{office}/webcam?size=16&stream=1")
    cfg = dict(epochs=3, steps_per_epoch=4, batch_size=16, progress=False)
    _, whole = run("dann", task, TrainConfig(**cfg))
    trainer = Trainer(qianyi.get_method("dann"), TrainConfig(**cfg, checkpoint_dir=str(tmp_path), workers=1))
    _interrupt_after(trainer, task, steps=4)
    assert load_checkpoint(tmp_path / FILENAME)["step"] == 4
    _, resumed = run("dann", task, TrainConfig(**cfg), out=tmp_path)
    assert resumed.resumed_from_step == 4
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    # augmentations are a function of (seed, stream, step) and never touch evaluation
    X = task.source.X
    a = X.train_batch([0, 1, 2], np.random.default_rng([0, 1, 5]))
    assert np.array_equal(a, X.train_batch([0, 1, 2], np.random.default_rng([0, 1, 5])))
    assert not np.array_equal(a, X.train_batch([0, 1, 2], np.random.default_rng([0, 1, 6])))
    assert not np.array_equal(a, X[[0, 1, 2]])
    np.testing.assert_array_equal(X[[0, 1, 2]], X.without_augment()[[0, 1, 2]])


def test_streaming_refuses_what_it_cannot_do(office):
    with pytest.raises(DataError, match="augment= needs stream=1"):
        load_domain(f"folder:{office}/webcam?augment=flip")
    with pytest.raises(DataError, match="unknown augmentation"):
        load_domain(f"folder:{office}/webcam?stream=1&augment=rotate")
    with pytest.raises(DataError, match="streamed folder"):
        load_task(f"folder:{office}/amazon?stream=1+rot30", f"folder:{office}/webcam?stream=1")


def test_office31_folders_train_a_resnet18_through_the_streaming_path(office, tmp_path):
    """The issue's end-to-end check: Office-31 layout, JPEGs, streamed, ResNet-18 (random init, tiny size)."""
    import csv

    from qianyi.cli import main

    out = tmp_path / "r18"
    src = f"folder:{office}/amazon?size=32&stream=1&augment=flip,crop"
    tgt = f"folder:{office}/webcam?size=32&stream=1"
    assert main(["run", "dann", "--source", src, "--target", tgt, "--backbone", "resnet18", "--epochs", "1",
                 "--steps-per-epoch", "3", "--batch-size", "8", "--workers", "1", "--no-progress",
                 "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["fingerprint"]["backbone"]["name"] == "resnet18" and res["n_target_test"] > 0
    assert res["target_report"]["confusion"] and len(res["history"]) == 1
    # the saved model reads the same streamed folder back, through the run's own preprocessing
    assert main(["predict", str(out), "--data", tgt, "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == len(load_domain(tgt))


def test_a_streamed_copy_of_the_source_is_refused_as_a_target(office, tmp_path):
    # stream=1 switched the "target test sample seen in training" check off
    import shutil

    from qianyi.errors import QianyiWarning

    shutil.copytree(office / "amazon", tmp_path / "copy")
    with pytest.raises(DataError, match="also in the labelled source"):
        load_task(f"folder:{office}/amazon?stream=1", f"folder:{tmp_path / 'copy'}?stream=1")
    with pytest.warns(QianyiWarning, match="not both streamed"):  # one side streamed: not comparable, and said
        load_task(f"folder:{office}/amazon?stream=1", f"folder:{office}/webcam")

"""Settings for scale: mixed precision, deterministic kernels, the data's training defaults."""
from __future__ import annotations

import pytest
import torch

import qianyi
from qianyi.errors import ConfigError, UnknownNameError
from qianyi.methods import get_method
from qianyi.train.checkpoint import FILENAME, load_checkpoint
from qianyi.train.config import DATA_DEFAULTS, MIN_VECTOR_UPDATES, TrainConfig
from qianyi.train.engine import Trainer
from qianyi.train.run import run
from tests.conftest import toy_task
from tests.test_engine import _interrupt_after


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_is_part_of_the_fingerprint(amp):
    task = toy_task(n=300)
    cfg = TrainConfig(epochs=2, steps_per_epoch=20, progress=False, amp=amp)
    res, fit = run("dann", task, cfg)
    assert res.source_accuracy > 0.8  # three separable classes: it learnt under autocast
    assert res.config["amp"] == amp
    assert Trainer(qianyi.get_method("dann"), cfg).fingerprint(task) != \
        Trainer(qianyi.get_method("dann"), TrainConfig(epochs=2, steps_per_epoch=20)).fingerprint(task)


def test_settings_added_later_leave_default_fingerprints_alone():
    fp = TrainConfig().fingerprint()
    assert "amp" not in fp and "deterministic" not in fp and "workers" not in fp
    assert TrainConfig(amp="bf16").fingerprint()["amp"] == "bf16"
    assert TrainConfig(deterministic=True).fingerprint()["deterministic"] is True
    with pytest.raises(UnknownNameError, match="amp must be one of"):
        TrainConfig(amp="fp8")


def test_fp16_gradient_scaler_resumes_exactly(tmp_path):
    task = toy_task(n=300)
    cfg = dict(epochs=3, steps_per_epoch=8, batch_size=32, progress=False, amp="fp16")
    _, whole = run("dann", task, TrainConfig(**cfg))
    trainer = Trainer(qianyi.get_method("dann"), TrainConfig(**cfg, checkpoint_dir=str(tmp_path)))
    _interrupt_after(trainer, task, steps=8)
    assert "scaler" in load_checkpoint(tmp_path / FILENAME)
    _, resumed = run("dann", task, TrainConfig(**cfg), out=tmp_path)
    assert resumed.resumed_from_step == 8
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_deterministic_flag_reproduces_a_run():
    task = toy_task(n=200)
    cfg = TrainConfig(epochs=1, steps_per_epoch=10, progress=False, deterministic=True)
    a, fa = run("dan", task, cfg)
    b, fb = run("dan", task, cfg)
    assert fa.history == fb.history and a.target_accuracy == b.target_accuracy
    seen = []  # the flags are on while the fit runs (an epoch-end monitor sees them), and off again after
    Trainer(get_method("dan"), cfg).fit(task, monitor=lambda net: seen.append(torch.are_deterministic_algorithms_enabled()) or {})
    assert seen == [True] and not torch.are_deterministic_algorithms_enabled()


def test_the_data_fills_in_optimizer_learning_rate_and_a_floor_of_updates():
    cfg = TrainConfig()
    image = cfg.for_data(True, 100, 100)
    assert (image.optimizer, image.lr, image.steps_per_epoch) == ("sgd", 0.01, None)
    small = cfg.for_data(False, 141, 295)  # dslr -> webcam: 5 steps an epoch, 100 in all
    assert (small.optimizer, small.lr) == (DATA_DEFAULTS["vector"]["optimizer"], DATA_DEFAULTS["vector"]["lr"])
    assert small.steps_per_epoch * small.epochs >= MIN_VECTOR_UPDATES
    assert cfg.for_data(False, 2000, 2000).steps_per_epoch is None  # 32 x 20 = 640 updates already
    given = TrainConfig(optimizer="sgd", lr=0.05, steps_per_epoch=3).for_data(False, 141, 295)
    assert (given.optimizer, given.lr, given.steps_per_epoch) == ("sgd", 0.05, 3)  # what you set stays
    res, _ = run("source-only", toy_task(n=120), TrainConfig(epochs=2, progress=False))
    assert res.config["optimizer"] == "adam" and res.config["steps_per_epoch"] * 2 >= MIN_VECTOR_UPDATES


def test_cuda_asked_for_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        run("source-only", toy_task(n=60), TrainConfig(epochs=1, steps_per_epoch=2, device="cuda", progress=False))

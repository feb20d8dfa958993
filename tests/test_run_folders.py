"""Run folders after a run: checkpoints of finished runs, reruns that reuse them, the same data under another
path, warnings made errors, staged runs' temporary folders (review logs)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from qianyi.data import load_task
from qianyi.errors import CheckpointError, QianyiWarning
from qianyi.train import TrainConfig, run
from qianyi.train import engine

CFG = TrainConfig(epochs=2, steps_per_epoch=5, batch_size=16, progress=False)


def _blobs(path: Path, seed: int, shift: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(0, 1, (120, 5)) + 3 * np.eye(3, 5)[y] + shift
    np.savez(path, X=X.astype(np.float32), y=y)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    _blobs(tmp_path / "s.npz", 0)
    _blobs(tmp_path / "t.npz", 1, shift=0.5)
    return f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}"


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self, *a, **k):  # noqa: ANN001
        raise AssertionError("trained again")

    monkeypatch.setattr(engine.Trainer, "fit", refuse)


def test_a_finished_run_drops_its_checkpoint_and_a_rerun_reuses_it(tmp_path, pair, monkeypatch, capsys):
    task = load_task(*pair)
    res, fit = run("dann", task, CFG, out=tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()  # it held 2-16x model.pt, and nothing reads it again
    assert (tmp_path / "r" / "result.json").is_file() and (tmp_path / "r" / "model.pt").is_file()
    with monkeypatch.context() as m:
        _no_training(m)  # before: the rerun trained every epoch again
        again, fit2 = run("dann", load_task(*pair), CFG, out=tmp_path / "r")
    assert again.target_accuracy == res.target_accuracy and again.model_sha256 == res.model_sha256
    x = torch.as_tensor(task.target_test.X[:8])
    with torch.no_grad():
        assert torch.equal(fit.model(x).logits, fit2.model(x).logits)  # model.pt, loaded into the network
    assert fit2.selected_epoch == fit.selected_epoch and len(fit2.history) == len(fit.history)
    capsys.readouterr()
    run("dann", load_task(*pair), TrainConfig(**{**CFG.__dict__, "progress": True}), out=tmp_path / "r")
    assert f"finished earlier, reused ({tmp_path / 'r' / 'result.json'})" in capsys.readouterr().err
    # kept when asked
    run("dann", task, TrainConfig(**{**CFG.__dict__, "keep_checkpoint": True}), out=tmp_path / "k")
    assert (tmp_path / "k" / "checkpoint.pt").is_file()
    assert "keep_checkpoint" not in json.loads((tmp_path / "k" / "result.json").read_text())["config"]


def test_a_finished_run_of_other_settings_is_not_trained_over(tmp_path, pair):
    run("dan", load_task(*pair), CFG, out=tmp_path / "r")
    before = (tmp_path / "r" / "result.json").read_bytes()
    with pytest.raises(CheckpointError, match=r"finished run of other settings or data \(config.epochs: saved 2, now 3"):
        run("dan", load_task(*pair), TrainConfig(**{**CFG.__dict__, "epochs": 3}), out=tmp_path / "r")
    assert (tmp_path / "r" / "result.json").read_bytes() == before


def test_the_same_data_under_another_relative_path_is_the_same_run(tmp_path, monkeypatch):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    _blobs(tmp_path / "A" / "s.npz", 0)
    _blobs(tmp_path / "A" / "t.npz", 1, shift=0.5)
    monkeypatch.chdir(tmp_path / "A")
    keep = TrainConfig(**{**CFG.__dict__, "keep_checkpoint": True})
    for out, cfg in (("runs/r", CFG), ("runs/k", keep)):
        run("dan", load_task("npz:s.npz", "npz:t.npz"), cfg, out=out)
    monkeypatch.chdir(tmp_path / "B")  # (cron starts elsewhere): before, "belongs to a different run (source: ...)"
    task = load_task("npz:../A/s.npz", "npz:../A/t.npz")
    res, _ = run("dan", task, keep, out="../A/runs/k")  # its checkpoint at the last step: resumed, nothing trains
    assert res.target_accuracy is not None
    _no_training(monkeypatch)
    res, _ = run("dan", task, CFG, out="../A/runs/r")  # finished: reused
    assert res.source == "npz:s.npz"  # (as it was trained)
    _blobs(tmp_path / "A" / "t.npz", 2, shift=1.5)  # other data under the same name is another run
    with pytest.raises(CheckpointError, match="data"):
        run("dan", load_task("npz:../A/s.npz", "npz:../A/t.npz"), CFG, out="../A/runs/r")


def test_a_finished_staged_run_drops_its_checkpoints_and_is_reused(tmp_path, pair, monkeypatch):
    res, fit = run("self-train", load_task(*pair), CFG, out=tmp_path)
    assert not list(tmp_path.rglob("checkpoint.pt"))
    with monkeypatch.context() as m:
        _no_training(m)
        again, fit2 = run("self-train", load_task(*pair), CFG, out=tmp_path)
    assert again.model_sha256 == res.model_sha256 and again.train_seconds == res.train_seconds
    assert again.flags == res.flags and again.staged == res.staged
    assert json.loads((tmp_path / "result.json").read_text())["train_seconds"] == res.train_seconds


def test_a_health_warning_made_an_error_loses_no_file(tmp_path, pair, monkeypatch):
    monkeypatch.setattr(engine, "game_flags", lambda *a, **k: ["the game collapsed (a test flag)"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        with pytest.raises(QianyiWarning, match="a test flag"):
            run("dann", load_task(*pair), CFG, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "result.json").read_text())["flags"] == ["the game collapsed (a test flag)"]


def test_a_staged_run_without_out_trains_in_a_named_temporary_folder(pair, monkeypatch):
    from qianyi.train import transitive

    made: list[str] = []
    real = transitive.tempfile.TemporaryDirectory

    def named(*a, **k):  # noqa: ANN002, ANN003
        made.append(k.get("prefix", ""))
        return real(*a, **k)

    monkeypatch.setattr(transitive.tempfile, "TemporaryDirectory", named)
    run("self-train", load_task(*pair), CFG)
    assert made == ["qianyi-stages-"]


def test_a_shallow_runs_health_warning_made_an_error_loses_no_file(tmp_path, monkeypatch):
    import importlib

    run_module = importlib.import_module("qianyi.train.run")

    monkeypatch.setattr(run_module, "shallow_flags", lambda *a, **k: warnings.warn("a shallow test flag",
                                                                                    QianyiWarning) or ["flagged"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        with pytest.raises(QianyiWarning, match="a shallow test flag"):
            run("coral-shallow", load_task("digits", "digits+rot30", max_samples=200), CFG, out=tmp_path / "s")
    assert json.loads((tmp_path / "s" / "result.json").read_text())["flags"] == ["flagged"]

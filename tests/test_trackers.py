"""Experiment trackers (--log-to): resumes log each epoch once, settings name the network, setup errors are clear.

CI has neither TensorBoard nor MLflow: stand-in modules record what a run sends them (and behave as the real ones
where it matters: MLflow refuses a second active run unless nested, TensorBoard's purge_step drops later steps).
The tests at the end run against the real packages when they are installed.
"""
from __future__ import annotations

import csv

import hashlib
import sys
import types
from pathlib import Path

import pytest

from qianyi.data import load_task
from qianyi.errors import ConfigError
from qianyi.train import TrainConfig, run

from .test_hostile import FAST, _blobs, _cli


class _Run:
    def __init__(self, run_id: str, name: str) -> None:
        self.info = types.SimpleNamespace(run_id=run_id)
        self.name, self.status, self.ends, self.params, self.metrics = name, "RUNNING", [], {}, []
        self.values = []


def _fake_mlflow(start_error: Exception | None = None) -> types.ModuleType:
    """A stand-in for mlflow's fluent API, with its rules for active and resumed runs."""
    m = types.ModuleType("mlflow")
    m.runs, m.stack, m.calls = {}, [], []

    def start_run(run_id=None, run_name=None, nested=False):
        m.calls.append(("start", run_id, run_name, nested))
        if start_error is not None:
            raise start_error
        if m.stack and not nested:
            raise Exception(f"Run with UUID {m.stack[-1].info.run_id} is already active.")
        if run_id is not None:
            if run_id not in m.runs:
                raise Exception(f"Run '{run_id}' not found")
            r = m.runs[run_id]
        else:
            r = m.runs.setdefault(f"r{len(m.runs)}", _Run(f"r{len(m.runs)}", run_name))
        r.status = "RUNNING"
        m.stack.append(r)
        return r

    def end_run(status="FINISHED"):
        r = m.stack.pop()
        r.status = status
        r.ends.append(status)

    m.start_run, m.end_run = start_run, end_run
    m.active_run = lambda: m.stack[-1] if m.stack else None
    m.get_tracking_uri = lambda: "sqlite:///fake.db"
    m.log_params = lambda p: m.stack[-1].params.update(p)
    m.fail = None  # (step, exception): log_metrics raises it once at that step, as an unreachable server would

    def log_metrics(values, step):
        if m.fail is not None and m.fail[0] == step:
            exc, m.fail = m.fail[1], None
            raise exc
        m.stack[-1].metrics.extend((k, step) for k in values)
        m.stack[-1].values.extend((k, step, v) for k, v in values.items())

    m.log_metrics = log_metrics
    return m


def _fake_tensorboard() -> types.ModuleType:
    """A stand-in for torch.utils.tensorboard: scalars per folder, purge_step dropping steps from it on (as
    TensorBoard reads a folder), and an events file per writer."""
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.folders, tb.writers, tb.fail = {}, [], None

    class SummaryWriter:
        def __init__(self, log_dir=None, comment="", purge_step=None):
            self.log_dir, self.purge_step, self.closed = log_dir, purge_step, False
            events = tb.folders.setdefault(log_dir, [])
            if purge_step is not None:
                events[:] = [e for e in events if e[1] < purge_step]
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / f"events.out.tfevents.{len(tb.writers)}").write_bytes(b"")
            tb.writers.append(self)

        def add_text(self, tag, text, global_step=None):
            tb.folders[self.log_dir].append((f"text:{tag}", global_step))

        def add_scalar(self, tag, value, step):
            tb.folders[self.log_dir].append((tag, step))
            if tb.fail is not None and tb.fail[0] == step:
                raise tb.fail[1]

        def flush(self):
            pass

        def close(self):
            self.closed = True

    tb.SummaryWriter = SummaryWriter
    return tb


@pytest.fixture
def fakes(monkeypatch):
    ml, tb = _fake_mlflow(), _fake_tensorboard()
    monkeypatch.setitem(sys.modules, "mlflow", ml)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    return ml, tb


@pytest.fixture
def task(tmp_path):
    return load_task(_blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=1))


def _steps(events, tag="lr"):
    return [s for t, s in events if t == tag]


def test_a_resumed_run_continues_its_mlflow_run_and_logs_retrained_epochs_again(fakes, task, tmp_path):
    """Killed in epoch 2 after the trackers logged it, checkpointed after epoch 1 (every 3 steps of 2 per epoch):
    the resume continues the same MLflow run, TensorBoard drops the killed run's epoch 2, and the retrained epoch 2
    is logged again (MLflow keeps both; its latest value is history.csv's: it kept the killed run's value)."""
    ml, tb = fakes
    cfg = TrainConfig(epochs=3, batch_size=16, steps_per_epoch=2, checkpoint_every=3, progress=False,
                      log_to=("tensorboard", "mlflow"))
    tb.fail = (2, KeyboardInterrupt())  # the kill lands after both logged epoch 2, before its checkpoint
    with pytest.raises(KeyboardInterrupt):
        run("dan", task, cfg, out=tmp_path / "r")
    assert [r.status for r in ml.runs.values()] == ["KILLED"]  # not FINISHED
    tb.fail = None
    res, _ = run("dan", task, cfg, out=tmp_path / "r")
    assert res.resumed_from_step == 3
    (r,) = ml.runs.values()  # one run: resumed by its id, not a second one
    assert ml.calls[-1][1] == r.info.run_id and r.ends == ["KILLED", "FINISHED"]
    assert _steps(r.metrics) == [1, 2, 2, 3] and _steps(r.metrics, "source_val_acc") == [1, 2, 2, 3]
    history = list(csv.DictReader(open(tmp_path / "r" / "history.csv")))
    latest = {(k, step): v for k, step, v in r.values}
    assert all(latest[(k, int(row["epoch"]))] == pytest.approx(float(row[k]), rel=1e-5)
               for row in history for k in row if k != "epoch")
    assert tb.writers[1].purge_step == 2 and all(w.closed for w in tb.writers)
    assert _steps(tb.folders[str(tmp_path / "r" / "tensorboard")]) == [1, 2, 3]


def test_an_epoch_whose_sending_failed_is_sent_on_the_resume(fakes, task, tmp_path):
    """An epoch was recorded in trackers.json before it was sent: one whose sending failed (a server down) was
    skipped by the resume and lost for good."""
    ml, _ = fakes
    cfg = TrainConfig(epochs=3, batch_size=16, steps_per_epoch=2, progress=False, log_to=("mlflow",))
    ml.fail = (2, ConnectionError("server unreachable"))
    with pytest.raises(ConnectionError):
        run("dan", task, cfg, out=tmp_path / "r")
    run("dan", task, cfg, out=tmp_path / "r")
    (r,) = ml.runs.values()
    assert r.ends == ["FAILED", "FINISHED"] and sorted(set(_steps(r.metrics))) == [1, 2, 3]


def test_a_resume_logs_the_epochs_a_run_without_trackers_checkpointed(fakes, task, tmp_path):
    """Interrupted without --log-to, resumed with it: the checkpoint's epochs are logged too, each once."""
    ml, tb = fakes
    cfg = TrainConfig(epochs=3, batch_size=16, steps_per_epoch=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        _interrupt_after(task, cfg, tmp_path / "r", epochs=2)
    run("dan", task, TrainConfig(**{**cfg.__dict__, "log_to": ("mlflow", "tensorboard")}), out=tmp_path / "r")
    (r,) = ml.runs.values()
    assert _steps(r.metrics) == [1, 2, 3] and r.status == "FINISHED"
    assert _steps(tb.folders[str(tmp_path / "r" / "tensorboard")]) == [1, 2, 3]


def _interrupt_after(task, cfg, out, epochs):
    """Run dan into ``out`` and interrupt it once ``epochs`` epochs are checkpointed."""
    import qianyi.train.engine as engine

    real = engine.Trainer._checkpoint

    def checkpoint(self, ckpt, fingerprint, parts, state):
        real(self, ckpt, fingerprint, parts, state)
        if len(state.history) == epochs:
            raise KeyboardInterrupt

    engine.Trainer._checkpoint = checkpoint
    try:
        run("dan", task, cfg, out=out)
    finally:
        engine.Trainer._checkpoint = real


def test_a_failed_run_ends_failed_and_a_finished_one_is_not_resumed(fakes, task, tmp_path):
    ml, tb = fakes
    cfg = TrainConfig(epochs=2, batch_size=16, steps_per_epoch=2, progress=False, log_to=("mlflow", "tensorboard"))
    tb.fail = (1, RuntimeError("disk gone"))
    with pytest.raises(RuntimeError, match="disk gone"):
        run("dan", task, cfg, out=tmp_path / "r")
    assert [r.status for r in ml.runs.values()] == ["FAILED"]
    tb.fail = None
    run("dan", task, cfg, out=tmp_path / "r")
    # the failed epoch 1 was never checkpointed: retrained, it is logged again (MLflow keeps both values)
    assert [r.status for r in ml.runs.values()] == ["FINISHED"] and _steps(ml.runs["r0"].metrics) == [1, 1, 2]


def test_settings_name_the_backbone_and_its_weights(fakes, task, tmp_path):
    from qianyi.nn.resnet import NamedBackbone
    from qianyi.methods.registry import get_method
    from qianyi.train.run import tracker_params

    ml, _ = fakes
    run("dan", task, TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False, log_to=("mlflow",)))
    (r,) = ml.runs.values()
    assert r.params["backbone"] == "default" and r.params["method"] == "dan" and "weights" not in r.params
    (tmp_path / "r18.pth").write_bytes(b"weights")
    p = tracker_params(get_method("dann"), TrainConfig(), NamedBackbone("resnet18", weights=tmp_path / "r18.pth"))
    assert p["backbone"] == "resnet18" and p["weights"] == "r18.pth"
    assert p["weights_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert tracker_params(get_method("dann"), TrainConfig(), "resnet50")["backbone"] == "resnet50"


def test_an_mlflow_store_that_refuses_is_a_clear_error_and_nothing_stays_open(monkeypatch, capsys, task, tmp_path):
    class MlflowException(Exception):
        pass

    ml, tb = _fake_mlflow(MlflowException("The filesystem tracking backend (e.g., './mlruns') is in maintenance "
                                          "mode.\nSet MLFLOW_ALLOW_FILE_STORE=true")), _fake_tensorboard()
    monkeypatch.setitem(sys.modules, "mlflow", ml)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    cfg = TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False, log_to=("tensorboard", "mlflow"))
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI.*--log-to") as err:
        run("dan", task, cfg, out=tmp_path / "r")
    assert "maintenance mode" in str(err.value) and "\n" not in str(err.value)
    assert all(w.closed for w in tb.writers) and not (tmp_path / "r" / "tensorboard").exists()
    rc, out = _cli(capsys, "run", "dan", "--source", _blobs(tmp_path / "s.npz"), "--target",
                   _blobs(tmp_path / "t.npz", seed=1), *FAST, "--log-to", "tensorboard,mlflow",
                   "--out", str(tmp_path / "c"))
    assert rc == 2 and "qianyi: error: --log-to mlflow" in out and "Traceback" not in out


def test_inside_an_active_mlflow_run_a_nested_run_is_started(fakes, task):
    ml, _ = fakes
    parent = ml.start_run(run_name="mine")
    run("dan", task, TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False, log_to=("mlflow",)))
    assert ml.calls[-1][3] is True and ml.active_run() is parent  # ours ended, the caller's still active
    assert [r.status for r in ml.runs.values()] == ["RUNNING", "FINISHED"]


def test_tensorboard_without_out_writes_a_plain_folder_name(fakes, task, tmp_path, monkeypatch):
    _, tb = fakes
    monkeypatch.chdir(tmp_path)
    run("dan", task, TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False, log_to=("tensorboard",)))
    (w,) = tb.writers
    folder = Path(w.log_dir)
    assert folder.parent == Path("tensorboard") and folder.name.startswith("dan_")
    assert not set(folder.name) & set("> :/"), folder.name


def test_a_reused_run_logs_nothing_and_says_so(fakes, task, tmp_path, capsys):
    ml, _ = fakes
    cfg = TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False)
    run("dan", task, cfg, out=tmp_path / "r")
    capsys.readouterr()
    run("dan", task, TrainConfig(**{**cfg.__dict__, "log_to": ("mlflow",)}), out=tmp_path / "r")
    assert not ml.runs and "nothing is logged to mlflow" in capsys.readouterr().err


def test_a_bench_rerun_says_once_that_its_reused_runs_log_nothing(fakes, tmp_path):
    from qianyi.bench.runner import bench

    ml, _ = fakes
    pairs = [f"{_blobs(tmp_path / 's.npz')}->{_blobs(tmp_path / 't.npz', seed=1)}"]
    cfg = TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False)
    bench(["dan"], pairs, seeds=1, out=tmp_path / "b", config=cfg, log=None, embed=False)
    said: list[str] = []
    bench(["dan"], pairs, seeds=1, out=tmp_path / "b", config=TrainConfig(**{**cfg.__dict__, "log_to": ("mlflow",)}),
          log=said.append, embed=False)
    assert not ml.runs and sum("log nothing to mlflow" in line for line in said) == 1
    assert sum("(done earlier)" in line for line in said) == 3  # source-only, oracle, dan


# -- the real packages, where installed ----------------------------------------------------------------------
def _real(monkeypatch, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    return mlflow


def test_real_packages_resume_into_one_run(monkeypatch, task, tmp_path):
    mlflow = _real(monkeypatch, tmp_path)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import qianyi.train.trackers as trackers

    cfg = TrainConfig(epochs=3, batch_size=16, steps_per_epoch=2, checkpoint_every=3, progress=False,
                      log_to=("tensorboard", "mlflow"))
    real = trackers._TensorBoard._log

    def killed(self, epoch, values):
        real(self, epoch, values)
        if epoch == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(trackers._TensorBoard, "_log", killed)
    with pytest.raises(KeyboardInterrupt):
        run("dan", task, cfg, out=tmp_path / "r")
    client = mlflow.MlflowClient()
    (r,) = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    assert r.info.status == "KILLED"
    monkeypatch.setattr(trackers._TensorBoard, "_log", real)
    run("dan", task, cfg, out=tmp_path / "r")
    (r,) = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    assert r.info.status == "FINISHED" and r.data.params["backbone"] == "default"
    # the killed run's epoch 2 (after its checkpoint) and the retrained one; the later is history.csv's
    cls = sorted(client.get_metric_history(r.info.run_id, "cls"), key=lambda m: (m.step, m.timestamp))
    assert [m.step for m in cls] == [1, 2, 2, 3]
    history = list(csv.DictReader(open(tmp_path / "r" / "history.csv")))
    assert cls[2].value == pytest.approx(float(history[1]["cls"]), rel=1e-5)
    ea = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    ea.Reload()
    assert [e.step for e in ea.Scalars("lr")] == [1, 2, 3]


def test_real_mlflow_refusing_a_file_store_is_a_config_error(monkeypatch, task, tmp_path):
    mlflow = _real(monkeypatch, tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    cfg = TrainConfig(epochs=1, batch_size=16, steps_per_epoch=2, progress=False, log_to=("mlflow",))
    try:
        with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
            run("dan", task, cfg, out=tmp_path / "r")
    finally:
        mlflow.set_tracking_uri(None)

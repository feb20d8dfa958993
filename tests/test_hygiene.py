"""One long Python session (a notebook, a sweep script) calling qianyi many times: what a call leaves behind
(loader workers, a network's modes and device, the caller's random generators, warnings, threads, environment)."""
from __future__ import annotations

import multiprocessing
import os
import random
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import qianyi
from qianyi.data import Domain, TransferTask
from qianyi.errors import OutputError, QianyiWarning
from qianyi.train import TrainConfig

from .conftest import toy_task
from .test_streaming import office_layout

FAST = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=16, progress=False)


# -- 1. an interrupted streamed run: its loader workers, its progress bar, the run folder's lock -------------------
def test_an_interrupted_streamed_run_stops_its_loader_workers_and_the_same_call_runs_again(tmp_path):
    """A step that raised (Ctrl-C in a notebook) left the DataLoader's workers alive while its traceback was kept
    (IPython keeps the last one): they held the run folder's lock, so the same cell failed with "in use by another
    qianyi process" naming the notebook's own pid."""
    from tqdm.auto import tqdm

    root = office_layout(tmp_path / "imgs", per_class=12, size=8)
    task = qianyi.load_task(f"folder:{root}/amazon?size=8&stream=1", f"folder:{root}/webcam?size=8&stream=1")
    calls = {"n": 0}

    class Interrupting(type(qianyi.get_method("source-only"))):
        name = "qy-hygiene-interrupting"

        def training_step(self, ctx):  # noqa: ANN001, ANN202
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # "interrupt kernel" in step 2
            return super().training_step(ctx)

    cfg = TrainConfig(epochs=1, steps_per_epoch=4, batch_size=8, workers=2, progress=False)
    bars = len(getattr(tqdm, "_instances", ()))
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as kept:  # its traceback stays alive, as a notebook keeps it
        qianyi.run(Interrupting(), task, cfg, out=out)
    assert kept.tb is not None
    assert multiprocessing.active_children() == []  # the workers were shut down with the loop
    assert len(getattr(tqdm, "_instances", ())) == bars  # and the bar closed
    res, _ = qianyi.run(Interrupting(), task, cfg, out=out)  # the same cell again: resumes, no lock error
    assert res.history and not multiprocessing.active_children()


def test_a_run_folder_locked_by_this_very_process_says_so(tmp_path):
    """A lock whose owner line names this process was reported as "another qianyi process (pid <own pid>)" with
    "wait for it to finish": waiting never helps."""
    import fcntl

    from qianyi.train import rundir as R

    out = tmp_path / "run"
    out.mkdir()
    fh = open(out / R.LOCK_FILE, "a+")  # another open file of this process: what its forked loader workers share
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(f"pid {os.getpid()} on {R._HOST} {R._pid_namespace()}\n")
    fh.flush()
    try:
        with pytest.raises(OutputError) as err:
            with R.hold(out):
                pass
        msg = str(err.value)
        assert "held by this process" in msg and "another qianyi process" not in msg and "wait for it" not in msg
        assert "restart" in msg and "another --out" in msg
        assert getattr(err.value, "owner", None) is None  # not turned into "being trained by another process"
    finally:
        fh.close()


# -- 2. a caller's network: its modes and its device --------------------------------------------------------------
def _modes(net: torch.nn.Module) -> dict[str, bool]:
    return {name: sub.training for name, sub in net.named_modules()}


@pytest.fixture(scope="module")
def fine_tuned():
    """A trained network in training mode with its first group frozen (eval mode), as fine-tuning leaves it."""
    task = qianyi.load_task("digits", "digits+rot30", max_samples=200)
    _, fit = qianyi.run("source-only", task, FAST)
    return task, fit.model


def _half_frozen(net: torch.nn.Module) -> dict[str, bool]:
    net.train()
    net.groups[net.group_names[0]].eval()
    return _modes(net)


def test_advise_gives_the_callers_network_its_modes_back(fine_tuned):
    from qianyi.measure import advise

    task, net = fine_tuned
    before = _half_frozen(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        advise(task, model=net, samples=60, permutations=10, log=None)
    assert _modes(net) == before


def test_extract_keeps_a_frozen_groups_eval_mode(fine_tuned):
    from qianyi.nn.features import extract

    task, net = fine_tuned
    before = _half_frozen(net)
    assert not net.groups[net.group_names[0]].training and net.training
    extract(task.target, net, progress=False)
    assert _modes(net) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="moving a network to another device needs CUDA")
def test_extract_leaves_the_network_on_its_device(fine_tuned):
    from qianyi.nn.features import extract

    task, net = fine_tuned
    net.cpu()
    extract(task.target, net, progress=False, device="cuda")
    assert {p.device.type for p in net.parameters()} == {"cpu"}


# -- 3. the caller's global random generators --------------------------------------------------------------------
def _rng_after(call) -> tuple:  # noqa: ANN001
    """The caller's next draws after ``call``, each generator seeded before it."""
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        call()
    return random.random(), float(np.random.random()), torch.rand(3).tolist()


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("so")
    task = qianyi.load_task("digits", "digits+rot30", max_samples=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        qianyi.run("source-only", task, FAST, out=out)
    return out, task


def test_load_model_leaves_the_callers_random_generators_as_they_were(saved_run):
    out, _ = saved_run
    assert _rng_after(lambda: qianyi.load_model(out)) == _rng_after(lambda: None)


def test_load_model_initialises_no_weights_that_model_pt_overwrites(saved_run, monkeypatch):
    """The network is sized on the meta device and takes model.pt's tensors (MiniLM's random 30522 x 384
    embedding cost about a second per load); its predictions are those of the network as trained."""
    out, task = saved_run
    before = qianyi.load_model(out).predict_proba(task.target.X[:20])
    real = []

    def counted(init):
        def wrapper(tensor, *a, **k):
            if not tensor.is_meta:
                real.append(tuple(tensor.shape))
            return init(tensor, *a, **k)
        return wrapper

    for name in ("kaiming_uniform_", "uniform_", "normal_", "xavier_uniform_"):
        monkeypatch.setattr(torch.nn.init, name, counted(getattr(torch.nn.init, name)))
    model = qianyi.load_model(out)
    assert real == []
    assert not any(t.is_meta for t in (*model.network.parameters(), *model.network.buffers()))
    np.testing.assert_array_equal(model.predict_proba(task.target.X[:20]), before)


def test_reports_leave_the_callers_random_generators_as_they_were(saved_run, tmp_path):
    from qianyi.bench.run_report import write_run_report

    out, task = saved_run
    untouched = _rng_after(lambda: None)
    assert _rng_after(lambda: write_run_report(out, task=task, out=tmp_path / "rr", embed=False)) == untouched


def test_bench_and_its_html_report_leave_the_callers_random_generators_as_they_were(tmp_path):
    from qianyi.bench import bench
    from qianyi.bench.html import write_report

    untouched = _rng_after(lambda: None)
    made = []
    assert _rng_after(lambda: made.append(bench(["dan"], ["digits->digits+rot30@100"], seeds=1, out=tmp_path,
                                                config=FAST, log=None, embed=False))) == untouched
    assert _rng_after(lambda: write_report(made[0], tmp_path, log=None)) == untouched  # with its t-SNE figures


def test_layer_transferability_leaves_the_callers_random_generators_as_they_were():
    from qianyi.measure import layer_transferability, similar_pair

    pair = similar_pair(qianyi.load_domain("digits"), max_train=100)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False)
    assert _rng_after(lambda: layer_transferability([pair], ks=(1,), seeds=1, config=cfg, log=None)) == \
        _rng_after(lambda: None)


def test_translate_domain_leaves_the_callers_random_generators_as_they_were(tmp_path):
    from qianyi.train.translate import translate_domain

    from .test_generative import CFG, SMALL, image_task

    task = image_task()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        qianyi.run("cycada", task, TrainConfig(**CFG), out=tmp_path / "cyc", **SMALL)
    np.savez(tmp_path / "images.npz", X=task.target_test.X, y=task.target_test.y)
    assert _rng_after(lambda: translate_domain(tmp_path / "cyc", f"npz:{tmp_path / 'images.npz'}")) == \
        _rng_after(lambda: None)


# -- 4. the same health warning from several runs of one process -----------------------------------------------------
def _constant_target_task() -> TransferTask:
    """The target is one point repeated: the network gives it one class, at chance level (warned every run)."""
    src = toy_task(n=120, d=4, classes=3)
    Xt = np.zeros((120, 4), np.float32)
    yt = np.arange(120) % 3
    return TransferTask.from_domains(src.source, Domain(Xt, yt, "constant"), seed=0)


def test_each_runs_health_warnings_are_shown_in_a_loop_over_seeds(tmp_path):
    """They named the method and pair only, and were attributed to qianyi's own line: Python's default filter
    (once per text and place) dropped every later seed's warnings."""
    task = _constant_target_task()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own default: once per text and place
        for seed in (0, 1):
            qianyi.run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, seed=seed,
                                                        progress=False))
        qianyi.run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False),
                   out=tmp_path / "r")
    chance = [w for w in caught if issubclass(w.category, QianyiWarning) and "chance level" in str(w.message)]
    assert len(chance) == 3, [str(w.message) for w in caught]
    assert "seed 0" in str(chance[0].message) and "seed 1" in str(chance[1].message)
    assert str(tmp_path / "r") in str(chance[2].message)  # the folder, when there is one
    assert {Path(w.filename).resolve() for w in chance} == {Path(__file__).resolve()}  # the caller's line


def test_a_bench_run_warns_at_the_callers_line_through_qianyi_decorators(tmp_path):
    """bench is wrapped in caller_rng_kept (contextlib's decorator): its runs' warnings were attributed to
    contextlib.py, the first frame outside qianyi's files."""
    from qianyi.bench import bench

    task = _constant_target_task()
    for name, d in (("s", task.source), ("t", task.target)):
        np.savez(tmp_path / f"{name}.npz", X=d.X, y=d.y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench(["source-only"], [f"npz:{tmp_path / 's.npz'}->npz:{tmp_path / 't.npz'}"], seeds=1,
              out=tmp_path / "b", config=TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False),
              log=None, embed=False)
    chance = [w for w in caught if issubclass(w.category, QianyiWarning) and "chance level" in str(w.message)]
    assert chance and {Path(w.filename).resolve() for w in chance} == {Path(__file__).resolve()}, \
        [(w.filename, str(w.message)[:80]) for w in caught]


# -- 5. cli.main in-process: --threads -----------------------------------------------------------------------------
def test_cli_main_in_process_gives_the_thread_count_back(tmp_path, capsys):
    from qianyi.cli import main

    torch.set_num_threads(1)
    assert main(["run", "source-only", "--source", "digits", "--target", "digits+rot30", "--epochs", "1",
                 "--steps-per-epoch", "2", "--max-samples", "100", "--no-progress", "--threads", "2",
                 "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert torch.get_num_threads() == 1


# -- 6. deterministic=True: the environment --------------------------------------------------------------------------
@pytest.mark.parametrize("before", [None, ":16:8"])
def test_a_deterministic_run_gives_the_cublas_setting_back(monkeypatch, before):
    task = toy_task(n=60)
    if before is None:
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    else:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", before)
    from qianyi.train.engine import deterministic_kernels

    with deterministic_kernels(True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == (before or ":4096:8")
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        qianyi.run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, deterministic=True,
                                                    progress=False))
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == before


# -- 7. a staged run without out= ---------------------------------------------------------------------------------
def test_a_staged_run_without_out_records_no_deleted_path():
    task = toy_task(n=90)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        res, _ = qianyi.run("self-train", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16,
                                                            progress=False))
    assert res.staged and res.staged["stages"][0]["name"] == "source"  # it did start from a source stage
    assert res.config["init_from"] is None  # as asked (the fingerprint too), not a removed temporary file
    assert not [p for p in re.findall(r"'(/[^']+\.pt)'", repr(res.__dict__)) if not Path(p).exists()]

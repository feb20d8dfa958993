"""Memory and noise of bench and select outside training: one pair's task held at a time, no PyTorch warnings."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from .conftest import requires_data


@pytest.mark.parametrize("pair", [("digits", "digits+rot30"), ("digits", "digits+blur1.5"),
                                  pytest.param(("mnist", "mnist+rot30"), marks=requires_data("mnist"))])
def test_a_rotated_or_blurred_builtin_loads_without_pytorchs_not_writable_warning(pair):
    # rotate() and blur() handed the read-only cached array to torch.from_numpy: "The given NumPy array is not writable" once
    # per bench (PyTorch says it once per process: a fresh one here)
    code = ("import warnings, numpy as np; warnings.simplefilter('always')\n"
            "from qianyi.data.tasks import load_task\n"
            f"t = load_task({pair[0]!r}, {pair[1]!r}, max_samples=200)\n"
            "print(float(np.asarray(t.target.X).sum()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not writable" not in done.stderr
    assert float(done.stdout.split()[-1]) > 0  # the images were rotated, not lost


def _live_tasks_at_each_run(monkeypatch, module) -> list[int]:
    """Patch ``module``'s load_task and run: each run records how many tasks that load_task read are still alive."""
    import gc
    import weakref

    from qianyi.data.tasks import load_task

    read, alive = [], []

    def loading(*args, **kwargs):
        task = load_task(*args, **kwargs)
        read.append(weakref.ref(task))
        return task

    real_run = module.run

    def running(*args, **kwargs):
        gc.collect()
        alive.append(sum(r() is not None for r in read))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(module, "load_task", loading)
    monkeypatch.setattr(module, "run", running)
    return alive


PAIRS = ["digits->digits+rot30@150", "digits->digits+blur1@150", "digits->digits+invert@150"]


def test_bench_holds_one_pairs_task_at_a_time_and_reuses_its_runs(monkeypatch, tmp_path):
    # every pair's task was kept from the check before training to the end of the bench: the peak memory was the
    # sum over pairs (12 Amazon pairs: each one's raw texts, word ids and WordPiece ids), not the largest pair's
    import qianyi.bench.runner as runner
    from qianyi.train.config import TrainConfig

    alive = _live_tasks_at_each_run(monkeypatch, runner)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    res = runner.bench(["source-only"], PAIRS, seeds=1, out=tmp_path / "b", config=cfg, log=None, embed=False)
    assert len(alive) == 2 * len(PAIRS) and max(alive) == 1, alive  # (source-only and the oracle per pair)
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("a finished run trained again"))
    again = runner.bench(["source-only"], PAIRS, seeds=1, out=tmp_path / "b", config=cfg, log=None, embed=False)
    assert [r.fingerprint for r in again.runs] == [r.fingerprint for r in res.runs]  # the same data read again


def test_select_holds_one_pairs_task_at_a_time(monkeypatch, tmp_path):
    import qianyi.bench.selection as selection
    from qianyi.train.config import TrainConfig

    alive = _live_tasks_at_each_run(monkeypatch, selection)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    selection.select_hparams("source-only", PAIRS, "source-val", grid=[{"lr": 1e-3}, {"lr": 1e-2}], config=cfg,
                             out=tmp_path / "s", log=None)
    assert len(alive) == 2 * len(PAIRS) and max(alive) == 1, alive


def _blobs(path, n: int, shift: float, seed: int, extra=None) -> str:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = (rng.normal(0, 1, (n, 5)) + 3 * np.eye(3, 5)[y] + shift).astype(np.float32)
    if extra is not None:
        X, y = np.concatenate([X, extra[0]]), np.concatenate([y, extra[1]])
    np.savez(path, X=X, y=y)
    return f"npz:{path}"


def test_a_pair_read_again_says_its_warnings_once_and_refuses_data_changed_since(monkeypatch, tmp_path):
    import qianyi.bench.runner as runner
    from qianyi.errors import DataError, QianyiWarning
    from qianyi.train.config import TrainConfig

    s, t = _blobs(tmp_path / "s.npz", 90, 0.0, 0), _blobs(tmp_path / "t.npz", 90, 0.5, 1)
    with np.load(tmp_path / "s.npz") as z:  # one source sample in the target test set: a warning on each read
        test = _blobs(tmp_path / "q.npz", 60, 0.5, 2, extra=(z["X"][:1], z["y"][:1]))
    t2 = _blobs(tmp_path / "t2.npz", 90, 1.0, 3)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False)
    pairs = [f"{s}->{t}", f"{s}->{t2}"]
    with pytest.warns(QianyiWarning) as said:
        runner.bench(["source-only"], pairs, seeds=1, out=tmp_path / "b", config=cfg, log=None, embed=False,
                     target_tests=[test, None])
    assert sum("identical to samples in the labelled source" in str(w.message) for w in said) == 1

    real_run = runner.run

    def edit_then_run(*args, **kwargs):  # the second pair's target file edited while the first pair trains
        _blobs(tmp_path / "t2.npz", 90, 2.0, 4)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runner, "run", edit_then_run)
    with pytest.raises(DataError, match=r"t2\.npz.* is not the data .* checked .*changed since"):
        runner.bench(["source-only"], pairs, seeds=1, out=tmp_path / "c", config=cfg, log=None, embed=False)

    def delete_then_run(*args, **kwargs):  # the second pair's target file deleted while the first pair trains
        (tmp_path / "t2.npz").unlink(missing_ok=True)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(runner, "run", delete_then_run)
    with pytest.raises(DataError, match=r"t2\.npz.* could not be read again .*keep them in place"):
        runner.bench(["source-only"], pairs, seeds=1, out=tmp_path / "d", config=cfg, log=None, embed=False)

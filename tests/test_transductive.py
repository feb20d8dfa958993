"""A target test split whose samples the target also trains on (``--target T --target-test T``, the transductive
protocol, or a test file that shares rows with the target): the target's labels are then its test set's, so they
are dropped before anything trains (no oracle), and the run says it is transductive."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qianyi
from qianyi import load_task
from qianyi.bench import bench
from qianyi.errors import DataError, QianyiWarning
from qianyi.train.config import TrainConfig
from qianyi.train.result import RunResult

from .conftest import DATA

FAST = TrainConfig(epochs=8, batch_size=32, seed=0, progress=False)


def _csv(path: Path, X: np.ndarray, y: np.ndarray) -> str:
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    df["label"] = y
    df.to_csv(path, index=False)
    return f"csv:{path}"


@pytest.fixture()
def noise(tmp_path: Path) -> dict[str, str]:
    """Gaussian inputs with coin-flip labels: no network can score above chance on held-out rows, so a score
    near 100% is a memory of the test labels. ``part``: 30 of the target's rows and 30 rows of its own."""
    rng = np.random.default_rng(3)
    Xt, yt = rng.normal(size=(120, 10)).round(5), rng.integers(0, 2, 120)
    Xo, yo = rng.normal(size=(30, 10)).round(5), rng.integers(0, 2, 30)
    return {"s": _csv(tmp_path / "s.csv", rng.normal(size=(200, 10)).round(5), rng.integers(0, 2, 200)),
            "t": _csv(tmp_path / "t.csv", Xt, yt),
            "sub": _csv(tmp_path / "sub.csv", Xt[80:], yt[80:]),  # 40 of the target's rows
            "part": _csv(tmp_path / "part.csv", np.r_[Xt[:30], Xo], np.r_[yt[:30], yo])}


def test_the_transductive_protocol_drops_the_targets_labels_so_no_oracle_trains_on_its_test_labels(noise):
    task = load_task(noise["s"], noise["t"], target_test=noise["t"])
    assert task.target.y is None and task.test_in_target == 120 and len(task.target) == len(task.target_test) == 120
    assert "target 120 train (unlabelled; holds 120 of the 120 test samples: transductive) + 120 test" \
        in task.describe()
    with pytest.raises(DataError, match=r"oracle trains on target labels, but the target's labels are those of its "
                                        r"test set \(120 of the 120 .*transductive.*leave out --target-test"):
        qianyi.run("oracle", task, FAST)
    with pytest.raises(DataError, match="transductive"):
        qianyi.run("mult", task, FAST)
    # a test file that is part of the target (40 of its 120 rows): every test sample is in the target
    sub = load_task(noise["s"], noise["t"], target_test=noise["sub"])
    assert sub.target.y is None and sub.test_in_target == 40
    with pytest.raises(DataError, match="transductive"):
        qianyi.run("oracle", sub, FAST)


def test_a_partial_overlap_is_warned_about_and_drops_the_targets_labels(noise):
    with pytest.warns(QianyiWarning, match=r"30 of the 60 target test samples are also among the target's training "
                                           r"samples.*likely a mistake"):
        task = load_task(noise["s"], noise["t"], target_test=noise["part"])
    assert task.target.y is None and task.test_in_target == 30
    assert "holds 30 of the 60 test samples: partly transductive" in task.describe()
    with pytest.raises(DataError, match="30 of the 60"):
        qianyi.run("oracle", task, FAST)


@pytest.mark.filterwarnings("ignore:.*at chance level")  # (coin-flip labels)
def test_unsupervised_methods_still_train_transductively_and_record_it(noise, tmp_path):
    task = load_task(noise["s"], noise["t"], target_test=noise["t"])
    res, _ = qianyi.run("dan", task, TrainConfig(epochs=1, seed=0, progress=False), out=tmp_path / "run")
    assert res.test_in_target == 120 and res.n_target_train == 120
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["test_in_target"] == 120
    assert "[transductive: 120 of the 120 test samples were training inputs]" in res.summary()
    from qianyi.bench.run_report import _summary

    assert "transductive: 120 of the test samples were target training inputs" in _summary(res, {})
    old = {k: v for k, v in saved.items() if k != "test_in_target"}  # a result.json written before the field
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert RunResult.read(tmp_path / "old.json").test_in_target == 0


@pytest.mark.filterwarnings("ignore:.*at chance level")  # (coin-flip labels)
def test_bench_skips_the_oracle_of_a_transductive_pair_and_says_why(noise, tmp_path):
    said: list[str] = []
    res = bench(["dan"], [(noise["s"], noise["t"])], seeds=1, target_tests=[noise["t"]],
                       config=TrainConfig(epochs=1, progress=False), out=tmp_path / "b", log=said.append,
                       embed=False)
    skipped = [s for s in said if "oracle: skipped" in s]
    assert len(skipped) == 1 and "transductive" in skipped[0] and "120 of the 120" in skipped[0], said
    assert not any(r.oracle for r in res.runs) and all(r.test_in_target == 120 for r in res.runs)
    md = (tmp_path / "b" / "results.md").read_text()
    assert "Transductive:" in md and "the oracle was skipped" in md


def test_a_held_out_target_test_keeps_the_targets_labels_and_the_oracle(tmp_path):
    rng = np.random.default_rng(1)  # (the data of the content hash below: keep it as it is)
    s = _csv(tmp_path / "s.csv", rng.normal(size=(120, 6)).round(4), np.arange(120) % 2)
    t = _csv(tmp_path / "t.csv", rng.normal(size=(80, 6)).round(4), np.arange(80) % 2)
    tt = _csv(tmp_path / "tt.csv", rng.normal(size=(60, 6)).round(4), np.arange(60) % 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        task = load_task(s, t, target_test=tt)
    assert task.test_in_target == 0 and task.target.y is not None
    assert "target 80 train (unlabelled) + 60 test" in task.describe()
    assert task.content_hash() == "6880400670f7f953"  # as before the check: finished runs are reused
    res, _ = qianyi.run("oracle", task, TrainConfig(epochs=1, seed=0, progress=False))
    assert res.oracle and res.test_in_target == 0 and "transductive" not in res.summary()


def test_shifted_copies_of_the_targets_samples_count_as_its_samples(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "a.npz", X=X[:900].reshape(-1, 8, 8), y=y[:900])
    np.savez(tmp_path / "b.npz", X=X[900:].reshape(-1, 8, 8), y=y[900:])
    a, b = f"npz:{tmp_path / 'a.npz'}", f"npz:{tmp_path / 'b.npz'}"
    task = load_task(a, b, target_test=b + "+rot30")  # the target's images, rotated
    assert task.target.y is None and task.test_in_target == len(task.target_test) == 897


def test_streamed_folders_are_compared_by_their_files_and_unlike_sides_are_said_not_compared(tmp_path):
    from .test_streaming import office_layout

    root = office_layout(tmp_path, per_class=8)
    s, t = f"folder:{root}/amazon?size=16&stream=1", f"folder:{root}/webcam?size=16&stream=1"
    task = load_task(s, t, target_test=t)
    assert task.target.y is None and task.test_in_target == len(task.target_test) == 32
    with pytest.warns(QianyiWarning, match=r"the target test split and the target .* are not both streamed"):
        held = load_task(s, t, target_test=f"folder:{root}/webcam?size=16")
    assert held.test_in_target == 0 and held.target.y is not None  # (not compared: nothing to drop)


def test_a_task_built_in_python_with_its_target_as_test_set_is_refused_for_the_oracle():
    """(review diff10) TransferTask.from_domains(target_test=target) kept the target's labels, which load_task drops:
    the oracle trained on the labels it was scored on. The engine refuses; a method that reads no target label runs."""
    import numpy as np
    import pytest
    import qianyi
    from qianyi.data import Domain, TransferTask
    from qianyi.errors import DataError

    rng = np.random.default_rng(0)
    s = Domain(rng.normal(size=(90, 5)).astype(np.float32), rng.integers(0, 2, 90), "s")
    t = Domain(rng.normal(size=(60, 5)).astype(np.float32), rng.integers(0, 2, 60), "t")
    task = TransferTask.from_domains(s, t, target_test=t)
    cfg = qianyi.TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    with pytest.raises(DataError, match="60 of the 60 target test samples .* are also target training samples"):
        qianyi.run("oracle", task, cfg)
    qianyi.run("dann", task, cfg)
    other = Domain(rng.normal(size=(30, 5)).astype(np.float32), rng.integers(0, 2, 30), "u")
    qianyi.run("oracle", TransferTask.from_domains(s, t, target_test=other), cfg)  # other samples: trains


def test_a_target_capped_inside_its_test_set_is_transductive_whatever_its_share(tmp_path):
    """(review diff10) --max-samples caps the target, not --target-test: a target of 20 rows inside a test set of
    1000 (2%) was not flagged, so the oracle trained on 20 test labels; one of 40 in 120 was 'partly transductive'
    with the advice to pass the target as --target-test, which was given. Judged against the smaller side, both
    are transductive, and the warning says the target lies inside the test set, capped by --max-samples."""
    rng = np.random.default_rng(4)
    s = _csv(tmp_path / "s.csv", rng.normal(size=(200, 10)).round(5), rng.integers(0, 2, 200))
    big = _csv(tmp_path / "big.csv", rng.normal(size=(1000, 10)).round(5), rng.integers(0, 2, 1000))
    for cap in (20, 400):
        with pytest.warns(QianyiWarning, match=rf"the target's {cap} training samples .* all lie in its test set of "
                                               rf"1000 samples \(--max-samples {cap} caps the target, not the "
                                               r"--target-test.*leave out --max-samples"):
            task = load_task(s, big, target_test=big, max_samples=cap)
        assert task.target.y is None and task.test_in_target == cap and len(task.target_test) == 1000
        assert f"holds {cap} of the 1000 test samples: transductive)" in task.describe()
        with pytest.raises(DataError, match="transductive"):
            qianyi.run("oracle", task, FAST)


@pytest.mark.skipif(not (DATA / "bank-marketing").is_dir(), reason="bank-marketing data absent (set QIANYI_DATA)")
def test_held_out_splits_of_recurring_rows_are_not_transductive():
    """(review diff11) A split load_task makes itself is disjoint rows: a held-out split of bank segments (numeric
    columns only: rows recur) was called partly transductive, its labels dropped and the oracle refused."""
    import qianyi

    B = DATA / "bank-marketing" / "bank-additional-full.csv"
    P = "drop=duration,month,day_of_week,poutcome,default,education,marital,job,housing,loan,contact"
    task = qianyi.load_task(f"csv:{B}?{P}&where=month:jun", f"csv:{B}?{P}&where=month:jul", max_samples=400)
    assert task.test_in_target == 0 and task.target.y is not None
    from qianyi.train.engine import TrainData

    TrainData.from_task(task, with_target_labels=True, method="oracle")  # not refused


@pytest.mark.skipif(not (DATA / "amazon-dann-svmlight").is_dir(), reason="amazon-dann-svmlight data absent")
def test_a_capped_target_against_its_separate_test_file_keeps_its_labels():
    """(review diff11) DANN's train/test files share a few duplicate reviews; with --max-samples capping the target,
    the smaller-side judgement called them transductive and dropped the target's labels."""
    D, F = DATA / "amazon-dann-svmlight", "?n_features=5000"
    task = qianyi.load_task(f"svmlight:{D}/books_train.svmlight{F}", f"svmlight:{D}/kitchen_train.svmlight{F}",
                            target_test=f"svmlight:{D}/kitchen_test.svmlight{F}", max_samples=300)
    assert task.test_in_target == 0 and task.target.y is not None

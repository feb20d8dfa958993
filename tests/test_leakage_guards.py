"""Guards against target-label leakage and mislabelled data (review mutation3): each test fails on a plausible
bug in the checks that decide whether a task is transductive, whether CSV row filters share rows, whether an
--init-from model may have seen this target, and whether class names were sorted from text."""
import numpy as np
import pandas as pd
import pytest

import qianyi
from qianyi.data import Domain, TransferTask
from qianyi.errors import DataError, LabelMismatchError, QianyiWarning


def _csv(path, X, y):
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    df["label"] = y
    df.to_csv(path, index=False)
    return f"csv:{path}"


def test_row_filters_on_other_columns_or_overlapping_values_are_not_disjoint():  # D1, D2
    from qianyi.data.tasks import _csv_rows_disjoint
    B = "csv:/d/b.csv"
    assert not _csv_rows_disjoint(f"{B}?where=month:jun", f"{B}?where=day:mon")  # other columns: June Mondays in both
    assert not _csv_rows_disjoint(f"{B}?where=month:jun,jul", f"{B}?where_not=month:jun")  # July in both
    assert _csv_rows_disjoint(f"{B}?where=month:jun,jul", f"{B}?where_not=month:jun,jul,aug")
    assert _csv_rows_disjoint(f"{B}?where=month:jun", f"{B}?where=month:jul")


def test_the_inside_share_boundary(tmp_path):  # T1, T2
    rng = np.random.default_rng(0)
    s = _csv(tmp_path / "s.csv", rng.normal(size=(300, 6)).round(5), rng.integers(0, 2, 300))
    Xt, yt = rng.normal(size=(100, 6)).round(5), rng.integers(0, 2, 100)
    t = _csv(tmp_path / "t.csv", Xt, yt)
    got = {}
    for k in (80, 95):
        tt = _csv(tmp_path / f"tt{k}.csv", np.r_[Xt[:k], rng.normal(size=(2000 - k, 6)).round(5)],
                  np.r_[yt[:k], rng.integers(0, 2, 2000 - k)])
        with pytest.warns(QianyiWarning):
            got[k] = qianyi.load_task(s, t, target_test=tt).test_in_target
    assert got == {80: 0, 95: 95}


def test_a_capped_target_of_few_valued_rows_against_an_independent_test_file_keeps_its_labels(tmp_path):  # T3
    rng = np.random.default_rng(0)
    def few(name, n):
        X = rng.integers(0, 2, (n, 4))
        return _csv(tmp_path / name, X, (X.sum(1) > 2).astype(int))
    s, t, tt = few("s.csv", 500), few("t.csv", 2000), few("tt.csv", 2000)
    with pytest.warns(Warning):
        task = qianyi.load_task(s, t, target_test=tt, max_samples=100)
    assert task.test_in_target == 0 and task.target.y is not None


def test_independent_small_test_sets_of_recurring_rows_are_not_transductive():  # T4
    from qianyi.data.tasks import _row_keys, _shared, transductive
    called = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        test, target = (rng.integers(0, 2, (n, 8)).astype(np.float32) for n in (100, 400))
        called += transductive(_shared(_row_keys(test), _row_keys(target)), 100, 400)
    assert called == 0


def test_engine_refuses_an_oracle_whose_target_lies_inside_a_larger_test_set():  # E1
    rng = np.random.default_rng(0)
    s = Domain(rng.normal(size=(200, 5)).astype(np.float32), rng.integers(0, 2, 200), "s")
    big = Domain(rng.normal(size=(300, 5)).astype(np.float32), rng.integers(0, 2, 300), "t")
    task = TransferTask.from_domains(s, big.subset(np.arange(60)), target_test=big)
    from qianyi.train.engine import TrainData
    with pytest.raises(DataError, match="60 of the 300"):
        TrainData.from_task(task, with_target_labels=True, method="oracle")


def test_decimal_comma_refuses_a_dotted_thousands_number_without_decimals(tmp_path):  # R1
    from qianyi.data.readers import read_csv
    p = tmp_path / "eu.csv"
    p.write_text("einkommen;gewicht;label\n1.234;69,6;a\n2.500;72,1;b\n")
    with pytest.raises(DataError, match="thousands separator"):
        read_csv(p, decimal=",")


@pytest.mark.parametrize("stream", ["", "&stream=1"])
def test_folder_class_names_are_sorted_names_refused_against_indices(tmp_path, stream):  # S2, S5
    from PIL import Image
    for w in ("zero", "one", "two"):
        (tmp_path / "f" / w).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 9 * i, np.uint8)).save(tmp_path / "f" / w / f"{i}.png")
    d = qianyi.load_domain(f"folder:{tmp_path / 'f'}?size=8{stream}")
    assert d.sorted_names
    np.savez(tmp_path / "i.npz", X=np.zeros((9, 1, 8, 8), np.float32), y=np.arange(9) % 3)
    with pytest.raises(LabelMismatchError, match="unnamed class indices"):
        qianyi.load_task(f"folder:{tmp_path / 'f'}?size=8{stream}", f"npz:{tmp_path / 'i.npz'}")


def test_a_model_json_describing_another_file_is_not_applied(tmp_path):  # W8
    import shutil
    from qianyi.train.weights import starting_model_record
    rng = np.random.default_rng(0)
    s = Domain(rng.normal(size=(120, 6)).astype(np.float32), rng.integers(0, 3, 120), "s")
    t = Domain(rng.normal(size=(120, 6)).astype(np.float32), rng.integers(0, 3, 120), "t")
    cfg = qianyi.TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    qianyi.run("oracle", TransferTask.from_domains(s, t), cfg, out=tmp_path / "orc")
    torch_file = tmp_path / "orc" / "other.pt"
    shutil.copy(tmp_path / "orc" / "model.pt", torch_file)
    with open(torch_file, "ab") as f:
        f.write(b"\0")  # another file's bytes
    assert "init_from_method" not in starting_model_record(torch_file)


def test_recurring_rows_are_not_called_too_few_duplicates(tmp_path):
    """Data whose rows all recur within each side: the test samples equal to target rows are not 'too few to
    call the task transductive' (they may be all of them); the warning says they cannot be told apart."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (400, 2))
    s = _csv(tmp_path / "s.csv", X, X[:, 0])
    t = _csv(tmp_path / "t.csv", X[:200], X[:200, 0])
    tt = _csv(tmp_path / "tt.csv", X[200:], X[200:, 0])
    with pytest.warns(QianyiWarning, match="recurs within its side") as caught:
        qianyi.load_task(s, t, target_test=tt)
    assert not any("too few to call" in str(w.message) for w in caught)

"""Vector data: the svmlight and mat readers, standardisation fitted without labels on source+target
training inputs and re-applied by `prepare` / `qianyi predict`, and the vector defaults."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qianyi.data import load_domain, load_task
from qianyi.data.tasks import fit_vector_preprocessing, prepare, transform_vectors
from qianyi.errors import DataError, DatasetNotFoundError, UnknownNameError

from .conftest import requires_data
from .test_hostile import FAST, _cli


def _svm(path, X, y) -> str:
    """Write SVMlight text with 0-based indices (zeros left out)."""
    lines = []
    for row, label in zip(X, y):
        cells = " ".join(f"{j}:{v:g}" for j, v in enumerate(row) if v)
        lines.append(f"{label} {cells}".rstrip())
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _counts(n: int, d: int, seed: int, shift: float = 0.0):
    """Sparse bag-of-words-like counts; class 1 uses the first half of the vocabulary more."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(n) % 2 == 0, -1, 1)
    rate = np.full((n, d), 0.3)
    rate[y == 1, : d // 2] += 0.5
    rate[y == -1, d // 2:] += 0.5
    rate[:, :3] += shift  # the target uses a few words more often
    return rng.poisson(rate * (rng.random((n, d)) < 0.4)).astype(float), y


def test_svmlight_labels_width_and_options(tmp_path):
    X = np.array([[0, 2, 0, 1], [3, 0, 0, 0], [0, 0, 5, 0]], float)
    f = _svm(tmp_path / "a.svmlight", X, [1, -1, 1])
    d = load_domain(f"svmlight:{f}")  # derived width: largest index + 1
    assert d.X.shape == (3, 4) and d.class_names == ("negative", "positive") and d.y.tolist() == [1, 0, 1]
    d = load_domain(f"svmlight:{f}?n_features=6&name=books")
    assert d.X.shape == (3, 6) and d.X.dtype == np.float32 and d.name == "books"
    np.testing.assert_array_equal(d.X[:, :4], X)  # 0-based: "1:2" is column 1
    g = _svm(tmp_path / "one.svmlight", X[:2], [1, 1])
    assert load_domain(f"svmlight:{g}").class_names == ("negative", "positive")  # both, so files agree
    m = _svm(tmp_path / "multi.svmlight", X, [3, 7, 3])
    d = load_domain(f"svmlight:{m}")
    assert d.class_names == ("3", "7") and d.y.tolist() == [0, 1, 0]
    with pytest.raises(UnknownNameError, match="no option 'size'"):
        load_domain(f"svmlight:{f}?size=3")


def test_svmlight_bad_files_name_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "bad.svmlight"
    bad.write_text("1 0:1 x:y\n")
    with pytest.raises(DataError, match="bad.svmlight"):
        load_domain(f"svmlight:{bad}")
    f = _svm(tmp_path / "wide.svmlight", np.eye(3, 8)[:, ::-1], [1, -1, 1])
    with pytest.raises(DataError, match="wide.svmlight"):
        load_domain(f"svmlight:{f}?n_features=4")  # index 7 >= 4
    with pytest.raises(DataError, match="whole number"):
        load_domain(f"svmlight:{f}?n_features=0")
    (tmp_path / "empty.svmlight").write_text("")
    with pytest.raises(DataError, match="empty.svmlight"):
        load_domain(f"svmlight:{tmp_path / 'empty.svmlight'}")
    (tmp_path / "reg.svmlight").write_text("0.5 0:1\n1.5 1:1\n")
    with pytest.raises(DataError, match="whole numbers"):
        load_domain(f"svmlight:{tmp_path / 'reg.svmlight'}")
    (tmp_path / "huge.svmlight").write_text("1 0:1\n-1 999999999:1\n")  # 2 x 1e9 dense: refused before densifying
    with pytest.raises(DataError, match="QIANYI_MAX_BYTES"):
        load_domain(f"svmlight:{tmp_path / 'huge.svmlight'}")
    monkeypatch.setenv("QIANYI_MAX_BYTES", "40")
    with pytest.raises(DataError, match="QIANYI_MAX_BYTES"):
        load_domain(f"svmlight:{f}")  # 3 x 8 float32 = 96 bytes
    with pytest.raises(DatasetNotFoundError):
        load_domain(f"svmlight:{tmp_path / 'missing.svmlight'}")


def test_mat_reader(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    scipy.io.savemat(tmp_path / "a.mat", {"fts": rng.integers(0, 5, (12, 7)).astype(np.uint8),
                                          "labels": (np.arange(12) % 3 + 1)[:, None].astype(np.uint8)})
    d = load_domain(f"mat:{tmp_path / 'a.mat'}")
    assert d.X.shape == (12, 7) and d.class_names == ("1", "2", "3") and d.y[:3].tolist() == [0, 1, 2]
    scipy.io.savemat(tmp_path / "b.mat", {"A": np.ones((4, 3)), "c": np.arange(4.0)})
    with pytest.raises(DataError, match="b.mat.*x=NAME"):
        load_domain(f"mat:{tmp_path / 'b.mat'}")
    d = load_domain(f"mat:{tmp_path / 'b.mat'}?x=A&y=c")
    assert d.X.shape == (4, 3) and d.n_classes == 4
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        load_domain(f"mat:{tmp_path / 'junk.mat'}")


def test_standardisation_is_fitted_on_train_inputs_without_labels(tmp_path):
    Xs, ys = _counts(120, 12, 0)
    Xt, yt = _counts(100, 12, 1, shift=1.0)
    Xe, ye = _counts(80, 12, 2, shift=1.0)
    src, tgt = _svm(tmp_path / "s.svmlight", Xs, ys), _svm(tmp_path / "t.svmlight", Xt, yt)
    tst = _svm(tmp_path / "e.svmlight", Xe, ye)
    spec = lambda f: f"svmlight:{f}?n_features=12"  # noqa: E731
    task = load_task(spec(src), spec(tgt), target_test=spec(tst))
    pre = task.preprocessing
    assert pre["canvas"] is None and pre["vector_transform"] == "l2"  # sparse counts -> row-normalised
    json.dumps(pre)  # plain JSON
    # fitted on the source TRAIN split and the target training inputs: those are exactly z-scored ...
    train = np.concatenate([task.source.X, task.target.X]).astype(np.float64)
    assert abs(train.mean(0)).max() < 1e-4 and abs(train.std(0) - 1).max() < 1e-3
    # ... while the source validation split and the target test set were not part of the fit
    assert abs(np.concatenate([train, task.target_test.X]).mean(0)).max() > 1e-2
    assert len(task.source) + len(task.source_val) == 120 and len(task.target) == 100
    # labels play no part: flipped labels give the same preprocessing
    flipped = _svm(tmp_path / "t2.svmlight", Xt, -yt)
    assert load_task(spec(src), spec(flipped), target_test=spec(tst)).preprocessing == pre
    # prepare applies exactly what the task's inputs got
    np.testing.assert_array_equal(prepare(load_domain(spec(tst)), pre).X, task.target_test.X)
    np.testing.assert_array_equal(transform_vectors(Xt.astype("f4"), pre), task.target.X)
    with pytest.raises(DataError, match="n_features"):
        prepare(load_domain(f"svmlight:{tst}?n_features=9"), pre)
    assert "standardize" not in load_task(spec(src), spec(tgt), standardize=False).preprocessing
    with pytest.raises(UnknownNameError, match="vector_transform"):
        load_task(spec(src), spec(tgt), vector_transform="zca")


def test_predict_applies_the_standardisation(capsys, tmp_path):
    Xs, ys = _counts(120, 12, 0)
    Xt, yt = _counts(100, 12, 1, shift=1.0)
    src, tgt = _svm(tmp_path / "s.svmlight", Xs, ys), _svm(tmp_path / "t.svmlight", Xt, yt)
    out = tmp_path / "run"
    rc, err = _cli(capsys, "run", "dann", "--source", f"svmlight:{src}?n_features=12", "--target",
                   f"svmlight:{tgt}?n_features=12", "--target-test", f"svmlight:{tgt}?n_features=12", *FAST,
                   "--out", str(out))
    assert rc == 0, err
    res = json.loads((out / "result.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    assert meta["preprocessing"]["vector_transform"] == "l2" and len(meta["preprocessing"]["standardize"]["std"]) == 12
    assert meta["class_names"] == ["negative", "positive"]
    rc, err = _cli(capsys, "predict", str(out), "--data", f"svmlight:{tgt}?n_features=12")
    assert rc == 0, err
    assert f"accuracy on 100 labelled samples: {100 * res['target_accuracy']:.2f}%" in err


def test_a_saved_vector_model_prepares_raw_data_and_warns_on_raw_inputs(tmp_path):
    """From Python, ``SavedModel.predict`` takes inputs in the model's form: raw vectors gave other predictions
    without a word (Office-Caltech SURF: a third of them). ``prepare`` applies the run's preprocessing to a
    spec, a raw Domain or raw arrays alike, and raw-looking arrays are warned about."""
    import warnings

    import qianyi
    from qianyi.errors import QianyiWarning
    from qianyi.train.artefact import load_domain_for, load_model

    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    X = (rng.normal(0, 1, (300, 6)) + 2 * np.eye(3, 6)[y]) * [1, 3, 10, 1, 5, 2] + 5  # raw scales far from z-scores
    np.savez(tmp_path / "s.npz", X=X[:150].astype("f4"), y=y[:150])
    np.savez(tmp_path / "t.npz", X=(X[150:] + 0.5).astype("f4"), y=y[150:])
    src, tgt = f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}"
    qianyi.run("source-only", qianyi.load_task(src, tgt), qianyi.TrainConfig(epochs=2, progress=False),
               out=tmp_path / "run")
    m = load_model(tmp_path / "run")
    prepared = m.prepare(tgt)
    np.testing.assert_array_equal(prepared.X, load_domain_for(m, tgt).X)
    raw = qianyi.load_domain(tgt)
    np.testing.assert_array_equal(m.prepare(raw).X, prepared.X)
    np.testing.assert_array_equal(m.prepare(raw.X).X, prepared.X)
    assert np.abs(prepared.X - raw.X).max() > 1  # the preprocessing matters here
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        m.predict(prepared)  # inputs in the model's form: no warning
        m.predict(prepared.X)
    with pytest.warns(QianyiWarning, match=r"looks like raw features.*model.prepare\(X\)"):
        m.predict(raw.X)
    with pytest.warns(QianyiWarning, match="looks like raw features"):
        m.predict_proba(raw)
    with pytest.warns(QianyiWarning, match="looks prepared already"):  # a second standardisation, said
        m.prepare(prepared)


def test_a_saved_image_model_prepares_pixel_arrays_as_the_readers_do(tmp_path):
    """``prepare`` on a uint8 (n, h, w) array skipped the readers' /255: 18% where the file gave 90%."""
    import qianyi
    from qianyi.errors import QianyiWarning
    from qianyi.train.artefact import load_model

    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    u8 = (rng.random((120, 10, 10)) * 60).astype(np.uint8)
    u8[y == 1, :5] += 150
    u8[y == 2, :, :5] += 150
    np.savez(tmp_path / "s.npz", X=u8[:60], y=y[:60])
    np.savez(tmp_path / "t.npz", X=u8[60:], y=y[60:])
    qianyi.run("source-only", qianyi.load_task(f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}"),
               qianyi.TrainConfig(epochs=1, progress=False), out=tmp_path / "run")
    m = load_model(tmp_path / "run")
    from_file = m.prepare(f"npz:{tmp_path / 't.npz'}").X
    np.testing.assert_array_equal(m.prepare(u8[60:]).X, from_file)
    np.testing.assert_array_equal(m.prepare(u8[60:, :, :, None]).X, from_file)  # (n, h, w, c) too
    # raw pixels straight into predict: said
    with pytest.warns(QianyiWarning, match=r"pixels from 0 to \d+, but the model reads images scaled to \[0, 1\]"):
        m.predict(u8[60:, None].astype(np.float32))


@pytest.mark.filterwarnings("ignore:.*chance level")  # the unscaled run is expected to collapse
def test_vector_default_copes_with_features_on_very_different_scales():
    """Features scaled by 1e-3 .. 1e3: standardised inputs train; raw inputs do not (old behaviour)."""
    import qianyi
    from qianyi.data import Domain, TransferTask
    from qianyi.train.config import TrainConfig

    scales = np.logspace(-3, 3, 8)

    def domain(n, seed, name):
        r = np.random.default_rng(seed)
        y = np.arange(n) % 2
        X = r.normal(0, 1, (n, 8)) + 1.5 * (2 * y[:, None] - 1) * (np.arange(8) < 4)
        return Domain(X * scales, y, name)

    s, t = domain(200, 0, "s"), domain(200, 1, "t")
    task = TransferTask.from_domains(s, t, test_fraction=0.5)
    pre = fit_vector_preprocessing(np.concatenate([task.source.X, task.target.X]))
    assert pre["vector_transform"] == "none"  # dense, signed: z-score only
    z = TransferTask.from_domains(s.replace(X=transform_vectors(s.X, pre)), t.replace(X=transform_vectors(t.X, pre)),
                                  test_fraction=0.5)
    cfg = TrainConfig(epochs=3, progress=False)
    old, _ = qianyi.run("source-only", task, cfg)
    new, _ = qianyi.run("source-only", z, cfg)
    assert new.target_accuracy >= 0.9 and new.target_accuracy >= old.target_accuracy


@requires_data("office-caltech10/surf")
def test_office_caltech_surf_reads(tmp_path):
    from .conftest import DATA

    d = load_domain(f"mat:{DATA}/office-caltech10/surf/webcam_SURF_L10.mat")
    assert d.X.shape == (295, 800) and d.n_classes == 10 and d.class_names[-1] == "10"


@requires_data("amazon-dann-svmlight")
def test_amazon_svmlight_reads():
    from .conftest import DATA

    d = load_domain(f"svmlight:{DATA}/amazon-dann-svmlight/kitchen_train.svmlight?n_features=5000")
    assert d.X.shape == (2000, 5000) and np.bincount(d.y).tolist() == [1000, 1000]


def test_vector_backbone_defaults():
    from torch import nn

    from qianyi.nn.backbones import backbone_for
    from qianyi.nn.resnet import named_backbone

    dense = backbone_for((40,), 3)
    assert dense.group_names == ("fc1", "fc2", "logits") and dense.feature_dim("fc1") == 256 and dense.feature_dim() == 128
    counts = backbone_for((40,), 3, counts=True)  # sparse counts: the wider network with input dropout
    assert counts.feature_dim("fc1") == 512 and counts.feature_dim() == 256
    first = next(iter(counts.groups["fc1"].children()))
    assert isinstance(first, nn.Dropout) and first.p == 0.5  # input dropout, before fc1's linear layer
    same = named_backbone("mlp", (40,), 3)  # --backbone mlp is the dense default
    assert [t.shape for t in same.state_dict().values()] == [t.shape for t in dense.state_dict().values()]
    assert backbone_for((1, 8, 8), 3).group_names[0] == "conv1"  # images unchanged


def test_models_saved_with_an_older_default_network_load_into_it():
    """model.json records the default network's generation; one without it predates generations (1)."""
    from qianyi.nn.resnet import rebuild

    old = rebuild({"backbone": "default", "sample_shape": [40], "n_classes": 3})
    new = rebuild({"backbone": "default", "generation": 2, "sample_shape": [40], "n_classes": 3})
    assert old.feature_dim("fc1") == 256 and old.feature_dim() == 128
    assert new.feature_dim("fc1") == 512 and new.feature_dim() == 256
    assert rebuild({"backbone": "default", "sample_shape": [1, 8, 8], "n_classes": 3}).group_names[0] == "conv1"
    with pytest.raises(DataError, match="generation 7"):
        rebuild({"backbone": "default", "generation": 7, "sample_shape": [40], "n_classes": 3})


def test_sparse_counts_train_the_wider_network_and_record_its_generation(tmp_path):
    import json

    import qianyi
    from qianyi.train.artefact import load_model

    rng = np.random.default_rng(0)
    for name, shift in (("s", 0.0), ("t", 0.5)):
        dense = rng.normal(size=(120, 6)).astype(np.float32) + shift
        np.savez(tmp_path / f"{name}.npz", X=dense, y=(dense[:, 0] > shift).astype(np.int64))
        counts = rng.poisson(0.3 + shift, size=(120, 30)).astype(np.float32)  # mostly zeros, non-negative
        np.savez(tmp_path / f"{name}c.npz", X=counts, y=(counts[:, 0] > 0).astype(np.int64))
    for suffix, is_counts, generation, width in (("", False, 1, 256), ("c", True, 2, 512)):
        task = qianyi.load_task(f"npz:{tmp_path / ('s' + suffix + '.npz')}", f"npz:{tmp_path / ('t' + suffix + '.npz')}")
        assert task.preprocessing["counts"] is is_counts
        out = tmp_path / f"run{suffix}"
        qianyi.run("source-only", task, qianyi.TrainConfig(epochs=1, progress=False), out=out)
        assert json.loads((out / "model.json").read_text())["architecture"]["generation"] == generation
        assert load_model(out).network.feature_dim("fc1") == width

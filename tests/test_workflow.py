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


def test_predict_reproduces_the_runs_accuracy_with_its_preprocessing(capsys, tmp_path):
    """mnist -> digits goes through the UCI 8x8 canvas; `qianyi predict` applies it to raw digits."""
    out = tmp_path / "run"
    rc, err = _cli(capsys, "run", "source-only", "--source", "mnist", "--target", "digits", "--target-test", "digits",
                   "--max-samples", "400", *FAST, "--out", str(out))
    assert rc == 0, err
    res = json.loads((out / "result.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    assert meta["preprocessing"]["canvas"] == {"size": 8, "channels": 1, "protocol": "uci"}
    assert meta["class_names"] == [str(i) for i in range(10)] and meta["method"] == "source-only"
    rc, err = _cli(capsys, "predict", str(out), "--data", "digits", "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err
    assert f"accuracy on 1797 labelled samples: {100 * res['target_accuracy']:.2f}%" in err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("index,predicted,p_0,") and len(rows) == 1798
    from qianyi import load_model
    from qianyi.train.artefact import load_domain_for

    model = load_model(out)
    digits = load_domain_for(model, "digits")
    assert np.mean(model.predict(digits) == digits.y) == pytest.approx(res["target_accuracy"])
    with pytest.raises(Exception, match="model expects"):
        model.predict(np.zeros((3, 1, 28, 28), np.float32))  # raw MNIST-size input: refused, not mis-scored


def test_a_replaced_model_file_is_refused(capsys, tmp_path):
    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=1)
    for name in ("a", "b"):
        rc, err = _cli(capsys, "run", "dan", "--source", src, "--target", tgt, *FAST, "--out", str(tmp_path / name),
                       "--seed", str(ord(name)))
        assert rc == 0, err
    (tmp_path / "a" / "model.pt").write_bytes((tmp_path / "b" / "model.pt").read_bytes())
    rc, err = _cli(capsys, "predict", str(tmp_path / "a"), "--data", tgt)
    assert rc == 2 and "hash differs" in err


def test_each_epoch_leaves_a_line_and_history_csv(capsys, tmp_path):
    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=1)
    args = [a for a in FAST if a != "--no-progress"]
    args[args.index("--epochs") + 1] = "2"
    rc, err = _cli(capsys, "run", "dann", "--source", src, "--target", tgt, *args, "--select", "dev",
                   "--out", str(tmp_path / "r"))
    assert rc == 0, err
    lines = [x for x in err.splitlines() if "epoch " in x and "/2" in x]
    assert len(lines) == 2 and "dann seed 0: epoch 1/2" in lines[0]
    assert "source_val_acc" in lines[0] and " dev " in lines[0] and " domain " in lines[0]
    assert " domain_acc " in lines[0]  # the discriminator's accuracy, shown beside the loss terms
    rows = (tmp_path / "r" / "history.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "lr", "cls"] and "score_dev" in rows[0] and len(rows) == 3


def test_result_has_a_class_report_and_a_collapsed_run_warns(tmp_path):
    from qianyi.data.domain import Domain, TransferTask
    from qianyi.errors import QianyiWarning
    from qianyi.train import TrainConfig, run

    rng = np.random.default_rng(0)
    y = np.arange(240) % 3
    X = rng.normal(0, 0.3, (240, 4)) + 4 * np.eye(3, 4)[y]
    wrong = Domain(X[:120], (y[:120] + 1) % 3, "t")  # every target label is another class's
    task = TransferTask.from_domains(Domain(X[120:], y[120:], "s"), wrong)
    cfg = TrainConfig(epochs=3, batch_size=16, progress=False)
    with pytest.warns(QianyiWarning, match="chance level"):
        res, _ = run("source-only", task, cfg)
    rep = res.target_report
    assert rep["accuracy"] == res.target_accuracy and len(rep["per_class_accuracy"]) == 3
    assert np.array(rep["confusion"]).sum() == len(task.target_test) and rep["class_names"] == ["0", "1", "2"]


def test_chance_level_counts_the_classes_present_in_the_target_test_split(tmp_path):
    """Balanced accuracy averages the classes in the test split, so chance is 1 over their number: a network
    giving one class to a test split of 2 of the source's 4 classes scores 50%, chance there; 1/4 called it
    fine."""
    from qianyi.data.domain import Domain, TransferTask
    from qianyi.errors import QianyiWarning
    from qianyi.train import TrainConfig, run

    rng = np.random.default_rng(0)
    y = np.arange(240) % 4
    X = (rng.normal(0, 0.3, (240, 4)) + 4 * np.eye(4)[y]).astype(np.float32)
    near_0 = (rng.normal(0, 0.3, (60, 4)) + 4 * np.eye(4)[0]).astype(np.float32)  # all looks like class 0
    test = Domain(near_0, np.arange(60) % 2, "t (test)")  # half labelled 1: one class right, one wrong
    task = TransferTask.from_domains(Domain(X, y, "s"), Domain(near_0, None, "t"), target_test=test)
    with pytest.warns(QianyiWarning, match=r"balanced target accuracy 50.0% is at chance level \(50.0%: 1 of the "
                                           r"2 classes in the target test split\)"):
        res, _ = run("source-only", task, TrainConfig(epochs=3, batch_size=16, progress=False))
    assert res.target_report["balanced_accuracy"] == 0.5


def test_a_network_of_your_own(tmp_path):
    """Any nn.Sequential becomes a backbone with named groups; DAN adapts its roles (features, logits)."""
    from torch import nn

    from qianyi.nn import as_backbone
    from qianyi.train import TrainConfig, run

    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=1)
    task = load_task(src, tgt)
    names = ["fc_a", "relu_a", "fc_b", "relu_b", "out"]

    def make():
        return as_backbone(nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)),
                           names)

    net = make()
    assert net.group_names == ("fc_a", "relu_a", "fc_b", "relu_b", "logits") and net.feature_layer == "relu_b"
    cfg = TrainConfig(epochs=10, batch_size=16, progress=False)
    # trade_off 0.3: without batch norm, DAN's default weight (3) collapses this small net to one class
    res, fit = run("dan", task, cfg, out=tmp_path / "own", backbone=net, trade_off=0.3)
    assert fit.method.adapted == ("features", "logits") and res.fingerprint["backbone"]["name"] == "custom"
    assert res.target_accuracy > 0.5
    meta = json.loads((tmp_path / "own" / "model.json").read_text())
    assert meta["architecture"]["backbone"] == "custom"
    from qianyi import load_model

    with pytest.raises(Exception, match="network="):
        load_model(tmp_path / "own")
    again = load_model(tmp_path / "own", network=make())
    assert again.predict(task.target_test.X).shape == (len(task.target_test),)
    with pytest.raises(Exception, match="as_backbone"):
        run("dan", task, cfg, backbone=nn.Linear(5, 3))


def test_epochs_go_to_an_experiment_tracker_when_installed(tmp_path, monkeypatch):
    """MLflow is not a dependency: with a stand-in module, every epoch's row reaches it; without, a named error."""
    import sys

    from qianyi.errors import ConfigError
    from qianyi.train import TrainConfig, run

    task = load_task(_blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=1))
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, log_to=("mlflow",))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed
    with pytest.raises(ConfigError, match="pip install mlflow"):
        run("dan", task, cfg)
    from .test_trackers import _fake_mlflow

    fake = _fake_mlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    res, _ = run("dan", task, cfg)
    (r,) = fake.runs.values()
    assert r.name == f"dan {task.name} seed 0", r.name
    assert r.params["method"] == "dan" and r.ends == ["FINISHED"] and not fake.stack
    assert sorted({s for _, s in r.metrics}) == [1, 2] and {"cls", "mmd", "source_val_acc"} <= {k for k, _ in r.metrics}
    assert res.config == TrainConfig(epochs=2, batch_size=16, progress=False).for_task(task).fingerprint()


def test_bench_scores_each_pair_on_its_own_labelled_test_set(capsys, tmp_path):
    """The DANN paper's Amazon protocol as one bench: unlabelled target train files, labelled test files."""
    rng = np.random.default_rng(3)
    src = _blobs(tmp_path / "s.npz")
    np.savez(tmp_path / "tu.npz", X=(rng.normal(0, 1, (90, 5)) + 3 * np.eye(3, 5)[np.arange(90) % 3]).astype("f4"))
    test = _blobs(tmp_path / "tl.npz", n=60, seed=4)
    pair = f"{src}->npz:{tmp_path / 'tu.npz'}"
    rc, err = _cli(capsys, "bench", "--methods", "dan", "--pairs", pair, "--target-tests", test, "--seeds", "1",
                   "--epochs", "1", "--batch-size", "16", "--no-progress", "--threads", "1",
                   "--out", str(tmp_path / "b"))
    assert rc == 0, err
    rows = (tmp_path / "b" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(r.split(",")[4] not in ("", "None") for r in rows[1:])  # no oracle: no labels
    res = json.loads(next((tmp_path / "b" / "runs").rglob("result.json")).read_text())
    assert res["n_target_test"] == 60 and res["n_target_train"] == 90
    rc, err = _cli(capsys, "bench", "--methods", "dan", "--pairs", pair, "--seeds", "1", "--out", str(tmp_path / "c"))
    assert rc == 2 and "no labels to hold out" in err


def _run_then_predict(capsys, tmp_path, source_names, target_names, shift: float = 0.0,
                      train_target: str = "t.npz", n_classes: int = 3, target_y=None) -> str:
    """A source-only run on blobs of ``n_classes`` named ``source_names`` (None: index labels; towards
    ``train_target``), then ``predict`` on blobs named ``target_names`` (shifted by ``shift``, labelled ``target_y``)
    into p.csv; predict's stderr."""
    rng = np.random.default_rng(0)
    y = np.arange(90) % n_classes
    for f, names, s, labels in (("s.npz", source_names, 0.0, y),
                                ("t.npz", target_names, shift, y if target_y is None else target_y)):
        named = {} if names is None else {"class_names": names}
        np.savez(tmp_path / f, X=(rng.normal(0, 1, (90, 5)) + 3 * np.eye(n_classes, 5)[y] + s).astype("f4"), y=labels,
                 **named)
    rc, err = _cli(capsys, "run", "source-only", "--source", f"npz:{tmp_path / 's.npz'}", "--target",
                   f"npz:{tmp_path / train_target}", *FAST, "--out", str(tmp_path / "r"))
    assert rc == 0, err
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", f"npz:{tmp_path / 't.npz'}",
                   "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err
    return err


def test_predict_writes_valid_csv_when_a_class_name_holds_a_comma(capsys, tmp_path):
    import csv

    names = np.array(["yes, sir", 'say "no"', "plain"])
    _run_then_predict(capsys, tmp_path, names, names, shift=0.5)
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert rows[0] == ["index", "predicted", "p_yes, sir", 'p_say "no"', "p_plain", "label"]
    assert all(len(r) == 6 for r in rows) and {r[5] for r in rows[1:]} == set(names)


def test_load_model_warns_when_result_json_reports_on_another_model(capsys, tmp_path):
    from qianyi import load_model
    from qianyi.errors import QianyiWarning

    src = _blobs(tmp_path / "s.npz")
    tgt = _blobs(tmp_path / "t.npz", seed=2, shift=0.5)
    for name, seed in (("a", "0"), ("b", "1")):
        rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", tgt, *FAST, "--seed", seed,
                       "--out", str(tmp_path / name))
        assert rc == 0, err
    load_model(tmp_path / "a")  # its own files: no warning
    (tmp_path / "a" / "result.json").write_text((tmp_path / "b" / "result.json").read_text())  # files of two runs
    with pytest.warns(QianyiWarning, match="result.json reports on another model"):
        load_model(tmp_path / "a")


def test_predict_scores_the_rows_of_known_classes_and_writes_every_row(capsys, tmp_path):
    """Labelled data holding a class the model lacks: every row predicted, the accuracy over the others (it
    predicted nothing before)."""
    err = _run_then_predict(capsys, tmp_path, np.array(["a", "b", "c"]), np.array(["a", "b", "fox"]),
                            train_target="s.npz")
    assert "lacks: ['fox']" in err and "accuracy on 60 labelled samples" in err and "30 rows of classes" in err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 91 and rows[0].endswith(",label") and sum(r.endswith(",fox") for r in rows) == 30


def test_column_names_are_matched_in_prepare_and_from_domains(tmp_path):
    """A DataFrame's columns and named Domains line up by name, as load_task's CSV columns do."""
    import pandas as pd

    from qianyi import TrainConfig, load_model, run
    from qianyi.data.domain import Domain, TransferTask

    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    X = rng.normal(5, 2, (120, 3)).astype("f4")  # raw-looking columns (prepare standardises them)
    X[:, 0] += 6 * y  # only column 'a' carries the class
    cols = ("a", "b", "c")
    src = Domain(X, y, "s", feature_names=cols)
    flipped = Domain(X[:, ::-1].copy(), y, "t", feature_names=cols[::-1])
    task = TransferTask.from_domains(src, flipped, test_fraction=0.0)
    assert task.target.feature_names == cols
    assert np.array_equal(np.sort(task.target.X[:, 0]), np.sort(X[:, 0]))  # column 'a' is 'a' (was 'c')
    (tmp_path / "s.csv").write_text("a,b,c,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{k}\n" for r, k in zip(X, y)))
    run("source-only", load_task(f"csv:{tmp_path / 's.csv'}", f"csv:{tmp_path / 's.csv'}"),
        TrainConfig(epochs=2, progress=False), out=tmp_path / "r")
    m = load_model(tmp_path / "r")
    df = pd.DataFrame(X, columns=list(cols))
    same = m.predict(m.prepare(df))
    assert np.array_equal(m.predict(m.prepare(df[list(cols[::-1])])), same)  # reordered columns, same predictions
    assert (same == y).mean() > 0.9


def test_predict_on_index_labels_of_an_unknown_class_scores_the_others(capsys, tmp_path):
    y3 = np.arange(90) % 2
    y3[:10] = 2  # a class the model never saw
    err = _run_then_predict(capsys, tmp_path, None, None, train_target="s.npz", n_classes=2, target_y=y3)
    assert "accuracy on 80 labelled samples" in err and "10 rows of classes the model lacks not scored" in err


def test_predict_on_an_image_folder_names_each_file_beside_its_prediction(capsys, tmp_path):
    """Images without class folders (data to predict): each CSV row says which file it is, so a user can act on a
    prediction without re-deriving the reading order (dark and light files interleave in sorted order)."""
    from PIL import Image

    for folder, names in (("train/dark", ["a", "b", "c", "d"]), ("train/light", ["e", "f", "g", "h"])):
        (tmp_path / folder).mkdir(parents=True)
        for k, n in enumerate(names):
            level = 20 + 5 * k if "dark" in folder else 235 - 5 * k
            Image.fromarray(np.full((10, 10), level, np.uint8)).save(tmp_path / folder / f"{n}.png")
    new = tmp_path / "new"
    new.mkdir()
    expected = {"1_light.png": "light", "2_dark.png": "dark", "3_light.png": "light", "4_dark.png": "dark"}
    for name, kind in expected.items():
        Image.fromarray(np.full((10, 10), 230 if kind == "light" else 25, np.uint8)).save(new / name)
    spec = f"folder:{tmp_path / 'train'}?size=8"
    rc, err = _cli(capsys, "run", "source-only", "--source", spec, "--target", spec, "--target-all", "--epochs", "30",
                   "--batch-size", "8", "--no-progress", "--threads", "1", "--out", str(tmp_path / "r"))
    assert rc == 0, err
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", f"folder:{new}?size=8",
                   "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "index,file,predicted,p_dark,p_light"
    assert {r.split(",")[1]: r.split(",")[2] for r in rows[1:]} == expected
    from qianyi.data.readers import read_folder

    lab = read_folder(tmp_path / "train", size=8, max_samples=4, seed=1)  # ids follow a subsample
    assert len(lab.ids) == 4 and all(i.split("/")[0] == lab.class_names[k] for i, k in zip(lab.ids, lab.y))
    assert lab.subset([3, 0]).ids == (lab.ids[3], lab.ids[0])


@pytest.mark.parametrize("field, value", [
    ("weights", 5), ("class_names", None), ("class_names", ["a"]), ("preprocessing", None),
    ("architecture.sample_shape", "abc"), ("architecture", {}), ("hparams", [1]),
    ("architecture.sample_shape", [10 ** 11])])  # built before the weights were read: 100 TB asked for
def test_a_hand_damaged_model_json_is_named_not_a_traceback(capsys, tmp_path, field, value):
    src = _blobs(tmp_path / "s.npz")
    rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", src, *FAST, "--out", str(tmp_path / "r"))
    assert rc == 0, err
    meta_path = tmp_path / "r" / "model.json"
    meta = json.loads(meta_path.read_text())
    where, _, key = field.rpartition(".")
    (meta[where] if where else meta)[key] = value
    meta_path.write_text(json.dumps(meta))
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", src)
    assert rc != 0 and "model.json' cannot be read" in err and "it is corrupt: rerun the run" in err
    assert "Traceback" not in err


def test_run_takes_load_tasks_split_and_preprocessing_options(capsys, tmp_path):
    """--test-fraction, --val-fraction, --split-seed, --vector-transform, --no-standardize: load_task's options."""
    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=4, shift=1.0)

    def result(name: str, *flags: str) -> dict:
        rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", tgt, *FAST, *flags,
                       "--out", str(tmp_path / name))
        assert rc == 0, err
        return json.loads((tmp_path / name / "result.json").read_text())

    plain = result("plain")
    assert (plain["n_target_test"], plain["n_source"]) == (27, 81)  # 0.3 of 90 held out; 0.1 of the source
    half = result("half", "--test-fraction", "0.5", "--val-fraction", "0.2")
    assert (half["n_target_test"], half["n_target_train"], half["n_source"]) == (45, 45, 72)
    other = result("other", "--split-seed", "3")  # other samples held out: other data, another run
    assert other["fingerprint"]["data"] != plain["fingerprint"]["data"] and other["n_target_test"] == 27
    raw = result("raw", "--no-standardize", "--vector-transform", "none")
    assert raw["fingerprint"]["data"] != plain["fingerprint"]["data"]  # other inputs: another run
    meta = json.loads((tmp_path / "raw" / "model.json").read_text())["preprocessing"]
    assert "standardize" not in meta and meta.get("vector_transform", "none") == "none"
    assert "standardize" in json.loads((tmp_path / "plain" / "model.json").read_text())["preprocessing"]
    rc, err = _cli(capsys, "predict", str(tmp_path / "raw"), "--data", tgt, "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err  # the run's (absent) scaling is applied as recorded
    for flags, says in ((["--test-fraction", "1"], "below 1"), (["--val-fraction", "0"], "above 0"),
                        (["--split-seed", "-1"], "--split-seed: must be between 0 and 4294967293"),  # load_task's
                        (["--target-all", "--test-fraction", "0.2"], "give one of them"),
                        (["--target-test", tgt, "--test-fraction", "0.5"], "would hold out nothing")):
        try:
            rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", tgt, *FAST, *flags)
        except SystemExit as exc:  # argparse's own refusal of a value
            rc, err = exc.code, capsys.readouterr().err
        assert rc == 2 and says in err, err


def test_outputs_never_replace_their_input_data_or_the_runs_files(capsys, tmp_path):
    """predict, features and translate replaced the file --data read (a +shift got past translate's check) or a
    run's model.json with their output, silently."""
    import hashlib

    src = _blobs(tmp_path / "s.npz")
    tgt = _blobs(tmp_path / "t.npz", shift=1.0, seed=2)
    new = tmp_path / "new.csv"
    new.write_text("a,b,c,d,e,label\n" + "".join(f"{i},1,2,3,4,{i % 3}\n" for i in range(9)))
    out = tmp_path / "run"
    rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", tgt, *FAST, "--out", str(out))
    assert rc == 0, err
    files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [*out.iterdir(), tmp_path / "s.npz",
                                                                       tmp_path / "t.npz", new]}
    cases = [
        (["predict", str(out), "--data", tgt, "--out", str(out / "model.json")], "written as a .csv file"),
        (["predict", str(out), "--data", tgt, "--out", str(out / "history.csv")], "is a file of the run"),
        (["predict", str(out), "--data", f"{tgt}?label=y", "--out", str(tmp_path / "t.npz")], "written as a .csv"),
        (["predict", str(out), "--data", "csv:" + str(new), "--out", str(new)], "is the file --data reads"),
        (["predict", str(out), "--data", "csv:" + str(new), "--out", str(new)], "replace that data"),
        (["features", "--data", tgt, "--backbone", "mlp", "--out", str(tmp_path / "t.npz")],
         "is the file --data reads"),
        (["features", "--data", tgt + "+invert", "--backbone", "mlp", "--out", str(tmp_path / "t.npz")],
         "is the file --data reads"),
        # a wrong suffix was answered with a run file's name (model.pt -> 'model.npz', itself refused)
        (["features", "--data", tgt, "--backbone", "mlp", "--out", str(out / "model.pt")],
         f"name it like {str(out / 'features.npz')!r}"),
        (["features", "--data", tgt, "--backbone", "mlp", "--out", str(out / "model.npz")],
         f"e.g. {str(out / 'features.npz')!r}"),
    ]
    for argv, words in cases:
        rc, err = _cli(capsys, *argv)
        assert rc == 2 and words in err and "Traceback" not in err, (argv, err)
    assert files == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}  # all untouched
    rc, err = _cli(capsys, "predict", str(out), "--data", tgt, "--out", str(out / "predictions.csv"))
    assert rc == 0, err  # a new file in the run folder is fine


def test_the_runs_own_data_is_found_from_any_folder(capsys, tmp_path, monkeypatch):
    # model.json holds the specs as typed (relative): from another folder the check missed the run's training file
    # and refused an unrelated file of the same name
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    _blobs(a / "train.npz")
    _blobs(a / "test.npz", shift=1.0, seed=2)
    rc, err = _cli(capsys, "run", "source-only", "--source", "npz:train.npz", "--target", "npz:test.npz", *FAST,
                   "--out", "run")
    assert rc == 0, err
    before = (a / "train.npz").read_bytes()
    monkeypatch.chdir(b)
    rc, err = _cli(capsys, "translate", "../A/run", "--data", "npz:../A/test.npz", "--out", "../A/train.npz")
    assert rc == 2 and "the run's source reads" in err and (a / "train.npz").read_bytes() == before
    import shutil
    shutil.copy(a / "train.npz", b / "train.npz")  # an unrelated file of the same name here: not the run's
    rc, err = _cli(capsys, "translate", "../A/run", "--data", "npz:../A/test.npz", "--out", "train.npz")
    assert "the run's source reads" not in err  # (refused further on: not a generative run)


def test_predict_refuses_to_write_over_the_runs_own_training_csv(capsys, tmp_path, monkeypatch):
    """Review mutation2 #4 (I4): predict checked --out against --data only in the tests; the run's own source was
    checked by translate alone, so predict --out train.csv could replace the run's training data silently."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name, shift in (("train", 0.0), ("test", 1.0)):
        X = rng.normal(size=(90, 4)) + shift
        rows = "".join(",".join(f"{v:.4f}" for v in x) + f",{int(x[0] > shift)}\n" for x in X)
        (tmp_path / f"{name}.csv").write_text("a,b,c,d,label\n" + rows)
    rc, err = _cli(capsys, "run", "source-only", "--source", "csv:train.csv", "--target", "csv:test.csv", *FAST,
                   "--out", "run")
    assert rc == 0, err
    before = (tmp_path / "train.csv").read_bytes()
    rc, err = _cli(capsys, "predict", "run", "--data", "csv:test.csv", "--out", "train.csv")
    assert rc == 2 and "the run's source reads" in err and "replace that data" in err, err
    assert (tmp_path / "train.csv").read_bytes() == before
    rc, err = _cli(capsys, "predict", "run", "--data", "csv:test.csv", "--out", "predictions.csv")
    assert rc == 0 and (tmp_path / "predictions.csv").is_file(), err  # another name is written
    # a run file's name is only refused inside a run: history.csv in a plain folder is the user's (mutation2 I1)
    (tmp_path / "plain").mkdir()
    rc, err = _cli(capsys, "predict", "run", "--data", "csv:test.csv", "--out", "plain/history.csv")
    assert rc == 0 and (tmp_path / "plain" / "history.csv").is_file(), err


def test_a_model_json_that_describes_a_far_larger_network_is_refused_before_it_is_built(capsys, tmp_path):
    # [50_000_000] passed the type checks and the network (51 GB) was built before the weights were read
    # (--no-standardize: a standardisation of 5 features no longer passes those checks against [50_000_000])
    src = _blobs(tmp_path / "s.npz")
    rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", src, *FAST, "--no-standardize",
                   "--out", str(tmp_path / "r"))
    assert rc == 0, err
    meta_path = tmp_path / "r" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["architecture"]["sample_shape"] = [50_000_000]
    meta_path.write_text(json.dumps(meta))
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", src)
    assert rc == 2 and "describes a network of" in err and "model.json was edited" in err


def test_predict_matches_labelled_data_to_a_saved_model_as_its_run_did(capsys, tmp_path):
    """Names in a canonical order (npz class_names=, SVMlight's negative/positive) match unnamed indices by position
    in `run`; `predict` treated every saved model's names as sorted from text labels and refused the very data its run
    scored on. model.json records whether they were sorted; one without the field is refused, saying it is
    unknown (not 'sorted from its text labels')."""
    err = _run_then_predict(capsys, tmp_path, np.array(["negative", "positive"]), None, n_classes=2)
    assert "accuracy on 90 labelled samples" in err
    meta_path = tmp_path / "r" / "model.json"
    meta = json.loads(meta_path.read_text())
    assert meta["class_names_sorted"] is False
    del meta["class_names_sorted"]  # as a model saved before the field was recorded
    meta_path.write_text(json.dumps(meta))
    # (predict refused the data; it now predicts every row and scores none, saying why: review deploy #5)
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", f"npz:{tmp_path / 't.npz'}")
    assert rc == 0 and "does not record whether those names were sorted" in err, err
    assert "sorted from its text labels)" not in err
    assert "no accuracy is computed" in err and "accuracy on" not in err, err
    meta["class_names_sorted"] = True  # a run whose names were sorted from text labels: not scored, saying so
    meta_path.write_text(json.dumps(meta))
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", f"npz:{tmp_path / 't.npz'}")
    assert rc == 0 and "(sorted from its text labels)" in err and "unnamed class indices" in err, err
    assert "no accuracy is computed" in err and "accuracy on" not in err, err

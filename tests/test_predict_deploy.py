"""A trained model in deployment (review: deploy): predict's reader hint, a CSV's column types from the model, label
columns that do not fit, image folders at the run's size, model.json's format, reversed arrays, and `qianyi features`'
random networks."""
from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch

from qianyi.cli import main
from qianyi.errors import DataError, QianyiWarning

from .test_hostile import FAST

CITIES = [f"c{k:02d}" for k in range(30)]


def _cli(capsys, *args: str) -> tuple[int, str]:
    """Exit status and everything printed (stdout and stderr together: what goes where is not tested here)."""
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


def _table(path, n: int = 300, seed: int = 0, city=None, label=None, header_label: str | None = "label") -> None:
    """Customers: an id, a segment (a/b), a city of 30, four numbers, a class of cat/dog/emu."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(0, 1, (n, 4)) + 2 * np.eye(3, 4)[y]
    cities = [CITIES[(i // 2) % 30] for i in range(n)] if city is None else city  # each segment: every city
    labels = [("cat", "dog", "emu")[k] for k in y] if label is None else label
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cust", "seg", "city", "f0", "f1", "f2", "f3", *([header_label] if header_label else [])])
        for i in range(len(cities)):
            w.writerow([f"u{seed}-{i}", "ab"[i % 2], cities[i], *(f"{v:.4f}" for v in X[i]),
                        *([labels[i]] if header_label else [])])


OPTIONS = "id=cust&drop=seg&categorical=auto"


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    _table(root / "s.csv")
    out = root / "run"
    spec = f"csv:{root / 's.csv'}?{OPTIONS}"
    assert main(["run", "source-only", "--source", f"{spec}&where=seg:a", "--target", f"{spec}&where=seg:b", *FAST,
                 "--out", str(out)]) == 0
    return out, root


def _predictions(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- 1. the hint on a failed read: reader options that shape inputs, never row filters ------------------------------

def test_the_hint_never_proposes_row_filters_and_following_it_predicts_every_row(csv_run, capsys, tmp_path):
    out, root = csv_run
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{root / 's.csv'}")
    assert rc != 0 and "seg" in err, err
    assert "where" not in err, err  # where=seg:a chose the training segment: following it dropped rows unsaid
    hint = err.rsplit("e.g. '", 1)[1].split("'")[0]
    assert hint == f"csv:{root / 's.csv'}?{OPTIONS}", err
    rc, err = _cli(capsys, "predict", str(out), "--data", hint, "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err
    assert len(_predictions(tmp_path / "p.csv")) == 300  # both segments, not the source's 150


def test_the_hint_proposes_no_csv_options_to_another_reader(csv_run, capsys, tmp_path):
    out, _ = csv_run
    (tmp_path / "r.jsonl").write_text('{"text": "a good one", "label": "cat"}\n{"text": "bad", "label": "dog"}\n')
    for data in (f"jsonl:{tmp_path / 'r.jsonl'}", "digits"):
        rc, err = _cli(capsys, "predict", str(out), "--data", data)
        assert rc != 0 and "qianyi: error" in err, err
        assert "drop=" not in err and "categorical" not in err and "e.g." not in err, err


# -- 3. a CSV's column types come from the model, not from the rows being predicted --------------------------------

def test_a_batch_of_distinct_known_cities_predicts_as_in_a_larger_file(csv_run, capsys, tmp_path):
    from qianyi.data.readers import ID_ROWS
    from qianyi.train.artefact import load_model

    out, root = csv_run
    model = load_model(out)
    known = [f.partition("=")[2] for f in model.meta["preprocessing"]["feature_names"] if f.startswith("city=")]
    n = min(len(known), 25)
    assert n >= ID_ROWS
    _table(tmp_path / "few.csv", n=n, seed=3, city=known[:n])  # a city per row: 'auto' took the column for an ID
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'few.csv'}?{OPTIONS}",
                   "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err
    assert [r["cust"] for r in _predictions(tmp_path / "p.csv")] == [f"u3-{i}" for i in range(n)]
    # the same rows among others (cities repeated): the same inputs, whatever else the file holds
    _table(tmp_path / "more.csv", n=2 * n, seed=3, city=known[:n] + known[:n])
    few = model.prepare(f"csv:{tmp_path / 'few.csv'}?{OPTIONS}")
    more = model.prepare(f"csv:{tmp_path / 'more.csv'}?{OPTIONS}")
    assert few.feature_names == more.feature_names == tuple(model.meta["preprocessing"]["feature_names"])
    assert np.array_equal(few.X, more.X[:n])


def test_an_all_empty_categorical_column_is_an_unseen_category_not_a_refusal(csv_run, capsys, tmp_path):
    out, _ = csv_run
    _table(tmp_path / "empty.csv", n=6, seed=4, city=[""] * 6)
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'empty.csv'}?{OPTIONS}",
                   "--out", str(tmp_path / "p.csv"))
    assert rc == 0 and "never saw: ['city=']" in err, err  # warned: the rows get 0 in every city= feature
    assert len(_predictions(tmp_path / "p.csv")) == 6
    # a numeric column of the model left empty is refused naming it, without advising to one-hot encode it
    rows = (tmp_path / "empty.csv").read_text().splitlines()
    cells = rows[1].split(",")
    cells[3] = ""
    (tmp_path / "hole.csv").write_text("\n".join([rows[0], ",".join(cells), *rows[2:]]) + "\n")
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'hole.csv'}?{OPTIONS}")
    assert rc != 0 and "column 'f0', line 2 is empty, but the model reads that column as numbers" in err, err


# -- 5. a label column that does not fit the model's classes ---------------------------------------------------------

def test_unnamed_index_labels_predict_every_row_without_accuracy(csv_run, capsys, tmp_path):
    out, _ = csv_run
    _table(tmp_path / "idx.csv", n=30, seed=5, label=[str(i % 3) for i in range(30)])
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'idx.csv'}?{OPTIONS}",
                   "--out", str(tmp_path / "p.csv"))
    assert rc == 0 and "no accuracy is computed" in err, err
    assert len(_predictions(tmp_path / "p.csv")) == 30
    assert "accuracy on" not in err


def test_label_option_on_unlabelled_data_says_to_leave_it_out(csv_run, capsys, tmp_path):
    out, _ = csv_run
    _table(tmp_path / "new.csv", n=10, seed=6, header_label=None)
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'new.csv'}?{OPTIONS}&label=outcome")
    assert rc != 0 and "has no column 'outcome' (?label=)" in err and "leave ?label= out" in err, err


# -- 8. a model.json of a newer format ------------------------------------------------------------------------------

def test_a_newer_model_format_is_refused_with_upgrade_advice(csv_run, capsys, tmp_path):
    import shutil

    out, root = csv_run
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "model.json").read_text())
    assert meta["format"] == 1
    meta["format"] = 99
    (copy / "model.json").write_text(json.dumps(meta))
    rc, err = _cli(capsys, "predict", str(copy), "--data", f"csv:{root / 's.csv'}?{OPTIONS}")
    assert rc != 0 and "model format 99" in err and "upgrade qianyi" in err, err
    assert "corrupt" not in err
    meta["format"] = "1"
    (copy / "model.json").write_text(json.dumps(meta))
    rc, err = _cli(capsys, "predict", str(copy), "--data", f"csv:{root / 's.csv'}?{OPTIONS}")
    assert rc != 0 and "format" in err and "corrupt" in err, err


# -- 9. a text model given images -----------------------------------------------------------------------------------

def test_a_text_model_given_images_says_it_reads_text():
    from qianyi.train.artefact import read_like_run

    meta = {"preprocessing": {"canvas": None, "feature_names": None,
                              "text": {"tokenizer": "words", "vocab": ["a"], "max_len": 4, "bigrams": False}}}
    with pytest.raises(DataError, match="'digits' holds images, but the model reads text"):
        read_like_run(meta, "digits")


# -- 6. an image folder read at the size the run read its images at ------------------------------------------------

def test_a_folder_of_28px_images_prepares_as_the_same_pixels_in_an_npz(capsys, tmp_path):
    from PIL import Image

    from qianyi.train.artefact import load_model

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    X = np.zeros((60, 1, 28, 28), np.float32)
    for i, k in enumerate(y):
        X[i, 0, 4 + 6 * k:10 + 6 * k, 6:22] = 1.0
    X = np.round(np.clip(X * 0.8 + rng.random(X.shape) * 0.2, 0, 1) * 255) / 255
    np.savez(tmp_path / "s.npz", X=X.astype(np.float32), y=y)
    out = tmp_path / "run"
    rc, err = _cli(capsys, "run", "source-only", "--source", f"npz:{tmp_path / 's.npz'}", "--target",
                   f"npz:{tmp_path / 's.npz'}", *FAST, "--out", str(out))
    assert rc == 0, err
    model = load_model(out)
    assert model.meta["preprocessing"]["canvas"]["size"] == 28
    (tmp_path / "imgs").mkdir()
    for i in range(20):
        Image.fromarray((X[i, 0] * 255).round().astype(np.uint8), "L").save(tmp_path / "imgs" / f"{i:03d}.png")
    np.savez(tmp_path / "n.npz", X=X[:20].astype(np.float32))
    folder, arrays = model.prepare(f"folder:{tmp_path / 'imgs'}"), model.prepare(f"npz:{tmp_path / 'n.npz'}")
    assert np.abs(folder.X - arrays.X).max() < 1e-6  # read at 32 px, then 28: resampled twice
    assert np.allclose(model.predict_proba(folder), model.predict_proba(arrays), atol=1e-6)
    # a size given wins
    assert np.abs(model.prepare(f"folder:{tmp_path / 'imgs'}?size=32").X - arrays.X).max() > 1e-3


# -- 4. reversed and flipped arrays ---------------------------------------------------------------------------------

def test_predicting_reversed_and_flipped_arrays(capsys):
    from qianyi import DomainAdapter
    from qianyi.nn.backbones import lenet
    from qianyi.nn.inference import predict_logits

    rng = np.random.default_rng(0)
    Xs, ys = rng.normal(0, 1, (60, 5)).astype(np.float32), np.arange(60) % 2
    Xt = rng.normal(0.3, 1, (60, 5)).astype(np.float32)
    clf = DomainAdapter("dann", epochs=1, random_state=0).fit(Xs, ys, Xt=Xt)
    assert np.allclose(clf.predict_proba(Xt[::-1]), clf.predict_proba(Xt)[::-1], atol=1e-6)
    assert (clf.predict(Xt[::-1]) == clf.predict(Xt)[::-1]).all()
    images = rng.random((4, 1, 12, 12)).astype(np.float32)
    net = lenet(1, (12, 12), 3).eval()
    flipped = np.flip(images, -1)
    assert torch.allclose(predict_logits(net, flipped, "cpu"), predict_logits(net, flipped.copy(), "cpu"))


# -- 2. `qianyi features` with random weights -----------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["lenet", "mlp", "resnet18"])
def test_untrained_feature_networks_are_one_network_across_calls_and_warned(backbone, tmp_path):
    from qianyi.data.domain import Domain
    from qianyi.nn.features import extract, save_features

    rng = np.random.default_rng(0)
    X = rng.random((10, 1, 16, 16)).astype(np.float32) if backbone != "mlp" else rng.normal(0, 1, (10, 7))
    labelled, unlabelled = Domain(X, np.arange(10) % 2, "s"), Domain(X, None, "new")
    with pytest.warns(QianyiWarning, match=f"{backbone} has no (--weights|trained weights).*seed 0"):
        a = extract(labelled, backbone, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        b = extract(unlabelled, backbone, progress=False)
        c = extract(unlabelled, backbone, progress=False, seed=1)
    assert np.array_equal(a["X"], b["X"])  # source, target and new data: features of one network
    assert not np.array_equal(b["X"], c["X"])
    save_features(tmp_path / "f.npz", b)
    assert int(np.load(tmp_path / "f.npz")["seed"]) == 0


def test_a_folder_of_images_larger_than_32px_is_still_read_at_32px(tmp_path):
    from PIL import Image

    from qianyi.train.artefact import _own_image_side

    (tmp_path / "big").mkdir()
    (tmp_path / "small").mkdir()
    for i in range(3):
        Image.new("L", (224, 224)).save(tmp_path / "big" / f"{i}.png")  # held at 224 px: 49x the memory
        Image.new("L", (20, 20 if i else 16)).save(tmp_path / "small" / f"{i}.png")
    assert _own_image_side(f"folder:{tmp_path / 'big'}") is None
    assert _own_image_side(f"folder:{tmp_path / 'small'}") is None  # sizes differ
    Image.new("L", (20, 20)).save(tmp_path / "small" / "0.png")
    assert _own_image_side(f"folder:{tmp_path / 'small'}?stream=1") == 20


def test_classes_the_model_lacks_compare_names_in_nfc_as_aligned_labels_do(capsys, tmp_path):
    """With a class the model lacks, predict scored the other rows comparing raw strings: every 'café' row spelt
    decomposed (as macOS writes it) was counted as a class the model lacks, though align_labels (used without an
    unknown class) matches it."""
    import unicodedata

    cafe = unicodedata.normalize("NFC", "café")
    _table(tmp_path / "s.csv", n=90, label=[(cafe, "dog", "emu")[i % 3] for i in range(90)])
    spec = f"csv:{tmp_path / 's.csv'}?{OPTIONS}"
    out = tmp_path / "run"
    rc, err = _cli(capsys, "run", "source-only", "--source", f"{spec}&where=seg:a", "--target", f"{spec}&where=seg:b",
                   *FAST, "--out", str(out))
    assert rc == 0, err
    counts = {}
    for form in ("NFC", "NFD"):
        labels = [(unicodedata.normalize(form, cafe), "dog", "emu", "zzz")[i % 4] for i in range(40)]
        _table(tmp_path / f"{form}.csv", n=40, seed=6, label=labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QianyiWarning)
            rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / f'{form}.csv'}?{OPTIONS}",
                           "--out", str(tmp_path / f"{form}-p.csv"))
        assert rc == 0, err
        counts[form] = err[err.index("accuracy on"):].splitlines()[0]
    assert "accuracy on 30 labelled samples" in counts["NFD"] and "(10 rows of classes the model lacks" in counts["NFD"]
    assert counts["NFD"] == counts["NFC"]


def test_the_own_image_side_skips_the_folders_read_folder_skips(tmp_path):
    """_own_image_side walked the folder itself: a Synology @eaDir thumbnail (or one in __MACOSX, a hidden
    folder, an image beside the class folders) that read_folder never reads decided the size, so 28-px images were
    read at 32 px and resampled to the 28-px canvas again."""
    from PIL import Image

    from qianyi.train.artefact import _own_image_side

    for c in ("a", "b"):
        (tmp_path / "n28" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (28, 28)).save(tmp_path / "n28" / c / f"{i}.png")
    assert _own_image_side(f"folder:{tmp_path / 'n28'}") == 28
    thumbs = [tmp_path / "n28" / "a" / "@eaDir" / "0.png" / "SYNOPHOTO_THUMB_S.jpg",
              tmp_path / "n28" / "__MACOSX" / "a" / "0.png", tmp_path / "n28" / "b" / ".thumbnails" / "0.png",
              tmp_path / "n28" / "cover.png"]  # beside the class folders: left out with a warning
    for f in thumbs:
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (120, 90)).save(f, format="JPEG" if f.suffix == ".jpg" else "PNG")
    assert _own_image_side(f"folder:{tmp_path / 'n28'}") == 28


def test_a_run_on_folders_read_at_their_own_size_reads_new_folders_at_it(tmp_path):
    """A run on folder:X?size=16 read its images at 16 px; new folders were read at 32 px and resized to the
    16-px canvas, which are not the run's inputs."""
    from PIL import Image

    from qianyi.train.artefact import read_like_run

    rng = np.random.default_rng(0)
    (tmp_path / "new").mkdir()
    for i in range(4):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "new" / f"{i}.png")
    new = f"folder:{tmp_path / 'new'}"
    canvas = {"size": 16, "channels": 3}
    for source, target in (("folder:src?size=16", "folder:tgt?size=16"), ("mnist", "folder:tgt?size=16+rot30")):
        meta = {"source": source, "target": target, "preprocessing": {"canvas": canvas, "feature_names": None}}
        np.testing.assert_array_equal(read_like_run(meta, new).X, read_like_run(meta, f"{new}?size=16").X)
    meta = {"source": "folder:src", "target": "folder:tgt", "preprocessing": {"canvas": canvas, "feature_names": None}}
    assert np.abs(read_like_run(meta, new).X - read_like_run(meta, f"{new}?size=16").X).max() > 1e-3  # read at 32


def test_an_extra_text_column_is_refused_by_its_name_with_drop(csv_run, capsys, tmp_path):
    """With the model's column types, a text column the model lacks was one-hot encoded as 'auto' judged it, then
    refused as extra features ('job=admin.', 'job=clerk', ...) with ?drop=A,B, which names no column to drop."""
    out, root = csv_run
    lines = (root / "s.csv").read_text().splitlines()
    jobs = ["admin.", "clerk", "cook"]
    (tmp_path / "job.csv").write_text("\n".join([lines[0] + ",job"] + [f"{row},{jobs[i % 3]}"
                                                                       for i, row in enumerate(lines[1:31])]) + "\n")
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'job.csv'}?{OPTIONS}")
    assert rc != 0 and "column(s) ['job']" in err and "?drop=seg,job" in err, err  # with the columns dropped already
    assert "job=" not in err, err
    rc, err = _cli(capsys, "predict", str(out), "--data", f"csv:{tmp_path / 'job.csv'}?{OPTIONS.replace('drop=seg', 'drop=seg,job')}",
                   "--out", str(tmp_path / "p.csv"))
    assert rc == 0, err


def test_predict_on_a_diverged_run_says_it_diverged(capsys, tmp_path):
    """A run folder holding only failed.json was answered 'has no model.json; ... runs made before model files
    described themselves hold weights only: rerun them', as if it were an old run's."""
    why = "dan: loss term(s) ['transfer'] became NaN or infinite at epoch 1"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "failed.json").write_text(json.dumps({"error": "TrainingError", "message": why}))
    rc, err = _cli(capsys, "predict", str(tmp_path / "r"), "--data", "digits")
    assert rc != 0 and "stopped with an error" in err and why in err, err
    assert "weights only" not in err, err

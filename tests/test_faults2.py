"""Fault review, second round: unreadable run files said to be unreadable (not corrupt), an output path under a
file, a hand-edited model.json preprocessing, the code a resumed run was trained under, FitResult's repr."""
from __future__ import annotations

import builtins
import copy
import errno
import io
import json
import os
import shutil
import warnings

import numpy as np
import pytest

import qianyi
from qianyi.errors import CheckpointError, DataError, OutputError, QianyiWarning

from .conftest import toy_task
from .test_hostile import FAST, _blobs, _cli
from .test_text import _toy_text


def _unreadable(monkeypatch, path) -> None:
    """Every open of ``path`` fails with EACCES, as after ``chmod 000`` for a user who is not root (the tests run as
    root here, which reads any file)."""
    target = os.path.abspath(path)
    real_open, real_io_open = builtins.open, io.open

    def guarded(real):
        def opener(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == target:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
            return real(file, *args, **kwargs)
        return opener
    monkeypatch.setattr(builtins, "open", guarded(real_open))
    monkeypatch.setattr(io, "open", guarded(real_io_open))


def _csv(path, n: int = 90, d: int = 5) -> str:
    """Blobs as a CSV table with named columns (a run records them as its feature_names)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    X = rng.normal(0, 1, (n, d)) + 3 * np.eye(3, d)[y]
    rows = [",".join(["label", *(f"f{i}" for i in range(d))])] + [",".join([str(c), *map(str, x)]) for c, x in zip(y, X)]
    path.write_text("\n".join(rows) + "\n")
    return f"csv:{path}"


@pytest.fixture
def vector_run(tmp_path, capsys):
    src = _csv(tmp_path / "s.csv")
    rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", src, *FAST, "--out", str(tmp_path / "r"))
    assert rc == 0, err
    return tmp_path / "r", src


# -- unreadable run files (review: faults #5) ----------------------------------------------------------------------

def test_a_checkpoint_that_cannot_be_opened_is_not_called_corrupt(tmp_path, monkeypatch):
    from qianyi.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    _unreadable(monkeypatch, path)
    with pytest.raises(CheckpointError, match="cannot be read: permission denied; fix its permissions") as info:
        load_checkpoint(path)
    assert "corrupt" not in str(info.value) and "elete" not in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the file was sound all along
    path.unlink()
    path.mkdir()  # a folder where the checkpoint is: said, not "corrupt ... delete it"
    with pytest.raises(CheckpointError, match="it is a folder, not a file") as info:
        load_checkpoint(path)
    assert "corrupt" not in str(info.value)
    path.rmdir()
    path.write_bytes(b"\x00garbage" * 10)  # bytes read and found bad: still corrupt, delete it
    with pytest.raises(CheckpointError, match="it is corrupt or not a qianyi checkpoint. Delete it"):
        load_checkpoint(path)


def test_qianyi_run_on_an_unreadable_checkpoint_asks_for_permissions(tmp_path, capsys, monkeypatch):
    src = _blobs(tmp_path / "s.npz")
    out = tmp_path / "r"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x00garbage")  # never read: the open fails first
    _unreadable(monkeypatch, out / "checkpoint.pt")
    rc, err = _cli(capsys, "run", "source-only", "--source", src, "--target", src, *FAST, "--out", str(out))
    assert rc == 2 and "checkpoint.pt' cannot be read: permission denied; fix its permissions" in err, err
    assert "corrupt" not in err and "elete" not in err and "Traceback" not in err


def test_unreadable_result_model_json_and_model_pt_say_permission_denied(vector_run, capsys, monkeypatch):
    out, src = vector_run
    for name, argv in (("result.json", ["report", str(out)]), ("model.json", ["predict", str(out), "--data", src]),
                       ("model.pt", ["predict", str(out), "--data", src])):  # model.pt: a traceback before
        _unreadable(monkeypatch, out / name)
        rc, err = _cli(capsys, *argv)
        monkeypatch.undo()
        assert rc == 2 and f"{name}' cannot be read" in err and "permission denied; fix its permissions" in err, err
        assert "corrupt" not in err and "delete" not in err and "rerun" not in err and "Traceback" not in err, err
    from qianyi.train.result import RunResult

    _unreadable(monkeypatch, out / "result.json")
    with pytest.raises(DataError, match="permission denied"):
        RunResult.read(out / "result.json")
    monkeypatch.undo()
    (out / "result.json").write_text('{"method": ')  # read and found bad: corrupt, as before
    with pytest.raises(DataError, match="it is corrupt: delete its run folder"):
        RunResult.read(out / "result.json")


def test_a_run_folder_that_cannot_be_searched_says_so(vector_run, capsys, monkeypatch):
    # a folder without execute permission: pathlib's is_file raised PermissionError (a traceback in _io.folder_kind)
    # instead of returning False; faked, as root searches any folder
    out, src = vector_run
    inside, real_stat = os.path.abspath(out) + os.sep, os.stat

    def stat(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(path).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(os, "stat", stat)
    says = f"the folder {str(out)!r} cannot be searched: permission denied; a folder needs read and execute permission"
    for argv in (["predict", str(out), "--data", src], ["report", str(out)]):
        try:
            rc, err = _cli(capsys, *argv)
        except OSError as exc:
            raise AssertionError(f"{argv}: {exc!r}") from exc
        assert rc == 2 and says in err and "Traceback" not in err, (argv, err)
    with pytest.raises(DataError, match="cannot be searched: permission denied"):
        qianyi.load_model(out)
    from qianyi.train.artefact import read_model_meta

    with pytest.raises(DataError) as caught:  # the folder named, not the file given
        read_model_meta(out / "model.pt")
    assert str(caught.value).startswith(says), caught.value


def test_an_output_path_under_a_file_names_that_file(tmp_path, vector_run, capsys):
    from qianyi._io import write_text

    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile / "p.csv", afile / "sub" / "p.csv"):  # EEXIST and ENOTDIR from mkdir: "File exists" before
        with pytest.raises(OutputError, match=f"{str(afile)!r} is a file, not a folder; choose another output path"):
            write_text(path, "y")
    out, src = vector_run
    rc, err = _cli(capsys, "predict", str(out), "--data", src, "--out", str(afile / "p.csv"))
    assert rc == 2 and f"{str(afile)!r} is a file, not a folder" in err and "File exists" not in err, err


# -- a hand-edited model.json preprocessing (review: faults #7) ----------------------------------------------------

def _edit(meta: dict, path: str, value) -> dict:
    meta = copy.deepcopy(meta)
    *parents, last = path.split(".")
    obj = meta
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    if value is _DEL:
        del obj[last]
    elif isinstance(obj, list):
        obj[int(last)] = value
    else:
        obj[last] = value
    return meta


_DEL = object()


@pytest.mark.parametrize("path, value, field", [
    ("preprocessing.feature_names", 7, "feature_names"),
    ("preprocessing.feature_names.0", None, "feature_names"),
    ("preprocessing.feature_names", ["a"], "feature_names"),  # not one name per feature
    ("preprocessing.standardize", "x", "standardize"),
    ("preprocessing.standardize", None, "standardize"),
    ("preprocessing.standardize", {}, "standardize"),
    ("preprocessing.standardize.mean", _DEL, "standardize"),
    ("preprocessing.standardize.std", [], "standardize"),
    ("preprocessing.standardize.std.0", 0.0, "standardize"),
    ("preprocessing.standardize.mean.0", float("inf"), "standardize"),
    ("preprocessing.standardize.mean.0", True, "standardize"),
    ("preprocessing.text", "x", "text"),
    ("preprocessing.vector_transform", _DEL, "vector_transform"),  # what load_task always writes for vectors
    ("preprocessing.vector_transform", "log2", "vector_transform"),
    ("preprocessing.counts", "x", "counts"),
    ("preprocessing.canvas", _DEL, "canvas"),
    ("preprocessing.canvas", {"size": 8, "channels": 1}, "canvas"),  # an image canvas on a vector model
])
def test_a_hand_edited_vector_preprocessing_is_named_not_a_traceback(vector_run, capsys, path, value, field):
    out, src = vector_run
    meta = json.loads((out / "model.json").read_text())
    assert {"canvas", "feature_names", "vector_transform", "counts", "standardize"} <= set(meta["preprocessing"])
    edited = _edit(meta, path, value)
    edited.pop("preprocessing_sha256", None)  # as in a model.json written before it was recorded: the fields are checked
    (out / "model.json").write_text(json.dumps(edited))
    rc, err = _cli(capsys, "predict", str(out), "--data", src)
    assert rc == 2 and "model.json' cannot be read" in err and f"preprocessing.{field}" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("path, value", [("preprocessing.standardize", _DEL), ("preprocessing", _DEL),
                                         ("preprocessing", {}), ("preprocessing.standardize.std.0", 2.5),
                                         ("preprocessing.feature_names.0", "renamed")])
def test_an_edited_preprocessing_is_refused_by_its_recorded_digest(vector_run, capsys, path, value):
    # a deleted standardize (or preprocessing) predicted on unscaled inputs, exit 0: 75.8% instead of 93%
    out, src = vector_run
    rc, err = _cli(capsys, "predict", str(out), "--data", src)
    assert rc == 0, err
    meta = json.loads((out / "model.json").read_text())
    (out / "model.json").write_text(json.dumps(_edit(meta, path, value)))
    rc, err = _cli(capsys, "predict", str(out), "--data", src)
    assert rc == 2 and "its preprocessing is not the one its run recorded (preprocessing_sha256 differs)" in err, err


def test_every_kind_of_saved_model_still_loads(tmp_path, capsys):
    """Images, vectors (standardised or not), text and a task built in Python (no preprocessing) load and predict
    as their runs scored them."""
    vectors = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", shift=0.5, seed=1)
    images = _blobs(tmp_path / "is.npz", shape=(1, 8, 8)), _blobs(tmp_path / "it.npz", shape=(1, 8, 8), seed=1)
    _toy_text(tmp_path / "txt")
    lines = f"lines:{tmp_path / 'txt' / 's'}", f"lines:{tmp_path / 'txt' / 't'}"
    kinds = {"vectors": (vectors, []), "unstandardised": (vectors, ["--no-standardize"]), "images": (images, []),
             "text": (lines, [])}
    for kind, ((source, spec), extra) in kinds.items():
        out = tmp_path / kind
        rc, err = _cli(capsys, "run", "source-only", "--source", source, "--target", spec, "--target-test", spec,
                       *FAST, *extra, "--out", str(out))
        assert rc == 0, err
        meta = json.loads((out / "model.json").read_text())
        assert "preprocessing_sha256" in meta
        assert ("standardize" in meta["preprocessing"]) == (kind == "vectors")
        rc, err = _cli(capsys, "predict", str(out), "--data", spec, "--out", str(tmp_path / f"{kind}.csv"))
        assert rc == 0 and "accuracy on" in err, (kind, err)
        res = json.loads((out / "result.json").read_text())
        assert f"{100 * res['target_accuracy']:.2f}%" in err, (kind, err)
    from qianyi.train.artefact import load_model

    task = toy_task()  # built in Python: nothing to apply, and nothing asked of it
    result, _ = qianyi.run("source-only", task, qianyi.TrainConfig(**_FAST_CFG), out=tmp_path / "python")
    assert json.loads((tmp_path / "python" / "model.json").read_text())["preprocessing"] == {}
    model = load_model(tmp_path / "python")
    assert np.mean(model.predict(task.target_test.X) == task.target_test.y) == pytest.approx(result.target_accuracy)


_FAST_CFG = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "progress": False}


def test_text_preprocessing_is_checked_for_the_keys_tokenizing_reads(tmp_path, capsys):
    from qianyi.train.artefact import _check_meta_fields

    _toy_text(tmp_path / "txt")
    lines = f"lines:{tmp_path / 'txt' / 't'}"
    out = tmp_path / "r"
    rc, err = _cli(capsys, "run", "source-only", "--source", lines, "--target", lines, *FAST, "--out", str(out))
    assert rc == 0, err
    meta = json.loads((out / "model.json").read_text())
    meta.pop("preprocessing_sha256", None)
    for path, value in (("preprocessing.text.bigrams", _DEL), ("preprocessing.text.max_len", _DEL),
                        ("preprocessing.text.max_len", 10 ** 12), ("preprocessing.text.vocab", [1, 2]),
                        ("preprocessing.text.tokenizer", None), ("preprocessing.text", {})):
        (out / "model.json").write_text(json.dumps(_edit(meta, path, value)))
        rc, err = _cli(capsys, "predict", str(out), "--data", lines)
        assert rc == 2 and "preprocessing.text" in err and "Traceback" not in err, (path, err)
    # MiniLM's WordPiece preprocessing has no bigrams (and a vocab_sha256): valid as written
    wordpiece = _edit(meta, "preprocessing.text", {"tokenizer": "wordpiece:minilm", "lowercase": True,
                                                   "strip_accents": True, "max_len": 256, "vocab_sha256": "ab" * 32,
                                                   "vocab": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]})
    _check_meta_fields(wordpiece)
    with pytest.raises(TypeError, match="preprocessing.text"):
        _check_meta_fields(_edit(wordpiece, "preprocessing.text.max_len", 128))  # not the model's input length


# -- the code a resumed run was trained under (review: faults #11) -------------------------------------------------

def test_a_run_resumed_under_other_code_records_both_digests(tmp_path, monkeypatch):
    from qianyi.methods import get_method
    from qianyi.train import TrainConfig, engine
    from qianyi.train.checkpoint import FILENAME, load_checkpoint, save_checkpoint

    from .test_engine import _interrupt_after

    task = toy_task()
    cfg = dict(epochs=2, steps_per_epoch=5, batch_size=16, progress=False)
    real = engine.code_digest
    now = real(get_method("dan"))
    monkeypatch.setattr(engine, "code_digest", lambda *m: now + "+0ld0")  # as if the method's own code differed
    _interrupt_after(engine.Trainer(get_method("dan"), TrainConfig(**cfg, checkpoint_dir=str(tmp_path))), task, 5)
    state = load_checkpoint(tmp_path / FILENAME)
    assert state["codes"] == [now + "+0ld0"]
    del state["codes"]  # as a checkpoint written before it listed them: its one "code" stands for its steps
    save_checkpoint(tmp_path / FILENAME, state)
    monkeypatch.setattr(engine, "code_digest", real)
    monkeypatch.setattr(engine.store, "_WARNED_OTHER_CODE", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, fit = qianyi.run("dan", task, TrainConfig(**cfg), out=tmp_path)
    said = [str(w.message) for w in caught if issubclass(w.category, QianyiWarning) and "checkpointed by" in str(w.message)]
    # the method's code changed, not qianyi's: "other qianyi code" was untrue
    assert len(said) == 1 and "checkpointed by other code of method 'dan' (its own code changed" in said[0], said
    assert "other qianyi code" not in said[0]
    assert fit.resumed_from_step == 5 and fit.codes == [now + "+0ld0", now]
    assert result.versions["code"] == now and result.versions["codes"] == [now + "+0ld0", now]
    assert json.loads((tmp_path / "result.json").read_text())["versions"]["codes"] == [now + "+0ld0", now]
    shutil.rmtree(tmp_path)
    result, fit = qianyi.run("dan", task, TrainConfig(**cfg), out=tmp_path)  # one code: no list, as before
    assert fit.codes == [now] and "codes" not in result.versions


def test_a_checkpoint_whose_code_is_not_text_is_called_damaged(tmp_path):
    # `code` 5 went to str.partition in the resume warning: an AttributeError traceback (review: diff5c #3)
    from qianyi.errors import CheckpointError
    from qianyi.methods import get_method
    from qianyi.train import TrainConfig, engine
    from qianyi.train.checkpoint import FILENAME, load_checkpoint, save_checkpoint

    from .test_engine import _interrupt_after

    task = toy_task()
    cfg = dict(epochs=2, steps_per_epoch=5, batch_size=16, progress=False)
    _interrupt_after(engine.Trainer(get_method("dan"), TrainConfig(**cfg, checkpoint_dir=str(tmp_path))), task, 5)
    state = load_checkpoint(tmp_path / FILENAME)
    state["code"] = 5
    state.pop("codes")
    save_checkpoint(tmp_path / FILENAME, state)
    with pytest.raises(CheckpointError, match="is damaged .its code digests are 5"):
        qianyi.run("dan", task, TrainConfig(**cfg), out=tmp_path)


def test_other_code_says_whose_code_changed():
    from qianyi.train.engine import _other_code

    # a checkpoint of a qianyi from before notebook methods' own code was hashed: an upgrade, not an edit
    said = _other_code("aaa", "bbb+x", "mine")
    assert said.startswith("other qianyi code (aaa; ") and "did not record method 'mine'" in said
    assert _other_code("aaa", "aaa+x", "mine").startswith("other code of method 'mine'")  # same qianyi: an edit

    assert _other_code("aaa", "bbb", "dan").startswith("other qianyi code (aaa; ")
    assert _other_code("aaa+x", "aaa+y", "mine").startswith("other code of method 'mine' (its own code changed")
    assert _other_code("aaa+x", "bbb+y", "mine").startswith("other code, of qianyi and of method 'mine'")
    assert "from before checkpoints recorded it" in _other_code(None, "bbb", "dan")


# -- FitResult's repr (review: notebook #12) -----------------------------------------------------------------------

def test_fit_result_repr_is_one_short_line():
    _, fit = qianyi.run("dann", toy_task(), qianyi.TrainConfig(**_FAST_CFG))
    text = repr(fit)
    assert text.startswith("FitResult('dann', Backbone, epochs=1, steps=2") and "\n" not in text and len(text) < 200
    assert "Linear" not in text and "cls" not in text  # neither the network's modules nor the history
    assert np.isfinite(fit.history[-1]["source_val_acc"])


def test_a_text_task_built_in_python_and_tokenised_saves_a_model_that_loads(tmp_path):
    """Its preprocessing is {"text": ...} alone (no canvas, no feature_names: load_task writes those): the load
    check refused the model the run had just saved, calling it corrupt (review: diff5c #1)."""
    from qianyi.data import Domain, TransferTask
    from qianyi.data.text import tokenize_task
    from qianyi.train.artefact import load_model

    words = (["bad awful poor", "terrible bad worst"], ["good great fine", "nice lovely good"])

    def domain(n: int, name: str) -> Domain:
        texts = [words[i % 2][(i // 2) % 2] + " word" * (i % 3) for i in range(n)]
        return Domain(np.array(texts, dtype=object), np.arange(n) % 2, name, class_names=("neg", "pos"))

    task = tokenize_task(TransferTask.from_domains(domain(40, "s"), domain(40, "t"), seed=0))
    assert list(task.preprocessing) == ["text"]
    qianyi.run("source-only", task, qianyi.TrainConfig(**_FAST_CFG), out=tmp_path / "text")
    model = load_model(tmp_path / "text")
    assert model.predict(model.prepare(domain(6, "new"))).shape == (6,)

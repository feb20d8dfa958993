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

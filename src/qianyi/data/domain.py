"""`Domain` (inputs + optional labels) and `TransferTask` (source, target, target test split).

A `TransferTask` keeps the target's test labels apart from everything used in training: the
engine receives `task.source`, `task.source_val` and `task.target` (whose labels are handed only
to methods that declare ``uses_target_labels``, i.e. the oracle); `task.target_test` (if any) is read once,
for the final score.
"""
from __future__ import annotations

import decimal
import hashlib
import numbers
import sys
import unicodedata
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import DataError, LabelMismatchError, QianyiWarning
from .lazy import is_lazy


def _as_texts(X: object) -> np.ndarray | None:
    """Raw text (a 1-d array, list or pandas Series of str, :mod:`qianyi.data.text`) as a new 1-d object array of
    str; None if X is not text."""
    if not isinstance(X, np.ndarray):
        if isinstance(X, (list, tuple)):
            first = X[0] if len(X) else None
        elif _is_pandas(X, ndim=1):
            first = X.iloc[0] if len(X) else None  # type: ignore[attr-defined]
        else:
            return None
        if not isinstance(first, str):  # (a long list of numbers is not copied into objects)
            return None
        X = np.asarray(X, dtype=object)
    if X.ndim == 1 and X.dtype.kind in "UO" and len(X) and all(isinstance(t, str) for t in X):
        out = np.empty(len(X), dtype=object)
        out[:] = [str(t) for t in X]
        return out
    return None


def _is_pandas(X: object, ndim: int) -> bool:
    """Whether ``X`` is a pandas object of ``ndim`` axes (a Series: 1, a DataFrame: 2)."""
    return type(X).__module__.startswith("pandas") and getattr(X, "ndim", None) == ndim and hasattr(X, "to_numpy")


def refuse_sparse_matrix(X: object, who: str) -> None:
    """A DataError for a scipy.sparse matrix (``np.asarray`` would make a 0-d object array of it)."""
    sparse = sys.modules.get("scipy.sparse")  # not imported: X cannot be one
    if sparse is not None and sparse.issparse(X):
        raise DataError(f"{who} are a scipy.sparse matrix of shape {X.shape}; give X.toarray() (dense), or reduce "  # type: ignore[attr-defined]
                        "the features first (e.g. TruncatedSVD) if the dense array would not fit in memory "
                        "(an svmlight: spec reads SVMlight files densely)")


def _is_number(v: object) -> bool:
    """A real number, bool or missing value (None, NaN, pd.NA) held as an object: ``Decimal`` too (SQL NUMERIC
    columns), never a str that reads as a number (a ZIP code "02134")."""
    return _missing(v) or isinstance(v, (numbers.Real, decimal.Decimal, np.bool_))  # (bool is an int)


def _missing(v: object) -> bool:
    """None or pandas' NA (known without importing pandas); a float NaN is a number."""
    return v is None or type(v).__name__ == "NAType"


def _object_numbers(X: np.ndarray) -> np.ndarray:
    """An object array of :func:`_is_number` entries as float64, missing values as NaN (TypeError otherwise)."""
    if not all(_is_number(v) for v in X.flat):
        raise TypeError("not numbers")
    return np.array([np.nan if _missing(v) else float(v) for v in X.flat], np.float64).reshape(X.shape)


def _non_numeric(X: np.ndarray, columns: Sequence[object] | None) -> list[object]:
    """The columns of a 2-d object array that hold something other than numbers (by name when ``columns`` names
    them)."""
    if X.ndim != 2:
        return []
    return [columns[j] if columns is not None else j for j in range(X.shape[1])
            if not all(_is_number(v) for v in X[:, j])]


def _not_number_columns(frame: object) -> list[object]:
    """The columns of a DataFrame that are not real numbers or bools (numpy's or pandas' nullable dtypes, or
    object columns of numbers such as ``Decimal``): dates, time spans, categories, text and complex numbers are
    named, never read as numbers."""
    from pandas.api.types import is_bool_dtype, is_complex_dtype, is_numeric_dtype

    return [c for j, (c, dt) in enumerate(frame.dtypes.items())  # type: ignore[attr-defined]
            if not (is_bool_dtype(dt) or (is_numeric_dtype(dt) and not is_complex_dtype(dt))
                    or (dt == object and all(_is_number(v) for v in frame.iloc[:, j])))]  # type: ignore[attr-defined]


#: Inputs qianyi checked and then made read-only itself (:func:`_freeze`), by id: unchanged since, not scanned again.
_FROZEN: "weakref.WeakValueDictionary[int, np.ndarray]" = weakref.WeakValueDictionary()


def _checked(X: object) -> bool:
    """Whether ``X`` is inputs qianyi checked and made read-only itself (:func:`_freeze`), still read-only."""
    return isinstance(X, np.ndarray) and _FROZEN.get(id(X)) is X and not X.flags.writeable


def _freeze(d: "Domain") -> "Domain":
    """Make ``d``'s inputs read-only and known to be checked (:meth:`Domain._replace` then shares them, and copies
    of them are not scanned again); only for a domain qianyi has just made, whose inputs no one else holds."""
    if isinstance(d.X, np.ndarray) and d.X.dtype == np.float32:
        d.X.setflags(write=False)
        _FROZEN[id(d.X)] = d.X
    return d


class _Fresh:
    """Inputs a :class:`Domain` takes as they are, not copied: an array of float32 samples qianyi has just made from
    a domain's checked inputs and no one else holds; ``finite``: made from inputs still as checked (read-only since,
    :func:`_freeze`), so not scanned for NaN again."""

    __slots__ = ("X", "finite")

    def __init__(self, X: np.ndarray, finite: bool) -> None:
        self.X, self.finite = X, finite


def _refuse_non_finite(X: np.ndarray, name: str, columns: list | None) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.unique(np.nonzero(bad.reshape(len(X), -1))[0])
        where = (f" in the column(s) {[columns[j] for j in np.flatnonzero(bad.any(0))][:5]}"
                 if columns is not None else "")
        raise DataError(f"domain {name!r}: inputs X contain NaN or inf in {len(rows)} sample(s) "
                        f"(first rows: {rows[:5].tolist()}){where}; drop or impute them first")


def _as_inputs(X: object, name: str) -> np.ndarray:
    if isinstance(X, _Fresh):  # (Domain.subset, Domain._replace)
        if not X.finite:
            _refuse_non_finite(X.X, name, None)
        return X.X
    if _checked(X):  # checked, and read-only since: a writable copy of its own, not scanned again
        return X.copy()
    texts = _as_texts(X)
    if texts is not None:  # raw text: load_task tokenises it (qianyi.data.text)
        return texts
    if is_lazy(X):  # a streamed image folder: decoded (and checked) batch by batch
        if len(X) == 0:
            raise DataError(f"domain {name!r} is empty (0 samples); check the path or filter that made it")
        return X  # type: ignore[return-value]
    refuse_sparse_matrix(X, f"domain {name!r}: inputs X")
    columns = list(X.columns) if _is_pandas(X, ndim=2) else None  # type: ignore[attr-defined]
    if columns is not None:  # number and bool columns (nullable Int64, Float64, boolean too), pd.NA as NaN
        bad = _not_number_columns(X)
        if bad:
            raise DataError(f"domain {name!r}: inputs X have column(s) that are not numbers: {bad[:5]}"
                            + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
                            + "; drop them or encode them (dates as numbers of your choosing, categories and text "
                            "e.g. with pd.get_dummies(df, prefix_sep='='))")
        X = (X.to_numpy(dtype=np.float32, na_value=np.nan)  # type: ignore[attr-defined]
             if not any(dt == object for dt in X.dtypes) else _object_numbers(X.to_numpy(dtype=object)))  # type: ignore
    elif not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise DataError(f"domain {name!r}: inputs X cannot be turned into an array ({exc}); "
                            "pass a numeric array of shape (n, d) or (n, c, h, w)") from exc
    if X.dtype == object and X.ndim == 1:
        other = [i for i, t in enumerate(X) if not isinstance(t, str)]
        raise DataError(f"domain {name!r}: 1-d inputs are text, one str per sample (docs/text.md), but entry "
                        f"{other[0]} is {X[other[0]]!r} (a {type(X[other[0]]).__name__}; {len(other)} entries are "
                        "not str): drop or fill them" if other and len(other) < len(X) else
                        f"domain {name!r}: inputs X have shape {X.shape}; expected (n, d) vectors, (n, h, w) grey "
                        "images, (n, c, h, w) images, or text (a 1-d array of str)")
    if X.dtype == object:  # numbers held as objects are numbers (not text that reads as one: "02134")
        try:
            X = _object_numbers(X)
        except (TypeError, ValueError):
            bad = _non_numeric(X, columns)
            raise DataError(f"domain {name!r}: inputs X have dtype object with entries that are not numbers"
                            + (f"; the column(s) {bad[:5]} are not numbers" if bad else "")
                            + ": drop them or encode them (e.g. pd.get_dummies(df, prefix_sep='='))") from None
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"domain {name!r}: inputs X have dtype {X.dtype}; expected a numeric array"
                        + (" (or text: a 1-d array of str)" if X.dtype.kind in "US" else ""))
    if X.ndim == 3:  # (n, h, w) grey images
        X = X[:, None]
    if X.ndim not in (2, 4):
        raise DataError(f"domain {name!r}: inputs X have shape {X.shape}; expected (n, d) vectors, "
                        "(n, h, w) grey images or (n, c, h, w) images")
    if X.shape[0] == 0:
        raise DataError(f"domain {name!r} is empty (0 samples); check the path or filter that made it")
    if 0 in X.shape[1:]:
        raise DataError(f"domain {name!r}: inputs X have shape {X.shape} with a zero-sized dimension")
    X = np.array(X, dtype=np.float32, copy=True)  # never share (or later mutate) the caller's array
    _refuse_non_finite(X, name, columns)
    return X


def _as_labels(y: object, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"domain {name!r}: labels y have shape {y.shape}; expected a 1-d array of class indices")
    if len(y) != n:
        raise DataError(f"domain {name!r}: {n} inputs but {len(y)} labels; they must have the same length")
    if not np.issubdtype(y.dtype, np.number):
        raise DataError(f"domain {name!r}: labels y have dtype {y.dtype}; encode them as integers 0..k-1 "
                        "(or load them through a reader, which does that)")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"domain {name!r}: labels y must be whole class indices, got non-integer values")
    if len(y) and (np.abs(y) > 2**62).any():
        raise DataError(f"domain {name!r}: labels y hold values as large as {np.abs(y).max():.3g}; "
                        "labels are class indices 0..k-1")
    y = y.astype(np.int64, copy=True)
    if (y < 0).any():
        raise DataError(f"domain {name!r}: labels y contain negative values ({int(y.min())}); use 0..k-1")
    return y


#: Labels are class indices; an index above this and above the sample count is a mistake, not a class.
MAX_CLASS_INDEX = 1000


def _check_label_range(y: np.ndarray, name: str) -> None:
    """A label of 1e9 would mean 1e9 classes (and a 1e9-wide output layer): say so instead."""
    top = int(y.max()) if len(y) else 0
    if top >= max(MAX_CLASS_INDEX, len(y)):
        k = len(np.unique(y))
        raise DataError(f"domain {name!r}: the largest label is {top} but there are only {k} distinct labels among "
                        f"{len(y)} samples; labels must be class indices 0..k-1. Re-encode them (e.g. with "
                        "numpy.unique(y, return_inverse=True)), or give them as text so a reader encodes them")


def _frame_columns(X: object, name: str) -> tuple[str, ...] | None:
    """The column names of a pandas DataFrame whose columns are all strings and unique, else None (positions
    then; duplicate names, which pandas allows, with a warning)."""
    columns = getattr(X, "columns", None)
    if columns is None or not type(X).__module__.startswith("pandas"):
        return None
    names = list(columns)
    if not names or not all(isinstance(c, str) for c in names):
        return None
    if len(set(names)) != len(names):
        dup = sorted(c for c, k in Counter(names).items() if k > 1)
        warnings.warn(f"domain {name!r}: the DataFrame's column names are not unique ({dup[:5]} repeat), so its "
                      "columns are matched by position, not by name; rename the repeated "
                      "columns to have them matched by name", QianyiWarning, stacklevel=4)
        return None
    return tuple(names)


def _warn_label_gaps(source: Domain) -> None:
    """Unnamed source labels that skip indices ({3, 7}) build a network with an output per index up to the largest,
    the skipped ones classes without a sample: say so, with what to do."""
    assert source.y is not None
    present = np.unique(source.y)
    if source.class_names is not None or len(present) == source.n_classes:
        return
    empty = sorted(set(range(source.n_classes)) - set(present.tolist()))
    shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
    warnings.warn(f"source {source.name!r}: its labels {present[:10].tolist()}{' ...' if len(present) > 10 else ''} "
                  f"are class indices, so the network gets {source.n_classes} outputs, {len(empty)} of them for the "
                  f"classes {shown}, which have no source sample; if the labels are names, "
                  "not indices, encode them as 0..k-1: classes, y = numpy.unique(y, return_inverse=True), then "
                  "Domain(X, y, class_names=[str(c) for c in classes]) (encode the target's labels with the same "
                  "classes), or use qianyi.DomainAdapter, which encodes any labels", QianyiWarning, stacklevel=3)


@dataclass(frozen=True, eq=False)
class Domain:
    """One domain: inputs ``X`` (float32; (n, d) vectors or (n, c, h, w) images), optional labels.

    ``origin`` names the underlying pool of samples (e.g. ``"mnist"`` for both ``mnist`` and
    ``mnist-m``): two domains of one origin are split into disjoint halves when paired.
    ``style`` is ``"uci"`` for images already in the UCI 8x8 block-count format.
    ``feature_names`` names the columns of vector inputs (a CSV header; a pandas DataFrame's string column
    names when not given and unique): two domains with names are matched column by column by name, not by position.
    ``ids`` names each sample (an image folder's files, relative to the folder): ``qianyi predict``
    writes them beside the predictions.
    ``keys`` holds one digest per sample (:func:`sample_keys`, 16 bytes) of the sample it was made from,
    before any canvas, shift or re-rendering: ``mnist-m`` and ``rotmnist`` rows carry the key of their MNIST
    image. :func:`qianyi.data.load_task` sets them and compares them to find target test samples that are
    shifted or re-rendered copies of labelled source samples; :meth:`subset` and :meth:`replace` keep them.
    ``sorted_names`` is true when the readers made ``class_names`` by sorting text labels (a CSV or JSON Lines
    label column, class folders): their order is no index order, so against unnamed class indices they are
    refused, where names in a canonical order (a built-in's, SVMlight's negative/positive, given ones) match by
    position; :meth:`subset` and :meth:`replace` keep it.
    """

    X: np.ndarray
    y: np.ndarray | None = None
    name: str = "domain"
    class_names: tuple[str, ...] | None = None
    origin: str | None = None
    style: str | None = None
    feature_names: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    keys: np.ndarray | None = None
    sorted_names: bool = False

    def __post_init__(self) -> None:
        if self.feature_names is None:  # a DataFrame's column names: matched by name, as every pandas entry point does
            object.__setattr__(self, "feature_names", _frame_columns(self.X, self.name))
        X = _as_inputs(self.X, self.name)
        object.__setattr__(self, "X", X)
        if self.y is not None:
            y = _as_labels(self.y, len(X), self.name)
            object.__setattr__(self, "y", y)
            if self.class_names is not None and y.max() >= len(self.class_names):
                raise DataError(f"domain {self.name!r}: label {int(y.max())} but only "
                                f"{len(self.class_names)} class names")
            if self.class_names is None:
                _check_label_range(y, self.name)
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.origin is None:
            object.__setattr__(self, "origin", self.name)
        if self.feature_names is not None:
            names = tuple(str(c) for c in self.feature_names)
            if X.ndim != 2 or len(names) != X.shape[1]:
                raise DataError(f"domain {self.name!r}: {len(names)} feature names for inputs of shape {X.shape}")
            if len(set(names)) != len(names):
                dup = sorted(c for c, k in Counter(names).items() if k > 1)
                raise DataError(f"domain {self.name!r}: duplicate feature names {dup[:5]}; rename those columns")
            object.__setattr__(self, "feature_names", names)
        if self.ids is not None:
            ids = tuple(str(i) for i in self.ids)
            if len(ids) != len(X):
                raise DataError(f"domain {self.name!r}: {len(ids)} sample ids for {len(X)} samples")
            object.__setattr__(self, "ids", ids)
        if self.keys is not None:
            keys = np.array(self.keys, copy=True)
            if keys.ndim != 1 or keys.dtype.kind != "S" or len(keys) != len(X):
                raise DataError(f"domain {self.name!r}: sample keys of shape {keys.shape} and dtype {keys.dtype} for "
                                f"{len(X)} samples; give one 16-byte digest per sample (sample_keys(X)), take rows "
                                "with .subset(index) (it keeps each row's key), or pass keys=None")
            keys.setflags(write=False)
            object.__setattr__(self, "keys", keys)

    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        lab = "unlabelled" if self.y is None else f"{self.n_classes} classes"
        return f"Domain({self.name!r}, n={len(self)}, shape={self.sample_shape}, {lab})"

    @property
    def is_image(self) -> bool:
        return self.X.ndim == 4

    @property
    def is_text(self) -> bool:
        """Raw text, one string per sample (tokenised by :func:`qianyi.data.load_task`)."""
        return self.X.dtype == object

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def labelled(self) -> bool:
        return self.y is not None

    @property
    def n_classes(self) -> int:
        if self.class_names is not None:
            return len(self.class_names)
        if self.y is None:
            raise DataError(f"domain {self.name!r} has no labels and no class names")
        return int(self.y.max()) + 1

    def subset(self, index: np.ndarray | Sequence[int], name: str | None = None) -> "Domain":
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        X = self.X.view(index) if is_lazy(self.X) else self.X[index]
        if (isinstance(X, np.ndarray) and X.dtype == np.float32 and X.ndim == self.X.ndim and len(X)
                and not np.may_share_memory(X, self.X)):  # a new array (fancy indexing): not copied again
            X = _Fresh(X, finite=_checked(self.X))  # type: ignore[assignment]
        return Domain(X, None if self.y is None else self.y[index], name or self.name,
                      self.class_names, self.origin, self.style, self.feature_names,
                      None if self.ids is None else tuple(self.ids[int(i)] for i in index.reshape(-1)),
                      None if self.keys is None else self.keys[index], self.sorted_names)

    def replace(self, **changes: object) -> "Domain":
        fields = dict(X=self.X, y=self.y, name=self.name, class_names=self.class_names,
                      origin=self.origin, style=self.style, feature_names=self.feature_names, ids=self.ids,
                      keys=self.keys, sorted_names=self.sorted_names)
        fields.update(changes)
        return Domain(**fields)  # type: ignore[arg-type]

    def _replace(self, **changes: object) -> "Domain":
        """:meth:`replace`, sharing inputs that qianyi made read-only (:func:`_freeze`) instead of copying them: for
        the intermediate domains of :func:`qianyi.data.load_task` (which gives out writable copies)."""
        if "X" in changes or not _checked(self.X):
            return self.replace(**changes)
        return self.replace(X=_Fresh(self.X, finite=True), **changes)


def sample_keys(X: np.ndarray) -> np.ndarray:
    """A 16-byte digest of each sample (identical samples, identical digests): of the bytes of its float32
    values, or of its text (raw text domains)."""
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind in "US":
        return np.array([hashlib.blake2b(str(x).encode(), digest_size=16).digest() for x in X], dtype="S16")
    flat = np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32)
    # each row's buffer hashed as it lies (the bytes row.tobytes() would copy): no copy of the whole data set
    return np.fromiter((hashlib.blake2b(row, digest_size=16).digest() for row in flat), dtype="S16", count=len(flat))


def stratified_split(y: np.ndarray | None, n: int, fraction: float, seed: int, *,
                     every_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (rest, part) with ``part`` about ``fraction`` of each class.

    A class of one sample stays in ``rest`` (a held-out split leaves it to training); with ``every_class`` (a
    subsample: ``part`` is what is kept) it goes to ``part``, so a subsample keeps every class."""
    rng = np.random.default_rng(seed)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    groups = [np.arange(n)] if y is None else [np.flatnonzero(y == c) for c in np.unique(y)]
    part: list[np.ndarray] = []
    for g in groups:
        g = rng.permutation(g)
        k = int(round(len(g) * fraction))
        if len(g) >= 2:
            k = min(max(k, 1), len(g) - 1)
        elif every_class:
            k = len(g)
        part.append(g[:k])
    part_idx = np.sort(np.concatenate(part)) if part else np.empty(0, np.int64)
    mask = np.ones(n, bool)
    mask[part_idx] = False
    return np.flatnonzero(mask), part_idx


@dataclass(frozen=True, eq=False)
class TransferTask:
    """Labelled source (train + validation), the target used for training (its labels unused), and an
    optional labelled target test split, scored once at the end.

    ``target_test`` is None when no labelled target exists (the usual case in practice): runs then
    report label-free scores, and say that accuracy is unknown. Build one with :meth:`from_domains`
    (checks and splits) or :func:`qianyi.load_task` (by name).
    """

    source: Domain
    source_val: Domain
    target: Domain
    target_test: Domain | None = None
    name: str = field(default="")
    #: What was done to the inputs (``load_task``: the image canvas, CSV column order), for saved models.
    preprocessing: dict | None = None
    #: How many target test samples are also target training samples (``load_task`` with a ``target_test`` that
    #: overlaps the target: the transductive protocol); the target's labels are then dropped (they are the test
    #: set's), so no oracle trains on them. 0: a held-out test split (or none).
    test_in_target: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"{self.source.name}->{self.target.name}")

    @property
    def n_classes(self) -> int:
        return self.source.n_classes

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.source.sample_shape

    @property
    def is_image(self) -> bool:
        return self.source.is_image

    def content_hash(self) -> str:
        """A hash of every split's inputs and labels (computed once): the data a run actually saw."""
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            h = hashlib.sha256()
            for d in (self.source, self.source_val, self.target, self.target_test):
                if d is None:
                    h.update(b"no target test")
                    continue
                h.update(repr((d.X.shape, str(d.X.dtype))).encode())
                h.update(d.X.fingerprint() if is_lazy(d.X) else np.ascontiguousarray(d.X).data)
                h.update(b"-" if d.y is None else b"y" + np.ascontiguousarray(d.y).tobytes())
            cached = h.hexdigest()[:16]
            object.__setattr__(self, "_content_hash", cached)
        return cached

    @property
    def scored(self) -> bool:
        """Whether a labelled target test split exists (else accuracy is unknown)."""
        return self.target_test is not None

    def describe(self) -> str:
        s = self.source
        test = (f"{len(self.target_test)} test" if self.target_test is not None
                else "no labelled test: target accuracy will be unknown")
        return (f"{self.name}: input {s.sample_shape}, {self.n_classes} classes; "
                f"source {len(s)} train + {len(self.source_val)} val, "
                f"target {len(self.target)} train (unlabelled{self.transductive_note()}) + {test}")

    def transductive_note(self) -> str:
        """``"; holds K of the N test samples: transductive"`` when the target trains on test samples (all of them,
        or all of its own: a target inside its test set), ``partly transductive`` when on some, else ``""``."""
        n = 0 if self.target_test is None else len(self.target_test)
        if not self.test_in_target:
            return ""
        return (f"; holds {self.test_in_target} of the {n} test samples: "
                f"{'transductive' if self.test_in_target >= min(n, len(self.target)) else 'partly transductive'}")

    @classmethod
    def from_domains(cls, source: Domain, target: Domain, *, test_fraction: float = 0.3,
                     val_fraction: float = 0.1, seed: int = 0, target_test: Domain | None = None,
                     name: str | None = None, classifier: bool = True,
                     optional_target_labels: bool = False) -> "TransferTask":
        """Check that ``source`` and ``target`` form a valid task, then split them.

        ``val_fraction`` of the source is held out for source accuracy and label-free model
        selection. The target (labelled or not) is used for training without its labels. Its
        test split is ``target_test`` if given; otherwise, for a labelled target, a stratified
        ``test_fraction`` of it (``seed``); with an unlabelled target or ``test_fraction=0`` (train on
        all of it) there is no test split, and accuracy is unknown.

        ``classifier=False`` is for a method that trains no classifier (DiscoGAN translates between two
        sets of images): the source may hold a single class, and the target's labels are not read (it is
        taken as unlabelled: no test split, no accuracy).

        ``optional_target_labels=True`` is for a caller that needs no target label (nothing trains on them, and a
        score is optional: ``measure``, ``advise``, ``run --target-all``): target labels that do not fit the
        source's classes (a class the source lacks, another encoding) are then dropped with a warning, the
        target read as unlabelled, instead of refused. Without ``target_test`` only.
        """
        if not classifier:
            target, target_test = target._replace(y=None), None
        if not source.labelled:
            from .readers import LABEL_COLUMNS

            raise DataError(f"source domain {source.name!r} has no labels; a transfer task needs a labelled source (a "
                            f"table's label column is found by the names {', '.join(LABEL_COLUMNS)}; name another "
                            "with ?label=COLUMN)")
        present = np.unique(source.y)
        if len(present) < 2 and classifier:
            raise DataError(f"source domain {source.name!r} has a single class ({_class_name(source, present)}); "
                            "a classifier needs at least two classes, and every prediction would be right")
        if classifier:
            _warn_label_gaps(source)
        if source.feature_names is not None:  # columns by name, as load_task matches them (not by position)
            from .tasks import match_features

            target = match_features(source.feature_names, target, f"source {source.name!r}")
            if target_test is not None:
                target_test = match_features(source.feature_names, target_test, f"source {source.name!r}")
        if source.sample_shape != target.sample_shape:
            raise DataError(f"source {source.name!r} has samples of shape {source.sample_shape} but target "
                            f"{target.name!r} has {target.sample_shape}; bring them to one canvas "
                            "(qianyi.load_task does this for images) or one feature dimension (SVMlight files: ?n_features=N)")
        if not 0.0 <= test_fraction < 1.0:
            raise DataError(f"test_fraction must be in [0, 1) (0: train on all of the target), got {test_fraction}")
        try:
            target = align_labels(source, target)
        except LabelMismatchError as exc:
            if not optional_target_labels or target_test is not None:
                raise
            warnings.warn(f"the labels of target {target.name!r} do not fit the source's classes, so they are left "
                          f"out: nothing here needs them, and the target is read as unlabelled (no target test "
                          f"split, target accuracy unknown). The mismatch: {exc}", QianyiWarning, stacklevel=2)
            target = align_labels(source, target._replace(y=None))
        if target_test is not None:
            if target_test.sample_shape != source.sample_shape:
                raise DataError(f"target test {target_test.name!r} has samples of shape {target_test.sample_shape}, "
                                f"expected {source.sample_shape}")
            if not target_test.labelled:
                raise DataError(f"target test domain {target_test.name!r} has no labels to score; a test set must "
                                "be labelled (leave it out to train without one)")
            target_test = align_labels(source, target_test)
        s_train, s_val = stratified_split(source.y, len(source), val_fraction, seed)
        _check_split(source, "source", "validation", s_train, s_val)
        src, src_val = source.subset(s_train), source.subset(s_val, name=f"{source.name} (val)")
        if target_test is None and target.labelled and test_fraction > 0:
            t_train, t_test = stratified_split(target.y, len(target), test_fraction, seed + 1)
            _check_split(target, "target", "test", t_train, t_test)
            tgt, tgt_test = target.subset(t_train), target.subset(t_test, name=f"{target.name} (test)")
        else:
            tgt, tgt_test = target, target_test
        if tgt_test is not None and len(tgt_test) < SMALL_TEST:
            warnings.warn(f"the target test split of {target.name!r} has only {len(tgt_test)} sample(s): its accuracy "
                          f"moves in steps of {100 / len(tgt_test):.3g} points; give more target data for a "
                          "meaningful score", QianyiWarning, stacklevel=2)
        return cls(src, src_val, tgt, tgt_test, name or f"{source.name}->{target.name}")


#: Below this many target test samples a task warns that its accuracy is coarse.
SMALL_TEST = 20


def _class_name(d: Domain, present: np.ndarray) -> str:
    k = int(present[0]) if len(present) else 0
    return repr(d.class_names[k]) if d.class_names is not None and k < len(d.class_names) else f"label {k}"


def _check_split(d: Domain, role: str, part: str, rest: np.ndarray, held: np.ndarray) -> None:
    if len(held) == 0 or len(rest) == 0:
        raise DataError(f"{role} domain {d.name!r} has {len(d)} sample(s), too few to hold out a {part} split "
                        f"(each class needs at least 2 samples); give more data or a larger --max-samples (max_samples=)")


def _whole_numbers(names: Sequence[str] | None) -> list[int] | None:
    """``names`` as whole numbers when every one is written as one ("3", "-1"; not "03"), else None."""
    if not names:
        return None
    try:
        values = [int(c) for c in names]
    except (TypeError, ValueError):
        return None
    return values if all(str(v) == str(c).strip() for v, c in zip(values, names)) else None


def _align_by_value(source: Domain, target: Domain) -> Domain | None:
    """One side names its classes by label value (SVMlight, .mat, folders "1", "2", ...), the other holds integer
    labels without names (CSV, npz, JSON Lines: class indices). Two readings: by value (label 3 = class '3') and by
    position (label 3 = the fourth class). The one that fits is used; when both fit and differ the labels are
    ambiguous and refused (a silent choice scored 2% one way and 10% the other). None: by position as usual."""
    assert target.y is not None
    if source.class_names is not None:  # the target's integer labels against classes named by value
        names, labels = source.class_names, np.unique(target.y)
        index = {v: i for i, v in enumerate(_whole_numbers(names) or [])}
        by_value = [index.get(int(v)) for v in labels]
        by_position = [int(v) if v < len(names) else None for v in labels]
        ints, shown = "integer labels", [int(v) for v in labels]
    else:  # the target names its classes by value; the source's integer labels are class indices
        values = _whole_numbers(target.class_names) or []
        labels = np.unique(target.y)
        by_value = [values[i] if 0 <= values[i] < source.n_classes else None for i in labels]
        by_position = [int(i) if i < source.n_classes else None for i in labels]
        names, ints, shown = [str(k) for k in range(source.n_classes)], "classes named by value", \
            [values[i] for i in labels]
    value_fits, position_fits = None not in by_value, None not in by_position
    if value_fits and position_fits and by_value != by_position:
        k = next(j for j in range(len(labels)) if by_value[j] != by_position[j])
        first = shown[k]
        raise LabelMismatchError(
            f"the labels of target {target.name!r} are ambiguous against source {source.name!r}: {ints} "
            f"{shown[:10]} fit both as values (label {first} = class {names[by_value[k]]!r}) and as positions in "
            f"the source's class list (label {first} = class {names[by_position[k]]!r}); make one reading the "
            "only one: renumber the labels 0..k-1 by position in the source's class list, or (npz) store "
            "class_names= with them (CSV and JSON Lines read whole-number labels, quoted or not, as indices)")
    if not value_fits:
        return None  # by position (the readers' index contract), with its own checks
    lookup = dict(zip((int(v) for v in labels), by_value))
    y = np.array([lookup[int(v)] for v in target.y], np.int64)
    return target.replace(y=y, class_names=source.class_names)


def _refuse_names_against_indices(source: Domain, target: Domain) -> None:
    """Refuse a pair where one side names its classes by names sorted from text labels (not whole numbers) and the
    other holds unnamed class indices: matched by position, sorted names ('eight' = 0, 'five' = 1, ...) were read
    as indices (a 98% model scored 10%)."""
    if target.class_names is None:
        named, named_role, unnamed, unnamed_role = source, "source", target, "target"
    else:
        named, named_role, unnamed, unnamed_role = target, "target", source, "source"
    assert named.class_names is not None and unnamed.y is not None
    indices = np.unique(unnamed.y)
    contiguous = len(indices) > 2 and int(indices[-1]) - int(indices[0]) == len(indices) - 1
    shown = f"{int(indices[0])}..{int(indices[-1])}" if contiguous else str(indices[:10].tolist())
    raise LabelMismatchError(
        f"{named_role} {named.name!r} names its classes {list(named.class_names[:10])}"
        f"{' ...' if len(named.class_names) > 10 else ''} (sorted from its text labels) but {unnamed_role} {unnamed.name!r} has unnamed "
        f"class indices {shown}; which name each index stands for is unknown (matching them by position would be a "
        "guess), so give both sides the same encoding: class names on both (a CSV or JSON Lines label column of "
        "names; npz: store class_names= with y), or class indices 0..k-1 on both")


def _nfc(name: str) -> str:
    """A class name in Unicode's composed form (NFC): macOS and some zip tools write 'café' decomposed."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


def align_labels(source: Domain, target: Domain) -> Domain:
    """Return ``target`` with labels re-indexed to the source's classes; fail on classes the source lacks.

    Named classes match by name (spelt in Unicode's composed form, NFC; a name differing only in case is
    suggested in the error); unnamed integer labels are class indices. Names sorted from text labels (not whole
    numbers; ``Domain.sorted_names``) on one side and unnamed class indices on the other are refused (which name an
    index stands for is unknown); names in a canonical order (a built-in's, SVMlight's negative/positive) match
    the indices by position.
    When one side names its classes by label value ("1", "2", ...: SVMlight, .mat, folders) and the other holds
    integer labels without names (CSV, npz, JSON Lines), a label is read by value (label 3 = class '3') when only
    that reading fits, by position when only that one does, and refused as ambiguous when both fit and differ."""
    n_src = source.n_classes
    if target.y is None:
        return target.replace(class_names=source.class_names)
    if source.class_names is not None and target.class_names is not None and source.class_names != target.class_names:
        index = {_nfc(c): i for i, c in enumerate(source.class_names)}  # 'café' composed or decomposed: one name
        unknown = [c for c in target.class_names if _nfc(c) not in index]
        used = {target.class_names[i] for i in np.unique(target.y)}
        unknown = [c for c in unknown if c in used]
        if unknown:
            binary = {"negative", "positive"}
            signs = {"-1", "0", "1", "+1"}  # the other convention's names: the hint applies only between the two
            hint = (" (an SVMlight file whose labels are all -1/+1, even one class of them, is read as the classes "
                    "negative/positive; one holding 0 too as classes '0', '1': write both files with one convention)"
                    if (binary & set(unknown) and set(source.class_names) <= signs)
                    or (binary & set(source.class_names) and set(unknown) <= signs) else "")
            folded = {_nfc(c).casefold(): c for c in source.class_names}
            guesses = [f"{c!r}: did you mean {folded[_nfc(c).casefold()]!r}?" for c in unknown[:10]
                       if _nfc(c).casefold() in folded]
            if guesses:
                hint += f" ({'; '.join(guesses)} Class names are compared case by case)"
            raise LabelMismatchError(
                f"target {target.name!r} has classes the source {source.name!r} lacks: {unknown[:10]}{hint}; "
                "remove those samples or add the classes to the source (closed-set transfer needs the target's "
                "classes to be a subset of the source's)")
        mapping = np.array([index.get(_nfc(c), -1) for c in target.class_names])
        return target.replace(y=mapping[target.y], class_names=source.class_names)
    named = source if target.class_names is None else target
    if (source.class_names is None) != (target.class_names is None):
        if _whole_numbers(named.class_names) is not None:
            aligned = _align_by_value(source, target)
            if aligned is not None:
                return aligned
        elif named.sorted_names:  # sorted names against class indices: matching by position would be a guess
            _refuse_names_against_indices(source, target)
    extra = np.unique(target.y[target.y >= n_src])
    if len(extra):
        raise LabelMismatchError(
            f"target {target.name!r} has labels {extra[:10].tolist()} but the source {source.name!r} has only "
            f"classes 0..{n_src - 1}; the target's classes must be a subset of the source's")
    return target.replace(class_names=source.class_names)


def view_widths(feature_names: Sequence[str] | None) -> list[tuple[str, int]]:
    """The views of a domain's columns named ``VIEW_J`` (``mfeat?views=``, ``fsdd?views=``), in order, with
    their widths: ``[("fou", 76), ("kar", 64)]``.

    ``cotrain``'s ``split`` is the first width: ``split = view_widths(task.source.feature_names)[0][1]``."""
    if not feature_names:
        raise DataError("these inputs have no column names, so their views are unknown; give the width of the first "
                        "view yourself (cotrain: --set split=N)")
    out: list[tuple[str, int]] = []
    for name in feature_names:
        view = name.rpartition("_")[0]
        if not view:
            raise DataError(f"column {name!r} is not named VIEW_J, so its view is unknown")
        if out and out[-1][0] == view:
            out[-1] = (view, out[-1][1] + 1)
        elif any(v == view for v, _ in out):
            raise ViewOrderError(f"the columns of view {view!r} are not side by side (column {name!r} comes after "
                                 f"view {out[-1][0]!r}): put each view's columns together (e.g. "
                                 f"df[sorted(df.columns, key=lambda c: c.rpartition('_')[0])], keeping each view's "
                                 "order), so that one split separates the views")
        else:
            out.append((view, 1))
    return out


class ViewOrderError(DataError):
    """Columns named ``VIEW_J`` whose views are interleaved: no split separates them."""

"""Shared plumbing of the shallow estimators: who is source and who is target, input checks,
kernels, the median heuristic, Nystroem features and memory-bounded chunking.

Domains (one convention for every estimator of :mod:`qianyi.shallow`, the one of
:class:`qianyi.train.estimator.DomainAdapter`):

* explicit: ``fit(Xs, ys, Xt=Xt, yt=yt)`` (``X``/``y`` are the source);
* stacked: ``fit(X, y, sample_domain=sd)`` with ``sd > 0`` for source rows, ``sd < 0`` for target
  rows (skada's convention; ``0`` is an error);
* classifiers whose target is unlabelled (:class:`JDA`, :class:`KMMClassifier`) also take an
  ``unlabelled=`` marker: rows of ``y`` equal to it are target rows (scikit-learn's semi-supervised
  convention, what makes them work in ``GridSearchCV`` without metadata routing).

Without any target rows an unsupervised adapter adapts the data to itself (the source serves as
target), which keeps it a well-behaved scikit-learn estimator; those that need labelled target rows
(:class:`TrAdaBoost`, :class:`AugmentedClassifier`) raise :class:`~qianyi.errors.DataError`. A classifier
given ``unlabelled=MARKER`` whose ``y`` marks no row raises :class:`~qianyi.errors.DataError` too (the marker
says a target is meant: none was found); :class:`~qianyi.train.estimator.DomainAdapter` instead fits the
source as its own target there.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import scipy.sparse
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from ..errors import ConfigError, DataError, QianyiWarning

#: Exact kernel methods hold at most this many n x n float64 matrices at once (K, K H K, its copy for the
#: solver, K M K + mu I).
N_BY_N_MATRICES = 4
#: Landmarks used when the exact problem would exceed the memory budget and ``landmarks`` is not set.
DEFAULT_LANDMARKS = 1000
#: Working memory of one chunk of a streamed kernel product.
CHUNK_BYTES = 64 * 2 ** 20
#: The median heuristic looks at most at this many pooled points.
MEDIAN_POINTS = 1000
KERNELS = ("primal", "linear", "rbf")


# -- inputs ------------------------------------------------------------------------------------------
def refuse_sparse(est: Any, X: Any, name: str) -> None:
    """A :class:`~qianyi.errors.DataError` for a scipy.sparse ``X`` (scikit-learn's own check raises TypeError)."""
    if scipy.sparse.issparse(X):
        raise DataError(f"{type(est).__name__}: input {name}: Sparse data was passed for {name}, but dense data is "
                        f"required (shape {X.shape}); give {name}.toarray(), or reduce the features first (e.g. "
                        "TruncatedSVD) if the dense array would not fit in memory")


def check_X(est: Any, X: Any, name: str, *, reset: bool) -> np.ndarray:
    """``validate_data`` (sets ``n_features_in_`` when ``reset``), its ValueErrors (and sparse input) as DataError
    naming ``name``."""
    refuse_sparse(est, X, name)
    try:
        return validate_data(est, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1)
    except ValueError as e:
        raise DataError(f"{type(est).__name__}: input {name}: {e}") from e


def check_columns(est: Any, X: Any, name: str) -> None:
    """A data frame ``X`` (a second sample) has the columns of the source the estimator was fitted on, in the same
    order: other names or another order would pair different features silently."""
    fitted = getattr(est, "feature_names_in_", None)
    columns = getattr(X, "columns", None)
    if fitted is not None and columns is not None and [str(c) for c in columns] != [str(c) for c in fitted]:
        same = sorted(map(str, columns)) == sorted(map(str, fitted))
        raise DataError(f"{type(est).__name__}: {name}'s columns {list(map(str, columns))[:8]} "
                        + ("are the source X's in another order" if same else "are not the source X's")
                        + f" {list(map(str, fitted))[:8]}; "
                        + (f"reorder them: {name}[X.columns]" if same else "give both domains the same features"))


def check_other(est: Any, X: Any, name: str) -> np.ndarray:
    """A second sample (the target) with the features of the first (:func:`check_columns`)."""
    check_columns(est, X, name)
    refuse_sparse(est, X, name)
    try:
        X = check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=1, input_name=name)
    except ValueError as e:
        raise DataError(f"{type(est).__name__}: input {name}: {e}") from e
    if X.shape[1] != est.n_features_in_:
        raise DataError(f"{type(est).__name__}: {name} has {X.shape[1]} features but the source X has "
                        f"{est.n_features_in_}; give both domains the same features (same preprocessing, same order)")
    return X


def check_labels(est: Any, y: Any, n: int, name: str) -> np.ndarray:
    """One label per row (a column vector is accepted with scikit-learn's DataConversionWarning). NaN may mark
    a target row's unknown label: :func:`split_domains` checks finiteness on the labels it uses."""
    who = type(est).__name__
    if y is None:
        raise DataError(f"{who} requires y to be passed, but the target y is None: give {name}, one label per row")
    try:
        y = column_or_1d(np.asarray(y), warn=True)
    except ValueError as e:
        raise DataError(f"{who}: {name} has shape {np.shape(y)}; expected one label per row ({n},)") from e
    if len(y) != n:
        raise DataError(f"{who}: {name} has {len(y)} labels for {n} rows; give one label per row")
    return y


def same_label_types(est: Any, ys: np.ndarray, yt: np.ndarray) -> None:
    """Refuse source and target labels of different types (numbers on one side, text on the other): unioned,
    integer source labels and text target ones made twice the classes, silently."""
    try:
        unique_labels(ys, yt)
    except ValueError as exc:
        def shown(y: np.ndarray) -> str:
            distinct = {str(v): v for v in y.tolist()}  # shown as given: 0 and '0' must not look alike
            values = [distinct[k] for k in sorted(distinct)]
            return ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise DataError(f"{type(est).__name__}.fit: the source labels y ({shown(ys)}) and the target labels yt "
                        f"({shown(yt)}) are of different types ({exc}); a class is one label on both sides: give "
                        "y and yt in one encoding (both class names or both numbers)") from None


@dataclass
class Domains:
    """Source and target rows after the checks (``yt`` None when the target is unlabelled)."""

    Xs: np.ndarray
    ys: np.ndarray | None
    Xt: np.ndarray
    yt: np.ndarray | None
    has_target: bool


def check_random_state_setting(who: str, seed: Any) -> None:
    """scikit-learn's ``random_state`` values: a whole number (the same number, the same fit), a numpy
    RandomState, or None; anything else is named (numpy's own error did not say which setting)."""
    if seed is not None and not isinstance(seed, np.random.RandomState) and \
            (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ConfigError(f"{who}: random_state={seed!r}; give a whole number (the same number, the same fit), a "
                          "numpy RandomState, or None (scikit-learn's convention)")


def split_domains(est: Any, X: Any, y: Any = None, Xt: Any = None, yt: Any = None, sample_domain: Any = None,
                  unlabelled: Any = None, *, need_y: bool = False, need_yt: bool = False,
                  min_target: int = 2, min_source: int = 1) -> Domains:
    """One reading of the three conventions of the module docstring, with clear errors."""
    who = type(est).__name__
    check_random_state_setting(who, getattr(est, "random_state", None))
    X = check_X(est, X, "X", reset=True)
    if need_y or y is not None:  # finiteness: on the source rows' labels, after the split (target rows may be NaN)
        y = check_labels(est, y, len(X), "y")
    if Xt is None and len(X) < 2:
        raise DataError(f"{who}.fit: X has 1 sample; a source and a target need at least 2 rows in all")
    if Xt is not None and sample_domain is not None:
        raise DataError(f"{who}.fit: give the target either as Xt= or by sample_domain=, not both")
    one_target_convention(who, y, unlabelled, Xt, sample_domain)
    if Xt is not None:
        Xs, ys = X, y
        Xt = check_other(est, Xt, "Xt")
        if yt is not None:
            yt = check_labels(est, yt, len(Xt), "yt")  # used only with need_yt, checked below
        has_target = True
    elif sample_domain is not None:
        sd = check_sample_domain(who, sample_domain, len(X))
        if yt is not None:
            raise DataError(f"{who}.fit: with sample_domain= the target labels are the rows of y where "
                            "sample_domain < 0; do not pass yt")
        src = sd > 0
        Xs, Xt = X[src], X[~src]
        ys, yt = (y[src], y[~src]) if y is not None else (None, None)
        has_target = True
    elif unlabelled is not None and y is not None:
        tgt = unlabelled_rows(who, y, unlabelled)
        if not tgt.any():
            raise DataError(f"{who}.fit: no row of y is marked unlabelled ({unlabelled!r}), so there is no target "
                            f"domain; mark the target rows of y with {unlabelled!r} (in a cross-validation, use a "
                            "splitter that leaves marked rows in every training fold, e.g. StratifiedKFold), or give "
                            "the target as Xt=; to fit without a target (the source as its own), set unlabelled=None")
        Xs, ys, Xt, yt = X[~tgt], y[~tgt], X[tgt], None
        has_target = True
    else:
        warn_unmarked_target(who, y)
        Xs, ys, Xt, yt, has_target = X, y, X, y, False
    if ys is not None and ys.dtype.kind == "f" and not np.isfinite(ys).all():
        raise DataError(f"{who}.fit: the source labels (rows of y outside the target) contain NaN or infinity; give "
                        "every source row a label, or mark the rows without one as target rows (sample_domain < 0, "
                        "or unlabelled=np.nan where the classifier takes unlabelled=)")
    if len(Xs) == 0:
        raise DataError(f"{who}.fit: the source domain is empty (no row with sample_domain > 0 / not marked "
                        "unlabelled); give labelled source rows")
    if len(Xs) < min_source:
        raise DataError(f"{who}.fit: the source has {len(Xs)} sample(s), 1 sample is too few; give at least "
                        f"{min_source} source rows")
    if has_target and len(Xt) == 0:
        raise DataError(f"{who}.fit: the target domain is empty; give target rows (Xt=, or sample_domain < 0)")
    if len(Xt) < min_target:
        raise DataError(f"{who}.fit: the target has {len(Xt)} sample(s), 1 sample is too few; give at least "
                        f"{min_target} target rows")
    if need_yt and (not has_target or yt is None):
        raise DataError(f"{who}.fit needs labelled target rows: pass Xt= and yt=, or stack them into X, y "
                        "with sample_domain < 0 for the target rows")
    if need_yt and yt is not None and yt.dtype.kind == "f" and not np.isfinite(yt).all():
        raise DataError(f"{who}.fit: the target labels contain NaN or infinity; give every target row a label")
    return Domains(Xs, ys, Xt, yt, has_target)


def check_sample_domain(who: str, sample_domain: Any, n: int) -> np.ndarray:
    """``sample_domain`` as an array after the checks: one non-zero finite number per row (``n``)."""
    sd = np.asarray(sample_domain)
    if sd.shape != (n,):
        raise DataError(f"{who}.fit: sample_domain has shape {sd.shape}; expected one entry per row "
                        f"({n},): positive for source rows, negative for target rows")
    if sd.dtype.kind not in "iuf" or (sd == 0).any() or not np.isfinite(sd.astype(float)).all():
        raise DataError(f"{who}.fit: sample_domain must be non-zero numbers (positive: source, negative: target)")
    return sd


def unlabelled_rows(who: str, y: Any, marker: Any) -> np.ndarray:
    """Rows of ``y`` equal to the ``unlabelled`` marker (a NaN marker: the NaN rows); an error when the marker
    cannot equal any label (a number marker with string labels, or the reverse), which would silently make it a
    class."""
    y = np.asarray(y)
    numeric = y.dtype.kind in "iuf"
    if isinstance(marker, bool) or numeric != isinstance(marker, (int, float, np.number)):
        raise DataError(f"{who}.fit: the unlabelled marker {marker!r} ({type(marker).__name__}) cannot match labels "
                        f"of dtype {y.dtype}; give a marker of the labels' kind (e.g. "
                        f"{'-1' if numeric else repr('unlabelled')})")
    if isinstance(marker, (float, np.floating)) and np.isnan(marker):  # NaN == NaN is False
        return np.isnan(y) if y.dtype.kind == "f" else np.zeros(y.shape, bool)
    return y == marker


def warn_unmarked_target(who: str, y: Any) -> None:
    """No target given (no Xt=, sample_domain= or unlabelled=) and ``y`` holds -1, scikit-learn's mark of an
    unlabelled row: those rows would be fitted as a class of their own and predicted; say so."""
    y = np.asarray(y) if y is not None else None
    if y is None or y.dtype.kind not in "iuf" or y.ndim != 1:
        return
    marked = int((y == -1).sum())
    others = set(np.unique(y[y != -1]).tolist())
    if marked and (0 in others or len(others) != 1):  # -1 beside +1 alone: a binary labelling, not a mark
        warnings.warn(f"{who}.fit: no target was given (Xt=, sample_domain= or unlabelled=) and y labels {marked} "
                      "rows -1, so they are fitted as a class '-1' of their own; if they are the unlabelled target, "
                      "pass unlabelled=-1", QianyiWarning, stacklevel=3)


def one_target_convention(who: str, y: Any, unlabelled: Any, Xt: Any, sample_domain: Any) -> None:
    """An error when ``y`` marks rows unlabelled and the target is also given by ``Xt=`` or ``sample_domain=``:
    the marked rows would be read as source rows of class ``unlabelled`` (or silently dropped)."""
    if unlabelled is None or y is None or (Xt is None and sample_domain is None):
        return
    marked = int(unlabelled_rows(who, y, unlabelled).sum())
    if marked:
        raise DataError(f"{who}.fit: y marks {marked} rows unlabelled "
                        f"({unlabelled!r}) and the target is also given by {'Xt=' if Xt is not None else 'sample_domain='}; "
                        "use one convention: the marked rows as the target (no Xt=/sample_domain=), or drop them")


def looks_like_a_sample(y: Any) -> bool:
    """Whether ``y`` is a sample of rows rather than labels: a sparse matrix or an array of 2 or more axes."""
    if y is None:
        return False
    if scipy.sparse.issparse(y):
        return True
    try:
        return np.asarray(y).ndim >= 2
    except ValueError:  # a ragged sequence: not a sample of rows; read (and ignored) as y
        return False


def _n_rows(X: Any) -> int | None:
    """Rows of ``X`` (array, data frame, sparse matrix or list), None when it has no length (checked later)."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        return None


def target_as_y(est: Any, X: Any, y: Any, Xt: Any, sample_domain: Any) -> tuple[Any, Any]:
    """``fit(Xs, Xt)`` for the unsupervised adapters, which ignore labels: in ``y``'s place a sample of rows
    (:func:`looks_like_a_sample`: 2-D or more, or sparse) is the target ``Xt`` and is checked as such (a 3-D
    or sparse target raises :class:`~qianyi.errors.DataError`, as with ``Xt=``); a 1-D ``y`` of ``len(X)``
    entries (labels, as a ``Pipeline`` passes them) stays ignored; a 1-D ``y`` of another length is an error,
    since it can only be a target sample given in the wrong shape."""
    if y is None or Xt is not None or sample_domain is not None:
        return y, Xt
    if looks_like_a_sample(y):
        return None, y
    n = _n_rows(X)
    try:
        shape = np.asarray(y).shape
    except ValueError:  # a ragged sequence: ignored, as any y
        shape = ()
    if n is not None and len(shape) == 1 and shape[0] != n:
        ny = shape[0]
        who = type(est).__name__
        raise DataError(f"{who}.fit: the second argument has {ny} entries for {n} rows of X. {who} ignores "
                        "labels (one per row of X) and reads a 2-D array there as the target sample; did you "
                        "mean Xt=? Give the target as Xt=Xt with shape (n_samples, n_features) (one row: "
                        "x.reshape(1, -1))")
    return y, Xt


def domain_mask(est: Any, n: int, sample_domain: Any, default: str) -> np.ndarray:
    """Boolean mask of source rows for ``transform(X, sample_domain)``; ``default`` when it is None."""
    if sample_domain is None:
        return np.full(n, default == "source")
    sd = np.asarray(sample_domain)
    if sd.shape != (n,) or sd.dtype.kind not in "iuf" or (sd == 0).any() or not np.isfinite(sd).all():
        raise DataError(f"{type(est).__name__}: sample_domain must hold one non-zero finite number per row ({n},): "
                        "positive for source rows, negative for target rows")
    return sd > 0


# -- scaling ---------------------------------------------------------------------------------------
def zscore_params(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (1 where a feature is constant) of ``X``."""
    mean = X.mean(0)
    std = X.std(0)
    std[~(std > 1e-12 * max(1.0, float(np.abs(mean).max(initial=0.0))))] = 1.0
    return mean, std


# -- kernels ---------------------------------------------------------------------------------------
def sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pairwise squared distances, built in place (one (m, n) array)."""
    d = A @ B.T
    d *= -2.0
    d += (A * A).sum(1)[:, None]
    d += (B * B).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def median_sq_dist_np(X: np.ndarray, seed: int = 0, max_points: int = MEDIAN_POINTS) -> float:
    """The shallow estimators' median heuristic (numpy): the median squared distance between distinct points of
    a seeded *random* subsample of ``X`` (``np.median``; 1 if all coincide).

    Not :func:`qianyi.distances.mmd.median_sq_dist` (torch; evenly spaced points, the lower median), which the
    MMD losses and measurements share: the TCA, JDA and KMM results in docs/results were measured with this one."""
    if len(X) > max_points:
        X = X[np.random.default_rng(seed).choice(len(X), max_points, replace=False)]
    d = sq_dists(X, X)[np.triu_indices(len(X), 1)]
    med = float(np.median(d)) if d.size else 0.0
    if not med > 0:
        positive = d[d > 0]
        med = float(np.median(positive)) if positive.size else 1.0
    return med


def kernel(A: np.ndarray, B: np.ndarray, name: str, gamma: float) -> np.ndarray:
    if name == "rbf":
        K = sq_dists(A, B)
        K *= -gamma
        return np.exp(K, out=K)
    return A @ B.T


def chunks(n: int, width: int, budget: int = CHUNK_BYTES) -> Iterator[slice]:
    """Row slices such that a (rows, width) float64 block stays within ``budget`` bytes."""
    step = max(1, budget // (8 * max(1, width)))
    for i in range(0, n, step):
        yield slice(i, min(n, i + step))


def check_kernel(est: Any, name: str, allowed: tuple[str, ...] = KERNELS) -> None:
    if name not in allowed:
        raise ConfigError(f"{type(est).__name__}: kernel={name!r} is unknown; use one of {', '.join(allowed)}")


def check_positive(est: Any, **values: float) -> None:
    for k, v in values.items():
        if not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{type(est).__name__}: {k}={v!r}; it must be a positive finite number")


class FeatureMap:
    """An explicit feature map ``phi``: identity (``primal``) or Nystroem on ``landmarks``.

    Nystroem (Williams & Seeger, NIPS 2001): with landmarks Z and ``K_ZZ = U S U^T``,
    ``phi(x) = k(x, Z) U S^{-1/2}`` (eigenvalues under 1e-10 of the largest dropped), so that
    ``phi(x)^T phi(y)`` approximates ``k(x, y)``.
    """

    def __init__(self, kernel_name: str, gamma: float, landmarks: np.ndarray | None) -> None:
        self.kernel_name, self.gamma, self.landmarks = kernel_name, gamma, landmarks
        if landmarks is None:
            self.proj = None
            return
        Kzz = kernel(landmarks, landmarks, kernel_name, gamma)
        s, U = np.linalg.eigh((Kzz + Kzz.T) / 2)
        keep = s > 1e-10 * max(float(s.max()), 1e-300)
        self.proj = U[:, keep] / np.sqrt(s[keep])

    @property
    def dim(self) -> int:
        return self.proj.shape[1] if self.proj is not None else -1

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.proj is None:
            return X
        return kernel(X, self.landmarks, self.kernel_name, self.gamma) @ self.proj

    def blocks(self, X: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        width = X.shape[1] if self.landmarks is None else len(self.landmarks)
        for sl in chunks(len(X), width):
            yield sl, self(X[sl])


def exact_fits(n: int, max_bytes: float) -> bool:
    """Whether the exact kernel problem (about ``N_BY_N_MATRICES`` n x n float64 matrices) fits the budget."""
    return N_BY_N_MATRICES * 8.0 * n * n <= max_bytes


def pick_landmarks(X: np.ndarray, m: int, seed: int) -> np.ndarray:
    m = min(int(m), len(X))
    return X[np.sort(np.random.default_rng(seed).choice(len(X), m, replace=False))]


def landmark_count(est: Any, landmarks: Any, size: int, n: int, max_bytes: float, what: str,
                   cap: int | None = None) -> int | None:
    """Landmarks to use: the user's ``landmarks`` (int, at most ``n``); None (exact) when the exact problem, of
    ``size`` x ``size`` matrices, fits ``max_bytes``; else ``DEFAULT_LANDMARKS`` (fewer on a small budget,
    never more than ``n``) with a :class:`QianyiWarning`."""
    if landmarks is not None:
        if isinstance(landmarks, bool) or not isinstance(landmarks, (int, np.integer)) or landmarks < 1:
            raise ConfigError(f"{type(est).__name__}: landmarks={landmarks!r}; give a positive number of landmark "
                              "points, or None to let the estimator decide")
        return int(min(landmarks, n))
    if exact_fits(size, max_bytes):
        return None
    m = int(min(DEFAULT_LANDMARKS, n, max(10, math.isqrt(int(max_bytes / (N_BY_N_MATRICES * 8.0)))),
                cap if cap is not None else n))
    warnings.warn(f"{type(est).__name__}: {what} would hold about {N_BY_N_MATRICES * 8.0 * size * size / 2 ** 20:.0f} "
                  f"MiB of {size} x {size} matrices, over max_kernel_bytes={max_bytes / 2 ** 20:.0f} MiB; using a "
                  f"Nystroem approximation on {m} landmarks instead (set landmarks= to choose their number, or raise "
                  "max_kernel_bytes for the exact solution)", QianyiWarning, stacklevel=4)
    return m

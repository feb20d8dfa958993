r"""Maximum mean discrepancy with Gaussian kernels: one implementation for losses and measurement.

For samples :math:`X = \{x_i\}_{i=1}^m \sim P`, :math:`Y = \{y_j\}_{j=1}^n \sim Q` and kernel :math:`k`
(Gretton et al., "A Kernel Two-Sample Test", JMLR 2012):

* biased (V-statistic)
  :math:`\frac{1}{m^2}\sum_{ij} k(x_i,x_j) + \frac{1}{n^2}\sum_{ij} k(y_i,y_j) - \frac{2}{mn}\sum_{ij} k(x_i,y_j)`
* unbiased (U-statistic): the same with the diagonal terms dropped from the first two sums,
  divided by :math:`m(m-1)` and :math:`n(n-1)`;
* linear-time (Lemma 14): the mean over disjoint pairs of
  :math:`h = k(x_{2i-1},x_{2i}) + k(y_{2i-1},y_{2i}) - k(x_{2i-1},y_{2i}) - k(x_{2i},y_{2i-1})`,
  the pairs taken in a seeded random order of each sample (:func:`linear_pairing`): unbiased only when
  the paired rows are independent draws, which rows stored by class are not.

Multi-kernel MMD (DAN, Long et al. ICML 2015) averages Gaussian kernels
:math:`\exp(-\|a-b\|^2 / 2\sigma_u^2)` over a family :math:`\sigma_u^2 = 2^u \sigma_0^2` around the
median heuristic :math:`\sigma_0^2 = \mathrm{median}\|a-b\|^2` of the pooled sample. Joint MMD (JAN,
Long et al. ICML 2017) uses the product of one such kernel per representation.

All functions take torch tensors (any float dtype, gradients flow) or numpy arrays and return a
0-d tensor of :math:`\mathrm{MMD}^2`. Bandwidths are computed without gradient.
"""
from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..data.domain import refuse_sparse_matrix
from ..errors import ConfigError, DataError

ESTIMATORS = ("biased", "unbiased", "linear")
#: The DAN family: five bandwidths 2^-2 .. 2^2 times the median heuristic.
MULTI_KERNEL = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Above this many kernel entries per block the quadratic estimators work in chunks.
DEFAULT_CHUNK = 4096


def to_tensor(a: object) -> torch.Tensor:
    """``a`` as a tensor: a tensor as it is; an array, a list or a DataFrame through numpy (a DataFrame's
    values: ``torch.as_tensor`` would index it by column)."""
    if isinstance(a, torch.Tensor):
        return a
    refuse_sparse_matrix(a, "distance: the samples")
    arr = np.asarray(a)
    if arr.dtype == object:  # a frame with a nullable or text column; numbers held as objects are read as floats
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            columns = getattr(a, "columns", None)
            bad = ([str(c) for c in columns if not _numeric(a[c])] if columns is not None else [])
            raise DataError("distance: the samples must be numbers" + (f"; the column(s) {bad[:5]} are not" if bad
                            else "") + ": drop or encode them first") from None
    return torch.as_tensor(arr if arr.flags.writeable else arr.copy())  # a frame's values may be read-only


def _numeric(column: object) -> bool:
    try:
        np.asarray(column).astype(np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _as_2d(a: torch.Tensor | np.ndarray, name: str, what: str = "MMD") -> torch.Tensor:
    t = to_tensor(a)
    if not torch.is_floating_point(t):
        t = t.float()
    if t.ndim == 0:
        raise DataError(f"{what}: sample {name} is a single number; give samples as rows (n, d), at least 2 rows")
    if len(t) == 0:
        raise DataError(f"{what}: sample {name} is empty; both samples need at least 2 rows")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        t = t.reshape(len(t), -1)
    if not t.requires_grad and not bool(torch.isfinite(t).all()):  # (in training a NaN loss is the engine's to name)
        row = int((~torch.isfinite(t)).any(1).nonzero()[0])
        raise DataError(f"{what}: sample {name} holds NaN or infinite values (first in row {row}); remove or impute "
                        "them first")
    return t


def sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances, (m, d) x (n, d) -> (m, n), clamped at 0."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min_(0.0) if not d.requires_grad else d.clamp_min(0.0)


#: The median heuristic looks at most at this many pooled points, evenly spaced (:func:`median_points`).
MEDIAN_POINTS = 1000


def median_points(n: int, device: torch.device | str | None = None, limit: int = MEDIAN_POINTS) -> torch.Tensor | None:
    """The rows of an ``n``-point pooled sample that the median heuristic reads: ``None`` (all) up to ``limit``
    (:data:`MEDIAN_POINTS`), else that many evenly spaced ones (deterministic)."""
    if n <= limit:
        return None
    return torch.linspace(0, n - 1, limit, device=device).long()


def median_sq_dist(x: torch.Tensor, y: torch.Tensor, max_points: int | None = None) -> torch.Tensor:
    """The median heuristic: the median squared distance between distinct points of the pooled sample
    ``[x; y]``, read at :func:`median_points` (see :func:`median_of_pairs`). Every Gaussian kernel in
    qianyi takes its bandwidth from this rule (the losses, ``mk_mmd2``, ``mmd_test``, LMMD).

    ``max_points``: read at most this many pooled points, evenly spaced; None (the default) reads
    :data:`MEDIAN_POINTS`, as those kernels do. More points cost memory in their square (a pooled sample
    read whole sorts every pair)."""
    if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, numbers.Integral)
                                   or max_points < 2):
        raise ConfigError(f"median_sq_dist: max_points must be a whole number of at least 2 (or None: "
                          f"{MEDIAN_POINTS:,}), got {max_points!r}")
    with torch.no_grad():
        z = torch.cat([x.detach(), y.detach()])
        keep = median_points(len(z), z.device, MEDIAN_POINTS if max_points is None else int(max_points))
        if keep is not None:
            z = z[keep]
        return _median_distinct(sq_dists(z, z))


def median_of_pairs(d: torch.Tensor) -> torch.Tensor:
    """Median of the distinct off-diagonal entries of the squared distance matrix ``d`` of a pooled sample,
    read at the points :func:`median_sq_dist` reads (:func:`median_points`), so the two give one bandwidth
    for one sample.

    When half the pairs or more are duplicates (dead ReLU units, empty bag-of-words rows) that median
    is 0; the median of the non-zero distances then keeps the bandwidth on the data's scale. 1 only
    when every point is the same (or there is no pair)."""
    with torch.no_grad():
        keep = median_points(len(d), d.device)
        if keep is not None:
            d = d[keep][:, keep]
        return _median_distinct(d)


def _median_distinct(d: torch.Tensor) -> torch.Tensor:
    """:func:`median_of_pairs` of every point of ``d`` (no subsample)."""
    with torch.no_grad():
        iu = torch.triu_indices(len(d), len(d), 1, device=d.device)
        vals = d.detach()[iu[0], iu[1]]
        if not len(vals):
            return torch.tensor(1.0, dtype=d.dtype, device=d.device)
        s = vals.sort().values  # no .item(): a training step on a GPU does not wait for the device here
        n, zeros = len(s), (s <= 0).sum()
        med = s[(n - 1) // 2]  # torch.median's (lower) median
        positive = s[torch.clamp(zeros + (n - zeros - 1) // 2, max=n - 1)]  # the median of the non-zero ones
        return torch.where(med > 0, med, torch.where(positive > 0, positive, torch.ones_like(med)))


def _doubling(multipliers: Sequence[float]) -> bool:
    """Whether the multipliers, sorted, double from one to the next (DAN's {1/4, 1/2, 1, 2, 4})."""
    m = sorted(float(v) for v in multipliers)
    return len(m) > 1 and m[0] > 0 and all(b == 2.0 * a for a, b in zip(m, m[1:]))


def kernel_mean(d: torch.Tensor, sigmas2: torch.Tensor, multipliers: Sequence[float] | None = None) -> torch.Tensor:
    """mean_u exp(-d / (2 sigma_u^2)) for a matrix of squared distances ``d``.

    When the bandwidths double from one to the next (``multipliers`` such as DAN's {1/4, ..., 4}),
    exp(-d / 2s) = exp(-d / 4s)^2: one exponential of the widest kernel, then repeated squaring,
    instead of one exponential per kernel (the same values up to float rounding, a fraction of the
    cost; benchmarks/throughput.py).
    """
    if multipliers is not None and _doubling(multipliers):
        widest = sigmas2.max()
        k = torch.exp(-d / (2.0 * widest))
        total = k
        for _ in range(len(sigmas2) - 1):
            k = k * k
            total = total + k
        return total / len(sigmas2)
    return torch.exp(-d[None] / (2.0 * sigmas2[:, None, None])).mean(0)


@dataclass(frozen=True)
class GaussianKernel:
    """Mean of Gaussian kernels exp(-d^2 / 2 sigma_u^2), sigma_u^2 = multiplier_u * base.

    ``bandwidth`` is the base sigma^2; ``None`` uses the median heuristic on the pooled sample.
    """

    bandwidth: float | None = None
    multipliers: Sequence[float] = (1.0,)

    def __post_init__(self) -> None:
        if self.bandwidth is not None and not (np.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise DataError(f"GaussianKernel: bandwidth (sigma^2) must be a positive number, got {self.bandwidth!r}; "
                            "None uses the median heuristic")
        if not len(self.multipliers) or not all(np.isfinite(m) and m > 0 for m in self.multipliers):
            raise DataError(f"GaussianKernel: multipliers must be positive numbers, got {tuple(self.multipliers)!r}")

    def sigmas2_from(self, d: torch.Tensor) -> torch.Tensor:
        """The bandwidths for the pooled sample whose squared distance matrix is ``d``: :meth:`sigmas2`'s,
        read off a matrix already built (:func:`median_of_pairs`)."""
        if self.bandwidth is None:
            base = median_of_pairs(d)
        else:
            base = torch.tensor(float(self.bandwidth), dtype=d.dtype, device=d.device)
        return base * torch.tensor(list(self.multipliers), dtype=d.dtype, device=d.device)

    def sigmas2(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The bandwidths for samples ``x`` and ``y``: ``multipliers`` x ``bandwidth``, or x the median heuristic
        of the pooled sample (:func:`median_sq_dist`)."""
        if self.bandwidth is None:
            base = median_sq_dist(x, y).to(x.device, x.dtype)
        else:
            base = torch.tensor(float(self.bandwidth), dtype=x.dtype, device=x.device)
        return base * torch.tensor(list(self.multipliers), dtype=x.dtype, device=x.device)

    def matrix(self, a: torch.Tensor, b: torch.Tensor, sigmas2: torch.Tensor) -> torch.Tensor:
        return kernel_mean(sq_dists(a, b), sigmas2, self.multipliers)

    @staticmethod
    def paired(a: torch.Tensor, b: torch.Tensor, sigmas2: torch.Tensor) -> torch.Tensor:
        """k(a_i, b_i) for rows i (linear-time estimator)."""
        d = ((a - b) ** 2).sum(1)
        return torch.exp(-d[None] / (2.0 * sigmas2[:, None])).mean(0)


def multi_kernel(multipliers: Sequence[float] = MULTI_KERNEL) -> GaussianKernel:
    """DAN's multi-kernel: the mean of Gaussian kernels with sigma^2 = ``multipliers`` x the median heuristic's."""
    return GaussianKernel(None, tuple(multipliers))


def full_precision(*tensors: object) -> contextlib.AbstractContextManager:
    """Autocast switched off on the inputs' device (a no-op outside autocast): kernel sums run as given."""
    dev = next((t.device.type for t in tensors if isinstance(t, torch.Tensor)), "cpu")
    return torch.autocast(dev, enabled=False) if torch.is_autocast_enabled(dev) else contextlib.nullcontext()


def _full_float(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` in one dtype, float32 at least: half-precision inputs (autocast) are computed in float32,
    and a bfloat16 side does not round the other down."""
    dt = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    return x.to(dt), y.to(dt)


def _centred(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` less their pooled mean (a constant: no gradient through it).

    A Gaussian kernel depends on differences only, so this changes no MMD value; it keeps
    ``|a|^2 + |b|^2 - 2 a.b`` (:func:`sq_dists`) from cancelling catastrophically when the features sit far
    from 0 (raw tabular columns: at an offset of 1e4 float32 MMD^2 came out negative)."""
    with torch.no_grad():
        c = torch.cat([x.detach(), y.detach()]).mean(0)
    return x - c, y - c


def _check(estimator: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if estimator not in ESTIMATORS:
        raise DataError(f"unknown MMD estimator {estimator!r}; use one of {ESTIMATORS}")
    if x.shape[1] != y.shape[1]:
        raise DataError(f"MMD: samples have {x.shape[1]} and {y.shape[1]} features; they must match")
    if len(x) < 2 or len(y) < 2:
        raise DataError(f"MMD ({estimator}) needs at least 2 samples per side, got {len(x)} and {len(y)}")


def _quadratic(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor, m: int, n: int,
               trace_x: torch.Tensor | float, trace_y: torch.Tensor | float, estimator: str) -> torch.Tensor:
    if estimator == "biased":
        return kxx / (m * m) + kyy / (n * n) - 2.0 * kxy / (m * n)
    return (kxx - trace_x) / (m * (m - 1)) + (kyy - trace_y) / (n * (n - 1)) - 2.0 * kxy / (m * n)


def mmd2(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, kernel: GaussianKernel | None = None,
         estimator: str = "unbiased", chunk_size: int | None = None, seed: int = 0) -> torch.Tensor:
    """MMD^2 between samples ``x`` (m, d) and ``y`` (n, d); see the module docstring.

    ``chunk_size`` bounds the kernel blocks held in memory (default: whole matrices up to
    4096 x 4096, chunks beyond), so 20,000 x 20,000 samples need no n x n matrix. That bound holds
    without gradients (measurement); under autograd every block is kept for the backward pass.
    ``seed`` seeds the linear estimator's random pairing of rows (:func:`linear_pairing`).

    >>> x = torch.randn(100, 5); mmd2(x, x + 1.0) > mmd2(x, torch.randn(100, 5))
    tensor(True)
    """
    return joint_mmd2([x], [y], [kernel or GaussianKernel()], estimator, chunk_size, seed)


def mk_mmd2(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray,
            multipliers: Sequence[float] = MULTI_KERNEL, estimator: str = "unbiased",
            chunk_size: int | None = None, seed: int = 0) -> torch.Tensor:
    """Multi-kernel MMD^2 (DAN): Gaussian kernels at ``multipliers`` x the median heuristic."""
    return mmd2(x, y, multi_kernel(multipliers), estimator, chunk_size, seed)


def joint_mmd2(xs: Sequence[torch.Tensor | np.ndarray], ys: Sequence[torch.Tensor | np.ndarray],
               kernels: Sequence[GaussianKernel] | None = None, estimator: str = "unbiased",
               chunk_size: int | None = None, seed: int = 0) -> torch.Tensor:
    """Joint MMD^2 (JAN) over several representations: the kernel is the product of one kernel per layer.

    ``xs[l]`` and ``ys[l]`` are layer ``l``'s representations of the same source/target samples.
    Computed in float32 at least, outside autocast (kernel entries near 1 lose the signal in half precision).
    ``seed`` seeds the linear estimator's pairing (one order per sample, the same at every layer).
    """
    with full_precision(*xs, *ys):
        return _joint_mmd2(xs, ys, kernels, estimator, chunk_size, seed)


def linear_pairing(m: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The row orders the linear-time estimator pairs in: a seeded random permutation of ``range(m)`` and
    one of ``range(n)``, each cut to ``2 * (min(m, n) // 2)`` rows; consecutive entries form a pair.

    Pairing rows in their stored order made the estimate depend on that order: samples stored by class
    paired two rows of one class and kept the target's first classes only, so two halves of one
    distribution measured MMD^2 0.58 instead of ~0 (10 Gaussian classes, 8-d)."""
    g = torch.Generator().manual_seed(int(seed))
    h = 2 * (min(m, n) // 2)
    return torch.randperm(m, generator=g)[:h], torch.randperm(n, generator=g)[:h]


def _joint_mmd2(xs: Sequence[torch.Tensor | np.ndarray], ys: Sequence[torch.Tensor | np.ndarray],
                kernels: Sequence[GaussianKernel] | None, estimator: str, chunk_size: int | None,
                seed: int = 0) -> torch.Tensor:
    if len(xs) != len(ys) or not xs:
        raise DataError(f"joint MMD needs one source and one target array per layer, got {len(xs)} and {len(ys)}")
    X = [_as_2d(a, f"x[{i}]") for i, a in enumerate(xs)]
    Y = [_as_2d(b, f"y[{i}]") for i, b in enumerate(ys)]
    for i in range(len(X)):
        X[i], Y[i] = _full_float(X[i], Y[i])
        if X[i].shape[1] == Y[i].shape[1]:  # (a mismatch is named below)
            X[i], Y[i] = _centred(X[i], Y[i])
    kernels = list(kernels) if kernels is not None else [multi_kernel() for _ in X]
    if len(kernels) != len(X):
        raise DataError(f"joint MMD: {len(X)} layers but {len(kernels)} kernels")
    for k in kernels:
        if not isinstance(k, GaussianKernel):
            raise ConfigError(f"MMD: kernel must be a GaussianKernel (GaussianKernel(), multi_kernel(multipliers)) or "
                              f"None, got {k!r}")
    m, n = len(X[0]), len(Y[0])
    for i, (a, b) in enumerate(zip(X, Y)):
        _check(estimator, a, b)
        if len(a) != m or len(b) != n:
            raise DataError(f"joint MMD: layer {i} has {len(a)}/{len(b)} rows, layer 0 has {m}/{n}")
    chunk = chunk_size or DEFAULT_CHUNK
    if estimator != "linear" and m + n <= min(chunk, MEDIAN_POINTS):
        return _pooled(X, Y, kernels, estimator)
    sig = [k.sigmas2(a, b) for k, a, b in zip(kernels, X, Y)]

    if estimator == "linear":
        px, py = linear_pairing(m, n, seed)
        X = [a[px.to(a.device)] for a in X]  # the same order at every layer: a row's representations stay together
        Y = [b[py.to(b.device)] for b in Y]
        x1, x2 = [a[0::2] for a in X], [a[1::2] for a in X]
        y1, y2 = [b[0::2] for b in Y], [b[1::2] for b in Y]

        def pk(u: list[torch.Tensor], v: list[torch.Tensor]) -> torch.Tensor:
            out = None
            for k, a, b, s in zip(kernels, u, v, sig):
                t = k.paired(a, b, s)
                out = t if out is None else out * t
            return out  # type: ignore[return-value]
        return (pk(x1, x2) + pk(y1, y2) - pk(x1, y2) - pk(x2, y1)).mean()

    def kfn(a_idx: slice, b_idx: slice, A: list[torch.Tensor], B: list[torch.Tensor]) -> torch.Tensor:
        out = None
        for k, a, b, s in zip(kernels, A, B, sig):
            t = k.matrix(a[a_idx], b[b_idx], s)
            out = t if out is None else out * t
        return out  # type: ignore[return-value]

    def total(A: list[torch.Tensor], B: list[torch.Tensor]) -> torch.Tensor:
        la, lb = len(A[0]), len(B[0])
        if la <= chunk and lb <= chunk:
            return kfn(slice(None), slice(None), A, B).sum()
        s = A[0].new_zeros(())
        for i in range(0, la, chunk):
            for j in range(0, lb, chunk):
                s = s + kfn(slice(i, i + chunk), slice(j, j + chunk), A, B).sum()
        return s

    # every kernel here has k(a, a) = 1, so each diagonal sums to the sample size
    return _quadratic(total(X, X), total(Y, Y), total(X, Y), m, n, float(m), float(n), estimator)


def _pooled(X: list[torch.Tensor], Y: list[torch.Tensor], kernels: Sequence[GaussianKernel],
            estimator: str) -> torch.Tensor:
    """Small samples (mini-batches): one pooled distance matrix per layer serves the median and all blocks."""
    m, n = len(X[0]), len(Y[0])
    K = None
    for kern, a, b in zip(kernels, X, Y):
        z = torch.cat([a, b])
        d = sq_dists(z, z)
        k = kernel_mean(d, kern.sigmas2_from(d), kern.multipliers)
        K = k if K is None else K * k
    assert K is not None
    return _quadratic(K[:m, :m].sum(), K[m:, m:].sum(), K[:m, m:].sum(), m, n, float(m), float(n), estimator)


def linear_mmd2(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor:
    """MMD^2 with the linear kernel: the squared distance between the sample means, ||mean(x) - mean(y)||^2."""
    X, Y = _as_2d(x, "x"), _as_2d(y, "y")
    if X.shape[1] != Y.shape[1]:
        raise DataError(f"MMD: samples have {X.shape[1]} and {Y.shape[1]} features; they must match")
    with full_precision(X, Y):
        X, Y = _full_float(X, Y)
        return ((X.mean(0) - Y.mean(0)) ** 2).sum()

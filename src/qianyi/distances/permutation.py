r"""Permutation two-sample test for MMD (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, Sec. 5).

Under :math:`H_0: P = Q` the pooled sample is exchangeable, so the null distribution of
:math:`\mathrm{MMD}^2` is that of the statistic on random relabellings of the pooled sample. The
p-value is :math:`(1 + \#\{b: \mathrm{MMD}^2_b \ge \mathrm{MMD}^2\}) / (1 + B)` (never 0, valid at
any B). The kernel's bandwidth comes from the pooled sample, so it is the same under every
relabelling; the pooled kernel matrix is built once and each permutation costs one matrix product.
The bandwidth is the one :func:`~qianyi.distances.mk_mmd2` uses (:func:`~qianyi.distances.mmd.median_sq_dist`
on the pooled sample ``[x; y]``), so the test's statistic is ``mk_mmd2(x, y)`` on the rows it tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.limits import check_memory
from ..errors import ConfigError, DataError
from .mmd import GaussianKernel, _as_2d, _centred, _check, _full_float, kernel_mean, multi_kernel, sq_dists


@dataclass(frozen=True)
class MMDTestResult:
    mmd2: float
    p_value: float
    permutations: int
    n_x: int
    n_y: int


def _statistics(K: torch.Tensor, A: torch.Tensor, estimator: str) -> torch.Tensor:
    """MMD^2 for each row of the 0/1 membership matrix ``A`` (P, N) (1 = first sample) on kernel ``K``."""
    m = A.sum(1)
    n = A.shape[1] - m
    KA = A @ K                                  # (P, N)
    row = K.sum(0)                               # K 1
    sxx = (KA * A).sum(1)                        # a' K a
    sxy = KA.sum(1) - sxx                        # a' K (1 - a)
    syy = row.sum() - 2.0 * sxy - sxx            # (1-a)' K (1-a)
    if estimator == "biased":
        return sxx / (m * m) + syy / (n * n) - 2.0 * sxy / (m * n)
    # Gaussian kernels have k(z, z) = 1: the diagonal of each block sums to its size
    return (sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2.0 * sxy / (m * n)


def check_test_memory(n_x: int, n_y: int, itemsize: int = 4) -> None:
    """Refuse a permutation test whose pooled (n_x + n_y)^2 matrices exceed ``QIANYI_MAX_BYTES``, before any work
    (``measure`` and ``advise`` ask before they train)."""
    n_pool = n_x + n_y  # the pooled distance and kernel matrices, and a temporary
    check_memory(3 * n_pool * n_pool * itemsize, f"mmd_test: a permutation test on {n_x:,} + {n_y:,} samples holds "
                 f"{n_pool:,} x {n_pool:,} matrices", "draw fewer samples (max_samples, --samples) or skip the test "
                 "(permutations=0, --permutations 0): the distances themselves are computed in blocks")


def mmd_test(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, kernel: GaussianKernel | None = None,
             estimator: str = "unbiased", permutations: int = 500, max_samples: int = 2000, seed: int = 0,
             batch: int = 64) -> MMDTestResult:
    """MMD^2 between ``x`` and ``y`` and its permutation-test p-value.

    ``kernel`` defaults to the multi-kernel family around the median heuristic (as in DAN), with the
    bandwidth :func:`~qianyi.distances.mk_mmd2` takes, so ``mmd2`` equals ``mk_mmd2(x, y)`` (up to float
    rounding) when no side is subsampled. Each sample is subsampled to ``max_samples`` rows (seeded)
    since the pooled kernel matrix is held in memory; ``batch`` permutations are evaluated per matrix
    product.

    >>> rng = np.random.default_rng(0)
    >>> mmd_test(rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 1, permutations=99).p_value
    0.01
    """
    if estimator == "linear":
        raise DataError("mmd_test: use estimator='biased' or 'unbiased'; the linear-time statistic has no "
                        "pooled kernel matrix to permute (subsample instead)")
    if permutations < 1:
        raise DataError(f"mmd_test: permutations must be >= 1, got {permutations}")
    if max_samples < 2 or batch < 1:
        raise DataError(f"mmd_test: max_samples must be >= 2 (rows drawn per sample) and batch >= 1 (permutations "
                        f"per matrix product), got {max_samples} and {batch}")
    X, Y = _full_float(_as_2d(x, "x", "mmd_test"), _as_2d(y, "y", "mmd_test"))  # float32 at least, as every distance
    _check(estimator, X, Y)
    for name, t in (("x", X), ("y", Y)):
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"mmd_test: sample {name} holds NaN or infinite values (features of a network that "
                            "diverged? lower the learning rate); a test on them would mean nothing")
    g = torch.Generator().manual_seed(seed)
    if len(X) > max_samples:
        X = X[torch.randperm(len(X), generator=g)[:max_samples]]
    if len(Y) > max_samples:
        Y = Y[torch.randperm(len(Y), generator=g)[:max_samples]]
    check_test_memory(len(X), len(Y), X.element_size())
    kernel = kernel or multi_kernel()
    if not isinstance(kernel, GaussianKernel):
        raise ConfigError(f"mmd_test: kernel must be a GaussianKernel (GaussianKernel(), multi_kernel(multipliers)) "
                          f"or None, got {kernel!r}")
    with torch.no_grad():
        X, Y = _centred(X.detach(), Y.detach())  # MMD is translation-invariant: exact far from the origin
        Z = torch.cat([X, Y])
        # mk_mmd2's bandwidth, from the pooled sample in this order: computed once, no relabelling changes it
        K = kernel_mean(sq_dists(Z, Z), kernel.sigmas2(X, Y), kernel.multipliers)
        m, N = len(X), len(Z)
        observed = torch.zeros(1, N, dtype=K.dtype, device=K.device)
        observed[0, :m] = 1.0
        stat = _statistics(K, observed, estimator)[0]
        if not bool(torch.isfinite(stat)):
            raise DataError("mmd_test: the statistic overflowed (the features are too large to compare: a network "
                            "that diverged? lower the learning rate); no p-value can be given")
        exceed = 0
        for start in range(0, permutations, batch):
            b = min(batch, permutations - start)
            order = torch.argsort(torch.rand(b, N, generator=g), dim=1)
            A = (order < m).to(K.dtype).to(K.device)
            exceed += int((_statistics(K, A, estimator) >= stat).sum())
    return MMDTestResult(float(stat), (1 + exceed) / (1 + permutations), permutations, m, N - m)

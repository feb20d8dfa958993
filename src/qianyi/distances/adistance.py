r"""Proxy A-distance (Ben-David et al., "Analysis of Representations for Domain Adaptation", NIPS 2007;
used per layer by Ganin et al., JMLR 2016): :math:`\hat d_A = 2(1 - 2\,\mathrm{err})`, with err the
held-out error of a linear classifier trained to tell the two samples apart.

0 when the domains cannot be told apart (err = 0.5), 2 when they are perfectly separable (err = 0).
Both samples are subsampled to the same size, so chance is exactly 0.5.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError, QianyiWarning

#: Inverse regularisation strengths tried by cross-validation on the training half.
C_GRID = (0.01, 0.1, 1.0)


def _as_matrix(a: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """The rows of ``a`` as an (n, d) array, in its own dtype (float64 only for the rows drawn: a float64 copy
    of 1,000 images at 224 px was 1.1 GiB before any was used)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    a = a.reshape(len(a), -1) if a.ndim != 1 else a[:, None]
    if not np.isfinite(a).all():
        raise DataError(f"A-distance: sample {name} holds NaN or inf values; clean the features first")
    return a


@dataclass(frozen=True)
class DomainClassifierResult:
    """Held-out error of the domain classifier, and the proxy A-distance it implies."""

    error: float
    a_distance: float
    n_train: int
    n_test: int
    C: float


def domain_classifier(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, max_samples: int = 1000,
                      test_fraction: float = 0.5, seed: int = 0) -> DomainClassifierResult:
    """Train a linear domain classifier (logistic regression, C chosen on a third of the training half)
    on ``x`` (label 0) vs ``y`` (label 1) and measure its error on the held-out part.

    Each side is subsampled to ``min(len(x), len(y), max_samples)`` rows (seeded), so the classes
    are balanced and the error of a blind guess is 0.5. Exact duplicate rows (within a sample or
    across the two) stay on one side of the train/held-out split, and of the split that chooses C:
    all copies go where one of them, drawn at random, fell, and each side is then cut to equal numbers
    per domain. A copy trained on and tested again lets the classifier score by memory (two i.i.d.
    200-d samples, every row twice: 0.61 instead of 0.01). Only copies count (:func:`copy_groups`): the
    common values of discrete data (one-hot tables, binary features) are independent draws, split at random
    as any row (kept together, the held-out side held values the classifier never saw: too low a distance).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, Y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if X.shape[1] != Y.shape[1]:
        raise DataError(f"A-distance: samples have {X.shape[1]} and {Y.shape[1]} features; they must match")
    n = min(len(X), len(Y), max_samples)
    n_test = int(round(n * test_fraction))
    if n - n_test < 3 or n_test < 1:
        cause = f"max_samples={max_samples} rows drawn per domain: raise it" if n == max_samples < min(len(X), len(Y)) \
            else "give more rows"
        raise DataError(f"A-distance needs 3 training and 1 held-out sample per domain or more (with "
                        f"test_fraction={test_fraction}), got {len(X)} and {len(Y)} samples, {cause}")
    rng = np.random.default_rng(seed)
    X = X[rng.permutation(len(X))[:n]].astype(np.float64)
    Y = Y[rng.permutation(len(Y))[:n]].astype(np.float64)
    Z, d = np.concatenate([X, Y]), np.r_[np.zeros(n), np.ones(n)]
    test = np.r_[np.arange(n) < n_test, np.arange(n) < n_test]  # the first n_test drawn of each domain
    groups = copy_groups(row_groups(Z))
    copies = len(np.unique(groups)) < len(Z)
    keep = np.ones(len(Z), bool)
    if copies:
        grouped = _together(groups, test, rng)
        kept = _balanced(d, grouped, rng)
        per_side = [int((kept & (grouped == side) & (d == c)).sum()) for side in (False, True) for c in (0, 1)]
        if min(per_side[:2]) >= 3 and min(per_side[2:]) >= 1:
            test, keep = grouped, kept
        else:
            warnings.warn(f"A-distance: the {2 * n} rows drawn hold {len(np.unique(groups))} distinct ones, too few to "
                          "keep each row's copies on one side of the train/held-out split; copies fall on both sides, "
                          "which can overstate the distance", QianyiWarning, stacklevel=2)
    train_rows, test_rows = np.flatnonzero(keep & ~test), np.flatnonzero(keep & test)
    Z_train, d_train, Z_test, d_test = Z[train_rows], d[train_rows], Z[test_rows], d[test_rows]
    scaler = StandardScaler().fit(Z_train)
    Z_train, Z_test = scaler.transform(Z_train), scaler.transform(Z_test)
    fit_part = rng.permutation(len(Z_train))
    cut = len(fit_part) // 3
    hold, rest = fit_part[:cut], fit_part[cut:]
    if copies and cut:  # choosing C on copies of its training rows would favour memorising (a large C)
        in_hold = np.zeros(len(Z_train), bool)
        in_hold[hold] = True
        in_hold = _together(groups[train_rows], in_hold, rng)
        hold, rest = fit_part[in_hold[fit_part]], fit_part[~in_hold[fit_part]]

    def fit(C: float, rows: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=500, tol=1e-3).fit(Z_train[rows], d_train[rows])
    choose = len(hold) and len(np.unique(d_train[rest])) == 2
    C = min(C_GRID, key=lambda c: (fit(c, rest).predict(Z_train[hold]) != d_train[hold]).mean()) if choose else 1.0
    err = float((fit(C, np.arange(len(Z_train))).predict(Z_test) != d_test).mean())
    return DomainClassifierResult(err, a_distance_from_error(err), len(Z_train), len(Z_test), C)


def row_groups(Z: np.ndarray) -> np.ndarray:
    """A group id per row of ``Z`` (n, d): equal rows share one, numbered in order of first appearance."""
    ids: dict[bytes, int] = {}
    return np.array([ids.setdefault(hashlib.blake2b((r + 0.0).tobytes(), digest_size=16).digest(), len(ids))
                     for r in Z], dtype=np.int64)  # (+ 0.0: -0.0 and 0.0 are one value)


#: At most this many equal rows are copies of one sample (read twice, duplicated): see :func:`copy_groups`.
MAX_COPIES = 4


def copy_groups(groups: np.ndarray) -> np.ndarray:
    """:func:`row_groups` ids with only copies of a sample grouped: rows whose value occurs at most
    :data:`MAX_COPIES` times, in data whose rows are mostly distinct (at most that many per value on average).
    Every other row gets an id of its own: a value that recurs more often, or data of few values (categories,
    binary features), is a common value drawn again and again, not a copy."""
    sizes = np.bincount(groups)
    out = groups.copy()
    common = sizes[groups] > MAX_COPIES if len(groups) <= MAX_COPIES * len(sizes) else np.ones(len(groups), bool)
    out[common] = len(sizes) + np.arange(int(common.sum()))
    return out


def _together(groups: np.ndarray, side: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``side`` (a flag per row) with every group of equal rows on the side of one of its rows, drawn at random."""
    out = side.copy()
    order = np.argsort(groups, kind="stable")
    for members in np.split(order, np.cumsum(np.bincount(groups))[:-1]):
        if len(members) > 1:
            out[members] = side[rng.choice(members)]
    return out


def _balanced(d: np.ndarray, side: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows to keep so that each side holds as many rows of domain 0 as of domain 1 (surplus dropped at random)."""
    keep = np.ones(len(d), bool)
    for s in (False, True):
        rows = [np.flatnonzero((side == s) & (d == c)) for c in (0, 1)]
        k = min(len(r) for r in rows)
        for r in rows:
            keep[rng.choice(r, len(r) - k, replace=False)] = False
    return keep


def a_distance_from_error(err: float) -> float:
    """2(1 - 2 err), clipped to [0, 2] (an error above chance says no more than chance)."""
    return float(min(2.0, max(0.0, 2.0 * (1.0 - 2.0 * err))))


def proxy_a_distance(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, max_samples: int = 1000,
                     test_fraction: float = 0.5, seed: int = 0) -> float:
    """Proxy A-distance 2(1 - 2 err) between samples ``x`` (m, d) and ``y`` (n, d), in [0, 2].

    >>> rng = np.random.default_rng(0)
    >>> proxy_a_distance(rng.normal(size=(400, 3)), rng.normal(size=(400, 3)) + 10)
    2.0
    """
    return domain_classifier(x, y, max_samples, test_fraction, seed).a_distance

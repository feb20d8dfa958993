r"""Kernel mean matching: importance weights for source samples so that their weighted kernel mean
matches the target's, and a classifier trained with them.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from ..errors import ConfigError, DataError, QianyiWarning
from ._base import (FeatureMap, check_X, check_kernel, check_positive, chunks, kernel, landmark_count,
                    median_sq_dist_np, pick_landmarks, split_domains, target_as_y)

DEFAULT_MAX_KERNEL_BYTES = 512 * 2 ** 20
#: The objective is checked for convergence every this many iterations.
CHECK_EVERY = 10


def project_box_slab(v: np.ndarray, upper: float, lo: float, hi: float) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{b : 0 <= b <= upper, lo <= sum(b) <= hi}`` (bisection on a shift)."""
    c = np.clip(v, 0.0, upper)
    s = c.sum()
    if lo <= s <= hi:
        return c
    goal = hi if s > hi else lo
    a, b = float(v.min()) - upper, float(v.max())  # sum(clip(v - tau)) is n*upper at a, 0 at b
    for _ in range(100):
        tau = (a + b) / 2
        if np.clip(v - tau, 0.0, upper).sum() > goal:
            a = tau
        else:
            b = tau
        if b - a <= 1e-12 * max(1.0, abs(tau)):
            break
    return np.clip(v - (a + b) / 2, 0.0, upper)


class KMM(BaseEstimator):
    r"""Kernel mean matching (Huang, Smola, Gretton, Borgwardt, Schoelkopf, "Correcting Sample Selection
    Bias by Unlabeled Data", NIPS 2007): importance weights ``weights_`` of the source samples.

    .. math:: \min_\beta\ \tfrac12 \beta^\top K \beta - \kappa^\top \beta \quad \text{s.t. }
              0 \le \beta_i \le B,\ \Big|\sum_i \beta_i - n_s\Big| \le n_s \epsilon,

    with ``K_ij = k(x_i, x_j)`` on the source and ``kappa_i = (n_s/n_t) sum_j k(x_i, x'_j)`` over the
    target. Default ``eps = (sqrt(n_s) - 1)/sqrt(n_s)`` (the paper's choice), ``B = 1000``; Gaussian
    kernel ``exp(-gamma |a - b|^2 / (2 median))`` with the median squared distance of the pooled sample
    (``gamma`` a multiplier; ``"linear"`` matches means only). Solved by accelerated projected gradient
    (FISTA with restarts; exact projection onto the box-and-slab set) until the objective improves by
    less than ``tol`` (relative) over 10 iterations, or ``max_iter``. The optimum is flat (``K`` is
    nearly singular): the matched mean converges fast, single weights are less determined. Above
    ``max_kernel_bytes`` the source kernel is replaced by Nystroem features of ``landmarks`` points (with
    a :class:`~qianyi.errors.QianyiWarning`), as in :class:`TCA`.

    ``fit(Xs, Xt)`` (or ``Xt=``, or ``fit(X, sample_domain=sd)``); weights are for the source rows, in order.
    """

    def __init__(self, kernel: str = "rbf", gamma: float = 1.0, B: float = 1000.0, eps: float | None = None,
                 max_iter: int = 1000, tol: float = 1e-6, landmarks: int | None = None,
                 max_kernel_bytes: float = DEFAULT_MAX_KERNEL_BYTES, random_state: int = 0) -> None:
        self.kernel = kernel
        self.gamma = gamma
        self.B = B
        self.eps = eps
        self.max_iter = max_iter
        self.tol = tol
        self.landmarks = landmarks
        self.max_kernel_bytes = max_kernel_bytes
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> "KMM":
        """Weights for the source rows; ``y`` is ignored (a 2-D or sparse array there is taken as ``Xt``; a
        1-D one of another length than ``X`` is an error)."""
        check_kernel(self, self.kernel, ("linear", "rbf"))
        check_positive(self, gamma=self.gamma, B=self.B, tol=self.tol, max_kernel_bytes=self.max_kernel_bytes)
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ConfigError(f"KMM: max_iter={self.max_iter!r}; give a positive integer")
        y, Xt = target_as_y(self, X, y, Xt, sample_domain)
        d = split_domains(self, X, None, Xt, None, sample_domain)
        Xs, Xt = d.Xs.astype(np.float64), d.Xt.astype(np.float64)
        ns, nt = len(Xs), len(Xt)
        eps = (np.sqrt(ns) - 1) / np.sqrt(ns) if self.eps is None else self.eps
        if isinstance(eps, bool) or not (isinstance(eps, (int, float, np.number)) and 0 <= eps < np.inf):
            raise ConfigError(f"KMM: eps={self.eps!r}; give a number >= 0 (None: (sqrt(n_s) - 1)/sqrt(n_s); "
                              "from 1 on the weights' sum is bounded above only)")
        lo, hi = ns * (1 - eps), ns * (1 + eps)
        if ns * self.B < lo:
            raise ConfigError(f"KMM: B={self.B} is too small: the weights must sum to at least n_s(1 - eps) = "
                              f"{lo:.3g}; raise B (1000 in the paper) or eps")
        pooled = np.vstack([Xs, Xt])
        self.gamma_ = float(self.gamma / (2.0 * median_sq_dist_np(pooled, self.random_state))) \
            if self.kernel == "rbf" else None
        g = self.gamma_ or 1.0
        m = landmark_count(self, self.landmarks, ns, len(pooled), self.max_kernel_bytes,
                           f"KMM's source kernel on {ns} samples",
                           cap=max(10, int(self.max_kernel_bytes // (16 * ns))))  # Phi_s (ns x m) and a copy
        if m is None:
            K = kernel(Xs, Xs, self.kernel, g)
            kappa = np.concatenate([kernel(Xs[sl], Xt, self.kernel, g).sum(1) for sl in chunks(ns, nt)])

            def Kmv(v: np.ndarray) -> np.ndarray:
                return K @ v
        else:
            fmap = FeatureMap(self.kernel, g, pick_landmarks(pooled, m, self.random_state))
            Ps = np.vstack([P for _, P in fmap.blocks(Xs)])
            t_sum = sum(P.sum(0) for _, P in fmap.blocks(Xt))
            kappa = Ps @ t_sum

            def Kmv(v: np.ndarray) -> np.ndarray:
                return Ps @ (Ps.T @ v)
        self.n_landmarks_ = m
        kappa *= ns / nt
        # Lipschitz constant of the gradient: the largest eigenvalue of K (power iteration, then a margin)
        v = np.random.default_rng(self.random_state).normal(size=ns)
        for _ in range(50):
            w = Kmv(v)
            nrm = np.linalg.norm(w)
            if nrm == 0:
                break
            v = w / nrm
        L = 1.1 * max(float(v @ Kmv(v)), 1e-12)
        b = project_box_slab(np.ones(ns), self.B, lo, hi)
        z, t = b.copy(), 1.0
        f_last = float(0.5 * b @ Kmv(b) - kappa @ b)
        converged = False
        for it in range(1, int(self.max_iter) + 1):
            grad = Kmv(z) - kappa
            b_new = project_box_slab(z - grad / L, self.B, lo, hi)
            if grad @ (b_new - b) > 0:  # restart when momentum points uphill
                t, z = 1.0, b.copy()
                b_new = project_box_slab(z - (Kmv(z) - kappa) / L, self.B, lo, hi)
            t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
            z = b_new + ((t - 1) / t_new) * (b_new - b)
            b, t = b_new, t_new
            if it % CHECK_EVERY == 0:
                f = float(0.5 * b @ Kmv(b) - kappa @ b)
                if 0 <= f_last - f <= self.tol * max(1.0, abs(f)):  # (an increase: momentum overshot; go on)
                    converged = True
                    break
                f_last = f
        if not converged:
            warnings.warn(f"KMM: the QP objective still improved by more than tol={self.tol} (relative) per "
                          f"{CHECK_EVERY} iterations after max_iter={self.max_iter}; raise max_iter or tol",
                          ConvergenceWarning, stacklevel=2)
        self.weights_ = b
        ess = float(b.sum() ** 2 / max(float((b * b).sum()), np.finfo(np.float64).tiny))
        if len(b) >= 20 and ess < max(10.0, 0.05 * len(b)):  # a few source rows carry all the weight
            warnings.warn(f"KMM: the weights concentrate on about {ess:.0f} effective source samples of {len(b)} (few "
                          "source rows resemble the target sample); a classifier fitted with them learns from those "
                          "few: compare with the unweighted source",
                          QianyiWarning, stacklevel=2)
        self.n_iter_ = it
        self.eps_ = float(eps)
        self.objective_ = float(0.5 * b @ Kmv(b) - kappa @ b)
        return self

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


def _estimator_has(attr: str):  # noqa: ANN202
    def check(self: Any) -> bool:
        est = self.estimator_ if hasattr(self, "estimator_") else (self.estimator or _default_classifier())
        return hasattr(est, attr)
    return check


def _default_classifier() -> LogisticRegression:
    return LogisticRegression(max_iter=1000)


class KMMClassifier(ClassifierMixin, BaseEstimator):
    """``estimator`` (default ``LogisticRegression(max_iter=1000)``) fitted on the source rows with
    ``sample_weight`` = :class:`KMM` weights towards the target (``kmm``, default ``KMM()``).

    ``fit(Xs, ys, Xt=Xt)``, ``fit(X, y, sample_domain=sd)`` or ``unlabelled=`` marking target rows of ``y``
    (see :mod:`qianyi.shallow`); then ``predict``, ``predict_proba``, ``decision_function`` (as the estimator
    offers), ``score``. Fitted: ``kmm_``, ``weights_``, ``estimator_``, ``classes_``.
    """

    def __init__(self, estimator: Any = None, kmm: KMM | None = None, unlabelled: Any = None) -> None:
        self.estimator = estimator
        self.kmm = kmm
        self.unlabelled = unlabelled

    def fit(self, X: Any, y: Any, Xt: Any = None, sample_domain: Any = None) -> "KMMClassifier":
        d = split_domains(self, X, y, Xt, None, sample_domain, self.unlabelled, need_y=True)
        check_classification_targets(d.ys)
        if len(np.unique(d.ys)) < 2:
            raise DataError(f"KMMClassifier.fit: the source rows hold only 1 class ({d.ys[0]!r}); a classifier "
                            "needs at least two")
        est = _default_classifier() if self.estimator is None else clone(self.estimator)
        if not has_fit_parameter(est, "sample_weight"):
            raise ConfigError(f"KMMClassifier: {type(est).__name__}.fit takes no sample_weight; choose an "
                              "estimator that does (e.g. LogisticRegression, SVC, a tree)")
        self.kmm_ = (KMM() if self.kmm is None else clone(self.kmm)).fit(d.Xs, Xt=d.Xt)
        self.weights_ = self.kmm_.weights_
        self.estimator_ = est.fit(d.Xs, d.ys, sample_weight=self.weights_)
        self.classes_ = self.estimator_.classes_
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._check(X))

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._check(X))

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self._check(X))

    def _check(self, X: Any) -> np.ndarray:
        return check_X(self, X, "X", reset=False)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

r"""TrAdaBoost: boosting that keeps labelled source samples while they help on a few labelled target samples."""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from ..errors import ConfigError, DataError, QianyiWarning
from ._base import check_X, same_label_types, split_domains

#: Weighted target errors are kept in [EPS_MIN, 1/2 - EPS_MIN]: 0 would give beta_t = 0, 1/2 or more breaks
#: the paper's assumption eps_t < 1/2.
EPS_MIN = 1e-10


def _warn_if_too_few_leaves(base: Any, k: int, default: bool) -> None:
    """Warn when ``base`` is a decision tree whose depth or leaf limit leaves it fewer leaves than the ``k``
    classes: each round then predicts at most that many classes, and TrAdaBoost needs a weighted target error
    under 1/2 from each."""
    if not isinstance(base, DecisionTreeClassifier):
        return
    depth, leaves = base.get_params()["max_depth"], base.get_params()["max_leaf_nodes"]
    most = min(2 ** depth if depth is not None else math.inf, leaves if leaves is not None else math.inf)
    if most >= k:
        return
    limit = f"max_depth={depth}" if leaves is None or (depth is not None and 2 ** depth <= leaves) \
        else f"max_leaf_nodes={leaves}"
    deeper = math.ceil(math.log2(k)) + 1
    warnings.warn(f"TrAdaBoost: the base estimator{' (the default)' if default else ''}, a decision tree with "
                  f"{limit}, has at most {most} leaves, so each round predicts at most {most} of the {k} classes: "
                  "its weighted target error stays at 1/2 or more unless those few classes hold half of the target's "
                  f"weight, and the rounds get no real vote; use a deeper tree (DecisionTreeClassifier(max_depth="
                  f"{deeper})) or another base estimator, e.g. TrAdaBoost(LogisticRegression(max_iter=1000))",
                  QianyiWarning, stacklevel=3)


class TrAdaBoost(ClassifierMixin, BaseEstimator):
    r"""TrAdaBoost (Dai, Yang, Xue, Yu, "Boosting for Transfer Learning", ICML 2007).

    Source ("diff-distribution", ``n`` rows) and labelled target ("same-distribution", ``m`` rows) are
    trained on together from ``w^1 = 1``; round ``t = 1..N`` (``N = n_estimators``) fits ``estimator`` with
    ``p^t = w^t / sum(w^t)`` (scaled to mean 1 as ``sample_weight``), then with the loss
    ``l_i = |h_t(x_i) - y_i|`` (0/1: misclassified or not)

    .. math:: \epsilon_t = \frac{\sum_{i \in T} w_i^t l_i}{\sum_{i \in T} w_i^t},\quad
              \beta_t = \frac{\epsilon_t}{1 - \epsilon_t},\quad
              \beta = \frac{1}{1 + \sqrt{2 \ln n / N}},

    .. math:: w_i^{t+1} = w_i^t \beta^{l_i} \text{ (source)},\qquad
              w_i^{t+1} = w_i^t \beta_t^{-l_i} \text{ (target)}:

    misclassified source samples lose weight, misclassified target samples gain it. Binary output as in
    the paper: ``h_f(x) = 1`` iff ``prod_{t=ceil(N/2)}^N beta_t^{-h_t(x)} >= prod beta_t^{-1/2}``, i.e. a vote of
    rounds ``ceil(N/2)..N`` weighted ``ln(1/beta_t)``; with more than two classes the same weighted vote
    over classes (the natural extension; it asks each round for target error under 1/2, which is harder
    with many classes). ``eps_t`` is kept in ``[1e-10, 1/2 - 1e-10]``: a round at chance or worse then has
    (almost) no vote and leaves the target weights as they were.

    ``fit(Xs, ys, Xt, yt)`` (or ``Xt=, yt=``, or ``fit(X, y, sample_domain=sd)`` with ``sd < 0`` on target
    rows); labelled target rows are required. ``predict``, ``predict_proba`` (normalised votes),
    ``decision_function`` (binary: the vote margin, >= 0 for ``classes_[1]``), ``score``. Fitted:
    ``estimators_``, ``estimator_errors_`` (``eps_t``), ``estimator_weights_`` (``ln 1/beta_t``), ``beta_``,
    ``sample_weights_`` (the weights after the last round, source rows then target rows, normalised to sum 1),
    ``voters_`` (indices of the rounds that vote). Default ``estimator``: a depth-2 decision tree, which has 4 leaves
    and so predicts at most 4 classes per round: with more classes it cannot work (a warning says so); give a
    deeper tree or e.g. ``LogisticRegression``. ``random_state``: an int ``s`` seeds round ``t`` (from 0) with
    ``(s + t) mod 2**32``, a RandomState draws one seed per round, None leaves the rounds unseeded.
    """

    def __init__(self, estimator: Any = None, n_estimators: int = 20, random_state: int | None = 0) -> None:
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X: Any, y: Any, Xt: Any = None, yt: Any = None, sample_domain: Any = None) -> "TrAdaBoost":
        N = self.n_estimators
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise ConfigError(f"TrAdaBoost: n_estimators={N!r}; give a positive integer (the paper's N)")
        d = split_domains(self, X, y, Xt, yt, sample_domain, need_y=True, need_yt=True)
        seeds = self._round_seeds(N)
        check_classification_targets(np.r_[d.ys, d.yt])
        same_label_types(self, d.ys, d.yt)
        self.classes_, codes = np.unique(np.r_[d.ys, d.yt], return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"TrAdaBoost.fit: the labels hold only 1 class ({self.classes_[0]!r}); a classifier "
                              "needs at least two")
        n, m = len(d.Xs), len(d.Xt)
        Xall = np.vstack([d.Xs, d.Xt])
        base = DecisionTreeClassifier(max_depth=2) if self.estimator is None else self.estimator
        if not has_fit_parameter(base, "sample_weight"):
            raise ConfigError(f"TrAdaBoost: {type(base).__name__}.fit takes no sample_weight; choose an estimator "
                              "that does (e.g. a decision tree, LogisticRegression, SVC)")
        _warn_if_too_few_leaves(base, len(self.classes_), default=self.estimator is None)
        self.beta_ = 1.0 / (1.0 + math.sqrt(2.0 * math.log(n) / N))
        w = np.ones(n + m)
        self.estimators_, errors, alphas = [], [], []
        for t in range(N):
            p = w / w.sum()
            h = clone(base)
            if "random_state" in h.get_params() and self.random_state is not None:
                h.set_params(random_state=int(seeds[t]))
            h.fit(Xall, codes, sample_weight=p * (n + m))
            miss = (np.asarray(h.predict(Xall)) != codes).astype(float)
            eps = float(w[n:] @ miss[n:] / w[n:].sum())
            eps = min(max(eps, EPS_MIN), 0.5 - EPS_MIN)
            beta_t = eps / (1.0 - eps)
            w = w.copy()
            w[:n] *= self.beta_ ** miss[:n]
            w[n:] *= beta_t ** (-miss[n:])
            w /= w.sum()  # a common factor: keeps the weights finite over many rounds
            self.estimators_.append(h)
            errors.append(eps)
            alphas.append(math.log(1.0 / beta_t))
        self.estimator_errors_ = np.array(errors)
        self.estimator_weights_ = np.array(alphas)
        self.voters_ = np.arange(math.ceil(N / 2) - 1, N)  # rounds ceil(N/2)..N, 1-based
        self.sample_weights_ = w
        if not (self.estimator_weights_[self.voters_] > 1e-8).any():
            warnings.warn("TrAdaBoost: every voting round had a weighted target error of 1/2 or more, so no round "
                          "earns a real vote (they vote with equal, near-zero weights: a plain majority of weak "
                          "rounds); use a stronger base estimator or more target labels", QianyiWarning, stacklevel=2)
        return self

    def _round_seeds(self, N: int) -> list[int] | None:
        """The ``random_state`` of each round's estimator: for an int seed ``s``, ``(s + t) mod 2**32`` in round
        ``t = 0..N-1`` (``s + t`` for every seed up to ``2**32 - N``, as before; scikit-learn takes ``[0, 2**32)``);
        for a RandomState, ``N`` draws from it; for None, None (each round unseeded)."""
        seed = self.random_state
        if seed is None:
            return None
        if not isinstance(seed, (int, np.integer)):
            return check_random_state(seed).randint(0, 2 ** 31 - 1, N).tolist()
        if not 0 <= seed < 2 ** 32:
            raise ConfigError(f"TrAdaBoost: random_state={seed!r}; give a whole number in [0, 2**32 - 1], a numpy "
                              "RandomState, or None (scikit-learn's range)")
        return [(int(seed) + t) % 2 ** 32 for t in range(N)]

    def _votes(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = check_X(self, X, "X", reset=False)
        V = np.zeros((len(X), len(self.classes_)))
        for t in self.voters_:
            pred = np.asarray(self.estimators_[t].predict(X)).astype(int)
            V[np.arange(len(X)), pred] += self.estimator_weights_[t]
        return V

    def predict_proba(self, X: Any) -> np.ndarray:
        V = self._votes(X)
        total = V.sum(1, keepdims=True)
        return np.where(total > 0, V / np.where(total > 0, total, 1.0), 1.0 / len(self.classes_))

    def decision_function(self, X: Any) -> np.ndarray:
        P = self.predict_proba(X)
        return P[:, 1] - 0.5 if len(self.classes_) == 2 else P

    def predict(self, X: Any) -> np.ndarray:
        P = self.predict_proba(X)
        if len(self.classes_) == 2:  # the paper's rule: class 1 when its vote is at least half
            return self.classes_[(P[:, 1] >= 0.5).astype(int)]
        return self.classes_[P.argmax(1)]

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

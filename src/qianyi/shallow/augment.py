r"""Feature augmentation (Daume III, "Frustratingly Easy Domain Adaptation", ACL 2007).

.. math:: \Phi_S(x) = \langle x, x, 0 \rangle, \qquad \Phi_T(x) = \langle x, 0, x \rangle

A linear model on the augmented features learns a shared weight vector (first block) and one
correction per domain; regularisation makes the shared part carry what the domains agree on.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

from ..errors import DataError
from ._base import check_X, domain_mask, same_label_types, split_domains


def augment(X: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``[x, x, 0]`` for rows where ``source`` is True, ``[x, 0, x]`` for the others."""
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros((len(X), 3 * X.shape[1]))
    d = X.shape[1]
    out[:, :d] = X
    out[source, d:2 * d] = X[source]
    out[~source, 2 * d:] = X[~source]
    return out


class FeatureAugmentation(TransformerMixin, BaseEstimator):
    r"""Daume III's augmentation as a transformer: ``x -> [x, x, 0]`` for source rows, ``[x, 0, x]`` for
    target rows (output ``3 d`` features: shared, source-only, target-only).

    The domain comes from ``sample_domain`` (``> 0`` source, ``< 0`` target) in ``transform`` and
    ``fit_transform``; without it every row is a target row (what a fitted pipeline predicts on).
    """

    def fit(self, X: Any, y: Any = None, sample_domain: Any = None) -> "FeatureAugmentation":
        X = check_X(self, X, "X", reset=True)
        if sample_domain is not None:
            domain_mask(self, len(X), sample_domain, "target")
        return self

    def transform(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        X = check_X(self, X, "X", reset=False)
        return augment(X, domain_mask(self, len(X), sample_domain, "target"))

    def fit_transform(self, X: Any, y: Any = None, sample_domain: Any = None) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(X, sample_domain=sample_domain)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        names = _check_feature_names_in(self, input_features)
        return np.array([f"{block}__{n}" for block in ("shared", "source", "target") for n in names], dtype=object)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.requires_fit = True
        return tags


def _estimator_has(attr: str):  # noqa: ANN202
    def check(self: Any) -> bool:
        est = self.estimator_ if hasattr(self, "estimator_") else (self.estimator or LogisticRegression())
        return hasattr(est, attr)
    return check


class AugmentedClassifier(ClassifierMixin, BaseEstimator):
    """``estimator`` (default ``LogisticRegression(max_iter=1000)``) trained on Daume III's augmented
    features of labelled source and labelled target rows; predicts target rows (``sample_domain`` may say
    otherwise, ``> 0`` for source rows).

    ``fit(Xs, ys, Xt, yt)`` (or ``Xt=, yt=``, or ``fit(X, y, sample_domain=sd)``); labelled target rows are
    required (without them the target block is never trained; use the estimator alone).
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, Xt: Any = None, yt: Any = None, sample_domain: Any = None) -> "AugmentedClassifier":
        d = split_domains(self, X, y, Xt, yt, sample_domain, need_y=True, need_yt=True)
        labels = np.r_[d.ys, d.yt]
        check_classification_targets(labels)
        same_label_types(self, d.ys, d.yt)
        if len(np.unique(labels)) < 2:
            raise DataError(f"AugmentedClassifier.fit: the labels hold only 1 class ({labels[0]!r}); a classifier "
                            "needs at least two")
        Z = np.vstack([augment(d.Xs, np.ones(len(d.Xs), bool)), augment(d.Xt, np.zeros(len(d.Xt), bool))])
        est = LogisticRegression(max_iter=1000) if self.estimator is None else clone(self.estimator)
        self.estimator_ = est.fit(Z, labels)
        self.classes_ = self.estimator_.classes_
        return self

    def _augmented(self, X: Any, sample_domain: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        X = check_X(self, X, "X", reset=False)
        return augment(X, domain_mask(self, len(X), sample_domain, "target"))

    def predict(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        Z = self._augmented(X, sample_domain)
        return self.estimator_.predict(Z)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        Z = self._augmented(X, sample_domain)
        return self.estimator_.predict_proba(Z)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        Z = self._augmented(X, sample_domain)
        return self.estimator_.decision_function(Z)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

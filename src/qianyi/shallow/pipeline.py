"""An adapter and a classifier as one scikit-learn estimator, with the papers' protocol built in.

A plain ``Pipeline(adapter, classifier)`` cannot express the protocol of CORAL, Subspace Alignment or
TCA: its classifier would be fitted on every row it is given (target rows too, with whatever labels
they carry), and at prediction time the adapter would not know the rows are target rows.
:class:`AdaptedClassifier` fits the adapter on both domains, the classifier on the mapped **source**
rows only, and maps the rows it predicts on **as target rows**.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError
from ._base import check_X, split_domains
from .alignment import CORAL


def _map(adapter: Any, X: np.ndarray, domain: int) -> np.ndarray:
    """``adapter.transform`` of rows all of one domain (``+1`` source, ``-1`` target); an adapter whose
    transform takes no ``sample_domain`` (TCA: one embedding for both) maps every row alike."""
    if "sample_domain" in inspect.signature(adapter.transform).parameters:
        return adapter.transform(X, sample_domain=np.full(len(X), domain))
    return adapter.transform(X)


def _unsupervised_adapter(adapter: Any) -> bool:
    """Whether ``adapter`` is fitted as ``fit(Xs, Xt=Xt)`` (no labels) and has ``transform``."""
    if adapter is None or not hasattr(adapter, "transform") or not hasattr(adapter, "fit"):
        return False
    try:
        params = inspect.signature(adapter.fit).parameters
    except (TypeError, ValueError):
        return False
    y = params.get("y")
    return "Xt" in params and (y is None or y.default is not inspect.Parameter.empty)


def _classifier_has(name: str) -> Any:
    """For ``available_if``: whether the (fitted, else the given or default) classifier has method ``name``."""
    def check(self: "AdaptedClassifier") -> bool:
        return hasattr(self.estimator_ if hasattr(self, "estimator_") else (self.estimator or _knn()), name)

    return check


class AdaptedClassifier(ClassifierMixin, BaseEstimator):
    """An unsupervised adapter (:class:`CORAL`, :class:`SubspaceAlignment`, :class:`TCA`) then a classifier
    trained on the adapted source.

    ``fit`` fits ``adapter`` (default :class:`CORAL`) on the source and target rows, maps the source rows as source and fits
    ``estimator`` (default: 1-nearest neighbour, the papers' classifier) on them and their labels only;
    ``predict(X)`` maps ``X`` as target rows (CORAL leaves them as they are, SA projects them on the
    target basis, TCA embeds them) and classifies. The target is read by the module's conventions:
    ``fit(Xs, ys, Xt=Xt)``, ``fit(X, y, sample_domain=sd)`` (``sd < 0``: target rows, whose labels are
    ignored) or ``unlabelled=MARKER`` in ``y`` (then it works in ``GridSearchCV`` as is; the default score
    counts the target rows, whose labels are the marker, as wrong: score a labelled split instead).

    >>> from qianyi.shallow import CORAL, AdaptedClassifier
    >>> AdaptedClassifier(CORAL()).fit(Xs, ys, Xt=Xt).predict(Xt)        # doctest: +SKIP
    """

    def __init__(self, adapter: Any = None, estimator: Any = None, unlabelled: Any = None) -> None:
        self.adapter = adapter
        self.estimator = estimator
        self.unlabelled = unlabelled

    def fit(self, X: Any, y: Any, Xt: Any = None, sample_domain: Any = None) -> "AdaptedClassifier":
        """Fit the adapter on both domains, the classifier on the adapted source rows and their labels."""
        adapter = CORAL() if self.adapter is None else self.adapter  # the default: no setting to choose
        if not _unsupervised_adapter(adapter):
            raise ConfigError(f"AdaptedClassifier: adapter must be an unsupervised adapter, fit(X, Xt=...) without "
                              f"labels and transform, e.g. CORAL(), SubspaceAlignment(), TCA(); got "
                              f"{type(adapter).__name__} (a classifier such as JDA or KMMClassifier, or a plain "
                              "scaler or Pipeline, is not one)")
        d = split_domains(self, X, y, Xt, None, sample_domain, self.unlabelled, need_y=True, min_source=2)
        self.adapter_ = clone(adapter).fit(d.Xs, Xt=d.Xt)
        est = _knn() if self.estimator is None else clone(self.estimator)
        self.estimator_ = est.fit(_map(self.adapter_, d.Xs, +1), d.ys)
        self.classes_ = self.estimator_.classes_
        return self

    def _target(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return _map(self.adapter_, check_X(self, X, "X", reset=False), -1)

    def predict(self, X: Any) -> np.ndarray:
        """Classes of ``X``, mapped as target rows."""
        Z = self._target(X)  # first: NotFittedError before fit
        return self.estimator_.predict(Z)

    @available_if(_classifier_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of ``X``, mapped as target rows (when the classifier has them)."""
        Z = self._target(X)
        return self.estimator_.predict_proba(Z)

    @available_if(_classifier_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """The classifier's decision function on ``X``, mapped as target rows (when the classifier has one:
        an ``SVC``, a linear model), e.g. for the ``roc_auc`` scorer."""
        Z = self._target(X)
        return self.estimator_.decision_function(Z)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=1)

"""A scikit-learn estimator over the one engine, for people who hold arrays.

>>> from qianyi import DomainAdapter
>>> clf = DomainAdapter("dann", epochs=10).fit(Xs, ys, Xt=Xt)        # doctest: +SKIP
>>> clf.predict(Xt), clf.predict_proba(Xt)                            # doctest: +SKIP

Which rows are target (unlabelled): pass ``Xt=`` separately; or mark target rows of ``X`` with a
label given as ``unlabelled=`` (e.g. ``-1``, scikit-learn's semi-supervised convention), which is
what makes the estimator work in a ``Pipeline`` (the scaler sees source and target rows) and in
``GridSearchCV``; or pass ``sample_domain`` (positive: source, negative: target; skada's
convention). Without any target rows the adapter adapts to the inputs it was given (the source
itself). Choose hyper-parameters without target labels with :func:`label_free_scorer`, a
label-free validator as a scikit-learn scorer:

>>> pipe = make_pipeline(StandardScaler(), DomainAdapter("dan", unlabelled=-1))        # doctest: +SKIP
>>> GridSearchCV(pipe, {"domainadapter__settings": [{"trade_off": 1}, {"trade_off": 3}]},
...              scoring=label_free_scorer("snd")).fit(X, y_with_minus_one_for_target)  # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..data.domain import Domain, TransferTask
from ..errors import ConfigError, DataError, QianyiWarning
from ..methods.registry import get_method
from ..nn.backbones import Backbone
from ..nn.inference import predict_logits
from ..select import SelectionData, get_validator, score_all
from ..select.data import Predictions, SplitOutputs, _subsample
from ..select.validators import SELECTION_SAMPLES
from ..shallow._base import (check_columns, check_sample_domain, one_target_convention, refuse_sparse,
                             unlabelled_rows, warn_unmarked_target)
from .config import TrainConfig
from .engine import Trainer


class DomainAdapter(ClassifierMixin, BaseEstimator):
    """Train ``method`` (any registered method, with ``settings``) on labelled source rows and unlabelled
    target rows; predict like any classifier.

    ``lr``, ``optimizer``, ``steps_per_epoch``: None is the data's default (:meth:`TrainConfig.for_task`:
    for vectors Adam 0.002 and at least 500 updates; for images SGD 0.01, one pass per epoch).
    ``backbone``: a callable ``(sample_shape, n_classes) -> Backbone``, a network (each fit trains a copy of it)
    or a named one (``"lenet"``, ``"resnet18"``; default: qianyi's MLP for vectors, LeNet for images of shape
    (c, h, w) passed as ``X`` of shape (n, c, h, w)). ``device``: None is CUDA when present, as ``TrainConfig``.
    ``random_state``: a seed (the same gives the same model), or None / a ``RandomState`` to draw one.
    ``training``: other :class:`TrainConfig` settings, e.g. ``{"weight_decay": 1e-4, "momentum": 0.8,
    "lr_schedule": "constant", "freeze": 2, "init_from": "model.pt"}``. Fitted: ``model_``, ``history_`` (per epoch), ``selected_epoch_``, ``flags_`` (the
    run's health warnings, also issued as :class:`~qianyi.errors.QianyiWarning`). Shallow methods have their
    own estimators (:mod:`qianyi.shallow`); methods that train no classifier or learn from target labels are
    refused.
    """

    def __init__(self, method: str = "dann", settings: dict[str, Any] | None = None, epochs: int = 20,
                 batch_size: int = 64, lr: float | None = None, optimizer: str | None = None,
                 steps_per_epoch: int | None = None, select: str = "last", val_fraction: float = 0.1,
                 backbone: str | Backbone | Callable[[tuple[int, ...], int], Backbone] | None = None,
                 device: str | None = None, random_state: int | np.random.RandomState | None = 0,
                 progress: bool = False, unlabelled: int | str | None = None,
                 training: dict[str, Any] | None = None) -> None:
        self.method = method
        self.settings = settings
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.select = select
        self.val_fraction = val_fraction
        self.backbone = backbone
        self.device = device
        self.random_state = random_state
        self.progress = progress
        self.unlabelled = unlabelled
        self.training = training

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, Xt: Any = None, sample_domain: Any = None) -> "DomainAdapter":
        """Fit on source rows (labelled) and target rows (unlabelled; see the module docstring)."""
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, (int, np.integer, type(None),
                                                                                      np.random.RandomState)):
            raise ConfigError(f"DomainAdapter: random_state={self.random_state!r}; give a whole number (qianyi seeds "
                              "every run: the same number gives the same model), e.g. 0, or None (a fresh seed)")
        seed = int(self.random_state) if isinstance(self.random_state, (int, np.integer)) else \
            int(check_random_state(self.random_state).randint(0, 2 ** 31 - 2))  # None / RandomState: scikit-learn's way
        y_raw = np.asarray(y) if y is not None else None
        if y_raw is not None and y_raw.dtype.kind == "f" and np.isnan(y_raw).any():  # scikit-learn's "contains NaN"
            raise DataError("DomainAdapter.fit: y holds NaN, which its scikit-learn checks refuse (the shallow "
                            "estimators accept NaN on target rows); give the target rows a number instead: -1 with "
                            "unlabelled=-1, or any label with sample_domain= (target rows' labels are not read), or "
                            "give the target as Xt=")
        refuse_sparse(self, X, "X")
        refuse_sparse(self, Xt, "Xt")
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32, y_numeric=False)
        _check_layout(X, "X")
        self.sample_shape_ = X.shape[1:]  # as given: (h, w) grey images are read as (1, h, w) here and in predict
        X = _with_channel(X)
        check_classification_targets(y)
        if Xt is not None and sample_domain is not None:
            raise DataError("DomainAdapter.fit: give the target either as Xt= or by sample_domain=, not both")
        one_target_convention("DomainAdapter", y, self.unlabelled, Xt, sample_domain)
        target_rows = _target_rows(y, sample_domain, self.unlabelled)
        Xs, ys = X[~target_rows], y[~target_rows]
        if len(Xs) == 0:
            raise DataError("DomainAdapter.fit: every row is a target row; give labelled source rows")
        if Xt is not None:
            check_columns(self, Xt, "Xt")
            try:
                Xt = _with_channel(np.asarray(Xt, np.float32))
            except (TypeError, ValueError) as exc:
                raise DataError(f"DomainAdapter.fit: Xt cannot be read as numbers ({exc}); give numeric target rows "
                                "with X's columns") from None
            if Xt.shape[1:] != X.shape[1:]:
                raise DataError(f"DomainAdapter.fit: Xt has samples of shape {Xt.shape[1:]}, X {X.shape[1:]}")
        else:
            if not target_rows.any():
                warn_unmarked_target("DomainAdapter", y)
            Xt = X[target_rows] if target_rows.any() else Xs
        self.classes_, codes = np.unique(ys, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"DomainAdapter.fit: the source rows hold only one class ({self.classes_[0]!r}); a "
                            "classifier needs at least two")
        source = Domain(Xs, codes, "source", class_names=tuple(str(c) for c in self.classes_))
        task = TransferTask.from_domains(source, Domain(Xt, None, "target"), val_fraction=self.val_fraction,
                                         seed=seed)
        config = TrainConfig(epochs=self.epochs, batch_size=min(self.batch_size, max(2, len(task.source))),
                             lr=self.lr, optimizer=self.optimizer, steps_per_epoch=self.steps_per_epoch,
                             select=self.select, seed=seed, device=self.device,
                             progress=self.progress, **_training_settings(self.training))
        method = get_method(self.method, **(self.settings or {}))
        if getattr(method, "shallow", False):
            raise ConfigError(f"DomainAdapter({self.method!r}): {self.method} is a shallow method, with its own "
                              "scikit-learn estimators: qianyi.shallow (e.g. AdaptedClassifier(TCA()), JDA, KMMClassifier)")
        if not method.trains_classifier:
            raise ConfigError(f"DomainAdapter({self.method!r}): {self.method} trains no classifier (it translates "
                              "images); use qianyi.run and `qianyi translate`, or cycada to classify")
        if method.uses_target_labels:
            raise ConfigError(f"DomainAdapter({self.method!r}): {self.method} trains on target labels, and the "
                              "adapter's target rows are unlabelled; use qianyi.run with a labelled target")
        from .run import _factory, run

        if getattr(method, "needs_source_model", False):  # self-train, shot: a starting model first (stage 0)
            _, fit = run(method, task, config, backbone=self.backbone)  # (its flags warned there)
        else:
            fit = Trainer(method, config, _factory(self.backbone)).fit(task)
            for flag in fit.flags:  # as run() warns them: a collapsed network, a game one side won
                warnings.warn(f"DomainAdapter({self.method!r}): {flag}", QianyiWarning, stacklevel=2)
        self.flags_ = list(fit.flags)
        self.model_ = fit.model
        self.history_ = fit.history
        self.selected_epoch_ = fit.selected_epoch
        return self

    # -- predicting ------------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        grey = len(getattr(self, "sample_shape_", ())) == 2
        if grey and getattr(X, "ndim", 0) == 4 and tuple(X.shape[1:]) == (1, *self.sample_shape_):
            X = X[:, 0]  # (n, 1, h, w): the same grey images with their channel axis
        refuse_sparse(self, X, "X")
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=np.float32)
        _check_layout(X, "X")
        if hasattr(self, "sample_shape_") and X.shape[1:] != self.sample_shape_:  # (absent: fitted by an older qianyi)
            raise DataError(f"DomainAdapter.predict: X has samples of shape {X.shape[1:]}, the adapter was fitted on "
                            f"{self.sample_shape_}")
        X = _with_channel(X)
        device = next(self.model_.parameters()).device
        with torch.no_grad():
            return torch.softmax(predict_logits(self.model_, X, device), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.classes_[self.predict_proba(X).argmax(1)]

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags


def _with_channel(X: np.ndarray) -> np.ndarray:
    """Grey images ``(n, h, w)`` as ``(n, 1, h, w)``, the layout the image networks read; anything else as given."""
    return X[:, None] if X.ndim == 3 else X


def _check_layout(X: np.ndarray, name: str) -> None:
    """Images come as (n, c, h, w); a last axis of 1, 3 or 4 after a larger one looks channels-last."""
    if X.ndim == 4 and X.shape[-1] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
        raise DataError(f"DomainAdapter: {name} has shape {X.shape}, which looks channels-last (n, h, w, c); give "
                        f"images as (n, c, h, w): {name}.transpose(0, 3, 1, 2)")


def _target_rows(y: np.ndarray, sample_domain: Any, unlabelled: Any) -> np.ndarray:
    if sample_domain is not None:
        sd = check_sample_domain("DomainAdapter", sample_domain, len(y))
        return sd < 0
    if unlabelled is None:
        return np.zeros(len(y), bool)
    return unlabelled_rows("DomainAdapter", y, unlabelled)


def label_free_scorer(validator: str = "entropy") -> "LabelFreeScorer":
    """A scikit-learn scorer ``(estimator, X, y) -> float`` (greater is better) that reads no target
    label: rows labelled with the adapter's ``unlabelled`` marker are the target, the others serve as
    labelled source validation.

    Only validators that need no source training split qualify (entropy, snd, atc, rv). A shallow classifier
    (:mod:`qianyi.shallow`: ``KMMClassifier``, ``JDA``, ``AdaptedClassifier``) is scored from its
    ``predict_proba`` with entropy, snd or atc; one whose probabilities are all 0 or 1 (the default 1-NN's) or
    that has none is refused. scikit-learn's searches turn a scorer's error into NaN scores and a warning
    (``error_score=np.nan``): pass ``error_score="raise"`` to stop on it. The scorer is a
    :class:`LabelFreeScorer`, so a fitted ``GridSearchCV`` that used it pickles.
    """
    return LabelFreeScorer(validator)


class LabelFreeScorer:
    """The scorer :func:`label_free_scorer` returns: a module-level class (a fitted search keeps it as
    ``scorer_``, and pickles with it)."""

    def __init__(self, validator: str = "entropy") -> None:
        v = get_validator(validator)
        extra = set(v.needs) - {"source_val", "target"}
        if extra:
            raise DataError(f"validator {validator!r} needs {sorted(extra)}, which a scorer does not see; use one of "
                            "entropy, snd, atc, rv")
        self.validator = validator
        self.__name__ = f"label_free_{validator}"

    def __repr__(self) -> str:
        return f"label_free_scorer({self.validator!r})"

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        validator, v = self.validator, get_validator(self.validator)
        if hasattr(estimator, "steps"):  # a Pipeline: its transforms, then the adapter at its end
            X, estimator = estimator[:-1].transform(X), estimator[-1]
        y = np.asarray(y)
        if getattr(estimator, "unlabelled", None) is None:
            raise DataError(f"label_free_scorer: give the {type(estimator).__name__} unlabelled=MARKER (e.g. -1) "
                            "and mark the target rows of y with it")
        target = _target_rows(y, None, estimator.unlabelled)
        if not target.any():
            raise DataError(f"label_free_scorer: no target rows (label {estimator.unlabelled!r}) in this fold")
        if not hasattr(estimator, "model_"):  # a shallow estimator (qianyi.shallow): no network
            return self._shallow(estimator, X, y, target)
        X = np.asarray(X, np.float32)
        names = tuple(str(c) for c in estimator.classes_)
        src_rows = ~target & np.isin(y, estimator.classes_)
        if src_rows.sum() >= 2:
            codes = np.searchsorted(estimator.classes_, y[src_rows])
            labelled = Domain(X[src_rows], codes, "source", class_names=names)
        elif "source_val" in v.needs:
            raise DataError(f"label_free_scorer: validator {validator!r} needs labelled source rows in each fold")
        else:  # a stand-in the validator does not read
            labelled = Domain(X[target][:2], np.zeros(min(2, int(target.sum())), int), "unused", class_names=names)
        data = SelectionData(labelled, labelled, Domain(X[target], None, "target"))
        device = next(estimator.model_.parameters()).device
        s = score_all(estimator.model_, data, [validator], device=device)[validator]
        return float(v.utility(s))

    def _shallow(self, estimator: Any, X: Any, y: np.ndarray, target: np.ndarray) -> float:
        """The score of a classifier without a network (:mod:`qianyi.shallow`) from its class probabilities, on
        the rows :func:`score_all` would take; source rows are predicted as the estimator predicts any row
        (through the target's map, as a shallow run's source accuracy is)."""
        validator, v = self.validator, get_validator(self.validator)
        who = type(estimator).__name__
        if validator not in PROBABILITY_VALIDATORS:
            raise DataError(f"label_free_scorer: {validator} reads a network's features, which a {who} has not; "
                            f"score it with {', '.join(PROBABILITY_VALIDATORS[:-1])} or {PROBABILITY_VALIDATORS[-1]}"
                            " (they read class probabilities)")
        fix = "give it a classifier with graded probabilities, e.g. estimator=LogisticRegression(max_iter=1000)"
        no_proba = DataError(f"label_free_scorer: a {who} whose classifier has no predict_proba cannot be scored "
                             f"without labels (the validators read class probabilities); {fix}")
        if not hasattr(estimator, "predict_proba"):
            raise no_proba

        def probs(rows: np.ndarray) -> np.ndarray:
            part = X.iloc[rows] if hasattr(X, "iloc") else np.asarray(X)[rows]  # (a frame keeps its names)
            try:
                return np.asarray(estimator.predict_proba(part), dtype=np.float64)
            except AttributeError:  # a classifier inside without one (JDA's 1-NN has one; an SVC has not)
                raise no_proba from None

        rows = np.flatnonzero(target)
        pt = probs(rows[_subsample(len(rows), SELECTION_SAMPLES, 0, "target")])
        if np.isin(pt, (0.0, 1.0)).all():
            raise DataError(f"label_free_scorer: every target row's class probabilities from the {who} are 0 or 1 "
                            "(those of a 1-nearest-neighbour classifier, the shallow estimators' default): "
                            f"{validator} compares confidences, so every setting would score alike; {fix}")
        val = None
        if "source_val" in v.needs:
            src = np.flatnonzero(~target & np.isin(y, estimator.classes_))
            if len(src) < 2:
                raise DataError(f"label_free_scorer: validator {validator!r} needs labelled source rows in each fold")
            src = src[_subsample(len(src), SELECTION_SAMPLES, 0, "source_val")]
            ps = probs(src)
            val = SplitOutputs(np.zeros((len(ps), 1)), _log(ps), np.searchsorted(estimator.classes_, y[src]))
        tgt = SplitOutputs(np.zeros((len(pt), 1)), _log(pt))  # (no features: none of these validators reads them)
        return float(v.utility(v(Predictions(None, val, tgt))))


#: The validators that read class probabilities alone: label_free_scorer scores a shallow classifier with these.
PROBABILITY_VALIDATORS = ("entropy", "snd", "atc")


def _log(p: np.ndarray) -> np.ndarray:
    """Log-probabilities as logits (softmax gives ``p`` back); a probability of 0 as the smallest float's log."""
    return np.log(np.maximum(p, np.finfo(np.float64).tiny))


#: TrainConfig settings DomainAdapter takes as parameters of its own (not through ``training``).
_OWN = ("epochs", "batch_size", "lr", "optimizer", "steps_per_epoch", "select", "seed", "device", "progress")


def _training_settings(training: Any) -> dict[str, Any]:
    """``DomainAdapter(training=...)`` checked: a dict of TrainConfig settings that are not parameters of their own."""
    if training is None:
        return {}
    if not isinstance(training, dict):
        raise ConfigError(f"DomainAdapter: training={training!r}; give a dict of TrainConfig settings, e.g. "
                          "{'weight_decay': 1e-4, 'lr_schedule': 'constant'}")
    known = {f.name for f in fields(TrainConfig)} - set(_OWN)
    for key in training:
        if key in _OWN:
            own = "random_state" if key == "seed" else key
            raise ConfigError(f"DomainAdapter: {key!r} is a parameter of its own; write DomainAdapter({own}=...) "
                              "instead of training={...}")
        if key not in known:
            raise ConfigError(f"DomainAdapter: training={{{key!r}: ...}} is not a TrainConfig setting; known: "
                              f"{', '.join(sorted(known))}")
    return dict(training)

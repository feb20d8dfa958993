"""Label-free model selection: validators that score a trained model without target labels.

Every validator follows one protocol (:class:`Validator`): it declares the splits it ``needs`` out
of labelled source train, labelled source validation and the *unlabelled* target train split, and
scores a :class:`~qianyi.select.data.Predictions` computed from a
:class:`~qianyi.select.data.SelectionData` — which cannot hold target labels or the target test
split. ``utility`` turns any score into "larger is better" for ranking.

=============  ======  ==========================================================================
name           better  reference
=============  ======  ==========================================================================
source-val     higher  accuracy on held-out source data
entropy        lower   Grandvalet & Bengio, NeurIPS 2005; Morerio et al., ICLR 2018
iwv            lower   Sugiyama et al., JMLR 2007 (importance-weighted cross-validation)
dev            lower   You et al., ICML 2019 (Deep Embedded Validation)
snd            higher  Saito et al., ICCV 2021 (Soft Neighborhood Density)
atc            higher  Garg et al., ICLR 2022 (Average Thresholded Confidence)
rv             higher  Zhong et al., ECML-PKDD 2010 (reverse validation)
=============  ======  ==========================================================================
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DataError, UnknownNameError
from ..nn.backbones import require_backbone
from .data import SPLITS, Predictions, SelectionData, _log_softmax, check_needs

#: Samples per split a validator scores by default: ``TrainConfig.selection_samples``'s default, so that
#: ``score_all(model, data)`` gives a run's recorded ``scores`` (``seed``: the run's, 0 by default).
SELECTION_SAMPLES = 1000


# --------------------------------------------------------------------------------------------------
# the protocol and the registry


class Validator:
    """A label-free model-selection score; subclasses set the class variables and ``__call__``."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    needs: ClassVar[frozenset[str]]  # a subset of {"source", "source_val", "target"}
    paper: ClassVar[str]

    def __call__(self, p: Predictions) -> float:
        raise NotImplementedError

    def utility(self, score: float) -> float:
        """``score`` oriented so that larger is better (for ranking models)."""
        return score if self.higher_is_better else -score

    def evaluate(self, model: nn.Module, data: SelectionData, device: torch.device | str = "cpu",
                 max_samples: int | None = SELECTION_SAMPLES, seed: int = 0) -> float:
        """Score ``model``: compute the outputs this validator needs, then call it."""
        return self(Predictions.compute(model, data, self.needs, device, max_samples=max_samples, seed=seed))

    def __repr__(self) -> str:
        return f"<validator {self.name!r} ({'higher' if self.higher_is_better else 'lower'} is better)>"


VALIDATORS: dict[str, type[Validator]] = {}


def register_validator(cls: type[Validator]) -> type[Validator]:
    """Class decorator: add a :class:`Validator` subclass to :data:`VALIDATORS` under ``cls.name``."""
    for attr in ("name", "higher_is_better", "needs", "paper"):
        if not hasattr(cls, attr):
            raise TypeError(f"validator {cls.__name__} must set the class variable {attr!r}")
    cls.needs = check_needs(cls.needs)
    from ..methods.registry import claim

    claim(VALIDATORS, cls.name, cls, "validator")
    return cls


#: Entry-point group of validators in other packages (``[project.entry-points."qianyi.validators"]``).
PLUGIN_GROUP = "qianyi.validators"
_plugins_loaded = False


def _load_plugins() -> None:
    """Import the modules of the ``qianyi.validators`` entry points once (their ``@register_validator`` runs)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from ..methods.registry import load_plugins

    load_plugins(PLUGIN_GROUP, "validator")


def available_validators() -> list[str]:
    """The names of every registered validator: qianyi's and those of ``qianyi.validators`` plugins."""
    _load_plugins()
    return sorted(VALIDATORS)


def builtin_validators() -> list[str]:
    """qianyi's own validators (what ``select`` records in every run: installing a plugin changes no run's key)."""
    return sorted(n for n, cls in VALIDATORS.items() if cls.__module__.startswith("qianyi."))


def get_validator(name: str, **params: Any) -> Validator:
    """An instance of the validator registered as ``name`` (``params`` go to its constructor)."""
    _load_plugins()
    try:
        cls = VALIDATORS[name]
    except KeyError:
        raise UnknownNameError(f"unknown validator {name!r}; available: {', '.join(available_validators())}") from None
    return cls(**params)


def score_all(model: nn.Module, data: SelectionData, names: Sequence[str] | None = None,
              device: torch.device | str = "cpu", max_samples: int | None = SELECTION_SAMPLES,
              seed: int = 0) -> dict[str, float]:
    """Score ``model`` with each named validator (all registered ones if None) from one set of outputs: at most
    ``max_samples`` rows per split, drawn with ``seed``. The defaults are a run's (``TrainConfig``'s
    ``selection_samples`` and ``seed``), so a run's model scores as its ``result.scores`` say; pass
    ``max_samples=config.selection_samples, seed=config.seed`` for a run of other settings."""
    model = require_backbone(model, "score_all", groups=False)
    names = available_validators() if names is None else [names] if isinstance(names, str) else list(names)
    validators = {n: get_validator(n) for n in names}  # unknown names fail before any work
    needs = frozenset().union(*(v.needs for v in validators.values())) if validators else frozenset()
    p = Predictions.compute(model, data, needs, device, max_samples=max_samples, seed=seed)
    return {n: v(p) for n, v in validators.items()}


# --------------------------------------------------------------------------------------------------
# shared pieces


def _entropy(log_probs: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy (nats) from log-probabilities; 0 * log 0 counts as 0."""
    p = np.exp(log_probs)
    return -(p * np.where(p > 0, log_probs, 0.0)).sum(axis=1)


def _importance_weights(p: Predictions) -> np.ndarray:
    """Density-ratio weights p_t(x) / p_s(x) of the source-val rows, from a domain classifier on the features.

    A logistic regression (standardised features, balanced classes) separates source-train from
    target-train features; with balanced classes its odds p/(1-p) estimate the density ratio.
    """
    cached = p.cache.get("importance_weights")
    if cached is not None:  # DEV and IWV share one domain classifier per set of predictions
        return cached
    fs, ft, fv = p.get("source").features, p.get("target").features, p.get("source_val").features
    Z = np.concatenate([fs, ft])
    d = np.concatenate([np.zeros(len(fs)), np.ones(len(ft))])
    from sklearn.linear_model import LogisticRegression  # here: `import qianyi` stays free of scikit-learn
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(Z)
    clf = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(scaler.transform(Z), d)
    p_t = np.clip(clf.predict_proba(scaler.transform(fv))[:, 1], 1e-4, 1 - 1e-4)
    p.cache["importance_weights"] = p_t / (1.0 - p_t)
    return p.cache["importance_weights"]


def dev_details(p: Predictions) -> dict[str, float]:
    """DEV estimate of the target loss and its diagnostics (needs source, source_val, target outputs).

    With density-ratio weights w_i of the source-val samples and L_i = w_i * CE_i:
    DEV = mean(L) + eta * mean(w) - eta, eta = -Cov(L, w) / Var(w) (You et al., ICML 2019).
    Returns ``dev``; ``mean_weight`` (the density ratio has mean 1 under the source: far from 1, the
    domain classifier is over-confident and the weights, and DEV, which can then even turn negative,
    are unreliable); ``iw_risk`` (the self-normalised importance-weighted loss, IWCV, always >= 0).
    When every weight is the same, eta is undefined (0/0): DEV is the weighted loss if that weight is 1
    (no shift seen), and NaN (not scored, never chosen) if it is another value, e.g. every weight clipped
    because the domain classifier tells every source-val sample apart from the target.
    """
    w = _importance_weights(p)
    loss = p.get("source_val").cross_entropy()
    weighted = w * loss
    if np.ptp(w) <= 1e-9 * np.abs(w).max():  # (np.var of equal values is a rounding error, not 0: eta was noise)
        dev = float(weighted.mean()) if np.allclose(w, 1.0, rtol=1e-6, atol=0) else math.nan
    else:
        eta = -np.cov(weighted, w)[0, 1] / np.var(w, ddof=1)
        dev = float(weighted.mean() + eta * w.mean() - eta)
    return {"dev": dev,
            "mean_weight": float(w.mean()),
            "iw_risk": float(weighted.sum() / w.sum())}


def _probabilities(p: Any, name: str) -> np.ndarray:
    """``p`` as rows of class probabilities, or a DataError naming it (NaN gave a confident-looking number)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or not len(p):
        raise DataError(f"{name}: expected a non-empty (samples, classes) array of probabilities, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise DataError(f"{name}: rows must be probabilities (finite, >= 0, summing to 1): pass softmax(logits)")
    return p


def atc_from_probs(probs_val: np.ndarray, y_val: np.ndarray, probs_target: np.ndarray) -> float:
    """Average Thresholded Confidence (Garg et al., ICLR 2022), from softmax outputs.

    The threshold t is set so that the share of source-val samples with max-softmax > t equals the
    source-val accuracy (t = quantile(conf_val, 1 - acc)); the estimate of target accuracy is the
    share of target samples with max-softmax > t. When source-val confidences tie at t (a saturated
    softmax gives many exact 1.0s; a collapsed network one value for all), a share r of the tied mass
    counts as above t, r = (acc - share_val(> t)) / share_val(= t), so that the source-val share is
    the accuracy exactly; target samples at t count with the same r. Without ties r plays no part.
    """
    probs_val, probs_target = _probabilities(probs_val, "probs_val"), _probabilities(probs_target, "probs_target")
    if len(np.asarray(y_val)) != len(probs_val):
        raise DataError(f"atc: {len(probs_val)} source-val rows but {len(np.asarray(y_val))} labels")
    conf_val, conf_t = probs_val.max(1), probs_target.max(1)
    acc = float((probs_val.argmax(1) == np.asarray(y_val)).mean())
    t = np.quantile(conf_val, 1.0 - acc)
    tied_val = float((conf_val == t).mean())
    r = min(max((acc - float((conf_val > t).mean())) / tied_val, 0.0), 1.0) if tied_val > 0 else 0.0
    return float((conf_t > t).mean() + r * (conf_t == t).mean())


def snd_from_probs(probs: np.ndarray, temperature: float = 0.05) -> float:
    """Soft Neighborhood Density of target softmax vectors (see :class:`SND`)."""
    probs = _probabilities(probs, "SND") if len(np.asarray(probs)) else np.asarray(probs, dtype=np.float64)
    n = len(probs)
    if n < 2:
        raise DataError(f"SND needs at least 2 target samples, got {n}")
    q = probs / np.linalg.norm(probs, axis=1, keepdims=True)
    sim = (q @ q.T) / temperature
    np.fill_diagonal(sim, -np.inf)  # a sample is not its own neighbour
    logp = _log_softmax(sim)
    return float(_entropy(logp).mean())


# --------------------------------------------------------------------------------------------------
# the validators


@register_validator
class SourceVal(Validator):
    """Accuracy on the held-out source split.

    score = (1/n) sum_i [argmax_k f(x_i)_k = y_i] over source-val.
    The "source risk" baseline of You et al., ICML 2019; training-domain validation in Gulrajani &
    Lopez-Paz, "In Search of Lost Domain Generalization", ICLR 2021.
    """

    name = "source-val"
    higher_is_better = True
    needs = frozenset({"source_val"})
    paper = "source risk baseline: You et al., ICML 2019; Gulrajani & Lopez-Paz, ICLR 2021"

    def __call__(self, p: Predictions) -> float:
        return p.get("source_val").accuracy()


@register_validator
class Entropy(Validator):
    """Mean Shannon entropy of the target predictions.

    score = -(1/n) sum_i sum_k p_ik log p_ik over target rows, p_i = softmax(f(x_i)); lower is better.
    Grandvalet & Bengio, "Semi-supervised Learning by Entropy Minimization", NeurIPS 2005; used for
    selection by Morerio et al., "Minimal-Entropy Correlation Alignment", ICLR 2018.
    """

    name = "entropy"
    higher_is_better = False
    needs = frozenset({"target"})
    paper = "Grandvalet & Bengio, NeurIPS 2005; Morerio et al., ICLR 2018"

    def __call__(self, p: Predictions) -> float:
        return float(_entropy(p.get("target").log_probs).mean())


@register_validator
class IWV(Validator):
    """Importance-weighted validation loss.

    score = sum_i w_i CE_i / sum_i w_i over source-val, w_i = p/(1-p) from a logistic domain classifier
    (source train vs target train features; p clipped to [1e-4, 1-1e-4]); lower is better.
    Sugiyama, Krauledat & Müller, "Covariate Shift Adaptation by Importance Weighted Cross Validation", JMLR 2007.
    """

    name = "iwv"
    higher_is_better = False
    needs = frozenset({"source", "source_val", "target"})
    paper = "Sugiyama, Krauledat & Müller, JMLR 2007"

    def __call__(self, p: Predictions) -> float:
        w = _importance_weights(p)
        return float((w * p.get("source_val").cross_entropy()).sum() / w.sum())


@register_validator
class DEV(Validator):
    """Deep Embedded Validation: the importance-weighted loss with a control variate.

    L_i = w_i CE_i over source-val (w_i as in iwv); score = mean(L) + eta mean(w) - eta,
    eta = -Cov(L, w) / Var(w); lower is better. See :func:`dev_details` for its diagnostics.
    You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep Unsupervised Domain Adaptation", ICML 2019.
    """

    name = "dev"
    higher_is_better = False
    needs = frozenset({"source", "source_val", "target"})
    paper = "You, Wang, Long & Jordan, ICML 2019"

    def __call__(self, p: Predictions) -> float:
        return dev_details(p)["dev"]


@register_validator
class SND(Validator):
    """Soft Neighborhood Density of the target predictions.

    q_i = p_i / ||p_i|| (p_i the target softmax); s_ij = q_i . q_j / tau for j != i (tau = 0.05);
    P_ij = softmax_j(s_ij); score = (1/n) sum_i H(P_i); higher is better. O(n^2) memory: the target
    rows are those of the Predictions (capped by ``max_samples``).
    Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right Way: Unsupervised Validation
    of Domain Adaptation via Soft Neighborhood Density", ICCV 2021.
    """

    name = "snd"
    higher_is_better = True
    needs = frozenset({"target"})
    paper = "Saito et al., ICCV 2021"

    def __init__(self, temperature: float = 0.05) -> None:
        if not temperature > 0:
            raise ValueError(f"SND temperature must be positive, got {temperature}")
        self.temperature = temperature

    def __call__(self, p: Predictions) -> float:
        return snd_from_probs(p.get("target").probs, self.temperature)


@register_validator
class ATC(Validator):
    """Average Thresholded Confidence: an estimate of target accuracy.

    t = quantile(conf_val, 1 - acc_val) with conf = max_k p_k; score = (1/n) sum_i [conf_i > t] over
    target rows (ties at t shared so that source-val gives acc_val exactly); higher is better. See
    :func:`atc_from_probs`.
    Garg, Balakrishnan, Lipton, Neyshabur & Sedghi, "Leveraging Unlabeled Data to Predict
    Out-of-Distribution Performance", ICLR 2022.
    """

    name = "atc"
    higher_is_better = True
    needs = frozenset({"source_val", "target"})
    paper = "Garg et al., ICLR 2022"

    def __call__(self, p: Predictions) -> float:
        val = p.get("source_val")
        return atc_from_probs(val.probs, val.require_labels(), p.get("target").probs)


@register_validator
class RV(Validator):
    """Reverse validation on the model's features.

    yhat_t = argmax f(x_t); fit a logistic regression g (standardised features) on (features_t, yhat_t);
    score = accuracy of g on the source-val features and true labels; higher is better. The paper
    retrains the whole model on the pseudo-labelled target; here a reverse logistic-regression
    classifier on the frozen features stands in for it. If yhat_t holds one class, the score is the
    share of source-val in that class.
    Zhong, Fan, Yang, Verscheure & Ren, "Cross Validation Framework to Choose amongst Models and
    Datasets for Transfer Learning", ECML-PKDD 2010.
    """

    name = "rv"
    higher_is_better = True
    needs = frozenset({"source_val", "target"})
    paper = "Zhong et al., ECML-PKDD 2010"

    def __call__(self, p: Predictions) -> float:
        tgt, val = p.get("target"), p.get("source_val")
        y_val = val.require_labels()
        pseudo = tgt.predictions
        classes = np.unique(pseudo)
        if len(classes) == 1:
            return float((y_val == classes[0]).mean())
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(tgt.features)
        clf = LogisticRegression(max_iter=500, random_state=p.seed).fit(scaler.transform(tgt.features), pseudo)
        return float((clf.predict(scaler.transform(val.features)) == y_val).mean())


__all__ = ["ATC", "DEV", "IWV", "RV", "SND", "SPLITS", "VALIDATORS", "Entropy", "SourceVal", "Validator",
           "atc_from_probs", "available_validators", "dev_details", "get_validator", "register_validator",
           "score_all", "snd_from_probs"]

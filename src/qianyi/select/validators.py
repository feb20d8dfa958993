"""Validators that declare their data: none of them receives the target test split.

* :func:`dev_score` — Deep Embedded Validation (You et al., "Towards Accurate Model Selection in
  Deep Unsupervised Domain Adaptation", ICML 2019): the source-validation loss, importance-weighted
  by a domain classifier on the features, with a control variate. Lower is better.
* :func:`source_val_accuracy` — plain accuracy on the held-out source split. Higher is better.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..data.domain import Domain
from ..train.engine import accuracy, predict_features


def source_val_accuracy(model: torch.nn.Module, source_val: Domain, device: str = "cpu") -> float:
    return accuracy(model, source_val, device)


def dev_score(model: torch.nn.Module, source: Domain, source_val: Domain, target: Domain, layer: str = "features",
              device: str = "cpu", max_fit: int = 5000, seed: int = 0) -> float:
    """DEV risk estimate of the target loss (lower is better); see :func:`dev_details`."""
    return dev_details(model, source, source_val, target, layer, device, max_fit, seed)["dev"]


def dev_details(model: torch.nn.Module, source: Domain, source_val: Domain, target: Domain, layer: str = "features",
                device: str = "cpu", max_fit: int = 5000, seed: int = 0) -> dict[str, float]:
    """DEV estimate of the target loss and its diagnostics; uses source labels and target inputs only.

    A logistic-regression domain classifier is fit on features of (a subsample of) ``source`` and
    ``target``; its odds give density-ratio weights w_i for the ``source_val`` samples; with
    L_i = w_i * CE_i, DEV = mean(L) + eta * mean(w) - eta, eta = -Cov(L, w) / Var(w).
    """
    rng = np.random.default_rng(seed)
    fs, _ = predict_features(model, source.X[rng.permutation(len(source))[:max_fit]], layer, device)
    ft, _ = predict_features(model, target.X[rng.permutation(len(target))[:max_fit]], layer, device)
    fv, logits_v = predict_features(model, source_val.X, layer, device)
    Z = np.concatenate([fs.numpy(), ft.numpy()])
    d = np.concatenate([np.zeros(len(fs)), np.ones(len(ft))])
    scaler = StandardScaler().fit(Z)
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(scaler.transform(Z), d)
    p_t = np.clip(clf.predict_proba(scaler.transform(fv.numpy()))[:, 1], 1e-4, 1 - 1e-4)
    w = p_t / (1.0 - p_t)  # balanced classes: the odds are the density ratio p_t(x) / p_s(x)
    loss = F.cross_entropy(logits_v, torch.as_tensor(source_val.y), reduction="none").numpy()
    weighted = w * loss
    var = np.var(w, ddof=1)
    eta = -np.cov(weighted, w)[0, 1] / var if var > 0 else 0.0
    return {"dev": float(weighted.mean() + eta * w.mean() - eta),
            # the density ratio has mean 1 under the source; far from 1, the weights (and DEV, which can
            # then even turn negative) are unreliable: the domain classifier is over-confident
            "mean_weight": float(w.mean()),
            # self-normalised importance-weighted loss (IWCV without the control variate), always >= 0
            "iw_risk": float(weighted.sum() / w.sum())}

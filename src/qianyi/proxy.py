"""Proxy-task transfer: learn features from an abundant proxy label, then fit the scarce target label on them.

The recipe of Xie et al. (AAAI 2016) and Jean et al. (Science 2016) for poverty mapping: survey labels
(asset wealth) exist for a few hundred villages, but a correlated *proxy* label (night-light intensity)
exists for every location. So

1. **proxy step** -- train a network ``head(body(x))`` on the proxy, for every input that has one
   (regression: mean squared error on the standardised proxy; classification: cross-entropy on
   proxy classes, e.g. :func:`quantile_bins` of the proxy);
2. **target step** -- freeze it, take the penultimate features ``z = body(x)`` and fit the target
   label with ridge regression on the few labelled inputs, the penalty chosen by leave-one-out
   cross-validation on those labels only (scikit-learn's ``RidgeCV``; features standardised first):

   .. math:: \\hat w = \\arg\\min_w \\sum_{i \\in L} (y_i - w^\\top z_i - b)^2 + \\alpha \\lVert w \\rVert^2 .

:class:`ProxyTransfer` is that recipe as a scikit-learn regressor (``fit_proxy`` then ``fit`` /
``predict``). :func:`proxy_curve` is the evaluation protocol -- r² and Spearman's rho of the target
against the number of labelled samples, for the proxy route and the baselines of
:data:`METHODS` -- and :func:`load_lsms` reads the LSMS villages of Yeh et al. (2020).
docs/proxy.md shows the measured curves.

>>> model = ProxyTransfer(random_state=0).fit_proxy(X_all, nightlights)   # doctest: +SKIP
>>> model.fit(X_few, wealth_few).predict(X_new)                            # doctest: +SKIP
"""
from __future__ import annotations

import csv
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from torch import nn

from .errors import ConfigError, DataError, DatasetNotFoundError, QianyiWarning
from .shallow._base import check_random_state_setting

#: Ridge penalties tried by leave-one-out cross-validation in the target step.
ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
TASKS = ("regression", "classification")
STANDARDIZE = ("column", "global", "none")
#: The settings the proxy network is trained with (``fit_proxy``); ``alphas`` only concerns ``fit``'s ridge.
NETWORK_PARAMS = ("hidden", "task", "steps", "batch_size", "lr", "weight_decay", "dropout", "standardize",
                  "random_state")
SAVE_FORMAT = 1  # proxy.json's layout


# ---------------------------------------------------------------- checks
def _matrix(X: object, what: str = "X") -> np.ndarray:
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} cannot be read as a numeric array ({exc}); pass an (n, d) array") from None
    if A.ndim != 2:
        raise DataError(f"{what} has shape {A.shape}; expected an (n, d) array of features (flatten images first)")
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise DataError(f"{what} has shape {A.shape}; it holds no samples or no features")
    if not np.isfinite(A).all():
        raise DataError(f"{what} holds NaN or inf in {int((~np.isfinite(A)).any(1).sum())} row(s); drop or impute them")
    return A


def _vector(y: object, n: int, what: str) -> np.ndarray:
    try:
        v = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} cannot be read as numbers ({exc})") from None
    if v.ndim != 1:
        raise DataError(f"{what} has shape {v.shape}; expected one value per sample (a 1-d array)")
    if len(v) != n:
        raise DataError(f"{what} holds {len(v)} values for {n} samples; give one per row of X")
    if not np.isfinite(v).all():
        raise DataError(f"{what} holds NaN or inf ({int((~np.isfinite(v)).sum())} value(s)); drop those samples")
    return v


def quantile_bins(proxy: Sequence[float], n_bins: int = 3) -> np.ndarray:
    """Proxy classes 0..n_bins-1 by quantile (Jean et al. 2016 used three night-light classes: low, medium,
    high). Ties at an edge go to the lower class."""
    p = _vector(proxy, len(np.asarray(proxy)), "proxy")
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ConfigError(f"n_bins={n_bins!r}: give a whole number of at least 2")
    edges = np.quantile(p, np.arange(1, n_bins) / n_bins)
    bins = np.searchsorted(edges, p, side="left").astype(np.int64)
    empty = sorted(set(range(n_bins)) - set(bins.tolist()))
    if empty:  # ties (night lights of 0 in most places): equal edges leave classes without a sample
        warnings.warn(f"quantile_bins: {n_bins - len(empty)} of {n_bins} classes hold samples (class(es) {empty} "
                      f"none: many equal proxy values, e.g. {float(np.median(p)):g}); use fewer bins or the proxy's "
                      "value (task='regression')", QianyiWarning, stacklevel=2)
    return bins


# ---------------------------------------------------------------- the network
class ProxyNet(nn.Module):
    """An MLP ``head(body(x))``; ``body`` ends with the penultimate features (after ReLU)."""

    def __init__(self, d_in: int, hidden: Sequence[int], d_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class NotFitted(ConfigError, NotFittedError):
    """A ProxyTransfer asked to transform or predict before its proxy network or ridge exists (scikit-learn's
    ``NotFittedError``, too)."""


def _plain(value: object) -> object:
    """A setting as a plain JSON value (numpy's integers and floats as Python's; tuples as lists)."""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _column_names(X: object) -> list[str] | None:
    """A DataFrame's column names when all are strings (scikit-learn's rule for ``feature_names_in_``)."""
    cols = getattr(X, "columns", None)
    if cols is None:
        return None
    names = list(cols)
    return names if names and all(isinstance(c, str) for c in names) else None


class ProxyTransfer(RegressorMixin, BaseEstimator):
    """Proxy-task transfer as a regressor: ``fit_proxy(X, proxy)``, then ``fit(X_few, y_few)``, ``predict(X)``.

    Parameters
    ----------
    hidden : widths of the hidden layers; the last is the feature size of the target step.
    task : ``"regression"`` (the proxy is a number) or ``"classification"`` (the proxy is a class
        index 0..k-1, e.g. :func:`quantile_bins`).
    steps : gradient steps of the proxy network (Adam, mini-batches of ``batch_size``).
    alphas : ridge penalties tried by leave-one-out CV in the target step (default :data:`ALPHAS`).
    standardize : how the inputs are scaled, with statistics of the inputs given to :meth:`fit_proxy`:
        ``"column"`` (z-score each feature), ``"global"`` (centre each feature, divide all by one
        overall standard deviation: histogram bins that are rarely non-zero are not blown up) or
        ``"none"`` (inputs already standardised, e.g. on a larger unlabelled sample).
    random_state : seeds the network's initialisation, dropout and batches (no global random state is
        touched); None or a numpy RandomState draws that seed, as scikit-learn does.

    The features of the target step are standardised with their mean and standard deviation over the
    proxy-training inputs (all of them, no labels), not over the few labelled samples, whose tiny
    spread in a rarely active feature would blow it up. :meth:`fit` never changes the network: with
    a new target label, call ``fit`` again. ``clone`` gives an estimator without a proxy network (call
    ``fit_proxy`` on it).
    """

    def __init__(self, hidden: Sequence[int] = (256, 64), task: str = "regression", steps: int = 2000,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-4, dropout: float = 0.1,
                 alphas: Sequence[float] | None = None, standardize: str = "column",
                 random_state: int = 0) -> None:
        self.hidden = hidden
        self.task = task
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.alphas = alphas
        self.standardize = standardize
        self.random_state = random_state

    # -- checks
    def _check_settings(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r}: give one of {', '.join(TASKS)}")
        hidden = self._hidden()
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ConfigError(f"hidden={self.hidden!r}: give one or more positive layer widths, e.g. (256, 64)")
        check_random_state_setting("ProxyTransfer", self.random_state)
        if isinstance(self.random_state, (int, np.integer)):  # qianyi's one seed range (torch overflowed above it)
            from .train.config import check_seed

            check_seed("ProxyTransfer: random_state", self.random_state)
        for name, low in (("steps", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name}={value!r}: give a whole number of at least {low}")
        for name in ("lr", "weight_decay", "dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name}={value!r}: give a finite number >= 0")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr}: the learning rate must be above 0")
        if self.dropout >= 1:
            raise ConfigError(f"dropout={self.dropout}: must be below 1 (1 drops every unit)")
        if self.standardize not in STANDARDIZE:
            raise ConfigError(f"standardize={self.standardize!r}: give one of {', '.join(STANDARDIZE)}")
        if self.alphas is not None and (np.ndim(self.alphas) != 1 or len(self.alphas) == 0 or min(self.alphas) <= 0):
            raise ConfigError(f"alphas={self.alphas!r}: give one or more positive ridge penalties")

    def _setting(self, name: str) -> object:
        """A network setting as compared between fit_proxy and fit (hidden as its tuple of widths; a RandomState
        by its type: its state moves as it is used)."""
        value = getattr(self, name)
        if name == "hidden":
            return tuple(int(h) for h in self._hidden())
        return value if isinstance(value, (numbers.Number, str, type(None))) else type(value).__name__

    def _hidden(self) -> tuple:
        """The hidden widths (one number is one layer, as scikit-learn's ``hidden_layer_sizes``)."""
        return (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else tuple(self.hidden)

    def _inputs(self, X: object, what: str = "X") -> torch.Tensor:
        if not hasattr(self, "net_"):
            raise NotFitted("this ProxyTransfer has no proxy network yet (a clone has none, so scikit-learn's "
                              "GridSearchCV and cross_val_score cannot refit it; fit already chooses the ridge alpha "
                              "by leave-one-out, and proxy_curve compares settings); call fit_proxy(X, proxy) first")
        names, fitted = _column_names(X), getattr(self, "feature_names_in_", None)
        if names is not None and fitted is not None and names != [str(n) for n in fitted]:
            missing = [str(n) for n in fitted if n not in names]
            extra = [n for n in names if n not in set(map(str, fitted))]
            said = (f"missing {missing[:5]}" if missing else f"extra columns {extra[:5]}" if extra else "another order")
            raise DataError(f"{what}'s columns are not those the proxy network was trained on, in that order ({said}); "
                            + ("give those columns" if missing else "select them as X[model.feature_names_in_]"))
        A = _matrix(X, what)
        if A.shape[1] != len(self.x_mean_):
            raise DataError(f"{what} has {A.shape[1]} features but the proxy network was trained on "
                            f"{len(self.x_mean_)}; give the same features")
        return torch.as_tensor(((A - self.x_mean_) / self.x_std_).astype(np.float32))

    # -- proxy step
    def fit_proxy(self, X: object, proxy: object) -> "ProxyTransfer":
        """Train the network on ``proxy`` for the inputs ``X`` (as many as have a proxy label)."""
        self._check_settings()
        A = _matrix(X)
        names = _column_names(X)
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_in_ = A.shape[1]
        if len(A) < 2:
            raise DataError(f"X holds {len(A)} sample; the proxy network needs at least 2")
        p = _vector(proxy, len(A), "proxy")
        if self.task == "classification":
            if (p != np.round(p)).any() or p.min() < 0:
                raise DataError("proxy: classification needs class indices 0..k-1 (whole numbers >= 0); bin a "
                                "continuous proxy with quantile_bins(proxy, k) or use task='regression'")
            self.n_proxy_classes_ = int(p.max()) + 1
            if not (p == 0).any():
                warnings.warn(f"proxy: class 0 has no sample (classes 0..{self.n_proxy_classes_ - 1}); are the classes "
                              "numbered from 1? give indices 0..k-1", QianyiWarning, stacklevel=2)
            if self.n_proxy_classes_ < 2:
                raise DataError("proxy: every sample is in one class; a classifier needs at least 2 classes")
            target = torch.as_tensor(p.astype(np.int64))
            d_out, loss_fn = self.n_proxy_classes_, nn.functional.cross_entropy
        else:
            self.proxy_mean_, self.proxy_std_ = float(p.mean()), float(p.std()) or 1.0
            if p.std() == 0:
                raise DataError("proxy: every sample has the same value; a constant proxy teaches nothing")
            target = torch.as_tensor(((p - self.proxy_mean_) / self.proxy_std_).astype(np.float32))[:, None]
            d_out, loss_fn = 1, nn.functional.mse_loss
        self.x_mean_, self.x_std_ = _scaling(A, self.standardize)
        x = torch.as_tensor(((A - self.x_mean_) / self.x_std_).astype(np.float32))
        seed = int(self.random_state) if isinstance(self.random_state, (int, np.integer)) else \
            int(check_random_state(self.random_state).randint(0, 2 ** 31 - 2))  # None / RandomState: scikit-learn's way
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ProxyNet(A.shape[1], tuple(int(h) for h in self._hidden()), d_out, float(self.dropout))
            batches = torch.Generator().manual_seed(seed + 1)
            opt = torch.optim.Adam(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
            net.train()
            bs = min(int(self.batch_size), len(A))
            order = torch.randperm(len(A), generator=batches)
            pos = 0
            for _ in range(int(self.steps)):
                if pos + bs > len(A):
                    order, pos = torch.randperm(len(A), generator=batches), 0
                idx = order[pos:pos + bs]
                pos += bs
                loss = loss_fn(net(x[idx]), target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        if not math.isfinite(float(loss.detach())) or not all(bool(torch.isfinite(w).all()) for w in net.parameters()):
            raise ConfigError(f"the proxy network diverged (its loss or weights are NaN or infinite after "
                              f"{int(self.steps)} steps at lr={self.lr}): lower the learning rate (--lr)")
        self.net_ = net
        for stale in ("coef_", "intercept_", "alpha_"):  # the ridge was fitted on the old network's features
            if hasattr(self, stale):
                delattr(self, stale)
        self.proxy_params_ = {k: self._setting(k) for k in NETWORK_PARAMS}  # what fit checks is unchanged
        self.proxy_loss_ = float(loss.detach())
        with torch.no_grad():
            self.z_mean_, self.z_std_ = _scaling(net.body(x).numpy().astype(np.float64), "column")
        return self

    @torch.no_grad()
    def transform(self, X: object) -> np.ndarray:
        """The penultimate features ``body(x)``, shape ``(n, hidden[-1])``."""
        x = self._inputs(X)
        return self.net_.body(x).numpy().astype(np.float64)

    @torch.no_grad()
    def predict_proxy(self, X: object) -> np.ndarray:
        """The network's proxy prediction: a value (regression) or a class index (classification)."""
        x = self._inputs(X)
        out = self.net_(x)
        if self.task == "classification":
            return out.argmax(1).numpy()
        return out[:, 0].numpy().astype(np.float64) * self.proxy_std_ + self.proxy_mean_

    # -- target step
    def fit(self, X: object, y: object) -> "ProxyTransfer":
        """Ridge regression of ``y`` on the proxy features of ``X`` (alpha by leave-one-out CV)."""
        if hasattr(self, "net_"):
            changed = {k: v for k, v in getattr(self, "proxy_params_", {}).items() if self._setting(k) != v}
            if changed:
                raise ConfigError(f"the proxy network was trained with {changed} (set_params changed them since); "
                                  "call fit_proxy again (fit refits only the ridge, over alphas)")
        Z = self.transform(X)
        t = _vector(y, len(Z), "y")
        ridge = fit_ridge((Z - self.z_mean_) / self.z_std_, t, self.alphas, scale=False)[-1]
        self.alpha_ = float(ridge.alpha_)
        self.coef_ = np.asarray(ridge.coef_, np.float64)
        self.intercept_ = float(ridge.intercept_)
        return self

    def predict(self, X: object) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFitted("this ProxyTransfer has no target model yet; call fit(X, y) after fit_proxy")
        return (self.transform(X) - self.z_mean_) / self.z_std_ @ self.coef_ + self.intercept_

    # -- saving
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``proxy.pt`` (the network's weights, a plain state dict) and ``proxy.json`` (settings, input
        and feature scaling, the ridge's coefficients) in ``directory``; :meth:`load` reads them back."""
        import json

        from ._io import sha256_file, write_json
        from .train.checkpoint import save_tensors

        if not hasattr(self, "net_"):
            raise ConfigError("nothing to save: call fit_proxy(X, proxy) (and fit(X, y)) first")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        params = {k: _plain(self._setting(k)) for k in NETWORK_PARAMS}
        if not isinstance(self.random_state, (int, np.integer, type(None))):
            params["random_state"] = None  # a RandomState object: its seed is not recoverable, and not needed now
        names = getattr(self, "feature_names_in_", None)
        meta = {"format": SAVE_FORMAT, "params": params,
                "feature_names": None if names is None else [str(n) for n in names],
                "alphas": None if self.alphas is None else [float(a) for a in self.alphas], "weights_sha256": "",
                "d_in": int(len(self.x_mean_)), "x_mean": self.x_mean_.tolist(), "x_std": self.x_std_.tolist(),
                "z_mean": self.z_mean_.tolist(), "z_std": self.z_std_.tolist(),
                "n_proxy_classes": getattr(self, "n_proxy_classes_", None),
                "proxy_mean": getattr(self, "proxy_mean_", None), "proxy_std": getattr(self, "proxy_std_", None),
                "proxy_loss": self.proxy_loss_,
                "ridge": None if not hasattr(self, "coef_") else {
                    "alpha": self.alpha_, "coef": self.coef_.tolist(), "intercept": self.intercept_}}
        json.dumps(meta)  # (every value a plain one: nothing is written if not)
        save_tensors(out / "proxy.pt", self.net_.state_dict())
        meta["weights_sha256"] = sha256_file(out / "proxy.pt")  # load refuses weights another save left
        write_json(out / "proxy.json", meta)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ProxyTransfer":
        """A :class:`ProxyTransfer` as :meth:`save` wrote it (weights read with ``weights_only=True``)."""
        import json

        from .train.checkpoint import unreadable_reason

        d = Path(directory)
        if not (d / "proxy.json").is_file() or not (d / "proxy.pt").is_file():
            raise DatasetNotFoundError(f"{str(d)!r} holds no proxy.json and proxy.pt; give the --out folder of "
                                       "`qianyi proxy` (or a folder ProxyTransfer.save wrote)")
        try:
            meta = json.loads((d / "proxy.json").read_text(encoding="utf-8"))
            params = dict(meta["params"])
            if meta.get("format") != SAVE_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {SAVE_FORMAT}")
            model = cls(**{**params, "hidden": tuple(params["hidden"]), "alphas": meta["alphas"]})
            model._check_settings()
            d_out = meta["n_proxy_classes"] if params["task"] == "classification" else 1
            net = ProxyNet(int(meta["d_in"]), model._hidden(), int(d_out), float(params["dropout"]))
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise DataError(f"{str(d / 'proxy.json')!r} is not a proxy model description ({exc}); refit with "
                            "`qianyi proxy`") from None
        from ._io import sha256_file

        if not meta.get("weights_sha256"):
            raise DataError(f"{str(d / 'proxy.json')!r} records no hash of its weights (saved by an earlier qianyi, "
                            "before saves were checked); refit with `qianyi proxy` to save it again")
        if meta.get("weights_sha256") != sha256_file(d / "proxy.pt"):
            raise DataError(f"{str(d / 'proxy.pt')!r} is not the network {str(d / 'proxy.json')!r} describes (its "
                            "hash differs: a save that did not finish, or files of two models); refit with "
                            "`qianyi proxy`")
        try:
            state = torch.load(d / "proxy.pt", map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 (unreadable or not this network's weights)
            raise DataError(f"{str(d / 'proxy.pt')!r} cannot be read as this proxy network's weights "
                            f"({unreadable_reason(exc, d / 'proxy.pt')}); refit with `qianyi proxy`") from None
        net.eval()
        model.net_ = net
        model.n_features_in_ = int(meta["d_in"])
        model.x_mean_, model.x_std_ = np.asarray(meta["x_mean"], float), np.asarray(meta["x_std"], float)
        model.z_mean_, model.z_std_ = np.asarray(meta["z_mean"], float), np.asarray(meta["z_std"], float)
        model.proxy_loss_ = meta["proxy_loss"]
        model.proxy_params_ = {k: model._setting(k) for k in NETWORK_PARAMS}
        if meta.get("feature_names") is not None:
            model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
        if params["task"] == "classification":
            model.n_proxy_classes_ = int(meta["n_proxy_classes"])
        else:
            model.proxy_mean_, model.proxy_std_ = float(meta["proxy_mean"]), float(meta["proxy_std"])
        if meta.get("ridge"):
            model.alpha_ = float(meta["ridge"]["alpha"])
            model.coef_ = np.asarray(meta["ridge"]["coef"], np.float64)
            model.intercept_ = float(meta["ridge"]["intercept"])
        return model


def _scaling(A: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) of the columns of ``A`` for ``standardize=how``. ``column``: a column whose spread is
    below 1% of the largest column's keeps 1% of it, so a nearly constant feature is not blown up."""
    d = A.shape[1]
    if how == "none":
        return np.zeros(d), np.ones(d)
    if how == "global":
        overall = float(A.std())
        return A.mean(0), np.full(d, overall if overall > 0 else 1.0)
    std = A.std(0)
    top = float(std.max())
    return A.mean(0), np.maximum(std, 0.01 * top) if top > 0 else np.ones(d)


def fit_ridge(Z: object, y: object, alphas: Sequence[float] | None = None, scale: bool = True):
    """Ridge regression with the penalty chosen by leave-one-out CV (``RidgeCV``), after standardising the
    features on these samples when ``scale`` (pass ``scale=False`` for features already standardised on a
    larger, unlabelled sample)."""
    A = _matrix(Z, "features")
    t = _vector(y, len(A), "y")
    if len(A) < 3:
        raise DataError(f"{len(A)} labelled sample(s): ridge with a cross-validated penalty needs at least 3")
    steps = [StandardScaler()] if scale else []
    return make_pipeline(*steps, RidgeCV(alphas=tuple(ALPHAS if alphas is None else alphas))).fit(A, t)


def scores(y_true: object, y_pred: object) -> dict[str, float]:
    """``r2`` (1 - SSE/SST, scikit-learn's; can be negative), ``pearson_r2`` (squared correlation, the r²
    of Jean et al. 2016 and Yeh et al. 2020) and ``spearman`` (rank correlation)."""
    from scipy.stats import spearmanr

    t = _vector(y_true, len(np.asarray(y_true)), "y_true")
    p = _vector(y_pred, len(t), "y_pred")
    sst = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float(((t - p) ** 2).sum()) / sst if sst > 0 else float("nan")
    if p.std() == 0 or t.std() == 0:
        return {"r2": r2, "pearson_r2": 0.0, "spearman": 0.0}
    return {"r2": r2, "pearson_r2": float(np.corrcoef(t, p)[0, 1] ** 2), "spearman": float(spearmanr(t, p)[0])}


# ---------------------------------------------------------------- the protocol
@dataclass(frozen=True)
class Split:
    """The samples of one evaluation: ``pool`` (proxy labels of all of them; target labels of the
    ``n`` drawn) and ``test`` (scored only)."""

    name: str
    pool: np.ndarray
    test: np.ndarray


#: A method: (model trained on the pool's proxy, X, y, proxy, labelled rows, test rows, settings) -> predictions.
Method = Callable[..., np.ndarray]


# Methods receive the inputs X standardised on the whole pool (inputs are unlabelled and plentiful; only
# labels are scarce), so that no method standardises on its few labelled samples.
def _m_proxy_ridge(model, X, y, proxy, lab, test, settings):
    return model.fit(X[lab], y[lab]).predict(X[test])


def _m_ridge(model, X, y, proxy, lab, test, settings):
    return fit_ridge(X[lab], y[lab], settings.get("alphas"), scale=False).predict(X[test])


def _m_network(model, X, y, proxy, lab, test, settings):
    params = {k: v for k, v in settings.items() if k != "alphas"}
    return ProxyTransfer(**{**params, "standardize": "none"}).fit_proxy(X[lab], y[lab]).predict_proxy(X[test])


def _m_proxy_value(model, X, y, proxy, lab, test, settings):
    return fit_ridge(proxy[lab, None], y[lab], settings.get("alphas")).predict(proxy[test, None])


#: The compared routes, all given the same labelled samples: ``proxy+ridge`` (this module's recipe),
#: ``ridge`` (ridge on the inputs themselves), ``network`` (the same network trained on the target labels
#: directly, :class:`ProxyTransfer` settings), ``proxy-value`` (ridge on the proxy value alone).
METHODS: dict[str, Method] = {"proxy+ridge": _m_proxy_ridge, "ridge": _m_ridge, "network": _m_network,
                              "proxy-value": _m_proxy_value}


def proxy_curve(X: object, y: object, proxy: object, splits: Iterable[Split], sizes: Sequence[int | None],
                seeds: Sequence[int] = (0,), methods: Sequence[str] = tuple(METHODS),
                settings: dict | None = None, input_scaling: str = "column",
                progress: Callable[[str], None] | None = None) -> list[dict]:
    """Score the routes of :data:`METHODS` against the number of labelled samples.

    For every split, the inputs are scaled (``input_scaling``: ``column``, ``global`` or ``none``, as
    :class:`ProxyTransfer`'s ``standardize``) with statistics of the pool's inputs (no labels), and every
    method reads them so. For every split and seed, the proxy network is trained once on the proxy labels
    of the whole pool (never on a test sample); for every size ``n`` in ``sizes`` (None: the whole pool)
    ``n`` pool samples are drawn at random (by seed, split and n) and their target labels are the only
    ones any method sees. Returns one row per (split, seed, n, method): ``split, seed, n, method, r2, pearson_r2,
    spearman``. ``settings``: :class:`ProxyTransfer` parameters (also used by ``network``).
    """
    A = _matrix(X)
    t = _vector(y, len(A), "y")
    p = _vector(proxy, len(A), "proxy")
    unknown = [m for m in methods if m not in METHODS]
    if input_scaling not in STANDARDIZE:
        raise ConfigError(f"input_scaling={input_scaling!r}: give one of {', '.join(STANDARDIZE)}")
    if unknown or not methods:
        raise ConfigError(f"unknown method(s) {unknown or list(methods)}; give some of {', '.join(METHODS)}")
    settings = dict(settings or {})
    rows: list[dict] = []
    for si, split in enumerate(splits):
        pool, test = np.asarray(split.pool), np.asarray(split.test)
        if len(np.intersect1d(pool, test)):
            raise DataError(f"split {split.name!r}: {len(np.intersect1d(pool, test))} sample(s) are both in the pool "
                            "and in the test set")
        if len(test) < 3:
            raise DataError(f"split {split.name!r} has {len(test)} test sample(s); give at least 3")
        for n in sizes:
            if n is not None and (not isinstance(n, (int, np.integer)) or not 3 <= n <= len(pool)):
                raise ConfigError(f"size {n!r}: the number of labelled samples must be from 3 to the pool size "
                                  f"{len(pool)} of split {split.name!r} (or None for all of it)")
        shift, scale = _scaling(A[pool], input_scaling)
        Xp = (A - shift) / scale
        for seed in seeds:
            model = None
            if "proxy+ridge" in methods:
                model = ProxyTransfer(**{**settings, "random_state": seed, "standardize": "none"}).fit_proxy(
                    Xp[pool], p[pool])
            for n in sizes:
                rng = np.random.default_rng([seed, si, 0 if n is None else int(n)])
                lab = pool if n is None else np.sort(rng.choice(pool, int(n), replace=False))
                for m in methods:
                    pred = METHODS[m](model, Xp, t, p, lab, test, {**settings, "random_state": seed})
                    rows.append({"split": split.name, "seed": seed, "n": len(lab), "all": n is None, "method": m,
                                 **scores(t[test], pred)})
                if progress is not None:
                    progress(f"{split.name} seed {seed} n={len(lab)}: " + ", ".join(
                        f"{r['method']} r2 {r['r2']:.3f}" for r in rows[-len(methods):]))
    return rows


def summarise(rows: Sequence[dict], keys: Sequence[str] = ("protocol", "n", "method")) -> list[dict]:
    """Mean and sample standard deviation (ddof=1; NaN for a single row) of ``r2``, ``pearson_r2``, ``spearman``
    over the rows sharing ``keys`` (``n`` of the 'all' rows is reported as ``"all"``)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        k = tuple("all" if (key == "n" and r.get("all")) else r.get(key) for key in keys)
        groups.setdefault(k, []).append(r)
    out = []
    for k, rs in groups.items():
        row = dict(zip(keys, k))
        for metric in ("r2", "pearson_r2", "spearman"):
            v = np.array([r[metric] for r in rs], float)
            row[metric], row[metric + "_sd"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan
        row["runs"] = len(rs)
        out.append(row)
    return out


# ---------------------------------------------------------------- the LSMS villages
LSMS_FOLDER = "africa-poverty-lsms"


@dataclass(frozen=True)
class Villages:
    """The LSMS villages: ``X`` (n, 8 x 102) band histograms (:func:`histogram_features`), ``wealth`` (the
    target), ``nightlights`` (``nls_mean``, the proxy), ``country`` (two-letter code), ``location`` (one id
    per (lat, lon): a village surveyed in several years has one id) and ``year``."""

    X: np.ndarray
    wealth: np.ndarray
    nightlights: np.ndarray
    country: np.ndarray
    location: np.ndarray
    year: np.ndarray

    def __len__(self) -> int:
        return len(self.wealth)


def histogram_features(hists: np.ndarray) -> np.ndarray:
    """(n, bands, bins) pixel counts -> (n, bands * bins) square roots of the fraction of each band's pixels
    in each bin (the Hellinger embedding: Euclidean distance between rows is the Hellinger distance
    between histograms, and a bin's variance no longer grows with its mean)."""
    h = np.asarray(hists, np.float64)
    if h.ndim != 3:
        raise DataError(f"histograms have shape {h.shape}; expected (n, bands, bins)")
    total = h.sum(2, keepdims=True)
    return np.sqrt(h / np.where(total > 0, total, 1)).reshape(len(h), -1)


def log_nightlights(nightlights: np.ndarray, offset: float = 0.01) -> np.ndarray:
    """``log(nl - min(nl) + offset)``: night lights are heavy-tailed (most villages are dark; a few cities
    are 100x brighter), so the proxy regression and the proxy-value baseline read their logarithm."""
    nl = np.asarray(nightlights, np.float64)
    return np.log(nl - nl.min() + offset)


def load_lsms(data_dir: str | os.PathLike | None = None) -> Villages:
    """Read ``DATA/africa-poverty-lsms`` (see its SOURCE.md): the npz is read with ``allow_pickle=False``;
    each village's country comes from ``lsms_labels_agg.csv``, matched on (lat, lon, year), and the
    match is checked against the wealth value both files hold."""
    from .data import resolve_data_dir
    from .data.builtin import data_folder

    folder = data_folder(resolve_data_dir(data_dir), LSMS_FOLDER, "lsms")
    npz, table = folder / "lsms_image_hists.npz", folder / "lsms_labels_agg.csv"
    for f in (npz, table):
        if not f.is_file():
            raise DatasetNotFoundError(f"{f} is missing; the {LSMS_FOLDER} folder should hold lsms_image_hists.npz "
                                       "and lsms_labels_agg.csv (see its SOURCE.md)")
    try:
        with np.load(npz, allow_pickle=False) as d:
            hists, wealth = d["image_hists"], d["labels"].astype(np.float64)
            nls, locs, years = d["nls_mean"].astype(np.float64), d["locs"].astype(np.float64), d["years"]
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{npz}: not the expected arrays image_hists, labels, nls_mean, locs, years ({exc})") from None
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        ref = np.array([[float(r["lat"]), float(r["lon"]), float(r["year"]), float(r["index"])] for r in rows])
        codes = np.array([r["country"] for r in rows])
    except (KeyError, ValueError) as exc:
        raise DataError(f"{table}: expected the columns lat, lon, year, country, index ({exc})") from None
    # nearest row of the same year (float32 vs text coordinates differ by ~1e-6 degrees)
    dist = np.abs(locs[:, None, 0] - ref[None, :, 0]) + np.abs(locs[:, None, 1] - ref[None, :, 1])
    dist[years[:, None] != ref[None, :, 2]] = np.inf
    match = dist.argmin(1)
    bad = np.flatnonzero((dist[np.arange(len(match)), match] > 1e-4) | (np.abs(ref[match, 3] - wealth) > 1e-4))
    if len(bad):
        raise DataError(f"{npz}: {len(bad)} village(s) (first rows {bad[:5].tolist()}) have no row of the same "
                        f"location, year and wealth in {table.name}; the files do not belong together")
    _, location = np.unique(locs.astype(np.float32), axis=0, return_inverse=True)
    return Villages(histogram_features(hists), wealth, nls, codes[match], location.ravel(), years.astype(np.int64))


def country_splits(villages: Villages) -> list[Split]:
    """Out-of-country: for each country, the pool is the other four countries and the test set that country."""
    idx = np.arange(len(villages))
    return [Split(c, idx[villages.country != c], idx[villages.country == c]) for c in np.unique(villages.country)]


def location_splits(villages: Villages, k: int = 5, seed: int = 0) -> list[Split]:
    """k-fold cross-validation over locations (a village surveyed in several years is never on both sides)."""
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"k={k!r}: give a number of folds of at least 2")
    ids = np.unique(villages.location)
    fold_of = np.empty(ids.max() + 1, np.int64)
    fold_of[np.random.default_rng(seed).permutation(ids)] = np.arange(len(ids)) % k
    fold = fold_of[villages.location]
    idx = np.arange(len(villages))
    return [Split(f"fold{f}", idx[fold != f], idx[fold == f]) for f in range(k)]

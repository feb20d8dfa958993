r"""Second-order and subspace alignment: CORAL and Subspace Alignment, closed-form maps between domains.

Both ``transform(X, sample_domain=None)`` map each row by its own domain (``sample_domain > 0``
source, ``< 0`` target). Without ``sample_domain`` CORAL treats rows as source (its only map is the
source's; target rows pass unchanged) and Subspace Alignment as target (what a fitted pipeline
sees at prediction time). ``fit_transform`` maps the fitted rows by their own domain.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError
from ._base import check_X, domain_mask, looks_like_a_sample, split_domains, target_as_y


def _sym_power(C: np.ndarray, p: float) -> np.ndarray:
    s, U = np.linalg.eigh((C + C.T) / 2)
    s = np.maximum(s, 1e-12 * max(float(s.max()), 1e-300))
    return (U * s ** p) @ U.T


def _check_square(est: Any, size: int, count: int, what: str) -> None:
    """Refuse a fit whose ``count`` float64 ``size`` x ``size`` matrices exceed ``QIANYI_MAX_BYTES`` (64-px RGB
    images as vectors asked for 3.4 GiB and died with numpy's MemoryError)."""
    from ..data.limits import check_memory

    check_memory(count * 8 * size * size, f"{type(est).__name__} {what}: {size:,} x {size:,} here",
                 "reduce the features first (PCA, smaller images, or `qianyi features` for a network's features), "
                 "or raise QIANYI_MAX_BYTES if this machine has the memory")


def _cov(X: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(0)
    return Xc.T @ Xc / max(len(X) - 1, 1)


class CORAL(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""CORrelation ALignment (Sun, Feng, Saenko, "Return of Frustratingly Easy Domain Adaptation", AAAI 2016).

    .. math:: \min_A \lVert A^\top C_S A - C_T \rVert_F^2 \;\Rightarrow\;
              A = (C_S + \lambda I)^{-1/2} (C_T + \lambda I)^{1/2}, \quad D_S^* = D_S A

    (``C_S``, ``C_T``: feature covariances; ``reg`` is the paper's ``lambda``, 1 by default, which
    assumes features of unit scale, e.g. z-scored as in the paper). As in the paper the source is
    whitened then re-coloured with the target covariance; train on ``transform(Xs)`` and test on the
    raw target. ``fit(Xs, Xt)`` (or ``Xt=``, or ``fit(X, sample_domain=sd)``); ``transform(X)`` maps rows
    as source (see the module docstring for ``sample_domain``).
    """

    def __init__(self, reg: float = 1.0) -> None:
        self.reg = reg

    def fit(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> "CORAL":
        """Fit on source ``X`` and target ``Xt``; ``y`` is ignored (a 2-D or sparse array there is taken as ``Xt``; a
        1-D one of another length than ``X`` is an error)."""
        if not (isinstance(self.reg, (int, float, np.number)) and np.isfinite(self.reg) and self.reg >= 0):
            raise ConfigError(f"CORAL: reg={self.reg!r}; it must be a finite number >= 0 (1 in the paper)")
        y, Xt = target_as_y(self, X, y, Xt, sample_domain)
        d = split_domains(self, X, None, Xt, None, sample_domain, min_source=2)
        _check_square(self, d.Xs.shape[1], 3, "aligns two d x d feature covariances (and their eigenvectors)")
        eye = np.eye(d.Xs.shape[1])
        self.source_covariance_ = _cov(d.Xs.astype(np.float64)) + self.reg * eye
        self.target_covariance_ = _cov(d.Xt.astype(np.float64)) + self.reg * eye
        self.transform_matrix_ = _sym_power(self.source_covariance_, -0.5) @ _sym_power(self.target_covariance_, 0.5)
        return self

    def transform(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        """Source rows times ``transform_matrix_``; target rows (``sample_domain < 0``) unchanged."""
        check_is_fitted(self, "transform_matrix_")
        X = check_X(self, X, "X", reset=False)
        src = domain_mask(self, len(X), sample_domain, default="source")
        out = np.array(X, dtype=np.float64)
        out[src] = X[src] @ self.transform_matrix_
        return out

    def fit_transform(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> np.ndarray:
        return self.fit(X, y, Xt=Xt, sample_domain=sample_domain).transform(X, sample_domain=sample_domain)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class SubspaceAlignment(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Subspace Alignment (Fernando, Habrard, Sebban, Tuytelaars, "Unsupervised Visual Domain Adaptation
    Using Subspace Alignment", ICCV 2013).

    .. math:: M^* = \arg\min_M \lVert P_S M - P_T \rVert_F^2 = P_S^\top P_T, \qquad
              x_S \mapsto (x_S - \bar x_S) P_S M^*, \quad x_T \mapsto (x_T - \bar x_T) P_T

    with ``P_S``, ``P_T`` the ``n_components`` leading PCA directions (D x d, orthonormal) of each
    domain, each centred on its own mean (the authors z-score each domain). ``n_components_`` is
    ``n_components`` capped by the features and by each domain's samples less one (the rank of
    centred data). ``fit(Xs, Xt)`` (or ``Xt=``,
    or ``sample_domain``); ``transform(X, sample_domain=None)`` maps rows as target unless told.
    """

    def __init__(self, n_components: int = 20) -> None:
        self.n_components = n_components

    def fit(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> "SubspaceAlignment":
        """Fit on source ``X`` and target ``Xt``; ``y`` is ignored (a 2-D or sparse array there is taken as ``Xt``; a
        1-D one of another length than ``X`` is an error)."""
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, (int, np.integer)) \
                or self.n_components < 1:
            raise ConfigError(f"SubspaceAlignment: n_components={self.n_components!r}; give a positive integer")
        y, Xt = target_as_y(self, X, y, Xt, sample_domain)
        d = split_domains(self, X, None, Xt, None, sample_domain, min_source=2)
        # centred data of n rows has rank <= n - 1: beyond it a "direction" would be rounding noise
        k = int(min(self.n_components, d.Xs.shape[1], len(d.Xs) - 1, len(d.Xt) - 1))
        side = max(min(d.Xs.shape[1], len(d.Xs)), min(d.Xs.shape[1], len(d.Xt)))
        _check_square(self, side, 2, "takes each domain's principal directions from its scatter or Gram matrix")
        self.source_mean_, self.source_basis_ = self._pca(d.Xs, k)
        self.target_mean_, self.target_basis_ = self._pca(d.Xt, k)
        self.alignment_ = self.source_basis_.T @ self.target_basis_
        self.n_components_ = k
        self._n_features_out = k
        return self

    @staticmethod
    def _pca(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` leading principal directions, from the k top eigenvectors of the smaller of the
        scatter (d x d) and Gram (n x n) matrices (not a full SVD)."""
        from scipy.linalg import eigh

        X = X.astype(np.float64)
        mean = X.mean(0)
        Xc = X - mean
        n, d = Xc.shape
        if d <= n:
            _, V = eigh(Xc.T @ Xc, subset_by_index=[d - k, d - 1])
            V = V[:, ::-1]
        else:  # more features than samples: through the Gram matrix, V = Xc^T U / sqrt(w)
            w, U = eigh(Xc @ Xc.T, subset_by_index=[n - k, n - 1])
            w, U = w[::-1], U[:, ::-1]
            V = Xc.T @ U / np.sqrt(np.maximum(w, np.finfo(np.float64).tiny))
            # rows that repeat or lie on a line leave eigenvalues ~0 within the top k; QR keeps the
            # basis orthonormal (the well-defined leading columns stay as they are, up to sign)
            V = np.linalg.qr(V)[0]
        idx = np.abs(V).argmax(0)  # deterministic signs
        return mean, V * np.sign(V[idx, np.arange(k)])

    def transform(self, X: Any, sample_domain: Any = None) -> np.ndarray:
        """Target rows: ``(x - mean_T) P_T``; source rows (``sample_domain > 0``): ``(x - mean_S) P_S M``."""
        check_is_fitted(self, "alignment_")
        X = check_X(self, X, "X", reset=False).astype(np.float64)
        src = domain_mask(self, len(X), sample_domain, default="target")
        out = (X - self.target_mean_) @ self.target_basis_
        if src.any():
            out[src] = (X[src] - self.source_mean_) @ self.source_basis_ @ self.alignment_
        return out

    def fit_transform(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> np.ndarray:
        """``fit``, then the fitted rows by their own domain (with ``Xt=``: ``X`` is all source)."""
        self.fit(X, y, Xt=Xt, sample_domain=sample_domain)
        if Xt is not None or (sample_domain is None and looks_like_a_sample(y)):
            sample_domain = np.ones(len(X))
        return self.transform(X, sample_domain=sample_domain)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

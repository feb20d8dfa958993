r"""Transfer component analysis and joint distribution adaptation: embeddings in which the source and
target kernel means (TCA), and also the class-conditional means (JDA), are close while the data's
variance is kept.

Both solve one generalised eigenproblem and differ in the MMD matrix ``M``:

.. math::

    \min_W \operatorname{tr}(W^\top K M K W) + \mu \operatorname{tr}(W^\top W)
    \ \text{ s.t. } W^\top K H K W = I
    \;\Rightarrow\; W = \text{leading eigenvectors of } (K M K + \mu I)^{-1} K H K,

with ``K`` the kernel on the pooled source and target samples, ``H = I - 11^T/n`` the centring
matrix and the embedding ``Z = K W`` (a new sample ``x``: ``k(x, X_fit) W``). TCA (Pan et al.):
``M = L = e_0 e_0^T``, ``e_0 = 1/n_s`` on source rows and ``-1/n_t`` on target rows, so that
``tr(W^T K L K W)`` is the squared MMD between the embedded domains. JDA (Long et al.) adds one term
``e_c e_c^T`` per class ``c`` (``1/n_s^c`` on source rows of class ``c``, ``-1/n_t^c`` on target rows
pseudo-labelled ``c``; a class missing from either side adds nothing) and refreshes the pseudo-labels.

Conventions (those of Long et al.'s reference code, with which the published Office-Caltech SURF
TCA average, 43.6, is reproduced): ``M`` is divided by its Frobenius norm and the kernel by
its mean diagonal, so ``mu`` means the same on any data. ``mu`` weighs the regulariser, as Long et al.'s
``lambda`` (``TCA.m``, ``JDA.m``); Pan et al. (2011) put their ``mu`` on the MMD term,
``(I + mu_Pan K L K)^{-1} K H K``, which has TCA's components for ``mu_Pan = 1 / (mu ||L||_F)``,
``||L||_F = 1/n_s + 1/n_t``: a larger ``mu`` here aligns the domains less.

The eigenproblem fixes directions, not lengths: the primal form keeps the solver's ``w^T (X^T M X + mu I) w = 1``, under which component
``j`` has variance ``lambda_j`` (its eigenvalue), like PCA scores (whitening the components,
``W^T K H K W = I``, cost 8 points of 1-NN accuracy on Office-Caltech). In the kernel form the
same normalisation gives variances that grow with the square of the data's (``lambda_j ~ s_j^2``
for kernel eigenvalues ``s_j``), which swamps nearest-neighbour distances with the first
components (TCA fell to 0.80 of raw 1-NN on rotated digits); kernel-form components are therefore
divided by ``lambda_j^{1/4}``, so that with identical domains the linear kernel gives PCA scores
(as the primal form does) and the RBF kernel kernel-PCA scores. ``eigenvalues_`` keeps the
``lambda_j``. Kernels: ``"primal"`` solves the problem on the features
(``K = X X^T`` with ``W`` restricted to ``X a``: ``d x d`` matrices ``X^T M X``, ``X^T H X``, and
``mu |a|^2``), cheap for any number of samples; ``"linear"`` and ``"rbf"`` solve it on ``n x n``
kernel matrices exactly, or, when about four such float64 matrices would exceed ``max_kernel_bytes``,
on Nystroem features ``phi`` of ``landmarks`` points with ``K ~ Phi Phi^T`` (the same problem:
``Phi^T H Phi``, ``Phi^T M Phi + mu (Phi^T Phi)^{-1}``, ``m x m``; exact when every sample is a
landmark), switched on with a :class:`~qianyi.errors.QianyiWarning`. Every kernel matrix larger than
a chunk is streamed, so memory stays within the budget whatever ``n``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, DataError
from ._base import (FeatureMap, check_kernel, check_positive, check_X, chunks, kernel, landmark_count,
                    median_sq_dist_np, pick_landmarks, split_domains, target_as_y, zscore_params)

DEFAULT_MAX_KERNEL_BYTES = 512 * 2 ** 20


class _Groups:
    """Rows of the pooled sample in groups (source class c, target pseudo-class c, or just the two domains)
    and the MMD vectors ``e_a`` (constant within each group) with their weights."""

    def __init__(self, ns: int, nt: int, ys: np.ndarray | None, yt: np.ndarray | None, n_classes: int) -> None:
        if ys is None or yt is None:  # TCA, or JDA's first round: source classes are not needed
            self.index = np.r_[np.zeros(ns, int), np.ones(nt, int)]
            source = np.array([True, False])
        else:
            self.index = np.r_[ys, n_classes + yt]
            source = np.r_[np.ones(n_classes, bool), np.zeros(n_classes, bool)]
        self.counts = np.bincount(self.index, minlength=len(source)).astype(float)
        G = len(source)
        e0 = np.where(source, 1.0 / ns, -1.0 / nt)
        vectors, weights = [e0], [1.0]
        if ys is not None and yt is not None:
            weights[0] = float(n_classes)  # Long et al.'s code: M0 = e e^T C
            for c in range(n_classes):
                a, b = self.counts[c], self.counts[n_classes + c]
                if a == 0 or b == 0:  # no MMD for a class absent from one domain
                    continue
                e = np.zeros(G)
                e[c], e[n_classes + c] = 1.0 / a, -1.0 / b
                vectors.append(e)
                weights.append(1.0)
        self.E = np.array(vectors)  # (q, G): value of each vector on each group
        self.w = np.array(weights)
        gram = (self.E * self.counts) @ self.E.T  # e_a . e_b
        self.fro = float(np.sqrt(np.einsum("a,b,ab->", self.w, self.w, gram ** 2)))


class _TransferBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared fitting and embedding of TCA and JDA."""

    # -- preprocessing and the feature space ------------------------------------------------------
    def _check_settings(self) -> None:
        check_kernel(self, self.kernel)
        check_positive(self, mu=self.mu, gamma=self.gamma, max_kernel_bytes=self.max_kernel_bytes)
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, (int, np.integer)) \
                or self.n_components < 1:
            raise ConfigError(f"{type(self).__name__}: n_components={self.n_components!r}; give a positive integer")

    def _prepare(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        X = np.vstack([Xs, Xt]).astype(np.float64)
        if self.standardize:
            self.mean_, self.scale_ = zscore_params(X)
        else:
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        X = (X - self.mean_) / self.scale_
        n = len(X)
        self.gamma_ = float(self.gamma / (2.0 * median_sq_dist_np(X, self.random_state))) if self.kernel == "rbf" else None
        # the exact problem is d x d (primal) or n x n (kernel); past the budget, Nystroem landmarks
        size, what = (X.shape[1], f"the primal form with {X.shape[1]} features") if self.kernel == "primal" \
            else (n, f"kernel={self.kernel!r} on {n} samples")
        m = landmark_count(self, self.landmarks, size, n, self.max_kernel_bytes, what)
        kname = "linear" if self.kernel == "primal" else self.kernel
        if m is None:
            self.mode_ = "kernel" if self.kernel != "primal" else "features"
            self.fmap_ = None if self.kernel != "primal" else FeatureMap("linear", 1.0, None)
        else:
            self.mode_ = "features"
            self.fmap_ = FeatureMap(kname, self.gamma_ or 1.0, pick_landmarks(X, m, self.random_state))
        self.n_landmarks_ = None if self.fmap_ is None or self.fmap_.landmarks is None else len(self.fmap_.landmarks)
        return X

    def _statistics(self, X: np.ndarray) -> None:
        """What every round needs: the centred scatter ``A`` (K H K, or Phi^T H Phi), the kernel scale and, on
        Nystroem features, the regulariser ``R`` that makes the problem the paper's ``mu tr(W^T W)``."""
        n = len(X)
        if self.mode_ == "kernel":
            K = kernel(X, X, self.kernel, self.gamma_ or 1.0)
            self.kscale_ = float(np.mean(np.diag(K))) or 1.0
            K /= self.kscale_
            self._K, self.X_fit_ = K, X
            k1 = K.sum(1)
            A = K @ K  # K H K = K K - (K 1)(K 1)^T / n, without a second n x n temporary
            for sl in chunks(n, n):
                A[sl] -= np.outer(k1[sl], k1 / n)
            self._A, self._R = A, None
            return
        r = self.fmap_.dim if self.fmap_.landmarks is not None else X.shape[1]
        S = np.zeros((r, r))
        total = np.zeros(r)
        for _, P in self.fmap_.blocks(X):
            S += P.T @ P
            total += P.sum(0)
        self.kscale_ = float(np.trace(S)) / n or 1.0
        S /= self.kscale_
        total /= np.sqrt(self.kscale_)
        self._A = S - np.outer(total, total) / n
        self._X = X
        if self.kernel == "primal":
            self._R = None  # mu ||V||^2 on the projection itself (Long et al.'s primal form)
        else:
            # K ~ Phi Phi^T: the kernel form's W (n x k) with Z = K W and the least ||W|| is
            # Phi (Phi^T Phi)^{-1} V, so mu tr(W^T W) = mu tr(V^T (Phi^T Phi)^{-1} V)
            s, U = np.linalg.eigh((S + S.T) / 2)
            s = np.maximum(s, 1e-10 * max(float(s.max()), 1e-300))
            self._R = (U / s) @ U.T

    def _solve(self, groups: _Groups, keep: bool = True) -> None:
        """Leading generalised eigenvectors of (A, K M K / ||M|| + mu R); sets ``components_``. ``keep=False``
        lets the solver overwrite ``A`` (the last solve), which saves one n x n matrix."""
        G = len(groups.counts)
        if self.mode_ == "kernel":
            onehot = np.zeros((len(groups.index), G))
            onehot[np.arange(len(groups.index)), groups.index] = 1.0
            sums = self._K @ onehot  # K summed over the columns of each group
        else:
            sums = np.zeros((self._A.shape[0], G))
            root = np.sqrt(self.kscale_)
            for sl, P in self.fmap_.blocks(self._X):
                onehot = np.zeros((sl.stop - sl.start, G))
                onehot[np.arange(sl.stop - sl.start), groups.index[sl]] = 1.0
                sums += P.T @ onehot / root
        KE = sums @ groups.E.T  # (N, q): K e_a (or Phi^T e_a)
        B = (KE * (groups.w / groups.fro)) @ KE.T
        if self._R is None:
            B[np.diag_indices_from(B)] += self.mu
        else:
            B += self.mu * self._R
        N = len(self._A)
        A = self._A if not keep else self._A.copy()
        k = min(int(self.n_components), N)
        # eigh reads one triangle only (A and B are symmetric up to rounding) and may overwrite both; their
        # transposes are Fortran-ordered views, which LAPACK takes without a copy
        try:
            lam, W = scipy.linalg.eigh(A.T, B.T, subset_by_index=[N - k, N - 1], overwrite_a=True,
                                       overwrite_b=True, check_finite=False)
        except np.linalg.LinAlgError as e:  # B = K M K + mu R is positive definite; only rounding can break it
            raise DataError(f"{type(self).__name__}.fit: the eigenproblem failed ({e}); the inputs are probably "
                            "degenerate (constant or duplicated rows) or badly scaled; raise mu or standardize") from e
        del A, B
        self.eigenvalues_ = lam[::-1]
        self.components_ = W[:, ::-1]
        if self.kernel != "primal":  # kernel form: variance lambda_j -> sqrt(lambda_j) (module docstring)
            # a component whose eigenvalue is ~0 (centred data of N rows has rank <= N - 1; a linear kernel
            # rank <= d) carries no variance: it is set to 0, where dividing by lambda^(1/4) of rounding
            # noise made it the largest column (and dominated JDA's row normalisation)
            floor = 1e-12 * max(float(self.eigenvalues_[0]), 1.0)
            live = self.eigenvalues_ > floor
            self.components_ = np.where(live, self.components_ / np.maximum(self.eigenvalues_, floor) ** 0.25, 0.0)
        self.n_components_ = self._n_features_out = k
        # sign: the largest-magnitude coordinate of the fitted samples' embedding is positive (the same
        # rule whatever the representation of W, exact or Nystroem)
        Z = self._embed_fitted()
        signs = np.sign(Z[np.abs(Z).argmax(0), np.arange(k)])
        signs[signs == 0] = 1.0
        self.components_ = self.components_ * signs

    def _embed_fitted(self) -> np.ndarray:
        """The embedding of the fitted (pooled) samples, during ``fit``."""
        return self._K @ self.components_ if self.mode_ == "kernel" else self._embed_prepared(self._X)

    def _embed_prepared(self, X: np.ndarray) -> np.ndarray:
        """Embedding of standardised rows (chunked: never an n_new x n_fit matrix larger than a chunk)."""
        W = self.components_
        out = np.empty((len(X), W.shape[1]))
        if self.mode_ == "kernel":
            for sl in chunks(len(X), len(self.X_fit_)):
                out[sl] = kernel(X[sl], self.X_fit_, self.kernel, self.gamma_ or 1.0) @ W / self.kscale_
        else:
            for sl, P in self.fmap_.blocks(X):
                out[sl] = P @ W / np.sqrt(self.kscale_)
        return out

    def _finish(self) -> None:
        """Drop what only fitting needed (the kernel problem's matrices; the fitted rows unless kernelised)."""
        if self.mode_ != "kernel":
            self.X_fit_ = None
        for name in ("_K", "_A", "_X"):
            self.__dict__.pop(name, None)

    def transform(self, X: Any) -> np.ndarray:
        """The embedding ``k(x, X_fit) W`` of any rows (source, target or new), shape (n, n_components_)."""
        check_is_fitted(self, "components_")
        X = check_X(self, X, "X", reset=False)
        return self._embed_prepared((np.asarray(X, np.float64) - self.mean_) / self.scale_)

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class TCA(_TransferBase):
    r"""Transfer component analysis (Pan, Tsang, Kwok, Yang, "Domain Adaptation via Transfer Component
    Analysis", IEEE Trans. Neural Networks 22(2), 2011), in the form of Long et al.'s reference code
    (``TCA.m``/``JDA.m``: ``mu`` weighs the regulariser).

    .. math:: \min_W \operatorname{tr}(W^\top K L K W) / \lVert L \rVert_F + \mu \operatorname{tr}(W^\top W)
              \ \text{ s.t. } W^\top K H K W = I, \quad L = e_0 e_0^\top,\
              (e_0)_i = 1/n_s \text{ (source)},\ -1/n_t \text{ (target)}

    i.e. ``W`` = leading eigenvectors of ``(K L K / ||L||_F + mu I)^{-1} K H K``; features ``Z = K W``
    (module docstring: scaling, the primal form, landmarks). Pan et al.'s objective puts their ``mu`` on
    the MMD term instead, ``min tr(W^T W) + mu_Pan tr(W^T K L K W)``: the same components for
    ``mu_Pan = 1 / (mu (1/n_s + 1/n_t))`` (``||L||_F = 1/n_s + 1/n_t``, on the kernel as scaled here), so
    a larger ``mu`` here aligns the domains less; map a ``mu`` taken from Pan et al., do not copy it.

    ``fit(Xs, Xt)`` (or ``fit(Xs, Xt=Xt)``, or ``fit(X, sample_domain=sd)``), then ``transform(X)`` for
    any rows. Defaults chosen not to collapse (1-NN on the features within 10% of 1-NN on standardised
    inputs on MNIST <-> UCI digits and rotated digits): inputs z-scored on the pooled sample
    (``standardize``), ``kernel="primal"`` (cheap at any ``n``; ``"linear"`` gives nearly the same
    features, ``"rbf"`` holds as well), ``n_components=30``, ``mu=1``. For ``"rbf"``:
    ``k(a, b) = exp(-gamma |a - b|^2 / (2 s^2))`` with ``s^2`` the median squared distance of the pooled sample (``gamma`` is a multiplier; the absolute value is ``gamma_``).
    ``landmarks``: None = exact unless the exact matrices would exceed ``max_kernel_bytes`` (then 1000
    Nystroem landmarks and a :class:`~qianyi.errors.QianyiWarning`); an int forces that many, a seeded
    (``random_state``) subsample of source + target. Fitted: ``components_``, ``eigenvalues_``,
    ``n_components_`` (capped by the problem's size), ``gamma_``, ``mode_`` (``"kernel"``: exact n x n;
    ``"features"``: primal or Nystroem), ``n_landmarks_``.
    """

    def __init__(self, n_components: int = 30, kernel: str = "primal", mu: float = 1.0, gamma: float = 1.0,
                 standardize: bool = True, landmarks: int | None = None,
                 max_kernel_bytes: float = DEFAULT_MAX_KERNEL_BYTES, random_state: int = 0) -> None:
        self.n_components = n_components
        self.kernel = kernel
        self.mu = mu
        self.gamma = gamma
        self.standardize = standardize
        self.landmarks = landmarks
        self.max_kernel_bytes = max_kernel_bytes
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> "TCA":
        """Fit on source ``X`` and target ``Xt`` (unlabelled). ``y`` is ignored, except that a 2-D or sparse
        array in its place is taken as ``Xt`` (``fit(Xs, Xt)``) and a 1-D one of another length than ``X`` is an
        error."""
        self._check_settings()
        y, Xt = target_as_y(self, X, y, Xt, sample_domain)
        d = split_domains(self, X, None, Xt, None, sample_domain)
        X = self._prepare(d.Xs, d.Xt)
        self._statistics(X)
        self._solve(_Groups(len(d.Xs), len(d.Xt), None, None, 0), keep=False)
        self._finish()
        return self

    def fit_transform(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> np.ndarray:
        """``fit``, then the embedding of ``X`` (with ``Xt=``: the source rows only)."""
        return self.fit(X, y, Xt=Xt, sample_domain=sample_domain).transform(X)


def _estimator_has(name: str) -> Any:
    """For ``available_if``: whether JDA's (fitted, else the given or default 1-NN) base estimator has ``name``."""
    def check(self: "JDA") -> bool:
        return hasattr(self.estimator_ if hasattr(self, "estimator_") else
                       (KNeighborsClassifier(1) if self.estimator is None else self.estimator), name)

    return check


class JDA(ClassifierMixin, _TransferBase):
    r"""Joint distribution adaptation (Long, Wang, Ding, Sun, Yu, "Transfer Feature Learning with Joint
    Distribution Adaptation", ICCV 2013).

    .. math:: \min_{W^\top K H K W = I}\ \operatorname{tr}\Big(W^\top K \big(\textstyle\sum_{c=0}^{C}
              M_c\big) K W\Big) + \lambda \lVert W \rVert_F^2

    with ``M_0`` the marginal MMD matrix of TCA (weighted by ``C`` as in the authors' code) and ``M_c``
    the MMD between source class ``c`` and the target rows pseudo-labelled ``c``; equivalently ``W`` =
    leading eigenvectors of ``(K M K + lambda I)^{-1} K H K`` (``mu`` here is the paper's ``lambda``).
    Each of ``n_iter`` rounds solves it, embeds, fits ``estimator`` (default 1-NN) on the source and
    relabels the target; round 1 has no pseudo-labels (TCA); rounds stop early once the pseudo-labels
    repeat (later rounds would solve the same problem). ``kernel="primal"`` (default, the paper's
    setting: the linear problem in feature space), ``"linear"`` or ``"rbf"`` (kernel form, with the same
    Nystroem ``landmarks`` path and ``max_kernel_bytes`` budget as :class:`TCA`). Paper settings for
    Office-Caltech SURF: ``n_components=100, mu=1, n_iter=10``.

    ``fit(Xs, ys, Xt)`` (or ``Xt=``, or ``fit(X, y, sample_domain=sd)``, or ``unlabelled=`` marking target
    rows of ``y``); ``transform(X)`` embeds rows; ``predict(X)`` applies ``estimator_`` (fitted on the
    embedded source) to the embedding; ``predict_proba`` and ``decision_function`` are the base estimator's on
    the same embedding, each present only when it has it (the default 1-NN: ``predict_proba``; ``SVC()``:
    ``decision_function``, which the ``roc_auc`` scorer then uses). Like the reference code, the embedding is
    scaled to unit length per row before the classifier sees it (``normalize_rows``). Fitted: as :class:`TCA`, plus ``estimator_``,
    ``classes_``, ``n_iter_`` and ``pseudo_label_history_`` (the target labels after each round).
    """

    def __init__(self, n_components: int = 100, kernel: str = "primal", mu: float = 1.0, gamma: float = 1.0,
                 n_iter: int = 10, estimator: Any = None, standardize: bool = True, normalize_rows: bool = True,
                 landmarks: int | None = None, max_kernel_bytes: float = DEFAULT_MAX_KERNEL_BYTES,
                 random_state: int = 0, unlabelled: Any = None) -> None:
        self.n_components = n_components
        self.kernel = kernel
        self.mu = mu
        self.gamma = gamma
        self.n_iter = n_iter
        self.estimator = estimator
        self.standardize = standardize
        self.normalize_rows = normalize_rows
        self.landmarks = landmarks
        self.max_kernel_bytes = max_kernel_bytes
        self.random_state = random_state
        self.unlabelled = unlabelled

    def _features(self, Z: np.ndarray) -> np.ndarray:
        if not self.normalize_rows:
            return Z
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.where(norms > 0, norms, 1.0)

    def fit(self, X: Any, y: Any, Xt: Any = None, sample_domain: Any = None) -> "JDA":
        """Fit on labelled source rows and unlabelled target rows (see the class docstring)."""
        self._check_settings()
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, (int, np.integer)) or self.n_iter < 1:
            raise ConfigError(f"JDA: n_iter={self.n_iter!r}; give a positive integer (10 in the paper)")
        d = split_domains(self, X, y, Xt, None, sample_domain, self.unlabelled, need_y=True)
        check_classification_targets(d.ys)
        self.classes_, ys = np.unique(d.ys, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"JDA.fit: the source rows hold only 1 class ({self.classes_[0]!r}); a classifier "
                            "needs at least two")
        C = len(self.classes_)
        ns = len(d.Xs)
        Xp = self._prepare(d.Xs, d.Xt)
        self._statistics(Xp)
        base = KNeighborsClassifier(1) if self.estimator is None else self.estimator
        pseudo = None
        self.pseudo_label_history_ = []
        for _ in range(int(self.n_iter)):
            self._solve(_Groups(ns, len(d.Xt), ys if pseudo is not None else None, pseudo, C))
            Z = self._features(self._embed_fitted())
            clf = clone(base).fit(Z[:ns], ys)
            new = np.asarray(clf.predict(Z[ns:])).astype(int)
            self.pseudo_label_history_.append(self.classes_[new])
            if pseudo is not None and np.array_equal(new, pseudo):
                break
            pseudo = new
        self.estimator_ = clf
        self.n_iter_ = len(self.pseudo_label_history_)
        self._finish()
        return self

    def fit_transform(self, X: Any, y: Any = None, Xt: Any = None, sample_domain: Any = None) -> np.ndarray:
        return self.fit(X, y, Xt=Xt, sample_domain=sample_domain).transform(X)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.classes_[np.asarray(self.estimator_.predict(self._features(self.transform(X)))).astype(int)]

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of ``X`` (columns: ``classes_``), when the base estimator has them (1-NN does)."""
        check_is_fitted(self, "estimator_")
        P = self.estimator_.predict_proba(self._features(self.transform(X)))
        out = np.zeros((len(P), len(self.classes_)))
        out[:, np.asarray(self.estimator_.classes_, int)] = P
        return out

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """The base estimator's decision function on the embedding of ``X`` (when it has one: an ``SVC``, a linear
        model), e.g. for the ``roc_auc`` scorer."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self._features(self.transform(X)))


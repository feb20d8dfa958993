"""Shallow transfer estimators (qianyi.shallow): scikit-learn compatibility and what each paper promises."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.linalg import expm
from scipy.ndimage import rotate
from scipy.stats import norm, spearmanr
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import check_estimator

from qianyi.errors import ConfigError, DataError, QianyiWarning
from qianyi.shallow import (CORAL, JDA, KMM, TCA, AdaptedClassifier, AugmentedClassifier, FeatureAugmentation, KMMClassifier,
                            SubspaceAlignment, TrAdaBoost)


def nn1(Xa, ya, Xb, yb) -> float:
    return float(KNeighborsClassifier(1).fit(Xa, ya).score(Xb, yb))


def zscore_pooled(Xs, Xt):
    P = np.vstack([Xs, Xt])
    m, s = P.mean(0), P.std(0)
    s[s == 0] = 1
    return (Xs - m) / s, (Xt - m) / s


def blobs(seed=0, n=300, d=6, classes=3, shift=2.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, d))
    ys, yt = rng.integers(0, classes, n), rng.integers(0, classes, n)
    return (centers[ys] + rng.normal(size=(n, d)), ys,
            centers[yt] + rng.normal(size=(n, d)) + shift, yt)


@pytest.fixture(scope="module")
def rotated_digits():
    """UCI digits (500) -> 500 other digits rotated 20 degrees and darker."""
    X, y = load_digits(return_X_y=True)
    i = np.random.default_rng(0).permutation(len(X))
    s, t = i[:500], i[500:1000]
    Xt = np.stack([rotate(im, 20, reshape=False, order=1) for im in X[t].reshape(-1, 8, 8)]).reshape(-1, 64) * 0.8
    return X[s], y[s], Xt, y[t]


# -- scikit-learn compatibility ---------------------------------------------------------------------------
def _alternate(X) -> np.ndarray:
    n = X.shape[0] if hasattr(X, "shape") else len(np.asarray(X))
    return np.where(np.arange(n) % 2 == 0, 1, -1)


class StackedTrAdaBoost(TrAdaBoost):
    """TrAdaBoost needs labelled target rows, which ``check_estimator``'s ``fit(X, y)`` cannot mark: this
    test-only subclass makes every other row a target row through ``sample_domain`` (the public API)."""

    def fit(self, X, y):
        return super().fit(X, y, sample_domain=_alternate(X))


class StackedAugmented(AugmentedClassifier):
    """As :class:`StackedTrAdaBoost`, for the augmented classifier (also needs labelled target rows)."""

    def fit(self, X, y):
        return super().fit(X, y, sample_domain=_alternate(X))


# Every check applies (none is skipped or expected to fail); TrAdaBoost and AugmentedClassifier are checked
# through the subclasses above because a plain fit(X, y) holds no target rows for them.
ESTIMATORS = [TCA(n_components=3), TCA(kernel="rbf", n_components=3), TCA(kernel="linear", landmarks=5, n_components=2),
              JDA(n_iter=2), JDA(kernel="rbf", n_iter=2, n_components=4), CORAL(), SubspaceAlignment(3),
              KMM(max_iter=50), KMMClassifier(), StackedTrAdaBoost(), FeatureAugmentation(), StackedAugmented()]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'kernel', '')}")
def test_check_estimator(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of KMM on tiny max_iter, sklearn's own notices
        check_estimator(est)


def test_clone_params_and_pipelines():
    Xs, ys, Xt, yt = blobs()
    jda = JDA(n_components=4, n_iter=3)
    assert clone(jda).get_params() == jda.get_params()
    assert jda.set_params(mu=0.5).mu == 0.5
    # the unlabelled marker: a scaler sees source and target rows, GridSearchCV works as is
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, np.full(len(Xt), -1)]
    pipe = make_pipeline(StandardScaler(), JDA(n_iter=3, unlabelled=-1)).fit(X, y)
    assert pipe.score(Xt, yt) > 0.8
    assert set(pipe.predict(Xt)) <= set(ys)
    grid = GridSearchCV(make_pipeline(StandardScaler(), JDA(n_iter=2, unlabelled=-1)), {"jda__mu": [0.1, 1.0]}, cv=2,
                        scoring=lambda est, X, y: est.score(X[y >= 0], y[y >= 0])).fit(X, y)
    assert grid.best_params_["jda__mu"] in (0.1, 1.0)
    # sample_domain through scikit-learn's metadata routing
    sd = np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), TCA(n_components=3).set_fit_request(sample_domain=True))
        Z = pipe.fit(X, sample_domain=sd).transform(X)
    assert Z.shape == (len(X), 3)
    np.testing.assert_allclose(Z, TCA(n_components=3).fit_transform(StandardScaler().fit_transform(X),
                                                                      sample_domain=sd), atol=1e-8)


def test_the_domain_conventions_agree():
    Xs, ys, Xt, yt = blobs(1)
    X, sd = np.vstack([Xs, Xt]), np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
    for est in (TCA(n_components=3), CORAL(), SubspaceAlignment(3)):
        a = clone(est).fit(Xs, Xt).transform(Xt)
        np.testing.assert_allclose(a, clone(est).fit(Xs, Xt=Xt).transform(Xt), atol=1e-10)
        np.testing.assert_allclose(a, clone(est).fit(X, sample_domain=sd).transform(Xt), atol=1e-10)
    np.testing.assert_allclose(KMM().fit(Xs, Xt).weights_, KMM().fit(X, sample_domain=sd).weights_)
    p = JDA(n_iter=3).fit(Xs, ys, Xt).predict(Xt)
    np.testing.assert_array_equal(p, JDA(n_iter=3).fit(X, np.r_[ys, yt], sample_domain=sd).predict(Xt))
    np.testing.assert_array_equal(p, JDA(n_iter=3, unlabelled=-1).fit(X, np.r_[ys, -np.ones(len(yt), int)]).predict(Xt))
    a = TrAdaBoost(n_estimators=4).fit(Xs, ys, Xt[:20], yt[:20]).predict(Xt)
    np.testing.assert_array_equal(a, TrAdaBoost(n_estimators=4).fit(
        np.vstack([Xs, Xt[:20]]), np.r_[ys, yt[:20]], sample_domain=np.r_[np.ones(len(Xs)), -np.ones(20)]).predict(Xt))


def test_bad_inputs_say_what_is_wrong():
    Xs, ys, Xt, yt = blobs(2, n=40)
    with pytest.raises(DataError, match=r"Xt has 5 features but the source X has 6"):
        TCA().fit(Xs, Xt=Xt[:, :5])
    bad = Xt.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match=r"Xt.*NaN"):
        CORAL().fit(Xs, Xt=bad)
    with pytest.raises(DataError, match=r"input X.*NaN"):
        JDA().fit(np.where(Xs > 1e9, 0, np.nan), ys, Xt)
    with pytest.raises(DataError, match="target domain is empty"):
        TCA().fit(Xs, sample_domain=np.ones(len(Xs)))
    with pytest.raises(DataError, match="source domain is empty"):
        KMM().fit(Xs, sample_domain=-np.ones(len(Xs)))
    with pytest.raises(DataError, match=r"target has 1 sample"):
        KMM().fit(Xs, Xt=Xt[:1])
    with pytest.raises(DataError, match="needs labelled target rows"):
        TrAdaBoost().fit(Xs, ys, Xt)
    with pytest.raises(DataError, match="needs labelled target rows"):
        AugmentedClassifier().fit(Xs, ys)
    with pytest.raises(DataError, match="sample_domain must be non-zero"):
        TCA().fit(Xs, sample_domain=np.zeros(len(Xs)))
    with pytest.raises(DataError, match=r"yt has 3 labels for 40 rows"):
        TrAdaBoost().fit(Xs, ys, Xt, yt[:3])
    # integer source labels and text target ones were unioned into twice the classes, silently
    with pytest.raises(DataError, match=r"y \(0, 1.*and the target labels yt \('c0', 'c1'.*different types"):
        TrAdaBoost().fit(Xs, ys, Xt, np.array([f"c{v}" for v in yt]))
    # the same digits as text: shown as they are (0, 1 against '0', '1'), not alike
    with pytest.raises(DataError, match=r"y \(0, 1, 2\) and the target labels yt \('0', '1', '2'\) are of\s+different types"):
        TrAdaBoost().fit(Xs, ys, Xt, np.array([str(v) for v in yt]))
    with pytest.raises(DataError, match=r"AugmentedClassifier.fit: .*different types"):
        AugmentedClassifier().fit(Xs, ys, Xt, np.array([f"c{v}" for v in yt]))
    with pytest.raises(ConfigError, match="kernel='poly' is unknown"):
        TCA(kernel="poly").fit(Xs, Xt)
    with pytest.raises(ConfigError, match="takes no sample_weight"):
        KMMClassifier(KNeighborsClassifier()).fit(Xs, ys, Xt)


# -- TCA -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["primal", "linear"])
def test_tca_on_identical_domains_is_pca(kernel):
    """No shift: the MMD term vanishes and TCA's components are the principal components (linear kernel:
    the same scores as PCA; a wrong eigenproblem, e.g. A and B swapped, gives the trailing ones)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) * np.array([5, 3, 2, 1, 0.5, 0.2]) @ np.linalg.qr(rng.normal(size=(6, 6)))[0]
    tca = TCA(n_components=4, kernel=kernel).fit(X, X.copy())
    Z = tca.transform(X)
    P = PCA(4).fit_transform((X - X.mean(0)) / X.std(0))
    for j in range(4):
        assert abs(np.corrcoef(Z[:, j], P[:, j])[0, 1]) > 0.9999
    ratio = Z.std(0) / P.std(0)  # PCA scores up to one common factor (mu), in both forms
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)


def test_tca_nystroem_with_every_point_a_landmark_is_the_exact_solution():
    Xs, _, Xt, _ = blobs(3, n=150)
    exact = TCA(n_components=4, kernel="rbf").fit(Xs, Xt)
    full = TCA(n_components=4, kernel="rbf", landmarks=300).fit(Xs, Xt)
    assert exact.mode_ == "kernel" and full.mode_ == "features" and full.n_landmarks_ == 300
    np.testing.assert_allclose(full.transform(Xt), exact.transform(Xt), atol=1e-6 * np.abs(exact.transform(Xt)).max())


def test_tca_removes_the_mean_shift_direction():
    """A shift along one direction: TCA's leading component ignores it, PCA's does not."""
    rng = np.random.default_rng(4)
    Xs = rng.normal(size=(200, 3)) * [1.0, 2.0, 0.5]
    Xt = rng.normal(size=(200, 3)) * [1.0, 2.0, 0.5] + [6.0, 0, 0]
    Z = TCA(n_components=1, kernel="primal").fit(Xs, Xt).transform(np.vstack([Xs, Xt]))
    gap = abs(Z[:200].mean() - Z[200:].mean()) / Z.std()
    pca = PCA(1).fit_transform(np.vstack([Xs, Xt]))
    assert gap < 0.1 < abs(pca[:200].mean() - pca[200:].mean()) / pca.std()


def test_tca_mu_is_pans_reciprocal_as_documented():
    """docs/shallow.md: ``mu`` weighs the regulariser (Long et al.'s code); Pan et al.'s mu, on the MMD term
    (``(I + mu_Pan K L K)^-1 K H K``), gives the same components for ``mu_Pan = 1/(mu (1/n_s + 1/n_t))`` on the
    kernel as TCA scales it, and a larger ``mu`` aligns the domains less."""
    rng = np.random.default_rng(0)
    ns, nt = 60, 50
    Xs, Xt = rng.normal(size=(ns, 5)), rng.normal(size=(nt, 5)) * 1.5 + [3.0, 1.0, 0, 0, 0]
    n, e = ns + nt, np.r_[np.full(ns, 1 / ns), np.full(nt, -1 / nt)]
    H = np.eye(n) - 1.0 / n
    gaps = []
    for mu in (0.01, 1.0, 100.0):
        tca = TCA(n_components=2, kernel="linear", mu=mu).fit(Xs, Xt)
        X = (np.vstack([Xs, Xt]) - tca.mean_) / tca.scale_
        K = X @ X.T / tca.kscale_
        mu_pan = 1.0 / (mu * (1 / ns + 1 / nt))
        w, V = np.linalg.eig(np.linalg.solve(np.eye(n) + mu_pan * K @ np.outer(e, e) @ K, K @ H @ K))
        Z_pan = K @ V[:, np.argsort(-w.real)[:2]].real
        Z = tca.transform(np.vstack([Xs, Xt]))
        for j in range(2):
            assert abs(np.corrcoef(Z[:, j], Z_pan[:, j])[0, 1]) > 1 - 1e-8
        Z = Z / Z.std(0)
        gaps.append(float(np.linalg.norm(Z[:ns].mean(0) - Z[ns:].mean(0))))
    assert gaps[0] < gaps[1] < gaps[2], gaps


def test_tca_switches_to_landmarks_with_a_warning_and_stays_accurate(rotated_digits):
    Xs, ys, Xt, yt = rotated_digits
    exact = TCA(kernel="rbf").fit(Xs, Xt)
    with pytest.warns(QianyiWarning, match=r"Nystroem approximation on \d+ landmarks"):
        approx = TCA(kernel="rbf", max_kernel_bytes=8e6).fit(Xs, Xt)
    assert exact.mode_ == "kernel" and approx.mode_ == "features" and 100 <= approx.n_landmarks_ < 1000
    a = nn1(exact.transform(Xs), ys, exact.transform(Xt), yt)
    b = nn1(approx.transform(Xs), ys, approx.transform(Xt), yt)
    assert b >= a - 0.03
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit number of landmarks is obeyed silently
        assert TCA(kernel="rbf", landmarks=200).fit(Xs, Xt).n_landmarks_ == 200


@pytest.mark.parametrize("kernel", ["primal", "linear", "rbf"])
def test_tca_does_not_collapse_on_rotated_digits(rotated_digits, kernel):
    Xs, ys, Xt, yt = rotated_digits
    raw = nn1(*zscore_pooled(Xs, Xt)[:1], ys, zscore_pooled(Xs, Xt)[1], yt)
    tca = TCA(kernel=kernel).fit(Xs, Xt)
    assert nn1(tca.transform(Xs), ys, tca.transform(Xt), yt) >= 0.9 * raw


def test_jda_beats_tca_on_a_shifted_problem(rotated_digits):
    Xs, ys, Xt, yt = rotated_digits
    tca = TCA().fit(Xs, Xt)
    jda = JDA().fit(Xs, ys, Xt)
    assert jda.score(Xt, yt) >= nn1(tca.transform(Xs), ys, tca.transform(Xt), yt) + 0.05
    assert 1 <= jda.n_iter_ <= 10 and len(jda.pseudo_label_history_) == jda.n_iter_
    h = jda.pseudo_label_history_  # the class-conditional rounds run: labels move, then repeat (JDA as TCA passed)
    assert not np.array_equal(h[0], h[1]) and jda.n_iter_ < 10 and np.array_equal(h[-1], h[-2])
    assert jda.n_components_ == 64  # the paper's 100, capped by the 64 features of the primal form
    P = jda.predict_proba(Xt[:5])
    assert P.shape == (5, 10) and np.allclose(P.sum(1), 1)


def test_jda_mmd_matrix_is_the_reference_codes():
    """M = C e0 e0^T + sum_c e_c e_c^T, divided by its Frobenius norm (Long et al.'s JDA_core.m)."""
    from qianyi.shallow.tca import _Groups

    ys, yt = np.array([0, 0, 1, 2, 2, 2]), np.array([1, 1, 0, 2, 0])
    ns, nt, C = len(ys), len(yt), 3
    e = np.r_[np.full(ns, 1 / ns), np.full(nt, -1 / nt)]
    M = C * np.outer(e, e)
    for c in range(C):
        ec = np.r_[(ys == c) / (ys == c).sum(), -1.0 * (yt == c) / (yt == c).sum()]
        M += np.outer(ec, ec)
    M /= np.linalg.norm(M)
    g = _Groups(ns, nt, ys, yt, C)
    vectors = g.E[:, g.index]  # each e_a on every row
    np.testing.assert_allclose((vectors.T * (g.w / g.fro)) @ vectors, M, atol=1e-12)


def test_tca_and_jda_on_many_samples_stay_within_memory():
    """The primal form needs d x d matrices only; kernels past the budget go to landmarks; transform streams."""
    rng = np.random.default_rng(5)
    Xs, Xt = rng.normal(size=(30000, 5)), rng.normal(size=(30000, 5)) + 0.5
    t = TCA(n_components=3).fit(Xs, Xt)
    assert t.mode_ == "features" and t.transform(Xt).shape == (30000, 3)
    with pytest.warns(QianyiWarning, match="60000 x 60000"):
        k = TCA(kernel="rbf", n_components=3, landmarks=None, max_kernel_bytes=2e6).fit(Xs, Xt)
    assert k.n_landmarks_ <= 250


# -- CORAL, SA ---------------------------------------------------------------------------------------
def test_coral_aligns_second_moments():
    rng = np.random.default_rng(6)
    Xs = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 4))
    Xt = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 4)) + 3.0
    Ct = np.cov(Xt, rowvar=False)
    out = CORAL(reg=1e-9).fit(Xs, Xt).transform(Xs)
    assert np.linalg.norm(np.cov(Xs, rowvar=False) - Ct) > 0.5 * np.linalg.norm(Ct)
    np.testing.assert_allclose(np.cov(out, rowvar=False), Ct, atol=1e-6 * np.abs(Ct).max())
    # lambda = 1 (the paper's default): exactly C_T - lambda C_T^1/2 (C_S + lambda I)^-1 C_T^1/2
    c = CORAL().fit(Xs, Xt)
    s, U = np.linalg.eigh(Ct + np.eye(4))
    root = (U * np.sqrt(s)) @ U.T
    expected = root @ (np.eye(4) - np.linalg.inv(c.source_covariance_)) @ root
    np.testing.assert_allclose(np.cov(c.transform(Xs), rowvar=False), expected, rtol=1e-8, atol=1e-8)
    # target rows pass unchanged
    np.testing.assert_array_equal(c.transform(Xt, sample_domain=-np.ones(len(Xt))), Xt)


def test_subspace_alignment():
    rng = np.random.default_rng(2)
    D, k = 20, 3
    centers = np.array([[6, 0, 0], [-6, 0, 0], [0, 3, 0], [0, -3, 0.]])
    Es = np.linalg.qr(rng.normal(size=(D, k)))[0]
    A = rng.normal(size=(D, D))
    R = expm(0.8 * (A - A.T) / np.linalg.norm(A - A.T, 2))  # the target subspace is turned away from the source's

    def domain(n, M, offset):
        y = rng.integers(0, 4, n)
        Z = centers[y] + rng.normal(size=(n, k)) * [1, 1, 1.5]
        return Z @ Es.T @ M + 0.1 * rng.normal(size=(n, D)) + offset, y

    (Xs, ys), (Xt, yt) = domain(300, np.eye(D), 0.0), domain(300, R, 3.0)
    sa = SubspaceAlignment(k).fit(Xs, Xt)
    Ps, Pt = sa.source_basis_, sa.target_basis_
    np.testing.assert_allclose(Ps.T @ Ps, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(np.abs(Ps.T @ PCA(k).fit(Xs).components_.T), np.eye(k), atol=1e-6)
    np.testing.assert_allclose(sa.alignment_, Ps.T @ Pt)
    best = np.linalg.norm(Ps @ sa.alignment_ - Pt)  # M = Ps^T Pt minimises |Ps M - Pt|_F
    assert best < np.linalg.norm(Ps - Pt)
    assert all(best <= np.linalg.norm(Ps @ (sa.alignment_ + 0.05 * rng.normal(size=(k, k))) - Pt) for _ in range(20))
    Zs = sa.transform(Xs, sample_domain=np.ones(len(Xs)))
    np.testing.assert_allclose(Zs, (Xs - Xs.mean(0)) @ Ps @ Ps.T @ Pt, atol=1e-8)
    assert nn1(Xs, ys, Xt, yt) < 0.6
    assert nn1(Zs, ys, sa.transform(Xt), yt) > 0.95


def test_sa_more_features_than_samples_keeps_an_orthonormal_stable_basis():
    # 8 source and 12 target rows in 50-d: centred, the source has rank 7. Asking for 20 components
    # once gave an 8th source "direction" made of rounding noise (not orthogonal to the others; a
    # 1e-13 change of the input moved the aligned source by ~20%).
    rng = np.random.default_rng(5)
    Xs, Xt = rng.normal(size=(8, 50)), rng.normal(size=(12, 50))
    sa = SubspaceAlignment(20).fit(Xs, Xt)
    assert sa.n_components_ == 7
    for P in (sa.source_basis_, sa.target_basis_):
        np.testing.assert_allclose(P.T @ P, np.eye(7), atol=1e-10)
    z = sa.transform(Xs, sample_domain=np.ones(8))
    z2 = SubspaceAlignment(20).fit(Xs * (1 + 1e-13), Xt).transform(Xs, sample_domain=np.ones(8))
    assert np.abs(z - z2).max() < 1e-8 * np.abs(z).max()
    # repeated rows leave ~0 eigenvalues inside the top k: the basis stays orthonormal
    Xr = np.repeat(rng.normal(size=(3, 50)), [3, 3, 3], axis=0)
    P = SubspaceAlignment(5).fit(Xr, Xt).source_basis_
    np.testing.assert_allclose(P.T @ P, np.eye(P.shape[1]), atol=1e-10)


# -- KMM -----------------------------------------------------------------------------------------------
def test_kmm_weights_follow_the_density_ratio():
    rng = np.random.default_rng(7)
    xs = rng.normal(0.0, 1.0, 400)
    xt = rng.normal(1.0, 0.5, 300)
    kmm = KMM().fit(xs[:, None], xt[:, None])
    w = kmm.weights_
    ratio = norm.pdf(xs, 1.0, 0.5) / norm.pdf(xs, 0.0, 1.0)
    assert spearmanr(w, ratio).statistic > 0.8
    assert w[np.abs(xs - 1.0) < 0.5].mean() > 3 * w[xs < -1.0].mean()
    assert (w >= 0).all() and (w <= kmm.B).all() and abs(w.sum() - 400) <= 400 * kmm.eps_ + 1e-6
    # no shift: every weight near 1
    same = KMM().fit(xs[:, None], rng.normal(0.0, 1.0, 400)[:, None]).weights_
    assert abs(same.mean() - 1) < 0.1 and np.mean(np.abs(same - 1) < 0.5) > 0.9
    # the weighted source mean moves to the target's
    assert abs(np.average(xs, weights=w) - xt.mean()) < 0.15 < abs(xs.mean() - xt.mean())
    # the Nystroem path gives nearly the same weights
    with pytest.warns(QianyiWarning):
        approx = KMM(max_kernel_bytes=1e6).fit(xs[:, None], xt[:, None])
    assert np.corrcoef(approx.weights_, w)[0, 1] > 0.95


def test_kmm_eps_from_one_on_bounds_the_sum_above_only_and_an_uphill_check_is_no_convergence(monkeypatch):
    import qianyi.shallow.kmm as kmm_module

    rng = np.random.default_rng(7)
    xs, xt = rng.normal(0.0, 1.0, (200, 1)), rng.normal(1.0, 0.5, (150, 1))
    loose = KMM(eps=1.5).fit(xs, xt)  # Huang et al.'s slab |sum b - n| <= n eps: from eps = 1 on, sum b in [0, 2.5 n]
    assert loose.eps_ == 1.5 and (loose.weights_ >= 0).all() and loose.weights_.sum() <= 2.5 * 200 + 1e-6
    for bad in (-0.1, np.inf, np.nan, True):
        with pytest.raises(ConfigError, match="eps"):
            KMM(eps=bad).fit(xs, xt)
    # a check at which the objective went up (momentum overshot) is not convergence: the solver goes on
    real = kmm_module.project_box_slab
    calls = {"n": 0}

    def overshoot_once(v, upper, lo, hi):
        calls["n"] += 1
        b = real(v, upper, lo, hi)
        return real(b + 50.0 * (np.arange(len(b)) % 2), upper, lo, hi) if calls["n"] == 11 else b

    monkeypatch.setattr(kmm_module, "project_box_slab", overshoot_once)
    monkeypatch.setattr(kmm_module, "CHECK_EVERY", 10)
    fit = KMM(tol=1e-3).fit(xs, xt)
    assert fit.n_iter_ > 10
    monkeypatch.setattr(kmm_module, "project_box_slab", real)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # (tol 1e-12: a reference, run to max_iter)
        best = KMM(tol=1e-12, max_iter=5000).fit(xs, xt).objective_
    assert fit.objective_ <= best + 1e-3 * max(1.0, abs(best)) * 10


def test_kmm_classifier_uses_the_weights():
    rng = np.random.default_rng(8)
    xs = rng.normal(0.0, 1.5, (500, 1))
    ys = (np.sin(2 * xs[:, 0]) > 0).astype(int)  # a concept a linear model fits only locally
    xt = rng.normal(1.2, 0.3, (300, 1))
    yt = (np.sin(2 * xt[:, 0]) > 0).astype(int)
    clf = KMMClassifier(LogisticRegression(), KMM(gamma=4.0)).fit(xs, ys, xt)
    assert clf.weights_.shape == (500,) and clf.kmm_.gamma == 4.0
    assert clf.score(xt, yt) > LogisticRegression().fit(xs, ys).score(xt, yt) + 0.1
    assert clf.predict_proba(xt).shape == (300, 2)


# -- TrAdaBoost --------------------------------------------------------------------------------------
def _tradaboost_data(seed=9):
    rng = np.random.default_rng(seed)
    Xs = rng.normal(size=(200, 2))
    ys = (Xs[:, 0] + 0.3 * Xs[:, 1] > 0).astype(int)
    Xt = rng.normal(size=(40, 2))
    yt = (Xt[:, 0] - 0.8 * Xt[:, 1] > 0.3).astype(int)
    return Xs, ys, Xt, yt


def test_tradaboost_moves_weights_as_the_paper_says():
    Xs, ys, Xt, yt = _tradaboost_data()
    tb = TrAdaBoost(DecisionTreeClassifier(max_depth=1), n_estimators=1).fit(Xs, ys, Xt, yt)
    h = tb.estimators_[0]
    miss_s, miss_t = h.predict(Xs) != ys, h.predict(Xt) != yt
    assert miss_s.any() and (~miss_s).any() and miss_t.any() and (~miss_t).any()
    eps = miss_t.mean()  # uniform initial weights: the weighted target error is the error rate
    assert tb.estimator_errors_[0] == pytest.approx(eps)
    beta = 1 / (1 + math.sqrt(2 * math.log(200) / 1))
    assert tb.beta_ == pytest.approx(beta)
    w = tb.sample_weights_  # up to a common factor: 1 if right, beta (source) or 1/beta_t (target) if wrong
    ws, wt = w[:200], w[200:]
    base = ws[~miss_s][0]
    np.testing.assert_allclose(ws[~miss_s], base)
    np.testing.assert_allclose(ws[miss_s], base * beta)  # misclassified source samples lose weight
    np.testing.assert_allclose(wt[~miss_t], base)
    np.testing.assert_allclose(wt[miss_t], base * (1 - eps) / eps)  # misclassified target samples gain weight
    assert ws[miss_s].max() < base < wt[miss_t].min()


def test_tradaboost_votes_with_the_second_half_of_the_rounds():
    Xs, ys, Xt, yt = _tradaboost_data()
    tb = TrAdaBoost(n_estimators=9).fit(Xs, ys, Xt, yt)
    np.testing.assert_array_equal(tb.voters_, np.arange(4, 9))  # rounds ceil(9/2) = 5 .. 9
    X = np.random.default_rng(1).normal(size=(300, 2))
    # the paper's rule: 1 iff prod beta_t^-h_t(x) >= prod beta_t^-1/2 over the voting rounds
    betas = np.exp(-tb.estimator_weights_[tb.voters_])
    H = np.array([tb.estimators_[t].predict(X) for t in tb.voters_])
    rule = (np.prod(betas[:, None] ** -H, 0) >= np.prod(betas ** -0.5)).astype(int)
    np.testing.assert_array_equal(tb.predict(X), rule)
    assert np.allclose(tb.predict_proba(X).sum(1), 1)
    assert np.array_equal(tb.decision_function(X) >= 0, tb.predict(X) == 1)
    # the few target labels help: better on the target than a tree on the source alone
    rng = np.random.default_rng(3)
    Xte = rng.normal(size=(1000, 2))
    yte = (Xte[:, 0] - 0.8 * Xte[:, 1] > 0.3).astype(int)
    source_only = DecisionTreeClassifier(max_depth=2, random_state=0).fit(Xs, ys).score(Xte, yte)
    assert TrAdaBoost(n_estimators=20).fit(Xs, ys, Xt, yt).score(Xte, yte) > source_only + 0.05



def test_tradaboost_warns_when_its_tree_has_fewer_leaves_than_classes():
    # review (classes) finding 5: the default depth-2 tree (4 leaves) on 100 classes scored 3%, and the warning
    # only said "use a stronger base estimator"; LogisticRegression scored 100%
    rng = np.random.default_rng(0)
    k = 12
    y = np.repeat(np.arange(k), 6)
    mu = rng.normal(size=(k, 5)) * 4
    Xs, Xt = mu[y] + rng.normal(size=(len(y), 5)), mu[y] + rng.normal(size=(len(y), 5)) + 0.3
    with pytest.warns(QianyiWarning, match=r"the base estimator \(the default\), a decision tree with max_depth=2, "
                                           r"has at most 4 leaves, so each round predicts at most 4 of the 12 classes"):
        TrAdaBoost(n_estimators=3).fit(Xs, y, Xt[::3], y[::3])
    with pytest.warns(QianyiWarning, match=r"max_leaf_nodes=8, has at most 8 leaves.*max_depth=5\).*LogisticRegression"):
        TrAdaBoost(DecisionTreeClassifier(max_leaf_nodes=8), n_estimators=3).fit(Xs, y, Xt[::3], y[::3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        deep = TrAdaBoost(DecisionTreeClassifier(max_depth=5), n_estimators=3).fit(Xs, y, Xt[::3], y[::3])
        TrAdaBoost(n_estimators=3).fit(*_tradaboost_data())  # two classes: a depth-2 tree is enough
    assert deep.score(Xt, y) > 0.5


# -- feature augmentation ------------------------------------------------------------------------------
def test_feature_augmentation_shapes():
    X = np.arange(12.0).reshape(4, 3)
    fa = FeatureAugmentation().fit(X)
    out = fa.transform(X, sample_domain=[1, -1, 1, -1])
    assert out.shape == (4, 9)
    np.testing.assert_array_equal(out[0], np.r_[X[0], X[0], np.zeros(3)])
    np.testing.assert_array_equal(out[1], np.r_[X[1], np.zeros(3), X[1]])
    np.testing.assert_array_equal(fa.transform(X)[:, 3:6], 0)  # no domain given: target rows
    assert list(fa.get_feature_names_out())[:4] == ["shared__x0", "shared__x1", "shared__x2", "source__x0"]


def test_augmented_classifier_beats_source_only_and_target_only():
    """A shared concept on 45 features (needs many samples) and a small domain-specific part of opposite
    sign: source-only gets the specific part wrong, target-only (30 rows) cannot learn the shared part."""
    rng = np.random.default_rng(0)
    d = 50
    shared = np.r_[np.ones(45), np.zeros(5)]
    specific = np.r_[np.zeros(45), np.ones(5)]
    Xs, Xt, Xte = rng.normal(size=(1000, d)), rng.normal(size=(30, d)), rng.normal(size=(2000, d))
    ys, yt, yte = (Xs @ (shared + specific) > 0), (Xt @ (shared - specific) > 0), (Xte @ (shared - specific) > 0)
    source_only = LogisticRegression(max_iter=1000).fit(Xs, ys).score(Xte, yte)
    target_only = LogisticRegression(max_iter=1000).fit(Xt, yt).score(Xte, yte)
    aug = AugmentedClassifier().fit(Xs, ys, Xt, yt)
    assert aug.score(Xte, yte) > max(source_only, target_only) + 0.02
    assert aug.estimator_.coef_.shape == (1, 3 * d)


# -- AdaptedClassifier: an adapter and a classifier, the papers' protocol as one estimator --------------
def _shifted(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(3, 5)) * 3
    ys, yt = rng.integers(0, 3, n), rng.integers(0, 3, n)
    Xs = means[ys] + rng.normal(size=(n, 5))
    Xt = (means[yt] + rng.normal(size=(n, 5))) * np.array([1, 2, 3, 0.5, 1.5])
    return Xs, ys, Xt, yt


@pytest.mark.parametrize("adapter", [CORAL(), SubspaceAlignment(3), TCA(n_components=3)], ids=lambda a: type(a).__name__)
def test_adapted_classifier_is_the_papers_protocol_in_every_convention(adapter):
    Xs, ys, Xt, yt = _shifted()
    fitted = clone(adapter).fit(Xs, Xt)  # by hand: 1-NN on the adapted source, target rows mapped as target
    if isinstance(adapter, TCA):
        zs, zt = fitted.transform(Xs), fitted.transform(Xt)
    else:
        zs = fitted.transform(Xs, sample_domain=np.ones(len(Xs)))
        zt = fitted.transform(Xt, sample_domain=-np.ones(len(Xt)))
    by_hand = KNeighborsClassifier(1).fit(zs, ys).predict(zt)
    if isinstance(adapter, CORAL):
        np.testing.assert_array_equal(zt, Xt)  # CORAL tests on the raw target, as in the paper
    X, sd = np.vstack([Xs, Xt]), np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
    placeholders = np.r_[ys, np.zeros(len(Xt), int)]  # target labels a Pipeline would have trained on
    for model in (AdaptedClassifier(adapter).fit(Xs, ys, Xt=Xt),
                  AdaptedClassifier(adapter).fit(X, placeholders, sample_domain=sd),
                  AdaptedClassifier(adapter, unlabelled=-1).fit(X, np.r_[ys, -np.ones(len(Xt), int)])):
        np.testing.assert_array_equal(model.predict(Xt), by_hand)
    plain = make_pipeline(clone(adapter), KNeighborsClassifier(1)).fit(Xs, ys)  # no target seen: adapts to itself
    assert (by_hand == yt).mean() > (plain.predict(Xt) == yt).mean()


def test_adapted_classifier_is_a_scikit_learn_classifier():
    from sklearn.svm import SVC

    for est in (AdaptedClassifier(CORAL()), AdaptedClassifier()):  # default adapter: CORAL
        results = check_estimator(est, on_fail=None)
        assert [r["check_name"] for r in results if r["status"] == "failed"] == []
    assert not hasattr(AdaptedClassifier(CORAL(), SVC()), "predict_proba")
    assert hasattr(AdaptedClassifier(CORAL(), SVC(probability=True)), "predict_proba")
    Xs, ys, Xt, _ = _shifted()
    assert np.array_equal(AdaptedClassifier().fit(Xs, ys, Xt=Xt).predict(Xt),
                          AdaptedClassifier(CORAL()).fit(Xs, ys, Xt=Xt).predict(Xt))
    with pytest.raises(ConfigError, match="adapter must be an unsupervised adapter"):
        AdaptedClassifier(StandardScaler()).fit(Xs, ys)



def test_adapted_classifier_forwards_decision_function_so_ranking_scorers_work():
    """AdaptedClassifier(CORAL(), SVC()), README's example, had neither decision_function nor predict_proba:
    roc_auc and average_precision could not score it."""
    from sklearn.metrics import get_scorer
    from sklearn.svm import SVC

    Xs, ys, Xt, yt = _shifted()
    bs, bt = (ys == 0).astype(int), (yt == 0).astype(int)
    c = AdaptedClassifier(CORAL(), SVC()).fit(Xs, bs, Xt=Xt)
    zt = c.adapter_.transform(Xt, sample_domain=-np.ones(len(Xt)))  # mapped as target rows, as predict does
    np.testing.assert_array_equal(c.decision_function(Xt), c.estimator_.decision_function(zt))
    assert get_scorer("roc_auc")(c, Xt, bt) > 0.8
    assert not hasattr(AdaptedClassifier(CORAL()), "decision_function")  # 1-NN, the default, has none
    assert not hasattr(AdaptedClassifier(CORAL()).fit(Xs, bs, Xt=Xt), "decision_function")

def test_tradaboost_takes_a_random_state_instance_and_names_one_class_a_data_error():
    Xs, ys, Xt, yt = _shifted(seed=3, n=80)
    a = TrAdaBoost(n_estimators=3, random_state=np.random.RandomState(0)).fit(Xs, ys, Xt[:20], yt[:20])
    b = TrAdaBoost(n_estimators=3, random_state=np.random.RandomState(0)).fit(Xs, ys, Xt[:20], yt[:20])
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    with pytest.raises(DataError, match="only 1 class"):
        TrAdaBoost().fit(Xs, np.zeros(len(Xs), int), Xt[:20], np.zeros(20, int))


def test_tca_components_without_variance_are_zero_not_blown_up():
    # the pooled centred kernel of N rows has rank <= N - 1: asking for N components (or more) gives one
    # with eigenvalue ~1e-15, which the lambda^(-1/4) scaling once made the largest column (~12 against ~0.75)
    rng = np.random.default_rng(1)
    Xs, Xt = rng.normal(size=(30, 6)), rng.normal(size=(25, 6)) + 0.5
    tca = TCA(kernel="rbf", n_components=100).fit(Xs, Xt)
    Z = tca.transform(np.vstack([Xs, Xt]))
    assert tca.n_components_ == 55 and tca.eigenvalues_[-1] < 1e-10
    assert np.abs(Z[:, -1]).max() == 0.0
    assert np.abs(Z).max(0)[-1] <= np.abs(Z).max(0)[0]


def test_target_frames_with_other_columns_and_bad_settings_are_named():
    import pandas as pd

    from qianyi import DomainAdapter
    from qianyi.errors import ConfigError, DataError
    from qianyi.shallow import CORAL, JDA, TCA, AdaptedClassifier, FeatureAugmentation

    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(30, 3)), rng.normal(size=(20, 3)) * [1, 10, 100]
    ds, dt = pd.DataFrame(A, columns=list("abc")), pd.DataFrame(B, columns=list("abc"))
    swapped = dt[["c", "b", "a"]]
    # was accepted: CORAL's target covariance came out reversed (the features paired wrongly)
    for est in (CORAL(), TCA(n_components=2)):
        with pytest.raises(DataError, match=r"another order.*Xt\[X.columns\]"):
            est.fit(ds, Xt=swapped)
    with pytest.raises(DataError, match="are not the source X's"):
        CORAL().fit(ds, Xt=dt.rename(columns={"a": "z"}))
    with pytest.raises(DataError, match="another order"):
        DomainAdapter("source-only", epochs=1).fit(ds, np.arange(30) % 2, Xt=swapped)
    np.testing.assert_allclose(np.diag(CORAL().fit(ds, Xt=dt).target_covariance_), np.diag(CORAL().fit(A, Xt=B).target_covariance_))
    # adapters that are not fitted as fit(Xs, Xt=Xt): a ConfigError, not a TypeError from inside fit
    for adapter in (JDA(), FeatureAugmentation(), StandardScaler(), make_pipeline(StandardScaler(), CORAL())):
        with pytest.raises(ConfigError, match="unsupervised adapter"):
            AdaptedClassifier(adapter).fit(A, np.arange(30) % 2, Xt=B)
    with pytest.raises(DataError, match="finite"):  # NaN was read as a target row
        FeatureAugmentation().fit(A).transform(A[:4], sample_domain=[1, np.nan, -1, 1])
    with pytest.raises(ConfigError, match="random_state=1.5"):  # was numpy's SeedSequence TypeError
        TCA(kernel="rbf", random_state=1.5).fit(A, Xt=B)


def test_a_forgotten_unlabelled_marker_is_warned_about():
    """y with -1 rows (scikit-learn's unlabelled mark) and no target given: the rows were fitted as a class
    '-1' and every target row was predicted -1, silently. Now a warning says to pass unlabelled=-1; with it,
    the same rows are the target and no warning is given."""
    from qianyi.errors import QianyiWarning
    from qianyi.train.estimator import DomainAdapter

    rng = np.random.default_rng(0)
    Xs, ys = rng.normal(size=(60, 4)), np.arange(60) % 2
    Xt = rng.normal(size=(40, 4)) + 1
    X, y = np.concatenate([Xs, Xt]), np.concatenate([ys, -np.ones(40, int)])
    for est in (JDA(n_components=2, n_iter=1), KMMClassifier(), AdaptedClassifier(CORAL()),
                DomainAdapter("source-only", epochs=1, steps_per_epoch=1)):
        with pytest.warns(QianyiWarning, match="pass unlabelled=-1"):
            clone(est).fit(X, y)
        with warnings.catch_warnings():  # (KMM's weights on this toy shift concentrate: that warning may come)
            warnings.filterwarnings("error", message=".*unlabelled", category=QianyiWarning)
            clone(est).set_params(unlabelled=-1).fit(X, y)
            clone(est).fit(X, np.where(y == 0, -1, 1))  # -1/+1 binary labels: not a mark, nothing said


def test_coral_and_subspace_alignment_name_square_matrices_too_big_for_memory(monkeypatch):
    """64-px RGB images as vectors: CORAL's 12,288 x 12,288 covariances ended in numpy's MemoryError."""
    from qianyi.errors import DataError
    from qianyi.shallow import CORAL, SubspaceAlignment

    monkeypatch.setenv("QIANYI_MAX_BYTES", "300000")  # three float64 100 x 100 matrices fit, three 120 x 120 do not
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(50, 120)), rng.normal(size=(50, 120))
    with pytest.raises(DataError, match=r"CORAL aligns two d x d feature covariances.*120 x 120.*QIANYI_MAX_BYTES"):
        CORAL().fit(Xs, Xt=Xt)
    assert CORAL().fit(Xs[:, :100], Xt=Xt[:, :100]).transform_matrix_.shape == (100, 100)
    sa = SubspaceAlignment(n_components=5).fit(Xs, Xt=Xt)  # 50 samples: Gram matrices of 50 x 50 fit
    assert sa.n_components_ == 5
    with pytest.raises(DataError, match=r"SubspaceAlignment takes .*150 x 150"):  # 200 samples: the 150-d scatter
        SubspaceAlignment(n_components=5).fit(rng.normal(size=(200, 150)), Xt=rng.normal(size=(200, 150)))


def test_kmm_says_when_its_weights_rest_on_a_few_source_rows():
    """fashion -> fashion+invert: 27 effective samples of 31,500 and a source accuracy below chance, silently."""
    from qianyi.errors import QianyiWarning
    from qianyi.shallow import KMM

    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(200, 3))
    with pytest.warns(QianyiWarning, match=r"weights concentrate on about \d+ effective source samples of 200"):
        KMM().fit(Xs, Xt=rng.normal(size=(100, 3)) + 4.0)  # barely overlapping supports
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        w = KMM().fit(Xs, Xt=rng.normal(size=(100, 3)) + 0.3).weights_  # overlapping: nothing said
    assert w.sum() ** 2 / (w * w).sum() > 10
    with warnings.catch_warnings():  # nine rows: every weight 1 is nine effective samples, not a concentration
        warnings.simplefilter("error", QianyiWarning)
        KMM().fit(Xs[:9], Xt=Xs[:9])


def test_a_target_in_ys_place_is_read_as_the_target_or_refused_never_ignored():
    """``fit(Xs, T)`` took T as the target only when 2-D dense: images (n, h, w), a sparse matrix or a 1-D
    vector went to ``y``, which the adapters ignore, so each adapted the source to itself silently."""
    import scipy.sparse

    Xs, ys, Xt, _ = blobs(5, n=60)
    for est in (TCA(n_components=3), CORAL(), SubspaceAlignment(3), KMM(max_iter=50)):
        with pytest.raises(DataError, match=r"input Xt: Found array with dim 3"):
            clone(est).fit(Xs, Xt.reshape(len(Xt), 2, 3))
        with pytest.raises(DataError, match=r"input Xt: Sparse data"):
            clone(est).fit(Xs, scipy.sparse.csr_matrix(Xt))
        with pytest.raises(DataError, match=r"40 entries for 60 rows of X.*did you mean Xt="):
            clone(est).fit(Xs, Xt[:40, 0])
        with pytest.raises(DataError, match=r"input X: Sparse data"):  # was scikit-learn's TypeError
            clone(est).fit(scipy.sparse.csr_matrix(Xs), Xt=Xt)
        # one label per row, as a Pipeline passes them, is ignored: the fit is that of no target at all
        with_labels, alone = clone(est).fit(Xs, ys), clone(est).fit(Xs)
        if isinstance(est, KMM):
            np.testing.assert_allclose(with_labels.weights_, alone.weights_)
            continue
        np.testing.assert_allclose(with_labels.transform(Xt), alone.transform(Xt))
        with pytest.raises(DataError, match=r"input X: Sparse data"):
            alone.transform(scipy.sparse.csr_matrix(Xt))
    sa = SubspaceAlignment(3)
    np.testing.assert_allclose(sa.fit_transform(Xs, Xt), sa.transform(Xs, sample_domain=np.ones(len(Xs))))


def test_nan_labels_of_target_rows_are_accepted_and_source_nan_is_named():
    """A float y with NaN on the target rows (pandas' missing label) was refused before the split, with advice
    to drop those rows (the target); ``unlabelled=np.nan`` could not match (NaN != NaN)."""
    Xs, ys, Xt, _ = blobs(6, n=80)
    X, sd = np.vstack([Xs, Xt]), np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
    y_nan = np.r_[ys.astype(float), np.full(len(Xt), np.nan)]
    y_marked = np.r_[ys, -np.ones(len(Xt), int)]
    for est in (JDA(n_components=3, n_iter=2), KMMClassifier(), AdaptedClassifier(CORAL())):
        by_marker = clone(est).set_params(unlabelled=-1).fit(X, y_marked).predict(Xt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QianyiWarning)  # KMM's concentration notice on this toy shift
            np.testing.assert_array_equal(clone(est).fit(X, y_nan, sample_domain=sd).predict(Xt), by_marker)
            np.testing.assert_array_equal(clone(est).set_params(unlabelled=np.nan).fit(X, y_nan).predict(Xt),
                                          by_marker)
        bad = y_nan.copy()
        bad[3] = np.nan  # a source row without a label: an error naming the source labels
        with pytest.raises(DataError, match=r"source labels .*contain NaN"):
            clone(est).fit(X, bad, sample_domain=sd)
        with pytest.raises(DataError, match=r"source labels .*contain NaN"):
            clone(est).fit(Xs, np.where(np.arange(len(ys)) == 3, np.nan, ys), Xt=Xt)
    with pytest.raises(DataError, match=r"target labels contain NaN"):  # TrAdaBoost learns from target labels
        TrAdaBoost(n_estimators=2).fit(X, y_nan, sample_domain=sd)


def test_jda_offers_predict_proba_and_decision_function_only_as_its_base_estimator_does():
    """JDA(estimator=SVC()) had predict_proba (raising AttributeError inside) and no decision_function, so
    scikit-learn's roc_auc scorer picked predict_proba and crashed; KMMClassifier and AdaptedClassifier
    already forwarded them with available_if."""
    from sklearn.metrics import get_scorer, make_scorer, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    Xs, ys, Xt, yt = _shifted()
    bs, bt = (ys == 0).astype(int), (yt == 0).astype(int)
    assert not hasattr(JDA(estimator=SVC()), "predict_proba")
    assert hasattr(JDA(estimator=SVC()), "decision_function")
    assert hasattr(JDA(), "predict_proba") and not hasattr(JDA(), "decision_function")  # 1-NN: probabilities only
    j = JDA(n_components=3, n_iter=2, estimator=SVC()).fit(Xs, bs, Xt=Xt)
    assert not hasattr(j, "predict_proba")
    np.testing.assert_array_equal(j.decision_function(Xt), j.estimator_.decision_function(j._features(j.transform(Xt))))
    assert np.array_equal(j.decision_function(Xt) > 0, j.predict(Xt) == 1)
    assert get_scorer("roc_auc")(j, Xt, bt) > 0.8
    assert hasattr(JDA(estimator=LogisticRegression()).fit(Xs, bs, Xt=Xt), "decision_function")
    # the marker convention in cross-validation: a ranking scorer on the held-out source rows only (-1 = target)
    def source_auc(y_true, y_score):
        keep = y_true != -1
        return roc_auc_score(y_true[keep], y_score[keep])

    X, y = np.vstack([Xs, Xt]), np.r_[bs, -np.ones(len(Xt), int)]
    scores = cross_val_score(JDA(n_components=3, n_iter=2, estimator=SVC(), unlabelled=-1), X, y,
                             cv=StratifiedKFold(3, shuffle=True, random_state=0), error_score="raise",
                             scoring=make_scorer(source_auc, response_method="decision_function"))
    assert np.isfinite(scores).all() and (scores > 0.8).all()
    with config_context(enable_metadata_routing=True):  # routed sample_domain: roc_auc as it comes
        sd = np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
        scores = cross_val_score(JDA(n_components=3, n_iter=2, estimator=SVC()).set_fit_request(sample_domain=True),
                                 X, np.r_[bs, bt], scoring="roc_auc", params={"sample_domain": sd},
                                 cv=StratifiedKFold(3, shuffle=True, random_state=0), error_score="raise")
    assert np.isfinite(scores).all()


#: TrAdaBoost(DecisionTreeClassifier(max_depth=3, max_features=1), n_estimators=4, random_state=0) on _shifted(seed=3, n=80),
#: predictions on Xt by the code before the per-round seeds were taken mod 2**32 (commit 71c30da): they must not move.
PINNED_TRADABOOST_SEED0 = [0, 0, 1, 1, 1, 1, 0, 1, 2, 0, 2, 0, 0, 2, 0, 2, 0, 1, 2, 2, 1, 0, 0, 2, 0, 0, 2, 2, 2, 0, 2, 1,
                           1, 2, 1, 2, 0, 2, 2, 1, 1, 1, 1, 2, 2, 0, 2, 0, 1, 2, 1, 2, 0, 0, 1, 1, 0, 2, 0, 2, 2, 2, 0, 0,
                           2, 0, 2, 2, 2, 1, 0, 2, 1, 1, 0, 0, 0, 2, 2, 1]


def test_tradaboost_seeds_each_round_within_numpys_range_and_keeps_the_seeds_of_ordinary_ints():
    """TrAdaBoost(random_state=2**32 - 1) seeded round 2 with 2**32, out of the range scikit-learn accepts; round t
    of an int seed s is seeded (s + t) mod 2**32, so the seeds in use (0, 1, 42, ...) give the same fits."""
    Xs, ys, Xt, yt = _shifted(seed=3, n=80)
    tree = DecisionTreeClassifier(max_depth=3, max_features=1)  # random splits: the seed matters
    tb = TrAdaBoost(tree, n_estimators=4, random_state=0).fit(Xs, ys, Xt[:20], yt[:20])
    assert [h.random_state for h in tb.estimators_] == [0, 1, 2, 3]
    by_hand = [clone(tree).set_params(random_state=t) for t in range(4)]  # the seeds before the fix
    assert [h.get_params() for h in tb.estimators_] == [h.get_params() for h in by_hand]
    np.testing.assert_array_equal(tb.predict(Xt), PINNED_TRADABOOST_SEED0)
    top = TrAdaBoost(tree, n_estimators=3, random_state=2 ** 32 - 1).fit(Xs, ys, Xt[:20], yt[:20])
    assert [h.random_state for h in top.estimators_] == [2 ** 32 - 1, 0, 1]
    for bad in (-1, 2 ** 32):
        with pytest.raises(ConfigError, match=rf"random_state={bad}"):
            TrAdaBoost(n_estimators=2, random_state=bad).fit(Xs, ys, Xt[:20], yt[:20])


def test_a_marker_that_marks_no_row_is_refused_with_what_to_do():
    """unlabelled= set and no row of y marked: the shallow classifiers refuse (DomainAdapter adapts to the source
    itself: docs/shallow.md); the message names the marker and says how to give target rows."""
    Xs, ys, _, _ = _shifted()
    for est in (JDA(n_components=3, n_iter=2, unlabelled=-1), KMMClassifier(unlabelled=-1),
                AdaptedClassifier(unlabelled=-1)):
        with pytest.raises(DataError, match=r"no row of y is marked unlabelled \(-1\).*mark the target rows"):
            est.fit(Xs, ys)


def test_a_search_with_routed_sample_domain_can_score_without_target_labels():
    """docs/shallow.md: with routed sample_domain the default scorer reads the labels the held-out target rows
    carry; a scorer on the held-out source rows (sample_domain routed to it too) and a splitter that does not
    read y give the same scores whatever the target rows' labels are."""
    from sklearn.metrics import accuracy_score, make_scorer
    from sklearn.model_selection import KFold

    def source_accuracy(y_true, y_pred, sample_domain):
        src = np.asarray(sample_domain) > 0
        return accuracy_score(y_true[src], y_pred[src])

    Xs, ys, Xt, yt = blobs(0, n=90, d=5)
    X, sd = np.vstack([Xs, Xt]), np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
    labellings = (np.r_[ys, yt], np.r_[ys, np.random.default_rng(1).integers(0, 3, len(Xt))],
                  np.r_[ys, -np.ones(len(Xt), int)])

    def scores(y, **kw):
        search = GridSearchCV(AdaptedClassifier(TCA()).set_fit_request(sample_domain=True),
                              {"adapter__n_components": [1, 3]}, cv=KFold(3, shuffle=True, random_state=0),
                              error_score="raise", **kw)
        return search.fit(X, y, sample_domain=sd).cv_results_["mean_test_score"]

    with config_context(enable_metadata_routing=True):
        scorer = make_scorer(source_accuracy).set_score_request(sample_domain=True)
        by_source = [scores(y, scoring=scorer) for y in labellings]
        by_default = [scores(y) for y in labellings]
    for s in by_source[1:]:
        np.testing.assert_array_equal(s, by_source[0])
    assert not np.array_equal(by_default[0], by_default[1]) and not np.array_equal(by_default[0], by_default[2])

"""Distances for measurement: known cases and brute force (float64, CPU)."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from qianyi.distances import GaussianKernel, domain_classifier, mk_mmd2, mmd2, mmd_test, proxy_a_distance
from qianyi.distances.adistance import MAX_COPIES
from qianyi.distances.mmd import median_sq_dist
from qianyi.distances.permutation import _statistics
from qianyi.distances.wasserstein import MissingDependencyError, available, feasible_plan, wasserstein
from qianyi.errors import ConfigError, DataError, QianyiWarning, UnknownNameError
from qianyi.measure import distance, distances


def gauss(n, d=5, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_mmd_of_identical_sets_is_zero_and_grows_with_the_shift():
    x = gauss(300)
    assert float(mk_mmd2(x, x, estimator="biased")) == pytest.approx(0.0, abs=1e-12)
    assert abs(distance(x, gauss(300, seed=1), "mk-mmd")) < 0.01  # same distribution: ~0 (unbiased)
    for metric in ("mk-mmd", "mmd", "coral", "a-distance"):
        values = [distance(x, gauss(300, seed=1, shift=s) * (1 + s if metric == "coral" else 1), metric)
                  for s in (0.0, 0.5, 1.0, 2.0)]
        assert all(a < b for a, b in zip(values, values[1:])), (metric, values)


def test_single_kernel_unbiased_mmd_matches_a_double_loop():
    x, y = gauss(9, 3), gauss(8, 3, 0.4, seed=2)
    z = np.concatenate([x, y])
    d2 = [((a - b) ** 2).sum() for i, a in enumerate(z) for b in z[i + 1:]]
    s2 = sorted(d2)[(len(d2) - 1) // 2]  # median heuristic (lower middle, as torch)
    k = lambda a, b: np.exp(-((a - b) ** 2).sum() / (2 * s2))  # noqa: E731
    m, n = len(x), len(y)
    want = (sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
            + sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
            - 2 * sum(k(a, b) for a in x for b in y) / (m * n))
    assert distance(x, y, "mmd") == pytest.approx(want, rel=1e-9)


def test_linear_time_mk_mmd_is_within_noise_of_the_quadratic_one():
    x, y = gauss(3000, 4), gauss(3000, 4, 0.3, seed=5)
    quad = float(mk_mmd2(x, y))
    rng = np.random.default_rng(0)
    lin = [float(mk_mmd2(x[rng.permutation(3000)], y[rng.permutation(3000)], estimator="linear")) for _ in range(8)]
    assert quad > 0.01 and abs(np.mean(lin) - quad) < 3 * np.std(lin) / np.sqrt(8) + 0.003


def test_a_distance_is_near_0_for_one_distribution_and_2_for_disjoint_ones():
    x = gauss(600, 4)
    assert proxy_a_distance(x, gauss(600, 4, seed=1)) < 0.25
    assert proxy_a_distance(x, gauss(600, 4, shift=8.0, seed=1)) == 2.0
    res = domain_classifier(torch.tensor(x), gauss(400, 4, seed=3), max_samples=300)
    assert res.n_train == res.n_test == 300  # 150 + 150 each, balanced
    with pytest.raises(DataError, match="features"):
        proxy_a_distance(x, gauss(10, 3))


def test_a_distance_keeps_copies_of_a_row_on_one_side_of_its_split():
    # duplicated rows fell on both sides: a 200-d linear classifier memorised them and two i.i.d. samples, every
    # row twice, measured 0.61 (three times: 0.84) where the samples themselves give about 0.01
    rng = np.random.default_rng(0)
    twice, thrice, most = [], [], []
    for s in range(4):
        x, y = rng.normal(size=(300, 200)), rng.normal(size=(300, 200))
        twice.append(proxy_a_distance(np.r_[x, x], np.r_[y, y], seed=s))
        thrice.append(proxy_a_distance(np.repeat(x, 3, 0), np.repeat(y, 3, 0), seed=s))
        # MAX_COPIES copies are still copies, kept on one side (as common values they measured 0.60)
        most.append(proxy_a_distance(np.repeat(x, MAX_COPIES, 0), np.repeat(y, MAX_COPIES, 0), seed=s))
    assert np.mean(twice) < 0.15 and np.mean(thrice) < 0.15 and np.mean(most) < 0.15, (twice, thrice, most)
    res = domain_classifier(np.r_[x, x], np.r_[y, y])
    assert res.n_test % 2 == 0 and res.n_train + res.n_test <= 1200  # equal numbers per domain on each side
    assert proxy_a_distance(x, x) == 0.0  # copies across the samples too: the same rows are indistinguishable
    # values common to many rows are not copies: split at random (grouped, the held-out side held values the
    # classifier never saw, and binary or one-hot data measured too low a distance)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert proxy_a_distance(np.zeros((40, 3)), np.ones((40, 3))) == 2.0
    errs = []
    for s in range(5):  # three binary features, one shifted (P(1) 0.5 vs 0.8): the Bayes error is 0.35
        r = np.random.default_rng(10 + s)
        a, b = (r.random((1000, 3)) < 0.5).astype(float), (r.random((1000, 3)) < 0.5).astype(float)
        b[:, 0] = r.random(1000) < 0.8
        errs.append(domain_classifier(a, b, seed=s).error)
    assert abs(np.mean(errs) - 0.35) < 0.03, errs  # grouped: 0.44


def test_permutation_statistics_equal_mmd_on_every_relabelling():
    x, y = gauss(7, 2), gauss(5, 2, 0.5, seed=1)
    z = torch.tensor(np.concatenate([x, y]))
    kern = GaussianKernel(bandwidth=1.3, multipliers=(0.5, 1.0, 2.0))
    K = kern.matrix(z, z, kern.sigmas2(z, z))
    rng = np.random.default_rng(0)
    members = np.zeros((6, 12))
    for r in members:
        r[rng.permutation(12)[:7]] = 1
    for est in ("biased", "unbiased"):
        got = _statistics(K, torch.tensor(members), est)
        want = [float(mmd2(z[r == 1], z[r == 0], kern, est)) for r in members]
        assert got.numpy() == pytest.approx(want, rel=1e-10)


def test_permutation_test_detects_a_shift_and_is_calibrated_under_the_null():
    res = mmd_test(gauss(80, 3), gauss(80, 3, 0.6, seed=1), permutations=199)
    assert res.p_value == pytest.approx(1 / 200) and res.mmd2 == pytest.approx(distance(gauss(80, 3), gauss(80, 3, 0.6, seed=1)))
    p = [mmd_test(gauss(25, 2, seed=2 * i), gauss(25, 2, seed=2 * i + 1), permutations=99, seed=i).p_value
         for i in range(40)]
    assert 0.0 < np.mean(np.array(p) < 0.1) <= 0.25 and 0.35 < np.mean(p) < 0.65
    with pytest.raises(DataError, match="linear"):
        mmd_test(gauss(10), gauss(10), estimator="linear")


def test_distances_share_one_subsample_and_reject_unknown_names():
    x, y = gauss(500, 3), gauss(400, 3, 1.0, seed=1)
    d = distances(torch.tensor(x), y, ["mk-mmd", "linear-mmd", "coral"], max_samples=200)
    assert set(d) == {"mk-mmd", "linear-mmd", "coral"} and all(isinstance(v, float) for v in d.values())
    assert d == distances(x, y, ["mk-mmd", "linear-mmd", "coral"], max_samples=200)  # seeded
    with pytest.raises(UnknownNameError, match="available"):
        distances(x, y, ["kl"])


@pytest.mark.skipif(not available(), reason="POT (pip install pot) is not installed")
def test_wasserstein_of_a_translation_is_its_length():
    x = gauss(150, 4)
    assert wasserstein(x, x + 1.0) == pytest.approx(2.0, rel=1e-6)  # |(1,1,1,1)|
    for p in (1, 3):  # for every p (p = 1 transported squared distances once: 4.0, and 36.0 for x + 3)
        assert wasserstein(x, x + 1.0, p=p) == pytest.approx(2.0, rel=1e-6), p
        assert wasserstein(x, x + 3.0, p=p) == pytest.approx(6.0, rel=1e-6), p
    assert wasserstein(x, x) == pytest.approx(0.0, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)  # converged: no "did not converge"
        assert 2.0 < wasserstein(x, x + 1.0, reg=0.01) < 2.01  # entropic blur: slightly above


@pytest.mark.skipif(not available(), reason="POT (pip install pot) is not installed")
def test_sinkhorn_lies_above_the_exact_distance_and_says_when_it_did_not_converge():
    x = np.random.default_rng(0).normal(size=(20, 3))
    exact = wasserstein(x, x + 1.0)
    with warnings.catch_warnings():
        # the docstring's example: an absolute stopping threshold (1e-7) called 1.786801 after 5,000 iterations
        # "not converged" (1.786810 after 50,000)
        warnings.simplefilter("error", QianyiWarning)
        values = [wasserstein(x, x + 1.0, reg=r) for r in (0.01, 0.05, 0.5)]
    assert exact == pytest.approx(3 ** 0.5) and round(values[1], 2) == 1.79 and round(values[2], 2) == 2.36
    with pytest.warns(QianyiWarning, match="did not converge in 5,000 iterations at reg=0.001.*larger reg"):
        tiny = wasserstein(x, x + 1.0, reg=0.001)
    assert exact < tiny < values[0] < values[1] < values[2]  # a transport plan's cost: never below the exact


def test_a_rounded_plan_has_the_exact_marginals():
    rng = np.random.default_rng(3)
    plan = rng.random((7, 5)) * (rng.random((7, 5)) > 0.3)
    a, b = np.full(7, 1 / 7), np.full(5, 1 / 5)
    f = feasible_plan(plan / plan.sum() * 0.97, a, b)
    assert f.min() >= 0 and np.allclose(f.sum(1), a, atol=1e-15) and np.allclose(f.sum(0), b, atol=1e-15)


@pytest.mark.skipif(not available(), reason="POT (pip install pot) is not installed")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_wasserstein_refuses_non_finite_values_by_name(bad):
    # POT took NaN for an infeasible problem and returned 0: the value said "identical"
    x = gauss(100, 4, seed=1)
    xn = x.copy()
    xn[3, 1] = bad
    with pytest.raises(DataError, match="sample x holds NaN or infinite values .first in row 3"):
        wasserstein(xn, x)
    with pytest.raises(DataError, match="sample y holds NaN"):
        wasserstein(x, torch.tensor(xn), reg=0.1)


def test_wasserstein_without_pot_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)  # makes `import ot` fail
    with pytest.raises(MissingDependencyError, match="pip install pot"):
        wasserstein(gauss(5), gauss(5))


def test_measurement_refuses_non_finite_features_and_is_exact_far_from_the_origin():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16)).astype(np.float32) * 0.1
    b = a[::-1].copy() + np.float32(0.05) * (np.arange(16) < 4)  # a real shift on four coordinates
    bad = a.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="sample x holds NaN"):
        distances(bad, b, ["mk-mmd"])
    with pytest.raises(DataError, match="sample y holds NaN"):
        mmd_test(a, bad, permutations=9)  # it used to give NaN the strongest p-value, 1 / (1 + B)
    with pytest.raises(DataError, match="sample x is empty"):
        distances(a[:0], b, ["mk-mmd"])
    exact = distances(a.astype(np.float64), b.astype(np.float64), ["mk-mmd", "coral"])
    far = distances(a + 300, b + 300, ["mk-mmd", "coral"])  # float32, features far from the origin
    assert far["mk-mmd"] == pytest.approx(exact["mk-mmd"], rel=1e-3)
    assert far["coral"] == pytest.approx(exact["coral"], rel=1e-3)
    t64 = mmd_test(a.astype(np.float64), b.astype(np.float64), permutations=19).mmd2
    assert mmd_test(torch.as_tensor(a + 300), torch.as_tensor(b + 300), permutations=19).mmd2 == pytest.approx(t64, rel=1e-3)


def test_median_heuristic_keeps_the_data_scale_when_most_pairs_are_duplicates():
    # 80% all-zero rows (dead ReLUs, empty bag-of-words) make the median pair distance 0; falling back to
    # sigma^2 = 1 on data of scale 100 left MK-MMD blind to any shift (-0.0016 at shifts 0, 100, 1000)
    rng = np.random.default_rng(0)

    def sample(shift):
        z = np.zeros((200, 8))
        z[:40] = 100 * rng.normal(size=(40, 8)) + shift
        return torch.tensor(z)

    x = sample(0.0)
    assert float(median_sq_dist(x, sample(0.0))) > 1e3
    values = [float(mk_mmd2(x, sample(s))) for s in (0.0, 100.0, 1000.0)]
    assert values[0] < values[1] < values[2]
    same = torch.ones(5, 3)
    assert float(median_sq_dist(same, same)) == 1.0  # every point the same: nothing to measure a scale on


def test_kernel_settings_are_checked():
    with pytest.raises(DataError, match="bandwidth"):
        GaussianKernel(bandwidth=0.0)
    with pytest.raises(DataError, match="multipliers"):
        GaussianKernel(multipliers=(1.0, -2.0))


def _class_ordered(shift: float) -> np.ndarray:
    """1,000 rows stored class by class (10 Gaussian classes, 8-d), as data sets often are."""
    rng = np.random.default_rng(0)
    means = 2 * np.random.default_rng(1).normal(size=(10, 8))
    return np.concatenate([rng.normal(size=(100, 8)) + m + shift for m in means])


def test_one_median_heuristic_for_the_losses_the_distances_and_the_test():
    """mk_mmd2 read the median off 1,000 evenly spaced pooled points, mmd_test off all 2,000 (82 against 77
    on such rows): the MMD^2 that measure printed and its own test's differed by 6%."""
    from qianyi.distances.mmd import median_of_pairs, sq_dists

    x, y = torch.tensor(_class_ordered(0.0)), torch.tensor(_class_ordered(0.3))
    z = torch.cat([x, y])
    assert float(median_of_pairs(sq_dists(z, z))) == pytest.approx(float(median_sq_dist(x, y)), rel=1e-12)
    kern = GaussianKernel()
    assert torch.allclose(kern.sigmas2_from(sq_dists(z, z)), kern.sigmas2(x, y), rtol=1e-12, atol=0)
    for est in ("unbiased", "biased"):
        want = float(mk_mmd2(x, y, estimator=est))
        assert mmd_test(x, y, estimator=est, permutations=9, max_samples=1000).mmd2 == pytest.approx(want, rel=1e-9)
    small_x, small_y = x[::4], y[::4]  # 500 pooled rows: the mini-batch path (one pooled matrix) agrees too
    assert mmd_test(small_x, small_y, permutations=9).mmd2 == pytest.approx(float(mk_mmd2(small_x, small_y)), rel=1e-9)


def test_the_shallow_numpy_median_has_a_name_of_its_own():
    from qianyi.shallow import _base

    assert not hasattr(_base, "median_sq_dist")  # it shared a name with distances.mmd.median_sq_dist, another rule
    X = _class_ordered(0.0)
    assert _base.median_sq_dist_np(X, seed=0) == _base.median_sq_dist_np(X, seed=0) > 0


def test_median_sq_dist_keeps_its_max_points_keyword():
    """median_sq_dist is public (qianyi.distances); its max_points= keyword was dropped: a TypeError for callers."""
    from qianyi.distances import median_sq_dist as public
    from qianyi.distances.mmd import MEDIAN_POINTS

    from scipy.spatial.distance import pdist

    def brute(z: np.ndarray) -> float:  # the lower median of the distinct pairs' squared distances
        d = pdist(z, "sqeuclidean")
        return float(np.sort(d)[(len(d) - 1) // 2])

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1500, 4)), rng.normal(size=(1500, 4)) + 0.5
    z = np.concatenate([x, y])
    X, Y = torch.tensor(x), torch.tensor(y)
    assert public is median_sq_dist
    assert float(median_sq_dist(X, Y, max_points=None)) == float(median_sq_dist(X, Y))  # the default: 1,000 points
    assert float(median_sq_dist(X, Y, max_points=MEDIAN_POINTS)) == float(median_sq_dist(X, Y))
    even = np.linspace(0, len(z) - 1, 500).astype(int)
    assert float(median_sq_dist(X, Y, max_points=500)) == pytest.approx(brute(z[even]), rel=1e-12)
    whole = float(median_sq_dist(X, Y, max_points=len(z)))  # more than the default: every point read
    assert whole == pytest.approx(brute(z), rel=1e-12) and whole != float(median_sq_dist(X, Y))
    for bad in (1, 0, True, 2.5, "100"):
        with pytest.raises(ConfigError, match="max_points must be a whole number of at least 2"):
            median_sq_dist(X, Y, max_points=bad)

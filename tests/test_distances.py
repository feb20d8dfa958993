"""MMD estimators against brute-force double loops (float64, CPU)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from qianyi.distances import GaussianKernel, joint_mmd2, linear_mmd2, median_sq_dist, mk_mmd2, mmd2
from qianyi.distances.mmd import linear_pairing
from qianyi.errors import DataError


def k(a, b, sigma2s):
    d = float(((a - b) ** 2).sum())
    return float(np.mean([np.exp(-d / (2 * s)) for s in sigma2s]))


def brute_mmd2(X, Y, sigma2s, unbiased):
    m, n = len(X), len(Y)
    sxx = sum(k(X[i], X[j], sigma2s) for i in range(m) for j in range(m) if not unbiased or i != j)
    syy = sum(k(Y[i], Y[j], sigma2s) for i in range(n) for j in range(n) if not unbiased or i != j)
    sxy = sum(k(X[i], Y[j], sigma2s) for i in range(m) for j in range(n))
    if unbiased:
        return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)
    return sxx / m**2 + syy / n**2 - 2 * sxy / (m * n)


@pytest.fixture
def samples():
    rng = np.random.default_rng(0)
    return rng.normal(size=(13, 4)), rng.normal(size=(11, 4)) + 0.7


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_quadratic_estimators_match_double_loop(samples, estimator):
    X, Y = samples
    kern = GaussianKernel(bandwidth=2.5, multipliers=(0.5, 1.0, 2.0))
    got = mmd2(torch.tensor(X), torch.tensor(Y), kern, estimator).item()
    want = brute_mmd2(X, Y, [1.25, 2.5, 5.0], estimator == "unbiased")
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_median_heuristic_matches_brute_force(samples):
    X, Y = samples
    Z = np.concatenate([X, Y])
    d = [float(((a - b) ** 2).sum()) for a, b in itertools.combinations(Z, 2)]
    # torch's median of an even count is the lower middle value
    want = sorted(d)[(len(d) - 1) // 2]
    assert median_sq_dist(torch.tensor(X), torch.tensor(Y)).item() == pytest.approx(want, rel=1e-10)
    got = mk_mmd2(X, Y, multipliers=(1.0,), estimator="biased").item()
    assert got == pytest.approx(brute_mmd2(X, Y, [want], False), rel=1e-9)


def test_linear_time_estimator_matches_pairs_formula(samples):
    X, Y = samples
    s = [3.0]
    px, py = linear_pairing(len(X), len(Y), seed=4)
    assert len(px) == len(py) == 10 and len(set(px.tolist())) == 10 and len(set(py.tolist())) == 10
    X, Y = X[px.numpy()], Y[py.numpy()]  # pairs are consecutive rows in the seeded order
    terms = [k(X[2 * i], X[2 * i + 1], s) + k(Y[2 * i], Y[2 * i + 1], s) - k(X[2 * i], Y[2 * i + 1], s)
             - k(X[2 * i + 1], Y[2 * i], s) for i in range(5)]
    got = mmd2(*samples, GaussianKernel(3.0), "linear", seed=4).item()
    assert got == pytest.approx(np.mean(terms), rel=1e-10)


def test_linear_time_estimator_does_not_depend_on_the_row_order():
    # rows stored by class (mfeat, Amazon, held-out splits kept in file order): pairing consecutive rows paired
    # two rows of one class and kept only the target's first classes, 0.58 for two samples of one distribution
    rng = np.random.default_rng(0)
    means = 2 * rng.normal(size=(10, 8))

    def by_class(n):
        return means[np.sort(rng.integers(0, 10, n))] + rng.normal(size=(n, 8))
    x, y = by_class(400), by_class(1500)
    assert abs(float(mk_mmd2(x, y, estimator="linear"))) < 0.1
    lin = [float(mk_mmd2(x, y, estimator="linear", seed=s)) for s in range(10)]
    assert abs(np.mean(lin)) < 3 * np.std(lin) / np.sqrt(10) + 0.005 and max(lin) < 0.1
    assert lin[3] == float(mk_mmd2(x, y, estimator="linear", seed=3))  # seeded
    # JAN: one order per sample, the same at every layer (a row's two representations stay paired)
    px, py = (p.numpy() for p in linear_pairing(len(x), len(y), 1))
    xs, ys = [x[px], x[px, :3] ** 2], [y[py], y[py, :3] ** 2]

    def kk(a, b, i, j):
        return k(a[0][i], b[0][j], [4.0]) * k(a[1][i], b[1][j], [2.0])
    want = np.mean([kk(xs, xs, 2 * i, 2 * i + 1) + kk(ys, ys, 2 * i, 2 * i + 1) - kk(xs, ys, 2 * i, 2 * i + 1)
                    - kk(xs, ys, 2 * i + 1, 2 * i) for i in range(len(px) // 2)])
    got = joint_mmd2([x, x[:, :3] ** 2], [y, y[:, :3] ** 2], [GaussianKernel(4.0), GaussianKernel(2.0)], "linear",
                     seed=1)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_linear_time_is_within_noise_of_quadratic():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3)) + 0.5
    kern = GaussianKernel(bandwidth=6.0)
    quad = mmd2(X, Y, kern, "unbiased").item()
    lin = [mmd2(X[rng.permutation(4000)], Y[rng.permutation(4000)], kern, "linear").item() for _ in range(5)]
    assert abs(np.mean(lin) - quad) < 3 * np.std(lin) / np.sqrt(5) + 0.01


def test_chunked_equals_whole(samples):
    X, Y = samples
    kern = GaussianKernel(bandwidth=1.7, multipliers=(0.5, 1, 2))
    for est in ("biased", "unbiased"):
        whole = mmd2(X, Y, kern, est).item()
        assert mmd2(X, Y, kern, est, chunk_size=4).item() == pytest.approx(whole, rel=1e-10)


def test_identical_samples_give_about_zero_and_shift_grows():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 5))
    assert abs(mk_mmd2(X, X.copy()).item()) < 1e-2  # unbiased: close to 0 (can dip just below)
    assert mk_mmd2(X, X.copy(), estimator="biased").item() == pytest.approx(0.0, abs=1e-12)
    kern = GaussianKernel(bandwidth=10.0)  # fixed bandwidth: MMD grows monotonically with the shift
    Y = rng.normal(size=(300, 5))
    vals = [mmd2(X, Y + s, kern).item() for s in (0.0, 0.5, 1.0, 2.0)]
    assert vals[0] < 0.01 and all(a < b for a, b in zip(vals, vals[1:]))


def test_joint_mmd_is_product_kernel(samples):
    X, Y = samples
    rng = np.random.default_rng(3)
    X2, Y2 = rng.normal(size=(13, 2)), rng.normal(size=(11, 2))
    k1, k2 = GaussianKernel(2.0), GaussianKernel(1.0)
    got = joint_mmd2([X, X2], [Y, Y2], [k1, k2], "biased").item()

    def kk(i, j, A, B, A2, B2):
        return k(A[i], B[j], [2.0]) * k(A2[i], B2[j], [1.0])
    m, n = len(X), len(Y)
    want = (sum(kk(i, j, X, X, X2, X2) for i in range(m) for j in range(m)) / m**2
            + sum(kk(i, j, Y, Y, Y2, Y2) for i in range(n) for j in range(n)) / n**2
            - 2 * sum(kk(i, j, X, Y, X2, Y2) for i in range(m) for j in range(n)) / (m * n))
    assert got == pytest.approx(want, rel=1e-10)


def test_linear_kernel_mmd_is_mean_distance(samples):
    X, Y = samples
    assert linear_mmd2(X, Y).item() == pytest.approx(float(((X.mean(0) - Y.mean(0)) ** 2).sum()))


def test_gradients_flow_and_bad_input_is_named():
    x = torch.randn(20, 3, requires_grad=True)
    mk_mmd2(x, torch.randn(20, 3) + 1).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(DataError, match="features"):
        mmd2(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DataError, match="empty"):
        mmd2(np.zeros((0, 3)), np.zeros((5, 3)))
    with pytest.raises(DataError, match="estimator"):
        mmd2(np.zeros((5, 3)), np.zeros((5, 3)), estimator="quick")


def test_coral_matches_formula_and_is_zero_for_same_covariance():
    from qianyi.distances import coral

    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(40, 3)) * 2.0
    cx, cy = np.cov(X, rowvar=False), np.cov(Y, rowvar=False)
    assert coral(X, Y).item() == pytest.approx(((cx - cy) ** 2).sum() / 36, rel=1e-10)
    assert coral(X, X + 5.0).item() == pytest.approx(0.0, abs=1e-12)  # a mean shift is invisible to CORAL


@pytest.mark.parametrize("n", [64, 2560])  # the pooled mini-batch path and the chunked one
def test_features_far_from_zero_keep_their_mmd_in_float32(n):
    # |a|^2 + |b|^2 - 2ab cancelled catastrophically at an offset of 1e4: MK-MMD^2 came out -0.002 for 0.0167
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g) + 0.3
    a, b = torch.cat([x] * (n // 64)) + 1e4, torch.cat([y] * (n // 64)) + 1e4  # float32 inputs, as given
    exact = float(mk_mmd2(a.double(), b.double()))
    assert float(mk_mmd2(a, b, chunk_size=1000 if n > 1000 else None)) == pytest.approx(exact, rel=1e-3)


def test_lmmd_keeps_far_from_zero_features_and_autocast_leaves_kernels_in_float32():
    from qianyi.distances.lmmd import lmmd2

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 16, generator=g), torch.randn(60, 16, generator=g) + 0.5
    lab = torch.arange(60) % 3
    probs = torch.softmax(torch.randn(60, 3, generator=g), 1)
    exact = float(lmmd2(x.double() + 1e4, y.double() + 1e4, lab, probs.double()))
    assert float(lmmd2(x + 1e4, y + 1e4, lab, probs)) == pytest.approx(exact, rel=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a @ b.T in bfloat16 loses kernel entries near 1
        assert (x @ y.T).dtype == torch.bfloat16
        in_autocast = mk_mmd2(x, y)
    assert in_autocast.dtype == torch.float32
    assert float(in_autocast) == pytest.approx(float(mk_mmd2(x, y)), rel=1e-6)
    from qianyi.distances import coral

    with torch.autocast("cpu", dtype=torch.bfloat16):  # CORAL and the linear MMD too: float32 under autocast
        c, lin = coral(x, y), linear_mmd2(x, y)
    assert c.dtype == lin.dtype == torch.float32
    assert float(c) == pytest.approx(float(coral(x, y)), rel=1e-6)
    # one side in bfloat16: the other is not rounded down to it
    xb = x.bfloat16()
    assert float(mk_mmd2(xb, y)) == pytest.approx(float(mk_mmd2(xb.float(), y)), rel=1e-6)
    assert float(lmmd2(xb, y, lab, probs)) == pytest.approx(float(lmmd2(xb.float(), y, lab, probs)), rel=1e-6)


def test_empty_image_batches_a_wrong_kernel_and_half_precision_tests():
    """An empty batch of images is named (not a reshape error), a kernel that is not a GaussianKernel is named,
    and the permutation test computes half-precision features in float32 as every distance does."""
    from qianyi.distances import coral, mmd2, mmd_test
    from qianyi.errors import ConfigError, DataError

    for f in (mmd2, coral):
        with pytest.raises(DataError, match=r"sample x(\[0\])? is empty"):
            f(np.zeros((0, 3, 4)), np.zeros((5, 3, 4)))
    with pytest.raises(ConfigError, match="GaussianKernel"):
        mmd2(np.ones((5, 2)), np.zeros((5, 2)), kernel="gauss")
    with pytest.raises(ConfigError, match="GaussianKernel"):
        mmd_test(np.ones((5, 2)), np.zeros((5, 2)), kernel="gauss", permutations=5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    full = mmd_test(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), permutations=20)
    half = mmd_test(torch.tensor(x, dtype=torch.float16), torch.tensor(y, dtype=torch.float16), permutations=20)
    assert half.mmd2 == pytest.approx(full.mmd2, abs=1e-3) and half.p_value == pytest.approx(full.p_value, abs=0.1)
    x2, y2 = rng.normal(size=(40, 16)), rng.normal(size=(40, 16)) + 0.3
    full = mmd_test(torch.tensor(x2, dtype=torch.float32), torch.tensor(y2, dtype=torch.float32), permutations=20)
    bf = mmd_test(torch.tensor(x2, dtype=torch.bfloat16), torch.tensor(y2, dtype=torch.bfloat16), permutations=20)
    assert bf.mmd2 == pytest.approx(full.mmd2, rel=0.05)


def test_coral_of_wide_inputs_takes_no_d_by_d_matrix_and_matches_the_covariance_formula(monkeypatch):
    """224-px images as vectors (d = 150,528) needed a 90 GB covariance; the Gram form gives the same number."""
    import importlib

    C = importlib.import_module("qianyi.distances.coral")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 5000)), rng.normal(size=(30, 5000)) * 1.5 + 2.0
    d = X.shape[1]
    by_formula = ((np.cov(X, rowvar=False) - np.cov(Y, rowvar=False)) ** 2).sum() / (4 * d * d)
    monkeypatch.setattr(C, "covariance", lambda x: pytest.fail("a d x d covariance was built"))
    assert C.coral(X, Y).item() == pytest.approx(by_formula, rel=1e-9)
    assert C.coral(X, X + 3.0).item() == pytest.approx(0.0, abs=1e-12)


def test_distances_name_a_sample_with_nan_or_inf():
    """The public functions on data (no gradient): a clear error naming the sample, not a NaN distance."""
    import numpy as np

    from qianyi.distances import coral, mk_mmd2, mmd2
    from qianyi.errors import DataError

    x = np.random.default_rng(0).random((5, 2))
    bad = x.copy()
    bad[3, 1] = np.nan
    for call in (lambda: mmd2(x, bad), lambda: mk_mmd2(bad, x), lambda: coral(x, np.where(bad > 2, 0, np.inf))):
        with pytest.raises(DataError, match="NaN or infinite"):
            call()
    with pytest.raises(DataError, match="sample y.*row 3"):
        mmd2(x, bad)

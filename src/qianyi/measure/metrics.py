"""Distances between two samples by name, floats out: the measurement face of :mod:`qianyi.distances`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = distances(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 1.0, ["mk-mmd", "coral"])
>>> sorted(d)
['coral', 'mk-mmd']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..distances import coral, mk_mmd2, mmd2, proxy_a_distance, wasserstein
from ..distances.mmd import GaussianKernel, to_tensor
from ..errors import DataError, UnknownNameError

Array = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    fn: Callable[[torch.Tensor, torch.Tensor, int], float]
    #: Whether the value is comparable across layers of different widths (scale-free).
    scale_free: bool = True


def _mk(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    return float(mk_mmd2(x, y, estimator="unbiased"))


def _single(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    return float(mmd2(x, y, GaussianKernel(), "unbiased"))


def _linear(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    return float(mk_mmd2(x, y, estimator="linear", seed=seed))


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("mk-mmd", "multi-kernel MMD^2, unbiased; Gaussian kernels 2^-2..2^2 x the median heuristic (DAN)", _mk),
    Metric("mmd", "MMD^2, unbiased, one Gaussian kernel at the median heuristic (Gretton et al. 2012)", _single),
    Metric("linear-mmd", "multi-kernel MMD^2, linear-time estimator (Gretton et al. 2012, Lemma 14)", _linear),
    Metric("coral", "CORAL distance ||C_s - C_t||_F^2 / 4d^2 (Sun & Saenko 2016); depends on the feature scale",
           lambda x, y, seed: float(coral(x, y)), scale_free=False),
    Metric("a-distance", "proxy A-distance 2(1 - 2 err) of a held-out linear domain classifier, in [0, 2] "
           "(Ben-David et al. 2007)", lambda x, y, seed: proxy_a_distance(x, y, seed=seed)),
    Metric("wasserstein", "2-Wasserstein distance (exact OT through POT; optional); depends on the feature scale",
           lambda x, y, seed: wasserstein(x, y, seed=seed), scale_free=False),
]}
DEFAULT_METRICS = ("mk-mmd", "a-distance", "coral")


def check_metrics(names: Sequence[str]) -> list[str]:
    """Validate metric names (a comma-separated string is split)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise UnknownNameError(f"no distance given (--metrics is empty); choose from {', '.join(METRICS)}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UnknownNameError(f"unknown distance {unknown or names!r}; available: {', '.join(METRICS)}")
    return list(names)


def check_samples(n: int | None, name: str = "max_samples") -> None:
    """Refuse a sample cap ``n`` (rows drawn per domain) below 2: no distance is defined on fewer (a negative one
    dropped rows from the end)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2):
        raise DataError(f"{name}: the rows drawn per domain must be a whole number >= 2 (the A-distance needs 6: it "
                        f"trains on half and tests on half), got {n!r}")


def subsample(a: Array, n: int | None, seed: int, name: str = "x") -> torch.Tensor:
    """Up to ``n`` rows of ``a`` (seeded, without replacement), flattened to (n, d) float; an error naming
    ``name`` when it is empty or holds NaN or infinite values."""
    check_samples(n)
    t = to_tensor(a)
    if len(t) == 0:
        raise DataError(f"distance: sample {name} is empty; give both samples at least 2 rows")
    t = t.reshape(len(t), -1) if t.ndim != 1 else t[:, None]
    if not torch.is_floating_point(t):
        t = t.float()
    if n is not None and len(t) > n:
        t = t[torch.randperm(len(t), generator=torch.Generator().manual_seed(seed))[:n]]
    return t


def distance(x: Array, y: Array, metric: str = "mk-mmd", max_samples: int | None = 2000, seed: int = 0) -> float:
    """One distance between samples ``x`` (m, ...) and ``y`` (n, ...), each subsampled to ``max_samples``."""
    return distances(x, y, [metric], max_samples, seed)[metric]


def distances(x: Array, y: Array, metrics: Sequence[str] = DEFAULT_METRICS, max_samples: int | None = 2000,
              seed: int = 0) -> dict[str, float]:
    """Several distances between ``x`` and ``y`` on the same subsample: ``{name: value}``.

    The A-distance draws at most its own ``max_samples`` (1,000) rows per side from that subsample:
    it trains a classifier, and more rows would mostly cost time."""
    names = check_metrics(metrics)
    if "a-distance" in names and max_samples is not None and max_samples < 6:
        raise DataError(f"max_samples={max_samples} rows per domain: the A-distance needs 6 or more (it trains a "
                        "domain classifier on half and tests it on the other half)")
    X, Y = subsample(x, max_samples, seed, "x"), subsample(y, max_samples, seed + 1, "y")
    if X.shape[1:] != Y.shape[1:]:
        raise DataError(f"distance: the samples have {X.shape[1]} and {Y.shape[1]} features; compare samples "
                        "of the same features (the same layer, the same preprocessing)")
    for name, t in (("x", X), ("y", Y)):
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"distance: sample {name} holds NaN or infinite values (features of a network that "
                            "diverged? lower the learning rate)")
    # centred on the pooled mean: every metric here is translation-invariant, and float32 distances of
    # features far from the origin would otherwise be rounding noise (|a|^2 + |b|^2 - 2ab cancels)
    centre = torch.cat([X, Y]).mean(0)
    X, Y = X - centre, Y - centre
    out = {n: METRICS[n].fn(X, Y, seed) for n in names}
    bad = [n for n, v in out.items() if not np.isfinite(v)]
    if bad:
        raise DataError(f"distance: {', '.join(bad)} overflowed (the features are too large to compare: a network "
                        "that diverged? lower the learning rate)")
    return out

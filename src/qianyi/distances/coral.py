r"""CORAL distance (Sun & Saenko, "Deep CORAL", ECCV-W 2016):
:math:`\frac{1}{4d^2}\|C_S - C_T\|_F^2`, with :math:`C` the (n-1)-normalised feature covariance."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .mmd import _as_2d, _full_float, full_precision


#: Above this many features (and more features than samples) CORAL is computed from the samples' Gram
#: matrices, :math:`\|C_S - C_T\|_F^2 = \|X_SX_S^\top\|^2/(m-1)^2 + \|X_TX_T^\top\|^2/(n-1)^2 -
#: 2\|X_SX_T^\top\|^2/((m-1)(n-1))` on centred rows: the d x d covariances of 224-px images took 90 GB.
GRAM_FROM = 4096


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance of the rows of ``x`` (n, d) -> (d, d)."""
    xc = x - x.mean(0, keepdim=True)
    return xc.T @ xc / (len(x) - 1)


def coral(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor:
    """CORAL loss between samples ``x`` (m, d) and ``y`` (n, d); 0 when the covariances match. Computed in float32
    at least, outside autocast (covariances of half-precision features lose their small entries)."""
    with full_precision(x, y):
        return _coral(x, y)


def _coral(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor:
    X, Y = _as_2d(x, "x", "CORAL"), _as_2d(y, "y", "CORAL")
    X, Y = _full_float(X, Y)
    if X.shape[1] != Y.shape[1]:
        raise DataError(f"CORAL: samples have {X.shape[1]} and {Y.shape[1]} features; they must match")
    if len(X) < 2 or len(Y) < 2:
        raise DataError(f"CORAL needs at least 2 samples per side, got {len(X)} and {len(Y)}")
    d = X.shape[1]
    if d > GRAM_FROM and d > len(X) + len(Y):  # wide inputs (images as vectors): no d x d matrix
        Xc, Yc = X - X.mean(0, keepdim=True), Y - Y.mean(0, keepdim=True)
        m, n = len(X) - 1, len(Y) - 1
        ss = ((Xc @ Xc.T) ** 2).sum() / (m * m) + ((Yc @ Yc.T) ** 2).sum() / (n * n) \
            - 2.0 * ((Xc @ Yc.T) ** 2).sum() / (m * n)
        return ss.clamp_min(0.0) / (4.0 * d * d)
    return ((covariance(X) - covariance(Y)) ** 2).sum() / (4.0 * d * d)

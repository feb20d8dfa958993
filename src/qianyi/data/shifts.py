"""Domain-shift transforms for any image domain, named in dataset specs as ``NAME+SHIFT``.

``rot30`` (rotate 30 degrees), ``invert`` (1 - x), ``noise0.3`` (Gaussian noise, std 0.3, clipped),
``blur1.5`` (Gaussian blur, sigma 1.5 pixels). They chain: ``fashion+rot15+noise0.1``.
Randomness (noise) is seeded by the shift's token (``noise0.3``), so a spec always means the same images
(and two datasets given the same noise shift get noise from the same seed).
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, UnknownNameError


def _tensor(X: np.ndarray, dtype: type | None = None) -> torch.Tensor:
    """``X`` as a contiguous tensor, shared where ``X`` is writable and copied where it is not (a cached built-in's
    array is read-only: torch.from_numpy warns of it, though the shifts only read it)."""
    X = np.ascontiguousarray(X, dtype)
    return torch.from_numpy(X if X.flags.writeable else X.copy())


def rotate(X: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate (n, c, h, w) images about their centre, filling with 0."""
    t = _tensor(X)
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=t.dtype).expand(len(t), 2, 3)
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False).numpy()


def rotate_each(X: np.ndarray, degrees: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Rotate each of the (n, c, h, w) images by its own angle ``degrees[i]`` about its centre, filling with 0."""
    out = np.empty_like(np.asarray(X, np.float32))
    for i in range(0, len(X), batch):
        t = _tensor(X[i:i + batch], np.float32)
        a = torch.from_numpy(np.radians(np.asarray(degrees[i:i + batch], np.float64))).float()
        theta = torch.zeros(len(t), 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        grid = F.affine_grid(theta, list(t.shape), align_corners=False)
        out[i:i + batch] = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False).numpy()
    return out


def invert(X: np.ndarray) -> np.ndarray:
    return 1.0 - X


def add_noise(X: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(X + rng.normal(0.0, std, X.shape).astype(np.float32), 0.0, 1.0)


def blur(X: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return X.copy()
    r = min(max(1, int(math.ceil(3 * sigma))), max(X.shape[-2:]))  # a wider kernel changes nothing but the cost
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    t = _tensor(X)
    c = t.shape[1]
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return t.numpy()


@dataclass(frozen=True)
class Shift:
    name: str
    pattern: str
    make: Callable[[re.Match, int], Callable[[np.ndarray], np.ndarray]]
    help: str


SHIFTS: tuple[Shift, ...] = (
    Shift("rot", r"rot(-?\d+(?:\.\d+)?)", lambda m, s: lambda X: rotate(X, float(m[1])), "rotate by N degrees, e.g. rot30"),
    Shift("invert", r"invert", lambda m, s: invert, "invert (1 - x)"),
    Shift("noise", r"noise(\d+(?:\.\d+)?)", lambda m, s: lambda X: add_noise(X, float(m[1]), s),
          "add Gaussian noise with std N, e.g. noise0.2"),
    Shift("blur", r"blur(\d+(?:\.\d+)?)", lambda m, s: lambda X: blur(X, float(m[1])), "Gaussian blur, sigma N pixels, e.g. blur1"),
)


def parse_shift(token: str) -> Callable[[np.ndarray], np.ndarray]:
    for shift in SHIFTS:
        m = re.fullmatch(shift.pattern, token)
        if m:
            return shift.make(m, zlib.crc32(token.encode()))
    known = ", ".join(s.help for s in SHIFTS)
    raise UnknownNameError(f"unknown shift {token!r}; known shifts: {known}")


def apply_shifts(X: np.ndarray, tokens: list[str], name: str) -> np.ndarray:
    if tokens and X.ndim != 4:
        what = "texts" if X.dtype.kind in "OUS" else f"vectors of shape {X.shape[1:]}"
        raise DataError(f"shifts {tokens} apply to images, but {name!r} holds {what}")
    for token in tokens:
        X = parse_shift(token)(X).astype(np.float32, copy=False)
    return X

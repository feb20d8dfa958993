"""Random input augmentations for methods that compare views of one input (mean teacher, FixMatch).

All draws use torch's global RNG, which the engine checkpoints, so a resumed run sees the same views.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def translate(x: torch.Tensor, max_shift: float = 0.1) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` of its size in x and y (bilinear, zero padding)."""
    n = len(x)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, device=x.device, dtype=x.dtype) * 2 - 1) * 2 * max_shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def intensity(x: torch.Tensor, scale: tuple[float, float] = (0.75, 1.333), offset: float = 0.1) -> torch.Tensor:
    """Per-sample random intensity scale and offset (relative to the batch's value range)."""
    shape = (len(x),) + (1,) * (x.dim() - 1)
    lo, hi = scale
    s = lo + (hi - lo) * torch.rand(shape, device=x.device, dtype=x.dtype)
    span = (x.max() - x.min()).clamp_min(1e-6)
    b = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * offset * span
    return x * s + b


def gaussian_noise(x: torch.Tensor, std: float = 0.1) -> torch.Tensor:
    """Add N(0, (std * batch std)^2) noise."""
    return x + torch.randn_like(x) * std * x.std().clamp_min(1e-6)


def weak_view(x: torch.Tensor, max_shift: float = 0.1, noise: float = 0.1) -> torch.Tensor:
    """One random view: translation and intensity jitter for images, then Gaussian noise (vectors: noise only)."""
    if x.dim() == 4:
        x = intensity(translate(x, max_shift))
    return gaussian_noise(x, noise)

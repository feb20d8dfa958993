"""Random input augmentations for methods that compare views of one input (mean teacher, FixMatch).

Token ids (``kind="text"``) get word deletion instead (:func:`word_dropout`): a deleted word becomes padding
(id 0), which every text encoder skips, so a view is always valid input whatever the vocabulary.

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


def word_dropout(x: torch.Tensor, rate: float, keep_last: bool = False) -> torch.Tensor:
    """Token ids ``(n, L)`` with each non-padding token deleted (set to the padding id 0) with probability
    ``rate``; a text keeps at least its first token (a pre-trained model's ``[CLS]``), and with ``keep_last`` its
    last (``[SEP]``: a model's WordPiece ids, ``kind="wordpiece"``). Word dropout as in Iyyer et al. 2015 (deep
    averaging networks) and the deletion of EDA (Wei & Zou 2019)."""
    real = x != 0
    drop = (torch.rand(x.shape, device=x.device) < rate) & real
    at = real.cumsum(1)
    kept = real & (at == 1)  # never delete every word of a text
    if keep_last:
        kept |= real & (at == real.sum(1, keepdim=True))
    return torch.where(drop & ~kept, torch.zeros_like(x), x)


#: The ``kind`` of token-id inputs: a fitted vocabulary's ("text") or a pre-trained model's WordPiece ids
#: ("wordpiece": [CLS] ... [SEP], both kept by every view).
TEXT_KINDS = ("text", "wordpiece")


def weak_view(x: torch.Tensor, max_shift: float = 0.1, noise: float = 0.1, kind: str | None = None) -> torch.Tensor:
    """One random view: translation and intensity jitter for images, then Gaussian noise (vectors: noise only;
    ``kind="text"`` or ``"wordpiece"``: 10% of the words deleted)."""
    if kind in TEXT_KINDS:
        return word_dropout(x, 0.1, keep_last=kind == "wordpiece")
    if x.dim() == 4:
        x = intensity(translate(x, max_shift))
    return gaussian_noise(x, noise)


def affine(x: torch.Tensor, degrees: float = 20.0, shear: float = 0.2, max_shift: float = 0.15,
           scale: tuple[float, float] = (0.85, 1.15)) -> torch.Tensor:
    """Per-image random rotation (±``degrees``), shear, scale and shift (bilinear, zero padding)."""
    n, dev, dt = len(x), x.device, x.dtype
    a = (torch.rand(n, device=dev, dtype=dt) * 2 - 1) * degrees * torch.pi / 180
    sh = (torch.rand(n, device=dev, dtype=dt) * 2 - 1) * shear
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, device=dev, dtype=dt)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=dt)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, (-torch.sin(a) + sh) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
    theta[:, :, 2] = (torch.rand(n, 2, device=dev, dtype=dt) * 2 - 1) * 2 * max_shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def colour_jitter(x: torch.Tensor, strength: float = 0.4) -> torch.Tensor:
    """Per-image, per-channel random gain and offset (colour, brightness, contrast), values kept in [min, max]
    of the batch."""
    n, c = x.shape[:2]
    gain = 1 + (torch.rand(n, c, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * strength
    lo, hi = x.min(), x.max()
    bias = (torch.rand(n, c, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * strength * 0.5 * (hi - lo)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * gain + mean + bias).clamp(lo, hi)


def cutout(x: torch.Tensor, size: float = 0.4) -> torch.Tensor:
    """Set one random square of side ``size`` (fraction of the image side) per image to the image mean."""
    n, _, h, w = x.shape
    sh, sw = max(1, int(round(size * h))), max(1, int(round(size * w)))
    cy = torch.randint(0, h, (n,), device=x.device)
    cx = torch.randint(0, w, (n,), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    box = ((ys - cy[:, None, None]).abs() <= sh // 2) & ((xs - cx[:, None, None]).abs() <= sw // 2)
    return torch.where(box[:, None], x.mean(dim=(1, 2, 3), keepdim=True), x)


def strong_view(x: torch.Tensor, noise: float = 0.1, drop: float = 0.2, kind: str | None = None) -> torch.Tensor:
    """A heavily distorted view (the "strong" augmentation of FixMatch / AdaMatch, on tensors): images get a
    random affine map, per-channel colour jitter and cutout, then noise; vectors get noise and ``drop`` of
    their features zeroed; ``kind="text"`` or ``"wordpiece"``: 30% of the words deleted."""
    if kind in TEXT_KINDS:
        return word_dropout(x, 0.3, keep_last=kind == "wordpiece")
    if x.dim() == 4:
        return gaussian_noise(cutout(colour_jitter(affine(x))), noise)
    keep = (torch.rand_like(x) >= drop).to(x.dtype)
    return gaussian_noise(x, 3 * noise) * keep

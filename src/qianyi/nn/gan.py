"""Image-to-image generators and patch discriminators sized for a CPU on small (8-32 px) images.

The shapes follow CycleGAN (Zhu et al., ICCV 2017: an encoder of strided convolutions, residual
blocks, a decoder back to the input size) and its PatchGAN discriminator (a few strided
convolutions ending in one logit per image patch), scaled down: ``width`` 8-16 channels instead of
64, one residual block instead of six or nine, nearest-neighbour upsampling + a 3x3 convolution
instead of transposed convolutions (no checkerboard artefacts, any input size). With
``res_blocks=0`` and more downsamplings the same class is DiscoGAN's generator (Kim et al., ICML
2017): a plain encoder-decoder down to a small bottleneck (4x4 from 64x64 there; 4x4 from 28x28 or
32x32 with three downsamplings here), no residual blocks, no skip connections. The generator ends
in a sigmoid, so its outputs lie in [0, 1] like qianyi's image inputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnknownNameError

#: Normalisation layers the networks accept by name.
NORMS = ("instance", "batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise UnknownNameError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


def _conv(c_in: int, c_out: int, norm: str, stride: int = 1, act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm != "batch"), _norm(norm, c_out),
                         act if act is not None else nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """x + conv-norm-ReLU-conv-norm(x), the CycleGAN generator's residual block."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, norm),
                                  nn.Conv2d(channels, channels, 3, 1, 1), _norm(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Encoder - residual blocks - decoder: images (n, c, h, w) in [0, 1] -> images (n, c, h, w) in [0, 1].

    ``downsamplings`` stride-2 convolutions double the channels from ``width`` each time (each
    halves a side, rounding up: 28 -> 14 -> 7 -> 4); ``res_blocks`` residual blocks (0: none, a plain
    encoder-decoder) work on that bottleneck; the decoder upsamples to the encoder's sizes (so odd
    sizes such as 7x7 round-trip exactly) and ends in a 3x3 convolution and a sigmoid. No skip
    connections: all the decoder knows of the input passes through the bottleneck (:meth:`encode`).

    >>> g = Generator(3, width=8)
    >>> y = g(torch.rand(2, 3, 28, 28))
    >>> tuple(y.shape), bool(((y >= 0) & (y <= 1)).all())
    ((2, 3, 28, 28), True)
    >>> tuple(Generator(1, width=16, downsamplings=3, res_blocks=0).encode(torch.rand(2, 1, 28, 28)).shape)
    (2, 128, 4, 4)
    """

    def __init__(self, channels: int, width: int = 8, downsamplings: int = 2, res_blocks: int = 1,
                 norm: str = "instance") -> None:
        super().__init__()
        _norm(norm, 1)  # an unknown name fails here, named
        self.stem = _conv(channels, width, norm)
        widths = [width * 2 ** i for i in range(downsamplings + 1)]
        self.down = nn.ModuleList(_conv(a, b, norm, stride=2) for a, b in zip(widths, widths[1:]))
        self.blocks = nn.Sequential(*(ResidualBlock(widths[-1], norm) for _ in range(res_blocks)))
        self.up = nn.ModuleList(_conv(b, a, norm) for a, b in zip(reversed(widths[:-1]), reversed(widths[1:])))
        self.head = nn.Conv2d(width, channels, 3, 1, 1)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Size]]:
        h = self.stem(x)
        sizes = []
        for down in self.down:
            sizes.append(h.shape[-2:])
            h = down(h)
        return h, sizes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output, the bottleneck the decoder starts from: (n, width * 2**downsamplings, h', w')."""
        return self._encode(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, sizes = self._encode(x)
        h = self.blocks(h)
        for up, size in zip(self.up, reversed(sizes)):
            h = up(F.interpolate(h, size=tuple(size), mode="nearest"))
        return torch.sigmoid(self.head(h))


class PatchDiscriminator(nn.Module):
    """PatchGAN-style: images (n, c, h, w) -> one real/fake logit per patch, (n, 1, h', w').

    Two stride-2 4x4 convolutions (LeakyReLU 0.2; the second normalised) and a 3x3 convolution to one
    channel; for 28x28 inputs each of the 7x7 logits sees an 18x18-pixel patch.

    >>> tuple(PatchDiscriminator(3, width=8)(torch.rand(2, 3, 28, 28)).shape)
    (2, 1, 7, 7)
    """

    def __init__(self, channels: int, width: int = 16, norm: str = "instance") -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=norm != "batch"), _norm(norm, 2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def lsgan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    r"""Least-squares GAN loss (Mao et al., ICCV 2017), as in CycleGAN: :math:`\mathbb{E}[(D(x) - b)^2]`
    with :math:`b = 1` for ``real`` and 0 for fake; ``logits`` of any shape (one per patch)."""
    return ((logits - float(real)) ** 2).mean()


def bce_gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    r"""The original GAN loss (Goodfellow et al. 2014), as in DiscoGAN: binary cross-entropy of
    :math:`\sigma(D(x))` against 1 (``real``) or 0."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))


def real_fake_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of patches a discriminator classifies correctly (real above ``threshold``, fake below),
    over real and fake together: 0.5 when it cannot tell them apart, 1.0 when it always can."""
    right = (real_logits > threshold).float().sum() + (fake_logits <= threshold).float().sum()
    return float(right / (real_logits.numel() + fake_logits.numel()))

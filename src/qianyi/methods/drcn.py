"""DRCN: Deep Reconstruction-Classification Networks (Ghifary et al., "Deep
Reconstruction-Classification Networks for Unsupervised Domain Adaptation", ECCV 2016)."""
from __future__ import annotations

import torch

from ..errors import UnknownNameError
from ..nn import Backbone, LayerOutputs
from .base import Batch, Method
from .reconstruction import Decoder, mse
from .registry import register

RECONSTRUCT = ("target", "both")


@register
class DRCN(Method):
    """DRCN: one encoder, two heads: classify the source, reconstruct the inputs. L = L_cls(source) + lambda * L_rec.

    L_rec = ||x_t - D(f(x_t))||^2 (mean squared error per input value) with a decoder D from the
    features back to the inputs; the encoder must keep what describes target images while it learns
    to classify source ones. ``reconstruct="both"`` (the default; the paper's DRCN_st) adds the same
    term for the source. The paper weighs the two as 0.7 L_cls + 0.3 L_rec, i.e. lambda = 3/7. The
    default (both domains, lambda = 0.1, denoising with ``noise=0.3``) is what a label-free score
    (DEV / importance-weighted source risk, no target labels) ranks first over the four bench pairs
    among target-only reconstruction with lambda in {0.1, 3/7, 1}, both-domain reconstruction with
    lambda in {0.1, 3/7}, the decoder on fc1, and noise in {0, 0.1, 0.3} (docs/methods.md).

    ``layer`` names the layer group the decoder reads (default: the bottleneck, ``features``). The
    paper's decoder reads the first dense layer after the convolutions (its fc4), so that the layers
    above it serve the labels only; ``layer="fc1"`` is that choice for :func:`qianyi.nn.lenet`.

    ``noise`` > 0 makes the reconstruction denoising, which the paper also uses (its corruption may
    differ; here it is zero-masking): in training the encoder sees inputs with each value set to 0
    with probability ``noise`` (both pathways, so the classifier is trained on corrupted source inputs
    too) and the decoder must return the clean ones.
    """

    name = "drcn"

    def __init__(self, trade_off: float = 0.1, reconstruct: str = "both", layer: str = "features",
                 noise: float = 0.3) -> None:
        super().__init__()
        if reconstruct not in RECONSTRUCT:
            raise UnknownNameError(f"drcn: reconstruct must be one of {RECONSTRUCT}, got {reconstruct!r}")
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"drcn: noise is the fraction of input values zeroed, in [0, 1); got {noise}")
        self.trade_off, self.reconstruct, self.layer, self.noise = trade_off, reconstruct, layer, noise

    def corrupt_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-masking noise (training only); the decoder's targets stay clean."""
        if self.noise == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.noise)

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        if self.layer == "logits":
            raise UnknownNameError("drcn: layer must be a hidden layer group, not 'logits'; "
                                   f"choose one of {list(sample_batch.names[:-1])} or 'features'")
        code = sample_batch.flat(self.layer)  # names an unknown layer with the backbone's list
        self.decoder = Decoder(code.shape[1], backbone, sample_batch)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None and batch.target_inputs is not None
        xt = batch.target_inputs
        rec = mse(xt, self.decoder(batch.target.flat(self.layer), xt))
        if self.reconstruct == "both":
            assert batch.source_inputs is not None
            xs = batch.source_inputs
            rec = rec + mse(xs, self.decoder(batch.source.flat(self.layer), xs))
        return {"cls": self.source_ce(batch), "recon": self.trade_off * rec}

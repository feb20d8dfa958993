"""DANN: Domain-Adversarial Neural Network (Ganin et al., "Domain-Adversarial Training of Neural
Networks", JMLR 2016; Ganin & Lempitsky, ICML 2015)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..nn import Backbone, DomainDiscriminator, LayerOutputs, grad_reverse
from .base import Batch, Method
from .registry import register


@register
class DANN(Method):
    """DANN: a domain discriminator D on the features, trained through a gradient reversal layer.

    L = L_cls(source) + L_d, with L_d = BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0) averaged over both
    domains; R is the identity forward and multiplies gradients by -lambda_p backward, with
    lambda_p = trade_off * (2 / (1 + exp(-10 p)) - 1). The discriminator minimises L_d while the
    features, through R, maximise it. trade_off = 1 is the paper's value; DEV, a label-free score,
    also ranks it first among {0.3, 1, 3} (docs/benchmarks.md).
    """

    name = "dann"

    def __init__(self, trade_off: float = 1.0, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        self.trade_off, self.hidden = trade_off, tuple(hidden)
        self.discriminator: DomainDiscriminator | None = None

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        self.discriminator = DomainDiscriminator(sample_batch.features.shape[1], self.hidden)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None and self.discriminator is not None
        f = torch.cat([batch.source.features, batch.target.features])
        d = self.discriminator(grad_reverse(f, self.trade_off * batch.ramp))
        domain = torch.cat([torch.ones(len(batch.source.features)), torch.zeros(len(batch.target.features))]).to(d)
        return {"cls": self.source_ce(batch), "domain": F.binary_cross_entropy_with_logits(d, domain)}

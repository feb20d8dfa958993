"""DSAN: Deep Subdomain Adaptation Network (Zhu et al., "Deep Subdomain Adaptation Network for Image
Classification", IEEE TNNLS 2020)."""
from __future__ import annotations

import torch

from ..distances import MULTI_KERNEL, multi_kernel
from ..distances.lmmd import lmmd2
from .base import Batch, Method
from .registry import register


@register
class DSAN(Method):
    """DSAN: class-aware (local) MMD. L = L_cls(source) + lambda_p * LMMD^2(f_s, f_t; y_s, p_t).

    LMMD (:mod:`qianyi.distances.lmmd`) aligns each class's source and target feature distributions
    instead of the two marginals: source samples are weighted by their labels y_s, target samples by
    the network's own soft predictions p_t = softmax(logits_t) (constants, no gradient), so no target
    label is used. Features are the bottleneck (``features``), kernels the DAN Gaussian family, and
    lambda_p = trade_off * (2 / (1 + exp(-10 p)) - 1), the paper's schedule.
    """

    name = "dsan"

    def __init__(self, trade_off: float = 0.5, layer: str = "features",
                 multipliers: tuple[float, ...] = MULTI_KERNEL) -> None:
        super().__init__()
        self.trade_off, self.layer, self.multipliers = trade_off, layer, tuple(multipliers)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None and batch.source_labels is not None
        probs = batch.target.logits.detach().softmax(1)
        d = lmmd2(batch.source.flat(self.layer), batch.target.flat(self.layer), batch.source_labels, probs,
                  multi_kernel(self.multipliers))
        return {"cls": self.source_ce(batch), "lmmd": self.trade_off * batch.ramp * d}

"""JAN: Joint Adaptation Networks (Long et al., "Deep Transfer Learning with Joint Adaptation
Networks", ICML 2017)."""
from __future__ import annotations

import torch

from ..distances import MULTI_KERNEL, joint_mmd2, multi_kernel
from ..nn import LayerOutputs
from .base import Batch, Method
from .registry import register


@register
class JAN(Method):
    """JAN: joint MMD over features and softmax outputs. L = L_cls(source) + lambda_p * JMMD^2(Z_s, Z_t).

    JMMD^2 compares the joint distributions of several layers' activations with the product kernel
    k(z, z') = prod_l k_l(z^l, z'^l): Z = (features, softmax(logits)) by default, so the classes the
    network predicts are aligned jointly with the features that predict them. Each k_l is the DAN
    family of Gaussian kernels (2^-2..2^2 x the median heuristic, averaged); the quadratic biased
    estimator is used on a mini-batch (>= 0, exactly 0 for identical batches).
    lambda_p = trade_off * (2 / (1 + exp(-10 p)) - 1), the paper's progressive schedule.
    """

    name = "jan"

    def __init__(self, trade_off: float = 1.0, layers: tuple[str, ...] = ("features", "logits"),
                 multipliers: tuple[float, ...] = MULTI_KERNEL, estimator: str = "biased") -> None:
        super().__init__()
        self.trade_off, self.layers, self.multipliers = trade_off, tuple(layers), tuple(multipliers)
        self.estimator = estimator

    def activations(self, out: LayerOutputs) -> list[torch.Tensor]:
        """The representations JMMD compares; ``logits`` enter as class probabilities, as in the paper."""
        return [out.logits.softmax(1) if layer == "logits" else out.flat(layer) for layer in self.layers]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None
        kernels = [multi_kernel(self.multipliers) for _ in self.layers]
        jmmd = joint_mmd2(self.activations(batch.source), self.activations(batch.target), kernels, self.estimator)
        return {"cls": self.source_ce(batch), "jmmd": self.trade_off * batch.ramp * jmmd}

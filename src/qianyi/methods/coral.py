"""Deep CORAL (Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation",
ECCV 2016 Workshops)."""
from __future__ import annotations

import torch

from ..distances import coral
from .base import Batch, Method
from .registry import register


@register
class DeepCORAL(Method):
    """Deep CORAL: match second-order statistics. L = L_cls(source) + lambda * sum_l ||C_s^l - C_t^l||_F^2 / 4d_l^2.

    C^l is the (n-1)-normalised covariance of layer l's activations in a mini-batch and d_l their
    width. As in the paper the loss sits on the last layer (``logits``, fc8 there) with a constant
    weight lambda, which the paper sets so that the CORAL and classification losses are of one order
    at the end of training; here it was chosen once by a label-free score (docs/methods.md).
    """

    name = "coral"

    def __init__(self, trade_off: float = 1.0, layers: tuple[str, ...] = ("logits",)) -> None:
        super().__init__()
        self.trade_off, self.layers = trade_off, tuple(layers)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None
        d = sum(coral(batch.source.flat(layer), batch.target.flat(layer)) for layer in self.layers)
        return {"cls": self.source_ce(batch), "coral": self.trade_off * d}

"""DAN: Deep Adaptation Network (Long et al., "Learning Transferable Features with Deep Adaptation
Networks", ICML 2015)."""
from __future__ import annotations

import torch

from ..distances import MULTI_KERNEL, mk_mmd2
from .base import Batch, Method
from .registry import register


@register
class DAN(Method):
    """DAN: multi-kernel MMD at several layers. L = L_cls(source) + lambda_p * sum_l MK-MMD^2(D_s^l, D_t^l).

    As in the paper, all task-specific (fully connected) layers are adapted, logits included, with a
    family of Gaussian kernels 2^-2..2^2 x the median heuristic at each layer. Kernel weights are
    uniform (the paper's beta optimisation is omitted, as in common reimplementations). On a
    mini-batch the loss uses the quadratic biased estimator (>= 0, exactly 0 for identical batches;
    its gradient equals the unbiased one's up to O(1/batch) factors) instead of the linear-time one.
    lambda_p = trade_off * (2 / (1 + exp(-10 p)) - 1), the progressive schedule that Long et al. adopt
    from DANN in JAN (ICML 2017). trade_off = 3 was chosen among {0.3, 1, 3, 10} by DEV, a label-free
    score (benchmarks/select_defaults.py, docs/benchmarks.md); no target label was used.
    """

    name = "dan"

    def __init__(self, trade_off: float = 3.0, layers: tuple[str, ...] = ("fc1", "fc2", "logits"),
                 multipliers: tuple[float, ...] = MULTI_KERNEL, estimator: str = "biased") -> None:
        super().__init__()
        self.trade_off, self.layers, self.multipliers = trade_off, tuple(layers), tuple(multipliers)
        self.estimator = estimator

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None
        mmd = sum(mk_mmd2(batch.source.flat(l), batch.target.flat(l), self.multipliers, self.estimator) for l in self.layers)
        return {"cls": self.source_ce(batch), "mmd": self.trade_off * batch.ramp * mmd}

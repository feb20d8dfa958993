"""Building blocks used by several methods: gradient reversal and a domain discriminator."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class _GradientReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward (Ganin & Lempitsky, ICML 2015)."""
    return _GradientReverse.apply(x, coeff)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; set ``coeff`` before each forward."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.coeff)


class DomainDiscriminator(nn.Sequential):
    """MLP from features (n, d) to one domain logit (n,): source = 1, target = 0. Each hidden layer is
    Linear -> BatchNorm (``batch_norm``) -> ReLU -> Dropout (``dropout`` > 0)."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256), batch_norm: bool = True,
                 dropout: float = 0.0) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DomainDiscriminator: dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h)] + ([nn.BatchNorm1d(h)] if batch_norm else []) + [nn.ReLU(inplace=True)]
            layers += [nn.Dropout(dropout)] if dropout > 0 else []
            d = h
        layers.append(nn.Linear(d, 1))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x).squeeze(-1)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, decay: float, buffers: bool = False) -> None:
    """Exponential moving average of weights, in place: theta_T <- decay * theta_T + (1 - decay) * theta_S.

    Frozen student weights (``requires_grad=False``) are copied. With ``buffers``, batch-norm running statistics are copied from the student; by default the
    teacher keeps its own (gathered by its own forward passes).
    """
    for t, s in zip(teacher.parameters(), student.parameters()):
        if s.requires_grad:
            t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
        else:  # frozen: the average of equal weights is the weight itself (without rounding drift)
            t.copy_(s)
    if buffers:
        for t, s in zip(teacher.buffers(), student.buffers()):
            t.copy_(s)

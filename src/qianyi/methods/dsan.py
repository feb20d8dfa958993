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
    r"""DSAN: class-aware (local) MMD between source and target features, with a ramped weight.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(x_i^s), y_i^s\big)
            + \lambda_p\, \hat d_{\mathcal{H}}^2(f^s, f^t),

    .. math::
        \hat d_{\mathcal{H}}^2 = \frac{1}{|\mathcal{C}|}\sum_{c \in \mathcal{C}}
            \Big\| \sum_{i=1}^{n_s} w_{ic}^s\, \phi(f_i^s) - \sum_{j=1}^{n_t} w_{jc}^t\, \phi(f_j^t) \Big\|_{\mathcal{H}}^2,
        \qquad
        w_{ic}^s = \frac{\mathbb{1}[y_i^s = c]}{\sum_k \mathbb{1}[y_k^s = c]}, \quad
        w_{jc}^t = \frac{\hat y_{jc}^t}{\sum_k \hat y_{kc}^t}.

    LMMD (:func:`qianyi.distances.lmmd2`) aligns each class's source and target feature distributions
    instead of the two marginals. :math:`f = ` ``layer`` (default ``features``, the bottleneck);
    :math:`\phi` is the feature map of the DAN kernel family
    :math:`k(a, b) = \frac{1}{|M|}\sum_{m \in M} \exp(-\|a - b\|^2 / 2 m \sigma^2)`,
    :math:`M = \{2^{-2}, \dots, 2^2\}` (``multipliers``), :math:`\sigma^2` the median squared distance
    in the pooled mini-batch, and the norm is computed through the kernel matrix. Source samples are
    weighted by their labels, target samples by the network's own soft predictions
    :math:`\hat y_j^t = \mathrm{softmax}(F(x_j^t))`, held constant (no gradient), so no target label
    is used. :math:`\mathcal{C}` holds the classes present in the source batch and predicted (arg-max)
    for at least one target sample, as in the authors' code. The weight is the progressive ramp
    :math:`\lambda_p = \lambda\,(2 / (1 + e^{-10 p}) - 1)`, :math:`\lambda` = ``trade_off``,
    :math:`p \in [0, 1]` the fraction of training done, as in the paper.

    Departures from the authors' code: it sums the five Gaussian kernels where this one averages them,
    and its base bandwidth is the mean pairwise squared distance in :math:`\exp(-d/b)` where this one uses
    :math:`\exp(-d/(2b))` around the median, so its kernels are narrower: the same trade_off weighs the distance
    several times less here (5.6-6.9 times on random 128-d batches). The default trade_off = 0.5 is the
    authors' value, kept by a selection without target labels (docs/methods.md, "How defaults were
    chosen").

    Inputs: source and target outputs at ``layer``, flattened to ``(n_s, d)`` and ``(n_t, d)``
    (d = 128 for the default LeNet); target logits ``(n_t, C)``; source labels ``(n_s,)``; the
    training progress :math:`p`.

    Grid for ``qianyi select``: trade_off in {0.5, 1, 3}.

    Paper: Yongchun Zhu, Fuzhen Zhuang, Jindong Wang, Guolin Ke, Jingwu Chen, Jiang Bian, Hui Xiong,
    Qing He. "Deep Subdomain Adaptation Network for Image Classification". IEEE Transactions on Neural
    Networks and Learning Systems, 2020 (doi:10.1109/TNNLS.2020.2988928).

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("dsan", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "dsan"
    grid = tuple({"trade_off": v} for v in (0.5, 1.0, 3.0))

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

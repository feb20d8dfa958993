"""DDC: Deep Domain Confusion (Tzeng et al., "Deep Domain Confusion: Maximizing for Domain
Invariance", arXiv:1412.3474, 2014)."""
from __future__ import annotations

import torch

from ..distances import GaussianKernel, linear_mmd2, mmd2
from ..errors import UnknownNameError
from .base import Batch, Method
from .registry import register


@register
class DDC(Method):
    r"""DDC: MMD between source and target features at one adaptation layer, constant weight.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(x_i^s), y_i^s\big)
            + \lambda\, \widehat{\mathrm{MMD}}{}^2\big(\{\phi(x_i^s)\}_{i=1}^{n_s}, \{\phi(x_j^t)\}_{j=1}^{n_t}\big)

    where :math:`\ell` is the cross-entropy of the network :math:`F`, :math:`\phi` the output of
    ``layer`` (default ``features``, the bottleneck) flattened to a vector, and :math:`\lambda` =
    ``trade_off``, constant over training (no ramp). With ``kernel="gaussian"`` (the default) the
    distance is the biased (V-statistic) estimate with one Gaussian kernel
    :math:`k(a, b) = \exp(-\|a - b\|^2 / 2\sigma^2)`:

    .. math::
        \widehat{\mathrm{MMD}}{}^2 = \frac{1}{n_s^2}\sum_{i,i'} k(\phi_i^s, \phi_{i'}^s)
            + \frac{1}{n_t^2}\sum_{j,j'} k(\phi_j^t, \phi_{j'}^t)
            - \frac{2}{n_s n_t}\sum_{i,j} k(\phi_i^s, \phi_j^t),

    with :math:`\sigma^2` the median squared distance between distinct points of the pooled
    mini-batch (median heuristic, recomputed each step, no gradient). With ``kernel="linear"`` (the
    paper's) it is the squared distance between the mean embeddings,
    :math:`\|\frac{1}{n_s}\sum_i \phi_i^s - \frac{1}{n_t}\sum_j \phi_j^t\|^2`.

    Departures from the paper: the paper uses the linear kernel with :math:`\lambda = 0.25`
    (``kernel="linear", trade_off=0.25``), while the default here is the Gaussian kernel with
    :math:`\lambda = 3`, ranked first by a label-free score in a wider search that a target-scored
    benchmark prompted (docs/methods.md, "How defaults were chosen");
    and the paper inserts a new bottleneck whose position and width it picks by MMD, while here the
    backbone's own bottleneck is used.

    Inputs: source and target outputs at ``layer``, flattened to ``(n_s, d)`` and ``(n_t, d)``
    (d = 128 at the default LeNet bottleneck); source logits ``(n_s, C)``; source labels ``(n_s,)``.

    Grid for ``qianyi select``: Gaussian kernel with trade_off in {1, 3, 10}, and the paper's linear
    kernel with trade_off = 0.25.

    Paper: Eric Tzeng, Judy Hoffman, Ning Zhang, Kate Saenko, Trevor Darrell. "Deep Domain Confusion:
    Maximizing for Domain Invariance". arXiv:1412.3474, 2014.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("ddc", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "ddc"
    grid = tuple({"trade_off": v, "kernel": "gaussian"} for v in (1.0, 3.0, 10.0)) + (
        {"trade_off": 0.25, "kernel": "linear"},)

    def __init__(self, trade_off: float = 3.0, layer: str = "features", kernel: str = "gaussian") -> None:
        super().__init__()
        if kernel not in ("linear", "gaussian"):
            raise UnknownNameError(f"ddc: kernel must be 'linear' or 'gaussian', got {kernel!r}")
        self.trade_off, self.layer, self.kernel = trade_off, layer, kernel

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None
        zs, zt = batch.source.flat(self.layer), batch.target.flat(self.layer)
        d = linear_mmd2(zs, zt) if self.kernel == "linear" else mmd2(zs, zt, GaussianKernel(), estimator="biased")
        return {"cls": self.source_ce(batch), "mmd": self.trade_off * d}

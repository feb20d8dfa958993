"""DAN: Deep Adaptation Network (Long et al., "Learning Transferable Features with Deep Adaptation
Networks", ICML 2015)."""
from __future__ import annotations

import torch

from ..distances import MULTI_KERNEL, mk_mmd2
from ..nn import Backbone, LayerOutputs
from .base import Batch, Method
from .registry import register

DEFAULT_LAYERS = ("fc1", "fc2", "logits")  # every task-specific group of qianyi's default backbones


@register
class DAN(Method):
    r"""DAN: multi-kernel MMD between source and target at several layers, with a ramped weight.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(x_i^s), y_i^s\big)
            + \lambda_p \sum_{l \in \mathcal{L}} d_k^2\big(\mathcal{D}_s^l, \mathcal{D}_t^l\big)

    :math:`\mathcal{D}_s^l = \{z_i^{s,l}\}_{i=1}^{n_s}` and :math:`\mathcal{D}_t^l = \{z_j^{t,l}\}_{j=1}^{n_t}`
    are the outputs of layer :math:`l` on the source and target mini-batches (flattened), and
    :math:`\mathcal{L}` = ``layers``: by default every task-specific layer, logits included
    (``fc1, fc2, logits``; the paper's fc6-fc8; on a backbone of your own without those groups, the
    roles ``features, logits``). At each layer the kernel is the mean of a family of
    Gaussians around the median heuristic,

    .. math::
        k(a, b) = \frac{1}{|M|}\sum_{m \in M} \exp\Big(-\frac{\|a - b\|^2}{2\, m\, \sigma_l^2}\Big),
        \qquad M = \{2^{-2}, 2^{-1}, 1, 2, 2^2\}\ (\texttt{multipliers}),

    with :math:`\sigma_l^2` the median squared distance between distinct points of the pooled
    mini-batch at layer :math:`l` (recomputed each step, no gradient), and :math:`d_k^2` is the
    biased (V-statistic) estimate

    .. math::
        d_k^2 = \frac{1}{n_s^2}\sum_{i,i'} k(z_i^s, z_{i'}^s) + \frac{1}{n_t^2}\sum_{j,j'} k(z_j^t, z_{j'}^t)
            - \frac{2}{n_s n_t}\sum_{i,j} k(z_i^s, z_j^t).

    The weight follows the progressive ramp :math:`\lambda_p = \lambda\,(2 / (1 + e^{-10 p}) - 1)`,
    with :math:`\lambda` = ``trade_off`` and :math:`p \in [0, 1]` the fraction of training done.

    Departures from the paper: the family is five Gaussians (``multipliers``), where the paper varies
    the bandwidth from :math:`2^{-8}` to :math:`2^{8}` times the base in steps of :math:`2^{1/2}` (33
    kernels; ``multipliers=tuple(2 ** (k / 2) for k in range(-16, 17))`` gives that family); the kernel
    weights are uniform (:math:`\beta_m = 1/|M|`) instead of optimised for test power; the quadratic biased estimator (>= 0, exactly 0 for identical batches)
    replaces the paper's linear-time unbiased one (``estimator="linear"`` gives that one); and the
    ramp is the schedule Long et al. adopt from DANN in JAN (ICML 2017), not part of DAN. The default
    trade_off = 3 was chosen without target labels (docs/methods.md, "How defaults were chosen").

    Inputs: source and target outputs at each layer in ``layers``, flattened to ``(n_s, d_l)`` and
    ``(n_t, d_l)`` (256, 128 and C for fc1, fc2, logits of the default LeNet); source labels ``(n_s,)``;
    the training progress :math:`p`.

    Grid for ``qianyi select``: trade_off in {0.3, 1, 3, 10}.

    Paper: Mingsheng Long, Yue Cao, Jianmin Wang, Michael I. Jordan. "Learning Transferable Features
    with Deep Adaptation Networks". ICML 2015 (PMLR 37).

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("dan", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "dan"
    grid = tuple({"trade_off": v} for v in (0.3, 1.0, 3.0, 10.0))

    def __init__(self, trade_off: float = 3.0, layers: tuple[str, ...] = DEFAULT_LAYERS,
                 multipliers: tuple[float, ...] = MULTI_KERNEL, estimator: str = "biased") -> None:
        super().__init__()
        self.trade_off, self.layers, self.multipliers = trade_off, tuple(layers), tuple(multipliers)
        self.estimator = estimator
        self.adapted = self.layers

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        """On a backbone of your own without the default groups, adapt the roles ``features`` and ``logits``."""
        if self.layers == DEFAULT_LAYERS and not set(DEFAULT_LAYERS) <= set(backbone.group_names):
            self.adapted = ("features", "logits")

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None
        mmd = sum(mk_mmd2(batch.source.flat(l), batch.target.flat(l), self.multipliers, self.estimator)
                  for l in self.adapted)
        return {"cls": self.source_ce(batch), "mmd": self.trade_off * batch.ramp * mmd}

"""Deep CORAL (Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation",
ECCV 2016 Workshops)."""
from __future__ import annotations

import torch

from ..distances import coral
from .base import Batch, Method
from .registry import register


@register
class DeepCORAL(Method):
    r"""Deep CORAL: match the covariances of source and target activations, constant weight.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(x_i^s), y_i^s\big)
            + \lambda \sum_{l \in \mathcal{L}} \frac{1}{4 d_l^2}\,\big\|C_s^l - C_t^l\big\|_F^2,
        \qquad
        C^l = \frac{1}{n - 1}\big(Z^l - \mathbf{1}\bar z^{l\top}\big)^\top \big(Z^l - \mathbf{1}\bar z^{l\top}\big),

    where :math:`Z^l` is the ``(n, d_l)`` matrix of layer :math:`l`'s activations on one domain's
    mini-batch, :math:`\bar z^l` its column mean, :math:`C^l` the unbiased covariance and
    :math:`\|\cdot\|_F` the Frobenius norm. :math:`\mathcal{L}` = ``layers``, by default ``logits``
    only, the paper's choice (its fc8); :math:`\lambda` = ``trade_off``, constant over training (no
    ramp), as in the paper. The paper sets :math:`\lambda` so that the CORAL and classification
    losses are of one order at the end of training; here the default :math:`\lambda = 1` was chosen
    without target labels (docs/methods.md, "How defaults were chosen").

    Inputs: source and target outputs at each layer in ``layers``, flattened to ``(n_s, d_l)`` and
    ``(n_t, d_l)`` (``logits``: d = C), at least 2 rows each; source labels ``(n_s,)``.

    Grid for ``qianyi select``: trade_off in {0.3, 1, 3, 10}.

    Paper: Baochen Sun, Kate Saenko. "Deep CORAL: Correlation Alignment for Deep Domain Adaptation".
    ECCV 2016 Workshops (TASK-CV), LNCS 9915.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("coral", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "coral"
    grid = tuple({"trade_off": v} for v in (0.3, 1.0, 3.0, 10.0))

    def __init__(self, trade_off: float = 1.0, layers: tuple[str, ...] = ("logits",)) -> None:
        super().__init__()
        self.trade_off, self.layers = trade_off, tuple(layers)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None
        d = sum(coral(batch.source.flat(layer), batch.target.flat(layer)) for layer in self.layers)
        return {"cls": self.source_ce(batch), "coral": self.trade_off * d}

"""MCD: Maximum Classifier Discrepancy (Saito, Watanabe, Ushiku, Harada, "Maximum Classifier
Discrepancy for Unsupervised Domain Adaptation", CVPR 2018)."""
from __future__ import annotations


import torch
import torch.nn.functional as F

from ..errors import DataError
from ..nn import Backbone, LayerOutputs
from .base import Method, ParamGroup, StepContext, fresh_head, split_group
from .registry import register


def discrepancy(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    r"""Mean absolute difference of two classifiers' class probabilities,
    :math:`d(p_1, p_2) = \frac{1}{nK}\sum_{i,k} |p_{1,ik} - p_{2,ik}|` (Saito et al. 2018, eq. 1)."""
    return (p1 - p2).abs().mean()


@register
class MCD(Method):
    r"""MCD: two classifiers disagree on target samples far from the source; the features learn to end that.

    A generator :math:`G` (the backbone's groups up to and including ``split``) feeds two classifiers
    :math:`F_1` (the backbone's groups above ``split``) and :math:`F_2` (a freshly initialised copy).
    Each step makes three updates (the paper's steps A, B, C):

    .. math::

        \text{A:}\ \min_{G, F_1, F_2} L_s, \qquad
        \text{B:}\ \min_{F_1, F_2} L_s - \lambda\, L_{adv}, \qquad
        \text{C:}\ \min_G L_{adv}\ (\text{``num_k`` times})

    with :math:`L_s = \sum_{j=1,2} \frac{1}{n_s}\sum_i \ell(F_j(G(x^s_i)), y^s_i)` and
    :math:`L_{adv} = \frac{1}{n_t}\sum_i d\big(p_1(y|x^t_i), p_2(y|x^t_i)\big)`, :math:`d` the mean
    absolute difference of the softmax outputs; :math:`\lambda` = ``trade_off`` (1 in the paper, which writes
    no weight at all), in step B only: step C is the paper's.
    Predictions come from :math:`F_1` (the backbone).

    Inputs: source and target mini-batches (n, ...), source labels (n,); the classifiers read the
    output of layer group ``split``, by default the group below the bottleneck: ``fc1`` of
    :func:`qianyi.nn.lenet` ((n, 256)) and of the MLP, ``pool`` of a ResNet (the paper's VisDA set-up:
    fully connected classifiers on the pooled features), ``E`` of the text networks.

    Paper: K. Saito, K. Watanabe, Y. Ushiku, T. Harada, "Maximum Classifier Discrepancy for
    Unsupervised Domain Adaptation", CVPR 2018 (num_k = 4 for digits).

    Example::

        >>> import qianyi
        >>> result, fit = qianyi.run("mcd", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "mcd"
    grid = ({"num_k": 4}, {"num_k": 2}, {"num_k": 1})

    def __init__(self, trade_off: float = 1.0, num_k: int = 4, split: str | None = None) -> None:
        super().__init__()
        if num_k < 1:
            raise DataError(f"mcd: num_k (generator updates per step) must be >= 1, got {num_k}")
        self.trade_off, self.num_k, self.split = trade_off, num_k, split

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        names = backbone.group_names
        self._split = split_group(backbone, self.split, "mcd")  # (self.split stays as asked: the run's record)
        self._generator = names[:names.index(self._split) + 1]
        self.classifier2 = fresh_head(backbone, self._split)

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        gen = [g for n, g in backbone.items() if n in self._generator]
        cls = [g for n, g in backbone.items() if n not in self._generator]
        if not gen:
            raise DataError("mcd: every generator layer is frozen; lower --freeze below the split layer")
        return {"generator": gen, "classifiers": [*cls, {"params": list(self.classifier2.parameters())}]}

    def _both(self, out: LayerOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        return out.logits, self.classifier2(out[self._split])

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xs is not None and ys is not None and xt is not None
        # A: both classifiers (and the generator) fit the source
        (source,) = ctx.forward(xs)
        l1, l2 = self._both(source)
        ctx.update({"cls": F.cross_entropy(l1, ys) + F.cross_entropy(l2, ys)})
        # B: classifiers fit the source and disagree on the target
        source, target = ctx.forward(xs, xt)
        (l1, l2), (t1, t2) = self._both(source), self._both(target)
        adv = discrepancy(t1.softmax(1), t2.softmax(1))
        ctx.update({"cls_b": F.cross_entropy(l1, ys) + F.cross_entropy(l2, ys), "disc_b": -self.trade_off * adv},
                   "classifiers")
        # C: the generator makes them agree
        for _ in range(self.num_k):
            (target,) = ctx.forward(xt)
            t1, t2 = self._both(target)
            ctx.update({"disc_c": discrepancy(t1.softmax(1), t2.softmax(1))}, "generator")  # (no lambda: step C)

"""Baselines: training on the source alone, and the target oracle (an upper bound)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Batch, Method
from .registry import register


@register
class SourceOnly(Method):
    r"""No adaptation: minimise the source cross-entropy; target data is never seen in training.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(x_i^s), y_i^s\big)

    :math:`F` is the network (the backbone up to its ``logits``), :math:`\ell` the cross-entropy and
    :math:`\{(x_i^s, y_i^s)\}_{i=1}^{n_s}` the labelled source mini-batch. Every benchmark table
    reports this baseline; a method's "gap closed" is measured from it towards the oracle.

    Inputs: source logits ``(n_s, C)`` and source labels ``(n_s,)``. The engine does not forward the
    target mini-batch at all.

    Paper: none; the standard baseline of every domain-adaptation paper.

    No hyper-parameters, so nothing for ``qianyi select`` to choose.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("source-only", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "source-only"
    uses_target = False

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"cls": self.source_ce(batch)}


@register
class Oracle(Method):
    r"""ORACLE (uses target labels): the same network trained on the labelled target train split.

    .. math::
        \mathcal{L} = \frac{1}{n_t}\sum_{j=1}^{n_t} \ell\big(F(x_j^t), y_j^t\big)

    The cross-entropy of the target mini-batch against its **true labels** :math:`y_j^t`, which no
    adaptation method may see. It is the upper end of the "gap closed" scale, not a method; result
    files and tables mark it as using target labels.

    Inputs: target logits ``(n_t, C)`` and target labels ``(n_t,)``. The engine does not forward the
    source mini-batch.

    Paper: none; the usual "train on target" upper bound.

    No hyper-parameters, so nothing for ``qianyi select`` to choose.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("oracle", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "oracle"
    uses_source = False
    uses_target_labels = True

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.target is not None and batch.target_labels is not None
        return {"cls": F.cross_entropy(batch.target.logits, batch.target_labels)}

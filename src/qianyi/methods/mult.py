"""MULT: supervised multi-task transfer (Mou et al., EMNLP 2016), a level-1 method on the one engine."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nn.backbones import Backbone, LayerOutputs
from .base import Batch, Method, fresh_head
from .registry import register


@register
class Mult(Method):
    r"""MULT (uses target labels): train the target and the source task at once, lower layers shared.

    .. math::
        \mathcal{L} = \lambda\, \ell\big(F(x^t), y^t\big) + (1 - \lambda)\, \ell\big(G(x^s), y^s\big)

    :math:`F` is the network (the backbone up to its ``logits``), scored on the target; :math:`G`
    shares :math:`F`'s layer groups up to and including ``shared`` and has a head of its own above
    them (a freshly initialised copy of :math:`F`'s groups above ``shared``, built in :meth:`setup`).
    ``shared="logits"`` (the default) shares every group, output layer included: one head for both
    tasks, which needs one label set (the Amazon review domains: negative / positive). :math:`\ell` is
    the cross-entropy; :math:`(x^t, y^t)` is a mini-batch of the **labelled target training split**
    (this is supervised transfer: the target labels are part of the protocol, so the engine hands
    them over as to the oracle, and results say so), :math:`(x^s, y^s)` a labelled source mini-batch.
    Both go through the backbone in one forward pass (batch norm sees them together).

    A run's "source accuracy" (and ``source_val_acc``) is the predicting network's, :math:`F`, on the
    engine's validation split: ``qianyi layers`` makes that T's validation split and chooses :math:`\lambda`
    by it. With a head of its own for the source task (``shared`` below ``logits``) it is therefore not the
    source task's accuracy on S.

    ``lam`` = 1 is target-only training (the source term is left out, not just weighted 0);
    ``lam`` = 0 trains on the source only. ``qianyi layers`` chooses :math:`\lambda` from a grid on the
    target validation split, never the test split.

    With ``init_from`` (TrainConfig) the shared groups can start from a source-trained network:
    that is Mou et al.'s INIT+MULT.

    Paper: Mou, Meng, Yan, Li, Xu, Zhang & Jin, "How Transferable are Neural Networks in NLP
    Applications?", EMNLP 2016.
    """

    name = "mult"
    uses_target_labels = True
    bounds = {"lam": (0.0, 1.0)}

    def __init__(self, lam: float = 0.5, shared: str = "logits") -> None:
        super().__init__()
        self.lam = lam
        self.shared = shared
        self.source_head: torch.nn.Module | None = None

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        names = backbone.group_names
        if self.shared not in names:
            raise ConfigError(f"mult: shared={self.shared!r} is not a layer group of this network; "
                              f"use one of {list(names)} (the highest group both tasks share)")
        if self.shared != names[-1]:
            self.source_head = fresh_head(backbone, self.shared)

    def source_logits(self, batch: Batch) -> torch.Tensor:
        """The source task's logits: the backbone's own, or the source head's on the shared group's output."""
        assert batch.source is not None
        if self.source_head is None:
            return batch.source.logits
        return self.source_head(batch.source[self.shared])

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.target is None or batch.target_labels is None:
            raise ConfigError("mult needs labelled target batches (the engine gives them to methods that "
                              "declare uses_target_labels)")
        terms = {"target": self.lam * F.cross_entropy(batch.target.logits, batch.target_labels)}
        if self.lam < 1:
            terms["source"] = (1.0 - self.lam) * F.cross_entropy(self.source_logits(batch), batch.source_labels)
        return terms

"""Baselines: training on the source alone, and the target oracle (an upper bound)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Batch, Method
from .registry import register


@register
class SourceOnly(Method):
    """No adaptation: minimise the source cross-entropy; target data is never seen in training."""

    name = "source-only"
    uses_target = False

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"cls": self.source_ce(batch)}


@register
class Oracle(Method):
    """ORACLE (uses target labels): the same network trained on the labelled target train split."""

    name = "oracle"
    uses_source = False
    uses_target_labels = True

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.target is not None and batch.target_labels is not None
        return {"cls": F.cross_entropy(batch.target.logits, batch.target_labels)}

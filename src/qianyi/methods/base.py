"""What a method is: named loss terms (and any extra modules) computed from one step's outputs.

The engine (:mod:`qianyi.train`) does everything else: batches, forward passes, optimiser,
schedules, seeding, checkpoints. A new method is one small file in this package::

    @register
    class MyMethod(Method):
        '''One line. Paper reference. The loss as an equation.'''
        name = "my-method"
        def __init__(self, trade_off: float = 1.0):
            super().__init__()
            self.trade_off = trade_off
        def loss(self, batch):
            return {"cls": self.source_ce(batch), "align": self.trade_off * batch.ramp * ...}

Hyper-parameters are the keyword arguments of ``__init__``, stored under the same names; the
CLI's ``--set name=value`` and the result files read them from the signature.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.backbones import Backbone, LayerOutputs
from ..schedules import adaptation_ramp


@dataclass
class Batch:
    """What a method sees at one training step.

    ``source`` / ``target`` are the backbone's outputs on the two mini-batches (None for a domain
    the method does not use). ``target_labels`` is None unless the method declares
    ``uses_target_labels`` (the oracle). ``progress`` runs from 0 to 1 over training.
    ``source_inputs`` / ``target_inputs`` are the mini-batches themselves (for reconstruction terms).
    """

    source: LayerOutputs | None
    target: LayerOutputs | None
    source_labels: torch.Tensor | None
    target_labels: torch.Tensor | None
    progress: float
    source_inputs: torch.Tensor | None = None
    target_inputs: torch.Tensor | None = None

    @property
    def ramp(self) -> float:
        """The adaptation-weight ramp 2 / (1 + exp(-10 p)) - 1 at this step."""
        return adaptation_ramp(self.progress)


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`loss`; see the module docstring."""

    name: ClassVar[str] = ""
    #: Which inputs the engine forwards and hands over.
    uses_source: ClassVar[bool] = True
    uses_target: ClassVar[bool] = True
    #: True only for the oracle: it trains on target labels, and results say so.
    uses_target_labels: ClassVar[bool] = False

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        """Build extra modules once the backbone is known (``sample_batch``: its outputs on a few inputs)."""

    def corrupt_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the encoder sees them in training (identity here). A denoising method overrides
        it; ``Batch.*_inputs`` stay the clean ones. Use the global RNG: the engine checkpoints it,
        so a resumed run draws the same noise."""
        return x

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named loss terms, weights applied; the engine minimises their sum and logs each."""
        raise NotImplementedError

    @staticmethod
    def source_ce(batch: Batch) -> torch.Tensor:
        """Cross-entropy of the source predictions: the supervised term every method keeps."""
        assert batch.source is not None and batch.source_labels is not None
        return F.cross_entropy(batch.source.logits, batch.source_labels)

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def hparam_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {k: p.default for k, p in sig.parameters.items()
                if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def hparams(self) -> dict[str, Any]:
        out = {}
        for k in self.hparam_defaults():
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

"""What a validator may see, and the model outputs every validator shares.

:class:`SelectionData` holds the labelled source train and validation splits and the *unlabelled*
target train split; it refuses target labels, and nothing in it (or in :class:`Predictions`) holds
the target test split. :meth:`Predictions.compute` runs a model once over the splits the chosen
validators need, so that several validators score one model from one set of outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch
from torch import nn

from ..data.domain import Domain
from ..errors import DataError, TrainingError, UnknownNameError
from ..nn.inference import predict_features

if TYPE_CHECKING:
    from ..data.domain import TransferTask

#: The splits a validator may declare in ``needs``, in the order they are stored and seeded.
SPLITS: tuple[str, ...] = ("source", "source_val", "target")


@dataclass(frozen=True, eq=False)
class SelectionData:
    """What a validator may see: labelled source train and validation, the unlabelled target train split."""

    source: Domain
    source_val: Domain
    target: Domain

    def __post_init__(self) -> None:
        for split in ("source", "source_val"):
            d = getattr(self, split)
            if not isinstance(d, Domain):
                raise DataError(f"SelectionData.{split} must be a Domain, got {type(d).__name__}")
            if not d.labelled:
                raise DataError(f"SelectionData.{split} ({d.name!r}) has no labels; validators need a labelled "
                                "source train and validation split")
        if not isinstance(self.target, Domain):
            raise DataError(f"SelectionData.target must be a Domain, got {type(self.target).__name__}")
        if self.target.y is not None:
            raise DataError(f"SelectionData.target ({self.target.name!r}) carries labels, but validators never see "
                            "target labels; build it with SelectionData.from_task(task), which drops them")

    @classmethod
    def from_task(cls, task: "TransferTask") -> "SelectionData":
        """The selection view of ``task``: its source splits and its target train split without labels.

        ``task.target_test`` is never read.
        """
        return cls(task.source, task.source_val, task.target.replace(y=None))

    def __repr__(self) -> str:
        return (f"SelectionData(source={len(self.source)}, source_val={len(self.source_val)}, "
                f"target={len(self.target)} unlabelled)")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass(eq=False)
class SplitOutputs:
    """A model's outputs on (a subsample of) one split, float64."""

    features: np.ndarray  # (n, d): the model's bottleneck ("features" layer), flattened
    logits: np.ndarray  # (n, k)
    labels: np.ndarray | None = None  # None for the target

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float64)
        self.logits = np.asarray(self.logits, dtype=np.float64)
        if self.logits.ndim != 2 or self.features.ndim != 2 or len(self.features) != len(self.logits):
            raise DataError(f"SplitOutputs: features {self.features.shape} and logits {self.logits.shape} must be "
                            "2-d with one row per sample")
        for name, a in (("logits", self.logits), ("features", self.features)):
            if not np.isfinite(a).all():
                row = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
                raise DataError(f"SplitOutputs: the {name} hold NaN or inf (first in row {row}); a model that "
                                "outputs them cannot be scored: look for a diverged run")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (len(self.logits),):
                raise DataError(f"SplitOutputs: {len(self.logits)} rows but labels of shape {self.labels.shape}")
            k = self.logits.shape[1]
            if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= k):
                bad = int(self.labels[(self.labels < 0) | (self.labels >= k)][0])
                raise DataError(f"SplitOutputs: label {bad} is not a class index of the {k} logits (0..{k - 1})")

    def __len__(self) -> int:
        return len(self.logits)

    @cached_property
    def log_probs(self) -> np.ndarray:
        """Log-softmax of the logits (computed stably)."""
        return _log_softmax(self.logits)

    @cached_property
    def probs(self) -> np.ndarray:
        """Softmax of the logits (computed stably)."""
        return np.exp(self.log_probs)

    @property
    def predictions(self) -> np.ndarray:
        """Argmax class of each row."""
        return self.logits.argmax(axis=1)

    def cross_entropy(self) -> np.ndarray:
        """Per-row cross-entropy against the labels (labelled splits only)."""
        labels = self.require_labels()
        return -self.log_probs[np.arange(len(labels)), labels]

    def accuracy(self) -> float:
        """Share of rows whose argmax equals the label (labelled splits only)."""
        return float((self.predictions == self.require_labels()).mean())

    def require_labels(self) -> np.ndarray:
        if self.labels is None:
            raise DataError("these outputs have no labels (target outputs never do)")
        return self.labels


def _subsample(n: int, max_samples: int | None, seed: int, split: str) -> np.ndarray:
    """Row indices of ``split``: all of them, or ``max_samples`` drawn without replacement (sorted).

    The generator is seeded by (seed, split), so a split's rows do not depend on which other splits
    are computed alongside it.
    """
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    if max_samples < 1:
        raise DataError(f"max_samples must be a positive number of rows (or None for all), got {max_samples}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def check_needs(needs: Iterable[str]) -> frozenset[str]:
    needs = frozenset(needs)
    unknown = sorted(needs - set(SPLITS))
    if unknown:
        raise UnknownNameError(f"unknown split(s) {unknown}; a validator may need only {list(SPLITS)}")
    return needs


@dataclass(eq=False)
class Predictions:
    """A model's outputs on the splits some validators need; a split not needed is None."""

    source: SplitOutputs | None
    source_val: SplitOutputs | None
    target: SplitOutputs | None
    seed: int = 0  # the seed the subsamples were drawn with; validators that fit something reuse it
    #: Intermediate results several validators share (e.g. DEV's and IWV's importance weights).
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.target is not None and self.target.labels is not None:
            raise DataError("Predictions.target must not carry labels: validators never see target labels")

    def get(self, split: str) -> SplitOutputs:
        """The outputs of ``split``; a clear error if they were not computed."""
        check_needs([split])
        out = getattr(self, split)
        if out is None:
            raise DataError(f"no outputs for split {split!r}: compute the Predictions with needs including "
                            f"{split!r} (a validator's needs declare this)")
        return out

    @classmethod
    def compute(cls, model: nn.Module, data: SelectionData, needs: Iterable[str] = SPLITS,
                device: torch.device | str = "cpu", layer: str = "features", max_samples: int | None = 2000,
                seed: int = 0) -> "Predictions":
        """Run ``model`` (eval mode; its mode is restored) on each needed split of ``data``.

        Each split is subsampled to at most ``max_samples`` rows (None: all), by a generator fixed per
        (``seed``, split), so the result is deterministic.
        """
        if not isinstance(data, SelectionData):
            raise DataError(f"validators take a SelectionData, got {type(data).__name__}; "
                            "use SelectionData.from_task(task), which leaves out target labels and the test split")
        needs = check_needs(needs)
        out: dict[str, SplitOutputs | None] = {}
        for split in SPLITS:
            if split not in needs:
                out[split] = None
                continue
            domain: Domain = getattr(data, split)
            idx = _subsample(len(domain), max_samples, seed, split)
            feats, logits = predict_features(model, domain.X[idx], layer, device)
            if not (torch.isfinite(feats).all() and torch.isfinite(logits).all()):
                raise TrainingError(f"the network's outputs on {split} ({domain.name!r}) are NaN or infinite: the run "
                                    "diverged. Lower --lr or the method's weights (--set trade_off=...)")
            labels = None if split == "target" else domain.y[idx]
            out[split] = SplitOutputs(feats.double().numpy(), logits.double().numpy(), labels)
        return cls(out["source"], out["source_val"], out["target"], seed=seed)

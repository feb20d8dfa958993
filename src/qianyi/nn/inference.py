"""Inference helpers: logits, features and accuracy of a model in eval mode, in batches, without gradients."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..data.domain import Domain
from ..data.lazy import is_lazy
from ..errors import DataError, TrainingError


#: Batch size for inputs decoded on demand (a streamed image folder), whatever the caller asked for.
LAZY_BATCH = 128


def _batched(X: object, batch_size: int) -> tuple[object, int]:
    """Arrays become one tensor (a view with negative or uneven strides, ``X[::-1]``, ``np.flip``, is copied
    first: torch refuses negative strides); inputs decoded on demand stay as they are and are read in small
    batches."""
    if is_lazy(X):
        return X, min(batch_size, LAZY_BATCH)
    return torch.as_tensor(X if isinstance(X, torch.Tensor) else np.ascontiguousarray(X)), batch_size


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Within: ``modules`` in eval mode (no dropout, batch-norm running statistics); afterwards every submodule
    gets its own mode back, also after an error (a frozen layer group kept in eval mode stays so: ``train(True)``
    on the whole would switch it back on)."""
    modes = [(sub, sub.training) for m in modules for sub in m.modules()]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError: 2.5+


def forward(model: nn.Module, x: torch.Tensor):  # noqa: ANN201 (the network's LayerOutputs)
    """``model(x)``; inputs of a shape the network cannot read give an error that says so (not a matrix
    product's message)."""
    try:
        return model(x)
    except RuntimeError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, _OUT_OF_MEMORY) or not any(
                w in msg for w in ("shape", "size", "expected input", "channels", "dimension")):
            raise
        raise DataError(f"the network cannot read inputs of shape {tuple(x.shape[1:])} ({msg}); give inputs in the "
                        "form it was trained on (a saved model: SavedModel.prepare(data) applies its run's "
                        "preprocessing), or, inside a run of a network of your own, check its forward") from exc


def _as_input(model: nn.Module, x: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch on ``device``; floating inputs in the network's floating type (float64 arrays, pandas' and numpy's
    default, met a float32 network with a dtype error); token ids as they are."""
    t = torch.as_tensor(x).to(device)
    if t.is_floating_point():
        p = next((p for p in model.parameters() if p.is_floating_point()), None)
        if p is not None and p.dtype != t.dtype:
            t = t.to(p.dtype)
    return t


def iter_logits(model: nn.Module, X: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                batch_size: int = 1024) -> Iterator[torch.Tensor]:
    """:func:`predict_logits` one batch at a time (float32, on the CPU): the same batches, so the same numbers,
    without holding every row's logits (the caller uses each batch, then drops it)."""
    X, batch_size = _batched(X, batch_size)
    with evaluating(model):
        for i in range(0, len(X), batch_size):
            with torch.no_grad():  # (not around the yield: the caller's code between batches keeps its own mode)
                logits = forward(model, _as_input(model, X[i:i + batch_size], device)).logits.float().cpu()
            yield logits


def predict_logits(model: nn.Module, X: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``X`` in eval mode (restores the previous mode)."""
    return torch.cat(list(iter_logits(model, X, device, batch_size)))


@torch.no_grad()
def predict_features(model: nn.Module, X: np.ndarray | torch.Tensor, layer: str = "features",
                     device: torch.device | str = "cpu", batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(flattened outputs of ``layer``, logits) of ``model`` on ``X`` in eval mode (restores the previous mode)."""
    X, batch_size = _batched(X, batch_size)
    feats, logits = [], []
    with evaluating(model):
        for i in range(0, len(X), batch_size):
            out = forward(model, _as_input(model, X[i:i + batch_size], device))
            feats.append(out.flat(layer).float().cpu())
            logits.append(out.logits.float().cpu())
    return torch.cat(feats), torch.cat(logits)


def accuracy(model: nn.Module, domain: Domain, device: torch.device | str = "cpu") -> float:
    """Share of ``domain``'s samples whose argmax prediction equals the label."""
    if domain.y is None:
        raise DataError(f"domain {domain.name!r} has no labels to score")
    pred = finite_logits(model, domain, device).argmax(1).numpy()
    return float((pred == domain.y).mean())


def finite_logits(model: nn.Module, domain: Domain, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits of ``model`` on ``domain``; a network whose outputs are NaN or infinite is a diverged run,
    never scored (an argmax of NaN would report chance level as if it were a result)."""
    logits = predict_logits(model, domain.X, device)
    if not torch.isfinite(logits).all():
        raise TrainingError(f"the network's outputs on {domain.name!r} are NaN or infinite: the run diverged. "
                            "Lower --lr or the method's weights (--set trade_off=...)")
    return logits


def class_report(model: nn.Module, domain: Domain, n_classes: int, device: torch.device | str = "cpu"
                 ) -> dict[str, object]:
    """Accuracy, balanced accuracy, per-class accuracy (recall; None for a class with no samples) and
    the confusion matrix (rows: true class, columns: predicted) of ``model`` on labelled ``domain``."""
    if domain.y is None:
        raise DataError(f"domain {domain.name!r} has no labels to score")
    return report_from_predictions(domain.y, finite_logits(model, domain, device).argmax(1).numpy(), n_classes)


def report_from_predictions(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, object]:
    """:func:`class_report`'s numbers for predicted class indices ``pred`` of labels ``y``."""
    y, pred = np.asarray(y), np.asarray(pred)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (y, pred), 1)
    support = confusion.sum(1)
    per_class = [float(confusion[k, k] / support[k]) if support[k] else None for k in range(n_classes)]
    present = [a for a in per_class if a is not None]
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(present)),
            "per_class_accuracy": per_class, "confusion": confusion.tolist()}

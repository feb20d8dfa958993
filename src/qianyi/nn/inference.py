"""Inference helpers: logits, features and accuracy of a model in eval mode, in batches, without gradients."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.domain import Domain
from ..errors import DataError


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``X`` in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    X = torch.as_tensor(X)
    out = []
    try:
        for i in range(0, len(X), batch_size):
            out.append(model(X[i:i + batch_size].to(device)).logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def predict_features(model: nn.Module, X: np.ndarray | torch.Tensor, layer: str = "features",
                     device: torch.device | str = "cpu", batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(flattened outputs of ``layer``, logits) of ``model`` on ``X`` in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    X = torch.as_tensor(X)
    feats, logits = [], []
    try:
        for i in range(0, len(X), batch_size):
            out = model(X[i:i + batch_size].to(device))
            feats.append(out.flat(layer).float().cpu())
            logits.append(out.logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(feats), torch.cat(logits)


def accuracy(model: nn.Module, domain: Domain, device: torch.device | str = "cpu") -> float:
    """Share of ``domain``'s samples whose argmax prediction equals the label."""
    if domain.y is None:
        raise DataError(f"domain {domain.name!r} has no labels to score")
    pred = predict_logits(model, domain.X, device).argmax(1).numpy()
    return float((pred == domain.y).mean())

r"""Local (class-conditional) MMD, LMMD (Zhu et al., "Deep Subdomain Adaptation Network for Image
Classification", IEEE TNNLS 2020).

For a source sample :math:`\{x_i\}_{i=1}^m` with labels :math:`y_i` and a target sample
:math:`\{z_j\}_{j=1}^n` with class probabilities :math:`p_{jc}`, each class :math:`c` gets a weighted
mean embedding per domain, with weights :math:`w^s_{ic} = 1[y_i=c] / \sum_k 1[y_k=c]` and
:math:`w^t_{jc} = p_{jc} / \sum_k p_{kc}`, and

.. math::
    \hat d^2 = \frac{1}{|\mathcal C|}\sum_{c\in\mathcal C}
    \Big\|\sum_i w^s_{ic}\,\phi(x_i) - \sum_j w^t_{jc}\,\phi(z_j)\Big\|^2_{\mathcal H}
    = \frac{1}{|\mathcal C|}\,\mathrm{tr}\big(W^\top K W\big),
    \qquad W = \begin{bmatrix} W^s \\ -W^t \end{bmatrix},

with :math:`K` the kernel matrix of the pooled sample. :math:`\mathcal C` holds the classes present
in the source batch that are also predicted (arg-max) for at least one target sample, as in the
authors' implementation: a class absent from either side has no conditional distribution to align.
The estimate is >= 0 (K is positive semi-definite) and exactly 0 when both sides hold the same
points with target probabilities equal to the source labels.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .mmd import GaussianKernel, MULTI_KERNEL, _as_2d, _centred, _full_float, full_precision, kernel_mean, multi_kernel, sq_dists


def class_weights(source_labels: torch.Tensor, target_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-class weight matrices (W^s (m, |C|), W^t (n, |C|)) of the module docstring; no gradient."""
    with torch.no_grad():
        n_classes = target_probs.shape[1]
        onehot = torch.nn.functional.one_hot(source_labels.long(), n_classes).to(target_probs.dtype)
        present = (onehot.sum(0) > 0) & (torch.bincount(target_probs.argmax(1), minlength=n_classes) > 0)
        ws, wt = onehot[:, present], target_probs[:, present]
        ws = ws / ws.sum(0, keepdim=True)
        wt = wt / wt.sum(0, keepdim=True).clamp_min(torch.finfo(wt.dtype).tiny)
        return ws, wt


def lmmd2(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, source_labels: torch.Tensor | np.ndarray,
          target_probs: torch.Tensor | np.ndarray, kernel: GaussianKernel | None = None) -> torch.Tensor:
    """LMMD^2 between source ``x`` (m, d) with integer ``source_labels`` (m,) and target ``y`` (n, d)
    with class probabilities ``target_probs`` (n, C); see the module docstring.

    The kernel defaults to the DAN family (Gaussians at 2^-2..2^2 x the median heuristic). Labels and
    probabilities only weight the samples: no gradient flows into them (as in DSAN, where the target
    pseudo-labels are constants). Returns 0 when no class is on both sides.

    >>> x = torch.randn(40, 3); lab = torch.arange(40) % 2
    >>> float(lmmd2(x, x, lab, torch.nn.functional.one_hot(lab).float())) < 1e-6
    True
    """
    with full_precision(x, y):
        return _lmmd2(x, y, source_labels, target_probs, kernel)


def _lmmd2(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, source_labels: torch.Tensor | np.ndarray,
           target_probs: torch.Tensor | np.ndarray, kernel: GaussianKernel | None) -> torch.Tensor:
    X, Y = _as_2d(x, "x", "LMMD"), _as_2d(y, "y", "LMMD")
    X, Y = _full_float(X, Y)
    labels = torch.as_tensor(source_labels, device=X.device)
    probs = torch.as_tensor(target_probs, device=X.device)
    atol = 0.05 if probs.dtype in (torch.float16, torch.bfloat16) else 1e-3  # a 16-bit softmax sums to 1 loosely
    probs = probs.to(X.dtype)
    if X.shape[1] != Y.shape[1]:
        raise DataError(f"LMMD: samples have {X.shape[1]} and {Y.shape[1]} features; they must match")
    if labels.ndim != 1 or len(labels) != len(X) or labels.dtype.is_floating_point:
        raise DataError(f"LMMD: source_labels must be integer class indices, one per source row ({len(X)}); "
                        f"got shape {tuple(labels.shape)} and dtype {labels.dtype}")
    if probs.ndim != 2 or len(probs) != len(Y):
        raise DataError(f"LMMD: target_probs must be (n_target, n_classes) = ({len(Y)}, C), got {tuple(probs.shape)}; "
                        "pass softmax(logits), not labels")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= probs.shape[1]):
        raise DataError(f"LMMD: source labels span {int(labels.min())}..{int(labels.max())} but target_probs has "
                        f"{probs.shape[1]} classes")
    finite = bool(torch.isfinite(probs).all())
    if not finite and not (X.requires_grad or Y.requires_grad):  # (in training a NaN loss is the engine's to name)
        raise DataError("LMMD: target_probs hold NaN or infinite values; give finite class probabilities")
    if finite and len(probs) and (bool((probs < 0).any()) or not torch.allclose(
            probs.sum(1), probs.new_ones(len(probs)), atol=atol)):
        raise DataError("LMMD: target_probs must be class probabilities (rows >= 0 summing to 1): pass "
                        "softmax(logits), not the logits themselves")
    ws, wt = class_weights(labels, probs)
    if ws.shape[1] == 0:
        return X.new_zeros(())
    kernel = kernel or multi_kernel(MULTI_KERNEL)
    X, Y = _centred(X, Y)  # far-from-0 features kept exact (see mmd._centred)
    z = torch.cat([X, Y])
    d = sq_dists(z, z)  # once: for the median bandwidth and for the kernel
    K = kernel_mean(d, kernel.sigmas2_from(d), kernel.multipliers)
    W = torch.cat([ws, -wt])
    return (W * (K @ W)).sum() / W.shape[1]

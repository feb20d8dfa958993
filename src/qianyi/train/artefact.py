"""A saved model that describes itself: ``DIR/model.pt`` (the predicting network's weights, a plain
state dict read with ``weights_only=True``) and ``DIR/model.json`` (how to rebuild the network and
feed it: architecture (``default``, ``custom`` or a named backbone such as ``resnet18`` with its
bottleneck width and input channels), input shape, the preprocessing the run applied, class names, method and
settings, qianyi version).

>>> m = load_model("runs/dann")                      # doctest: +SKIP
>>> m.predict(m.prepare("digits"))                   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._io import rerun_command, sha256_file, unsearchable, write_json
from ..data.domain import Domain, TransferTask, _is_pandas, _whole_numbers, align_labels, refuse_sparse_matrix
from ..errors import DataError, LabelMismatchError, QianyiWarning, UnknownNameError
from ..nn.backbones import Backbone, default_network_generation
from ..nn.resnet import BACKBONES, rebuild
from ..nn.inference import iter_logits, predict_logits
from .checkpoint import save_tensors, unreadable_reason
from .weights import labelled_data_digest
from .engine import caller_rng_kept
from .result import MODEL_FILE, not_read

META_FILE = "model.json"
FORMAT = 1


def save_model(out: Path, net: nn.Module, task: TransferTask, method: str, hparams: dict[str, Any],
               custom_backbone: bool = False, backbone_spec: dict[str, Any] | None = None,
               network_spec: dict[str, Any] | None = None) -> str:
    """Write ``model.pt`` and ``model.json`` into ``out``; return model.pt's SHA-256.

    ``backbone_spec`` (a named backbone's ``spec``, e.g. ``{"name": "resnet18", "bottleneck": 256}``)
    is recorded so that :func:`load_model` rebuilds the network without its pretrained weights file;
    ``network_spec``: the method predicts with a network of its own (:meth:`Method.network_spec`).
    """
    if network_spec is None and not isinstance(net, Backbone):
        warnings.warn(f"{method} predicts with a {type(net).__name__}, which model.json cannot describe (it records "
                      "the backbone's architecture): load_model and `qianyi predict` will not rebuild it; the method "
                      "should define network_spec() and saved_network() (docs/design.md)", QianyiWarning,
                      stacklevel=3)
    save_tensors(out / MODEL_FILE, net.state_dict())
    digest = sha256_file(out / MODEL_FILE)
    classes = task.source.class_names or tuple(str(i) for i in range(task.n_classes))
    arch: dict[str, Any] = ({"backbone": "custom"} if custom_backbone else
                            {"backbone": "default", "generation": default_network_generation(
                                task.sample_shape, bool((task.preprocessing or {}).get("counts")))})
    if backbone_spec is not None:
        arch = {"backbone": backbone_spec["name"],
                **{k: v for k, v in backbone_spec.items() if k != "name"},
                "in_channels": task.sample_shape[0] if len(task.sample_shape) == 3 else None}
    if network_spec is not None:
        arch = {"backbone": "method", **network_spec}
    preprocessing = json.loads(json.dumps(task.preprocessing or {}))  # as model.json holds it (tuples as lists)
    write_json(out / META_FILE, {
        "format": FORMAT, "weights": MODEL_FILE, "weights_sha256": digest,
        "architecture": {**arch, "sample_shape": list(task.sample_shape), "n_classes": task.n_classes},
        "preprocessing": preprocessing, "preprocessing_sha256": preprocessing_digest(preprocessing),
        "class_names": list(classes),
        # names sorted from text labels (Domain.sorted_names): refused against unnamed class indices in predict
        "class_names_sorted": bool(task.source.sorted_names),
        "method": method, "hparams": hparams, "source": task.source.name, "target": task.target.name,
        # the labelled data it was trained on: --init-from refuses it for a task whose target they are
        "source_origin": task.source.origin, "source_data": labelled_data_digest(task),
        "qianyi": __version__, "torch": torch.__version__,
        "cwd": os.getcwd(),  # what relative file specs in source/target were relative to
    })
    return digest


@dataclass
class SavedModel:
    """A network with what it needs to predict on new data exactly as in its run."""

    network: nn.Module
    meta: dict[str, Any]
    path: Path

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["architecture"]["sample_shape"])

    def prepare(self, data: np.ndarray | Domain | str | os.PathLike,
                data_dir: str | os.PathLike | None = None) -> Domain:
        """Raw data in the model's input form, exactly as its run read it: a spec (``"digits"``,
        ``"csv:new.csv"``) or a file path (``Path("new.csv")``, :func:`qianyi.data.tasks.as_spec`) is read
        (:func:`load_domain_for`); an array or a Domain of raw features (as read from
        the files) gets the recorded preprocessing (column order, image canvas, vector transform and
        standardisation, text vocabulary); a pandas DataFrame's columns are matched by name, as the run's CSV
        columns were. Images are pixels (scaled as the readers scale them), except for a model of the UCI digits'
        8x8 protocol, which reads 8x8 whole numbers 0..16 as the digits files hold them (block counts, /16:
        ``load_digits().images``). Labels, if any, are mapped to the model's classes."""
        if isinstance(data, (str, os.PathLike)):
            return load_domain_for(self, data, data_dir)
        from ..data.readers import scale_images, to_nchw
        from ..data.tasks import match_features, prepare

        pre = self.meta.get("preprocessing") or {}
        if not isinstance(data, Domain):
            columns = getattr(data, "columns", None)  # a pandas DataFrame: its column names, matched by name
            names = (tuple(columns) if columns is not None and len(columns)
                     and all(isinstance(c, str) for c in columns) else None)
            refuse_sparse_matrix(data, "the inputs to prepare")
            # a DataFrame as it is: Domain reads its bool and nullable columns as numbers and names any other
            X = data if _is_pandas(data, ndim=2) else np.asarray(data)
            if X.ndim >= 3 and X.dtype != object and X.size:  # images as the readers take them: pixels, any layout
                X = to_nchw(X, "inputs")
                X = _uci_counts(X) if _reads_uci(pre) and _are_uci_counts(X) else scale_images(X, "inputs")
            data = Domain(X, None, "inputs", feature_names=names)
        if pre.get("feature_names") is not None:  # the columns in the run's order before judging them
            data = match_features(pre["feature_names"], data, "the model's inputs")
        if _looks_raw(data.X, pre, reverse=True):
            warnings.warn(f"{data.name!r} looks prepared already (its columns have the means and scales the run "
                          "standardised its inputs to): prepare standardises it a second time; give raw data (as "
                          "read from the files), or predict on these inputs as they are", QianyiWarning, stacklevel=2)
        return _to_model_classes(self, prepare(data, pre))

    def predict_proba(self, X: np.ndarray | Domain, device: str | torch.device | None = None) -> np.ndarray:
        """Class probabilities for inputs already in the model's input form: read raw data with
        :meth:`prepare` (a spec, raw arrays or a Domain) first. Vectors that look raw (far from the column means
        and scales the run standardised its inputs to) are warned about. ``device``: where to compute (default:
        where the network is; ``load_model`` puts it on the CPU)."""
        d, device = self._checked(X, device)
        logits = predict_logits(self.network.to(device), d.X, device)
        return torch.softmax(logits, 1).cpu().numpy()

    def iter_proba(self, X: np.ndarray | Domain, device: str | torch.device | None = None) -> Iterator[np.ndarray]:
        """:meth:`predict_proba`'s rows a batch at a time, in order (the same numbers): the inputs are checked
        (and warned about) here, before the first batch; each batch is computed when asked for, so a caller that
        writes each one and drops it never holds every row's probabilities."""
        d, device = self._checked(X, device)
        network = self.network.to(device)
        return (torch.softmax(logits, 1).cpu().numpy() for logits in iter_logits(network, d.X, device))

    def _checked(self, X: np.ndarray | Domain, device: str | torch.device | None) -> tuple[Domain, str | torch.device]:
        """``X`` as a Domain the network reads, and the device to compute on; refusals and warnings as
        :meth:`predict_proba` documents."""
        d = X if isinstance(X, Domain) else Domain(X, None, "inputs")
        pre = self.meta.get("preprocessing") or {}
        names = pre.get("feature_names")
        if names is not None and d.feature_names is not None and tuple(d.feature_names) != tuple(names):
            raise DataError(f"{d.name!r} has columns {list(d.feature_names)[:5]}..., the model reads "
                            f"{list(names)[:5]}...: read it with model.prepare(domain), which orders them as the run did")
        if d.is_image and isinstance(d.X, np.ndarray) and d.X.size and (d.X.max() > 1.05 or d.X.min() < -0.05):
            warnings.warn(f"{d.name!r} holds pixels from {float(d.X.min()):g} to {float(d.X.max()):g}, but the model "
                          "reads images scaled to [0, 1] as the readers scale them; pass model.prepare(X)",
                          QianyiWarning, stacklevel=2)
        if _looks_raw(d.X, pre):
            warnings.warn(f"{d.name!r} looks like raw features (its columns are far from the means and scales the run "
                          "standardised its inputs to), so predictions on it are wrong; pass "
                          "model.prepare(X) (or read the file with model.prepare(SPEC))", QianyiWarning, stacklevel=2)
        if d.sample_shape != self.sample_shape:
            raise DataError(f"{d.name!r} has samples of shape {d.sample_shape}, the model expects {self.sample_shape}; "
                            "read raw data with qianyi.train.artefact.load_domain_for (or `qianyi predict`), which "
                            "applies the run's preprocessing")
        if device is None:
            device = next(iter(self.network.parameters()), torch.empty(0)).device
        return d, device

    def predict(self, X: np.ndarray | Domain, device: str | torch.device | None = None) -> np.ndarray:
        """Class indices (into :attr:`class_names`)."""
        return self.predict_proba(X, device).argmax(1)


def _reads_uci(preprocessing: dict) -> bool:
    """Whether the model's images are on the UCI digits' 8x8 block-count canvas."""
    canvas = preprocessing.get("canvas")
    return isinstance(canvas, dict) and canvas.get("protocol") == "uci"


def _are_uci_counts(X: np.ndarray) -> bool:
    """Whether (n, c, h, w) ``X`` holds 8x8 UCI block counts as the digits files do: whole numbers 0..16, not all
    within [0, 1] (those are counts already divided by 16, or pixels)."""
    if X.shape[2:] != (8, 8) or not np.issubdtype(X.dtype, np.number):
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.isfinite(X).all() and X.min() >= 0 and 1 < X.max() <= 16 and (X == np.round(X)).all())


def _uci_counts(X: np.ndarray) -> np.ndarray:
    """UCI block counts 0..16 in [0, 1], as :func:`qianyi.data.builtin.load_uci_digits` reads them."""
    return X.astype(np.float32) / np.float32(16.0)


#: How many numbers of the inputs :func:`_looks_raw` looks at a time (a float64 block of 8 MB).
LOOK_ELEMENTS = 1 << 20


def _looks_raw(X: np.ndarray, preprocessing: dict, reverse: bool = False) -> bool:
    """Whether vectors ``X`` look unpreprocessed for a run that standardised its inputs: the run's inputs have
    column means near 0 and standard deviations near 1; ``X`` read as raw (preprocessed here) comes much nearer
    that than ``X`` read as it is. (On raw features the preprocessing barely changes, neither does, and
    nothing is said.) ``reverse``: whether they look preprocessed already (the other way round)."""
    if not preprocessing.get("standardize") or not isinstance(X, np.ndarray) or X.ndim != 2 or len(X) < 20 \
            or X.dtype == object:
        return False
    from ..data.tasks import transform_vectors

    step = max(1, LOOK_ELEMENTS // max(1, X.shape[1]))  # rows at a time: no float64 copy of all of X

    def off(transform: Callable[[np.ndarray], np.ndarray]) -> float:
        """Median over the varying columns of transform(X) of m^2 + (log s)^2: 0 when standardised."""
        def chunks() -> Iterator[np.ndarray]:
            return (np.asarray(transform(X[i:i + step]), np.float64) for i in range(0, len(X), step))

        m = sum(Z.sum(0) for Z in chunks()) / len(X)
        sd = np.sqrt(sum(((Z - m) ** 2).sum(0) for Z in chunks()) / len(X))
        varying = sd > 0
        return float(np.median(m[varying] ** 2 + np.log(sd[varying]) ** 2)) if varying.any() else 0.0

    try:
        with np.errstate(all="ignore"):
            as_raw, as_is = off(lambda Z: transform_vectors(Z, preprocessing)), off(lambda Z: Z)
    except (DataError, ValueError, TypeError):
        return False
    if reverse:
        as_raw, as_is = as_is, as_raw
    return bool(np.isfinite(as_raw) and np.isfinite(as_is) and as_is > 0.25 and as_raw * 4 < as_is)


def _to_model_classes(model: SavedModel, d: Domain) -> Domain:
    """``d``'s labels as the model's classes, matched as its run matched its target's (:func:`align_labels`):
    names sorted from text labels (model.json's ``class_names_sorted``) are refused against unnamed class
    indices, names in a canonical order (SVMlight's negative/positive, npz ``class_names=``) match them by position.
    A model.json without the field (saved before it was recorded) is refused there, as its order is unknown."""
    if not d.labelled:
        return d
    recorded = model.meta.get("class_names_sorted")
    if not isinstance(recorded, bool) and d.class_names is None and _whole_numbers(model.class_names) is None:
        names = list(model.class_names[:10])
        more = " ..." if len(model.class_names) > 10 else ""
        raise LabelMismatchError(
            f"the model ({str(model.path)!r}) names its classes {names}{more} but {d.name!r} has unnamed class "
            "indices, and its model.json does not record whether those names were sorted from text labels (it was "
            "saved before qianyi recorded that), so which name each index stands for is unknown; give the data "
            "class names (a CSV or JSON Lines label column of names; npz: store class_names= with y), or rerun the "
            "run to save a model.json that records it")
    reference = Domain(np.zeros((2, 1), np.float32), np.array([0, 1]), "the model", class_names=model.class_names,
                       sorted_names=bool(recorded))
    return align_labels(reference, d)


def read_model_meta(path: str | os.PathLike) -> tuple[dict, Path]:
    """A run's ``model.json`` (what the model is, its classes and preprocessing) and its folder, from the
    run folder or a file in it; clear errors when it is missing or corrupt."""
    p = folder = Path(path)
    try:  # (is_file raises, not False, where the folder cannot be searched)
        if not p.exists():
            raise DataError(f"{str(p)!r} does not exist; give the --out folder of a `qianyi run`")
        folder = p if p.is_dir() else p.parent
        meta_path = folder / META_FILE
        has_meta = meta_path.is_file()
        unfinished = not has_meta and ((folder / "checkpoint.pt").is_file() or (folder / "stages").is_dir())
    except OSError as exc:
        raise unsearchable(Path(exc.filename).parent if exc.filename else folder, exc) from None
    if not has_meta:
        from .result import read_failure

        if (why := read_failure(folder)) is not None:  # (its failed.json: diverged, or another error)
            raise DataError(f"{str(folder)!r} holds a run that stopped with an error, so it has no model: {why}")
        if unfinished:  # killed before its model was saved
            raise DataError(f"{str(folder)!r} holds a run that has not finished (no {META_FILE}): rerun "
                            f"{rerun_command(folder)} (it resumes from its checkpoint), then predict with it")
        raise DataError(f"{str(folder)!r} has no {META_FILE}; give the --out folder of a `qianyi run` (runs made "
                        "before model files described themselves hold weights only: rerun them)")
    try:
        raw = meta_path.read_bytes()
    except OSError as exc:  # not read (permission denied): nothing says it is damaged, so no "rerun the run"
        raise DataError(f"{str(meta_path)!r} cannot be read: {not_read(exc)}") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
        if not isinstance(meta, dict) or (meta.get("kind") != "shallow" and not isinstance(meta["architecture"], dict)):
            raise TypeError("not a model description")
        _check_format(meta, meta_path)  # (a newer layout: "upgrade qianyi", not "corrupt")
        if meta.get("kind") != "shallow":
            _check_meta_fields(meta)
    except _NewerFormat as exc:  # not corrupt: this code is too old for it
        raise DataError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:  # (UnicodeDecodeError is a ValueError)
        raise DataError(f"{str(meta_path)!r} cannot be read ({exc}); it is corrupt: rerun the run") from exc
    return meta, folder


class _NewerFormat(Exception):
    """A model.json of a layout newer than this code reads (:func:`_check_format`)."""


def _check_format(meta: dict, meta_path: Path) -> None:
    """Refuse a model.json of a layout newer than this code reads (``format`` above :data:`FORMAT`: its fields may
    mean something else, so predicting with it could be silently wrong); a ``format`` that is not a whole number
    from 1 is a TypeError (corrupt). A model.json without ``format`` (none was ever written so) is format 1."""
    fmt = meta.get("format", FORMAT)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise TypeError(f"field format {fmt!r} is not a whole number from 1")
    if fmt > FORMAT:
        raise _NewerFormat(f"{str(meta_path)!r} is of model format {fmt}, written by a newer qianyi "
                        f"({meta.get('qianyi', 'version unknown')}); this qianyi ({__version__}) reads format "
                        f"{FORMAT} and older: upgrade qianyi to use this model")


#: The most values one input may have in a model.json (3 x 4096 x 4096 images; 50 million features).
MAX_SAMPLE_VALUES = 3 * 4096 * 4096


def _check_meta_fields(meta: dict) -> None:
    """The fields of a model.json that loading and predicting read, of the types they are read as (a hand-edited
    file gave tracebacks deep inside: TypeError, AttributeError), its preprocessing among them
    (:func:`_preprocessing_checks`), and that preprocessing as its run recorded it (``preprocessing_sha256``)."""
    arch = meta["architecture"]
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    checks = {
        "weights": "weights" not in meta or isinstance(meta["weights"], str) and "/" not in meta["weights"],
        "class_names": isinstance(meta.get("class_names"), list) and len(meta["class_names"]) > 0
        and all(isinstance(c, str) for c in meta["class_names"]),
        "preprocessing": isinstance(meta.get("preprocessing", {}), dict),
        "hparams": isinstance(meta.get("hparams") or {}, dict),
        "architecture.backbone": isinstance(arch.get("backbone"), str),
        "architecture.sample_shape": isinstance(arch.get("sample_shape"), list) and len(arch["sample_shape"]) > 0
        and all(is_int(v) and v > 0 for v in arch["sample_shape"]),
        "architecture.n_classes": is_int(arch.get("n_classes")) and arch["n_classes"] > 0,
        "architecture.generation": "generation" not in arch or is_int(arch["generation"]) and arch["generation"] > 0,
    }
    canvas = meta.get("preprocessing", {}).get("canvas") if isinstance(meta.get("preprocessing", {}), dict) else None
    if canvas is not None:  # (a size of 10**9 overflowed torch's storage; "big" a TypeError inside resize)
        checks["preprocessing.canvas"] = isinstance(canvas, dict) and is_int(canvas.get("size")) \
            and 0 < canvas["size"] <= 4096 and is_int(canvas.get("channels")) and 0 < canvas["channels"] <= 4 \
            and isinstance(canvas.get("protocol", ""), str)
    if isinstance(arch.get("sample_shape"), list) and len(arch["sample_shape"]) not in (1, 3):
        checks["architecture.sample_shape (features,) or (channels, height, width)"] = False
    elif checks["architecture.sample_shape"] and math.prod(arch["sample_shape"]) > MAX_SAMPLE_VALUES:
        # the network is built from it before the weights are read: [10**11] asked for 100 TB
        checks[f"architecture.sample_shape (at most {MAX_SAMPLE_VALUES:,} values a sample)"] = False
    if checks["preprocessing"] and checks["architecture.sample_shape"]:
        for k, ok in _preprocessing_checks(meta.get("preprocessing", {}), arch["sample_shape"]).items():
            checks[k] = checks.get(k, True) and ok
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise TypeError(f"field(s) {', '.join(bad)} missing or of the wrong type")
    if len(meta["class_names"]) != arch["n_classes"]:
        raise TypeError(f"{len(meta['class_names'])} class_names for architecture.n_classes {arch['n_classes']}")
    recorded = meta.get("preprocessing_sha256")
    if recorded is not None and recorded != preprocessing_digest(meta.get("preprocessing", {})):
        raise TypeError("its preprocessing is not the one its run recorded (preprocessing_sha256 differs): it was "
                        "edited; the run's inputs were prepared with the recorded one")


def preprocessing_digest(preprocessing: dict) -> str:
    """SHA-256 of a model's preprocessing as plain JSON (keys sorted): model.json records it, so that an edited
    preprocessing (a deleted ``standardize``: predictions on unscaled inputs) is refused, not applied."""
    return hashlib.sha256(json.dumps(preprocessing, sort_keys=True).encode()).hexdigest()


def _preprocessing_checks(pre: dict, shape: list[int]) -> dict[str, bool]:
    """The preprocessing fields ``prepare`` reads, of the types and sizes ``load_task`` writes them with (a
    hand-edited one gave tracebacks, or, with ``standardize`` deleted, predictions on unscaled inputs).

    ``load_task`` records ``canvas`` and ``feature_names`` for every kind of task, and, for vectors (``canvas``
    null, no ``text``), ``vector_transform`` (``counts`` since 2026-12-02; ``standardize`` unless
    ``--no-standardize``); an empty preprocessing is a task built in Python (nothing to apply)."""
    from ..data.tasks import VECTOR_TRANSFORMS
    from ..data.wordpiece import TOKENIZER as WORDPIECE

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def numbers(v: Any, n: int, positive: bool = False) -> bool:
        return isinstance(v, list) and len(v) == n and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and (x > 0 or not positive)
            for x in v)

    vectors = len(shape) == 1 and pre.get("text") is None
    checks: dict[str, bool] = {}
    if pre and (vectors or "canvas" in pre):  # not a task built in Python and tokenised: {"text": ...} alone
        checks["preprocessing.canvas"] = "canvas" in pre and (pre["canvas"] is None) == (len(shape) == 1)
        checks["preprocessing.feature_names"] = "feature_names" in pre
    names = pre.get("feature_names")
    if names is not None:
        checks["preprocessing.feature_names"] = isinstance(names, list) and all(isinstance(c, str) for c in names) \
            and (not vectors or len(names) == shape[0])
    if pre and vectors:
        checks["preprocessing.vector_transform"] = pre.get("vector_transform") in VECTOR_TRANSFORMS
    elif "vector_transform" in pre:
        checks["preprocessing.vector_transform"] = pre["vector_transform"] in VECTOR_TRANSFORMS
    if "counts" in pre:
        checks["preprocessing.counts"] = isinstance(pre["counts"], bool)
    if "standardize" in pre:
        std = pre["standardize"]
        checks["preprocessing.standardize (mean and std: a finite number per feature, std > 0)"] = vectors \
            and isinstance(std, dict) and numbers(std.get("mean"), shape[0]) \
            and numbers(std.get("std"), shape[0], positive=True)
    text = pre.get("text")
    if text is not None:
        checks["preprocessing.text (tokenizer, vocab, max_len the input length, bigrams)"] = len(shape) == 1 \
            and isinstance(text, dict) and isinstance(text.get("tokenizer"), str) \
            and isinstance(text.get("vocab"), list) and len(text["vocab"]) > 0 \
            and all(isinstance(w, str) for w in text["vocab"]) \
            and is_int(text.get("max_len")) and text["max_len"] == shape[0] \
            and (text["tokenizer"] == WORDPIECE or isinstance(text.get("bigrams"), bool)) \
            and isinstance(text.get("vocab_sha256", ""), str) and isinstance(text.get("vectors", ""), str)
    return checks


def _check_result_names(folder: Path, digest: str) -> None:
    """Warn when the folder's result.json reports on another model than this model.pt (two runs' files mixed):
    the scores it holds are not this model's."""
    try:
        recorded = json.loads((folder / "result.json").read_text(encoding="utf-8")).get("model_sha256")
    except (OSError, ValueError, AttributeError):
        return
    if recorded and recorded != digest:
        warnings.warn(f"{str(folder)!r}: result.json reports on another model than model.pt (its model_sha256 "
                      "differs: files of two runs mixed?); the model loaded is the one model.json describes, and "
                      "result.json's scores are not its own", QianyiWarning, stacklevel=3)


@caller_rng_kept()  # building networks draws initial weights: not from the caller's generators
def load_model(path: str | os.PathLike, network: nn.Module | None = None) -> SavedModel:
    """Rebuild a saved model from its run folder (or its model.pt / model.json). ``network`` is needed
    only for a run trained on a backbone of your own: pass an instance of it."""
    meta, folder = read_model_meta(path)
    shallow = meta.get("kind") == "shallow"
    arch = None if shallow else meta["architecture"]
    if shallow:
        raise DataError(f"{str(folder)!r} is a run of the shallow method {meta.get('method')!r}: its fitted arrays "
                        "are in model.npz, but qianyi predict does not rebuild shallow models yet; use the "
                        "estimator in qianyi.shallow from Python")
    weights = folder / meta.get("weights", MODEL_FILE)
    try:
        digest = sha256_file(weights) if weights.is_file() else None
    except OSError as exc:  # not read: said so, never "rerun the run"
        raise DataError(f"{str(weights)!r} cannot be read: {not_read(exc)}") from None
    if digest is None or digest != meta.get("weights_sha256"):
        raise DataError(f"{str(weights)!r} is missing or is not the model {META_FILE} describes (its hash differs); "
                        "rerun the run")
    _check_result_names(folder, digest)
    if network is None and arch.get("backbone") == "method":  # the method's own network (co-training's two views)
        from ..methods.registry import get_method

        network = get_method(str(meta.get("method")), **(meta.get("hparams") or {})).saved_network(arch)
    if network is None:
        if arch.get("backbone") != "default" and arch.get("backbone") not in BACKBONES:
            raise DataError(f"{str(folder)!r} was trained on a backbone of your own: pass network=<an instance of it>")
        with torch.device("meta"):  # sized first, allocating nothing: a hand-edited shape asked for 100 GB
            sized = rebuild(arch)
        size = sum(t.numel() * t.element_size() for t in (*sized.parameters(), *sized.buffers()))
        if size > 2 * weights.stat().st_size + (1 << 20):
            raise DataError(f"{str(folder / META_FILE)!r} describes a network of {size:,} bytes of weights, but "
                            f"{str(weights)!r} holds {weights.stat().st_size:,}: model.json was edited or belongs to "
                            "another run; rerun the run")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any failure to read: the file is not a plain state dict)
        raise DataError(f"{str(weights)!r} cannot be read as a state dict ({unreadable_reason(exc, weights)}); "
                        "rerun the run") from None
    try:
        if network is None:  # a named backbone needs no pretrained file: model.pt holds every weight
            network = _assigned(sized, state)
            if network is None:
                network = rebuild(arch)
                network.load_state_dict(state)
        else:
            network.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"the weights in {str(weights)!r} do not fit the network ({str(exc).splitlines()[0]})") from None
    return SavedModel(network.eval(), meta, folder)


def _assigned(sized: nn.Module, state: dict) -> nn.Module | None:
    """``sized`` (built on the meta device) holding ``state``'s tensors in place of its own (no random
    initialisation of weights model.pt overwrites: MiniLM's 30522 x 384 embedding took about a second), or None
    when ``state`` does not fill every tensor (a buffer that is not saved, e.g. a backbone's input normalisation:
    then the network is built for real and ``state`` loaded into it)."""
    try:
        sized.load_state_dict(state, assign=True)
    except RuntimeError:
        return None
    if any(t.is_meta for t in (*sized.parameters(), *sized.buffers())):
        return None
    return sized


def read_like_run(meta: dict, spec: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Domain:
    """Read ``spec`` (or a file path, :func:`qianyi.data.tasks.as_spec`) and apply the preprocessing (canvas,
    column order) of the run ``meta`` (its ``model.json``) describes, exactly as that run did; labels and class
    names stay the data's own.

    A CSV table read with ``categorical=auto`` (or without ``categorical=``) has its column types from the model:
    the columns it one-hot encodes (its ``COL=VALUE`` features) are categorical, the others numeric, whatever
    these rows hold (``auto`` judged each column on the new rows alone: a batch of distinct known cities was taken
    for an ID column, an empty column for a numeric one). An image folder given without ``?size=`` is read as
    the run's images were: at the canvas size when that is above 32 px; else, for a run that read no folder
    (built-ins, npz: images at their own size), at the folder's images' own size when they share one of at most
    32 px (a folder is otherwise read at 32 px, so 28-px images were resampled twice; larger images are read at
    32 px, never held bigger than before); else at the ``?size=`` the run's target folder (else source folder)
    was read with, 32 px when it names none."""
    from ..data.builtin import resolve_data_dir
    from ..data.tasks import FOLDER_SIZE, _load_base, as_spec, parse_spec, prepare, with_folder_size

    spec = as_spec(spec)
    base, shifts = parse_spec(spec)
    pre = meta.get("preprocessing", {})
    canvas = pre.get("canvas") or {}
    # an image folder is read as `load_task` reads it (at 32 px, then drawn on the canvas), except on a canvas
    # larger than that, which the run's own folders must have been read at: then at the canvas size, not
    # at 32 px enlarged (a spec's own ?size= wins)
    size = canvas.get("size") if canvas.get("protocol") != "uci" else None
    resize = pre.get("folder_resize")  # a run on ?resize=crop folders crops new folders too
    if size is not None and size > FOLDER_SIZE:
        base = with_folder_size(base, size, resize)
    elif canvas and not any(str(meta.get(k) or "").startswith("folder:") for k in ("source", "target")):
        base = with_folder_size(base, _own_image_side(base), resize)
    else:
        base = with_folder_size(base, _run_folder_size(meta), resize)
    d = _read_csv_like_model(base, pre.get("feature_names"))
    d = _load_base(base, resolve_data_dir(data_dir)) if d is None else d
    if pre.get("text") is not None and d.is_image:  # (prepare says "reads vectors": a text model's input is ids)
        raise DataError(f"{spec!r} holds images, but the model reads text; give it texts (jsonl:, lines:, "
                        "csv:PATH?text=COL, a built-in text dataset)")
    return prepare(d, pre, shifts, spec)


def _run_folder_size(meta: dict) -> int | None:
    """The ``?size=`` the run ``meta`` read its target folder with, else its source folder (model.json's
    ``target`` and ``source`` specs); None when neither is a ``folder:`` spec naming one (read at 32 px)."""
    from ..data.tasks import parse_options, parse_spec, split_options

    for key in ("target", "source"):
        spec = meta.get(key)
        if not isinstance(spec, str):
            continue
        base = parse_spec(spec)[0]
        if not base.startswith("folder:"):
            continue
        try:
            size = parse_options("folder", split_options(base)[1], base).get("size")
            return None if size is None else int(size)
        except (ValueError, UnknownNameError):  # (the run read it, so this is a spec edited since: not guessed)
            return None
    return None


#: How many of a folder's images :func:`_own_image_side` looks at.
SIDE_SAMPLE = 64


def _own_image_side(base: str) -> int | None:
    """The side (the larger of width and height) shared by the images of the ``folder:DIR`` spec ``base`` (the
    first :data:`SIDE_SAMPLE` that ``read_folder`` reads, found as it finds them: thumbnail and hidden folders
    skipped, links followed; headers only), if they share one from 8 px to the folder default (32 px); None for
    any other spec, larger or unequal images, or a folder that cannot be looked at (its reader says why)."""
    from PIL import Image

    from ..data.readers import folder_image_files
    from ..data.tasks import FOLDER_SIZE, split_options

    if not base.startswith("folder:"):
        return None
    folder = Path(split_options(base)[0].partition(":")[2])
    sizes: set[tuple[int, int]] = set()
    try:
        for found, f in enumerate(folder_image_files(folder, f"image folder {str(folder)!r}"), 1):
            with Image.open(f) as im:
                sizes.add(im.size)
            if found >= SIDE_SAMPLE or len(sizes) > 1:
                break
    except Exception:  # noqa: BLE001 (unreadable or not an image: read_folder names it)
        return None
    if len(sizes) != 1:
        return None
    side = max(next(iter(sizes)))
    return side if 8 <= side <= FOLDER_SIZE else None


def _read_csv_like_model(base: str, feature_names: list[str] | None) -> Domain | None:
    """A ``csv:`` table read with the model's column types (:func:`read_like_run`), or None where that does not
    apply (not a numeric CSV, a model that records no columns, ``categorical=`` naming columns itself)."""
    from ..data.readers import read_csv
    from ..data.tasks import parse_options, split_options

    if feature_names is None or not base.startswith("csv:"):
        return None
    head, query = split_options(base)
    path = head.partition(":")[2]
    opts = parse_options("csv", query, base)
    if not path or "text" in opts or opts.get("categorical", "auto") not in ("auto", ""):
        return None
    return read_csv(path, opts.get("name") or Path(path).stem or Path(path).name, label=opts.get("label"),
                    drop=tuple(c for c in opts.get("drop", "").split(",") if c), sep=opts.get("sep"),
                    where=opts.get("where"), where_not=opts.get("where_not"), id_column=opts.get("id"),
                    decimal=opts.get("decimal"), model_features=feature_names)


def absolute_spec(spec: str, cwd: str | None) -> str:
    """A file spec (``KIND:PATH``) made absolute against ``cwd``, the folder its run started in (model.json's
    ``cwd``); a built-in's spec is returned as it is."""
    kind, sep, rest = spec.partition(":")
    return f"{kind}:{os.path.join(cwd, rest)}" if sep and rest and cwd else spec


def load_domain_for(model: SavedModel, spec: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Domain:
    """Read ``spec`` and apply the model's preprocessing (canvas, column order) exactly as its run did;
    labels, if any, are mapped to the model's classes."""
    return _to_model_classes(model, read_like_run(model.meta, spec, data_dir))

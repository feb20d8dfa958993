"""Weight loading for fine-tuning: copy the first k layer groups of a saved qianyi model (safe loading only)."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError, QianyiWarning
from ..nn.backbones import Backbone
from .checkpoint import FILENAME, unreadable_reason, load_checkpoint

if TYPE_CHECKING:
    from ..data.domain import TransferTask


def _saved_vocab(path: Path) -> list[str] | None:
    """The text vocabulary recorded in the ``model.json`` beside a saved model, if that file describes it: a run
    writes model.json at its end, so one older than the weights file (a run folder reused, its new run not
    finished) describes another model and is not read."""
    meta = path.parent / "model.json"
    try:
        if meta.stat().st_mtime_ns < path.stat().st_mtime_ns and path.name != "model.pt":
            return None
    except OSError:
        return None
    try:
        vocab = ((json.loads(meta.read_text(encoding="utf-8")).get("preprocessing") or {}).get("text") or {})["vocab"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return list(vocab) if isinstance(vocab, list) else None


def labelled_data_digest(task: "TransferTask") -> str:
    """A hash of the labelled samples a task trains on (its source's training and validation splits together, in an
    order of their own, so another ``--val-fraction`` gives the same hash): model.json's ``source_data``, which tells
    whether a starting model was trained on the very labelled half of one pool a task trains on. Computed once per
    task, as :meth:`TransferTask.content_hash` is (a bench saves a model per method and seed of one task)."""
    cached = task.__dict__.get("_labelled_data_digest")
    if cached is None:
        cached = _labelled_data_digest(task)
        object.__setattr__(task, "_labelled_data_digest", cached)  # (a frozen dataclass)
    return cached


def _labelled_data_digest(task: "TransferTask") -> str:
    from ..data.domain import sample_keys
    from ..data.lazy import is_lazy

    parts = [d for d in (task.source, task.source_val) if d is not None and len(d)]
    h = hashlib.sha256(b"labelled pool")
    if any(is_lazy(d.X) for d in parts):  # streamed: each split's files as they are
        for d in parts:
            h.update(d.X.fingerprint())
            h.update(b"-" if d.y is None else np.ascontiguousarray(d.y).tobytes())
        return h.hexdigest()[:16]
    keys = np.concatenate([sample_keys(np.asarray(d.X)) for d in parts])
    y = np.concatenate([np.full(len(d), -1) if d.y is None else np.asarray(d.y) for d in parts])
    order = np.lexsort((y, keys))
    h.update(keys[order].tobytes())
    h.update(np.ascontiguousarray(y[order], np.int64).tobytes())
    return h.hexdigest()[:16]


def starting_model(path: str | Path) -> dict[str, Any] | None:
    """What the model in ``path`` (an ``init_from``) was trained on, as its run recorded it (JSON only, nothing
    unpickled): ``sha256`` of the file, and ``method``, ``source``, ``target``, ``source_origin`` and
    ``source_data`` (:func:`labelled_data_digest`) where recorded, from the ``model.json`` beside a model whose
    ``weights_sha256`` it names, or from the fingerprint inside an unfinished run's ``checkpoint.pt``. None when
    ``path`` is no file; only ``sha256`` when nothing describes it (a state dict saved by hand)."""
    from .store import content_key

    path = Path(path)
    if not path.is_file():
        return None
    key = content_key(str(path))
    info: dict[str, Any] = {"sha256": key.removeprefix("sha256:")}
    meta: Any = None
    try:
        meta = json.loads((path.parent / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if isinstance(meta, dict) and meta.get("weights_sha256") == info["sha256"]:  # (else it describes another file)
        info.update({k: meta[k] for k in ("method", "source", "target", "source_origin", "source_data")
                     if isinstance(meta.get(k), str)})
    elif path.name == FILENAME:  # an unfinished run's checkpoint records its run's fingerprint
        try:
            fp = json.loads(load_checkpoint(path).get("fingerprint", "{}"))
        except Exception:  # (not a checkpoint, or a damaged one: the weights' loading says so)
            fp = None
        if isinstance(fp, dict):
            info.update({k: fp[k] for k in ("method", "source", "target") if isinstance(fp.get(k), str)})
    return info


def _pools_share(a: str, b: str) -> bool:
    """Whether data of origins ``a`` and ``b`` may hold the same samples: one pool, a rotmnist range that overlaps,
    or row filters of one CSV file not provably disjoint (``path?where_not=month:may`` holds ``path?where=month:jul``;
    the whole file holds every filter of it)."""
    from ..data.tasks import _csv_rows_disjoint, origins_overlap

    if origins_overlap(a, b):
        return True
    (pa, qa, _), (pb, qb, _) = a.partition("?"), b.partition("?")
    return pa == pb and bool(qa or qb) and not _csv_rows_disjoint(f"csv:{a}", f"csv:{b}")


def check_starting_model(path: str | Path | None, task: "TransferTask", option: str = "init_from"
                         ) -> dict[str, Any] | None:
    """Refuse (:class:`ConfigError`) a starting model that saw this task's target labels, as its ``model.json``
    (or checkpoint) records: one trained by a method that reads target labels (``oracle``, ``mult``), or one whose
    labelled source holds (or may hold) ``task``'s target samples: its recorded pool of samples (origin) is the
    target's or overlaps it (a rotmnist range), unless it is this very task's labelled half of one pool (the same
    :func:`labelled_data_digest`); for a model recorded without its origin, its spec or the spec's pool is the
    target's, unless it was trained on this very one-pool pair. Returns
    :func:`starting_model` (None without ``path``); a model nothing describes is taken as it is."""
    from ..methods.registry import available_methods

    if not path:
        return None
    info = starting_model(path)
    if info is None or "method" not in info:
        return info
    method, src, tgt = info["method"], info.get("source"), info.get("target")
    where = "its checkpoint" if "source_origin" not in info and Path(path).name == FILENAME else "model.json beside it"
    trained = f"{method} on {src!r} -> {tgt!r}" if src is not None else method
    advice = (f"start from a model trained without the labels of {task.target.name!r}, e.g. `qianyi run source-only "
              f"--source {task.source.name} --target {task.target.name} --out DIR` with this run's data settings, "
              f"then --init-from DIR/model.pt (or leave --init-from out)")
    cls = available_methods().get(method)
    if cls is not None and getattr(cls, "uses_target_labels", False):
        raise ConfigError(f"{option}: {str(path)!r} was trained by {trained} ({where}), a method that trains on "
                          f"target labels: the run {task.name} would start from a model that saw target labels and "
                          f"still report 'no target labels'; {advice}")
    if src is None:
        return info
    target = task.target
    origin = info.get("source_origin")
    one_pool = task.source.origin == target.origin  # this task's source and target: two halves of one pool
    if origin is not None:  # the pool (a resolved file, a dataset) its labelled data came from
        shares = _pools_share(origin, target.origin)
        # of one pool, only this very task's labelled half holds none of the target's samples
        mine = one_pool and origin == target.origin and info.get("source_data") == labelled_data_digest(task)
    else:  # a model.json from before it recorded its data: its specs decide (another file spelt alike escapes)
        from ..data.tasks import parse_spec

        shares = src == target.name or parse_spec(src)[0] == parse_spec(target.name)[0]
        mine = one_pool and (src, tgt) == (task.source.name, target.name)
    if shares and not mine:
        data = "this run's target" if src == target.name else (
            f"data {origin!r}, the pool of this run's target, {target.origin!r}" if origin is not None
            else "this run's target's pool of samples")
        raise ConfigError(f"{option}: {str(path)!r} was trained by {trained} ({where}): on the labels of {src!r} "
                          f"({data}), which hold (or may hold) this target's samples; the run {task.name} would start "
                          f"from a model that saw the target's labels and still report 'no target labels'; {advice}")
    return info


#: The starting model's record in a result's ``config`` (beside ``init_from``, its path): not part of a run's key.
STARTING_MODEL_KEYS = {"sha256": "init_from_sha256", "method": "init_from_method", "source": "init_from_source"}


def starting_model_record(path: str | Path | None) -> dict[str, str]:
    """``init_from_sha256`` and, when recorded, ``init_from_method`` and ``init_from_source`` of the model in
    ``path`` (:func:`starting_model`); {} without one."""
    info = starting_model(path) if path else None
    return {key: info[k] for k, key in STARTING_MODEL_KEYS.items() if k in info} if info else {}


def load_initial_weights(model: Backbone, path: str | Path, layers: int | None = None, option: str = "init_from",
                         vocab: Sequence[str] | None = None, frozen: Sequence[str] = ()) -> list[str]:
    """Copy the first ``layers`` layer groups (all if None) from a saved model into ``model``.

    ``path`` is a ``model.pt`` (a state dict) written by qianyi, or the ``checkpoint.pt`` of an unfinished run
    (a finished run's is refused: its model.pt is the model), read with ``weights_only=True``. Returns the names of the groups copied. Errors name ``option``, the setting that
    gave ``path``. ``vocab``: a text task's vocabulary; when the saved model records another (a checkpoint
    holds its own; a model.pt's is in the ``model.json`` beside it),
    the word embedding (group ``E``) is copied word by word for ``init_from`` (words the model never saw keep
    their fresh initialisation; said in a warning), and refused for a model to measure (``--model``).
    """
    path = Path(path)
    if path.is_dir():
        inside = " (it holds model.pt: give " + repr(str(path / "model.pt")) + ")" if (path / "model.pt").is_file() else ""
        raise DataError(f"{option}: {str(path)!r} is a folder{inside}; point it at the model.pt written by "
                        "`qianyi run --out DIR` (an unfinished run's checkpoint.pt also works)")
    if not path.exists():
        raise DataError(f"{option}: {str(path)!r} does not exist; point it at the model.pt written by "
                        "`qianyi run --out DIR` (an unfinished run's checkpoint.pt also works)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{option}: {str(path)!r} cannot be read safely ({unreadable_reason(exc, path)}); only plain state dicts "
                        "are accepted") from exc
    in_checkpoint = None  # a checkpoint records its text vocabulary (an unfinished run has no model.json)
    if isinstance(state, dict) and "model" in state and "format" in state:
        # a checkpoint holds the network being trained at its last step: not the run's model when --select chose
        # another epoch or the method predicts with another network (mean-teacher's teacher, att's F_t)
        if (path.parent / "model.pt").is_file():
            raise DataError(f"{option}: {str(path)!r} is the checkpoint of a run that saved its model: give "
                            f"{str(path.parent / 'model.pt')!r}, the model the run reported (a checkpoint holds the "
                            "network being trained at its last step)")
        blob = load_checkpoint(path)
        warnings.warn(f"{option}: {str(path)!r} is an unfinished run's checkpoint: its network as trained at step "
                      f"{blob.get('step', '?')} is copied (for a method that predicts with another network, or a run "
                      "with --select, not the model the run will save)", QianyiWarning, stacklevel=2)
        state, in_checkpoint = blob["model"], blob.get("vocab")
    if not isinstance(state, dict):
        raise DataError(f"{option}: {str(path)!r} holds no state dict")
    if layers is not None and layers > len(model.group_names):
        raise DataError(f"init_layers={layers} but the network has only {len(model.group_names)} layer groups "
                        f"{list(model.group_names)}; give at most {len(model.group_names)} (or leave it out: all)")
    names = list(model.group_names[:layers] if layers is not None else model.group_names)
    own = model.state_dict()
    update = {}
    saved_vocab = None if vocab is None else list(in_checkpoint) if isinstance(in_checkpoint, list) \
        else _saved_vocab(path)
    remap = saved_vocab is not None and list(vocab) != saved_vocab
    shared = len(set(vocab) & set(saved_vocab)) if remap else 0
    if remap and option != "init_from":
        order = ", in another order" if len(vocab) == len(saved_vocab) else ""
        raise DataError(f"{option}: {str(path)!r} was trained with another vocabulary ({len(saved_vocab)} words; this "
                        f"task's has {len(vocab)}, {shared} shared{order}): its word embedding would read the wrong "
                        "words; give a model trained on this pair with the same data and --text settings")
    for name in names:
        keys = [k for k in own if k.startswith(f"groups.{name}.")]
        for k in keys:
            if remap and name == "E" and k in state and isinstance(state[k], torch.Tensor) and state[k].ndim == 2 \
                    and state[k].shape[0] == len(saved_vocab) and own[k].shape[0] == len(vocab) \
                    and state[k].shape[1:] == own[k].shape[1:]:
                update[k] = _by_word(own[k], state[k], list(vocab), saved_vocab)
                warnings.warn(f"{option}: {str(path)!r} was trained with another vocabulary; its word embedding is "
                              f"copied word by word ({shared} of this task's {len(vocab)} words; the others keep their "
                              "fresh initialisation" + (", and keep it for the whole run: E is frozen (--freeze): "
                                                        "random vectors for those words; train E (a lower --freeze) "
                                                        "to learn them" if "E" in frozen else "") + ")",
                              QianyiWarning, stacklevel=3)
                continue
            if k in state and not isinstance(state[k], torch.Tensor):
                raise DataError(f"{option}: {str(path)!r} holds a {type(state[k]).__name__} for {k}, not a tensor; "
                                "it is not a model written by qianyi")
            if k not in state:
                raise DataError(f"{option}: {str(path)!r} has no weights for layer group {name!r} ({k}); "
                                f"it was saved from another architecture")
            if state[k].shape != own[k].shape:
                raise DataError(f"{option}: layer group {name!r} has shape {tuple(state[k].shape)} in "
                                f"{str(path)!r} but {tuple(own[k].shape)} here ({k}); " + (
                                    "copy fewer layers (init_layers) or use a matching input canvas"
                                    if option == "init_from" else "it is a network of another task (other data, "
                                    "input canvas or vocabulary): give one trained on this pair"))
            update[k] = state[k]
    own.update(update)
    model.load_state_dict(own)
    return names


def _by_word(fresh: torch.Tensor, saved: torch.Tensor, vocab: list[str], saved_vocab: list[str]) -> torch.Tensor:
    """``fresh`` (rows = ``vocab``) with the rows of the words ``saved_vocab`` also holds taken from ``saved``."""
    out = fresh.clone()
    row = {w: i for i, w in enumerate(saved_vocab)}
    pairs = [(i, row[w]) for i, w in enumerate(vocab) if w in row]
    if pairs:
        mine, theirs = zip(*pairs)
        out[list(mine)] = saved[list(theirs)].to(out.dtype)
    return out

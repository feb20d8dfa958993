"""Checkpoints: written atomically, read back with ``torch.load(..., weights_only=True)``.

A checkpoint holds tensors, numbers, strings, lists and dicts only, so loading it never runs
pickled code. Its ``fingerprint`` (method, hyper-parameters, training settings, task) must match
the run that resumes from it.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from .._io import write_bytes
from ..errors import CheckpointError
from ..nn.torchfile import unreadable_reason  # the one helper; callers in train, proxy take it from here
from .result import not_read

FORMAT = 2  # 2: named optimizers, per-term step counts, validator-selected best weights
FILENAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a training ``state`` (tensors and plain values, loadable with ``weights_only=True``) atomically,
    tagged with this format's version."""
    return save_tensors(path, dict(state, format=FORMAT))


def save_tensors(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` to memory, then one atomic write (so a full disk is a plain, named OSError)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getbuffer())


def differences(saved: dict, now: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """The settings that differ, nested ones by their path (``config.epochs``), not whole dicts."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


#: Fingerprint fields that only say how the data were named (their specs): with the same data hash (``data``, the
#: content of every split), a spec whose path is written another way (a relative path from another working
#: directory) is the same run. Its options (``?name=books``: a name the user chose) are not spelling.
SPELLING = ("source", "target")


def spec_options(spec: Any) -> list[str]:
    """The options of a data spec (``npz:s.npz?name=books&x=1`` -> ``["name=books", "x=1"]``, sorted): what is
    not the spelling of its path."""
    return sorted(o for o in str(spec).partition("?")[2].split("&") if o)


#: Fingerprint fields that say which run it is (its method, data, seed): named first when two runs differ, before
#: settings the other method may not even read.
IDENTITY = ("method", "source", "target", "data", "config.seed")


def describe_differences(saved: dict, now: dict, limit: int = 5) -> str:
    """The first ``limit`` :func:`differences` of fingerprints ``saved`` and ``now``, as a refusal names them:
    :data:`IDENTITY` first, then the settings (by name); a data spec whose options differ names them (any other
    option text, ``?drop=b,a`` for ``?drop=a,b`` too, is another run)."""
    rank = {k: i for i, k in enumerate(IDENTITY)}
    found = sorted(differences(saved, now), key=lambda d: rank.get(d[0], len(IDENTITY)))  # (stable: by name after)
    parts = []
    for k, a, b in found[:limit]:
        text = f"{k}: saved {a!r}, now {b!r}"
        if k in SPELLING and spec_options(a) != spec_options(b):
            was, is_ = "&".join(spec_options(a)) or "none", "&".join(spec_options(b)) or "none"
            text += f" (options {was}, now {is_}: any other option text is another run)"
        parts.append(text)
    return "; ".join(parts)


def same_run(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether fingerprints ``saved`` and ``now`` are of one run: equal, or equal but for the spelling of the data
    specs' paths (:data:`SPELLING`; their options, ``?name=``, equal) of data whose content hash agrees."""
    if saved == now:
        return True
    if not saved.get("data") or saved.get("data") != now.get("data"):
        return False
    if any(spec_options(saved.get(k)) != spec_options(now.get(k)) for k in SPELLING):
        return False
    return ({k: v for k, v in saved.items() if k not in SPELLING}
            == {k: v for k, v in now.items() if k not in SPELLING})


def load_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint safely; if ``fingerprint`` is given, it must equal the one saved. A file that cannot be
    opened (permission denied) is a :class:`CheckpointError` saying so; only one whose bytes were read and found bad
    is called corrupt, with the advice to delete it."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise
    except OSError as exc:  # not read (permission denied, a folder): nothing says it is damaged, so not "delete it"
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {not_read(exc)}") from None
    try:
        with fh:
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read ({unreadable_reason(exc, path)}); it is corrupt or not a "
                              "qianyi checkpoint. Delete it to start the run afresh.") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a qianyi checkpoint of format {FORMAT}; "
                              "delete it to start the run afresh")
    if fingerprint is not None:
        try:
            saved = json.loads(state.get("fingerprint", "{}"))
            if not isinstance(saved, dict):
                raise ValueError
        except (TypeError, ValueError):
            raise CheckpointError(f"checkpoint {str(path)!r} has a damaged fingerprint; delete it to start the run "
                                  "afresh") from None
        now = json.loads(json.dumps(fingerprint))
        if not same_run(saved, now):
            raise CheckpointError(f"checkpoint {str(path)!r} belongs to a different run "
                                  f"({describe_differences(saved, now)}); "
                                  "use another output folder, or delete the checkpoint to start afresh")
    return state

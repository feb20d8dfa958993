"""Weight loading for fine-tuning: copy the first k layer groups of a saved qianyi model (safe loading only)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..nn.backbones import Backbone
from .checkpoint import unreadable_reason, load_checkpoint


def load_initial_weights(model: Backbone, path: str | Path, layers: int | None = None, option: str = "init_from"
                         ) -> list[str]:
    """Copy the first ``layers`` layer groups (all if None) from a saved model into ``model``.

    ``path`` is a ``model.pt`` (a state dict) or ``checkpoint.pt`` written by qianyi, read with
    ``weights_only=True``. Returns the names of the groups copied. Errors name ``option``, the setting that
    gave ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{option}: {str(path)!r} does not exist; point it at a model.pt or checkpoint.pt "
                        "written by `qianyi run --out DIR`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{option}: {str(path)!r} cannot be read safely ({unreadable_reason(exc, path)}); only plain state dicts "
                        "are accepted") from exc
    if isinstance(state, dict) and "model" in state and "format" in state:
        state = load_checkpoint(path)["model"]
    if not isinstance(state, dict):
        raise DataError(f"{option}: {str(path)!r} holds no state dict")
    if layers is not None and layers > len(model.group_names):
        raise DataError(f"init_layers={layers} but the network has only {len(model.group_names)} layer groups "
                        f"{list(model.group_names)}; give at most {len(model.group_names)} (or leave it out: all)")
    names = list(model.group_names[:layers] if layers is not None else model.group_names)
    own = model.state_dict()
    update = {}
    for name in names:
        keys = [k for k in own if k.startswith(f"groups.{name}.")]
        for k in keys:
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

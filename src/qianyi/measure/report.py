"""``qianyi measure S T``: how far apart two domains are, in input space and at every layer, before and
after adaptation. Measured on held-out inputs (the source validation split and the target test
split); no labels are used by any distance. Target test accuracy is shown beside each network as
the final score only.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .._io import write_json, write_text
from ..data.domain import TransferTask
from ..distances import mmd_test
from ..distances.permutation import check_test_memory
from ..errors import DataError, QianyiWarning
from ..nn.backbones import Backbone, require_backbone
from ..nn.inference import accuracy
from ..train.config import TrainConfig
from ..train.weights import load_initial_weights
from ..train.run import run
from .._report import markdown_table
from .metrics import DEFAULT_METRICS, check_metrics, check_samples, distances, subsample
from .profile import LayerProfile, compare_table, layer_profile, plot_profiles, word_presence

BEFORE = "source-only"


@dataclass
class MeasureResult:
    task: str
    n_source: int
    n_target: int
    input_distances: dict[str, float]
    mmd_p_value: float | None
    permutations: int
    profiles: list[LayerProfile] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    #: What the input-space distances compare: the inputs themselves, or (token ids) the words present.
    input_space: str = "inputs"

    def table(self) -> str:
        lines = [f"{self.task}: distances between {self.n_source} source and {self.n_target} target held-out inputs "
                 f"(no labels used){'' if self.input_space == 'inputs' else '; on text: ' + self.input_space}", "",
                 markdown_table(["distance (input space)", "value"], list(self.input_distances.items()))]
        if self.mmd_p_value is not None:
            lines.append(f"\nMK-MMD permutation test ({self.permutations} permutations): p = {self.mmd_p_value:.4g}")
        if self.profiles:
            for m in self.profiles[0].values:
                lines += ["", compare_table(self.profiles, m)]
            rows = [[p.label, *(None if p.info.get(k) is None else 100 * p.info[k]
                                for k in ("source_val_accuracy", "target_test_accuracy"))] for p in self.profiles]
            lines += ["", markdown_table(["network", "source val. acc. (%)", "target test acc. (%) (final score only)"],
                                         rows, digits=1)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "n_source": self.n_source, "n_target": self.n_target,
                "input_distances": self.input_distances, "input_space": self.input_space,
                "mmd_p_value": self.mmd_p_value,
                "permutations": self.permutations, "profiles": [p.to_dict() for p in self.profiles]}

    def write(self, out: str | Path) -> dict[str, str]:
        out = Path(out)
        self.files = {"json": str(out / "measure.json"), "md": str(out / "measure.md")}
        if self.profiles:
            self.files["png"] = str(plot_profiles(self.profiles, out / "profile.png", title=self.task))
        write_text(self.files["md"], self.table() + "\n")
        write_json(self.files["json"], self.to_dict())
        return self.files


def _check_same_preprocessing(path: Path, task: TransferTask) -> None:
    """Refuse a model whose model.json says its vectors were transformed or scaled otherwise than ``task``'s
    (``qianyi run --vector-transform / --no-standardize``): it would be measured on inputs it never saw."""
    meta_file = path.parent / "model.json"
    try:
        saved = json.loads(meta_file.read_text(encoding="utf-8")).get("preprocessing") or {}
    except (OSError, ValueError, AttributeError):
        return  # no record beside it (a bare state dict): nothing to compare
    now = task.preprocessing or {}
    said = []
    if saved.get("vector_transform", "none") != now.get("vector_transform", "none"):
        said.append(f"vector transform {saved.get('vector_transform', 'none')!r}, here "
                    f"{now.get('vector_transform', 'none')!r}")
    if ("standardize" in saved) != ("standardize" in now):
        said.append("standardised inputs" + (", here raw ones" if "standardize" in saved else " not, here yes"))
    if said:
        raise DataError(f"--model {str(path)!r} was trained on inputs prepared otherwise ({'; '.join(said)}): "
                        "measured on these it would describe another function; read the pair as the run did "
                        "(the same --vector-transform / --no-standardize here)")


def load_weights_for(path: str | Path, task: TransferTask) -> Backbone:
    """The default backbone for ``task`` (a text task's encoder, as ``qianyi run`` builds it) with weights
    from a saved ``model.pt``, or the one in a run folder (safe loading)."""
    if Path(path).is_dir() and (Path(path) / "model.pt").is_file():
        path = Path(path) / "model.pt"  # a run folder, as qianyi.load_model and `qianyi predict` take it
    if not Path(path).is_file():
        raise DataError(f"--model {str(path)!r} is not a file; give the model.pt written by `qianyi run --out DIR` "
                        "(or `qianyi advise --out DIR`: DIR/source/model.pt)")
    from ..train.run import _factory, _for_task

    _check_same_preprocessing(Path(path), task)
    model = _factory(_for_task(None, task))(task.sample_shape, task.n_classes)
    load_initial_weights(model, path, option="--model",
                         vocab=((task.preprocessing or {}).get("text") or {}).get("vocab"))
    return model.eval()


#: Fewer held-out inputs than this on a side: measure warns that its distances are too noisy to trust.
FEW_INPUTS = 100


def measure(task: TransferTask, layers: bool = False, adapt: Sequence[str] = ("dan", "dann"),
            model: str | Path | torch.nn.Module | None = None, config: TrainConfig | None = None,
            metrics: Sequence[str] = DEFAULT_METRICS, samples: int = 1000, permutations: int = 200, seed: int = 0,
            out: str | Path | None = None, log: Callable[[str], None] | None = print) -> MeasureResult:
    """Input-space distances (+ MMD p-value); with ``layers``, per-layer profiles of a source network
    (``model``: a run folder or model.pt, a network such as ``fit.model``, or a saved model from
    :func:`qianyi.load_model`, as :func:`~qianyi.measure.advisor.advise` takes; by default one trained
    source-only) and of each method in ``adapt`` trained on ``task``.

    With ``out``, trained networks live in ``out/runs/METHOD`` (resumable) and the report is written there.
    ``seed`` seeds the sampling and, when ``config`` is None, the training (as ``qianyi measure --seed``);
    a given ``config`` trains with its own ``seed``.
    """
    metrics = check_metrics(metrics)
    check_samples(samples, "samples")
    given = None if model is None or isinstance(model, (str, os.PathLike)) else require_backbone(model, "measure")
    if model is not None and not layers:
        shown = str(model) if given is None else f"<{type(model).__name__}>"
        raise DataError(f"measure: model={shown!r} is profiled layer by layer: it applies with layers=True "
                        "(--layers); without it measure compares the inputs and reads no network")
    tokens = bool((task.preprocessing or {}).get("text"))
    xs, xt = task.source_val.X, (task.target_test or task.target).X
    space = "inputs"
    if tokens:  # token ids are names, not quantities: compare the words present
        xs, xt = word_presence(xs, xt)
        space = f"the presence of the {xs.shape[1]} most frequent words"
    if permutations:
        check_test_memory(min(samples, len(xs)), min(samples, len(xt)))
    if min(len(xs), len(xt)) < FEW_INPUTS:  # an A-distance of 0 on 15 inputs said "alike" of two unlike domains
        warnings.warn(f"measure {task.name}: the distances compare only {len(xs)} source (the held-out source_val "
                      f"split) and {len(xt)} target inputs: too few to trust (an A-distance near 0 may mean too few "
                      "samples, not alike domains); hold out more of the source (--val-fraction 0.5, "
                      "load_task(val_fraction=0.5)) or give more data", QianyiWarning, stacklevel=2)
    # one subsample for the distances and the test: the p-value is of the rows whose MK-MMD is printed
    xs, xt = subsample(xs, samples, seed, "source"), subsample(xt, samples, seed + 1, "target")
    d = distances(xs, xt, metrics, max_samples=samples, seed=seed)
    test = mmd_test(xs, xt, permutations=permutations, max_samples=samples, seed=seed) if permutations else None
    res = MeasureResult(task.name, len(xs), len(xt), d,
                        None if test is None else test.p_value, permutations, input_space=space)
    xs, xt = task.source_val.X, (task.target_test or task.target).X
    if layers:
        nets: list[tuple[str, torch.nn.Module, float | None]] = []
        if model is not None:
            nets.append((f"given model ({Path(model).name})", load_weights_for(model, task), None) if given is None
                        else (f"given model ({type(given).__name__})", given, None))
        else:
            adapt = [BEFORE, *[m for m in adapt if m != BEFORE]]
        for m in adapt:
            result, fit = run(m, task, config or TrainConfig(seed=seed), out=None if out is None else Path(out) / "runs" / m)
            if log:
                log("  " + result.summary())
            nets.append((m, fit.model, result.target_accuracy))
        device = next(nets[0][1].parameters()).device
        for label, net, target_acc in nets:
            p = layer_profile(net, xs, xt, metrics, max_samples=samples, seed=seed, device=device, label=label,
                              token_ids=tokens, progress=(config or TrainConfig()).progress)
            p.info = {**p.info, "source_val_accuracy": accuracy(net, task.source_val, device),
                      "target_test_accuracy": target_acc if target_acc is not None or task.target_test is None
                      else accuracy(net, task.target_test, device)}
            res.profiles.append(p)
    if out is not None:
        res.write(out)
    return res

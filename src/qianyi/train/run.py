"""One run = train a method on a task, then score it once on the target test split."""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .._io import atomic_write, write_json
from ..data.domain import TransferTask
from ..methods.base import Method
from ..methods.registry import get_method
from .engine import FitResult, TrainConfig, Trainer, accuracy

RESULT_FILE = "result.json"
MODEL_FILE = "model.pt"  # the final backbone's state dict (load with torch.load(..., weights_only=True))


@dataclass
class RunResult:
    """What ``result.json`` holds. Accuracies are fractions in [0, 1]."""

    method: str
    source: str
    target: str
    seed: int
    target_accuracy: float
    source_accuracy: float
    train_seconds: float
    selection: str
    oracle: bool
    hparams: dict[str, Any]
    config: dict[str, Any]
    n_source: int
    n_target_train: int
    n_target_test: int
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        return write_json(Path(directory) / RESULT_FILE, self.to_dict())

    def summary(self) -> str:
        tag = " [ORACLE: uses target labels]" if self.oracle else ""
        return (f"{self.method} {self.source}->{self.target} seed {self.seed}: target accuracy "
                f"{100 * self.target_accuracy:.2f}%, source accuracy {100 * self.source_accuracy:.2f}% "
                f"({self.train_seconds:.1f}s; {self.selection}){tag}")


def run(method: str | Method, task: TransferTask, config: TrainConfig | None = None,
        out: str | Path | None = None, **hparams: Any) -> tuple[RunResult, FitResult]:
    """Train ``method`` on ``task`` and score it; with ``out``, checkpoint there, resume, write result.json.

    >>> res, fit = run("dann", load_task("mnist", "digits"), TrainConfig(epochs=10))  # doctest: +SKIP
    """
    m = get_method(method, **hparams) if isinstance(method, str) else method
    config = config or TrainConfig()
    if out is not None:
        config = replace(config, checkpoint_dir=str(out))  # a copy: the caller's config is not changed
    fit = Trainer(m, config).fit(task)
    device = fit.device
    result = RunResult(
        method=m.name, source=task.source.name, target=task.target.name, seed=config.seed,
        target_accuracy=accuracy(fit.model, task.target_test, device),
        source_accuracy=accuracy(fit.model, task.source_val, device),
        train_seconds=round(fit.train_seconds, 3), selection=fit.selection, oracle=m.uses_target_labels,
        hparams=m.hparams(), config=config.fingerprint(), n_source=len(task.source),
        n_target_train=len(task.target), n_target_test=len(task.target_test), device=device,
        history=fit.history,
        versions={"qianyi": __version__, "torch": torch.__version__, "python": platform.python_version()})
    if out is not None:
        atomic_write(Path(out) / MODEL_FILE, lambda fh: torch.save(fit.model.state_dict(), fh), mode="wb")
        result.save(out)
    return result, fit

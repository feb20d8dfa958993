"""Optional experiment trackers (``TrainConfig.log_to`` / ``--log-to``): TensorBoard and MLflow.

Neither is a dependency: a tracker is imported only when asked for, and a missing package is a
clear error naming what to install. Each epoch's history row (loss terms, source validation
accuracy, validator scores; ``oracle_target_acc`` only in bench runs, for reports) is logged with
the epoch as the step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

Row = dict[str, float]


class Tracker:
    """What the engine calls: ``log(row)`` after each epoch, ``close()`` at the end."""

    def __init__(self, log: Callable[[Row], None], close: Callable[[], None] = lambda: None) -> None:
        self.log, self.close = log, close


def _tensorboard(out: Path | None, name: str, params: dict[str, Any]) -> Tracker:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--log-to tensorboard needs the tensorboard package: pip install tensorboard") from None
    writer = SummaryWriter(log_dir=None if out is None else str(out / "tensorboard"), comment=name)
    writer.add_text("settings", str(params))

    def log(row: Row) -> None:
        for k, v in row.items():
            if k != "epoch":
                writer.add_scalar(k, v, int(row["epoch"]))
        writer.flush()
    return Tracker(log, writer.close)


def _mlflow(out: Path | None, name: str, params: dict[str, Any]) -> Tracker:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("--log-to mlflow needs the mlflow package: pip install mlflow") from None
    mlflow.start_run(run_name=name)
    mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
    return Tracker(lambda row: mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"},
                                                 step=int(row["epoch"])), mlflow.end_run)


TRACKERS = {"tensorboard": _tensorboard, "mlflow": _mlflow}


def open_trackers(names: tuple[str, ...], out: Path | None, name: str, params: dict[str, Any]) -> list[Tracker]:
    """The trackers named in ``names`` (see :data:`qianyi.train.config.LOGGERS`), opened for one run."""
    return [TRACKERS[n](out, name, params) for n in names]

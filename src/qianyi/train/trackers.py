"""Optional experiment trackers (``TrainConfig.log_to`` / ``--log-to``): TensorBoard and MLflow.

Neither is a dependency: a tracker is imported only when asked for, and a missing package is a
clear error naming what to install. Each epoch's history row (loss terms, source validation
accuracy, validator scores; ``oracle_target_acc`` only in bench runs, for reports) is logged with
the epoch as the step.

Where they write: TensorBoard to ``OUT/tensorboard`` (without an output folder, to
``./tensorboard/<method>_<task>_seed_<seed>_<time>``); MLflow to its tracking URI (``MLFLOW_TRACKING_URI``; unset,
mlflow 3 uses ``./mlflow.db`` in the working directory). What was logged is recorded in ``OUT/trackers.json``
(with the MLflow run's id, which a resume continues); epochs an interrupted run logged after its checkpoint are
logged again as they are retrained (TensorBoard drops the old ones, ``purge_step``; MLflow keeps both values).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Sequence

from .._io import write_json
from ..errors import ConfigError

Row = dict[str, float]
#: What a run records in its output folder about what its trackers logged (what a resume need not log again).
RECORD_FILE = "trackers.json"
#: MLflow's run statuses for a run that finished, was interrupted (Ctrl-C, SIGTERM) or failed.
FINISHED, KILLED, FAILED = "FINISHED", "KILLED", "FAILED"


def _epoch(row: Row) -> int:
    return int(row["epoch"])


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` in one line: its type and first sentence (a store's refusal goes on for a paragraph)."""
    sentence = re.split(r"(?<=\.) ", (str(exc).strip().splitlines() or [""])[0])[0]
    return f"{type(exc).__name__}: {sentence[:limit]}"


def safe_name(name: str) -> str:
    """``name`` (e.g. ``"dann mnist->digits seed 0"``) as a folder name: letters, digits, ``.``, ``_`` and ``-``."""
    return re.sub(r"[^\w.-]+", "_", name.replace("->", "-to-")).strip("_") or "run"


class _Records:
    """``OUT/trackers.json``: per tracker, what it logged for the run whose fingerprint digest is ``key``
    (a record of another run is ignored). Without an output folder, kept in memory only."""

    def __init__(self, out: Path | None, key: str) -> None:
        self.path = None if out is None else out / RECORD_FILE
        self.key, self.data = key, {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # damaged: start afresh (TensorBoard purges, MLflow starts a new run)
                data = None
            if isinstance(data, dict) and data.get("run") == key and isinstance(data.get("trackers"), dict):
                self.data = {k: v for k, v in data["trackers"].items() if isinstance(v, dict)}

    def get(self, tracker: str) -> dict[str, Any]:
        return dict(self.data.get(tracker, {}))

    def put(self, tracker: str, **values: Any) -> None:
        self.data[tracker] = {**self.data.get(tracker, {}), **values}
        if self.path is not None:
            write_json(self.path, {"run": self.key, "trackers": self.data})


class Tracker:
    """One tracker of one run: :meth:`start` once before training (with the history a resume restored), then
    :meth:`log` per epoch, :meth:`close` at the end."""

    name = ""

    def __init__(self, out: Path | None, name: str, params: dict[str, Any], records: _Records) -> None:
        self.out, self.run_name, self.params, self.records = out, name, params, records
        self.logged = 0  # the last epoch logged
        self.started = False

    def start(self, history: Sequence[Row]) -> None:
        """Open the tracker; log the restored ``history`` rows it does not have yet."""
        self.started = True
        for row in history:
            self.log(row)

    def log(self, row: Row) -> None:
        if _epoch(row) <= self.logged:  # logged by an interrupted run before its checkpoint
            return
        self._log(_epoch(row), {k: float(v) for k, v in row.items() if k != "epoch"})
        self.logged = _epoch(row)  # recorded once sent: an epoch whose sending failed (or was killed) is sent again
        self.records.put(self.name, epochs=self.logged)

    def _log(self, epoch: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def close(self, status: str = FINISHED) -> None:
        """End the tracker's run with ``status`` (:data:`FINISHED`, :data:`KILLED` or :data:`FAILED`)."""


class _TensorBoard(Tracker):
    name = "tensorboard"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--log-to tensorboard needs the tensorboard package: pip install tensorboard") from None
        self._writer_class, self.writer = SummaryWriter, None
        self.log_dir = (self.out / "tensorboard" if self.out is not None else
                        Path("tensorboard") / f"{safe_name(self.run_name)}_{time.strftime('%Y%m%d-%H%M%S')}")

    def start(self, history: Sequence[Row]) -> None:
        restored = max((_epoch(r) for r in history), default=0)
        before = int(self.records.get(self.name).get("epochs", 0))
        self.logged = min(before, restored)  # what is there and stays; steps after it are dropped and logged again
        written = self.log_dir.is_dir() and any(self.log_dir.glob("events.out.tfevents.*"))
        try:
            self.writer = self._writer_class(log_dir=str(self.log_dir),
                                             purge_step=self.logged + 1 if written else None)
            if self.logged == 0:  # at step 1, so that a run trained afresh into this folder replaces it
                self.writer.add_text("settings", json.dumps(self.params, default=str), global_step=1)
        except Exception as exc:
            raise ConfigError(f"--log-to tensorboard could not write to {str(self.log_dir)!r} ({_first_line(exc)}); "
                              "give an --out folder that can be written, or leave tensorboard out of --log-to"
                              ) from exc
        super().start(history)

    def _log(self, epoch: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def close(self, status: str = FINISHED) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _MLflow(Tracker):
    name = "mlflow"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        try:
            import mlflow
        except ImportError:
            raise ConfigError("--log-to mlflow needs the mlflow package: pip install mlflow") from None
        self.mlflow = mlflow

    def _uri(self) -> str | None:
        try:
            return str(self.mlflow.get_tracking_uri())
        except Exception:
            return None

    def start(self, history: Sequence[Row]) -> None:
        mlflow, rec, uri = self.mlflow, self.records.get(self.name), self._uri()
        nested = mlflow.active_run() is not None  # called inside a run of yours: this run goes under it
        run = None
        if rec.get("run_id") and rec.get("tracking_uri") == uri and not rec.get("finished"):
            try:  # the run an interrupted run of this folder started: continue it
                run = mlflow.start_run(run_id=rec["run_id"], nested=nested)
                # what the checkpoint holds stays; epochs logged after it are logged again as they are retrained
                # (MLflow keeps both values at such a step; the latest, the retrained one, is the metric's value)
                self.logged = min(int(rec.get("epochs", 0)), max((_epoch(r) for r in history), default=0))
            except Exception:  # deleted, or in another experiment: a new run
                run = None
        try:
            if run is None:
                run = mlflow.start_run(run_name=self.run_name, nested=nested)
                self.logged = 0
                self.started = True
                mlflow.log_params({k: str(v)[:250] for k, v in self.params.items()})
        except Exception as exc:
            if self.started:
                self.close(FAILED)
            raise ConfigError(
                f"--log-to mlflow could not start a run at the tracking URI {uri!r} ({_first_line(exc)}); set "
                "MLFLOW_TRACKING_URI to a store MLflow accepts (e.g. sqlite:///mlflow.db; mlflow 3 takes a file: "
                "store only with MLFLOW_ALLOW_FILE_STORE=true) or start its server, or leave mlflow out of --log-to"
                ) from None
        self.started = True
        self.records.put(self.name, run_id=run.info.run_id, tracking_uri=uri, epochs=self.logged, finished=False)
        super().start(history)

    def _log(self, epoch: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=epoch)

    def close(self, status: str = FINISHED) -> None:
        if self.started:
            self.started = False
            self.mlflow.end_run(status=status)
            self.records.put(self.name, finished=status == FINISHED)


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": _TensorBoard, "mlflow": _MLflow}


class Trackers:
    """The trackers of one run, as the engine calls them (``on_start``, ``on_epoch``) and the run closes them."""

    def __init__(self, trackers: list[Tracker]) -> None:
        # started MLflow first: if it refuses (its store), TensorBoard has written nothing yet
        self.trackers = sorted(trackers, key=lambda t: t.name == "tensorboard")

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, history: Sequence[Row]) -> None:
        try:
            for t in self.trackers:
                t.start(history)
        except BaseException:  # one that fails to open: those already open are closed
            self.close(FAILED)
            raise

    def log(self, row: Row) -> None:
        for t in self.trackers:
            t.log(row)

    def close(self, status: str = FINISHED) -> None:
        """Close every tracker (each one even if another fails to close)."""
        error: BaseException | None = None
        for t in self.trackers:
            try:
                t.close(status)
            except Exception as exc:
                error = error or exc
        if error is not None and status == FINISHED:
            raise error


def open_trackers(names: Sequence[str], out: Path | None, name: str, params: dict[str, Any],
                  key: str = "") -> Trackers:
    """The trackers named in ``names`` (see :data:`qianyi.train.config.LOGGERS`) for one run named ``name``,
    each package imported (a missing one is a :class:`ConfigError`) but nothing opened or written yet: that is
    :meth:`Trackers.start`. ``key`` tells the run apart (its fingerprint's digest): ``OUT/trackers.json`` of
    another run is not resumed."""
    records = _Records(out, key)
    return Trackers([TRACKERS[n](out, name, params, records) for n in names])


def status_of(exc: BaseException | None) -> str:
    """The MLflow status a run that raised ``exc`` (None: none) ends with."""
    return FINISHED if exc is None else KILLED if isinstance(exc, KeyboardInterrupt) else FAILED

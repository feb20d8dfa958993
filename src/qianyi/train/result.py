"""What a finished run reports: :class:`RunResult`, the content of ``result.json``."""
from __future__ import annotations

import errno
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .._io import is_permission, write_json, write_text
from ..errors import DataError

RESULT_FILE = "result.json"
HISTORY_FILE = "history.csv"  # one row per epoch: loss terms, source_val_acc, validator scores
MODEL_FILE = "model.pt"  # the final network's state dict (load with torch.load(..., weights_only=True))
#: Written in a run folder when its run stopped with a TrainingError (it diverged): why, so that `qianyi report`
#: and a bench's tables say so; removed when a later run there finishes.
FAILED_FILE = "failed.json"


def read_failure(folder: str | Path) -> str | None:
    """Why the run in ``folder`` stopped (its :data:`FAILED_FILE`'s message), or None when it did not fail (or
    the file cannot be read: it is an account, never needed)."""
    msg = read_failure_record(folder).get("message")
    return msg if isinstance(msg, str) and msg else None


def read_failure_record(folder: str | Path) -> dict[str, Any]:
    """The :data:`FAILED_FILE` of ``folder`` (error, message, method, hparams, revision, source, target, seed), or
    {} when there is none or it cannot be read."""
    try:
        record = json.loads((Path(folder) / FAILED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@dataclass
class RunResult:
    """What ``result.json`` holds. Accuracies are fractions in [0, 1].

    ``history`` has one row per epoch: the loss terms, ``source_val_acc``, ``score_NAME`` for each
    validator scored, and — only in runs that asked for it (``bench``) — ``oracle_target_acc``, the
    target-test accuracy of that epoch, recorded for reports and never read by training or selection.
    ``fingerprint`` is everything that determines the result (see :mod:`qianyi.train.store`).
    """

    method: str
    source: str
    target: str
    seed: int
    target_accuracy: float | None  # None: no labelled target test (see ``scores`` for label-free estimates)
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
    selected_epoch: int = 0
    #: Label-free scores of the final (selected) model, by validator name.
    scores: dict[str, float] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    #: On the target test split (when there is one): balanced accuracy, per-class accuracy, confusion
    #: matrix (rows true class, columns predicted), class names.
    target_report: dict[str, Any] = field(default_factory=dict)
    #: SHA-256 of the model.pt written with this result (result.json is written last: it marks the run finished).
    model_sha256: str = ""
    #: The step a killed run resumed from (0: it ran in one go); processes under torchrun (1: one process).
    resumed_from_step: int = 0
    processes: int = 1
    #: The model file ``model_sha256`` names: ``model.pt`` (networks) or ``model.npz`` (shallow methods).
    model_file: str = "model.pt"
    #: Label-free warnings about the run (an adversarial game lost by one side, a collapsed network).
    flags: list[str] = field(default_factory=list)
    #: A run trained in stages (self-training's starting model, --via domains): ``via`` (the intermediate domains),
    #: ``mode`` and ``stages`` (name, method, what it adapted to, folder under the run's, model_sha256).
    staged: dict[str, Any] = field(default_factory=dict)
    #: How many of the ``n_target_test`` test samples were also target training samples (inputs only: the
    #: transductive protocol, ``--target T --target-test T``); 0: a held-out test split (or a result.json written
    #: before this field).
    test_in_target: int = 0

    def __repr__(self) -> str:
        """One short line (the dataclass's repr held the whole history, config and fingerprint: thousands of
        characters in a notebook); every field stays an attribute, and :meth:`to_dict` gives them all."""
        def num(v: Any, spec: str) -> str:
            return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)

        scores = ", ".join(f"{k}={num(v, '.4g')}" for k, v in list(self.scores.items())[:4]) + \
            (", ..." if len(self.scores) > 4 else "")
        return (f"RunResult({self.method!r}, {self.source!r}->{self.target!r}, seed={self.seed}, "
                f"target_accuracy={num(self.target_accuracy, '.4f')}, "
                f"source_accuracy={num(self.source_accuracy, '.4f')}, "
                f"epochs={len(self.history)}, selected_epoch={self.selected_epoch}"
                + (f", scores={{{scores}}}" if scores else "") + (", oracle" if self.oracle else "") + ")")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: str | Path) -> "RunResult":
        """The run result stored in ``path`` (a ``result.json``); a :class:`~qianyi.errors.DataError` naming
        the file when it is not one (truncated, edited, written by something else)."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:  # its bytes were not read: nothing says they are damaged
            raise DataError(f"{str(path)!r} cannot be read as a run result: {not_read(exc)}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            reason = str(exc)
        else:
            missing = ([f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                        and f.name not in data] if isinstance(data, dict) else ["(not a JSON object)"])
            wrong = [] if missing else _wrong_types(data)
            if not missing and not wrong:
                return cls.from_dict(data)
            reason = "missing " + ", ".join(missing) if missing else "of the wrong type or range: " + ", ".join(wrong)
        raise DataError(f"{str(path)!r} cannot be read as a run result ({reason}); it is corrupt: delete its run "
                        "folder, or rerun the same command (`qianyi bench` with the same --out retrains it)")

    def save(self, directory: str | Path) -> Path:
        return write_json(Path(directory) / RESULT_FILE, self.to_dict())

    def summary(self) -> str:
        tag = " [ORACLE: uses target labels]" if self.oracle else ""
        if self.target_accuracy is None:
            est = self.scores.get("atc")
            target = ("target accuracy unknown (no labelled target test)"
                      + (f"; ATC estimate {100 * est:.1f}% (assumes no label shift)" if est is not None else ""))
        else:
            target = f"target accuracy {100 * self.target_accuracy:.2f}%"
        resumed = f"; resumed from its checkpoint at step {self.resumed_from_step}" if self.resumed_from_step else ""
        # "target accuracy 71% ... no target labels" read as a contradiction: what the labels did not choose
        chosen = self.selection.replace("; no target labels", "; chosen without target labels")
        if self.test_in_target:
            tag += (f" [transductive: {self.test_in_target} of the {self.n_target_test} test samples were training "
                    "inputs]")
        return (f"{self.method} {self.source}->{self.target} seed {self.seed}: {target}, source accuracy "
                f"{100 * self.source_accuracy:.2f}% ({self.train_seconds:.1f}s{resumed}; {chosen}){tag}")


def not_read(exc: OSError) -> str:
    """What to do about a run file that exists but could not be read (``exc`` from opening or reading it): its
    bytes were not read, so it is not called damaged and deleting it is never advised."""
    if is_permission(exc):
        return "permission denied; fix its permissions and run the command again"
    if exc.errno == errno.EISDIR:
        return "it is a folder, not a file; move it out of the run folder and run the command again"
    if exc.errno == errno.ENOENT:
        return "it does not exist"
    return (f"{exc.strerror or exc}; it was not read, so nothing says it is damaged: check the disk or file system "
            "and run the command again")


def _wrong_types(data: dict[str, Any]) -> list[str]:
    """The fields of a result.json not of the type (or range) qianyi writes them with (a hand-edited or foreign
    file took summary and report down with a TypeError, or showed an accuracy of 5.0 as 500%)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def share(v: Any) -> bool:
        return number(v) and 0.0 <= v <= 1.0
    kinds: dict[str, Callable[[Any], bool]] = {
        "method": lambda v: isinstance(v, str), "source": lambda v: isinstance(v, str),
        "target": lambda v: isinstance(v, str), "selection": lambda v: isinstance(v, str),
        "device": lambda v: isinstance(v, str), "model_sha256": lambda v: isinstance(v, str),
        "model_file": lambda v: isinstance(v, str),
        "seed": lambda v: isinstance(v, int) and not isinstance(v, bool), "oracle": lambda v: isinstance(v, bool),
        "target_accuracy": lambda v: v is None or share(v), "source_accuracy": lambda v: v is None or share(v),
        "train_seconds": lambda v: number(v) and v >= 0,
        **{k: lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0
           for k in ("n_source", "n_target_train", "n_target_test", "selected_epoch", "resumed_from_step",
                     "processes", "test_in_target")},
        **{k: lambda v: isinstance(v, dict) for k in ("hparams", "config", "versions", "scores", "fingerprint",
                                                      "target_report", "staged")},
        "history": lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
        "flags": lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v),
    }
    return [k for k, ok in kinds.items() if k in data and not ok(data[k])]


def write_history_csv(path: str | Path, history: list[dict[str, float]]) -> Path:
    """The per-epoch history as a CSV table (columns: every key any epoch recorded, in order of appearance)."""
    cols = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(cols)] + [",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in cols) for row in history]
    return write_text(path, "\n".join(lines) + "\n")

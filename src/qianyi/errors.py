"""Exception and warning types. Every message names the bad input and says what to do.

A :class:`QianyiError` is a user mistake (bad file, bad setting, unusable output folder): the
command line prints ``qianyi: error: <message>`` and exits with status 2, without a traceback.
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class QianyiError(Exception):
    """Base class of all qianyi errors (user mistakes, not bugs)."""


class DataError(QianyiError, ValueError):
    """Input data is malformed: wrong shape or dtype, NaN/inf, empty, unreadable, too large."""


class LabelMismatchError(DataError):
    """Source and target label sets cannot be matched."""


class DatasetNotFoundError(QianyiError, FileNotFoundError):
    """A dataset name or file cannot be found."""


class UnknownNameError(QianyiError, ValueError):
    """A method, dataset or option name is not registered."""


class ConfigError(QianyiError, ValueError):
    """A setting is out of range, not finite, or cannot be used on this machine."""


class CheckpointError(QianyiError, RuntimeError):
    """A checkpoint is corrupt or belongs to a different run."""


class OutputError(QianyiError, OSError):
    """An output folder cannot be used: not a folder, not writable, full, or in use by another run."""


class TrainingError(QianyiError, FloatingPointError):
    """Training diverged: a loss term or a weight became NaN or infinite."""


class QianyiWarning(UserWarning):
    """A result is computed but deserves caution (e.g. a tiny target test split)."""

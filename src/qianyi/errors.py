"""Exception types. Every message names the bad input and says what to do."""
from __future__ import annotations


class QianyiError(Exception):
    """Base class of all qianyi errors."""


class DataError(QianyiError, ValueError):
    """Input data is malformed: wrong shape or dtype, NaN/inf, empty, unreadable."""


class LabelMismatchError(DataError):
    """Source and target label sets cannot be matched."""


class DatasetNotFoundError(QianyiError, FileNotFoundError):
    """A dataset name or file cannot be found."""


class UnknownNameError(QianyiError, ValueError):
    """A method, dataset or option name is not registered."""


class CheckpointError(QianyiError, RuntimeError):
    """A checkpoint is corrupt or belongs to a different run."""

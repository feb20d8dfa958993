"""Faults of the machine rather than of the data: a full disk, files and folders that cannot be read (permission
denied), files cut short. Each ends in a clear ``qianyi`` error or warning naming the path, never a traceback or
a silently wrong result. Permission faults are injected in-process (root reads anything, so ``chmod`` alone would
not bite here); a real ``chmod`` test runs where it does bite."""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from qianyi.errors import OutputError


class _FullDisk:
    """A file whose writes reach a full disk (everything else is the real file's)."""

    def __init__(self, fh: io.TextIOWrapper) -> None:
        self._fh = fh

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_when_the_lock_is_written_is_an_output_error(tmp_path, monkeypatch):
    from qianyi.train import rundir

    real = os.fdopen

    def fdopen(fd, mode="r", *a, **kw):
        fh = real(fd, mode, *a, **kw)
        return _FullDisk(fh) if mode == "r+" else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(OutputError, match=r"cannot write '.*/run/\.lock': No space left on device; free some disk"):
        with rundir.hold(tmp_path / "run"):
            pytest.fail("held a folder whose lock could not be written")
    monkeypatch.setattr(os, "fdopen", real)
    with rundir.hold(tmp_path / "run") as path:  # nothing held on: the next run takes the folder
        assert (path / ".lock").read_text().startswith("pid ")

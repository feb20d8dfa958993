"""Atomic writes: all or nothing, ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from qianyi._io import atomic_write, write_json


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    p = tmp_path / "r.json"
    write_json(p, {"a": 1})

    def half(fh):
        fh.write('{"a": ')
        raise RuntimeError("killed mid-write")
    with pytest.raises(RuntimeError):
        atomic_write(p, half)
    assert p.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_atomic_write_uses_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_json(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644

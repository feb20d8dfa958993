"""Atomic writes: all or nothing, ordinary permissions; the check of an --out file."""
from __future__ import annotations

import os
import stat

import pytest

from qianyi._io import RUN_FILES, atomic_write, check_out_file, write_json
from qianyi.errors import OutputError


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


def test_a_run_files_name_is_refused_only_in_a_run_folder(tmp_path):
    """Review mutation2 #13 (I1): --out history.csv or model.npz is the user's own file outside a run folder."""
    plain, run = tmp_path / "plain", tmp_path / "run"
    plain.mkdir()
    run.mkdir()
    (run / "model.json").write_text("{}")
    for name, suffix in (("history.csv", ".csv"), ("model.npz", ".npz")):
        assert name in RUN_FILES
        assert check_out_file(plain / name, suffix) == plain / name
        with pytest.raises(OutputError, match="is a file of the run"):
            check_out_file(run / name, suffix)


def test_folder_kind_tells_a_run_a_proxy_and_a_bench_folder_apart(tmp_path):
    from qianyi._io import folder_kind

    def folder(name: str, *files: str):
        d = tmp_path / name
        for f in files:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            (d / f).write_text("{}")
        d.mkdir(exist_ok=True)
        return d

    assert folder_kind(folder("proxy", "proxy.json", "result.json", "proxy.pt")) == "proxy"  # result.json: its own
    assert folder_kind(folder("run", "result.json", "model.json")) == "run"
    assert folder_kind(folder("gan", "generators.json")) == "run"
    assert folder_kind(folder("killed", "checkpoint.pt")) == "run"  # a run not finished yet
    assert folder_kind(folder("killed2", "checkpoint.pt", "model.json", "model.pt")) == "run"  # (before result.json)
    # `advise --out DIR`'s DIR/source: a saved network, no run result and no checkpoint (was called an unfinished run)
    assert folder_kind(folder("saved", "model.json", "model.pt")) == "model"
    assert folder_kind(folder("bench", "results.csv")) == "bench"
    assert folder_kind(folder("store", "runs/a/b/c/result.json")) == "bench"
    assert folder_kind(folder("empty")) is None and folder_kind(tmp_path / "absent") is None

"""Every benchmark script still imports against the package and answers --help (docs cite their commands)."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_answers_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.syspath_prepend(str(script.parent))  # as `python benchmarks/x.py` has it
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code in (0, None)
    assert "usage" in capsys.readouterr().out.lower()


def test_script_main_maps_user_mistakes_to_exit_2(capsys, monkeypatch):
    from qianyi.cli import script_main
    from qianyi.errors import DatasetNotFoundError

    monkeypatch.setattr(sys, "argv", ["bench.py"])

    def missing_data():
        raise DatasetNotFoundError("fsdd: /nowhere is absent; set QIANYI_DATA")

    def missing_extra():
        raise ModuleNotFoundError("No module named 'skada'", name="skada")

    assert script_main(missing_data) == 2
    assert "bench.py: error: fsdd: /nowhere is absent" in capsys.readouterr().err
    assert script_main(missing_extra) == 2
    assert "optional package 'skada'" in capsys.readouterr().err
    assert script_main(lambda: None) == 0

    def broken_install():
        raise ModuleNotFoundError("No module named 'qianyi.nope'", name="qianyi.nope")

    with pytest.raises(ModuleNotFoundError):  # a bug in qianyi keeps its traceback
        script_main(broken_install)


def test_benchmark_script_without_data_says_where_to_put_it(tmp_path):
    import os
    import subprocess

    script = next(s for s in SCRIPTS if s.name == "cotraining.py")
    env = {**os.environ, "QIANYI_DATA": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script), "--seeds", "1"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cotraining.py: error:" in done.stderr and "QIANYI_DATA" in done.stderr
    assert "Traceback" not in done.stderr

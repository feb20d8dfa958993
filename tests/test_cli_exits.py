"""The command line in scripts and CI: exit codes of benches with diverged runs and of warnings made errors, a
stdout that cannot be written, a closed stderr (review logs)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from qianyi.cli import main
from qianyi.errors import QianyiWarning, TrainingError
from qianyi.train import engine

from .test_run_folders import blob_pair

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    return blob_pair(tmp_path)


def test_the_cli_says_a_warning_made_an_error_without_a_traceback(tmp_path, pair, monkeypatch, capsys):
    monkeypatch.setattr(engine, "game_flags", lambda *a, **k: ["the game collapsed (a test flag)"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        rc = main(["run", "dann", "--source", pair[0], "--target", pair[1], "--epochs", "1", "--steps-per-epoch",
                   "4", "--no-progress", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 5 and "qianyi: error: dann on" in err and "a warning made an error by -W error" in err
    assert (tmp_path / "r" / "result.json").is_file()


def _diverging(module, method: str, monkeypatch: pytest.MonkeyPatch, when=lambda m: True) -> None:
    """``module.run`` stops with a TrainingError for ``method`` (as a run whose loss became NaN)."""
    real = module.run

    def run_or_diverge(m, *a, **k):  # noqa: ANN001, ANN002, ANN003
        if getattr(m, "name", m) == method and when(m):
            raise TrainingError(f"{method}: the loss became nan at step 3 (a test)")
        return real(m, *a, **k)

    monkeypatch.setattr(module, "run", run_or_diverge)


def test_a_bench_where_some_runs_diverged_exits_4(tmp_path, pair, capsys, monkeypatch):
    from qianyi.bench import runner

    args = ["bench", "--methods", "dan,dann", "--pairs", f"{pair[0]}->{pair[1]}", "--seeds", "1", "--epochs", "1",
            "--steps-per-epoch", "4", "--no-progress", "--no-embedding", "--out", str(tmp_path / "b")]
    _diverging(runner, "dann", monkeypatch)
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 4, err  # before: 0, though a method under study produced nothing
    assert "diverged (1/1 seeds)" in out and "1 run diverged (no result; the tables say which): exit 4" in err
    monkeypatch.undo()
    assert main([*args[:-1], str(tmp_path / "c")]) == 0  # a clean bench stays 0


def test_a_select_where_a_candidate_diverged_exits_4(tmp_path, pair, capsys, monkeypatch):
    from qianyi.bench import selection

    _diverging(selection, "dann", monkeypatch, when=lambda m: m.hparams()["trade_off"] == 1.0)
    rc = main(["select", "dann", "--pairs", f"{pair[0]}->{pair[1]}", "--grid", '[{"trade_off": 0.1}, {"trade_off": 1.0}]',
               "--epochs", "1", "--steps-per-epoch", "4", "--no-progress", "--out", str(tmp_path / "s")])
    out, err = capsys.readouterr()
    assert rc == 4, err
    assert "Diverged:" in out and "exit 4" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_a_one_line_error():
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "qianyi", "methods"], stdout=full, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": SRC})
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == ("qianyi: error: cannot write to stdout (No space left on device); free space where it "
                                "goes, or redirect it elsewhere")


def test_a_closed_stderr_neither_crashes_nor_writes_to_stdout(tmp_path, pair):
    cmd = (f"{shlex.quote(sys.executable)} -m qianyi run dann --source {shlex.quote(pair[0])} --target "
           f"{shlex.quote(pair[1])} --epochs 1 --steps-per-epoch 4 2>&-")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    # before: rc 1 (tqdm wrote to None after the training), and the data's description went to stdout
    assert p.returncode == 0, p.stdout
    assert "classes; source" not in p.stdout and "dann" in p.stdout


def test_a_command_failing_after_taking_its_lock_leaves_no_new_out_folder(tmp_path, monkeypatch, capsys):
    """A new --out folder holding only the lock file (a tracker package missing, found once the run had its folder)
    was left behind; a folder the failed command made and wrote nothing else into is removed, lock file and all."""
    monkeypatch.setitem(sys.modules, "mlflow", None)  # (absent, whatever this environment has installed)
    out = tmp_path / "new"
    rc = main(["run", "dann", "--source", "digits", "--target", "digits+rot30", "--log-to", "mlflow", "--epochs", "1",
               "--max-samples", "100", "--no-progress", "--out", str(out)])
    assert rc == 2 and "pip install mlflow" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "kept"  # a folder that existed before the command stays, whatever it holds
    kept.mkdir()
    assert main(["run", "dann", "--source", "digits", "--target", "digits+rot30", "--log-to", "mlflow", "--epochs",
                 "1", "--max-samples", "100", "--no-progress", "--out", str(kept)]) == 2
    assert kept.is_dir()

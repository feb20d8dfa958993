"""The command line in scripts, pipelines and CI: locales and stream encodings, exit codes, what goes to stdout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import qianyi

SRC = str(Path(qianyi.__file__).resolve().parents[1])
SMALL = ["--seeds", "1", "--epochs", "1", "--steps-per-epoch", "2", "--max-samples", "200", "--no-embedding"]


def qianyi_cli(args: list, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -m qianyi ARGS`` in a subprocess, with ``env`` on top of a clean, one-thread environment
    (``args`` may hold bytes: a file name that is not UTF-8)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONIOENCODING", "LC_", "LANG"))
            and k not in ("PYTHONUTF8", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    base.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "qianyi", *args], cwd=cwd, env=base, capture_output=True,
                          timeout=timeout)


#: An ASCII locale, not coerced to UTF-8 (as Windows' cp1252 or a latin-1 locale, it has no '→'); the standard
#: streams stay UTF-8 here (their own test is below).
ASCII_LOCALE = dict(PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", LC_ALL="C", LANG="C", PYTHONIOENCODING="utf-8")


def test_reports_are_utf8_whatever_the_locale(tmp_path):
    """Under an ASCII locale, bench and report wrote their Markdown in the locale's encoding and failed after all the training, with a traceback."""
    proc = qianyi_cli(["bench", "--methods", "dan", "--pairs", "digits->digits+rot30", *SMALL, "--out", "b"],
                      tmp_path, **ASCII_LOCALE)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    md = (tmp_path / "b" / "results.md").read_bytes().decode("utf-8")  # strict: the file is UTF-8
    assert "digits→digits+rot30" in md and (tmp_path / "b" / "results.png").is_file()
    assert b"\r\n" not in (tmp_path / "b" / "results.md").read_bytes()
    proc = qianyi_cli(["report", "b", "--no-embedding"], tmp_path, **ASCII_LOCALE)  # reads results.csv back
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert "→" in (tmp_path / "b" / "report.md").read_bytes().decode("utf-8")
    run = ["run", "dan", "--source", "digits", "--target", "digits+rot30", "--epochs", "1", "--steps-per-epoch", "2",
           "--max-samples", "200", "--no-progress", "--out", "r"]
    assert qianyi_cli(run, tmp_path, **ASCII_LOCALE).returncode == 0
    proc = qianyi_cli(["report", "r", "--no-embedding"], tmp_path, **ASCII_LOCALE)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert "→" in (tmp_path / "r" / "report.md").read_bytes().decode("utf-8")


def test_an_output_folder_whose_name_is_not_utf8_is_written(tmp_path):
    """The command line (with --out's undecodable byte, a surrogate in Python) goes into results.md: writing it
    failed with 'surrogates not allowed', after the training. The byte is written back as it was."""
    name = b"b\xe9"
    proc = qianyi_cli(["bench", "--methods", "dan", "--pairs", "digits->digits+rot30", *SMALL, "--out", name],
                      tmp_path, LC_ALL="C.UTF-8")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    md = (tmp_path / os.fsdecode(name) / "results.md").read_bytes()
    assert b"--out 'b\xe9'" in md and "→".encode() in md


def test_a_grid_file_that_is_not_utf8_is_a_user_mistake(tmp_path, capsys):
    from qianyi.cli import main

    grid = tmp_path / "grid.json"
    grid.write_bytes('[{"trade_off": 1.0}] # caf\u00e9'.encode("latin-1"))  # a JSON file is UTF-8
    assert main(["select", "dan", "--pairs", "digits->digits+rot30", "--grid", str(grid)]) == 2
    assert "--grid: not a JSON list of settings nor a readable JSON file" in capsys.readouterr().err

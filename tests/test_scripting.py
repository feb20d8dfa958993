"""The command line in scripts, pipelines and CI: locales and stream encodings, exit codes, what goes to stdout."""
from __future__ import annotations

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
    """Under an ASCII locale, bench and report wrote their Markdown in the locale's encoding and failed after all
    the training, with a traceback."""
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


def test_a_pair_under_a_folder_name_that_is_not_utf8_is_drawn(tmp_path):
    """A pair's path with an undecodable byte (a Latin-1 folder name, or any non-ASCII one under an ASCII locale) is
    a surrogate in Python: results.csv and results.md kept the byte, then results.png ended bench in matplotlib's
    TypeError (set_text() refuses surrogates), exit 1. Every bench figure is drawn, the tables keep the byte."""
    from .test_hostile import _blobs

    flags = ["--methods", "dan", "--seeds", "1", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16"]
    for name, env in ((b"d\xe9", dict(LC_ALL="C.UTF-8")), ("donnée".encode(), ASCII_LOCALE)):
        folder = tmp_path / os.fsdecode(name)
        folder.mkdir()
        _blobs(folder / "s.npz"), _blobs(folder / "t.npz", shift=1.0, seed=1)
        out = tmp_path / f"b-{len(name)}"
        proc = qianyi_cli(["bench", *flags, "--pairs", b"npz:" + name + b"/s.npz->npz:" + name + b"/t.npz",
                           "--out", out.name], tmp_path, **env)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        for png in ("results.png", "report/curves.png", "report/embedding.png", "report/profile.png"):
            assert (out / png).read_bytes()[:4] == b"\x89PNG", png
        assert b"npz:" + name + b"/s.npz" in (out / "results.md").read_bytes()


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


def test_a_stdout_that_cannot_encode_everything_does_not_fail(tmp_path):
    """Windows' redirected stdout (cp1252) or PYTHONIOENCODING=ascii: --help ('迁移'), methods cdan ('λ'),
    validators ('ü') and bench's table ('→') failed with UnicodeEncodeError, exit 1; bench after all its work."""
    for args in (["--help"], ["summary", "--help"], ["methods", "cdan"], ["methods", "dann"], ["validators"]):
        for encoding in ("cp1252", "ascii"):
            proc = qianyi_cli(args, tmp_path, PYTHONIOENCODING=encoding)
            assert proc.returncode == 0 and b"Traceback" not in proc.stderr, (args, encoding, proc.stderr)
            proc.stdout.decode(encoding)  # what the stream's encoding holds, the rest escaped
    assert b"qianyi (\\u8fc1\\u79fb)" in qianyi_cli(["--help"], tmp_path, PYTHONIOENCODING="ascii").stdout
    proc = qianyi_cli(["bench", "--methods", "dan", "--pairs", "digits->digits+rot30", *SMALL, "--out", "b"],
                      tmp_path, PYTHONIOENCODING="cp1252")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"digits\\u2192digits+rot30" in proc.stdout  # the table, escaped; the files stay UTF-8
    assert "digits→digits+rot30" in (tmp_path / "b" / "results.md").read_text(encoding="utf-8")
    proc = qianyi_cli(["summary", "b"], tmp_path, PYTHONIOENCODING="cp1252")
    assert proc.returncode == 0 and b"digits\\u2192digits+rot30" in proc.stdout, proc.stderr


def test_a_strict_utf8_stdout_prints_a_file_name_that_is_not_utf8(tmp_path):
    """A UTF-8 stdout with strict errors (an en_US.UTF-8 locale) failed on the surrogate that stands for an
    undecodable byte of --out; the byte is printed back as it was."""
    proc = qianyi_cli(["run", "source-only", "--source", "digits", "--target", "digits+rot30", "--epochs", "1",
                       "--steps-per-epoch", "2", "--max-samples", "200", "--out", b"r\xe9"], tmp_path,
                      PYTHONIOENCODING="utf-8:strict")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"written: r\xe9/result.json" in proc.stdout


def test_bench_prints_its_progress_to_stderr_and_only_results_to_stdout(tmp_path, capsys):
    """`qianyi bench ... > table.md` captured the data description and the [k/N] lines before the tables."""
    from qianyi.cli import main

    assert main(["bench", "--methods", "dan", "--pairs", "digits->digits+rot30", *SMALL, "--no-progress",
                 "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert "digits->digits+rot30: input" in err and "[1/3" in err and "[3/3" in err
    assert "input (" not in out and "[1/3" not in out
    assert out.lstrip().startswith("| method") and "written: " in out


def test_leftover_torchrun_variables_silence_only_training_and_are_named(tmp_path):
    """A `qianyi predict` started by a rank-1 torchrun worker inherits WORLD_SIZE and RANK: its CSV went to
    /dev/null (exit 0); `run` with them but no rendezvous address failed with torch's traceback."""
    leftover = dict(WORLD_SIZE="2", RANK="1")
    run = ["run", "source-only", "--source", "digits", "--target", "digits+rot30", "--epochs", "1",
           "--steps-per-epoch", "2", "--max-samples", "200", "--no-progress"]
    assert qianyi_cli([*run, "--out", "r"], tmp_path).returncode == 0
    proc = qianyi_cli(["predict", "r", "--data", "digits"], tmp_path, **leftover)
    assert proc.returncode == 0 and proc.stdout.startswith(b"index,predicted,p_0"), proc.stderr
    assert qianyi_cli(["methods"], tmp_path, **leftover).stdout.count(b"\n") > 10
    proc = qianyi_cli(run, tmp_path, **leftover)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert "MASTER_ADDR, MASTER_PORT are not set" in err and "unset WORLD_SIZE and RANK" in err


def test_under_torchrun_every_command_that_trains_prints_in_process_0_only(tmp_path, capsys, monkeypatch):
    """`advise` (and measure, transferability, layers, pivots) joined the process group and trained in every
    torchrun process, and each process printed the whole report: rank 1 printed it a second time."""
    import numpy as np

    from qianyi.cli import main
    from qianyi.train import distributed

    rng = np.random.default_rng(0)
    for name, shift in (("src", 0.0), ("tgt", 0.5)):
        X = rng.normal(size=(120, 4)) + shift
        rows = [",".join(f"{v:.3f}" for v in x) + f",{int(x[0] > shift)}" for x in X]
        (tmp_path / f"{name}.csv").write_text("a,b,c,d,label\n" + "\n".join(rows) + "\n")
    joined = []
    monkeypatch.setattr(distributed, "init_from_env", lambda device: joined.append(device))  # the group's join
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main replaces it in a rank > 0 process: restored after
    for k, v in dict(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    args = ["advise", f"csv:{tmp_path / 'src.csv'}", f"csv:{tmp_path / 'tgt.csv'}", "--epochs", "1",
            "--samples", "60", "--permutations", "0", "--no-progress"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert joined, "advise trains, so it joins the group"
    assert out == "" and "trained a source network" in err


def test_every_command_is_either_silenced_under_torchrun_or_does_not_train():
    """A command added later is classified: one that trains under torchrun prints in process 0 only."""
    import argparse

    from qianyi.cli import RESUMABLE, TORCHRUN_COMMANDS, build_parser

    no_training = {"summary", "predict", "features", "translate", "report", "validators", "datasets", "methods",
                   "proxy"}  # (proxy fits ridge regressions, not networks)
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(TORCHRUN_COMMANDS) | no_training
    assert not set(TORCHRUN_COMMANDS) & no_training and set(RESUMABLE) | {"advise"} <= set(TORCHRUN_COMMANDS)


def test_sigterm_says_how_to_resume_and_exits_143(tmp_path):
    """SIGTERM (CI cancellation, docker stop, Slurm) ended a run with 143 and no word; it now says, as Ctrl-C
    does, that the same command resumes, and the checkpoint stays."""
    import signal
    import time

    args = [sys.executable, "-m", "qianyi", "run", "dann", "--source", "digits", "--target", "digits+rot30",
            "--epochs", "200", "--steps-per-epoch", "20", "--checkpoint-every", "5", "--no-progress", "--out", "r"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "r" / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err.decode()
    assert "qianyi: interrupted (SIGTERM); run the same command again to resume from the last checkpoint" \
        in err.decode() and b"Traceback" not in err
    assert (tmp_path / "r" / "checkpoint.pt").is_file() and not (tmp_path / "r" / "result.json").exists()


def test_the_exit_table_lists_every_exit_the_cli_gives():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "robustness.md").read_text(encoding="utf-8")
    for code in (2, 3, 130, 141, 143):
        assert f"\n| {code} |" in doc, code


def test_no_progress_is_said_to_drop_the_epoch_lines_too(tmp_path, capsys):
    """--no-progress drops the per-epoch and resume lines as well as the bar (quiet CI logs; the bar is off on a
    non-terminal anyway); its help said only "no progress bar"."""
    from qianyi.cli import build_parser

    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert "no progress bar and no per-epoch or 'resuming from step N' lines" in help_text
    run = ["run", "source-only", "--source", "digits", "--target", "digits+rot30", "--epochs", "2",
           "--steps-per-epoch", "2", "--max-samples", "200"]
    assert b"source-only seed 0: epoch 2/2" in qianyi_cli(run, tmp_path).stderr  # not a terminal: lines, no bar
    assert b"epoch 2/2" not in qianyi_cli([*run, "--no-progress"], tmp_path).stderr


def test_figure_titles_too_wide_are_shortened_to_file_names():
    """A pair of file specs as a figure title was cut off at both edges of the PNG."""
    import io

    from qianyi._report import short_title, subplots

    long = "npz:my data/数据/src file.npz → npz:my data/数据/tgt file.npz"
    assert short_title(long) == "npz:src file.npz → npz:tgt file.npz"
    assert short_title("folder:C:\\data\\amazon -> folder:/x/webcam?size=32") == "folder:amazon -> folder:webcam?size=32"
    assert short_title("digits → digits+rot30") == "digits → digits+rot30"
    assert short_title("npz:abcdefghijkl.npz → mnist", keep=11) == "npz:a…l.npz → mnist"
    # measure, advise and layers name a pair without spaces: the source was dropped, the target's name kept alone
    assert short_title("csv:/home/me/north/households.csv->csv:/home/me/south/households.csv") \
        == "csv:households.csv->csv:households.csv"
    assert short_title("csv:/a/src.csv->csv:/b/tgt.csv (40 T labels)") == "csv:src.csv->csv:tgt.csv (40 T labels)"
    # an option's value with a slash is not a folder (it was shortened to "csv:south")
    assert short_title("csv:/x/data.csv?where=region:north/south->mnist") \
        == "csv:data.csv?where=region:north/south->mnist"
    assert short_title("csv:data.csv?where=region:north/south") == "csv:data.csv?where=region:north/south"
    assert short_title("npz:/d/s.npz+rot30 → npz:/d/t.npz?name=t+noise0.1") \
        == "npz:s.npz+rot30 → npz:t.npz?name=t+noise0.1"
    fig, ax = subplots(figsize=(5, 4))
    ax.plot([0, 1])
    ax.set_title("npz:runs/some long folder name/source domain.npz → npz:runs/some long folder name/target.npz")
    fig.suptitle("target accuracy, one seed")
    fig.savefig(io.BytesIO(), format="png")
    assert ax.title.get_text() == "npz:source domain.npz → npz:target.npz"
    assert fig._suptitle.get_text() == "target accuracy, one seed"  # it fits: as written
    fig, ax = subplots(figsize=(2, 2))
    ax.set_title("npz:" + "x" * 80 + ".npz → digits")
    fig.savefig(io.BytesIO(), format="png")
    text = ax.title.get_text()
    assert "…" in text and text.endswith("x.npz → digits") and text.startswith("npz:x")
    renderer = fig._get_renderer()
    assert ax.title.get_window_extent(renderer).width <= fig.bbox.width


def test_characters_the_font_lacks_give_one_qianyi_warning(monkeypatch, recwarn):
    """Each report printed matplotlib's "Glyph 25968 ... missing from font(s) DejaVu Sans" per character and
    figure, each with a line of source; now one qianyi warning per process says what it means."""
    import io

    import qianyi._report as report
    from qianyi.errors import QianyiWarning

    monkeypatch.setattr(report, "_missing_glyphs_said", False)
    for _ in range(2):
        fig, ax = report.subplots(figsize=(3, 3))
        ax.set_title("数据 → digits")
        fig.tight_layout()
        fig.savefig(io.BytesIO(), format="png")
    said = [w for w in recwarn if issubclass(w.category, QianyiWarning)]
    assert len(said) == 1 and "has no '数据'" in str(said[0].message)
    assert not [w for w in recwarn if "Glyph" in str(w.message)]


def test_summary_warns_when_two_pairs_are_the_same_files_by_other_paths(tmp_path, monkeypatch, capsys):
    """The same files spelled by two paths (a bench run from another folder) are filed as two pairs and counted
    twice in "mean over pairs" and "beats source-only on"; summary and report now say so."""
    import numpy as np
    from sklearn.datasets import load_digits

    from qianyi.cli import main

    X, y = load_digits(return_X_y=True)
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "s.npz", X=X[:200].reshape(-1, 1, 8, 8) / 16, y=y[:200])
    np.savez(tmp_path / "d" / "t.npz", X=X[200:400].reshape(-1, 1, 8, 8) / 16, y=y[200:400])
    monkeypatch.chdir(tmp_path)
    small = [a for a in SMALL if a != "200" and a != "--max-samples"]
    assert main(["bench", "--methods", "dan", "--pairs", "npz:d/s.npz->npz:d/t.npz", *small, "--out", "b"]) == 0
    monkeypatch.chdir(tmp_path / "d")
    assert main(["bench", "--methods", "dan", "--pairs", "npz:s.npz->npz:t.npz", *small, "--out", "../b"]) == 0
    capsys.readouterr()
    assert main(["summary", "../b", "--out", "../s"]) == 0
    said = "the pairs npz:d/s.npz->npz:d/t.npz and npz:s.npz->npz:t.npz are the same data"
    assert said in " ".join(capsys.readouterr().err.split())
    assert said in " ".join((tmp_path / "s" / "results.md").read_text(encoding="utf-8").split())


def test_predicts_id_column_is_read_from_a_csv_whose_path_holds_a_question_mark(tmp_path):
    # the options were split at the first '?', inside the folder's name: "option 'x/t.csv' is not KEY=VALUE"
    from qianyi.cli import _id_header

    folder = tmp_path / "d?x"
    folder.mkdir()
    (folder / "t.csv").write_text("cid,a,label\n1,0.5,0\n")
    assert _id_header(f"csv:{folder / 't.csv'}") == "file"
    assert _id_header(f"csv:{folder / 't.csv'}?id=cid") == "cid"

"""`qianyi report RUN_DIR`: a report of one run, built for an UNLABELLED target (settings, label-free scores, curves,
the classes given to the target, the embedding, the per-layer MMD); a labelled test split adds its per-class
accuracy, marked as scoring only."""
from __future__ import annotations

import json

import numpy as np
import pytest

import qianyi
from qianyi.cli import main

from .conftest import requires_data

FAST = ["--epochs", "2", "--batch-size", "32", "--no-progress", "--threads", "1"]


def _digits(path, lo, hi, labelled=True, invert=False):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X[lo:hi] / 16).astype("f4").reshape(-1, 1, 8, 8)
    arrays = {"X": 1 - X if invert else X, **({"y": y[lo:hi]} if labelled else {})}
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runrep")
    _digits(root / "s.npz", 0, 600)
    _digits(root / "t.npz", 600, 1000, labelled=False, invert=True)
    return root


def test_a_run_with_an_unlabelled_target_gets_a_report(unlabelled_run, capsys, monkeypatch):
    root = unlabelled_run
    monkeypatch.chdir(root)  # the run's specs are relative to this folder
    assert main(["run", "dann", "--source", "npz:s.npz", "--target", "npz:t.npz", *FAST, "--out", "run"]) == 0
    assert "qianyi report run" in capsys.readouterr().out  # the run says how to see it
    monkeypatch.chdir(root.parent)  # the report resolves them from model.json's folder, not from here
    assert main(["report", str(root / "run")]) == 0
    out = capsys.readouterr().out
    for name in ("curves", "predictions", "embedding", "profile"):
        png = root / "run" / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"report/{name}.png" in out
    md = (root / "run" / "report.md").read_text()
    html = (root / "run" / "report.html").read_text()
    result = json.loads((root / "run" / "result.json").read_text())
    assert "| target accuracy | unknown: the target is unlabelled |" in md
    assert f"| label-free atc | {100 * result['scores']['atc']:.2f}% (ATC's estimate" in md
    assert f"| source validation accuracy | {100 * result['source_accuracy']:.2f}% |" in md
    assert "ORACLE: scoring only" not in md  # no labelled test split: no per-class section
    # the target-prediction shares are the saved model's predictions on every target sample (400 < 5000)
    model = qianyi.load_model(root / "run")
    X = np.load(root / "t.npz")["X"]
    shares = np.bincount(model.predict(X), minlength=10) / len(X)
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.count("|") == 4
            and line.split("|")[1].strip().isdigit()]
    assert [row.split("|")[3].strip() for row in rows] == [f"{100 * s:.2f}%" for s in shares]
    ys = np.load(root / "s.npz")["y"]  # the source's own label shares (all of it: the report reads the spec)
    assert [row.split("|")[2].strip() for row in rows] == [f"{100 * s:.2f}%" for s in np.bincount(ys) / len(ys)]
    assert "<table>" in html and html.count("<img ") == 4


def test_a_labelled_target_test_adds_per_class_accuracy_as_oracle_and_select_is_refused(tmp_path, capsys):
    _digits(tmp_path / "s.npz", 0, 500)
    _digits(tmp_path / "t.npz", 500, 900, invert=True)
    out = tmp_path / "run"
    assert main(["run", "source-only", "--source", f"npz:{tmp_path / 's.npz'}", "--target",
                 f"npz:{tmp_path / 't.npz'}", *FAST, "--select", "entropy", "--out", str(out)]) == 0
    assert main(["report", str(out), "--no-embedding"]) == 0
    md = (out / "report.md").read_text()
    result = json.loads((out / "result.json").read_text())
    rep = result["target_report"]
    assert "## Target test (ORACLE: scoring only)" in md and "not drawn: embedding and per-layer distance: " \
        "--no-embedding" in md and "## Target predictions" in md  # the cheap table stays
    for name, acc, row in zip(rep["class_names"], rep["per_class_accuracy"], rep["confusion"]):
        assert f"| {name} | {sum(row)} | {100 * acc:.2f}% |" in md
    assert f"| target accuracy | {100 * result['target_accuracy']:.2f}% (ORACLE" in md
    assert (out / "report" / "curves.png").is_file() and not (out / "report" / "embedding.png").exists()
    assert "read whole (400 samples" in md  # what was predicted is said: the spec, test split included
    capsys.readouterr()
    assert main(["report", str(out), "--select", "dev"]) == 2
    assert "leave --select out" in capsys.readouterr().err


def test_a_shallow_run_is_reported_without_network_figures(tmp_path, capsys):
    _digits(tmp_path / "s.npz", 0, 300)
    _digits(tmp_path / "t.npz", 300, 600, labelled=False, invert=True)
    out = tmp_path / "run"
    assert main(["run", "coral-shallow", "--source", f"npz:{tmp_path / 's.npz'}", "--target",
                 f"npz:{tmp_path / 't.npz'}", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "not drawn: a shallow fit has no network" in md and "| target accuracy | unknown" in md
    assert "| training | a shallow fit (no network: no epochs, batches or optimiser), seed 0" in md
    assert "shallow fit" in capsys.readouterr().err


def test_a_method_that_trains_no_classifier_gets_no_prediction_figures(tmp_path, capsys):
    # discogan's network is as initialised: its "predictions" would read as a result
    _digits(tmp_path / "s.npz", 0, 120)
    _digits(tmp_path / "t.npz", 120, 240, labelled=False, invert=True)
    out = tmp_path / "run"
    assert main(["run", "discogan", "--source", f"npz:{tmp_path / 's.npz'}", "--target", f"npz:{tmp_path / 't.npz'}",
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--no-progress",
                 "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert "not drawn: discogan trains no classifier" in (out / "report.md").read_text()
    assert not (out / "report" / "predictions.png").exists()


def test_a_relative_spec_of_a_run_without_its_folder_is_read_from_here_and_said(unlabelled_run, capsys, monkeypatch, tmp_path):
    # a model.json of before "cwd": its npz:s.npz was read from wherever report ran without a word
    import shutil

    root = unlabelled_run
    monkeypatch.chdir(root)
    assert main(["run", "source-only", "--source", "npz:s.npz", "--target", "npz:t.npz", *FAST, "--out", "old"]) == 0
    meta = json.loads((root / "old" / "model.json").read_text())
    del meta["cwd"]
    (root / "old" / "model.json").write_text(json.dumps(meta))
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    for f in ("s.npz", "t.npz"):
        shutil.copy(root / f, elsewhere / f)
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["report", str(root / "old")]) == 0
    md = (root / "old" / "report.md").read_text()
    assert "does not say which folder 'npz:s.npz' was relative to" in md and str(elsewhere) in md  # said, and from
    assert "## Target predictions" in md  # where report ran, as the bench report reads such runs


@requires_data("uci-mfeat/SOURCE.md")
def test_a_two_view_run_keeps_its_predictions_when_the_profile_cannot_be_drawn(tmp_path, capsys):
    # the per-layer profile refuses cotrain's two-view network: the predictions went with it
    out = tmp_path / "co"
    assert main(["run", "cotrain", "--source", "mfeat?views=fou,kar&domain=A", "--target",
                 "mfeat?views=fou,kar&domain=B", "--epochs", "1", "--max-samples", "200", "--no-progress",
                 "--threads", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Target predictions" in md and "not drawn: " in md and "per-layer distance: " in md


def test_report_summary_and_predict_say_what_a_folder_is(tmp_path, capsys):
    # report on a `qianyi proxy` folder said its (valid) result.json "is corrupt: delete its run folder"
    proxy, killed, bench = tmp_path / "px", tmp_path / "killed", tmp_path / "bench"
    for d, files in ((proxy, ("proxy.json", "proxy.pt", "result.json", "proxy.md")), (killed, ("checkpoint.pt",)),
                     (bench, ("results.csv", "runs/a-_b/dann/seed0-abc/model.json"))):
        for f in files:
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            (d / f).write_text(json.dumps({"proxy": "nl"}))
    for argv, says in ((["report", str(proxy)], f"is a `qianyi proxy` folder: its report is {str(proxy / 'proxy.md')!r}"),
                       (["summary", str(proxy)], "is a `qianyi proxy` folder"),
                       (["report", str(killed)], "holds a run that has not finished (no result.json): rerun its "
                        "`qianyi run` command (it resumes from its checkpoint)"),
                       (["summary", str(killed)], "is the folder of one `qianyi run`: `qianyi report"),
                       (["predict", str(bench), "--data", "digits"], "is a `qianyi bench` folder of many runs: give the "
                        f"folder of one of them, e.g. {str(bench / 'runs' / 'a-_b' / 'dann' / 'seed0-abc')!r}")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "corrupt" not in err, (argv, err)
    assert not (proxy / "report.html").exists()
    # predict on a killed run said it was a folder of an old qianyi; in a bench/select store the run is that
    # command's, not a `qianyi run`'s
    stored = bench / "runs" / "a-_b" / "dann" / "seed1-def"
    stored.mkdir()
    (stored / "checkpoint.pt").write_text("{}")
    for argv, says in ((["predict", str(killed), "--data", "digits"], f"{str(killed)!r} holds a run that has not "
                        "finished (no model.json): rerun its `qianyi run` command (it resumes from its checkpoint)"),
                       (["predict", str(stored), "--data", "digits"], "holds a run that has not finished (no "
                        "model.json): rerun the bench/select command that made it (it resumes from its checkpoint)"),
                       (["report", str(stored)], "holds a run that has not finished (no result.json): rerun the "
                        "bench/select command that made it (it resumes from its checkpoint)"),
                       (["report", str(stored.parent / "seed0-abc")], "a run stopped before it finished? Rerun the "
                        "bench/select command that made it")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "made before" not in err, (argv, err)


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """A finished run with a labelled target test split (tests copy it before editing it)."""
    root = tmp_path_factory.mktemp("runlab")
    _digits(root / "s.npz", 0, 500)
    _digits(root / "t.npz", 500, 900, invert=True)
    assert main(["run", "source-only", "--source", f"npz:{root / 's.npz'}", "--target", f"npz:{root / 't.npz'}",
                 *FAST, "--out", str(root / "run")]) == 0
    return root / "run"


def _copy(run, to):
    import shutil

    shutil.copytree(run, to)
    return to


def test_a_saved_model_without_a_run_result_is_said_to_be_one(labelled_run, tmp_path, capsys):
    """`advise --out DIR`'s DIR/source (model.pt + model.json): report said "a run that has not finished: rerun its
    `qianyi run` command (it resumes from its checkpoint)", and summary sent the user to report."""
    import shutil

    saved = tmp_path / "source"
    saved.mkdir()
    for name in ("model.pt", "model.json"):
        shutil.copy(labelled_run / name, saved / name)
    capsys.readouterr()
    for command in ("report", "summary"):
        assert main([command, str(saved)]) == 2
        err = capsys.readouterr().err
        assert f"{str(saved)!r} holds a saved model (model.pt, model.json) but no run result (result.json)" in err, err
        assert f"qianyi predict {saved} --data SPEC" in err and f"--init-from {saved / 'model.pt'}" in err
        assert "checkpoint" not in err and "not finished" not in err and f"qianyi report {saved}" not in err
    assert not (saved / "report.html").exists()
    t = labelled_run.parent / "t.npz"
    assert main(["predict", str(saved), "--data", f"npz:{t}", "--out", str(tmp_path / "p.csv")]) == 0  # it predicts
    assert "accuracy on 400 labelled samples" in capsys.readouterr().err
    assert main(["report", str(labelled_run), "--out", str(saved)]) == 2  # its folder is not a report's
    assert "is the folder of a saved model (model.pt, model.json); give a new folder" in capsys.readouterr().err
    gan = tmp_path / "gan"  # a run folder without result.json nor checkpoint: no "resumes from its checkpoint"
    gan.mkdir()
    (gan / "generators.json").write_text("{}")
    assert main(["report", str(gan)]) == 2
    err = capsys.readouterr().err
    assert "holds a run that has not finished (no result.json): rerun its `qianyi run` command, then" in err, err


def test_a_run_built_from_arrays_is_not_read_again_by_its_name(tmp_path, capsys):
    # a task of the user's own arrays, named like built-in specs: the report read qianyi's digits+noise0.6 (1797
    # samples, the source's among them) in place of the user's 400 rows, and drew its figures from them
    from sklearn.datasets import load_digits

    from qianyi.bench.run_report import write_run_report
    from qianyi.data import Domain, TransferTask
    from qianyi.errors import ConfigError, DataError

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype("f4").reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    Xt = np.clip(X[900:1300] + rng.normal(0, 0.6, X[900:1300].shape), 0, 1).astype("f4")
    task = TransferTask.from_domains(Domain(X[:600], y[:600], "digits"), Domain(Xt, None, "digits+noise0.6"))
    run = tmp_path / "run"
    qianyi.run("source-only", task, qianyi.TrainConfig(epochs=3, batch_size=32, progress=False), out=run)
    assert json.loads((run / "model.json").read_text())["data_sides"] == {"source": "arrays", "target": "arrays"}
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Target predictions" not in md and not (run / "report" / "predictions.png").exists()
    assert "the run's source 'digits' and target 'digits+noise0.6' were built in Python from arrays" in md
    assert "write_run_report(RUN_DIR, task=<the task it trained on>)" in md
    assert "built in Python from arrays" in capsys.readouterr().err
    # in Python the data are given: the predictions are of the user's rows
    files = write_run_report(run, task=task, out=tmp_path / "nb")
    md = files["md"].read_text()
    assert "The classes the model gives the 400 samples of the target given to the report" in md
    assert {"predictions", "embedding", "profile"} <= set(files)
    shares = np.bincount(qianyi.load_model(run).predict(Xt), minlength=10) / len(Xt)
    rows = [line for line in md.splitlines() if line.count("|") == 4 and line.split("|")[1].strip().isdigit()]
    assert [row.split("|")[3].strip() for row in rows] == [f"{100 * s:.2f}%" for s in shares]
    files = write_run_report(run, target=task.target, out=tmp_path / "nb2", embed=False)  # the target alone
    md = files["md"].read_text()
    assert "## Target predictions" in md and "the source's class shares are not drawn" in md
    assert "the run's source 'digits' was built in Python from arrays" in md
    with pytest.raises(ConfigError, match="not both"):
        write_run_report(run, task=task, target=task.target, out=tmp_path / "nb3")
    with pytest.raises(DataError, match=r"target= 'wrong' has samples of shape \(3,\), but the run's model reads"):
        write_run_report(run, target=Domain(np.zeros((5, 3), "f4"), None, "wrong"), out=tmp_path / "nb4")


def test_a_run_made_before_the_record_is_read_by_its_name_only_when_it_is_a_spec(labelled_run, tmp_path, capsys):
    run = _copy(labelled_run, tmp_path / "old")
    meta = json.loads((run / "model.json").read_text())
    assert meta.pop("data_sides") == {"source": "spec", "target": "spec"}  # load_task read them
    (run / "model.json").write_text(json.dumps(meta))
    assert main(["report", str(run), "--no-embedding"]) == 0
    md = (run / "report.md").read_text()
    assert "## Target predictions" in md and "does not record whether" in md and "read here as the specs" in md
    result = json.loads((run / "result.json").read_text())
    result["target"] = "my target"  # a name, not a spec: not read, and said
    (run / "result.json").write_text(json.dumps(result))
    assert main(["report", str(run), "--no-embedding"]) == 0
    md = (run / "report.md").read_text()
    assert "## Target predictions" not in md and "the run's target 'my target' is no data spec" in md


def test_report_out_writes_elsewhere_with_figure_links_that_work_from_there(labelled_run, tmp_path, capsys):
    # a read-only run folder could not be reported, and the error advised an output folder report had no option for
    import errno
    import re
    from pathlib import Path
    from unittest import mock

    import qianyi._io as io_module

    run = _copy(labelled_run, tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())
    out = tmp_path / "elsewhere" / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written into the run's folder
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 4 and all((out / s).is_file() for s in srcs)
    assert all((out / s).is_file() for s in re.findall(r"\]\((report/[^)]+)\)", md))
    assert f"The run's folder: {str(run.resolve())!r}" in md
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(labelled_run)]) == 2  # another run's folder: its report kept
    assert "is the folder of a `qianyi run`: its own report would be overwritten" in capsys.readouterr().err
    real = io_module.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and run in (Path(dir), *Path(dir).parents):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    with mock.patch.object(io_module.tempfile, "mkstemp", read_only):
        assert main(["report", str(run), "--no-embedding"]) == 2
        assert f"qianyi report {run} --out OTHER_DIR" in capsys.readouterr().err
        assert main(["report", str(run), "--no-embedding", "--out", str(tmp_path / "rep2")]) == 0
    assert (tmp_path / "rep2" / "report.md").is_file()


def test_a_report_of_files_of_two_runs_says_so_in_the_report(labelled_run, tmp_path, capsys):
    run = _copy(labelled_run, tmp_path / "mixed")
    result = json.loads((run / "result.json").read_text())
    result["model_sha256"] = "0" * 64  # result.json of another run than model.pt (a rerun's result.json not written)
    (run / "result.json").write_text(json.dumps(result))
    assert main(["report", str(run), "--no-embedding"]) == 0
    for page in ("report.md", "report.html"):
        assert "WARNING: result.json reports on another model than model.pt" in (run / page).read_text()


@pytest.mark.parametrize("edit, says", [
    (lambda r: r["history"][0].update(cls="x"), ", history[0].cls is \"x\", not a number (edited by hand"),
    (lambda r: r["scores"].update(snd="x"), "| label-free snd | — (result.json's scores.snd is \"x\", not a number) |"),
    (lambda r: r["target_report"].update(confusion="x"), "target_report.confusion is \"x\", not a table of counts"),
    (lambda r: r["target_report"]["per_class_accuracy"].__setitem__(0, [1]),
     "target_report.per_class_accuracy[0] is [1], not a number"),
])
def test_bad_nested_values_in_a_hand_edited_result_leave_their_section_out_and_say_why(labelled_run, tmp_path, capsys,
                                                                                       edit, says):
    run = _copy(labelled_run, tmp_path / "edited")
    result = json.loads((run / "result.json").read_text())
    result["scores"].setdefault("snd", 1.0)
    edit(result)
    (run / "result.json").write_text(json.dumps(result))
    assert main(["report", str(run), "--no-embedding"]) == 0
    md = (run / "report.md").read_text()
    assert says in md and "## Target predictions" in md  # the other sections stand
    assert "not shown: " in capsys.readouterr().err


def test_the_report_says_how_the_network_started_and_what_was_held(tmp_path, capsys):
    # the "training" row listed epochs, batch size, optimiser and lr only: a run started from another model (an
    # oracle's, say) with frozen layers, or on a network of your own, read like a plain run from scratch
    import torch
    from torch import nn

    from qianyi.nn import as_backbone

    _digits(tmp_path / "s.npz", 0, 300)
    _digits(tmp_path / "t.npz", 300, 600, labelled=False, invert=True)
    pair = ["--source", f"npz:{tmp_path / 's.npz'}", "--target", f"npz:{tmp_path / 't.npz'}"]
    assert main(["run", "source-only", *pair, "--out", str(tmp_path / "src"), *FAST]) == 0
    assert main(["run", "dann", *pair, "--out", str(tmp_path / "ft"), *FAST, "--init-from",
                 str(tmp_path / "src" / "model.pt"), "--freeze", "1", "--l2sp", "0.5"]) == 0
    assert main(["report", str(tmp_path / "ft")]) == 0
    md = (tmp_path / "ft" / "report.md").read_text()
    assert f"| fine-tuning | started from {tmp_path / 'src' / 'model.pt'} (trained by source-only, on the labels of " \
           f"npz:{tmp_path / 's.npz'}, sha256 " in md
    assert "the first 1 layer group frozen (freeze); L2-SP 0.5 towards the starting weights |" in md
    assert "| network |" not in md  # qianyi's default network: nothing to say
    torch.manual_seed(0)
    net = as_backbone(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)),
                      ["flat", "fc1", "relu", "out"])
    task = qianyi.load_task(f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}")
    qianyi.run("source-only", task, qianyi.TrainConfig(epochs=1, progress=False), out=tmp_path / "own", backbone=net)
    assert main(["report", str(tmp_path / "own")]) == 0
    md = (tmp_path / "own" / "report.md").read_text()
    assert "| network | a network of your own (architecture " in md and "| fine-tuning |" not in md
    capsys.readouterr()

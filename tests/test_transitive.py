"""Transitive transfer (issue 14): stages through intermediate domains, each an ordinary run; the
self-train teacher; rotating MNIST ranges; stepping stones never share samples with the target."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import qianyi
from qianyi.cli import main
from qianyi.data.domain import Domain, TransferTask
from qianyi.data.tasks import load_domain, load_via, origins_overlap
from qianyi.errors import ConfigError, DataError
from qianyi.train import TrainConfig, run, run_via
from qianyi.train.transitive import stages_table

from .conftest import requires_data, toy_task

CFG = dict(epochs=3, steps_per_epoch=10, batch_size=32, progress=False)


def _blobs(n: int, shift: float, seed: int, labelled: bool = True) -> Domain:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(0, 3, (3, 6))
    y = rng.integers(0, 3, n)
    X = centers[y] + rng.normal(0, 1, (n, 6)) + shift
    return Domain(X, y if labelled else None, f"blobs+{shift:g}")


def _task() -> TransferTask:
    return TransferTask.from_domains(_blobs(300, 0.0, 1), _blobs(300, 6.0, 2))


def test_gradual_runs_one_stage_per_domain_in_order_and_reuses_finished_stages(tmp_path):
    task = _task()
    via = [_blobs(200, s, 10 + i, labelled=False) for i, s in enumerate((2.0, 4.0))]
    res, stages = run_via("self-train", task, via, TrainConfig(**CFG), out=tmp_path, track_target_test=True)
    assert [s.name for s in stages] == ["source", "via-blobs+2", "via-blobs+4", "target"]
    assert [s.method for s in stages] == ["source-only", "self-train", "self-train", "self-train"]
    assert (tmp_path / "result.json").exists() and (tmp_path / "stages.png").stat().st_size > 1000
    assert len(list((tmp_path / "stages").iterdir())) == 3
    # each stage starts from the previous stage's model
    folders = sorted(p.name for p in (tmp_path / "stages").iterdir())
    assert folders == ["00-source", "01-via-blobs_2", "02-via-blobs_4"]
    for s, folder in zip(stages[1:], folders):
        assert s.result.config["init_from"] == str(tmp_path / "stages" / folder / "model.pt")
    table = stages_table(stages)
    assert "ORACLE" in table and "via-blobs+4" in table
    # run again: every stage is finished, nothing trains, the same result comes back
    again, stages2 = run_via("self-train", task, via, TrainConfig(**CFG), out=tmp_path, track_target_test=True)
    assert again.model_sha256 == res.model_sha256 and again.train_seconds == res.train_seconds
    # each resumed at its last step and trained nothing: its result keeps the first run's account (trained in one go)
    assert all(s.result.resumed_from_step == 0 for s in stages2)


def test_a_staged_run_refuses_freezing_every_group_before_any_stage_trains(tmp_path):
    # (stage 0 from scratch freezes nothing: the refusal came from stage 1, after stage 0 had trained)
    with pytest.raises(DataError, match="freezes every layer group"):
        run("self-train", _task(), TrainConfig(**CFG, freeze=3), out=tmp_path / "r")
    assert not (tmp_path / "r" / "stages").exists()


def test_run_trains_the_source_model_a_self_training_method_starts_from(tmp_path):
    res, fit = run("self-train", _task(), TrainConfig(**CFG), out=tmp_path)
    assert res.config["init_from"] == str(tmp_path / "stages" / "00-source" / "model.pt")
    src = torch.load(tmp_path / "stages" / "00-source" / "model.pt", weights_only=True)
    assert all(torch.equal(fit.method.teacher.state_dict()[k], v) for k, v in src.items())


def test_pretrain_trains_the_starting_model_with_an_alignment_method(tmp_path):
    res, fit = run("self-train", _task(), TrainConfig(**CFG), out=tmp_path, pretrain="dann")
    first = json.loads((tmp_path / "stages" / "00-source" / "result.json").read_text())
    assert first["method"] == "dann" and res.method == "self-train" and res.hparams["pretrain"] == "dann"
    src = torch.load(tmp_path / "stages" / "00-source" / "model.pt", weights_only=True)
    assert all(torch.equal(fit.method.teacher.state_dict()[k], v) for k, v in src.items())
    # through intermediate domains, the aligned first stage adapts to the first of them
    via = [_blobs(100, 3.0, 5, labelled=False)]
    _, stages = run_via("self-train", _task(), via, TrainConfig(**CFG), pretrain="dann")
    assert [(s.name, s.method, s.domain) for s in stages][:2] == [("source", "dann", "blobs+3"),
                                                                 ("via-blobs+3", "self-train", "blobs+3")]
    with pytest.raises(qianyi.errors.ConfigError, match="pretrain"):
        run("self-train", _task(), TrainConfig(**CFG), pretrain="oracle")


def test_settings_added_later_leave_the_fingerprints_of_stored_runs_unchanged():
    from qianyi.methods import get_method
    from qianyi.train.store import fingerprint

    cfg, task = TrainConfig(**CFG), _task()
    old = fingerprint(get_method("self-train"), cfg, task)["hparams"]
    assert old == {"augment": True, "keep": 0.9, "memory": 20, "source_weight": 0.0}  # as stored before they existed
    assert fingerprint(get_method("self-train", pretrain="dann"), cfg, task)["hparams"] == {**old, "pretrain": "dann"}
    assert fingerprint(get_method("self-train", noisy=True), cfg, task)["hparams"] == {**old, "noisy": True}
    assert get_method("self-train").hparams()["pretrain"] == "source-only"  # result.json still records them all


def test_iterated_self_training_makes_each_student_the_next_teacher(tmp_path, capsys):
    res, fit = run("self-train", _task(), TrainConfig(**CFG), out=tmp_path, iterations=3)
    stages = sorted(p.name for p in (tmp_path / "stages").iterdir())
    assert stages == ["00-source", "01-target-1", "02-target-2"]
    assert res.hparams["iterations"] == 3 and res.config["init_from"] == str(tmp_path / "stages" / "02-target-2" / "model.pt")
    r2 = json.loads((tmp_path / "stages" / "02-target-2" / "result.json").read_text())
    assert r2["config"]["init_from"] == str(tmp_path / "stages" / "01-target-1" / "model.pt")
    assert r2["hparams"]["iterations"] == 1  # each stage is one ordinary round
    teacher = torch.load(tmp_path / "stages" / "02-target-2" / "model.pt", weights_only=True)
    assert all(torch.equal(fit.method.teacher.state_dict()[k], v) for k, v in teacher.items())
    # from a given model (--init-from), the rounds start from it; the CLI takes the same path
    start = str(tmp_path / "stages" / "00-source" / "model.pt")
    _, stages = run_via("self-train", _task(), [], TrainConfig(**CFG, init_from=start), iterations=2)
    assert [s.name for s in stages] == ["target-1", "target"]
    with pytest.raises(qianyi.errors.ConfigError, match="iterations"):
        run("self-train", _task(), TrainConfig(**CFG), iterations=0)
    with pytest.raises(qianyi.errors.ConfigError, match="via-mode all"):
        run_via("self-train", _task(), [_blobs(60, 3.0, 5, labelled=False)], TrainConfig(**CFG), mode="all",
                iterations=2)


def test_a_bench_reuses_finished_self_training_runs(tmp_path, capsys):
    args = ["bench", "--methods", "self-train", "--pairs", "digits->digits+rot30", "--seeds", "1", "--epochs", "1",
            "--set", "self-train.iterations=2", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0  # the staged run (teacher, round 1, round 2) is found as asked for: nothing re-runs
    assert capsys.readouterr().err.count("(done earlier)") == 3
    # killed between the last stage's own result.json and the staged run's: summary leaves the run out (it said
    # "trained with different settings"), and the same bench resumes it (it was refused as another chain)
    (folder,) = [p.parent for p in tmp_path.glob("runs/*/self-train/*/result.json")]
    whole = json.loads((folder / "result.json").read_text())
    # (the last stage's own fingerprint is not the run's: it starts from the previous stage's model; its checkpoint
    # is deleted once its result.json is written)
    from qianyi._io import sha256_file

    start = sorted((folder / "stages").iterdir())[-1] / "model.pt"
    own = {**whole["fingerprint"], "config": {**whole["fingerprint"]["config"], "init_from": f"sha256:{sha256_file(start)}"}}
    bare = {**whole, "staged": {}, "fingerprint": own, "train_seconds": whole["staged"]["stages"][-1]["train_seconds"]}
    (folder / "result.json").write_text(json.dumps(bare))
    assert not (folder / "checkpoint.pt").exists()
    from qianyi.bench.runner import BenchResult
    with pytest.warns(qianyi.errors.QianyiWarning, match="left out 1 staged run\\(s\\) killed before they finished"):
        assert "self-train" not in [r.method for r in BenchResult.from_dirs([tmp_path]).runs]
    assert main(args) == 0
    assert json.loads((folder / "result.json").read_text())["staged"] == whole["staged"]


def test_noisy_student_learns_the_teachers_labels_through_strong_views(monkeypatch):
    from qianyi.methods import self_training as st

    seen = []
    monkeypatch.setattr(st, "strong_view", lambda x, kind=None: seen.append(x.shape) or x * 0.0)
    run("self-train", _task(), TrainConfig(**CFG))
    assert not seen  # default: weak views
    _, fit = run("self-train", _task(), TrainConfig(**CFG), noisy=True)
    assert len(seen) == CFG["epochs"] * CFG["steps_per_epoch"]  # every student step, through the strong view
    assert fit.method.hparams()["noisy"] is True


def test_all_mode_pools_every_unlabelled_domain_in_one_stage():
    task = _task()
    via = [_blobs(100, 2.0, 5, labelled=False), _blobs(120, 4.0, 6, labelled=False)]
    _, stages = run_via("self-train", task, via, TrainConfig(**CFG), mode="all")
    assert [s.name for s in stages] == ["source", "via-all"]
    assert stages[-1].n_target == 100 + 120 + len(task.target)
    _, direct = run_via("self-train", task, [], TrainConfig(**CFG))
    assert [s.name for s in direct] == ["source", "target"]


def test_self_train_teacher_is_the_starting_model_and_stays_fixed():
    task = _task()
    src, fit0 = run("source-only", task, TrainConfig(**CFG))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        torch.save(fit0.model.state_dict(), f"{d}/model.pt")
        _, fit = run("self-train", task, TrainConfig(**CFG, init_from=f"{d}/model.pt"))
    teacher = fit.method.teacher.state_dict()
    for k, v in fit0.model.state_dict().items():
        assert torch.equal(teacher[k], v), k  # the teacher is the source model, untouched by training
    assert any(not torch.equal(fit.model.state_dict()[k], v) for k, v in teacher.items() if v.is_floating_point())


def test_via_refuses_a_domain_from_the_targets_pool():
    task = qianyi.load_task("digits", "digits+rot30")
    with pytest.raises(DataError, match="pool"):
        load_via("digits+rot10", task)


def test_touching_rotmnist_ranges_do_not_overlap():
    """Review mutation2 #2 (D4): rotmnist keeps angles in [lo, hi), so 0-30 and 30-60 share no image."""
    assert not origins_overlap("rotmnist:0-30", "rotmnist:30-60")
    assert not origins_overlap("rotmnist:30-60", "rotmnist:0-30")
    assert origins_overlap("rotmnist:0-30", "rotmnist:29.5-60") and origins_overlap("rotmnist:0-30", "rotmnist:10-20")
    assert origins_overlap("rotmnist:0-30", "mnist") and not origins_overlap("rotmnist:0-30", "digits")


@requires_data("mnist")
def test_rotating_mnist_ranges_are_disjoint_images_with_their_own_angles():
    a, b = load_domain("rotmnist?angles=0-5"), load_domain("rotmnist?angles=5-10")
    whole = load_domain("rotmnist?angles=0-10")
    assert len(a) + len(b) == len(whole) and a.origin != b.origin
    assert np.allclose(np.sort(np.concatenate([a.y, b.y])), np.sort(whole.y))
    task = qianyi.load_task("rotmnist?angles=0-5", "rotmnist?angles=55-60")
    v = load_via("rotmnist?angles=25-35", task)
    assert v.y is None and v.X.shape[1:] == task.sample_shape
    # ranges are [lo, hi): touching ranges hold other images, so the docs' chain 0-5, 5-15, ..., 55-60 is accepted
    for via in ("rotmnist?angles=5-15", "rotmnist?angles=45-55"):
        assert len(load_via(via, task)) > 0
    with pytest.raises(DataError, match="pool"):  # a range that does overlap the source's is refused
        load_via("rotmnist?angles=4-15", task)
    with pytest.raises(DataError, match="angles"):
        load_domain("rotmnist?angles=50-70")


def test_cli_via_writes_the_stage_table(tmp_path, capsys, monkeypatch):
    src, tgt, mid = _blobs(200, 0.0, 1), _blobs(200, 6.0, 2), _blobs(200, 3.0, 3, labelled=False)
    for name, d in (("s", src), ("t", tgt), ("m", mid)):
        np.savez(tmp_path / f"{name}.npz", X=d.X, **({} if d.y is None else {"y": d.y}))
    out = tmp_path / "run"
    rc = main(["run", "self-train", "--source", f"npz:{tmp_path}/s.npz", "--target", f"npz:{tmp_path}/t.npz",
               "--via", f"npz:{tmp_path}/m.npz", "--epochs", "2", "--steps-per-epoch", "5", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "| 1 via-" in err and (out / "stages.csv").exists()
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "self-train"
    assert main(["run", "self-train", "--source", f"npz:{tmp_path}/s.npz", "--target", f"npz:{tmp_path}/t.npz",
                 "--via", f"npz:{tmp_path}/m.npz", "--via-novelty", "--out", str(tmp_path / "n")]) == 2
    assert "--via-novelty applies to --via-mode select" in capsys.readouterr().err
    # the result says what the run was: S -> T, the stages it went through
    assert result["target"] == f"npz:{tmp_path}/t.npz"
    assert [s["name"] for s in result["staged"]["stages"]] == ["source", f"via-npz:{tmp_path}/m.npz", "target"]
    assert result["staged"]["mode"] == "gradual" and result["staged"]["stages"][0]["adapts_to"] == "– (source only)"
    # its cost is every stage's (was: the last stage's only), each stage's own time kept
    own = [s["train_seconds"] for s in result["staged"]["stages"]]
    assert len(own) == 3 and all(t > 0 for t in own) and result["train_seconds"] == pytest.approx(sum(own), abs=2e-3)
    # --via-mode / --via-novelty without --via: refused (a plain dann ran, and said nothing)
    for extra in (["--via-mode", "select"], ["--via-mode", "select", "--via-novelty"]):
        assert main(["run", "dann", "--source", f"npz:{tmp_path}/s.npz", "--target", f"npz:{tmp_path}/t.npz",
                     *extra, "--out", str(tmp_path / "x")]) == 2
        assert "none were given" in capsys.readouterr().err
    # all mode: the last stage adapts to everything pooled, the run is still S -> T
    assert main(["run", "dann", "--source", f"npz:{tmp_path}/s.npz", "--target", f"npz:{tmp_path}/t.npz",
                 "--via", f"npz:{tmp_path}/m.npz", "--via-mode", "all", "--epochs", "1", "--steps-per-epoch", "3",
                 "--no-progress", "--out", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / "result.json").read_text())["target"] == f"npz:{tmp_path}/t.npz"


def test_a_staged_run_from_the_cli_is_the_run_a_bench_looks_up(tmp_path, capsys):
    # the CLI kept the last stage's fingerprint (init_from: the stage model): a bench did not find the run
    src, tgt = _blobs(200, 0.0, 1), _blobs(200, 6.0, 2)
    for name, d in (("s", src), ("t", tgt)):
        np.savez(tmp_path / f"{name}.npz", X=d.X, y=d.y)
    args = ["--source", f"npz:{tmp_path}/s.npz", "--target", f"npz:{tmp_path}/t.npz", "--epochs", "2",
            "--steps-per-epoch", "5", "--no-progress"]
    assert main(["run", "self-train", *args, "--out", str(tmp_path / "cli")]) == 0
    task = qianyi.load_task(f"npz:{tmp_path}/s.npz", f"npz:{tmp_path}/t.npz")
    from qianyi.methods import get_method
    from qianyi.train.run import run_fingerprint
    from qianyi.train.config import config_from_args
    from qianyi.cli import build_parser

    cfg = config_from_args(build_parser().parse_args(["run", "self-train", *args]), seed=0)
    asked = run_fingerprint(get_method("self-train"), cfg, task)
    assert json.loads((tmp_path / "cli" / "result.json").read_text())["fingerprint"] == json.loads(json.dumps(asked))


def test_select_mode_prefers_the_useful_part_of_a_mixed_pool_and_resumes_its_choice(tmp_path):
    task = _task()
    useful = _blobs(300, 3.0, 7, labelled=False)  # between source (0) and target (6)
    rng = np.random.default_rng(8)
    junk = Domain(rng.normal(0, 1, (300, 6)) * 0.2 + 40.0, None, "junk")  # far from everything
    res, stages = run_via("self-train", task, [useful, junk], TrainConfig(**CFG), out=tmp_path, mode="select",
                          rounds=2, select_max=0.5)
    assert [s.name for s in stages] == ["source", "select-1", "select-2", "target"]
    for s in stages[1:3]:
        assert s.selected["blobs+3"] > s.selected["junk"], s.selected
    assert stages[1].selected == {"blobs+3": 0.5, "junk": 0.0}  # round 1: a quarter of the pool, all of it useful
    assert stages[1].n_target == 150  # the stepping stones alone (the target comes last)
    assert (tmp_path / "selection.png").exists() and "pool selected" in stages_table(stages)
    saved = np.load(tmp_path / "stages" / "01-select-1" / "selection.npz")
    assert len(saved["selected"]) == 150 and set(saved["names"]) == {"blobs+3", "junk"}


def test_select_mode_reads_its_saved_choice_back_on_resume(tmp_path, monkeypatch):
    import qianyi.train.transitive as tr

    task, useful = _task(), _blobs(200, 3.0, 7, labelled=False)
    junk = Domain(np.full((200, 6), 40.0), None, "junk")
    first, stages = run_via("self-train", task, [useful, junk], TrainConfig(**CFG), out=tmp_path, mode="select",
                            rounds=1)

    def fail(*a, **k):
        raise AssertionError("the saved selection must be read back, not chosen again")
    monkeypatch.setattr(tr, "select_stepping_stones", fail)
    again, stages2 = run_via("self-train", task, [useful, junk], TrainConfig(**CFG), out=tmp_path, mode="select",
                             rounds=1)
    assert stages2[1].selected == stages[1].selected and again.model_sha256 == first.model_sha256


def test_select_mode_starts_from_a_given_model(tmp_path):
    task, useful = _task(), _blobs(200, 3.0, 7, labelled=False)
    run("source-only", task, TrainConfig(**CFG), out=tmp_path / "src")
    cfg = TrainConfig(**CFG, init_from=str(tmp_path / "src" / "model.pt"))
    _, stages = run_via("self-train", task, [useful], cfg, out=tmp_path / "sel", mode="select", rounds=1)
    assert [s.name for s in stages] == ["select-1", "target"] and stages[0].selected == {"blobs+3": 0.5}


def test_novelty_is_the_reconstruction_error_of_data_unlike_source_and_target():
    from qianyi.train.transitive import reconstruction_errors, select_stepping_stones

    task = _task()
    train = np.concatenate([task.source.X, task.target.X])
    near, far = _blobs(100, 3.0, 7, labelled=False), _blobs(100, 0.0, 9, labelled=False)
    far = far.replace(X=np.random.default_rng(3).normal(0, 4, far.X.shape))  # no cluster structure at all
    err = reconstruction_errors(train, np.concatenate([near.X, far.X]), epochs=30)
    assert err[100:].mean() > 2 * err[:100].mean()
    assert np.array_equal(err, reconstruction_errors(train, np.concatenate([near.X, far.X]), epochs=30))  # seeded
    # in the selection, a heavy novelty term keeps the unlike samples out
    pool = Domain(np.concatenate([near.X, far.X]), None, "pool")
    with pytest.raises(DataError, match="one value per pool sample"):
        select_stepping_stones(_Feat(), pool, task.source.X, 0.5, novelty=err[:10])
    chosen, _ = select_stepping_stones(_Feat(), pool, task.source.X, 0.5, novelty=1000 * err)
    assert (chosen < 100).mean() > 0.9


class _Feat(torch.nn.Module):
    """A network whose features are its inputs and whose predictions are uniform (selection on novelty only)."""

    def forward(self, x):
        from collections import OrderedDict

        from qianyi.nn import LayerOutputs

        return LayerOutputs(OrderedDict(features=x.float(), logits=torch.zeros(len(x), 3)), "features")


def test_init_layers_is_for_the_users_model_only_later_stages_copy_all_of_the_previous_one(tmp_path):
    # every stage re-applied --init-layers K: each kept K groups of the previous stage and re-initialised the
    # rest, the classifier included (self-train from rotmnist 0-5 to 5-15: 96.7% -> 9.7%)
    task = _task()
    run("source-only", task, TrainConfig(**CFG), out=tmp_path / "src")
    via = [_blobs(200, s, 10 + i, labelled=False) for i, s in enumerate((2.0, 4.0))]
    cfg = TrainConfig(**CFG, init_from=str(tmp_path / "src" / "model.pt"), init_layers=1)
    _, stages = run_via("dann", task, via, cfg, out=tmp_path / "v")
    assert [s.result.config.get("init_layers") for s in stages] == [1, None, None]
    # without a starting model, the source stage trains from scratch: nothing there to freeze
    _, stages = run_via("self-train", task, [], TrainConfig(**CFG, freeze=1))
    assert [(s.method, s.result.config.get("freeze", 0)) for s in stages] == [("source-only", 0), ("self-train", 1)]
    assert "– (source only)" in stages_table(stages)
    with pytest.raises(qianyi.errors.ConfigError, match="init_from"):
        TrainConfig(init_layers=1)  # copies nothing without a model to copy from
    with pytest.raises(qianyi.errors.ConfigError, match="none were given"):
        run_via("self-train", task, [], TrainConfig(**CFG), mode="select")


def test_a_saved_selection_of_other_settings_is_refused_not_reused(tmp_path):
    task, useful = _task(), _blobs(200, 3.0, 7, labelled=False)
    junk = Domain(np.full((200, 6), 40.0), None, "junk")
    run_via("self-train", task, [useful, junk], TrainConfig(**CFG), out=tmp_path, mode="select", rounds=1)
    with pytest.raises(DataError, match="selection made by another run"):  # was: reused, read as a novelty run
        run_via("self-train", task, [useful, junk], TrainConfig(**CFG), out=tmp_path, mode="select", rounds=1,
                novelty=True)
    with pytest.raises(DataError, match="selection made by another run"):  # was: IndexError on a smaller pool
        run_via("self-train", task, [useful], TrainConfig(**CFG), out=tmp_path, mode="select", rounds=1)
    # a selection saved before selections kept a key: reused for the same pool, with a warning; refused for another
    path = tmp_path / "stages" / "01-select-1" / "selection.npz"
    with np.load(path) as f:
        old = {k: f[k] for k in f.files if k != "key"}
    np.savez(path, **old)
    with pytest.warns(qianyi.errors.QianyiWarning, match="saved before selections recorded their settings"):
        run_via("self-train", task, [useful, junk], TrainConfig(**CFG), out=tmp_path, mode="select", rounds=1)
    with pytest.raises(DataError, match="selection made by another run"):
        run_via("self-train", task, [useful], TrainConfig(**CFG), out=tmp_path, mode="select", rounds=1)


def test_the_starting_network_of_a_selection_is_built_as_the_run_builds_it(tmp_path):
    from qianyi.methods import get_method
    from qianyi.train.transitive import _starting_network

    from .test_amn import _toy_text

    task = _toy_text(tmp_path, n=40)
    run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False),
        out=tmp_path / "src")
    net = _starting_network(task, str(tmp_path / "src" / "model.pt"), None, get_method("self-train"))
    saved = torch.load(tmp_path / "src" / "model.pt", weights_only=True)
    assert all(torch.equal(net.state_dict()[k].cpu(), v.cpu()) for k, v in saved.items())  # the text encoder, every weight


def test_a_staged_run_of_other_settings_in_its_folder_names_the_whole_folder(tmp_path):
    # the message said "delete the checkpoint" of stage 00: deleting it only moved the error to the next stage
    task = _task()
    run_via("self-train", task, [], TrainConfig(**CFG), out=tmp_path)
    with pytest.raises(qianyi.errors.CheckpointError, match=r"stage 0 \(source\) of the staged run in .*train every "
                                                            r"stage afresh"):
        run_via("self-train", task, [], TrainConfig(**{**CFG, "epochs": 2}), out=tmp_path)


def test_a_staged_run_holds_its_out_folder_from_the_first_stage(tmp_path, monkeypatch):
    """The root --out was locked only while the last stage trained: another run took the folder meanwhile and the
    staged run failed after training its first stage, leaving a mixed folder."""
    import qianyi.train.transitive as T
    from qianyi.train import rundir

    from .conftest import toy_task

    held_during = []
    real = T.run

    def watching(*args, **kwargs):
        held_during.append((tmp_path / "st").resolve() in rundir._held)
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "run", watching)
    run_via("dann", toy_task(n=60), [], TrainConfig(epochs=1, steps_per_epoch=2, progress=False),
            out=tmp_path / "st")
    assert held_during == [True, True]  # the source stage and the target stage
    assert (tmp_path / "st").resolve() not in rundir._held  # released at the end


def test_via_refuses_methods_that_cannot_use_it_and_domains_not_in_the_tasks_form(tmp_path, capsys):
    from qianyi.errors import ConfigError

    task, via = _task(), [_blobs(60, 3.0, 5, labelled=False)]
    for method, says in (("source-only", "never reads the domain it adapts to"), ("oracle", "trains on target labels")):
        with pytest.raises(ConfigError, match=says):
            run_via(method, task, via, TrainConfig(**CFG))
    # cotrain trains its own view networks: each stage after the first failed, blaming an --init-from never given
    with pytest.raises(ConfigError, match=r"cotrain trains its two view networks.*--via stages"):
        run_via("cotrain", task, via, TrainConfig(**CFG), out=tmp_path / "co", split=3)
    assert not (tmp_path / "co").exists()  # refused before any stage trained
    src, tgt = _blobs(60, 0.0, 1), _blobs(60, 6.0, 2)
    for name, d in (("s", src), ("t", tgt), ("m", via[0])):
        np.savez(tmp_path / f"{name}.npz", X=d.X, **({} if d.y is None else {"y": d.y}))
    assert main(["run", "cotrain", "--source", "npz:no-such-file.npz", "--target", f"npz:{tmp_path}/t.npz",
                 "--via", f"npz:{tmp_path}/m.npz", "--set", "split=3", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err  # refused before any data is read (the source file does not exist)
    assert re.search(r"cotrain trains its two view networks.*leave --via out", err) and "init" not in err
    wide = Domain(np.zeros((40, 8)), None, "wide")
    with pytest.raises(DataError, match=r"via domain 'wide' has samples of shape \(8,\).*load_via"):
        run_via("dann", task, [wide], TrainConfig(**CFG))
    rng = np.random.default_rng(0)
    images = TransferTask.from_domains(Domain(rng.random((40, 1, 8, 8)), np.arange(40) % 2, "s"),
                                       Domain(rng.random((40, 1, 8, 8)), np.arange(40) % 2, "t"))
    with pytest.raises(DataError, match="pixel values up to 255"):
        run_via("dann", images, [Domain(np.full((20, 1, 8, 8), 255.0), None, "raw")], TrainConfig(**CFG))
    # a name with a comma stays one cell of stages.csv
    import csv

    named = [_blobs(60, 3.0, 5, labelled=False).replace(name="speaker=a,b")]
    run_via("dann", task, named, TrainConfig(epochs=1, steps_per_epoch=2, batch_size=32, progress=False), out=tmp_path)
    rows = list(csv.reader(open(tmp_path / "stages.csv")))
    assert len({len(r) for r in rows}) == 1 and any("speaker=a,b" in cell for r in rows for cell in r)


def test_another_chain_in_a_staged_runs_folder_is_refused_before_any_stage_trains(tmp_path):
    """A changed --via order trained new stages next to the old ones and was refused only at the last stage."""
    task, cfg = _task(), TrainConfig(epochs=1, steps_per_epoch=2, batch_size=32, progress=False)
    a, b = (_blobs(60, s, 20 + i, labelled=False) for i, s in enumerate((2.0, 4.0)))
    run_via("self-train", task, [a, b], cfg, out=tmp_path)
    before = sorted(p.name for p in (tmp_path / "stages").iterdir())
    for via in ([b, a], [a], [a, b, b.replace(name="more")]):
        with pytest.raises(qianyi.errors.CheckpointError, match="holds a staged run through other stages"):
            run_via("self-train", task, via, cfg, out=tmp_path)
    assert sorted(p.name for p in (tmp_path / "stages").iterdir()) == before  # nothing trained
    (tmp_path / "result.json").unlink()  # killed in the last stage: the stage folders tell the chain
    with pytest.raises(qianyi.errors.CheckpointError, match="other stages"):
        run_via("self-train", task, [b, a], cfg, out=tmp_path)
    run_via("self-train", task, [a, b], cfg, out=tmp_path)  # the same chain resumes
    whole = json.loads((tmp_path / "result.json").read_text())  # killed between the last stage's own record and
    own = {**whole, "staged": {}, "train_seconds": whole["staged"]["stages"][-1]["train_seconds"],  # the staged
           "flags": [f for f in whole["flags"] if not f.startswith("stage ")]}  # run's: reused (its checkpoint gone)
    (tmp_path / "result.json").write_text(json.dumps(own))
    run_via("self-train", task, [a, b], cfg, out=tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["staged"] == whole["staged"]
    # a folder holding a run of one stage is not a staged run's
    run("dann", task, cfg, out=tmp_path / "plain")
    with pytest.raises(qianyi.errors.CheckpointError, match="other stages"):
        run_via("self-train", task, [a], cfg, out=tmp_path / "plain")


def test_a_via_domain_that_copies_the_source_or_target_training_samples_is_warned_about(tmp_path):
    task = _task()
    for side, X in (("source", task.source.X), ("target", task.target.X)):
        np.savez(tmp_path / f"{side}.npz", X=X)
        with pytest.warns(qianyi.errors.QianyiWarning, match=f"samples are the {side}'s training samples"):
            load_via(f"npz:{tmp_path / f'{side}.npz'}", task)
    np.savez(tmp_path / "between.npz", X=_blobs(80, 3.0, 7).X)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_via(f"npz:{tmp_path / 'between.npz'}", task)) == 80


def test_a_staged_run_records_the_code_of_every_stage(tmp_path, monkeypatch):
    # stages trained by other code left no trace in the run's result.json: only the last stage's versions (diff5c #2a)
    import importlib

    from qianyi.train import engine

    run_module = importlib.import_module("qianyi.train.run")
    task = _task()
    via = [_blobs(200, 3.0, 10, labelled=False)]
    now = run_module.code_digest(qianyi.get_method("self-train"))
    with monkeypatch.context() as m:  # every stage trained by "older" code
        m.setattr(engine, "code_digest", lambda *a: "0ld")
        m.setattr(run_module, "code_digest", lambda *a: "0ld")
        old, _ = run_via("self-train", task, via, TrainConfig(**CFG), out=tmp_path)
    assert "codes" not in old.versions  # one code throughout: no list
    for name in ("result.json", "model.pt", "model.json", "checkpoint.pt"):  # the last stage trains again, now
        (tmp_path / name).unlink(missing_ok=True)
    res, stages = run_via("self-train", task, via, TrainConfig(**CFG), out=tmp_path)
    assert stages[0].result.resumed_from_step == 0 and stages[-1].result.resumed_from_step in (None, 0)  # (reused)
    assert res.versions["code"] == now and res.versions["codes"] == ["0ld", now]
    assert json.loads((tmp_path / "result.json").read_text())["versions"]["codes"] == ["0ld", now]


def test_stage_0_keeps_pretrained_layers_frozen(tmp_path):
    # a staged run without --init-from dropped --freeze in stage 0 ("random layers"): a network of your own (or a
    # pretrained backbone, text E with vectors=minilm) trained the layers --freeze names, frozen only after they moved
    import copy

    from torch import nn as tnn

    from qianyi.nn import as_backbone, backbone_for

    task = toy_task()
    torch.manual_seed(0)
    seq = tnn.Sequential(tnn.Sequential(tnn.Linear(6, 16), tnn.BatchNorm1d(16), tnn.ReLU()),
                         tnn.Sequential(tnn.Linear(16, 8), tnn.ReLU()), tnn.Linear(8, 3))
    net = as_backbone(seq, ["g1", "g2", "out"])
    start = copy.deepcopy(net.state_dict())
    for method in ("self-train", "shot"):
        _, fit = run(method, task, TrainConfig(epochs=1, steps_per_epoch=4, progress=False, freeze=1), backbone=net)
        end = fit.backbone.state_dict()
        assert [k for k in start if k.startswith("groups.g1.") and not torch.equal(start[k], end[k])] == [], method
    # qianyi's networks: only the groups they bring pretrained, from the input on; a pretrained one after a random
    # one cannot be frozen alone
    from qianyi.train.transitive import _pretrained_freeze

    default = backbone_for((6,), 3)
    default.pretrained_groups = frozenset()
    assert _pretrained_freeze(default, 2) == 0  # random: trained in stage 0, frozen from the next stage on
    default.pretrained_groups = frozenset({default.group_names[0]})
    assert _pretrained_freeze(default, 2) == 1
    default.pretrained_groups = frozenset({default.group_names[1]})
    with pytest.raises(ConfigError, match=r"give --freeze 0, or --init-from MODEL.pt"):
        _pretrained_freeze(default, 2)

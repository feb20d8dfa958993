"""Per-layer profiles and `qianyi measure`: known cases, before/after adaptation, files written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from qianyi.cli import main
from qianyi.errors import UnknownNameError
from qianyi.measure import compare_table, layer_profile, plot_profiles
from qianyi.measure.report import measure
from qianyi.nn.backbones import Backbone
from qianyi.train import TrainConfig, run

from .conftest import toy_task


def shift_removing_net(d: int) -> Backbone:
    """fc1 drops coordinate 0 (where the domains differ); logits read fc1."""
    fc1 = nn.Linear(d, d, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.diag(torch.tensor([0.0] + [1.0] * (d - 1))))
    return Backbone([("fc1", fc1), ("logits", nn.Linear(d, 2))])


def test_profile_sees_the_shift_at_the_input_and_not_after_a_layer_that_removes_it():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(400, 4)).astype(np.float32)
    xt = rng.normal(size=(400, 4)).astype(np.float32)
    xt[:, 0] += 6.0
    p = layer_profile(shift_removing_net(4), xs, xt, ["mk-mmd", "a-distance"], max_samples=300, label="net")
    assert p.layers == ["input", "fc1", "logits"] and p.dims == [4, 4, 2] and p.n_source == p.n_target == 300
    assert p.at("input", "a-distance") > 1.95 and p.at("input", "mk-mmd") > 0.3
    assert p.at("fc1", "a-distance") < 0.3 and abs(p.at("fc1", "mk-mmd")) < 0.02
    only = layer_profile(shift_removing_net(4), xs, xt, ["coral"], layers=["fc1", "input"])
    assert only.layers == ["input", "fc1"]  # network order
    with pytest.raises(UnknownNameError, match="conv9"):
        layer_profile(shift_removing_net(4), xs, xt, layers=["conv9"])


def test_dan_lowers_the_upper_layer_distance_compared_with_source_only(tmp_path):
    task = toy_task(n=400, shift=2.0)
    cfg = dict(epochs=2, steps_per_epoch=40, batch_size=64, progress=False)
    profiles = []
    for m in ("source-only", "dan"):
        _, fit = run(m, task, TrainConfig(**cfg), trade_off=3.0) if m == "dan" else run(m, task, TrainConfig(**cfg))
        profiles.append(layer_profile(fit.model, task.source_val.X, task.target_test.X, ["mk-mmd"], label=m))
    before, after = profiles
    for layer in ("fc2", "logits"):
        assert after.at(layer, "mk-mmd") < 0.5 * before.at(layer, "mk-mmd"), (layer, before.values, after.values)
    assert before.at("input", "mk-mmd") == after.at("input", "mk-mmd")  # same samples at the input
    table = compare_table(profiles, "mk-mmd")
    assert "source-only" in table and "dan" in table and "fc2" in table
    png = plot_profiles(profiles, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_measure_writes_json_md_png_and_reuses_finished_runs(tmp_path, digits_task):
    cfg = TrainConfig(epochs=1, steps_per_epoch=10, progress=False)
    res = measure(digits_task, layers=True, adapt=["dann"], config=cfg, metrics=["mk-mmd", "coral"], samples=150,
                  permutations=30, out=tmp_path, log=None)
    data = json.loads((tmp_path / "measure.json").read_text())
    assert [p["label"] for p in data["profiles"]] == ["source-only", "dann"]
    assert data["profiles"][0]["layers"] == ["input", "conv1", "conv2", "fc1", "fc2", "logits"]
    assert 0 < data["mmd_p_value"] <= 1 and (tmp_path / "profile.png").exists()
    assert (tmp_path / "runs" / "dann" / "model.pt").exists()
    assert "target test acc. (%) (final score only)" in res.table()


def test_cli_measure_prints_input_distances(capsys, tmp_path):
    assert main(["measure", "digits", "digits+rot30", "--samples", "120", "--permutations", "20",
                 "--metrics", "mk-mmd,a-distance"]) == 0
    out = capsys.readouterr().out
    assert "mk-mmd" in out and "a-distance" in out and "permutation test" in out
    argv = ["measure", "digits", "digits+rot30", "--samples", "120", "--permutations", "0", "--out", str(tmp_path / "m")]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.md").write_text("# my notes\n")  # a user's file, written during the command
    assert main(argv) == 0 and main(argv) == 0  # the report says which command made it, once
    assert (tmp_path / "m" / "notes.md").read_text() == "# my notes\n"  # only the command's own report
    md = (tmp_path / "m" / "measure.md").read_text()
    assert md.startswith("Command: `qianyi measure digits digits+rot30 --samples 120") and md.count("Command:") == 1
    assert main(["measure", "digits", "digits+rot30", "--metrics", "kl"]) == 2
    assert main(["measure", "digits", "digits+rot30", "--layers", "--model", str(tmp_path / "nope.pt")]) == 2
    assert "--model" in capsys.readouterr().err


def test_on_text_the_input_row_compares_the_words_present_not_the_token_ids(tmp_path):
    from qianyi.measure.profile import presence, top_words, word_presence

    from .test_text import _toy_text

    ids_s, ids_t = torch.tensor([[3, 5, 0, 0], [5, 5, 7, 0]]), torch.tensor([[9, 3, 0, 0]])
    words = top_words(ids_s, ids_t, top=3)
    assert words.tolist() == [3, 5, 7]  # in most reviews first (ties by id); padding (0) never a word
    assert presence(ids_s, words).tolist() == [[1, 1, 0], [0, 1, 1]] and word_presence(ids_s, ids_t, 3)[1].tolist() == [[1, 0, 0]]
    # the toy domains share no topic word ('book' vs 'pan' in every review): the words present tell them apart at
    # once; a linear classifier on the ids (their order shuffled) could not (A-distance 0.33)
    task = _toy_text(tmp_path / "data")
    res = measure(task, samples=200, permutations=20, metrics=["a-distance"], log=None)
    assert res.input_distances["a-distance"] >= 1.9 and "most frequent words" in res.table()


def test_measure_and_advise_name_their_bad_settings(tmp_path, capsys, digits_task):
    from qianyi.distances import mmd_test
    from qianyi.errors import DataError
    from qianyi.measure import advise
    from qianyi.measure.metrics import distances

    x, y = np.random.default_rng(0).normal(size=(50, 3)), np.random.default_rng(1).normal(size=(60, 3))
    for bad in (-1, 0, 1):  # -1 dropped the last row and reported "-1 source" samples
        with pytest.raises(DataError, match="max_samples"):
            distances(x, y, ["mk-mmd"], max_samples=bad)
        with pytest.raises(DataError, match="max_samples"):
            mmd_test(x, y, permutations=9, max_samples=bad)
        with pytest.raises(DataError, match="samples"):
            measure(digits_task, samples=bad, log=None)
        with pytest.raises(DataError, match="samples"):
            advise(digits_task, model=torch.nn.Identity(), samples=bad, log=None)
    with pytest.raises(DataError, match="batch"):
        mmd_test(x, y, permutations=9, batch=0)
    with pytest.raises(DataError, match="max_samples=4"):  # was: 'give more rows'
        distances(x, y, ["a-distance"], max_samples=4)
    with pytest.raises(DataError, match="layers"):  # a model without layers=True was ignored
        measure(digits_task, model=tmp_path / "m.pt", log=None)
    for extra in (["--model", str(tmp_path / "nope.pt")], ["--adapt", "dan"], ["--adapt", "dan,dann"]):  # ignored
        assert main(["measure", "digits", "digits+rot30", "--samples", "100", *extra]) == 2
        assert "apply with --layers" in capsys.readouterr().err


def test_the_python_api_names_a_wrong_network_or_wrong_inputs(tmp_path):
    """A saved model, a plain module, inputs of another width: clear errors (or the model's network), not a
    missing attribute or a matrix product's message."""
    from qianyi.errors import DataError
    from qianyi.measure import distances
    from qianyi.nn.features import extract
    from qianyi.nn.inference import predict_logits
    from qianyi.select import SelectionData, score_all
    from qianyi.train.artefact import load_model

    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="3 and 4 features"):
        distances(rng.random((50, 3)), rng.random((50, 4)), ["mmd"])
    task = toy_task()
    run("source-only", task, TrainConfig(epochs=1, progress=False), out=tmp_path / "run")
    saved = load_model(tmp_path / "run")
    xs, xt = task.source.X[:40], task.target.X[:40]
    assert layer_profile(saved, xs, xt, ["coral"]).layers == layer_profile(saved.network, xs, xt, ["coral"]).layers
    assert set(score_all(saved, SelectionData.from_task(task), "snd")) == {"snd"}  # one name as a string
    assert extract(task.source, saved)["X"].shape[0] == len(task.source)
    with pytest.raises(DataError, match="as_backbone"):
        layer_profile(nn.Sequential(nn.Linear(xs.shape[1], 2)), xs, xt, ["coral"])
    from qianyi.methods.cotraining import TwoViewNet
    two = TwoViewNet(10, 4, 3)  # co-training's network: each view is a backbone on its own columns
    with pytest.raises(DataError, match=r"\.view_a, \.view_b .*columns \[:4\]"):
        layer_profile(two, np.zeros((20, 10), np.float32), np.zeros((20, 10), np.float32), ["coral"])
    assert layer_profile(two.view_a, xs[:, :4], xt[:, :4], ["coral"]).layers[-1] == "logits"
    wide = np.zeros((10, xs.shape[1] + 3), np.float32)
    with pytest.raises(DataError, match=rf"cannot read inputs of shape \({xs.shape[1] + 3},\)"):
        predict_logits(saved.network, wide)
    with pytest.raises(DataError, match="cannot read inputs"):
        layer_profile(saved, wide, wide, ["coral"])


def test_train_config_reads_a_comma_separated_string_of_validators():
    assert TrainConfig(validators="snd").validators == ("snd",)
    assert TrainConfig(validators="snd, entropy").validators == ("snd", "entropy")
    with pytest.raises(UnknownNameError, match=r"unknown \['sdn'\]"):
        TrainConfig(validators="sdn")


def test_measure_and_advise_seed_their_training_as_the_cli_does_when_no_config_is_given(monkeypatch):
    """`qianyi measure --seed 1` trains with seed 1; measure(seed=1) trained with TrainConfig's seed 0."""
    from qianyi.measure import advisor, report
    from qianyi.train.engine import Trainer

    seen = []

    def fake_run(method, task, config, out=None):
        seen.append(config.seed)
        raise RuntimeError("stop")

    monkeypatch.setattr(report, "run", fake_run)
    with pytest.raises(RuntimeError, match="stop"):
        report.measure(toy_task(n=60), layers=True, adapt=[], seed=7, permutations=0, log=None)

    def fake_fit(self, task, monitor=None):
        seen.append(self.base_config.seed)
        raise RuntimeError("stop")

    monkeypatch.setattr(Trainer, "fit", fake_fit)
    with pytest.raises(RuntimeError, match="stop"):
        advisor.advise(toy_task(n=60), seed=5, permutations=0, samples=100, log=None)
    assert seen == [7, 5]


def test_measure_tests_the_rows_whose_distances_it_prints(monkeypatch):
    """measure subsampled for distances() and for mmd_test() with different draws: with more held-out rows than
    samples the p-value was of other rows than the MK-MMD printed above it."""
    from qianyi.distances import mmd_test
    from qianyi.measure import report

    tests = []

    def spy(x, y, **kw):
        tests.append(mmd_test(x, y, **kw))
        return tests[-1]

    monkeypatch.setattr(report, "mmd_test", spy)
    task = toy_task(n=2000)
    assert len(task.source_val) > 150 and len(task.target_test) > 150
    res = measure(task, metrics=["mk-mmd"], samples=150, permutations=9, log=None)
    assert (res.n_source, res.n_target) == (tests[0].n_x, tests[0].n_y) == (150, 150)
    assert tests[0].mmd2 == pytest.approx(res.input_distances["mk-mmd"], rel=1e-4)


def test_measure_warns_when_its_held_out_inputs_are_too_few_and_takes_val_fraction(capsys):
    """On a small source the distances compared the 10% source_val alone (15 reviews): an A-distance of 0
    said "alike" of two domains that share no word, with no hint and no option to hold out more."""
    from qianyi.cli import main

    args = ["measure", "digits", "digits+rot30", "--max-samples", "400", "--permutations", "0", "--threads", "1"]
    assert main(args) == 0
    assert "compare only 40 source (the held-out source_val split) and 120 target inputs" in capsys.readouterr().err
    assert main([*args, "--val-fraction", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert "between 200 source and 120 target" in out and "compare only" not in err

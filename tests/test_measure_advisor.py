"""The advisor: its documented rules on known profiles, blindness to target labels, CLI output."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from qianyi.cli import main
from qianyi.data.domain import TransferTask
from qianyi.errors import QianyiWarning
from qianyi.measure.advisor import _recommend, advise
from qianyi.measure.profile import LayerProfile
from qianyi.nn.backbones import lenet
from qianyi.train import TrainConfig

from .conftest import toy_task

LAYERS = ["input", "conv1", "conv2", "fc1", "fc2", "logits"]


def recommend(pads, pvals=(None, None, None, 0.5, 0.5, 0.5), atc=0.8, ent=(1.0, 1.0)):
    prof = LayerProfile("net", LAYERS, [64, 512, 256, 256, 128, 10], {"a-distance": list(pads)}, 100, 100)
    return _recommend("s->t", lenet(1, 8, 10), prof, [0.9] * 6, list(pvals), atc, 0.1, *ent)


def test_groups_reading_a_shared_representation_are_frozen_and_shifted_ones_adapted_with_dan():
    a = recommend([0.6, 0.7, 1.3, 0.8, 0.6, 0.1])
    assert (a.freeze, a.method, a.adapt_layers) == (2, "dan", ["fc1", "fc2"])
    assert a.transfer_likely_helps and not a.negative_transfer_warning
    why = {r.topic: r.because for r in a.recommendations}
    assert "input PAD 0.60, conv1 PAD 0.70" in why["freeze"] and "conv2 PAD 1.30 > 1.0" in why["freeze"]


def test_freezing_stops_at_the_first_separable_input_or_adaptation_layer():
    assert recommend([0.6, 1.2, 0.5, 0.8, 0.6, 0.1]).freeze == 1  # conv2 reads conv1 (PAD 1.2)
    a = recommend([0.3, 0.3, 0.3, 0.5, 0.4, 0.1])
    assert a.freeze == 2 and "fc1 is an adaptation layer" in {r.topic: r.because for r in a.recommendations}["freeze"]
    # MNIST -> UCI digits as measured: separable from the input on, so nothing is frozen
    assert (recommend([1.59, 1.64, 1.60, 1.58, 1.27, 0.33]).freeze, recommend([1.59] * 6).freeze) == (0, 0)


def test_low_level_shift_adapts_every_layer_adversarially():
    a = recommend([1.97, 1.96, 1.9, 1.2, 1.0, 0.4])
    assert (a.freeze, a.method) == (0, "dann")
    assert recommend([1.2, 1.1, 1.1, 1.6, 1.6, 0.4]).method == "dann"  # large shift at the features


def test_aligned_features_need_no_adaptation_unless_a_test_rejects():
    a = recommend([1.0, 0.9, 0.5, 0.1, 0.05, 0.0], pvals=(None, None, None, 0.3, 0.4, 0.9))
    assert (a.method, a.adapt_layers) == ("source-only", [])
    # p = 0.03 is not significant after Bonferroni over three layers; p = 0.01 is
    assert recommend([1.0, 0.9, 0.5, 0.1, 0.05, 0.0], pvals=(None, None, None, 0.03, 0.4, 0.9)).method == "source-only"
    assert recommend([1.0, 0.9, 0.5, 0.1, 0.05, 0.0], pvals=(None, None, None, 0.01, 0.4, 0.9)).adapt_layers == ["fc1"]


def test_far_target_raises_the_negative_transfer_warning():
    assert recommend([1.5, 1.5, 1.5, 1.9, 1.95, 1.0]).negative_transfer_warning  # features separate the domains
    assert recommend([1.2, 1.1, 1.25, 0.8, 0.6, 0.1], atc=0.15).negative_transfer_warning  # < 2 x chance
    warned = recommend([1.2, 1.1, 1.25, 0.8, 0.6, 0.1], ent=(1.0, 0.3))  # predictions collapse
    assert warned.negative_transfer_warning and not warned.transfer_likely_helps
    assert any(r.topic == "warning" and "collapse" in r.because for r in warned.recommendations)
    # concentrated predictions alone may be label shift (fewer positives in the target): uncertain, not too far
    verdict = {r.topic: r.advice for r in warned.recommendations}["transfer"]
    assert verdict.startswith("uncertain") and "less balanced" in verdict and "too far" not in verdict


def test_the_source_majority_rate_is_shown_beside_chance_and_few_samples_are_warned(tmp_path):
    task = toy_task(n=300, shift=0.5)
    keep = np.flatnonzero((task.source.y != 2) | (np.arange(len(task.source.y)) % 5 == 0))  # class 2 rare
    task = TransferTask(task.source.subset(keep), task.source_val, task.target, task.target_test, task.name)
    cfg = TrainConfig(epochs=1, steps_per_epoch=10, progress=False)
    with pytest.warns(QianyiWarning, match="coarse"):
        a = advise(task, config=cfg, samples=30, permutations=0, log=None)
    counts = np.bincount(task.source.y)
    because = {r.topic: r.because for r in a.recommendations}["transfer"]
    assert a.chance == pytest.approx(1 / 3) and f"majority-class rate {100 * counts.max() / counts.sum():.1f}%" in because
    assert any(r.topic == "warning" and "30 samples per domain" in r.advice for r in a.recommendations)


def test_the_probes_are_validated_on_a_random_subset_of_source_val(monkeypatch):
    # source_val stored by class: its first rows hold the first classes only, and a probe validated on them
    # scored +18 points on mnist->digits at --samples 100
    from qianyi.measure import advisor

    task = toy_task(n=1000, shift=0.5)
    val = task.source_val.subset(np.argsort(task.source_val.y, kind="stable"))
    task = TransferTask(task.source, val, task.target, task.target_test, task.name)
    seen = []
    probe = advisor.linear_probe_accuracy
    monkeypatch.setattr(advisor, "linear_probe_accuracy", lambda *a: seen.append(a[3]) or probe(*a))
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, progress=False)
    with pytest.warns(QianyiWarning, match="coarse"):
        advise(task, config=cfg, samples=40, permutations=0, log=None)
    counts = np.bincount(np.concatenate(seen), minlength=3)
    assert len(seen) == 4 and len(seen[0]) == 40 and (counts > 4 * 5).all(), counts  # every class, 4 layers


def test_too_few_permutations_for_the_corrected_level_are_warned():
    # three fully connected layers: level 0.05 / 3; 50 permutations give p >= 1/51 = 0.0196, so the MMD half
    # of the adaptation rule could never fire
    from qianyi.measure.advisor import min_permutations

    assert (min_permutations(0.05 / 3), min_permutations(0.05), min_permutations(0.05 / 2)) == (60, 20, 40)
    assert 1 / (min_permutations(0.05 / 3) + 1) < 0.05 / 3 <= 1 / min_permutations(0.05 / 3)
    task, cfg = toy_task(n=400, shift=0.5), TrainConfig(epochs=1, steps_per_epoch=5, progress=False)
    with pytest.warns(QianyiWarning, match=r"1/51 = 0.0196, not below the level 0.0167.*use 60 permutations or more"):
        a = advise(task, config=cfg, samples=100, permutations=50, log=None)
    assert any(r.topic == "warning" and "cannot fire" in r.advice for r in a.recommendations)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        b = advise(task, config=cfg, samples=100, permutations=60, log=None)
    assert not any(r.topic == "warning" and "cannot fire" in r.advice for r in b.recommendations)


def test_advice_does_not_depend_on_target_labels(tmp_path):
    task = toy_task(n=300, shift=1.5)
    rng = np.random.default_rng(0)
    scrambled = TransferTask(task.source, task.source_val,
                             task.target.replace(y=rng.permutation(task.target.y)),
                             task.target_test.replace(y=(task.target_test.y + 1) % 3), task.name)
    cfg = TrainConfig(epochs=1, steps_per_epoch=30, progress=False)
    a = advise(task, config=cfg, samples=200, permutations=50, out=tmp_path / "a", log=None).to_dict()
    b = advise(scrambled, config=cfg, samples=200, permutations=50, out=tmp_path / "b", log=None).to_dict()
    for d in (a, b):
        d.pop("source_model"), d.pop("command")
    assert a == b
    assert a["profile"]["layers"] == ["input", "fc1", "fc2", "logits"] and 0 <= a["atc_estimate"] <= 1
    saved = json.loads((tmp_path / "a" / "advice.json").read_text())
    assert saved["method"] in ("source-only", "dan", "dann") and (tmp_path / "a" / "source" / "model.pt").exists()


def test_cli_advise_explains_with_numbers(tmp_path, capsys):
    assert main(["advise", "digits", "digits+rot30", "--epochs", "2", "--samples", "200", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for word in ("freeze:", "method:", "adapt:", "transfer:", "because", "PAD", "qianyi run"):
        assert word in out
    assert {p.name for p in tmp_path.iterdir()} >= {"advice.json", "advice.md", "profile.png", "source"}


def test_a_binary_task_is_not_doubtful_at_a_high_accuracy_estimate():
    prof = LayerProfile("net", LAYERS, [64, 512, 256, 256, 128, 2], {"a-distance": [0.1, 0.1, 0.1, 0.1, 0.1, 0.0]}, 100, 100)
    advice = lambda atc: _recommend("s->t", lenet(1, 8, 2), prof, [0.9] * 6, [None] * 3 + [0.5] * 3, atc, 0.5, 1.0, 1.0)  # noqa: E731
    assert advice(0.955).transfer_likely_helps  # twice chance would be 100%: every binary task was doubtful
    low = advice(0.7)
    assert low.negative_transfer_warning and "under 75%" in {r.topic: r.because for r in low.recommendations}["warning"]


def test_the_most_transferable_representation_has_the_lowest_bound():
    """Review mutation2 #9 (AD7): argmax in place of argmin named the layer with the worst bound e_S + PAD/2."""
    pads = [1.2, 1.0, 0.6, 0.2, 0.3, 0.1]  # lowest at logits
    probes = [0.5, 0.7, 0.95, 0.9, 0.8, 0.6]  # highest at conv2; bounds 1.1, 0.8, 0.35, 0.2, 0.35, 0.45
    prof = LayerProfile("net", LAYERS, [64, 512, 256, 256, 128, 10], {"a-distance": pads}, 100, 100)
    a = _recommend("s->t", lenet(1, 8, 10), prof, probes, [None] * 3 + [0.5] * 3, 0.8, 0.1, 1.0, 1.0)
    (rec,) = [r for r in a.recommendations if r.topic == "most transferable representation"]
    assert rec.advice == "fc1" and "lowest e_S + PAD/2 = 0.200" in rec.because, rec
    assert "probe source accuracy 90.0%, PAD 0.20" in rec.because


def test_freezing_up_to_the_output_layer_gives_the_right_reason():
    a = recommend([0.3, 0.3, 0.3, 0.05, 0.05, 0.0], pvals=(None, None, None, 0.5, 0.5, 0.9))
    why = {r.topic: r.because for r in a.recommendations}["freeze"]
    assert a.freeze == 4 and "logits is the output layer" in why and "separates" not in why


def test_the_printed_command_loads_the_data_as_advise_did(tmp_path, capsys):
    # on text the vocabulary depends on --max-samples: without it the printed command failed (embedding shapes)
    from .test_text import _toy_text

    task = _toy_text(tmp_path / "data")
    adv = advise(task, config=TrainConfig(epochs=1, steps_per_epoch=5, progress=False), samples=100, permutations=10,
                 out=tmp_path / "a", log=None, run_command="qianyi --data-dir D run", run_flags="--max-samples 40")
    assert adv.command.startswith(f"qianyi --data-dir D run {adv.method} --source lines:")
    assert "--max-samples 40" in adv.command and "most frequent words" in adv.profile.info["input"]
    assert main(["advise", "digits", "digits+rot30", "--epochs", "1", "--steps-per-epoch", "5", "--samples", "100",
                 "--permutations", "10", "--max-samples", "300", "--no-progress", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "--max-samples 300 --out" in out and "coral" not in out  # the API's metrics (the docs' table)


def test_advise_reads_a_text_pair_with_the_given_text_settings_and_repeats_them(tmp_path, capsys):
    from .test_text import _toy_text

    _toy_text(tmp_path / "d")
    s, t = f"lines:{tmp_path / 'd' / 's'}", f"lines:{tmp_path / 'd' / 't'}"
    assert main(["advise", s, t, "--text", "max_len=16", "--epochs", "1", "--steps-per-epoch", "3", "--samples", "100",
                 "--permutations", "0", "--no-progress", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "--text max_len=16" in out
    assert json.loads((tmp_path / "a" / "advice.json").read_text())["profile"]["layers"][0] == "input"


def test_advice_on_a_run_folder_prints_an_init_from_that_runs(tmp_path, capsys):
    """--model takes a run folder; the printed command's --init-from names its model.pt (a folder was refused
    by --init-from, which now says which file to give)."""
    from qianyi.errors import DataError
    from qianyi.train.weights import load_initial_weights
    from qianyi.nn.backbones import lenet

    assert main(["run", "source-only", "--source", "digits", "--target", "digits+rot30", "--epochs", "1",
                 "--steps-per-epoch", "3", "--no-progress", "--threads", "1", "--out", str(tmp_path / "src")]) == 0
    capsys.readouterr()
    assert main(["advise", "digits", "digits+rot30", "--model", str(tmp_path / "src"), "--samples", "100",
                 "--permutations", "0", "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"--init-from {tmp_path / 'src' / 'model.pt'}" in out
    with pytest.raises(DataError, match="is a folder .it holds model.pt: give"):
        load_initial_weights(lenet(1, (8, 8), 10), str(tmp_path / "src"))


def test_a_model_trained_on_otherwise_prepared_vectors_is_not_measured_silently(tmp_path, capsys):
    """advise/measure read pairs with load_task's defaults: a run with --no-standardize is refused, named."""
    from .test_hostile import _blobs

    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", seed=1, shift=0.5)
    assert main(["run", "source-only", "--source", src, "--target", tgt, "--epochs", "1", "--steps-per-epoch", "2",
                 "--no-progress", "--threads", "1", "--no-standardize", "--out", str(tmp_path / "raw")]) == 0
    capsys.readouterr()
    assert main(["advise", src, tgt, "--model", str(tmp_path / "raw"), "--samples", "50", "--permutations", "0",
                 "--no-progress", "--threads", "1"]) == 2
    assert "prepared otherwise (standardised inputs not, here yes)" in capsys.readouterr().err
    assert main(["advise", src, tgt, "--model", str(tmp_path / "raw"), "--samples", "50", "--permutations", "0",
                 "--no-progress", "--threads", "1", "--no-standardize"]) == 0  # read as the run did: measured
    assert "--no-standardize" in capsys.readouterr().out  # and the printed command reads it so too


def test_advise_says_when_its_model_was_adapted(tmp_path):
    # `advise --model` took a dann run as "the source network before adaptation" without a word
    from qianyi.train import run

    task = toy_task(n=200, shift=0.5)
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, progress=False)
    run("dann", task, cfg, out=tmp_path / "dann")
    run("source-only", task, cfg, out=tmp_path / "src")
    with pytest.warns(QianyiWarning, match="was trained by dann, by an adaptation method"):
        advise(task, model=tmp_path / "dann", samples=60, permutations=0, log=None)
    run("oracle", task, cfg, out=tmp_path / "oracle")
    with pytest.warns(QianyiWarning, match=r"trained by oracle, on target labels \(ORACLE\)"):
        advise(task, model=tmp_path / "oracle", samples=60, permutations=0, log=None)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        advise(task, model=tmp_path / "src", samples=60, permutations=0, log=None)
    assert not [w for w in said if "adaptation method" in str(w.message)]

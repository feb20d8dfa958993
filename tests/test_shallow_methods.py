"""Shallow methods through the same CLI, bench, store and select as the deep ones."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qianyi.cli import main
from qianyi.errors import QianyiWarning
from qianyi.methods import get_method
from qianyi.train import run
from qianyi.train.store import finished

from .conftest import toy_task

SHALLOW = ["knn", "tca", "jda", "sa", "coral-shallow", "kmm"]
#: arrays each method's model.npz must hold (what its estimator fitted; sa's sat behind a lambda, unsaved)
FITTED = {"knn": {"KNeighborsClassifier.classes_"}, "tca": {"TCA.components_", "TCA.mean_"},
          "jda": {"JDA.components_", "JDA.classes_"},
          "sa": {"SubspaceAlignment.source_basis_", "SubspaceAlignment.target_basis_", "SubspaceAlignment.alignment_",
                 "SubspaceAlignment.source_mean_", "SubspaceAlignment.target_mean_"},
          "coral-shallow": {"CORAL.transform_matrix_"}, "kmm": {"KMM.weights_"}}


@pytest.mark.parametrize("name", SHALLOW)
def test_run_a_shallow_method_from_the_cli(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["run", name, "--source", "digits", "--target", "digits+rot30", "--max-samples", "400",
                 "--out", str(out)]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["method"] == name and 0 < res["target_accuracy"] <= 1 and res["history"] == []
    assert res["model_file"] == "model.npz" and res["flags"] == []  # a healthy 10-class run: no collapse flag
    with np.load(out / "model.npz") as saved:
        assert FITTED[name] <= set(saved.files), sorted(saved.files)
    assert res["target_report"]["confusion"] and "no target labels" in res["selection"]
    assert finished(out, res["fingerprint"]) is not None  # the store sees it as a finished run
    assert main(["predict", str(out), "--data", "digits", "--out", str(tmp_path / "p.csv")]) == 2
    assert "shallow method" in capsys.readouterr().err


def test_bench_puts_shallow_and_deep_methods_in_one_table_and_reuses_runs(tmp_path, capsys):
    args = ["bench", "--methods", "tca,dan", "--pairs", "digits->digits+rot30", "--seeds", "1", "--epochs", "1",
            "--steps-per-epoch", "3", "--max-samples", "400", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    md = (tmp_path / "results.md").read_text()
    assert "| tca |" in md and "| dan |" in md and "| source-only |" in md
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().err.count("(done earlier)") == 4  # source-only, tca, dan, oracle


def test_shallow_settings_are_checked_and_selectable(tmp_path):
    from qianyi.bench.selection import select_hparams
    from qianyi.errors import ConfigError, UnknownNameError

    with pytest.raises(ConfigError, match="classifier"):
        get_method("tca", classifier="svm")
    with pytest.raises(UnknownNameError):
        get_method("tca", trade_off=1.0)
    with pytest.raises(ConfigError, match="1-NN takes no sample weights"):  # at once, not after the data is read
        get_method("kmm", classifier="1nn")
    with pytest.raises(ConfigError, match="only source-val applies"):  # before training (it was a KeyError after)
        select_hparams("tca", ["digits->digits+rot30"], validator="dev", out=tmp_path, max_samples=300, log=None)
    res = select_hparams("tca", ["digits->digits+rot30"], validator="source-val", out=tmp_path, max_samples=300,
                         log=None)
    assert res.choice in [dict(c) for c in get_method("tca").grid]


def test_shallow_methods_refuse_network_settings_and_stage_chains(tmp_path, capsys):
    # a staged run passes each stage's model on as init_from, which a shallow fit ignored: the chain was a no-op
    rng = np.random.default_rng(0)
    for name, shift in (("s", 0.0), ("m", 1.0), ("t", 2.0)):
        np.savez(tmp_path / f"{name}.npz", X=rng.normal(shift, 1, (60, 5)), y=np.arange(60) % 3)
    base = ["run", "tca", "--source", f"npz:{tmp_path}/s.npz", "--target", f"npz:{tmp_path}/t.npz"]
    for extra, said in ((["--via", f"npz:{tmp_path}/m.npz"], "carries no model from stage to stage"),
                        (["--init-from", str(tmp_path / "m.pt")], "init_from (--init-from) does not apply"),
                        (["--freeze", "1"], "freeze (--freeze) does not apply")):
        assert main([*base, *extra, "--out", str(tmp_path / "r")]) == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "r" / "result.json").exists()


def test_a_shallow_method_refuses_choosing_an_epoch(tmp_path, capsys):
    # --select dev was accepted and recorded, though a shallow fit has no epochs to choose from
    assert main(["run", "tca", "--source", "digits", "--target", "digits+rot30", "--select", "dev",
                 "--max-samples", "200", "--out", str(tmp_path / "r")]) == 2
    assert "select (--select) does not apply" in capsys.readouterr().err


class _OneClass:
    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X), int)


def test_a_shallow_run_that_predicts_one_class_gets_the_deep_runs_checks(tmp_path, monkeypatch):
    # review (classes) finding 4: KMM on 100 classes x 2,048 dims predicted one class for every sample (1.0%) and
    # the run said nothing: shallow runs skipped the chance-level warning and the collapse flag
    monkeypatch.setattr(type(get_method("kmm")), "fit_predictor", lambda self, Xs, ys, Xt, seed: _OneClass())
    with pytest.warns(QianyiWarning) as caught:
        res, _ = run("kmm", toy_task(n=300, classes=4), out=tmp_path / "kmm")
    said = [str(w.message) for w in caught]
    assert any("is at chance level" in w and "kmm on toy-s->toy-t" in w for w in said), said
    (flag,) = res.flags
    assert flag.startswith("the model collapsed: it gives 100% of the target samples one class")
    assert "it does not fit the source either" in flag and any(flag in w for w in said)
    assert json.loads((tmp_path / "kmm" / "result.json").read_text())["flags"] == [flag]

"""The scikit-learn estimator: the same engine behind fit/predict, usable in Pipeline and GridSearchCV."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from qianyi import DomainAdapter, label_free_scorer
from qianyi.errors import DataError
from qianyi.nn.backbones import mlp


def _shifted(n: int = 300, seed: int = 0, shift: float = 0.7):
    rng = np.random.default_rng(seed)
    ys, yt = rng.integers(0, 3, n), rng.integers(0, 3, n)
    Xs = rng.normal(size=(n, 5)) + 2 * np.eye(3, 5)[ys]
    Xt = rng.normal(size=(n, 5)) + 2 * np.eye(3, 5)[yt] + shift
    return Xs, ys, Xt, yt


@pytest.mark.parametrize("method", ["source-only", "dann"])
def test_passes_scikit_learns_estimator_checks(method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(DomainAdapter(method, epochs=3, steps_per_epoch=2), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed and sum(r["status"] == "passed" for r in results) >= 50


def test_fit_predict_with_a_separate_target_and_string_classes():
    Xs, ys, Xt, yt = _shifted()
    names = np.array(["cat", "dog", "eel"])
    clf = DomainAdapter("dan", epochs=5).fit(Xs, names[ys], Xt=Xt)
    assert list(clf.classes_) == ["cat", "dog", "eel"]
    assert np.mean(clf.predict(Xt) == names[yt]) > 0.6
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert len(clf.history_) == 5 and "mmd" in clf.history_[0]  # the engine's per-epoch history
    assert clone(clf).get_params() == clf.get_params()


def test_target_rows_by_marker_or_sample_domain_and_a_backbone_of_your_own():
    Xs, ys, Xt, yt = _shifted(seed=1)
    X, sd = np.r_[Xs, Xt], np.r_[np.ones(len(Xs)), -np.ones(len(Xt))]
    a = DomainAdapter("dann", epochs=2, steps_per_epoch=4,
                      backbone=lambda shape, k: mlp(shape[0], k, hidden=(32, 16)))
    a.fit(X, np.r_[ys, yt], sample_domain=sd)  # target labels present but never read: sample_domain says target
    assert a.model_.feature_dim("fc1") == 32
    b = DomainAdapter("dann", epochs=2, steps_per_epoch=4, unlabelled=-1).fit(X, np.r_[ys, -np.ones(len(Xt), int)])
    assert set(b.classes_) == {0, 1, 2}
    with pytest.raises(DataError, match="only one class"):
        DomainAdapter(epochs=1, steps_per_epoch=2).fit(Xs, np.zeros(len(Xs), int))


def test_domain_conventions_are_checked_as_in_the_shallow_estimators():
    from qianyi.shallow import JDA

    Xs, ys, Xt, _ = _shifted(n=40, seed=2)
    X = np.r_[Xs, Xt]
    fast = dict(epochs=1, steps_per_epoch=1)
    with pytest.raises(DataError, match="non-zero numbers"):  # 0 is neither source nor target
        DomainAdapter(**fast).fit(X, np.r_[ys, ys], sample_domain=np.r_[np.ones(40), np.zeros(40)])
    with pytest.raises(DataError, match="either as Xt= or by sample_domain="):
        DomainAdapter(**fast).fit(X, np.r_[ys, ys], Xt=Xt, sample_domain=np.r_[np.ones(40), -np.ones(40)])
    names = np.array(["cat", "dog", "eel"])[np.r_[ys, ys]].astype(object)
    names[40:] = "-1"  # the marker -1 (a number) never equals the string '-1': it would become a class
    for est in (DomainAdapter(unlabelled=-1, **fast), JDA(unlabelled=-1)):
        with pytest.raises(DataError, match="unlabelled marker -1 \\(int\\) cannot match labels"):
            est.fit(X, names.astype(str))
    nan_y = np.r_[ys, np.full(40, np.nan)]  # scikit-learn's own "Input y contains NaN" named no way out
    with pytest.raises(DataError, match="y holds NaN, which its scikit-learn checks refuse.*any label with sample_domain="):
        DomainAdapter(unlabelled=np.nan, **fast).fit(X, nan_y)


def test_pipeline_and_grid_search_choose_settings_without_target_labels():
    Xs, ys, Xt, yt = _shifted(seed=2)
    X, y = np.r_[Xs, Xt], np.r_[ys, -np.ones(len(Xt), int)]  # -1: target rows, no labels
    pipe = make_pipeline(StandardScaler(), DomainAdapter("dan", epochs=2, unlabelled=-1))
    search = GridSearchCV(pipe, {"domainadapter__settings": [{"trade_off": 1.0}, {"trade_off": 3.0}]},
                          scoring=label_free_scorer("snd"), cv=2)
    search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["domainadapter__settings"] in ({"trade_off": 1.0}, {"trade_off": 3.0})
    assert np.mean(search.predict(Xt) == yt) > 0.5
    with pytest.raises(DataError, match="needs"):
        label_free_scorer("dev")  # needs the source training split, which a scorer never sees


@pytest.mark.parametrize("method", ["self-train", "shot"])
def test_a_method_that_starts_from_a_trained_model_trains_that_model_first(method):
    # DomainAdapter called the engine directly: the teacher was the untrained network and the result was at
    # chance (self-train 10% on digits with no shift at all)
    Xs, ys, Xt, yt = _shifted(shift=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)  # no "untrained teacher" warning on this path
        clf = DomainAdapter(method, epochs=5, random_state=0).fit(Xs, ys, Xt=Xt)
    assert np.mean(clf.predict(Xt) == yt) > 0.8


def test_methods_the_adapter_cannot_fit_are_refused_and_health_flags_are_kept():
    from qianyi.errors import ConfigError

    Xs, ys, Xt, yt = _shifted()
    for name, why in (("tca", "shallow method"), ("discogan", "trains no classifier"), ("oracle", "target labels")):
        with pytest.raises(ConfigError, match=why):  # tca: an empty NotImplementedError; discogan: chance, silently
            DomainAdapter(name, epochs=1).fit(Xs, ys, Xt=Xt)
    with pytest.raises(ConfigError, match="random_state=1.5; give a whole number"):  # was: "seed must be ..."
        DomainAdapter("dan", epochs=1, random_state=1.5).fit(Xs, ys, Xt=Xt)  # (None draws a seed: scikit-learn's)
    clf = DomainAdapter("dan", epochs=1, backbone="mlp").fit(Xs, ys, Xt=Xt)  # a named network, as qianyi.run takes
    assert clf.flags_ == [] and clf.score(Xt, yt) > 0.4


def test_the_marker_and_xt_together_are_refused_not_read_as_a_class():
    # JDA(unlabelled=-1).fit(X, y_with_-1, Xt=Xt) made -1 a class and predicted it for every target row
    from qianyi.shallow import JDA

    Xs, ys, Xt, yt = _shifted()
    y = ys.copy()
    y[:50] = -1
    with pytest.raises(DataError, match="use one convention"):
        JDA(unlabelled=-1).fit(Xs, y, Xt=Xt)
    with pytest.raises(DataError, match="use one convention"):
        DomainAdapter("dan", epochs=1, unlabelled=-1).fit(Xs, y, Xt=Xt)


def test_grey_images_without_a_channel_axis_predict_in_either_layout_and_channels_last_is_named():
    rng = np.random.default_rng(0)
    X = rng.random((60, 12, 12)).astype(np.float32)
    y = rng.integers(0, 2, 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = DomainAdapter("dann", epochs=1, steps_per_epoch=3).fit(X, y, Xt=X[:20])
    assert np.array_equal(m.predict(X[:20]), m.predict(X[:20, None]))  # (n, h, w) and (n, 1, h, w)
    with pytest.raises(DataError, match="channels-last"):
        DomainAdapter("dann", epochs=1).fit(rng.random((30, 28, 28, 3)), rng.integers(0, 2, 30))


def test_an_adapter_fitted_before_sample_shape_was_recorded_still_predicts():
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 4)).astype(np.float32), rng.integers(0, 2, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = DomainAdapter("dann", epochs=1, steps_per_epoch=2).fit(X, y)
    del m.sample_shape_  # what an adapter pickled by an earlier version holds
    assert m.predict(X[:5]).shape == (5,)


def test_random_state_none_draws_a_seed_and_string_target_rows_are_named():
    from qianyi import DomainAdapter
    from qianyi.errors import DataError

    rng = np.random.RandomState(1)
    X = rng.randn(60, 4).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    fitted = DomainAdapter("source-only", epochs=1, steps_per_epoch=2, random_state=None).fit(X, y, Xt=X + 0.2)
    assert fitted.predict(X).shape == (60,)
    with pytest.raises(DataError, match="Xt cannot be read as numbers"):
        DomainAdapter("source-only", epochs=1, steps_per_epoch=2).fit(X, y, Xt=np.array([["a"] * 4] * 3))


def test_other_training_settings_reach_the_engine_and_bad_ones_are_named(tmp_path):
    """training={...}: TrainConfig settings without a parameter of their own (weight decay, schedule, freezing)."""
    from qianyi.errors import ConfigError

    Xs, ys, Xt, _ = _shifted(n=120)
    kw = dict(epochs=2, steps_per_epoch=3)
    base = DomainAdapter("dann", **kw).fit(Xs, ys, Xt=Xt)
    same = DomainAdapter("dann", training={"weight_decay": 5e-4}, **kw).fit(Xs, ys, Xt=Xt)  # the default, spelt out
    other = DomainAdapter("dann", training={"weight_decay": 0.5, "lr_schedule": "constant"}, **kw).fit(Xs, ys, Xt=Xt)
    assert np.array_equal(base.predict_proba(Xt), same.predict_proba(Xt))
    assert not np.allclose(base.predict_proba(Xt), other.predict_proba(Xt))
    # copy a trained network and freeze its first layer group: it stays as copied (batch-norm statistics too)
    torch.save(base.model_.state_dict(), tmp_path / "start.pt")
    start = {"init_from": str(tmp_path / "start.pt"), "freeze": 1}
    slow, fast = (DomainAdapter("source-only", lr=lr, training=start, **kw).fit(Xs, ys, Xt=Xt).model_
                  for lr in (0.01, 0.1))
    moved = {k for k, v in slow.state_dict().items() if not torch.equal(v, fast.state_dict()[k])}
    assert moved and not any(k.startswith("groups.fc1.") for k in moved) and "groups.fc2.0.weight" in moved
    assert all(torch.equal(v, base.model_.state_dict()[k]) for k, v in slow.state_dict().items()
               if k.startswith("groups.fc1."))
    assert clone(DomainAdapter(training={"freeze": 1})).get_params()["training"] == {"freeze": 1}
    for bad, says in (({"epochs": 3}, "DomainAdapter(epochs=...)"), ({"weight_dekay": 0.1}, "known: "),
                      ({"seed": 1}, "DomainAdapter(random_state=...)"),
                      ([("freeze", 1)], "give a dict")):
        with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            DomainAdapter("dann", training=bad, **kw).fit(Xs, ys, Xt=Xt)


def test_a_fitted_search_with_the_label_free_scorer_pickles_and_scores_alike():
    """The scorer was a closure: joblib.dump of a fitted GridSearchCV failed (Can't pickle <locals>.score)."""
    import pickle

    Xs, ys, Xt, _ = _shifted(n=60, seed=3)
    X, y = np.r_[Xs, Xt], np.r_[ys, -np.ones(len(Xt), int)]
    search = GridSearchCV(DomainAdapter("source-only", epochs=1, steps_per_epoch=2, unlabelled=-1),
                          {"epochs": [1]}, scoring=label_free_scorer("snd"), cv=2).fit(X, y)
    again = pickle.loads(pickle.dumps(search))
    assert again.scorer_(again.best_estimator_, X, y) == search.scorer_(search.best_estimator_, X, y)
    assert repr(again.scorer_) == "label_free_scorer('snd')"


def test_label_free_scorer_scores_shallow_classifiers_from_their_probabilities():
    """On a shallow estimator every score was NaN (no model_), and GridSearchCV kept the first candidate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from qianyi.shallow import CORAL, JDA, AdaptedClassifier, KMMClassifier

    Xs, ys, Xt, _ = _shifted(n=80, seed=4)
    X, y = np.r_[Xs, Xt], np.r_[ys, -np.ones(len(Xt), int)]
    est = KMMClassifier(unlabelled=-1).fit(X, y)
    p = est.predict_proba(Xt)
    want = float((p * np.log(p)).sum(1).mean())  # minus the mean entropy: larger is better
    assert label_free_scorer("entropy")(est, X, y) == pytest.approx(want, rel=1e-6)
    search = GridSearchCV(AdaptedClassifier(CORAL(), unlabelled=-1),
                          {"estimator": [LogisticRegression(C=0.01), LogisticRegression(C=10.0)]},
                          scoring=label_free_scorer("atc"), cv=2, error_score="raise").fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    with pytest.raises(DataError, match="0 or 1.*LogisticRegression"):  # 1-NN, the default: nothing to rank
        label_free_scorer("snd")(JDA(unlabelled=-1, n_iter=2).fit(X, y), X, y)
    with pytest.raises(DataError, match="no predict_proba.*LogisticRegression"):
        label_free_scorer("entropy")(AdaptedClassifier(CORAL(), SVC(), unlabelled=-1).fit(X, y), X, y)
    with pytest.raises(DataError, match="rv reads a network's features.*entropy, snd or atc"):
        label_free_scorer("rv")(est, X, y)


def test_a_marker_that_marks_no_row_fits_the_source_as_its_own_target():
    """DomainAdapter(unlabelled=-1) on a y without -1 fits as DomainAdapter() does (the source as its own target),
    where the shallow classifiers refuse (tests/test_shallow.py; docs/shallow.md states both)."""
    Xs, ys, _, _ = _shifted(n=60)
    fast = dict(epochs=1, steps_per_epoch=2, device="cpu")
    marked = DomainAdapter("dann", unlabelled=-1, **fast).fit(Xs, ys)
    plain = DomainAdapter("dann", **fast).fit(Xs, ys)
    np.testing.assert_array_equal(marked.predict_proba(Xs), plain.predict_proba(Xs))

"""SHOT (issue 14): clustered pseudo-labels against a hand computation, the classifier held fixed, no source
data read, resuming mid-epoch."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from qianyi.data import TransferTask
from qianyi.errors import ConfigError
from qianyi.methods import get_method
from qianyi.methods.shot import cluster_labels
from qianyi.train import TrainConfig, Trainer, run

from .conftest import toy_task
from .test_engine import _interrupt_after

CFG = dict(epochs=3, steps_per_epoch=10, batch_size=32, progress=False)


def _by_hand(features: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 4-6 of Liang et al. 2020, written out with loops: soft centroids, nearest by cosine, hard centroids,
    nearest again."""
    g = np.hstack([features, np.ones((len(features), 1))])
    g = g / np.linalg.norm(g, axis=1, keepdims=True)

    def nearest(centroids: list) -> np.ndarray:
        out = []
        for x in g:
            dist = [np.inf if c is None else 1 - x @ c / np.linalg.norm(c) for c in centroids]
            out.append(int(np.argmin(dist)))
        return np.array(out)

    top = probs.argmax(1)  # a class no sample predicts gets no centroid (the authors' labelset)
    soft = [None if not (top == k).any() else (probs[:, k, None] * g).sum(0) / probs[:, k].sum()
            for k in range(probs.shape[1])]
    first = nearest(soft)
    hard = [g[first == k].mean(0) if (first == k).any() else None for k in range(probs.shape[1])]
    return np.array([np.zeros(g.shape[1]) if c is None else c for c in hard]), nearest(hard)


def test_cluster_labels_match_the_hand_computed_centroids():
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal([4, 0, 0], 0.5, (6, 3)), rng.normal([0, 4, 0], 0.5, (6, 3)),
                          rng.normal([0, 0, 4], 0.5, (6, 3))])
    probs = rng.dirichlet(np.ones(4), 18)
    probs[np.arange(18), np.repeat([0, 1, 2], 6)] += 2.0  # mostly right, never certain; class 3 never on top
    probs /= probs.sum(1, keepdims=True)
    centroids, labels = cluster_labels(torch.tensor(features, dtype=torch.float64), torch.tensor(probs))
    want_c, want_y = _by_hand(features, probs)
    assert labels.tolist() == want_y.tolist()
    assert np.allclose(centroids.numpy(), want_c)


def test_a_class_the_classifier_never_predicts_gets_no_sample():
    # two tight clusters; class 2 holds some probability everywhere but is nobody's prediction. Its soft
    # centroid (weighted by that probability) sits nearest the samples between the clusters, which would
    # take it were it a candidate
    features = torch.tensor([[5.0, 0], [5.1, 0.1], [0, 5.0], [0.1, 5.1], [2.6, 2.4], [2.4, 2.6]])
    probs = torch.tensor([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3], [0.1, 0.6, 0.3], [0.1, 0.6, 0.3],
                          [0.36, 0.33, 0.31], [0.33, 0.36, 0.31]])
    probs[4:, 2] = 0.31
    g = torch.nn.functional.normalize(torch.cat([features, torch.ones(6, 1)], 1), dim=1)
    soft = probs.T @ g / probs.sum(0)[:, None]
    assert (g[4:] @ torch.nn.functional.normalize(soft, dim=1).T).argmax(1).tolist() == [2, 2]  # unmasked: class 2
    _, labels = cluster_labels(features, probs)
    assert 2 not in labels.tolist() and labels[:4].tolist() == [0, 0, 1, 1]


def test_the_clusters_correct_a_classifier_that_is_wrong_on_a_minority():
    features = torch.tensor([[5.0, 0], [5.2, 0.1], [4.9, -0.2], [5.1, 0.2], [0, 5.0], [0.1, 5.1], [-0.1, 4.8]])
    right = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    probs = torch.nn.functional.one_hot(right, 2).float() * 0.8 + 0.1
    probs[3] = torch.tensor([0.45, 0.55])  # the classifier's mistake, inside class 0's cluster
    assert probs.argmax(1).tolist() != right.tolist()
    _, labels = cluster_labels(features, probs)
    assert labels.tolist() == right.tolist()
    with pytest.raises(ConfigError, match="same n > 0"):
        cluster_labels(features, probs[:3])


def _fit(task: TransferTask, init: str, **cfg):
    return Trainer(get_method("shot"), TrainConfig(**{**CFG, **cfg}, init_from=init)).fit(task)


def test_only_the_features_learn_and_no_source_sample_is_read(tmp_path):
    task = toy_task(shift=1.5)
    _, start = run("source-only", task, TrainConfig(**CFG), out=tmp_path / "source")
    init = str(tmp_path / "source" / "model.pt")
    fit = _fit(task, init)
    before, after = start.model.state_dict(), fit.model.state_dict()
    head = [k for k in after if k.startswith("groups.logits")]
    body = [k for k in after if k.startswith("groups.") and k not in head and k.endswith("weight")]
    assert head and body
    assert all(torch.equal(before[k], after[k]) for k in head)  # the source hypothesis stays fixed
    assert any(not torch.equal(before[k], after[k]) for k in body)
    # the same run with the source inputs replaced by noise: not one weight differs
    rng = np.random.default_rng(1)
    noisy = replace(task, source=task.source.replace(X=rng.normal(0, 9, task.source.X.shape)))
    other = _fit(noisy, init)
    assert all(torch.equal(a, b) for a, b in zip(after.values(), other.model.state_dict().values()))


def test_information_maximisation_makes_predictions_confident_and_keeps_them_diverse(tmp_path):
    task = toy_task(shift=1.5)
    run("source-only", task, TrainConfig(**CFG), out=tmp_path / "source")
    hist = _fit(task, str(tmp_path / "source" / "model.pt"), epochs=6).history
    assert hist[-1]["ent"] < 0.7 * hist[0]["ent"]
    assert hist[-1]["div"] < -0.9 * np.log(3)  # H(mean prediction) stays near log K: no collapse onto a class
    assert hist[-1]["clusters"] == 3


def test_shot_im_gives_no_pseudo_labels():
    res, _ = run("shot", toy_task(shift=1.0), TrainConfig(**CFG), trade_off=0.0)
    assert all("pseudo" not in h and "agree" not in h and "ent" in h for h in res.history)


def test_shot_resumes_mid_epoch_to_identical_weights(tmp_path):
    task = toy_task(shift=2.0)
    cfg = TrainConfig(**CFG, checkpoint_every=5)
    whole = Trainer(get_method("shot"), cfg).fit(task)
    _interrupt_after(Trainer(get_method("shot"), TrainConfig(**CFG, checkpoint_every=5, checkpoint_dir=str(tmp_path))),
                     task, steps=15)  # mid-epoch: the epoch's labeller comes back from the checkpoint
    resumed = Trainer(get_method("shot"), TrainConfig(**CFG, checkpoint_every=5, checkpoint_dir=str(tmp_path))).fit(task)
    for (k, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    # the labeller and the memory too (the labels of the steps after the resume came from them)
    for (k, a), (_, b) in zip(whole.method.state_dict().items(), resumed.method.state_dict().items()):
        assert torch.equal(a, b), k
    assert [h["agree"] for h in whole.history] == [h["agree"] for h in resumed.history]


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="pretrain must be"):
        get_method("shot", pretrain="oracle")
    with pytest.raises(ConfigError, match="memory"):
        get_method("shot", memory=0)


def test_a_run_without_a_model_trains_its_pretrain_stage_first(tmp_path):
    result, _ = run("shot", toy_task(shift=1.0), TrainConfig(**CFG), out=tmp_path, pretrain="dann")
    stages = sorted(p.name for p in (tmp_path / "stages").iterdir())
    assert stages == ["00-source"] and (tmp_path / "stages" / "00-source" / "result.json").exists()
    assert '"method": "dann"' in (tmp_path / "stages" / "00-source" / "result.json").read_text()
    assert result.method == "shot"


@pytest.mark.parametrize("rounds", [-1, 1.5, True])
def test_cluster_labels_names_a_bad_number_of_rounds(rounds):
    from qianyi.errors import ConfigError

    with pytest.raises(ConfigError, match=f"rounds must be a whole number >= 0.*got {rounds!r}"):
        cluster_labels(torch.randn(10, 4), torch.softmax(torch.randn(10, 3), 1), rounds=rounds)

"""Target labels choose nothing: every method that does not declare ``uses_target_labels`` trains the same
network, makes the same label-free choices and reports the same label-free scores when the target labels
(train and test split) are replaced by others drawn at random. Only the accuracies scored on target labels differ.

A property test of the project's first rule, end to end (data -> engine -> selection -> result), for every
registered method, every validator as the choice of epoch, staged runs and ``select_hparams``. (``bench``'s
label-free column is computed from the histories compared here; the scikit-learn path never receives target
labels: its target rows carry the ``unlabelled`` marker.)"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import qianyi
from qianyi.data.domain import Domain, TransferTask
from qianyi.methods.registry import available_methods, get_method
from qianyi.select.validators import available_validators
from qianyi.train import TrainConfig
from qianyi.train.run import run

from .conftest import toy_task
from .test_generative import image_task

pytestmark = pytest.mark.filterwarnings("ignore::qianyi.errors.QianyiWarning")  # tiny runs: flagged games expected
FAST = dict(epochs=3, steps_per_epoch=3, batch_size=16, progress=False)
#: result fields scored on target labels (everything else must not move)
SCORED = {"target_accuracy", "target_report", "train_seconds", "model_sha256", "versions",
           "fingerprint"}  # the data hash covers the labels scored
METHODS = sorted(available_methods())
DEEP = [m for m in METHODS if not available_methods()[m].uses_target_labels
        and not getattr(available_methods()[m], "shallow", False) and m not in ("cycada", "discogan")]
SHALLOW = [m for m in METHODS if getattr(available_methods()[m], "shallow", False)]


def relabelled(task: TransferTask, classes: int) -> TransferTask:
    """The same task with other target labels (train and test split), drawn at random: every class present, in
    other numbers, on other samples. Not a renaming of the classes (y + 1 mod k was one): a use of which samples
    share a class, or of how many each class has, shows too (a validator choosing by NMI with the true labels
    passed the renaming)."""
    rng = np.random.default_rng(12345)

    def move(d: Domain | None) -> Domain | None:
        return d if d is None or d.y is None else d.replace(
            y=rng.permutation(np.r_[np.arange(classes), rng.integers(0, classes, len(d) - classes)]))
    return replace(task, target=move(task.target), target_test=move(task.target_test))


def _history(res) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith("oracle") and k != "seconds"} for row in res.history]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_blind(method: str, task: TransferTask, classes: int, config: TrainConfig, **kw) -> None:
    a, fa = run(method, task, config, track_target_test=True, **kw)
    b, fb = run(method, relabelled(task, classes), config, track_target_test=True, **kw)
    sa, sb = _state(fa.model), _state(fb.model)
    assert sa.keys() == sb.keys()
    moved = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not moved, f"{method}: target labels changed the trained weights {moved[:3]}"
    assert _history(a) == _history(b), f"{method}: target labels changed the training history"
    assert (a.selected_epoch, a.selection, a.scores, a.flags) == (b.selected_epoch, b.selection, b.scores, b.flags)
    for name in set(vars(a)) - SCORED - {"history", "staged", "config"}:
        assert getattr(a, name) == getattr(b, name), f"{method}: target labels changed {name}"
    # a staged run without out= starts from a stage in a temporary folder of its own
    unplaced = [{**r.config, "init_from": str(r.config.get("init_from")).split("stages")[-1]} for r in (a, b)]
    assert unplaced[0] == unplaced[1], f"{method}: target labels changed the config"
    untimed = [[{k: v for k, v in st.items() if k != "train_seconds"} for st in r.staged.get("stages", [])]
               for r in (a, b)]
    assert untimed[0] == untimed[1], f"{method}: target labels changed a stage"
    # the labels did reach the scoring (else this test could not tell anything apart)
    assert a.target_accuracy != b.target_accuracy or a.target_report != b.target_report


@pytest.mark.parametrize("method", DEEP)
def test_deep_methods_are_blind_to_target_labels(method):
    assert_blind(method, toy_task(), 3, TrainConfig(**FAST, select="dev", validators=tuple(available_validators())))


@pytest.mark.parametrize("validator", sorted(available_validators()))
def test_every_validator_chooses_the_epoch_without_target_labels(validator):
    assert_blind("dann", toy_task(seed=1), 3, TrainConfig(**FAST, select=validator))


@pytest.mark.parametrize("method", SHALLOW)
def test_shallow_methods_are_blind_to_target_labels(method):
    task = toy_task(n=90)
    a, fa = run(method, task, TrainConfig(progress=False))
    b, fb = run(method, relabelled(task, 3), TrainConfig(progress=False))
    x = torch.as_tensor(task.target.X, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(fa.model(x), fb.model(x)), f"{method}: target labels changed the predictions"
    assert a.scores == b.scores and a.target_accuracy != b.target_accuracy


def test_cycada_is_blind_to_target_labels():
    assert_blind("cycada", image_task(), 3, TrainConfig(**FAST), width=4, disc_width=4)


def test_staged_runs_are_blind_to_target_labels():
    """self-train without a starting model trains a source stage first, then adapts (run_via)."""
    assert_blind("self-train", toy_task(seed=2), 3, TrainConfig(**FAST))


def test_label_free_selection_of_settings_is_blind_to_target_labels(tmp_path, monkeypatch):
    """select_hparams ranks candidates by a validator; the target labels it holds (shown only as ORACLE)
    must not move the ranking."""
    from qianyi.bench import selection

    grid = [{"trade_off": 0.1}, {"trade_off": 1.0}, {"trade_off": 3.0}]
    made = []
    real = selection.load_task

    def loader(*args, **kw):
        task = real(*args, **kw)
        return relabelled(task, 10) if made else task
    monkeypatch.setattr(selection, "load_task", loader)
    cfg = TrainConfig(epochs=2, steps_per_epoch=15, batch_size=32, progress=False)
    for k in range(2):
        res = selection.select_hparams("dann", ["digits->digits+rot30@200"], validator="snd", grid=grid,
                                       out=tmp_path / str(k), config=cfg, log=None)
        made.append(res)
    a, b = made
    assert a.chosen == b.chosen and np.array_equal(a.scores, b.scores) and np.array_equal(a.mean_rank, b.mean_rank)
    assert not np.array_equal(a.target_accuracy, b.target_accuracy)


def test_method_declaring_target_labels_does_see_them():
    """The converse, so that the tests above can fail: the oracle's weights do move with the target labels."""
    task = toy_task()
    _, fa = run("oracle", task, TrainConfig(**FAST))
    _, fb = run("oracle", relabelled(task, 3), TrainConfig(**FAST))
    assert any(not torch.equal(x, y) for x, y in zip(_state(fa.model).values(), _state(fb.model).values()))
    assert get_method("oracle").uses_target_labels and qianyi.get_method("dann").uses_target_labels is False

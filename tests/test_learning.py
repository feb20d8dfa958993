"""Every adaptation method learns: on a small toy shift its target accuracy beats source-only and the
quantity it adapts by moves the way its paper says (replaces smoke tests that only checked 0 <= acc <= 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qianyi.methods import Batch
from qianyi.train import TrainConfig, run

from .conftest import toy_task

#: The optimiser the methods' default settings were chosen with (images' SGD 0.01), pinned: on these toy
#: vectors the data's default would be Adam (docs/vectors.md), under which MCD and DSN do not beat
#: source-only here (a known limitation, docs/methods.md).
CFG = dict(epochs=5, steps_per_epoch=20, batch_size=32, optimizer="sgd", lr=0.01, progress=False)
SEEDS = (0, 1)
#: Discrepancy methods: their own (unweighted) distance term, computed on fixed data, must be smaller
#: for their trained network than for the source-only network.
DISTANCE_TERM = {"ddc": "mmd", "dan": "mmd", "jan": "jmmd", "coral": "coral", "dsan": "lmmd"}
#: Methods that adapt through a game or a teacher: a logged quantity that must fall (or rise) over training.
TRAINING_SIGNAL = {"mcd": ("disc_c", "falls"), "drcn": ("recon", "falls"), "dsn": ("similarity", "falls"),
                   "mean-teacher": ("confident", "rises")}
#: Adversarial methods whose alignment is checked where it is defined (the reversed gradient, the GAN
#: game: test_methods.py, test_adversarial.py, test_loss_terms.py); here they must learn. On this toy task
#: forwarding target batches alone lifts them (batch statistics: with the adversarial term zeroed CDAN, MDD
#: and ADDA still pass), so only DANN's gain is checked to come from its game (test below).
ADVERSARIAL = ["dann", "cdan", "cdan+e", "mdd", "adda"]
ALL = [*DISTANCE_TERM, *ADVERSARIAL, *TRAINING_SIGNAL]


def _task(seed: int):
    return toy_task(n=400, shift=3.0, seed=seed)  # source-only reaches ~70-80% on the target


@pytest.fixture(scope="module")
def source_only():
    return {s: run("source-only", _task(s), TrainConfig(**CFG, seed=s)) for s in SEEDS}


def _distance(name: str, method, model, task) -> float:
    """The method's own alignment term, without its weight, on the source-val and target-train sets."""
    model.eval()
    with torch.no_grad():
        out_s, out_t = model(torch.as_tensor(task.source_val.X)), model(torch.as_tensor(task.target.X))
        terms = method.loss(Batch(out_s, out_t, torch.as_tensor(task.source_val.y), None, 1.0))
    return float(terms[DISTANCE_TERM[name]]) / (method.trade_off * Batch(None, None, None, None, 1.0).ramp
                                                if name in ("dan", "jan", "dsan") else method.trade_off)


@pytest.mark.parametrize("name", ALL)
def test_method_beats_source_only_and_adapts(name, source_only):
    accs, so_accs = [], []
    for s in SEEDS:
        res, fit = run(name, _task(s), TrainConfig(**CFG, seed=s))
        accs.append(res.target_accuracy)
        so_res, so_fit = source_only[s]
        so_accs.append(so_res.target_accuracy)
        if name in DISTANCE_TERM:
            m = fit.method
            assert _distance(name, m, fit.model, _task(s)) < _distance(name, m, so_fit.model, _task(s)), s
        elif name in TRAINING_SIGNAL:
            key, way = TRAINING_SIGNAL[name]
            first, last = res.history[0][key], res.history[-1][key]
            assert (last < first) if way == "falls" else (last > first), (s, first, last)
    # DANN's alignment is checked where it is defined: the reversed gradient (test_methods.py)
    assert np.mean(accs) > np.mean(so_accs) + 0.05, (accs, so_accs)


def test_danns_gain_comes_from_its_game():
    """DANN against itself with the domain term off (trade_off=0): measured 93.8% against 87.5% over the two
    seeds; with the term zeroed in the code the method test above still passed."""
    on = [run("dann", _task(s), TrainConfig(**CFG, seed=s))[0].target_accuracy for s in SEEDS]
    off = [run("dann", _task(s), TrainConfig(**CFG, seed=s), trade_off=0.0)[0].target_accuracy for s in SEEDS]
    assert np.mean(on) > np.mean(off) + 0.03, (on, off)

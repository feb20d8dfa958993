"""Fine-tuning strategies on the engine: init from a saved model, freeze, lower lr, L2-SP."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qianyi.data.domain import Domain, TransferTask
from qianyi.errors import ConfigError, DataError
from qianyi.train import TrainConfig, run

from .conftest import toy_task

FAST = dict(epochs=1, steps_per_epoch=25, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("src")
    run("source-only", toy_task(), TrainConfig(**FAST), out=out)
    return out / "model.pt"


def test_init_copies_first_k_groups_and_freeze_keeps_them_fixed(saved):
    start = torch.load(saved, weights_only=True)
    _, fit = run("dan", toy_task(seed=1), TrainConfig(**FAST, init_from=str(saved), init_layers=1, freeze=1))
    end = fit.model.state_dict()
    fc1 = [k for k in start if k.startswith("groups.fc1.")]
    assert fc1 and all(torch.equal(start[k], end[k]) for k in fc1)  # weights and BN statistics unchanged
    fc2 = [k for k in start if k.startswith("groups.fc2.") and k.endswith("weight")]
    assert all(not torch.equal(start[k], end[k]) for k in fc2)


@pytest.mark.parametrize("method", ["att", "cbst", "mean-teacher", "adda"])  # evaluated mid-step; a teacher; M_t
def test_frozen_groups_keep_their_batch_norm_statistics_in_every_method(saved, method):
    # att's labelling pass (evaluating(ctx.model)) switched the whole network back to train mode afterwards, and
    # mean teacher's teacher (the network it returns) ran its frozen groups in train mode: their running
    # statistics moved
    start = torch.load(saved, weights_only=True)
    _, fit = run(method, toy_task(seed=1), TrainConfig(**{**FAST, "steps_per_epoch": 6}, init_from=str(saved),
                                                       freeze=1))
    end = fit.model.state_dict()
    frozen = [k for k in start if k.startswith("groups.fc1.")]
    assert any("running_mean" in k for k in frozen)
    assert [k for k in frozen if not torch.equal(start[k], end[k])] == []


def test_unfrozen_copied_layers_move_and_l2sp_pulls_them_back(saved):
    start = torch.load(saved, weights_only=True)
    key = "groups.fc1.1.weight"  # fc1 = Flatten, Linear, BatchNorm, ReLU, Dropout

    def drift(**kw):
        _, fit = run("source-only", toy_task(seed=2, shift=3.0), TrainConfig(**FAST, init_from=str(saved), **kw))
        return (fit.model.state_dict()[key] - start[key]).norm().item()
    free, pulled, slow = drift(), drift(l2sp=50.0), drift(copied_lr_mult=0.1)
    assert free > 0 and pulled < 0.5 * free and slow < 0.5 * free


def test_init_layers_equal_to_the_number_of_groups_copies_every_group(tmp_path):
    """Review mutation2 #13 (WT2): '>' -> '>=' refused init_layers = the number of groups, the whole network."""
    from qianyi.nn.resnet import named_backbone
    from qianyi.train.weights import load_initial_weights

    torch.manual_seed(0)
    src = named_backbone("lenet", (1, 28, 28), 10)
    torch.save(src.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(1)
    net = named_backbone("lenet", (1, 28, 28), 10)
    groups = list(net.group_names)
    assert load_initial_weights(net, tmp_path / "model.pt", layers=len(groups)) == groups
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in src.state_dict().items())
    with pytest.raises(DataError, match=f"init_layers={len(groups) + 1} but the network has only {len(groups)} "):
        load_initial_weights(net, tmp_path / "model.pt", layers=len(groups) + 1)


def test_bad_fine_tuning_settings_are_named(saved, tmp_path):
    with pytest.raises(DataError, match="only 3 layer groups"):
        run("source-only", toy_task(), TrainConfig(**FAST, freeze=9))
    with pytest.raises(DataError, match="freezes every layer group"):  # dann trained its discriminator alone
        run("dann", toy_task(), TrainConfig(**FAST, init_from=str(saved), freeze=3))
    with pytest.raises(DataError, match="init_layers=9 but the network has only 3 layer groups"):  # was: all copied
        run("source-only", toy_task(), TrainConfig(**FAST, init_from=str(saved), init_layers=9))
    with pytest.raises(DataError, match="does not exist"):
        run("source-only", toy_task(), TrainConfig(**FAST, init_from=str(tmp_path / "nope.pt")))
    with pytest.raises(DataError, match="shape"):
        run("source-only", toy_task(d=9), TrainConfig(**FAST, init_from=str(saved)))
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig(l2sp=1.0)


def test_l2sp_replaces_weight_decay_on_the_copied_layers(saved):
    # Li et al. (ICML 2018): alpha/2 ||w - w0||^2 on the copied weights, beta/2 ||w||^2 on the new ones only;
    # weight decay on the copied layers too would pull them to 0 as well as to w0
    start = torch.load(saved, weights_only=True)
    key = "groups.fc1.1.weight"

    def shrink(**kw):
        _, fit = run("source-only", toy_task(seed=2), TrainConfig(**FAST, init_from=str(saved), optimizer="sgd", lr=0.01,
                                                                 weight_decay=5.0, **kw))
        return (fit.model.state_dict()[key].norm() / start[key].norm()).item()
    assert shrink() < 0.6  # plain weight decay shrinks the copied layer
    assert shrink(l2sp=1e-9) > 0.8  # with L2-SP it only regularises towards w0 (here almost not at all)


def test_l2sp_leaves_weight_decay_on_a_methods_own_copies(saved):
    # ADDA's target encoder is a copy of the backbone's groups with its own parameters, not anchored by L2-SP:
    # it keeps weight decay (the anchored backbone groups alone lose it)
    from qianyi.methods import get_method
    from qianyi.train import Trainer
    from qianyi.train.engine import TrainData

    task = toy_task(seed=1)
    trainer = Trainer(get_method("adda"), TrainConfig(**FAST, init_from=str(saved), l2sp=0.01).for_task(task))
    parts = trainer._build(TrainData.from_task(task), task.n_classes)
    anchored = {id(p) for p, _ in parts.anchors}
    groups = [g for opt in parts.optimizers.values() for g in opt.param_groups]
    assert anchored and all(g["weight_decay"] == 0.0 for g in groups if all(id(p) in anchored for p in g["params"]))
    target = [g for g in parts.optimizers["target"].param_groups]
    assert target and all(g["weight_decay"] > 0 for g in target)


def test_copied_groups_keep_the_backbones_own_learning_rate_multipliers(saved):
    # --init-from gave every copied group --copied-lr-mult (1.0) in place of the backbone's own (a pretrained
    # ResNet's 0.1): each --via / self-train stage trained the pretrained layers at 10x the documented rate
    from qianyi.methods import get_method
    from qianyi.nn.backbones import backbone_for
    from qianyi.train.engine import Trainer, TrainData

    def factory(shape, n):
        net = backbone_for(shape, n)
        net.lr_mults = {"fc1": 0.1}
        return net
    task = toy_task()
    mults = {}
    for init, copied in ((None, 1.0), (str(saved), 1.0), (str(saved), 0.5)):
        tr = Trainer(get_method("source-only"), TrainConfig(**FAST, init_from=init, copied_lr_mult=copied), factory)
        tr.config = tr.base_config.for_task(task)
        parts = tr._build(TrainData.from_task(task), task.n_classes)
        groups = next(iter(parts.optimizers.values())).param_groups
        mults[(init is not None, copied)] = [g["lr_mult"] for g in groups]
    assert mults[(False, 1.0)] == mults[(True, 1.0)] == [0.1, 1.0, 1.0]
    assert mults[(True, 0.5)] == [0.05, 0.5, 0.5]


def test_settings_that_would_freeze_random_layers_or_act_on_nothing_are_refused(saved):
    with pytest.raises(ConfigError, match="fixed at their random initialisation"):
        TrainConfig(init_from=str(saved), init_layers=1, freeze=2)
    with pytest.raises(ConfigError, match="copies no layer"):
        TrainConfig(init_from=str(saved), init_layers=0, l2sp=0.1)
    with pytest.raises(ConfigError, match="copies no layer"):
        TrainConfig(init_from=str(saved), init_layers=0, copied_lr_mult=0.1)
    TrainConfig(init_from=str(saved), init_layers=2, freeze=2)  # the copied groups: fine


def test_a_methods_fresh_copies_train_whatever_freeze_froze(saved):
    # DSN's private encoders and MULT's source head copy backbone groups --freeze froze: they stayed random
    from qianyi.methods import get_method
    from qianyi.methods.reconstruction import encoder_copy
    from qianyi.nn.resnet import NamedBackbone

    _, fit = run("dsn", toy_task(seed=1), TrainConfig(**FAST, init_from=str(saved), freeze=1))
    enc = fit.method.private_source
    assert all(p.requires_grad for p in enc.parameters())
    # the linear code of a private encoder: on ResNet the bottleneck ends in ReLU, Dropout (both dropped now)
    net = NamedBackbone("resnet18")((3, 32, 32), 10)
    assert not isinstance(list(encoder_copy(net).children())[-1][-1], (torch.nn.ReLU, torch.nn.Dropout))
    # MULT's source head (a fresh copy above fc1) trains too
    m = get_method("mult", shared="fc1")
    _, fit = run(m, toy_task(seed=1), TrainConfig(**FAST, init_from=str(saved), freeze=1))
    assert all(p.requires_grad for p in fit.method.source_head.parameters())


def test_a_finished_runs_checkpoint_is_refused_for_its_model_and_an_unfinished_one_is_said(tmp_path):
    # --init-from DIR/checkpoint.pt copied the network at the last step: with --select, or a teacher method, not the
    # model the run reported and saved
    import shutil

    from qianyi.errors import QianyiWarning

    task = toy_task()
    run("mean-teacher", task, TrainConfig(epochs=1, steps_per_epoch=2, progress=False, keep_checkpoint=True),
        out=tmp_path / "r")
    with pytest.raises(DataError, match="checkpoint of a run that saved its model: give .*model.pt"):
        run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=1, progress=False,
                                             init_from=str(tmp_path / "r" / "checkpoint.pt")))
    (tmp_path / "u").mkdir()
    shutil.copy(tmp_path / "r" / "checkpoint.pt", tmp_path / "u" / "checkpoint.pt")  # no model.pt: unfinished
    with pytest.warns(QianyiWarning, match="unfinished run's checkpoint: its network as trained at step 2"):
        run("source-only", task, TrainConfig(epochs=1, steps_per_epoch=1, progress=False,
                                             init_from=str(tmp_path / "u" / "checkpoint.pt")))


def test_a_starting_model_that_saw_the_targets_labels_is_refused(saved, tmp_path):
    # --init-from read only the weights: a model trained on this target's labels (the reverse pair's source-only, or
    # an oracle) started the run, which still reported "no target labels"
    import shutil

    task = toy_task()  # toy-s -> toy-t; `saved` was trained on toy-s's labels
    back = TransferTask.from_domains(Domain(task.target.X, task.target.y, "toy-t"),
                                     Domain(task.source.X, task.source.y, "toy-s"))
    with pytest.raises(ConfigError, match=r"trained by source-only on 'toy-s' -> 'toy-t' \(model.json beside it\): "
                                          r"on the labels of 'toy-s' \(this run's target\).*; the run toy-t->toy-s"):
        run("dann", back, TrainConfig(**FAST, init_from=str(saved)))
    run("oracle", task, TrainConfig(**FAST), out=tmp_path / "orc")
    with pytest.raises(ConfigError, match="trained by oracle on 'toy-s' -> 'toy-t'.*a method that trains on target "
                                          "labels"):
        run("dann", toy_task(seed=1), TrainConfig(**FAST, init_from=str(tmp_path / "orc" / "model.pt")))
    # a labelled source drawn from the target's pool (another split of it) is the target's labels too
    rng = np.random.default_rng(0)
    pool = [Domain(rng.normal(size=(120, 6)), rng.integers(0, 3, 120), name, origin="pool") for name in "ab"]
    run("source-only", TransferTask.from_domains(*pool), TrainConfig(**FAST), out=tmp_path / "pool")
    other = TransferTask.from_domains(Domain(rng.normal(size=(120, 6)), rng.integers(0, 3, 120), "c"), pool[1])
    with pytest.raises(ConfigError, match=r"on the labels of 'a' \(data 'pool', the pool of this run's target"):
        run("dann", other, TrainConfig(**FAST, init_from=str(tmp_path / "pool" / "model.pt")))
    # its own source data (the same pool split the same way) is fine: the staged runs' and the usual workflow
    run("dann", TransferTask.from_domains(*pool), TrainConfig(**FAST, init_from=str(tmp_path / "pool" / "model.pt")))
    # a --via chain: its first stage adapts to the via domain, its last starts from a stage model: checked at the start
    from qianyi.train.transitive import run_via

    via = Domain(rng.normal(size=(60, 6)), None, "v")
    with pytest.raises(ConfigError, match=r"on the labels of 'toy-s' \(this run's target\)"):
        run_via("dann", back, [via], TrainConfig(**FAST, init_from=str(saved)))
    # nothing describes a hand-copied state dict: taken as it is (as before)
    shutil.copy(saved, tmp_path / "weights.pt")
    run("dann", back, TrainConfig(**FAST, init_from=str(tmp_path / "weights.pt")))


def test_the_starting_models_provenance_is_recorded_and_keys_only_by_its_content(saved):
    from qianyi.methods import get_method
    from qianyi.train.run import run_fingerprint

    res, _ = run("dann", toy_task(seed=1), TrainConfig(**FAST, init_from=str(saved)))
    assert res.config["init_from_method"] == "source-only" and res.config["init_from_source"] == "toy-s"
    assert len(res.config["init_from_sha256"]) == 64 and res.config["init_from"] == str(saved)
    assert res.fingerprint["config"]["init_from"] == "sha256:" + res.config["init_from_sha256"]
    assert not [k for k in res.fingerprint["config"] if k.startswith("init_from_")]  # stored runs keep their keys
    plain = run_fingerprint(get_method("dann"), TrainConfig(**FAST), toy_task(seed=1))["config"]
    assert not [k for k in plain if k.startswith("init_from_")] and TrainConfig(**FAST).fingerprint()["init_from"] is None


def test_bench_and_select_refuse_a_pair_whose_target_the_starting_model_was_trained_on(tmp_path):
    # one --init-from for a pair and its reverse: the reverse pair started from a model trained on its target's labels
    import qianyi
    from qianyi.bench import bench
    from qianyi.bench.selection import select_hparams

    pairs = ["digits->mnist", "mnist->digits"]  # (a one-pool pair's reverse trains on the other half: warned only)
    run("source-only", qianyi.load_task("digits", "mnist", max_samples=100),
        TrainConfig(epochs=1, steps_per_epoch=2, progress=False), out=tmp_path / "src")
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, progress=False, init_from=str(tmp_path / "src" / "model.pt"))
    with pytest.raises(ConfigError, match=r"on the labels of 'digits' \(this run's target\).*; the run mnist->digits"):
        bench(["dann"], pairs, seeds=1, out=tmp_path / "b", config=cfg, max_samples=100, log=None, embed=False)
    with pytest.raises(ConfigError, match=r"the run mnist->digits would start"):
        select_hparams("dann", pairs, validator="source-val", out=tmp_path / "s", config=cfg, max_samples=100,
                       log=None)
    assert not list(tmp_path.glob("[bs]/runs/*"))  # refused before anything trained (the first pair's runs too)


def test_a_starting_model_of_this_tasks_labelled_half_is_taken_and_of_the_targets_pool_refused(tmp_path):
    """(reviews diff9, diff10) Taken: a model of this very one-pool task made with another --val-fraction (advise's own
    printed command), one from before model.json recorded its data, one whose spec spells the target's name but whose
    recorded file is another. Refused: a model of the whole pool (digits -> mnist) for a half of it (digits ->
    digits+rot30), another split of the pool (the reverse pair, another --split-seed), an overlapping rotmnist range.
    A rotmnist class subset's origin crashed the pool comparison."""
    import json as _json
    import qianyi
    from qianyi.data.tasks import origins_overlap
    from qianyi.train.weights import check_starting_model

    assert not origins_overlap("rotmnist:0-30[2, 3]", "rotmnist:0-30[5, 6]")  # (was a ValueError)
    assert origins_overlap("rotmnist:0-30[2, 3]", "rotmnist:20-40[2, 3]")
    one = qianyi.load_task("digits", "digits+rot30", max_samples=100)
    run("source-only", qianyi.load_task("digits", "digits+rot30", max_samples=100, val_fraction=0.5),
        TrainConfig(**FAST), out=tmp_path / "m")
    model = tmp_path / "m" / "model.pt"
    check_starting_model(model, one)  # another val split of the same labelled half
    for task in (qianyi.load_task("digits+rot30", "digits", max_samples=100),
                 qianyi.load_task("digits", "digits+rot30", max_samples=100, split_seed=1)):
        with pytest.raises(ConfigError, match="hold \\(or may hold\\) this target's samples"):
            check_starting_model(model, task)
    meta = tmp_path / "m" / "model.json"
    old = {k: v for k, v in _json.loads(meta.read_text()).items() if k not in ("source_origin", "source_data")}
    meta.write_text(_json.dumps(old))  # as an earlier version wrote it: its pair decides
    check_starting_model(model, one)
    with pytest.raises(ConfigError, match="this run's target"):  # its source is the reverse pair's target
        check_starting_model(model, qianyi.load_task("digits+rot30", "digits", max_samples=100))
    meta.write_text(_json.dumps({**old, "target": "mnist"}))  # a model of all of digits
    with pytest.raises(ConfigError, match="this run's target's pool"):
        check_starting_model(model, one)
    meta.write_text(_json.dumps({**old, "source": "rotmnist?angles=0-30", "source_origin": "rotmnist:0-30"}))
    rot = TransferTask.from_domains(Domain(np.zeros((40, 6)), np.arange(40) % 3, "s", origin="/here/s"),
                                    Domain(np.ones((40, 6)), np.arange(40) % 3, "rotmnist?angles=10-20",
                                           origin="rotmnist:10-20"))
    with pytest.raises(ConfigError, match="rotmnist:0-30"):
        check_starting_model(model, rot)
    # a spec that names the target but, as recorded, another file: taken; the same file: refused
    rng = np.random.default_rng(0)
    src, tgt = (Domain(rng.normal(size=(80, 6)), rng.integers(0, 3, 80), name, origin=origin)
                for name, origin in (("s", "/here/s.csv"), ("csv:data.csv", "/here/data.csv")))
    meta.write_text(_json.dumps({**old, "source": "csv:data.csv", "source_origin": "/elsewhere/data.csv"}))
    check_starting_model(model, TransferTask.from_domains(src, tgt))
    meta.write_text(_json.dumps({**old, "source": "csv:data.csv", "source_origin": "/here/data.csv"}))
    with pytest.raises(ConfigError, match="this run's target"):
        check_starting_model(model, TransferTask.from_domains(src, tgt))


def test_row_filters_of_one_csv_share_a_pool_unless_provably_disjoint():
    """(review diff11) A model of `where_not=month:may` holds every July row: it was taken for a July target."""
    from qianyi.train.weights import _pools_share

    assert _pools_share("/d/b.csv?where_not=month:may", "/d/b.csv?where=month:jul")
    assert _pools_share("/d/b.csv", "/d/b.csv?where=month:jul")  # the whole file holds every filter of it
    assert not _pools_share("/d/b.csv?where=month:jun", "/d/b.csv?where=month:jul")
    assert not _pools_share("/d/b.csv?where=month:jun", "/d/other.csv?where=month:jun")

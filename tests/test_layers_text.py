"""Mou et al.'s E/H/O experiment (qianyi.measure.layers_text, `qianyi layers`) and the MULT method, on tiny
synthetic text: splits, frozen / fresh / copied groups, MULT's loss, the table, resume, and a case where
transfer must help."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import qianyi
from qianyi.cli import main
from qianyi.data import load_task
from qianyi.errors import ConfigError, DataError
from qianyi.measure import layers_text as lt
from qianyi.measure.layers_text import SOURCE_AS_IS
from qianyi.methods.base import Batch
from qianyi.methods.registry import get_method
from qianyi.nn.text import TextEncoder

FAST = qianyi.TrainConfig(epochs=5, steps_per_epoch=20, batch_size=16, lr=0.01, progress=False)
POS = [f"pos{i}" for i in range(30)]
NEG = [f"neg{i}" for i in range(30)]


def _write(root, n: int, seed: int) -> str:
    """A sentiment task of many rare cue words: each text holds one of 30 positive or 30 negative words among
    filler; a handful of labelled texts sees only a few cue words, a source of hundreds sees them all."""
    rng = np.random.default_rng(seed)
    filler = [f"f{i}" for i in range(30)]
    root.mkdir()
    for cls, cues in (("negative", NEG), ("positive", POS)):
        lines = []
        for _ in range(n):
            words = list(rng.choice(filler, 6)) + [str(rng.choice(cues))]
            rng.shuffle(words)
            lines.append(" ".join(words))
        (root / f"{cls}.txt").write_text("\n".join(lines) + "\n")
    return f"lines:{root}"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("layers")
    s, t = _write(root / "s", 150, 0), _write(root / "t", 100, 1)
    return s, t, lt.split_pair(load_task(s, t, text={"max_len": 12}), n_labels=8, n_val=30, name="toy s->t")


@pytest.fixture(scope="module")
def experiment(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("layers-out")
    return out, lt.layer_transfer([toy[2]], seeds=[0, 1], lambdas=[0.5, 0.75], config=FAST, out=out, log=None)


def test_split_pair_makes_disjoint_stratified_target_splits(toy):
    pair = toy[2]
    assert (len(pair.target_train), len(pair.target_val), len(pair.target_test)) == (8, 30, 60)
    assert len(pair.target_train) + len(pair.target_val) + len(pair.target_rest) == 140  # load_task's 70 %
    assert np.bincount(pair.target_train.y).tolist() == [4, 4] and np.bincount(pair.target_val.y).tolist() == [15, 15]
    assert pair.target_task().source is pair.target_train and pair.target_task().source_val is pair.target_val
    assert pair.target_task().target.y is None and pair.mult_task().target.y is not None
    assert pair.mult_task().source is pair.source and pair.mult_task().source_val is pair.target_val
    assert all(t.target_test is pair.target_test for t in (pair.source_task(), pair.target_task(), pair.mult_task()))
    with pytest.raises(DataError, match="labelled"):
        lt.split_pair(load_task(toy[0], toy[1], text={"max_len": 12}), n_labels=100, n_val=100)


def _net(pair):
    return TextEncoder.for_task(pair.preprocessing["text"])(pair.source.sample_shape, 2)


def test_mult_loss_is_the_stated_mixture(toy):
    pair = toy[2]
    net = _net(pair)
    xs, xt = torch.as_tensor(pair.source.X[:6]), torch.as_tensor(pair.target_train.X[:6])
    ys, yt = torch.as_tensor(pair.source.y[:6]), torch.as_tensor(pair.target_train.y[:6])
    out_s, out_t = net(xs), net(xt)
    batch = Batch(out_s, out_t, ys, yt, 0.5)
    ce_t, ce_s = F.cross_entropy(out_t.logits, yt), F.cross_entropy(out_s.logits, ys)
    m = get_method("mult", lam=0.3)
    m.setup(net, out_s)
    terms = m.loss(batch)
    assert torch.allclose(terms["target"], 0.3 * ce_t) and torch.allclose(terms["source"], 0.7 * ce_s)
    one = get_method("mult", lam=1.0)
    one.setup(net, out_s)
    assert set(one.loss(batch)) == {"target"} and torch.allclose(one.loss(batch)["target"], ce_t)  # target only
    own = get_method("mult", lam=0.5, shared="E")  # a source head of its own above E: H and logits, fresh
    own.setup(net, out_s)
    own.eval()  # (its dropout off, so that two calls agree)
    assert own.source_head is not None and not torch.allclose(own.source_logits(batch), out_s.logits)
    assert torch.allclose(own.loss(batch)["source"], 0.5 * F.cross_entropy(own.source_head(out_s["E"]), ys))
    with pytest.raises(ConfigError, match="shared"):
        get_method("mult", shared="conv9").setup(net, out_s)
    with pytest.raises(Exception, match="lam"):
        get_method("mult", lam=1.5)


def test_frozen_groups_stay_copied_groups_move_fresh_groups_differ(experiment, toy):
    out, _ = experiment
    load = lambda *p: torch.load(out.joinpath("runs", "toy_s-_t", *p, "model.pt"), weights_only=True)  # noqa: E731
    src = load("S", "seed0")
    group = lambda sd, g: {k: v for k, v in sd.items() if k.startswith(f"groups.{g}.")}  # noqa: E731
    same = lambda a, b, g: all(torch.equal(v, group(b, g)[k]) for k, v in group(a, g).items())  # noqa: E731
    e_frozen, eh_frozen, e_tuned, fresh = (load("INIT", r, "seed0") for r in ("E-frozen", "EH-frozen", "E", "fresh"))
    assert same(e_frozen, src, "E") and not same(e_frozen, src, "H") and not same(e_frozen, src, "logits")
    assert same(eh_frozen, src, "E") and same(eh_frozen, src, "H") and not same(eh_frozen, src, "logits")
    assert not same(e_tuned, src, "E")  # copied, then fine-tuned: moved
    assert not same(fresh, src, "E") and not same(fresh, src, "H")
    # INIT+MULT starts its shared groups from the S network, MULT does not: at step 0 only the former equals it
    cfg = lambda **kw: qianyi.TrainConfig(epochs=1, steps_per_epoch=1, batch_size=8, progress=False, lr=1e-12, **kw)  # noqa: E731
    pair = toy[2]
    model = out / "runs" / "toy_s-_t" / "S" / "seed0" / "model.pt"
    _, fit = qianyi.run("mult", pair.mult_task(), cfg(init_from=str(model), init_layers=2), lam=0.5, shared="H")
    assert torch.allclose(fit.backbone.groups["E"].embedding.weight, src["groups.E.embedding.weight"], atol=1e-6)
    res, fit = qianyi.run("mult", pair.mult_task(), cfg(), lam=0.5, shared="H")
    assert not torch.allclose(fit.backbone.groups["E"].embedding.weight, src["groups.E.embedding.weight"], atol=1e-3)
    # the run's source accuracy is the predicting network's on T's validation split: λ is chosen by it (the source
    # head's, scored there for a moment, made λ = 1 look like chance)
    from qianyi.nn.inference import accuracy

    assert res.source_accuracy == pytest.approx(accuracy(fit.model, pair.mult_task().source_val))


def test_table_has_the_rows_and_columns_and_one_chosen_lambda_per_cell(experiment):
    out, res = experiment
    text = (out / "layers.md").read_text()
    assert all(r.label in text for r in lt.ROWS) and all(c in text for c in lt.COLUMNS)
    assert (out / "layers.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "layers.json").read_text())
    assert data["findings"]["toy s->t"].keys() >= {"fresh", "MULT - INIT", "O copied (EHO - EH), INIT"}
    p = "toy s->t"
    for r in lt.ROWS:
        assert len(res.accuracies(p, r.key, "INIT")) == 2
        for c in ("MULT", "INIT+MULT"):
            cell = [x for x in res.runs if x["row"] == r.key and x["column"] == c]
            assert len(cell) == (0 if r.shared is None else 4)  # 2 seeds x 2 lambdas
            for seed in (0, 1):
                runs = [x for x in cell if x["seed"] == seed]
                if runs:  # the chosen lambda is the best on T's validation split, never on its test split
                    chosen = [x for x in runs if x["chosen"]]
                    assert len(chosen) == 1 and chosen[0]["val_accuracy"] == max(x["val_accuracy"] for x in runs)


def test_rerun_reuses_every_finished_run(experiment, toy, monkeypatch):
    from qianyi.measure import transferability as tr

    out, res = experiment
    monkeypatch.setattr(tr, "run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = lt.layer_transfer([toy[2]], seeds=[0, 1], lambdas=[0.5, 0.75], config=FAST, out=out, log=None)
    assert again.runs == res.runs
    # a count of seeds is seeds 0..N-1, as bench reads it (it was a TypeError: 'int' object is not iterable)
    assert lt.layer_transfer([toy[2]], seeds=2, lambdas=[0.5, 0.75], config=FAST, out=out, log=None).runs == res.runs


def test_init_beats_fresh_when_the_target_has_few_labels(experiment):
    # 8 labelled target texts see at most 8 of the 60 cue words; the S network (300 texts) has seen them all
    _, res = experiment
    p = "toy s->t"
    fresh = res.mean(p, "fresh")
    assert res.mean(p, SOURCE_AS_IS) >= 0.9, res.table()  # the S network itself solves T
    for row, column in (("E-frozen", "INIT"), ("EH-frozen", "INIT"), ("EHO", "MULT"), ("EH", "INIT+MULT")):
        assert res.mean(p, row, column) >= fresh + 0.15, (row, column, res.table())


def test_fine_tuned_copies_survive_without_weight_decay_only(experiment, toy):
    # Adam with (coupled) L2 weight decay: an embedding row that gets no gradient (a word not in the 8 labelled
    # texts) still gets wd * w, which Adam normalises to a step of about lr towards 0: fine-tuned INIT forgets
    # the S network's words (see docs/measure.md); with weight_decay=0 it keeps them and beats fresh
    out, res = experiment
    model = out / "runs" / "toy_s-_t" / "S" / "seed0" / "model.pt"
    cfg = replace(FAST, select="source-val", weight_decay=0.0)
    task = toy[2].target_task()
    kept, _ = qianyi.run("source-only", task, replace(cfg, init_from=str(model), init_layers=2))
    fresh, _ = qianyi.run("source-only", task, cfg)
    assert kept.target_accuracy >= fresh.target_accuracy + 0.15, (kept.target_accuracy, fresh.target_accuracy)
    assert kept.target_accuracy >= res.mean("toy s->t", "EH") + 0.1  # the default weight decay erased them


def test_cli_layers_runs_and_refuses_its_own_settings(toy, tmp_path, capsys):
    s, t, _ = toy
    args = ["layers", "--pairs", f"{s}->{t}", "--n-labels", "8", "--n-val", "30", "--seeds", "1", "--lambdas", "0.5",
            "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "8", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "INIT+MULT" in out and "E✓ H✓ O✓" in out and (tmp_path / "layers.md").exists()
    assert main(args[:3] + ["--freeze", "1"]) == 2
    assert main(args[:3] + ["--lambdas", "1"]) == 2


def test_layers_takes_pairs_as_bench_does_space_separated_and_commas_still_work():
    from qianyi.cli import build_parser

    args = build_parser().parse_args(["layers", "--pairs", "a->b", "c->d,e->f"])
    assert [p for arg in args.pairs for p in arg.split(",")] == ["a->b", "c->d", "e->f"]

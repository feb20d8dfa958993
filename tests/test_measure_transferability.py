"""The layer-transferability protocol: splits, copied/frozen layers, resume, report files."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import qianyi
from qianyi.cli import main
from qianyi.errors import DataError
from qianyi.measure import transferability as tr
from qianyi.train import TrainConfig

FAST = TrainConfig(epochs=1, steps_per_epoch=6, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def digits():
    return qianyi.load_domain("digits")


def test_class_halves_are_disjoint_and_relabelled(digits):
    pair = tr.similar_pair(digits, seed=3, max_train=200)
    ca, cb = tr.class_halves(digits, 3)
    assert sorted(ca + cb) == list(range(10)) and not set(ca) & set(cb)
    assert set(np.unique(pair.a.train.y)) == set(range(5)) == set(np.unique(pair.b.test.y))
    assert abs(len(pair.a.train) - 200) <= 2 and pair.b.train.class_names == tuple(str(c) for c in cb)
    # the B images are exactly digits of B's classes
    assert len(pair.b.train) + len(pair.b.test) <= int(np.isin(digits.y, cb).sum())
    with pytest.raises(DataError, match="classes"):
        tr.select_classes(digits, [3], "one class")


def test_protocol_copies_and_freezes_the_first_k_groups_and_resumes(digits, tmp_path, monkeypatch):
    pair = tr.similar_pair(digits, max_train=150)
    res = tr.transferability([pair], ks=[2], seeds=[0], config=FAST, out=tmp_path, log=None)
    assert len(res.runs) == 5 and {r["condition"] for r in res.runs} == {"base", *tr.CONDITIONS}
    runs = tmp_path / "runs"
    load = lambda p: torch.load(p, weights_only=True)  # noqa: E731
    base_a = load(runs / tr.short_slug(pair.a.name) / "base" / "k0" / "seed0" / "model.pt")
    base_b = load(runs / tr.short_slug(pair.b.name) / "base" / "k0" / "seed0" / "model.pt")
    for cond, base in (("BnB", base_b), ("AnB", base_a), ("AnB+", base_a)):
        src = pair.a.name if cond.startswith("A") else pair.b.name
        got = load(runs / tr.short_slug(pair.b.name) / f"{cond}-from-{tr.short_slug(src)}" / "k2" / "seed0" / "model.pt")
        conv = [k for k in got if k.startswith(("groups.conv1.", "groups.conv2."))]
        same = all(torch.equal(got[k], base[k]) for k in conv)
        assert same == (cond == "BnB" or cond == "AnB"), cond  # frozen: unchanged; fine-tuned: moved
        assert not torch.equal(got["groups.fc1.1.weight"], base["groups.fc1.1.weight"])  # retrained from scratch
    assert not (runs / tr.short_slug(pair.b.name) / "base" / "k0" / "seed0" / "checkpoint.pt").exists()
    data = json.loads((tmp_path / "transferability.json").read_text())
    assert set(data["findings"][pair.name]) >= {"anb_drop_at_top_k", "anb_plus_minus_base"}
    assert (tmp_path / "transferability.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(tr, "run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = tr.transferability([pair], ks=[2], seeds=[0], config=FAST, out=tmp_path, log=None)
    assert again.runs == res.runs
    # a count of seeds is seeds 0..N-1, as bench reads it (it was a TypeError: 'int' object is not iterable)
    assert tr.transferability([pair], ks=[2], seeds=1, config=FAST, out=tmp_path, log=None).runs == res.runs


def test_dissimilar_pair_shares_task_b_and_bad_ks_are_named(digits):
    sim = tr.similar_pair(digits, max_train=100)
    rot = qianyi.load_domain("digits+rot30")
    dis = tr.dissimilar_pair(rot, sim.b, max_train=100)
    assert dis.b is sim.b and len(np.unique(dis.a.train.y)) == 5
    with pytest.raises(DataError, match="1..4"):
        tr.transferability([sim], ks=[5], seeds=[0], config=FAST, log=None)


def test_cli_transferability_runs_the_protocol(tmp_path, capsys):
    assert main(["transferability", "digits", "--dissimilar", "digits+invert", "--ks", "4", "--seeds", "1",
                 "--max-samples", "100", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AnB+" in out and "dissimilar" in out and (tmp_path / "transferability.md").exists()
    assert main(["transferability", "digits", "--freeze", "2"]) == 2
    capsys.readouterr()
    assert main(["transferability", "digits", "--l2sp", "0.1"]) == 2
    assert "leave out --l2sp" in capsys.readouterr().err  # the flag given is named
    with pytest.raises(DataError, match="at least 4 classes"):
        tr.similar_pair(qianyi.data.domain.Domain(np.zeros((6, 2), "f4"), np.arange(6) % 2, "two"))


@pytest.mark.parametrize("option", [["--select", "entropy"], ["--validators", "all"], ["--selection-samples", "50"]])
def test_cli_transferability_refuses_a_choice_of_epoch(capsys, option):
    # its runs' unlabelled "target" is B's test split: a validator would choose epochs by looking at it
    # (--selection-samples was accepted and ignored)
    assert main(["transferability", "digits", *option]) == 2
    assert "B's test split" in capsys.readouterr().err


def test_transferability_help_does_not_offer_the_flags_it_refuses(capsys):
    from qianyi.measure.commands import TRANSFERABILITY_SETS

    with pytest.raises(SystemExit):
        main(["transferability", "--help"])
    text = capsys.readouterr().out
    assert "--epochs" in text and "--max-samples" in text
    assert [f for f in TRANSFERABILITY_SETS if f"{f} " in text or f"{f}\n" in text] == []
    for flag in TRANSFERABILITY_SETS[:5]:  # refused, naming the flag
        value = {"--init-from": "x.pt", "--copied-lr-mult": "2"}.get(flag, "1")
        assert main(["transferability", "digits", flag, value]) == 2
        assert flag in capsys.readouterr().err


@pytest.mark.parametrize("choice", [{"select": "entropy"}, {"validators": ("entropy",)}])
def test_the_python_api_refuses_a_choice_of_epoch_too(digits, choice):
    # transferability(config=TrainConfig(select="entropy")) ran, picking each network's epoch on B's test inputs
    pair = tr.similar_pair(digits, max_train=100)
    with pytest.raises(DataError, match="B's test split.*select='last' and no validators"):
        tr.transferability([pair], ks=[1], seeds=[0], config=replace(FAST, **choice), log=None)

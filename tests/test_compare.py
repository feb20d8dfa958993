"""`qianyi summary --compare A B`: B - A paired by seed, with 95% intervals that can tell noise from a difference."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from qianyi.bench.runner import BenchResult
from qianyi.cli import main
from qianyi.errors import ConfigError, DataError
from qianyi.train.result import RunResult

BASE = dict(source="a", target="b", source_accuracy=0.9, train_seconds=1.0, selection="last", oracle=False,
            hparams={}, config={}, n_source=10, n_target_train=10, n_target_test=5, device="cpu")


def _runs(method: str, pair: tuple[str, str], accs: dict[int, float]) -> list[RunResult]:
    return [RunResult(**{**BASE, "source": pair[0], "target": pair[1]}, method=method, seed=s, target_accuracy=a)
            for s, a in accs.items()]


P, Q = ("a", "b"), ("c", "d")
RUNS = (_runs("dann", P, {0: 0.80, 1: 0.70, 2: 0.75, 3: 0.9})  # seed 3: dann only, so it does not count
        + _runs("cdan+e", P, {0: 0.82, 1: 0.71, 2: 0.79})
        + _runs("dann", Q, {0: 0.50, 1: 0.60})
        + _runs("cdan+e", Q, {0: 0.40, 1: 0.55}))


def test_the_paired_difference_matches_a_hand_computation():
    res = BenchResult(RUNS, [P, Q], ["dann", "cdan+e"]).paired_difference("dann", "cdan+e")
    p, q = res.rows
    assert p.seeds == [0, 1, 2] and q.seeds == [0, 1]
    dp, dq = np.array([2.0, 1.0, 4.0]), np.array([-10.0, -5.0])  # points
    assert p.diff == pytest.approx(dp.mean()) and q.diff == pytest.approx(dq.mean())
    assert p.mean_a == pytest.approx(75.0) and p.mean_b == pytest.approx(77.3333, abs=1e-3)
    # per pair: the paired t-interval, as scipy computes it
    lo, hi = stats.t.interval(0.95, 2, loc=dp.mean(), scale=stats.sem(dp))
    assert p.interval == pytest.approx((lo, hi))
    # over pairs: the mean of the pair means, SE sqrt(sum se^2) / P, Welch-Satterthwaite df
    se_p, se_q = stats.sem(dp), stats.sem(dq)
    assert res.diff == pytest.approx((dp.mean() + dq.mean()) / 2)
    assert res.se == pytest.approx(np.sqrt(se_p ** 2 + se_q ** 2) / 2)
    assert res.df == pytest.approx((se_p ** 2 + se_q ** 2) ** 2 / (se_p ** 4 / 2 + se_q ** 4 / 1))
    half = stats.t.ppf(0.975, res.df) * res.se
    assert res.interval == pytest.approx((res.diff - half, res.diff + half))


def test_the_verdict_separates_a_difference_from_seed_noise():
    noisy = BenchResult(RUNS, [P, Q], ["dann", "cdan+e"]).paired_difference("dann", "cdan+e")
    lo, hi = noisy.interval
    assert lo < 0 < hi and "do not tell dann and cdan+e apart" in noisy.verdict()
    steady = _runs("dann", P, {0: 0.80, 1: 0.70, 2: 0.75}) + _runs("cdan+e", P, {0: 0.82, 1: 0.721, 2: 0.769})
    ahead = BenchResult(steady, [P], ["dann", "cdan+e"]).paired_difference("dann", "cdan+e")  # +2.0 ± 0.1
    assert ahead.interval[0] > 0 and ahead.verdict().startswith("cdan+e is ahead of dann")
    behind = BenchResult(steady, [P], ["dann", "cdan+e"]).paired_difference("cdan+e", "dann")
    assert behind.interval[1] < 0 and behind.verdict().startswith("cdan+e is ahead of dann")
    one_seed = _runs("dann", P, {0: 0.8}) + _runs("cdan+e", P, {0: 0.9})
    single = BenchResult(one_seed, [P], ["dann", "cdan+e"]).paired_difference("dann", "cdan+e")
    assert single.interval is None and "run more seeds" in single.verdict()
    table = single.table()
    assert "| a->b | 1 | 80.0 | 90.0 | +10.0 | – |" in table


def test_compare_names_what_is_missing():
    res = BenchResult(RUNS, [P, Q], ["dann", "cdan+e"])
    with pytest.raises(DataError, match="no finished runs of 'mdd'.*dann, cdan\\+e"):
        res.paired_difference("dann", "mdd")
    with pytest.raises(ConfigError, match="two different methods"):
        res.paired_difference("dann", "dann")
    apart = _runs("dann", P, {0: 0.8}) + _runs("cdan+e", P, {1: 0.9})
    with pytest.raises(DataError, match="share no finished seed on a->b"):
        BenchResult(apart, [P], ["dann", "cdan+e"]).paired_difference("dann", "cdan+e")


def test_summary_compare_prints_the_table(tmp_path, capsys):
    for i, r in enumerate(RUNS):
        d = tmp_path / "runs" / f"{r.source}-_{r.target}" / r.method.replace("+", "_") / f"seed{r.seed}-{i}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r.to_dict()))
    assert main(["summary", str(tmp_path), "--compare", "dann", "cdan+e", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "Paired difference cdan+e − dann" in out and "| mean over pairs |" in out
    assert "| dann | 66.9 | – | – |" in out  # no source-only runs here: nothing to beat (it said 0/2)
    assert "Paired difference cdan+e − dann" in (tmp_path / "s" / "results.md").read_text()
    assert main(["summary", str(tmp_path), "--compare", "mdd", "dann", "--out", str(tmp_path / "t")]) != 0
    assert "no finished runs of 'mdd'" in capsys.readouterr().err
    assert not (tmp_path / "t" / "results.md").exists()  # checked before anything is written
    assert main(["summary", str(tmp_path), "--compare", "dann", "cdan+e", "--methods", "cdan+e"]) == 2
    assert "--methods cdan+e leaves it out" in capsys.readouterr().err  # it said dann had no finished runs


def _store(tmp_path, runs):
    for i, r in enumerate(runs):
        d = tmp_path / "runs" / f"{r.source}-_{r.target}" / r.method.replace("+", "_") / f"seed{r.seed}-{i}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r.to_dict()))
    return sorted(tmp_path.glob("runs/*/*/*/result.json"))


@pytest.mark.parametrize("content, reason", [("{not json", "Expecting property name"), ("{}", "missing method, source"),
                                             ('["a"]', "not a JSON object")])
def test_summary_names_a_corrupt_result_file(tmp_path, capsys, content, reason):
    files = _store(tmp_path, RUNS)
    files[2].write_text(content)
    assert main(["summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{str(files[2])!r} cannot be read as a run result" in err and reason in err and "Traceback" not in err


@pytest.mark.parametrize("edit, field", [({"target_accuracy": 5.0}, "target_accuracy"), ({"seed": "x"}, "seed"),
                                         ({"hparams": [1]}, "hparams"), ({"history": "zz"}, "history")])
def test_summary_names_a_result_field_of_the_wrong_type(tmp_path, capsys, edit, field):
    """A hand-edited result.json gave TypeErrors in summary and report; an accuracy of 5.0 showed as 500%."""
    files = _store(tmp_path, RUNS)
    files[2].write_text(json.dumps({**json.loads(files[2].read_text()), **edit}))
    assert main(["summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{str(files[2])!r} cannot be read as a run result (of the wrong type or range: {field})" in err


def test_summary_refuses_a_selection_or_pair_the_folder_does_not_hold(tmp_path, capsys):
    _store(tmp_path, RUNS)
    assert main(["summary", str(tmp_path), "--select", "devv"]) == 2  # a typo
    assert "select must be 'last' or a validator" in capsys.readouterr().err
    assert main(["summary", str(tmp_path), "--select", "dev"]) == 2  # a validator no run chose by
    assert "no runs in" in (err := capsys.readouterr().err) and "chose by last: pass that as --select" in err
    assert main(["summary", str(tmp_path), "--pairs", "a->b", "x->y"]) == 2
    assert "no runs of x->y in" in (err := capsys.readouterr().err) and "it holds a->b, c->d" in err
    assert main(["summary", str(tmp_path), "--pairs", "c->d"]) == 0  # the pairs it does hold still work


def test_predict_names_a_folder_that_does_not_exist(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope"), "--data", "digits"]) == 2
    assert f"{str(tmp_path / 'nope')!r} does not exist" in capsys.readouterr().err


def test_summary_reads_the_selection_rule_from_the_runs_and_refuses_unlike_runs(tmp_path, capsys):
    dev = "best by validator 'dev' (epoch 3 of 5); no target labels"
    runs = [replace(r, selection=dev, config={"epochs": 5}) for r in RUNS]
    _store(tmp_path / "a", runs)
    assert main(["summary", str(tmp_path / "a")]) == 0  # no --select: the runs' own rule, not "last epoch"
    out = capsys.readouterr().out
    assert "validator 'dev'" in out and "last epoch's" not in out
    _store(tmp_path / "b", runs[:3] + [replace(r, selection="last") for r in runs[3:]])
    assert main(["summary", str(tmp_path / "b")]) == 2
    assert "chose their models by different rules (dev, last); pass one as --select" in capsys.readouterr().err
    assert main(["summary", str(tmp_path / "b"), "--select", "last"]) == 0  # said which: those runs only
    capsys.readouterr()
    _store(tmp_path / "c", runs[:3] + [replace(r, config={"epochs": 3}) for r in runs[3:]])
    assert main(["summary", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "a->b: the runs were trained with different settings (epochs 3 (cdan+e) vs 5 (dann))" in err
    # chosen by a validator on other numbers of samples: other choices of epoch, not alike either
    _store(tmp_path / "f", [replace(r, config={"epochs": 5, "selection_samples": 500 if r.method == "dann" else 1000})
                            for r in runs])
    assert main(["summary", str(tmp_path / "f")]) == 2
    assert "chosen by a validator scoring different numbers of samples" in capsys.readouterr().err
    # alike settings, other data: a pair's name does not carry its --max-samples cap (two test sets)
    fp = {"data": "h1", "sizes": [269, 30, 209, 90], "shape": [1, 8, 8], "classes": 10}
    other = {**fp, "data": "h2", "sizes": [809, 90, 629, 269]}
    # a folder reused with another cap: the runs on the data of the pair's newest run, with a warning
    files = _store(tmp_path / "d", [replace(r, fingerprint=fp if r.method == "dann" else other) for r in runs])
    for f in files:  # the cdan+e runs (other data) are the newer ones
        os.utime(f, (2e9, 2e9) if json.loads(f.read_text())["method"] == "cdan+e" else (1e9, 1e9))
    assert main(["summary", str(tmp_path / "d"), "--pairs", "a->b"]) == 0
    out, err = capsys.readouterr()
    assert "a->b has runs on other data too" in err and "split sizes [809, 90, 629, 269]" in err
    assert "| cdan+e |" in out and "| dann |" not in out
    _store(tmp_path / "e", [replace(r, fingerprint=fp) for r in runs])
    assert main(["summary", str(tmp_path / "e")]) == 0  # the same data: tabulated
    assert "| dann |" in capsys.readouterr().out


def test_summary_per_seed_and_methods_filter(tmp_path, capsys):
    _store(tmp_path, RUNS + _runs("source-only", P, {0: 0.5, 1: 0.6, 2: 0.55}))
    assert main(["summary", str(tmp_path), "--per-seed"]) == 0
    out = capsys.readouterr().out
    assert "| pair | method | 0 | 1 | 2 | 3 |" in out
    assert "| a->b | dann | 80.0 | 70.0 | 75.0 | 90.0 |" in out
    assert "| c->d | cdan+e | 40.0 | 55.0 | – | – |" in out  # a seed a method lacks is a dash
    assert main(["summary", str(tmp_path), "--methods", "dann"]) == 0
    out = capsys.readouterr().out
    assert "| dann |" in out and "| cdan+e |" not in out and "| source-only |" in out  # the baseline stays
    assert main(["summary", str(tmp_path), "--methods", "dan"]) == 2
    assert "no runs of dan here; these folders hold source-only, cdan+e, dann" in capsys.readouterr().err


def test_summary_keeps_runs_of_an_earlier_method_revision_apart(tmp_path, capsys):
    # mean-teacher's loss was renormalised (revision 2): stored runs of revision 1 are not today's method
    old = _runs("mean-teacher", P, {0: 0.5, 1: 0.6})
    data = {"data": "h", "sizes": [9, 1, 7, 3], "shape": [4], "classes": 2}
    old = [replace(r, fingerprint=data) for r in old]
    new = [replace(r, fingerprint={**data, "revision": 2}, target_accuracy=0.9) for r in _runs("mean-teacher", P, {0: 0, 1: 0})]
    base = [replace(r, fingerprint=data) for r in _runs("source-only", P, {0: 0.4, 1: 0.4})]
    _store(tmp_path, old + base)
    assert main(["summary", str(tmp_path), "--variants"]) == 0
    assert "| mean-teacher (revision=1) |" in capsys.readouterr().out
    _store(tmp_path / "b", old + new + base)
    assert main(["summary", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    tables, left_out = out.split("Left out of these tables")
    assert "| mean-teacher | 90.0" in tables and "revision" not in tables
    assert "mean-teacher (revision=1)" in left_out  # said in the written report, not on stderr alone


def test_gap_closed_is_undefined_where_the_oracle_is_not_above_source_only():
    # a short run whose oracle scored 10.7 under source-only's 14.1 printed tca at 62.4 as "-1440%"
    runs = (_runs("source-only", P, {0: 0.141}) + _runs("oracle", P, {0: 0.107}) + _runs("tca", P, {0: 0.624})
            + _runs("source-only", Q, {0: 0.5}) + _runs("oracle", Q, {0: 0.9}) + _runs("tca", Q, {0: 0.7}))
    res = BenchResult(runs, [P, Q], ["source-only", "tca", "oracle"])
    assert res.gap_closed("tca", P) is None and res.gap_closed("tca", Q) == pytest.approx(0.5)
    row = next(line for line in res.table().splitlines() if line.startswith("| tca |"))
    assert row.split("|")[3].strip() == "–" and row.split("|")[5].strip() == "50%"
    # the mean gap closed is over the pairs that have one, and says so (review stats #4: skipped, not "–" for all)
    assert next(line for line in res.summary_table().splitlines() if line.startswith("| tca |")).split("|")[3].strip() \
        == "50% (1/2 pairs)"


def test_summary_names_what_it_leaves_out_and_tabulates_staged_variants(tmp_path):
    from qianyi.errors import QianyiWarning

    def save(r: RunResult, folder: str) -> None:
        d = tmp_path / folder / "runs" / "a-_b" / r.method / f"seed{r.seed}-x"
        d.mkdir(parents=True)
        r.save(d)

    cfg = {"epochs": 2, "init_from": None}
    fp = {"config": cfg, "data": "d", "sizes": [1], "shape": [1], "classes": 2}
    for m, acc in (("source-only", 0.5), ("oracle", 0.9)):
        save(RunResult(**{**BASE, "config": cfg, "fingerprint": fp}, method=m, seed=0, target_accuracy=acc), "st")
    # a staged run (self-train from its own source stage) records its teacher stage in config, not in what was asked
    staged = {**cfg, "init_from": "st/runs/a-_b/self-train/seed0-x/stages/00-source/model.pt"}
    save(RunResult(**{**BASE, "config": staged, "fingerprint": fp, "hparams": {"pretrain": "dann"}},
                   method="self-train", seed=0, target_accuracy=0.7), "st")
    with pytest.warns(QianyiWarning, match=r"left out 1 run of other settings .*self-train \(pretrain=dann\)"):
        plain = BenchResult.from_dirs([tmp_path / "st"])
    assert "self-train (pretrain=dann)" not in plain.methods
    with_variants = BenchResult.from_dirs([tmp_path / "st"], variants=True)  # was: refused as unlike settings
    assert with_variants.gap_closed("self-train (pretrain=dann)", ("a", "b")) == pytest.approx(0.5)
    # runs chosen by another rule: left out with a warning that names the rule
    save(RunResult(**{**BASE, "config": cfg, "fingerprint": fp, "selection": "best by validator 'dev' (epoch 1 of 2)"},
                   method="dan", seed=0, target_accuracy=0.6), "dev")
    with pytest.warns(QianyiWarning, match="chosen by dev, not 'last' .*--select dev"):
        BenchResult.from_dirs([tmp_path / "st", tmp_path / "dev"], select="last", variants=True)


def test_tables_of_runs_without_a_labelled_target_say_so_instead_of_crashing():
    """`qianyi select` on an unlabelled target stores runs that summary/report read: a TypeError (int * None)."""
    runs = (_runs("dann", P, {0: None, 1: None}) + _runs("source-only", P, {0: None, 1: None})
            + _runs("dann", Q, {0: 0.5, 1: 0.7}))
    res = BenchResult(runs, [P, Q], ["source-only", "oracle", "dann"])
    table = res.table()
    assert "| dann | – | – | 60.0 ± 14.1 |" in table
    assert "oracle" not in table.split("\n\n")[0]  # no oracle run at all: no row of nan
    assert "No target accuracy (–) for a->b: those runs had no labelled target test split" in table
    assert "| a->b | dann |" not in res.per_seed_table() and "| c->d | dann | 50.0 | 70.0 |" in res.per_seed_table()
    assert res.summary_table() == "No mean over pairs: a->b had no labelled target test split, so no accuracy." 


def test_the_validator_table_leaves_out_a_pair_without_labelled_target_and_says_so():
    """It was all dashes over every pair when one pair had no labelled target test split."""
    from dataclasses import replace

    hist = [{"score_dev": 0.3, "oracle_target_acc": 0.6}, {"score_dev": 0.2, "oracle_target_acc": 0.7}]
    scored = [replace(r, history=hist, selection="last epoch (2); no target labels")
              for r in _runs("dann", P, {0: 0.7, 1: 0.7}) + _runs("source-only", P, {0: 0.6, 1: 0.6})]
    blind = [replace(r, history=[{k: v for k, v in h.items() if k == "score_dev"} for h in hist])
             for r in _runs("dann", Q, {0: None, 1: None}) + _runs("source-only", Q, {0: None, 1: None})]
    res = BenchResult(scored + blind, [P, Q], ["source-only", "dann"])
    table = res.validator_table()
    assert "| dann | 70.0 |" in table and "Left out c->d: no labelled target test split" in table
    assert res.validator_table([Q]).startswith("No validator table: left out c->d")


def test_a_validator_that_scored_no_epoch_keeps_its_rule_and_the_table_says_so(tmp_path, capsys):
    """A `--select dev` run whose validator scored nothing kept its last epoch; summary read it as a run of
    the rule 'last' (the text) and refused the folder ("different rules (dev, last)")."""
    dev = "best by validator 'dev' (epoch 3 of 5); no target labels"
    runs = [replace(r, selection=dev, config={"epochs": 5, "select": "dev"}) for r in RUNS]
    runs[-1] = replace(runs[-1], selection="validator 'dev' scored no epoch: last epoch (5); no target labels")
    runs[-2] = replace(runs[-2], selection="last epoch (5); no target labels")  # written so before 2026-12-04
    _store(tmp_path / "a", runs)
    assert main(["summary", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "chosen by the label-free validator 'dev'" in out
    assert "2 runs kept their last epoch because the validator 'dev' scored no epoch: cdan+e c->d seed 0, " \
           "cdan+e c->d seed 1." in out
    assert "| cdan+e | 77.3 ± 5.7 (n=3) |" in out and "| 47.5 ± 10.6 (n=2) |" in out  # both runs counted


def test_the_written_report_says_what_summary_left_out_and_names_unfinished_runs(tmp_path):
    from qianyi.errors import QianyiWarning

    _store(tmp_path, RUNS)
    (tmp_path / "runs" / "a-_b" / "dann" / "seed7-x").mkdir()  # killed, diverged or still training: no result
    ((tmp_path / "runs" / "a-_b" / "dann" / "seed7-x") / "checkpoint.pt").write_bytes(b"")
    with pytest.warns(QianyiWarning, match=r"1 run folder without a result .*a-_b/dann/seed7-x"):
        res = BenchResult.from_dirs([tmp_path])
    report = res.report()
    assert "Left out of these tables:\n\n* " in report and "a-_b/dann/seed7-x" in report
    _store(tmp_path / "clean", RUNS)
    assert "Left out" not in BenchResult.from_dirs([tmp_path / "clean"]).report()


def test_tables_say_which_cells_are_short_of_seeds_or_methods_and_which_choices_no_validator_made():
    hist = [{"score_dev": float("nan"), "score_entropy": 0.3, "oracle_target_acc": 0.1276},
            {"score_dev": float("nan"), "score_entropy": 0.2, "oracle_target_acc": 0.1244}]
    runs = [replace(r, history=hist) for r in _runs("dann", P, {0: 0.1244, 1: 0.1244})
            + _runs("source-only", P, {0: 0.1, 1: 0.1}) + _runs("oracle", P, {0: 0.9, 1: 0.9})
            + _runs("source-only", Q, {0: 0.1}) + _runs("oracle", Q, {0: 0.9, 1: 0.9})]
    res = BenchResult(runs, [P, Q], ["source-only", "dann", "oracle"])
    table = res.table()
    assert "| source-only | 10.0 |" in table and "10.0 (n=1)" in table
    assert "(n=k): only k seeds of that method finished on that pair" in table
    assert "| dann | 12.4 | 12.8 | 0.4 |" in table  # the cost of the cells as shown (12.76 - 12.44 = 0.32)
    vt = res.validator_table([P])
    assert "| dann | 12.4 | 12.4* | 12.4 | 12.8 |" in vt  # last, dev (scored no epoch: the last), entropy, ORACLE
    assert "A figure marked * is not that validator's choice" in vt
    assert "Not in this table (no target accuracy on every pair): dann." in res.summary_table()
    assert "Closest to the oracle choice on average: last, dev, entropy (0.3 points short)" in vt
    one = BenchResult(_runs("dann", P, {0: 0.5}), [P], ["dann"])
    assert "Seeds [0]; one seed: no std." in one.table()


def test_the_settings_line_names_the_pairs_whose_settings_differ():
    runs = ([replace(r, config={"epochs": 4}) for r in _runs("dann", P, {0: 0.5})]
            + [replace(r, config={"epochs": 2}) for r in _runs("dann", Q, {0: 0.5})])
    assert "epochs differs between pairs: 4 (a->b), 2 (c->d)" in BenchResult(runs, [P, Q], ["dann"]).settings_line()


def test_the_plot_tells_runs_without_target_labels_from_missing_runs(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    said: list[str] = []
    text = Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: (said.append(s), text(self, x, y, s, *a, **k))[1])
    runs = _runs("dann", P, {0: None}) + _runs("source-only", P, {0: 0.5})
    BenchResult(runs, [P], ["source-only", "dann", "oracle"]).plot(tmp_path / "r.png")
    assert said.count("no target labels") == 1 and said.count("no runs") == 1  # dann unscored; no oracle run


def test_a_pair_without_an_oracle_run_says_so():
    """The dashes of gap closed read as an oracle no better than source-only when no oracle had run."""
    runs = _runs("dann", P, {0: 0.6}) + _runs("source-only", P, {0: 0.5}) + _runs("oracle", Q, {0: 0.9}) \
        + _runs("source-only", Q, {0: 0.5}) + _runs("dann", Q, {0: 0.7})
    table = BenchResult(runs, [P, Q], ["source-only", "dann", "oracle"]).table()
    assert "No oracle run on a->b (e.g. a target whose training split has no labels to train it on)" in table
    assert "c->d" not in table.split("No oracle run on")[1].split(":")[0]


def test_what_was_left_out_is_still_said_when_nothing_is_left_to_tabulate(tmp_path):
    from qianyi.errors import QianyiWarning

    _store(tmp_path, [replace(r, hparams={"trade_off": 0.5}) for r in RUNS])  # every run of other settings
    with pytest.warns(QianyiWarning, match="left out 11 runs of other settings"), \
            pytest.raises(DataError, match="pass --variants"):
        BenchResult.from_dirs([tmp_path])

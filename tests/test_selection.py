"""Honest model selection as a first-class part: validators choose epochs (--select) and settings (select)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qianyi.bench.selection import indistinct_note, rank_candidates, tie_break_note
from qianyi.cli import main
from qianyi.data import load_task
from qianyi.methods import get_method
from qianyi.select import get_validator
from qianyi.train import TrainConfig, Trainer, run

from .conftest import toy_task

CFG = dict(epochs=4, steps_per_epoch=8, batch_size=32, progress=False)


@pytest.mark.parametrize("validator", ["dev", "snd", "source-val"])
def test_select_keeps_the_validators_best_epoch(validator):
    res, fit = run("dan", toy_task(shift=2.0), TrainConfig(**CFG, select=validator, validators=("entropy",)))
    v = get_validator(validator)
    utils = [v.utility(h[f"score_{validator}"]) for h in res.history]
    assert res.selected_epoch == 1 + int(np.argmax(utils)) and f"{validator!r}" in res.selection
    assert {"score_entropy", f"score_{validator}"} <= set(res.history[-1])
    assert res.scores[validator] == res.history[res.selected_epoch - 1][f"score_{validator}"]


def test_what_the_monitor_reports_never_changes_the_choice():
    task, cfg = toy_task(shift=2.0), TrainConfig(**CFG, select="dev")
    rng = np.random.default_rng(0)
    plain = Trainer(get_method("dan"), cfg).fit(task)
    watched = Trainer(get_method("dan"), cfg).fit(task, monitor=lambda net: {"oracle_target_acc": rng.random()})
    assert plain.selected_epoch == watched.selected_epoch
    for a, b in zip(plain.model.state_dict().values(), watched.model.state_dict().values()):
        assert torch.equal(a, b)
    assert "oracle_target_acc" in watched.history[0] and "oracle_target_acc" not in plain.history[0]


def test_ranking_rule_mean_rank_over_pairs_ties_to_the_better_mean_score():
    scores = np.array([[0.1, 0.9], [0.2, 0.2], [0.3, 0.1]])  # candidates x pairs, lower is better
    mean_rank, best = rank_candidates(scores, higher_is_better=False)
    assert mean_rank.tolist() == [2.0, 2.0, 2.0] and best == 1  # all tie on rank; 1 has the best mean score
    mean_rank, best = rank_candidates(np.array([[1.0, 1.0], [1.0, 0.5]]), higher_is_better=True)
    assert mean_rank.tolist() == [1.25, 1.75] and best == 0
    # mean scores one ulp apart (0.19999999999999998 vs 0.20000000000000004) are a tie: the earlier candidate,
    # as the report's note says (the later one was taken while the note said the earlier)
    ulp = np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]])
    mean_rank, best = rank_candidates(ulp, higher_is_better=True)
    assert best == 0 and "the earlier candidate in the grid was taken" in tie_break_note(ulp, mean_rank, best, "abc")


def test_a_tie_broken_by_the_mean_score_is_reported_with_the_pair_that_weighs_most():
    scores = np.array([[0.1, 0.9], [0.2, 0.2], [0.3, 0.1]])  # pair b's scores spread 0.8, pair a's 0.2
    mean_rank, best = rank_candidates(scores, higher_is_better=False)
    note = tie_break_note(scores, mean_rank, best, ["a", "b"])
    assert note is not None and note.startswith("3 candidates tie at mean rank 2.00") and "b makes 80% of the spread" in note
    clear = np.array([[0.1, 0.1], [0.2, 0.2]])
    mean_rank, best = rank_candidates(clear, higher_is_better=False)
    assert tie_break_note(clear, mean_rank, best, ["a", "b"]) is None  # the ranks decided


def test_candidates_the_validator_scores_alike_are_reported():
    scores = np.array([[4.927253654, 0.5], [4.927253649, 0.5], [3.0, 0.7]])  # 0 and 1: float noise apart
    mean_rank, best = rank_candidates(scores, higher_is_better=True)
    cands = [{"trade_off": 1.0}, {"trade_off": 0.3}, {"trade_off": 3.0}]
    note = indistinct_note(scores, best, cands)
    assert best == 0 and note and '{"trade_off": 0.3}' in note and "cannot tell them apart" in note
    assert '{"trade_off": 3.0}' not in note
    assert indistinct_note(np.array([[1.0, 0.5], [1.001, 0.5]]), 0, cands[:2]) is None  # apart in the 4th digit


def test_select_command_ranks_a_grid_and_reuses_its_runs(tmp_path, capsys):
    args = ["select", "dan", "--pairs", "digits->digits+rot30", "digits->digits+invert", "--validator", "dev",
            "--grid", '[{"trade_off": 0.3}, {"trade_off": 3.0}]', "--epochs", "1", "--steps-per-epoch", "4",
            "--max-samples", "400", "--out", str(tmp_path), "--no-progress", "--show-oracle"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "Chosen:" in out.out and "ORACLE choice" in out.out and out.err.count("[") == 4
    chosen = json.loads((tmp_path / "select-dan-dev.json").read_text())["chosen"]
    assert chosen in ({"trade_off": 0.3}, {"trade_off": 3.0})
    n_runs = len(list(tmp_path.rglob("result.json")))
    assert main([*args[:6], "entropy", *args[7:]]) == 0  # another validator ranks the same cached runs
    assert len(list(tmp_path.rglob("result.json"))) == n_runs == 4
    assert "entropy" in capsys.readouterr().out
    assert main([*args, "--validators", "dev"]) == 2  # select records them all: the flag would do nothing
    assert "--validators does nothing here" in capsys.readouterr().err


def test_bench_reports_the_label_free_and_the_oracle_choice(tmp_path, capsys):
    args = ["bench", "--methods", "dan", "--pairs", "digits->digits+rot30", "--seeds", "1", "--epochs", "2",
            "--steps-per-epoch", "4", "--max-samples", "400", "--select", "dev", "--validators", "all",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    md = (tmp_path / "results.md").read_text()
    assert "ORACLE choice" in md and "dev" in md and "Closest to the oracle choice" in md
    with open(tmp_path / "results.csv") as fh:
        rows = list(__import__("csv").DictReader(fh))
    dan = next(r for r in rows if r["method"] == "dan")
    assert float(dan["oracle_choice_accuracy"]) >= float(dan["target_accuracy"]) - 1e-9
    assert "validator 'dev'" in dan["selection"]
    capsys.readouterr()
    assert main(["summary", str(tmp_path), "--select", "dev"]) == 0  # the same tables from the run store
    assert "ORACLE choice" in capsys.readouterr().out


def test_select_chooses_training_settings_too(tmp_path):
    from qianyi.bench.selection import select_hparams
    from qianyi.errors import ConfigError, DataError

    grid = [{"lr": 0.001}, {"lr": 0.05, "optimizer": "sgd"}]
    res = select_hparams("source-only", ["digits->digits+rot30"], validator="source-val", grid=grid,
                         out=tmp_path, config=TrainConfig(epochs=1, steps_per_epoch=4, progress=False),
                         max_samples=300, log=None)
    runs = [json.loads(p.read_text()) for p in tmp_path.rglob("result.json")]
    assert sorted((r["config"]["optimizer"], r["config"]["lr"]) for r in runs) == [("sgd", 0.001), ("sgd", 0.05)]
    assert res.choice in grid
    with pytest.raises((ConfigError, DataError)):
        select_hparams("source-only", ["digits->digits+rot30"], grid=[{"lr": -1.0}], out=tmp_path, log=None)
    # a pair's own cap (S->T@N) is the same task as max_samples=N: every run is reused
    again = select_hparams("source-only", ["digits->digits+rot30@300"], validator="source-val", grid=grid,
                           out=tmp_path, config=TrainConfig(epochs=1, steps_per_epoch=4, progress=False), log=None)
    assert len(list(tmp_path.rglob("result.json"))) == 2 and again.choice == res.choice


def test_a_pair_may_carry_its_own_sample_cap():
    from qianyi.bench.runner import split_cap
    from qianyi.errors import ConfigError

    assert split_cap("mnist->mnist-m@5000") == ("mnist->mnist-m", 5000)
    assert split_cap("mnist->digits") == ("mnist->digits", None)
    assert split_cap("npz:a@b.npz->mnist") == ("npz:a@b.npz->mnist", None)  # an @ that is not a trailing cap
    with pytest.raises(ConfigError, match="at least 2"):
        split_cap("mnist->digits@1")
    assert split_cap("mnist->digits@\u00b2") == ("mnist->digits@\u00b2", None)  # ASCII digits only
    from qianyi.bench.runner import bench

    with pytest.raises(ConfigError, match="digits->digits\\+rot30 is given twice"):
        bench(["dan"], ["digits->digits+rot30@300", "digits->digits+rot30@600"], seeds=1, log=None)


def test_select_refuses_what_it_cannot_rank_and_says_how_ties_and_gaps_went(tmp_path, capsys):
    from qianyi.bench.selection import SelectionResult, select_hparams
    from qianyi.errors import ConfigError, DataError

    # equal mean ranks and equal mean scores: the grid order decides, and the note says so (it said the score did)
    same = np.array([[0.25, 0.75], [0.75, 0.25]])
    mean_rank, best = rank_candidates(same, higher_is_better=True)
    assert best == 0 and "earlier candidate in the grid" in tie_break_note(same, mean_rank, best, ["a", "b"])
    # a NaN score ranks last (it won under lower-is-better)
    assert rank_candidates(np.array([[0.1, np.nan], [0.2, 0.3], [0.3, 0.1]]), False)[1] != 0
    # no labelled target test: no invented ORACLE choice (it named the first candidate, at nan%)
    res = SelectionResult("dan", "dev", ["a"], [{}, {"trade_off": 3}], np.ones((2, 1, 1)), np.full((2, 1, 1), np.nan),
                          np.array([1.5, 1.5]), 0)
    table = res.table(show_oracle=True)
    assert res.oracle_choice() is None and "no oracle choice" in table and "nan" not in table
    assert "| defaults **chosen** |" in table  # {} had a blank label
    # refused before any training: no classifier, target labels, a pair twice, an empty grid
    for method, said in (("discogan", "trains no classifier"), ("oracle", "trains on target labels")):
        with pytest.raises(ConfigError, match=said):
            select_hparams(method, ["digits->digits+rot30"], grid=[{}], out=tmp_path, log=None)
    with pytest.raises(ConfigError, match="given twice"):
        select_hparams("dan", ["digits->digits+rot30", "digits,digits+rot30"], grid=[{}], out=tmp_path, log=None)
    with pytest.raises(DataError, match="grid given for 'dan' is empty"):
        select_hparams("dan", ["digits->digits+rot30"], grid=[], out=tmp_path, log=None)
    assert not list(tmp_path.rglob("result.json"))
    # several methods: a grid bad for a later one fails before the first trains
    assert main(["select", "dan", "dann", "--pairs", "digits->digits+rot30", "--grid", '[{"estimator": "linear"}]',
                 "--out", str(tmp_path)]) == 2
    assert "has no hyper-parameter 'estimator'" in capsys.readouterr().err and not list(tmp_path.rglob("result.json"))


def test_an_epoch_a_validator_cannot_score_is_named(monkeypatch):
    from qianyi.errors import ConfigError, QianyiWarning
    from qianyi.select import validators as V

    with pytest.raises(ConfigError, match="selection_samples"):  # SND failed after an epoch of training
        TrainConfig(selection_samples=1)
    class NaNVal(V.Validator):
        name, higher_is_better, needs, paper = "nanval", True, frozenset({"source_val"}), "a test: scores NaN"

        def __call__(self, p):
            return float("nan")
    monkeypatch.setitem(V.VALIDATORS, "nanval", NaNVal)
    with pytest.warns(QianyiWarning, match="'nanval' scored epoch 1 nan: that epoch cannot be chosen"):
        fit = Trainer(get_method("source-only"), TrainConfig(epochs=2, steps_per_epoch=2, select="nanval",
                                                             progress=False)).fit(toy_task())
    assert fit.selection.startswith("validator 'nanval' scored no epoch: last epoch (2)")


def test_select_takes_the_network_and_text_settings_bench_takes(tmp_path, capsys):
    """--backbone and --text as in run/bench: each network's runs are cached apart and named in the report."""
    args = ["select", "dann", "--pairs", "digits->digits+rot30@150", "--grid", '[{"trade_off": 1.0}]', "--epochs",
            "1", "--steps-per-epoch", "2", "--out", str(tmp_path / "img"), "--no-progress"]
    assert main([*args, "--backbone", "mlp"]) == 0
    report = (tmp_path / "img" / "select-dann-dev.md").read_text()
    saved = json.loads((tmp_path / "img" / "select-dann-dev.json").read_text())
    assert "network mlp" in report and saved["network"]["name"] == "mlp"
    assert main([*args, "--backbone", "lenet"]) == 0  # another network: its own run, not the mlp's reused
    assert len(list((tmp_path / "img").rglob("result.json"))) == 2
    nets = {json.loads(p.read_text())["fingerprint"]["backbone"]["name"] for p in (tmp_path / "img").rglob("result.json")}
    assert nets == {"mlp", "lenet"}
    assert main([*args, "--backbone", "mlp"]) == 0 and len(list((tmp_path / "img").rglob("result.json"))) == 2
    assert main([*args, "--backbone", "nope"]) == 2 and "nope" in capsys.readouterr().err

    from .test_text import _toy_text

    _toy_text(tmp_path / "text", n=30)
    pair = f"lines:{tmp_path / 'text' / 's'}->lines:{tmp_path / 'text' / 't'}"
    argv = ["select", "dann", "--pairs", pair, "--grid", '[{"trade_off": 1.0}]', "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "16", "--out", str(tmp_path / "txt"), "--no-progress"]
    assert main([*argv, "--text", "max_len=12"]) == 0
    (done,) = (tmp_path / "txt").rglob("result.json")
    assert json.loads(done.read_text())["fingerprint"]["shape"] == [12]  # texts cut at --text max_len
    assert main([*argv, "--text", "max_len=12", "--backbone", "textcnn"]) == 0
    assert len(list((tmp_path / "txt").rglob("result.json"))) == 2


def test_select_refuses_one_network_instance(tmp_path):
    from qianyi.bench.selection import select_hparams
    from qianyi.errors import ConfigError

    with pytest.raises(ConfigError, match="select trains a fresh network for every run"):
        select_hparams("dann", ["digits->digits+rot30"], backbone=torch.nn.Linear(2, 2), out=tmp_path)


def test_a_candidate_the_validator_could_not_score_is_said_and_its_json_stays_valid(tmp_path, monkeypatch):
    """A NaN seed score ranked its candidate last with a bare "nan", and the .json held NaN (not JSON)."""
    from qianyi.bench.selection import select_hparams
    from qianyi.select import validators as V

    class NaNVal(V.Validator):
        name, higher_is_better, needs, paper = "nanval", True, frozenset({"source_val"}), "a test: scores NaN"

        def __call__(self, p):
            return float("nan")
    monkeypatch.setitem(V.VALIDATORS, "nanval", NaNVal)
    res = select_hparams("source-only", ["digits->digits+rot30@150"], "nanval", grid=[{}], out=tmp_path, log=None,
                         config=TrainConfig(epochs=1, steps_per_epoch=2, progress=False))
    text = (tmp_path / "select-source-only-nanval.md").read_text()
    assert "nan: nanval did not score some seeds' runs (defaults on digits->digits+rot30@150 (1 of 1 seeds))" in text
    saved = json.loads((tmp_path / "select-source-only-nanval.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"{c} in the json"))
    assert saved["scores"] == [[[None]]] and res.chosen == 0
    (folder,) = saved["chosen_runs"].values()  # where the chosen model is, for predict
    assert "One seed per candidate" not in text  # one candidate: no ranking to doubt
    assert (Path(folder) / "model.pt").is_file() and f"digits->digits+rot30@150 seed 0: {folder}" in text


def test_a_one_seed_ranking_says_it_has_no_spread():
    from qianyi.bench.selection import SelectionResult

    one = SelectionResult("dann", "dev", ["a->b"], [{"trade_off": 1.0}, {"trade_off": 0.3}],
                          np.array([[[2.27]], [[2.26]]]), np.full((2, 1, 1), np.nan), np.array([2.0, 1.0]), 1)
    assert "One seed per candidate: nothing here tells a difference in score from seed noise" in one.table()
    three = SelectionResult("dann", "dev", ["a->b"], [{"trade_off": 1.0}, {"trade_off": 0.3}],
                            np.array([[[2.27, 2.3, 2.2]], [[2.26, 2.1, 2.0]]]), np.full((2, 1, 3), np.nan),
                            np.array([2.0, 1.0]), 1)
    assert "One seed" not in three.table()


def test_a_shallow_select_claims_no_model_pt_and_no_epochs(tmp_path):
    """``qianyi select coral-shallow`` said each folder's model.pt serves ``qianyi predict`` (there is none: a
    model.npz, which predict refuses) and printed epochs 20, batch_size 64, which played no part."""
    from qianyi.bench.selection import select_hparams
    from qianyi.errors import ConfigError

    res = select_hparams("coral-shallow", ["digits->digits+rot30@150"], "source-val",
                         grid=[{"reg": 0.01}, {"reg": 1.0}], out=tmp_path, log=None)
    text = (tmp_path / "select-coral-shallow-source-val.md").read_text()
    assert text == res.table() + "\n"
    (folder,) = res.chosen_runs.values()
    assert (Path(folder) / "model.npz").is_file() and not (Path(folder) / "model.pt").exists()
    assert "model.pt" not in text and "holds model.npz, the fitted arrays; `qianyi predict` does not rebuild" in text
    (runs,) = [line for line in text.splitlines() if line.startswith("Runs: ")]
    assert runs == "Runs: shallow fits (no network: no epochs, batch size or optimiser)."
    assert "epochs" not in text.replace(runs, "") and "batch_size" not in text
    with pytest.raises(ConfigError, match=r"shallow method fits no network.*\['epochs'\].*play no part"):
        select_hparams("coral-shallow", ["digits->digits+rot30@150"], "source-val", grid=[{"reg": 1.0, "epochs": 5}],
                       out=tmp_path, log=None)


def test_the_printed_run_line_trains_the_chosen_setting_again(tmp_path, capsys):
    # select named the chosen settings but gave no command to train them on another pair
    import shlex

    args = ["select", "dann", "--pairs", "digits->digits+rot30@150", "--grid",
            '[{"trade_off": 0.3}, {"trade_off": 1.0, "lr": 0.02}]', "--epochs", "2", "--steps-per-epoch", "3",
            "--batch-size", "16", "--backbone", "mlp", "--out", str(tmp_path / "sel"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "sel" / "select-dann-dev.json").read_text())
    (line,) = saved["commands"].values()
    assert f"`{line}`" in out and "--backbone mlp" in line and "--max-samples 150" in line
    argv = shlex.split(line)
    assert argv[:3] == ["qianyi", "run", "dann"]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main([*argv[1:], "--no-progress"]) == 0
    (chosen,) = (v for k, v in saved["chosen_runs"].items())
    first = json.loads((Path(chosen) / "result.json").read_text())
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["fingerprint"]["hparams"] == first["fingerprint"]["hparams"] == {
        **again["fingerprint"]["hparams"], "trade_off": saved["chosen"]["trade_off"]}
    assert again["target_accuracy"] == first["target_accuracy"]  # the same run, trained again


def test_the_printed_run_line_keeps_data_dir_and_a_shallow_line_has_no_training_flags():
    # the line dropped --data-dir (it failed for a user without $QIANYI_DATA) and gave a shallow method --epochs
    from qianyi.bench.selection import run_commands
    from qianyi.train.config import TrainConfig

    config = TrainConfig(epochs=5, batch_size=16)
    (deep,) = run_commands("dann", {"trade_off": 0.3}, config, ["mfeat->digits@200"], data_dir="/d d").values()
    assert deep.startswith("qianyi --data-dir '/d d' run dann ") and "--epochs 5" in deep
    (shallow,) = run_commands("tca", {"mu": 1.0}, config, ["mnist->digits@300"], shallow=True).values()
    assert shallow == "qianyi run tca --source mnist --target digits --set mu=1.0 --max-samples 300 --out runs/tca-chosen"


def test_select_scores_only_the_kept_epoch_and_reuses_runs_that_scored_every_epoch(tmp_path, monkeypatch):
    # select recorded 7 validators at every epoch of every run and read only the last (44% of its training time)
    from dataclasses import replace

    import qianyi.bench.selection as selection
    from qianyi.data import load_task
    from qianyi.select.validators import builtin_validators
    from qianyi.train.run import run_fingerprint
    from qianyi.train.store import RunStore

    config = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=16, progress=False)
    res = selection.select_hparams("dann", ["digits->digits+rot30@150"], "dev", grid=[{"trade_off": 0.3}],
                                   out=tmp_path / "a", config=config, log=None)
    (folder,) = res.chosen_runs.values()
    history = json.loads((Path(folder) / "result.json").read_text())["history"]
    assert [sorted(k for k in row if k.startswith("score_")) != [] for row in history] == [False, False, True]
    every = replace(config, validators=tuple(sorted(builtin_validators())), seed=0)
    task = load_task("digits", "digits+rot30", max_samples=150)
    full, _ = run(get_method("dann", trade_off=0.3), task, every)  # every epoch scored: the same run, the same scores
    assert len([k for k in full.history[0] if k.startswith("score_")]) == len(builtin_validators())
    saved = json.loads((Path(folder) / "result.json").read_text())
    assert saved["scores"] == pytest.approx(full.scores) and saved["target_accuracy"] == full.target_accuracy
    # a run an earlier select stored (every epoch scored) is reused, not trained again
    m = get_method("dann", trade_off=0.3)
    store = RunStore(tmp_path / "b" / "runs")
    run(m, task, every, out=store.path(run_fingerprint(m, every, task)), track_target_test=True)
    monkeypatch.setattr(selection, "run", lambda *a, **k: pytest.fail("trained again"))
    again = selection.select_hparams("dann", ["digits->digits+rot30@150"], "dev", grid=[{"trade_off": 0.3}],
                                     out=tmp_path / "b", config=config, log=None)
    assert again.scores[0, 0, 0] == pytest.approx(full.scores["dev"])


def test_the_printed_run_line_gives_every_part_of_the_chosen_setting(tmp_path):
    """Review mutation2 #5 (S2-S5, S8): only a grid of scalars on an mlp was tested, so a list printed as
    "['a', 'b']", the global --max-samples winning over a pair's cap, --weights, the candidate's lr and --text
    could all drop out of the line unnoticed. The line is parsed back as `qianyi run` parses it."""
    import shlex
    from dataclasses import replace

    from qianyi.bench.selection import run_commands
    from qianyi.cli import _backbone, _text_settings, build_parser, parse_hparams, train_config
    from qianyi.nn.resnet import NamedBackbone

    weights = tmp_path / "resnet18 weights.pth"
    weights.write_bytes(b"not read here")
    config = TrainConfig(epochs=5, batch_size=16, weight_decay=1e-3, deterministic=True, select="dev")
    candidate = {"layers": ["bottleneck", "logits"], "trade_off": 0.5, "lr": 0.02}
    text = {"bigrams": True, "max_vocab": 5000}
    (line,) = run_commands("dan", candidate, config, ["amazon/books->amazon/dvd@500"], max_samples=2000,
                           backbone=NamedBackbone("resnet18", weights=weights), text=text, data_dir="/d d").values()
    for flag in ("--set layers=bottleneck,logits trade_off=0.5", "--lr 0.02", "--max-samples 500",
                 "--backbone resnet18", f"--weights '{weights}'", "--text bigrams=true,max_vocab=5000"):
        assert flag in line, (flag, line)
    argv = shlex.split(line)
    assert argv[0] == "qianyi"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.method, args.source, args.target) == ("run", "dan", "amazon/books", "amazon/dvd")
    assert parse_hparams("dan", args.set) == {"layers": ("bottleneck", "logits"), "trade_off": 0.5}
    assert train_config(args, args.seed) == replace(config, lr=0.02)
    assert args.max_samples == 500 and args.data_dir == "/d d" and _text_settings(args) == text
    net = _backbone(args)
    assert (net.name, str(net.weights)) == ("resnet18", str(weights))
    # without a pair's cap the global one is the run's; without a training setting the config's lr (none) stays
    (line,) = run_commands("dan", {"trade_off": 0.5}, config, ["amazon/books->amazon/dvd"], max_samples=2000).values()
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.max_samples == 2000 and train_config(args, args.seed) == config and args.weights is None


def test_summary_of_a_select_folder_claims_no_validators_choice_of_epoch(tmp_path, capsys):
    # select's runs score their validators at the last epoch only: summary credited each validator with
    # "choosing" the last epoch (dev 75.4 where, scored every epoch, it chose 76.5)
    from qianyi.bench.runner import BenchResult, _utilities

    config = TrainConfig(epochs=3, steps_per_epoch=3, batch_size=16, progress=False)
    from qianyi.bench.selection import select_hparams

    res = select_hparams(
        "dann", ["digits->digits+rot30@150"], "dev", grid=[{"trade_off": 0.3}], out=tmp_path, config=config, log=None)
    assert res.chosen_runs
    bench = BenchResult.from_dirs([tmp_path], variants=True)
    assert bench.validators() == [] and all(_utilities(r.history, "dev") is None for r in bench.runs)
    hist = [{"epoch": 1, "score_dev": 0.5}, {"epoch": 2, "score_dev": 0.4}]
    assert _utilities(hist, "dev") == [-0.5, -0.4]  # scored every epoch: its choice stands


def test_bench_and_select_read_every_pair_before_training_any(monkeypatch, tmp_path):
    # a typo in the second pair was found only after every run of the first had trained (hours, at real settings)
    import qianyi.bench.runner as runner
    import qianyi.bench.selection as selection
    from qianyi.errors import QianyiError

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("trained before reading every pair"))
    monkeypatch.setattr(selection, "run", lambda *a, **k: pytest.fail("trained before reading every pair"))
    with pytest.raises(QianyiError, match="digitz"):
        runner.bench(["dann"], ["digits->digits+rot30@150", "digits->digitz"], seeds=1, out=tmp_path / "b", log=None)
    with pytest.raises(QianyiError, match="digitz"):
        selection.select_hparams("dann", ["digits->digits+rot30@150", "digits->digitz"], "dev",
                                 grid=[{"trade_off": 0.3}], out=tmp_path / "s", log=None)
    texts = tmp_path / "texts"  # a second pair the network cannot read (mlp on token ids)
    texts.mkdir()
    for label, how in (("good", "fine"), ("bad", "poor")):
        (texts / f"{label}.txt").write_text("".join(f"a {how} book number {i}\n" for i in range(40)))
    (tmp_path / "other").mkdir()
    for label, how in (("good", "fine"), ("bad", "poor")):
        (tmp_path / "other" / f"{label}.txt").write_text("".join(f"a {how} film number {i}\n" for i in range(40)))
    text_pair = f"lines:{texts}->lines:{tmp_path / 'other'}"
    with pytest.raises(QianyiError, match="--backbone mlp on a text task"):
        runner.bench(["dann"], ["digits->digits+rot30@150", text_pair], seeds=1, backbone="mlp", log=None)
    with pytest.raises(QianyiError, match="--backbone mlp on a text task"):
        selection.select_hparams("dann", ["digits->digits+rot30@150", text_pair], "dev", grid=[{"trade_off": 0.3}],
                                 out=tmp_path / "s2", backbone="mlp", log=None)


def test_a_diverged_run_stops_neither_bench_nor_select(tmp_path):
    """A setting that diverges (TrainingError) is a result: bench tabulates it as diverged and goes on, select ranks
    it last and chooses among the others; both warn, naming the run. Every run diverging is still an error."""
    from qianyi.bench.runner import bench
    from qianyi.bench.selection import select_hparams
    from qianyi.errors import QianyiWarning, TrainingError

    cfg = TrainConfig(epochs=1, steps_per_epoch=3, progress=False)
    with pytest.warns(QianyiWarning, match=r"dan .* seed 0 DIVERGED"):
        res = bench(["dan"], ["digits->digits+rot30@300"], seeds=1, out=tmp_path / "b", config=cfg,
                    hparams={"dan": {"trade_off": 1e30}}, log=None, embed=False)
    table = (tmp_path / "b" / "results.md").read_text()
    assert "| dan (trade_off=1e+30) | diverged (1/1 seeds) |" in table, table
    assert "DIVERGED, so it has no result" in table and len(res.runs) == 2  # source-only and the oracle
    # its folder says why, so a report read again from the folder names it as diverged, not as killed
    failed, = (tmp_path / "b" / "runs").glob("*/*/*/failed.json")
    assert "diverged" in json.loads(failed.read_text())["message"]
    from qianyi.bench.runner import BenchResult
    with pytest.warns(QianyiWarning, match=r"1 run stopped with an error \(diverged\).*seed0-.*the run diverged"):
        again = BenchResult.from_bench(tmp_path / "b")
    assert again.diverged == res.diverged and "| dan (trade_off=1e+30) | diverged (1/1 seeds) |" in again.report()
    with pytest.warns(QianyiWarning, match=r"dan \(trade_off=1e\+30\) \(diverged\)\); --variants") as said:
        plain = BenchResult.from_dirs([tmp_path / "b"])  # (summary without --variants: left out, as its siblings)
    assert not plain.diverged and not any("stopped with an error" in str(w.message) for w in said)
    assert main(["report", str(failed.parent)]) == 2
    from qianyi.train.result import FAILED_FILE
    done = tmp_path / "later"  # a run that finishes in a folder clears an earlier failure there
    done.mkdir()
    (done / FAILED_FILE).write_text('{"message": "diverged"}')
    run("source-only", load_task("digits", "digits+rot30", max_samples=150), cfg, out=done)
    assert not (done / FAILED_FILE).exists() and (done / "result.json").is_file()
    grid = [{"trade_off": 1e30}, {"trade_off": 1.0}]
    with pytest.warns(QianyiWarning, match="DIVERGED"):
        sel = select_hparams("dan", ["digits->digits+rot30@300"], grid=grid, out=tmp_path / "s", config=cfg,
                             log=None)
    assert sel.choice == {"trade_off": 1.0} and np.isnan(sel.scores[0]).all() and len(sel.diverged) == 1
    assert "Diverged: dan" in sel.table() and "ranks last" in sel.diverged[0] and "did not diverge" not in sel.diverged[0]
    with pytest.raises(TrainingError, match="every run diverged"):
        select_hparams("dan", ["digits->digits+rot30@300"], grid=grid[:1], out=tmp_path / "s", config=cfg, log=None)


def test_a_staged_run_whose_stage_diverges_says_so_in_its_folder(tmp_path, monkeypatch):
    """self-train's teacher stage diverging: the run folder (not only the stage's) holds failed.json naming the
    stage, so a report reads it as diverged, not killed; a later run there clears it."""
    import importlib

    from qianyi.errors import TrainingError
    from qianyi.train.result import read_failure_record

    run_module = importlib.import_module("qianyi.train.run")
    real = run_module._run

    def diverge(method, *a, **k):  # noqa: ANN001, ANN002, ANN003
        raise TrainingError("source-only: loss term(s) {'cls': nan} became non-finite at step 1; the run diverged.")

    monkeypatch.setattr(run_module, "_run", diverge)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, progress=False)
    task = load_task("digits", "digits+rot30", max_samples=150)
    with pytest.raises(TrainingError):
        run("self-train", task, cfg, out=tmp_path / "st")
    record = read_failure_record(tmp_path / "st")
    assert record["method"] == "self-train" and record["stage"] == "source" and "diverged" in record["message"]
    assert main(["report", str(tmp_path / "st")]) == 2
    monkeypatch.setattr(run_module, "_run", real)
    run("self-train", task, cfg, out=tmp_path / "st")
    assert read_failure_record(tmp_path / "st") == {} and (tmp_path / "st" / "result.json").is_file()


def test_a_bench_folder_holding_a_diverged_runs_record_is_still_a_bench(tmp_path):
    from qianyi._io import folder_kind

    (tmp_path / "runs").mkdir()
    (tmp_path / "failed.json").write_text('{"message": "diverged"}')
    assert folder_kind(tmp_path) == "bench"
    (tmp_path / "runs").rmdir()
    assert folder_kind(tmp_path) == "run"

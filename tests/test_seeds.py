"""Seeds: one range (SEED_MAX) checked the same way everywhere, and one reading of ``seeds=`` (a count or distinct
seeds) in bench, select_hparams, transferability, layer_transfer and pivots (review: code health #2, #4, #5, #9)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from qianyi.cli import build_parser, main
from qianyi.errors import ConfigError, DataError, DatasetNotFoundError, UnknownNameError
from qianyi.train.config import (SEED_MAX, SPLIT_SEED_RESERVE, TrainConfig, check_seed, normalise_seeds, seed_int,
                                 split_seed_int)


def test_check_seed_takes_whole_numbers_in_the_one_range():
    assert SEED_MAX == 2 ** 32 - 1
    assert check_seed("seed", 0) == 0 and check_seed("seed", np.int64(SEED_MAX)) == SEED_MAX
    assert type(check_seed("seed", np.int64(7))) is int
    for bad in (-1, SEED_MAX + 1, True, 1.0, "3", None):
        with pytest.raises(ConfigError, match=f"seed must be a whole number between 0 and {SEED_MAX}"):
            check_seed("seed", bad)
    with pytest.raises(ConfigError, match=f"between 0 and {SEED_MAX - 2}"):
        check_seed("split_seed", SEED_MAX - 1, reserve=SPLIT_SEED_RESERVE)
    assert TrainConfig(seed=np.int64(3)).seed == 3 and type(TrainConfig(seed=np.int64(3)).seed) is int


def test_normalise_seeds_reads_a_count_or_distinct_seeds():
    assert normalise_seeds(3, "bench") == [0, 1, 2]
    assert normalise_seeds(2, "pivots", start=5) == [5, 6]
    assert normalise_seeds(range(2), "x") == [0, 1] and normalise_seeds((4, 1), "x") == [4, 1]
    assert normalise_seeds(np.array([2, 0]), "x") == [2, 0]
    for bad, says in ((0, "count of at least 1"), (True, "count of at least 1"), ([], "is empty"),
                      ("3", "count of at least 1"), ([0, 0, 1], "seed 0 is given twice"), ([1, -1], "between 0 and"),
                      ([1.5], "between 0 and"), ([False], "between 0 and")):
        with pytest.raises(ConfigError, match=says):
            normalise_seeds(bad, "bench")
    with pytest.raises(ConfigError, match="last seed"):  # a count from a start near the top runs past it
        normalise_seeds(2, "pivots", start=SEED_MAX)


def test_a_huge_count_of_seeds_is_refused_before_it_is_listed():
    """select/transferability/layers built list(range(N)) of a mistyped --seeds: out of memory, where bench refused."""
    import itertools

    from qianyi.train.config import SEEDS_COUNT_MAX

    assert len(normalise_seeds(SEEDS_COUNT_MAX, "x")) == SEEDS_COUNT_MAX
    assert normalise_seeds(range(SEEDS_COUNT_MAX), "x")[-1] == SEEDS_COUNT_MAX - 1
    with pytest.raises(ConfigError, match=r"select: the last seed \(0 \+ seeds - 1\) must be a whole number between"):
        normalise_seeds(5_000_000_000, "select")  # bench's message, whoever asks
    for bad in (SEEDS_COUNT_MAX + 1, 10 ** 9, np.int64(4_000_000_000)):
        with pytest.raises(ConfigError, match=f"x: seeds={int(bad)}: at most 10,000 seeds at once"):
            normalise_seeds(bad, "x")
    for bad in (range(10 ** 9), range(2 ** 70), itertools.count(), list(range(SEEDS_COUNT_MAX + 1))):
        with pytest.raises(ConfigError, match="x: seeds holds more than 10,000 seeds"):
            normalise_seeds(bad, "x")


@pytest.mark.parametrize("argv", [["select", "dan", "--pairs", "mnist->digits", "--out", "OUT"],
                                  ["transferability", "mnist"], ["layers", "--pairs", "amazon/books->amazon/dvd"]],
                         ids=["select", "transferability", "layers"])
def test_every_seeds_flag_refuses_a_huge_count_as_bench_does(argv, tmp_path, capsys):
    from qianyi.cli import main

    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    for n, says in (("5000000000", "the last seed (0 + seeds - 1) must be a whole number between 0 and 4294967295"),
                    ("1000000000", "seeds=1000000000: at most 10,000 seeds at once")):
        assert main([*argv, "--seeds", n, "--epochs", "1"]) == 2
        err = capsys.readouterr().err
        assert says in err and "out of memory" not in err, err
    assert not (tmp_path / "out").exists()


def test_every_function_that_takes_seeds_refuses_one_given_twice(tmp_path):
    # bench(seeds=[0, 0, 1]) tabulated seed 0 twice (9 runs, the std over three numbers, "Seeds [0, 1]")
    from qianyi.bench.runner import bench
    from qianyi.bench.selection import select_hparams
    from qianyi.measure.layers_text import layer_transfer
    from qianyi.measure.pivots import pivots
    from qianyi.measure.transferability import transferability

    calls = {"bench": lambda: bench(["dann"], ["digits->digits+rot30"], seeds=[0, 0, 1], log=None),
             "select": lambda: select_hparams("dan", ["digits->digits+rot30"], seeds=[0, 0], out=tmp_path, log=None),
             "transferability": lambda: transferability([], seeds=[1, 1], log=None),
             "layer_transfer": lambda: layer_transfer([], seeds=[2, 2], log=None),
             "pivots": lambda: pivots("amazon/books", "amazon/dvd", tmp_path, seeds=[0, 0])}
    for who, call in calls.items():
        with pytest.raises(ConfigError, match=f"{who}: seed [0-9] is given twice"):
            call()


def test_pivots_takes_a_sequence_of_seeds_and_one_with_run(tmp_path):
    # pivots(seeds=[0, 1]) was a TypeError ('<' between a list and an int); it is read, then the data are
    from qianyi.measure.pivots import pivots

    with pytest.raises(DatasetNotFoundError, match="/nonexistent/s"):
        pivots("lines:/nonexistent/s", "lines:/nonexistent/t", tmp_path, seeds=[3, 5])
    with pytest.raises(DataError, match="seeds is 1 with it"):
        pivots("lines:/nonexistent/s", "lines:/nonexistent/t", tmp_path, run_dir=tmp_path, seeds=[3, 5])


def _seed_flags() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, a) for name, p in sub.choices.items() for a in p._actions if a.dest in ("seed", "split_seed")]


def test_every_seed_flag_states_the_range_the_library_takes():
    # --seed was a plain int on demo/run/measure/advise/pivots/proxy (proxy took -1, and 2**64-1 gave a traceback);
    # layers --split-seed named 0..4294967295 while load_task took 0..4294967293
    flags = _seed_flags()
    assert {n for n, a in flags if a.dest == "seed"} >= {"demo", "run", "measure", "advise", "pivots", "proxy"}
    for name, action in flags:
        loads_task = action.dest == "split_seed" and name != "transferability"  # (which splits classes itself)
        assert action.type is (split_seed_int if loads_task else seed_int), (name, action.dest)
    for bad in ("-1", str(SEED_MAX + 1), "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_int(bad)
    assert seed_int(str(SEED_MAX)) == SEED_MAX
    assert split_seed_int(str(SEED_MAX - 2)) == SEED_MAX - 2
    with pytest.raises(argparse.ArgumentTypeError, match=f"between 0 and {SEED_MAX - 2}"):
        split_seed_int(str(SEED_MAX - 1))
    from qianyi.data.tasks import load_task  # the range load_task itself takes: the same

    with pytest.raises(ConfigError, match=f"between 0 and {SEED_MAX - 2}"):
        load_task("digits", "digits+rot30", split_seed=SEED_MAX - 1)
    with pytest.raises(DatasetNotFoundError) as exc:  # past the seed check: the data are read (and missing)
        load_task("npz:/nonexistent/s.npz", "npz:/nonexistent/t.npz", split_seed=SEED_MAX - 2)
    assert "split_seed" not in str(exc.value)


def test_proxy_seeds_out_of_range_are_refused_clearly(tmp_path, capsys):
    from qianyi.proxy import ProxyTransfer

    X, p = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20.0)
    for bad in (2 ** 64, -1, SEED_MAX + 1):  # 2**64: "Overflow when unpacking long long" from torch
        with pytest.raises(ConfigError, match=f"random_state must be a whole number between 0 and {SEED_MAX}"):
            ProxyTransfer(random_state=bad, steps=2).fit_proxy(X, p)
    assert ProxyTransfer(random_state=SEED_MAX, steps=2).fit_proxy(X, p).net_ is not None
    (tmp_path / "t.csv").write_text("a,nl,w\n" + "".join(f"{i},{i},{i}\n" for i in range(10)))
    with pytest.raises(SystemExit):
        main(["proxy", str(tmp_path / "t.csv"), "--proxy", "nl", "--target", "w", "--seed=-1"])
    assert f"--seed: must be between 0 and {SEED_MAX}, got -1" in capsys.readouterr().err


def test_validators_all_among_names_is_every_validator():
    # --validators all,dev was refused as "unknown ['all']" by a message that offered 'all'
    from qianyi.select.validators import available_validators

    every = tuple(available_validators())
    assert TrainConfig(validators="all,dev").validators == every == TrainConfig(validators=("dev", "all")).validators
    assert TrainConfig(validators="all").validators == every
    with pytest.raises(UnknownNameError, match=r"unknown \[.typo.\]"):
        TrainConfig(validators="all,typo")

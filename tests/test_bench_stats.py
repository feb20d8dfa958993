"""How bench/summary tables word their statistical claims (review: stats): wins as shown and beyond seed noise,
no interval without seed variation, no gap closed within seed noise, sample std in the benchmark scripts, and the
stored honesty tables' cost cells."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from qianyi.bench.runner import BenchResult
from qianyi.train.result import RunResult

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(source_accuracy=0.9, train_seconds=1.0, selection="last", oracle=False, hparams={}, config={},
            n_source=10, n_target_train=10, n_target_test=5, device="cpu")
P, Q, R = ("a", "b"), ("c", "d"), ("e", "f")


def _runs(method: str, pair: tuple[str, str], accs: list[float]) -> list[RunResult]:
    return [RunResult(**{**BASE, "oracle": method == "oracle"}, source=pair[0], target=pair[1], method=method, seed=s,
                      target_accuracy=a) for s, a in enumerate(accs)]


def _row(table: str, label: str) -> list[str]:
    return [c.strip() for c in next(line for line in table.splitlines() if line.startswith(f"| {label} |")).split("|")]


@pytest.mark.parametrize("a, b", [([0.6222, 0.6222, 0.6222], [0.5556, 0.5556, 0.5556]),  # knn vs tca: no seed varies
                                  ([0.60, 0.62], [0.601, 0.621])])  # +0.1 on both seeds (floating point aside)
def test_a_difference_the_same_on_every_seed_gets_no_interval_and_no_verdict_beyond_seed_noise(a, b):
    res = BenchResult(_runs("knn", P, a) + _runs("tca", P, b), [P], ["knn", "tca"]).paired_difference("knn", "tca")
    assert res.rows[0].constant and res.rows[0].interval is None and res.interval is None
    assert "beyond seed noise" not in res.verdict()
    assert res.verdict().startswith("no seed variation (identical on every seed): the interval would cover no "
                                    "test-sample noise")
    table = res.table()
    assert re.search(r"\| a->b \| \d \| [\d.]+ \| [\d.]+ \| [-+][\d.]+ \| – \|", table)
    assert "| mean over pairs |" in table and table.count("| – |") == 2


def test_a_pair_without_seed_variation_beside_one_with_it_keeps_the_mean_interval_and_says_which():
    runs = (_runs("knn", P, [0.6, 0.6, 0.6]) + _runs("tca", P, [0.55, 0.55, 0.55])
            + _runs("knn", Q, [0.5, 0.6, 0.55]) + _runs("tca", Q, [0.52, 0.61, 0.58]))
    res = BenchResult(runs, [P, Q], ["knn", "tca"]).paired_difference("knn", "tca")
    assert res.rows[0].interval is None and res.rows[1].interval is not None and res.interval is not None
    assert "– on a->b: no seed variation (identical on every seed)" in res.table()
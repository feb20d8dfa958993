"""How bench/summary tables word their statistical claims (review: stats): wins as shown and beyond seed noise,
no interval without seed variation, no gap closed within seed noise, sample std in the benchmark scripts, and the
stored honesty tables' cost cells."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
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


def test_a_win_over_source_only_is_a_mean_above_it_as_shown_and_the_table_says_how_many_are_beyond_seed_noise():
    # P: dann 58.02 vs 57.96 (shown 58.0 / 58.0: a tie, counted as a win before); Q: +10 on every seed, steady;
    # R: +3 on average, seeds disagree (the paired interval reaches below 0)
    runs = (_runs("source-only", P, [0.5796, 0.5496, 0.6096]) + _runs("dann", P, [0.5802, 0.5500, 0.6104])
            + _runs("source-only", Q, [0.50, 0.52, 0.51]) + _runs("dann", Q, [0.60, 0.621, 0.609])
            + _runs("source-only", R, [0.50, 0.52, 0.51]) + _runs("dann", R, [0.60, 0.45, 0.57])
            + [r for p in (P, Q, R) for r in _runs("oracle", p, [0.90, 0.91, 0.92])])
    res = BenchResult(runs, [P, Q, R], ["source-only", "dann", "oracle"])
    summary = res.summary_table()
    assert "| method | mean acc. over pairs (%) | mean gap closed | above source-only on | beyond seed noise on |" \
        in summary
    assert _row(summary, "dann")[4:6] == ["2/3", "1/3"]
    assert _row(summary, "source-only")[4:6] == ["–", "–"]
    assert "as the table shows them (one decimal; a tie is no win)" in summary
    assert "lies above 0" in summary


def test_wins_beyond_seed_noise_need_an_interval():
    one = BenchResult(_runs("source-only", P, [0.5]) + _runs("dann", P, [0.6]) + _runs("source-only", Q, [0.5])
                      + _runs("dann", Q, [0.6]), [P, Q], ["source-only", "dann"])
    assert _row(one.summary_table(), "dann")[4:6] == ["2/2", "–"]  # one seed: above as shown, nothing tested
    same = BenchResult(_runs("source-only", P, [0.5, 0.6]) + _runs("dann", P, [0.6, 0.7]) + _runs("source-only", Q,
                       [0.5, 0.6]) + _runs("dann", Q, [0.6, 0.75]), [P, Q], ["source-only", "dann"])
    table = same.summary_table()  # P: +10 on both seeds (no seed variation): untested, not "beyond seed noise"
    assert _row(table, "dann")[4:6] == ["2/2", "0/2 (1 untested)"]
    assert "Untested: pairs with no such interval" in table


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


def _near_gap_runs() -> list[RunResult]:
    # P: a real gap (oracle 30 points above source-only); Q: the oracle 0.4 above source-only, seeds spread ~2
    return (_runs("source-only", P, [0.60, 0.62, 0.58]) + _runs("dann", P, [0.70, 0.72, 0.71])
            + _runs("oracle", P, [0.90, 0.91, 0.89])
            + _runs("source-only", Q, [0.950, 0.930, 0.968]) + _runs("dann", Q, [0.945, 0.94, 0.95])
            + _runs("oracle", Q, [0.955, 0.95, 0.954]))


def test_gap_closed_is_left_out_where_the_oracle_is_within_seed_noise_of_source_only():
    res = BenchResult(_near_gap_runs(), [P, Q], ["source-only", "dann", "oracle"])
    assert res.gap_closed("dann", P) == pytest.approx((0.71 - 0.60) / (0.90 - 0.60))
    assert res.gap_closed("dann", Q) is None  # it printed -118%
    assert res.oracle_within_noise(Q) is not None and res.oracle_within_noise(P) is None
    table = res.table()
    assert _row(table, "dann")[3] == "37%" and _row(table, "dann")[5] == "–"
    assert "Gap closed – on c->d (oracle − source-only +0.4 points, 95% interval [" in table
    assert "not above source-only beyond seed noise there" in table
    summary = res.summary_table()
    assert _row(summary, "dann")[3] == "37% (1/2 pairs)"  # it averaged 37% and -118% into -41%
    assert "(k/N pairs): the mean gap closed of the k pairs where gap closed is defined" in summary


def test_gap_closed_stays_with_one_seed_or_a_clear_gap():
    one = BenchResult(_runs("source-only", P, [0.6]) + _runs("dann", P, [0.7]) + _runs("oracle", P, [0.8]), [P],
                      ["source-only", "dann", "oracle"])
    assert one.gap_closed("dann", P) == pytest.approx(0.5)  # no interval to tell noise by: the ratio as before
    clear = BenchResult([r for r in _near_gap_runs() if r.source == "a"], [P], ["source-only", "dann", "oracle"])
    assert "Gap closed – on" not in clear.table()
    assert _row(clear.summary_table(), "dann")[3] == "37%"


def _script(name: str) -> dict:
    return runpy.run_path(str(ROOT / "benchmarks" / name), run_name="not_main")


def test_the_benchmark_scripts_print_the_sample_std():
    """benchmarks/cotraining.py and vectors.py printed numpy's default (population, ddof=0) std as 'sd'/'std'."""
    fmt = _script("cotraining.py")["fmt"]
    assert fmt([0.90, 0.91, 0.87]) == "89.3 ± 2.1"  # ddof=0 gave 1.7
    assert fmt([0.5]) == "50.0"  # one seed: no spread
    table = _script("vectors.py")["_table"]
    rows = {("A->C", "dann", s): {"target_accuracy": v} for s, v in enumerate([0.70, 0.66, 0.74])}
    assert "| A->C | 70.0 ± 4.0 |" in table(rows, ["A->C"], ["dann"])  # ddof=0 gave 3.3


def test_proxy_summarise_gives_the_sample_sd():
    from qianyi import proxy as P_

    rows = [{"protocol": "a", "n": 10, "all": False, "method": "ridge", "r2": v, "pearson_r2": v, "spearman": v}
            for v in (0.2, 0.4, 0.9)]
    rows.append({"protocol": "a", "n": 20, "all": False, "method": "ridge", "r2": 1.0, "pearson_r2": 1, "spearman": 1})
    out = {r["n"]: r for r in P_.summarise(rows)}
    assert out[10]["r2_sd"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert np.isnan(out[20]["r2_sd"])  # one run: no spread (not 0.0)


def test_the_stored_honesty_tables_cost_is_the_difference_of_their_cells():
    """docs/results keeps tables the bench wrote; the cost column is the ORACLE-choice cell minus the label-free
    cell as shown (runner.honesty_table), and an older qianyi's rounding left 19 cells 0.1 off."""
    checked = 0
    for path in sorted((ROOT / "docs" / "results").glob("*.md")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not (line.startswith("| method |") and "ORACLE choice | cost" in line):
                continue
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                for k in range(1, len(cells), 3):
                    if cells[k] == "–":
                        continue
                    own, oracle, cost = map(float, cells[k:k + 3])
                    assert round(oracle - own, 1) == cost, f"{path.name}: {row}"
                    checked += 1
    assert checked > 50

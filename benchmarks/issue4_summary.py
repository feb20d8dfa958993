"""Summarise the issue-4 benchmark over all its pairs: per method, mean target accuracy over pairs,
mean gap closed, and on how many pairs the method beats source-only (seed means).

    python benchmarks/issue4_summary.py runs/bench_issue4/uci/results.csv runs/bench_issue4/28px/results.csv
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict

import numpy as np


def main(paths: list[str]) -> None:
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in paths:
        with open(path) as fh:
            for row in csv.DictReader(fh):
                acc[(row["method"], f"{row['source']}->{row['target']}")].append(float(row["target_accuracy"]))
    pairs = sorted({p for _, p in acc}, key=lambda p: [k[1] for k in acc].index(p))
    methods = list(dict.fromkeys(m for m, _ in acc))
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    print("| method | mean acc. over pairs (%) | mean gap closed | beats source-only on |")
    print("|---|---:|---:|---:|")
    for m in methods:
        if not all((m, p) in mean for p in pairs):
            continue
        gaps = [(mean[(m, p)] - mean[("source-only", p)]) / (mean[("oracle", p)] - mean[("source-only", p)])
                for p in pairs]
        wins = sum(mean[(m, p)] > mean[("source-only", p)] for p in pairs)
        label = "oracle (ORACLE: target labels)" if m == "oracle" else m
        gap = "–" if m in ("source-only", "oracle") else f"{round(100 * float(np.mean(gaps)))}%"
        won = "–" if m in ("source-only", "oracle") else f"{wins}/{len(pairs)}"
        print(f"| {label} | {100 * np.mean([mean[(m, p)] for p in pairs]):.1f} | {gap} | {won} |")
    print(f"\nPairs: {', '.join(pairs)}; seed means per pair, then the plain mean over pairs.")


if __name__ == "__main__":
    main(sys.argv[1:])

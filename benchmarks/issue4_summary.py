"""Summaries for issue 4.

Bench: per method, mean target accuracy over all pairs, mean gap closed, and on how many pairs the
method beats source-only (seed means):

    python benchmarks/issue4_summary.py runs/bench-issue2/results.csv runs/bench_issue4/28px-5k/results.csv

Selection (``--select``): combine the label-free scores of ``benchmarks/select_defaults.py`` runs
(one scores.jsonl per protocol, e.g. the UCI pairs at full size and the 28x28 pairs capped) into
one choice per method over all their pairs. The rule, fixed before any score was seen:

* per pair, candidates are ranked by DEV (lower is better) when DEV's mean importance weight lies
  in [0.5, 2] for every candidate on that pair; otherwise DEV is unreliable there (an
  over-confident domain classifier; DEV can even turn negative) and the pair is ranked by the
  self-normalised importance-weighted risk ``iw_risk`` instead;
* the candidate with the best mean rank over the pairs wins; ties go to the lowest mean of the
  per-pair scores used.

No target label enters: DEV and iw_risk use source labels and unlabelled target inputs only.

    python benchmarks/issue4_summary.py --select runs/select_issue4_final/uci/scores.jsonl \\
        runs/select_issue4_final/28px/scores.jsonl --methods ddc,drcn,dsn
"""
from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from typing import Any

import numpy as np

WEIGHT_RANGE = (0.5, 2.0)


def bench_summary(paths: list[str]) -> None:
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


def _hp(row: dict[str, Any]) -> str:
    return json.dumps(row.get("hparams", {"trade_off": row.get("trade_off")}), sort_keys=True)


def select_summary(paths: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in paths:
        with open(path) as fh:
            for line in fh:
                r = json.loads(line)
                rows[(r["method"], _hp(r), r["pair"])] = r  # a later line (a rerun) replaces an earlier one
    choice = {}
    for m in methods:
        pairs = list(dict.fromkeys(p for mm, _, p in rows if mm == m))
        cands = [h for h in dict.fromkeys(h for mm, h, _ in rows if mm == m)
                 if all((m, h, p) in rows for p in pairs)]
        if not cands:
            continue
        used, scores = [], np.zeros((len(cands), len(pairs)))
        for j, p in enumerate(pairs):
            ws = [rows[(m, h, p)].get("mean_weight", 1.0) for h in cands]
            ok = all(WEIGHT_RANGE[0] <= w <= WEIGHT_RANGE[1] for w in ws)
            used.append("dev" if ok else "iw_risk")
            scores[:, j] = [rows[(m, h, p)][used[-1]] for h in cands]
        ranks = np.argsort(np.argsort(scores, axis=0), axis=0).mean(1) + 1
        best = min(range(len(cands)), key=lambda i: (ranks[i], scores[i].mean()))
        choice[m] = json.loads(cands[best])
        print(f"\n{m}: pairs ranked by " + ", ".join(f"{p} {u}" for p, u in zip(pairs, used)))
        print("| candidate | " + " | ".join(f"{p} DEV / IW risk (mean w, src acc)" for p in pairs) + " | mean rank |")
        print("|---|" + "---|" * len(pairs) + "---:|")
        for i, h in enumerate(cands):
            cells = []
            for p, u in zip(pairs, used):
                r = rows[(m, h, p)]
                dev, iw = f"{r['dev']:.3f}", f"{r['iw_risk']:.3f}" if "iw_risk" in r else "–"
                dev, iw = (f"**{dev}**", iw) if u == "dev" else (dev, f"**{iw}**")
                cells.append(f"{dev} / {iw} ({r.get('mean_weight', float('nan')):.2f}, {100 * r['source_val_acc']:.1f})")
            hp = ", ".join(f"{k}={v}" for k, v in json.loads(h).items())
            print(f"| {hp}{' **chosen**' if i == best else ''} | " + " | ".join(cells) + f" | {ranks[i]:.2f} |")
    print("\nIn bold: the score that ranked each pair. chosen: " + json.dumps(choice))
    return choice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="results.csv files (bench) or scores.jsonl files (--select)")
    ap.add_argument("--select", action="store_true", help="combine select_defaults scores over all pairs")
    ap.add_argument("--methods", default=None, help="with --select: methods to report (default: all)")
    args = ap.parse_args()
    if args.select:
        methods = args.methods.split(",") if args.methods else list(dict.fromkeys(
            json.loads(line)["method"] for p in args.paths for line in open(p)))
        select_summary(args.paths, methods)
    else:
        bench_summary(args.paths)


if __name__ == "__main__":
    main()

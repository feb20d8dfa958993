"""Would a label-free score have warned about a method that hurts? For every trained model of a
``qianyi bench`` folder, compute DEV and the importance-weighted source risk (``qianyi.select``:
source labels and unlabelled target inputs only) and compare each method with source-only, seed by
seed. Target accuracies (from result.json) are printed beside them for the reader; they choose
nothing here.

    QIANYI_DATA=../shared/data python benchmarks/label_free_check.py runs/bench_issue4/28px-5k \\
        --pairs 'mnist->mnist-m' 'fashion->fashion+rot30' --max-samples 5000
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

import qianyi
from qianyi.bench import parse_pair
from qianyi.measure.report import load_model
from qianyi.select import dev_details


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_dir", help="an --out folder of qianyi bench")
    ap.add_argument("--pairs", nargs="+", required=True)
    ap.add_argument("--max-samples", type=int, default=None, help="as given to qianyi bench")
    args = ap.parse_args()
    root = Path(args.bench_dir) / "runs"
    print("| pair | method | DEV (seeds) | IW risk (seeds) | mean weight | seeds DEV > source-only | target acc. % (not used) |")
    print("|---|---|---|---|---:|---:|---|")
    for pair in args.pairs:
        source, target = parse_pair(pair)
        task = qianyi.load_task(source, target, max_samples=args.max_samples)
        sizes = (len(task.source), len(task.target), len(task.target_test))
        rows: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
        for res in sorted(root.glob("*/*/*/result.json")):
            r = json.loads(res.read_text())
            if (r["source"], r["target"]) != (source, target) or r["method"] == "oracle":
                continue
            if (r["n_source"], r["n_target_train"], r["n_target_test"]) != sizes:
                continue
            if r["hparams"] != json.loads(json.dumps(qianyi.get_method(r["method"]).hparams())):
                continue  # a run with earlier defaults
            model = load_model(res.parent / "model.pt", task)
            d = dev_details(model, task.source, task.source_val, task.target)
            rows[r["method"]][r["seed"]] = {**d, "acc": 100 * r["target_accuracy"]}
        base = rows.get("source-only", {})
        for m, by_seed in rows.items():
            seeds = sorted(by_seed)
            dev = [by_seed[s]["dev"] for s in seeds]
            iw = [by_seed[s]["iw_risk"] for s in seeds]
            w = np.mean([by_seed[s]["mean_weight"] for s in seeds])
            worse = sum(by_seed[s]["dev"] > base[s]["dev"] for s in seeds if s in base) if m != "source-only" else "–"
            accs = " / ".join(f"{by_seed[s]['acc']:.1f}" for s in seeds)
            print(f"| {pair} | {m} | {' / '.join(f'{v:.2f}' for v in dev)} | {' / '.join(f'{v:.2f}' for v in iw)} "
                  f"| {w:.2f} | {worse} | {accs} |", flush=True)


if __name__ == "__main__":
    main()

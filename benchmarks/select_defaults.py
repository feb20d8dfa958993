"""Choose each method's default trade-off WITHOUT target labels: train each candidate, score it
with DEV (Deep Embedded Validation, label-free) and source-validation accuracy, pick the value
with the best mean DEV rank over the pairs. The target test split is never scored here.

    python benchmarks/select_defaults.py --out runs/select_defaults
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import qianyi
from qianyi._io import write_text
from qianyi.select import dev_score
from qianyi.train import TrainConfig, Trainer, accuracy

GRID = {"dan": [0.3, 1.0, 3.0, 10.0], "dann": [0.3, 1.0, 3.0], "ddc": [0.25, 1.0, 4.0],
        "jan": [0.3, 1.0, 3.0], "coral": [0.3, 1.0, 3.0, 10.0], "dsan": [0.5, 1.0, 3.0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=["mnist->digits", "digits->mnist"])
    ap.add_argument("--methods", default=",".join(GRID))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", default="runs/select_defaults")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    cache = out / "scores.jsonl"
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            done[(r["pair"], r["method"], r["trade_off"])] = r
    for pair in args.pairs:
        s, t = pair.split("->")
        task = qianyi.load_task(s, t)
        for m in args.methods.split(","):
            for lam in GRID[m]:
                key = (pair, m, lam)
                if key not in done:
                    cfg = TrainConfig(seed=args.seed, progress=False)
                    if args.epochs:
                        cfg.epochs = args.epochs
                    fit = Trainer(qianyi.get_method(m, trade_off=lam), cfg).fit(task)
                    r = {"pair": pair, "method": m, "trade_off": lam,
                         "dev": dev_score(fit.model, task.source, task.source_val, task.target),
                         "source_val_acc": accuracy(fit.model, task.source_val)}
                    out.mkdir(parents=True, exist_ok=True)
                    with open(cache, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
                    done[key] = r
                    print(json.dumps(r), flush=True)
                rows.append(done[key])
    lines = ["| method | trade_off | " + " | ".join(f"{p} DEV (src acc)" for p in args.pairs) + " | mean DEV rank |",
             "|---|---|" + "---|" * len(args.pairs) + "---|"]
    choice = {}
    for m in args.methods.split(","):
        ranks = np.zeros(len(GRID[m]))
        for p in args.pairs:
            devs = [next(r for r in rows if r["pair"] == p and r["method"] == m and r["trade_off"] == lam)["dev"]
                    for lam in GRID[m]]
            ranks += np.argsort(np.argsort(devs))
        ranks /= len(args.pairs)
        choice[m] = GRID[m][int(np.argmin(ranks))]
        for i, lam in enumerate(GRID[m]):
            cells = []
            for p in args.pairs:
                r = next(r for r in rows if r["pair"] == p and r["method"] == m and r["trade_off"] == lam)
                cells.append(f"{r['dev']:.4f} ({100 * r['source_val_acc']:.1f})")
            mark = " **chosen**" if lam == choice[m] else ""
            lines.append(f"| {m} | {lam}{mark} | " + " | ".join(cells) + f" | {ranks[i] + 1:.1f} |")
    text = "\n".join(lines) + "\n\nchosen: " + json.dumps(choice) + "\n"
    write_text(out / "select_defaults.md", text)
    print(text)


if __name__ == "__main__":
    main()

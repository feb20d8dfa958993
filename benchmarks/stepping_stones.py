"""Stepping stones chosen from a mixed pool (issue 14): does the label-free selection prefer the useful
intermediate data over irrelevant data, and does it beat direct transfer?

Task: Rotating MNIST, source 0-5 degrees -> target 55-60 degrees (docs/self-training.md). Pool: the
five intermediate rotations 5-55 degrees (12,500 unlabelled digits: useful) mixed with Fashion-MNIST
(2,500 unlabelled clothing images: irrelevant), given in no particular order. Rows per seed, all
from the same source model and with `self-train` in every stage:

* direct: self-training on the target;
* select: `--via-mode select` on the mixed pool (4 rounds up to half of the pool, then the target);
* gradual (reference, needs the order and no junk): the five rotations in order, then the target.

    QIANYI_DATA=../shared/data python benchmarks/stepping_stones.py --seeds 1 --out runs/stepping-stones
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

import qianyi
from qianyi.cli import script_main  # noqa: E402
from qianyi.data import load_via
from qianyi.train import TrainConfig, run, run_via
from qianyi.train.transitive import stages_table

from gradual import accuracy_table  # benchmarks/gradual.py (this script's folder is on sys.path)

SOURCE, TARGET = "rotmnist?angles=0-5", "rotmnist?angles=55-60"
USEFUL = [f"rotmnist?angles={a}-{a + 10}" for a in range(5, 55, 10)]
JUNK = "fashion"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--only-seed", type=int, default=None, help="run this one seed (e.g. in a second process; a "
                   "later run with --seeds N reuses every finished stage)")
    p.add_argument("--junk", type=int, default=2500, help="Fashion-MNIST images in the pool (default 2500)")
    p.add_argument("--out", default="runs/stepping-stones")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-gradual", action="store_true", help="skip the gradual reference row")
    p.add_argument("--novelty", action="store_true", help="also the selection with DDTL's novelty term (an "
                   "autoencoder's reconstruction error, trained on source + target only)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    task = qianyi.load_task(SOURCE, TARGET)
    useful = [load_via(v, task) for v in USEFUL]
    junk = load_via(JUNK, task, max_samples=args.junk)
    pool = useful + [junk]
    print(task.describe(), "| pool:", ", ".join(f"{d.name} ({len(d)})" for d in pool), file=sys.stderr)
    out = Path(args.out)
    rows: dict[str, list[float]] = {"source model": [], "direct self-training on the target": [],
                                    "stepping stones selected from the mixed pool": [],
                                    "stepping stones, with the novelty term": [],
                                    "gradual through the rotations in order (reference)": []}
    shares: list[dict[str, float]] = []
    novelty_shares: list[dict[str, float]] = []
    for seed in [args.only_seed] if args.only_seed is not None else range(args.seeds):
        cfg = TrainConfig(seed=seed, progress=False)
        src, _ = run("source-only", task, cfg, out=out / f"seed{seed}" / "source")
        rows["source model"].append(src.target_accuracy)
        start = replace(cfg, init_from=str(out / f"seed{seed}" / "source" / "model.pt"))
        res, _ = run_via("self-train", task, [], start, out=out / f"seed{seed}" / "direct")
        rows["direct self-training on the target"].append(res.target_accuracy)
        res, stages = run_via("self-train", task, pool, start, out=out / f"seed{seed}" / "select", mode="select",
                              track_target_test=True)
        rows["stepping stones selected from the mixed pool"].append(res.target_accuracy)
        print(stages_table(stages), file=sys.stderr)
        shares.append(stages[-2].selected or {})
        if args.novelty:
            res, stages = run_via("self-train", task, pool, start, out=out / f"seed{seed}" / "select-novelty",
                                  mode="select", track_target_test=True, novelty=True)
            rows["stepping stones, with the novelty term"].append(res.target_accuracy)
            print(stages_table(stages), file=sys.stderr)
            novelty_shares.append(stages[-2].selected or {})
        if not args.no_gradual:
            res, _ = run_via("self-train", task, useful, start, out=out / f"seed{seed}" / "gradual")
            rows["gradual through the rotations in order (reference)"].append(res.target_accuracy)
    lines = accuracy_table(rows)
    names = list(shares[0])
    useful_share = np.mean([np.mean([s[n] for n in names if n != JUNK]) for s in shares])
    junk_share = np.mean([s[JUNK] for s in shares])
    lines.append("")
    lines.append(f"Last selection round (half of the pool): {100 * useful_share:.0f}% of the rotated digits and "
                 f"{100 * junk_share:.0f}% of the Fashion-MNIST images selected (mean over seeds); per domain: "
                 + ", ".join(f"{n} {100 * np.mean([s[n] for s in shares]):.0f}%" for n in names))
    for label, sh in (("with the novelty term", novelty_shares),):
        if sh:
            lines.append("")
            lines.append(f"Last selection round, {label}: "
                         + ", ".join(f"{n} {100 * np.mean([s[n] for s in sh]):.0f}%" for n in names))
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))

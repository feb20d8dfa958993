"""Gradual self-training on Rotating MNIST (Kumar, Ma, Liang, ICML 2020), with qianyi's `--via` stages.

Rows, as in the paper's table: the source model on the target; self-training directly on the target;
self-training on all unlabelled data (intermediate + target) at once; gradual self-training through
the intermediate rotations in order. Every row starts from the same source model (per seed) and
uses the `self-train` method with its defaults; target labels score each final model once (and
record each stage's target accuracy, marked ORACLE, for the stage plot only).

    QIANYI_DATA=../shared/data python benchmarks/gradual.py --seeds 3 --out runs/gradual

Resumable: finished stages are reused.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

import qianyi
from qianyi._io import write_text  # noqa: E402
from qianyi.cli import script_main  # noqa: E402
from qianyi.data import load_via
from qianyi.train import TrainConfig, run, run_via
from qianyi.train.transitive import stages_table

SOURCE, TARGET = "rotmnist?angles=0-5", "rotmnist?angles=55-60"


def via_specs(step: int) -> list[str]:
    """The intermediate domains from 5 to 55 degrees in windows of ``step`` degrees, nearest the source first."""
    return [f"rotmnist?angles={a}-{a + step}" for a in range(5, 55, step)]


def accuracy_table(rows: dict[str, list[float]]) -> list[str]:
    """Markdown lines: each row's target accuracy (%), mean ± sample std over seeds, and per seed."""
    lines = ["| row | target accuracy (%) | per seed |", "|---|---:|---|"]
    for label, accs in rows.items():
        if accs:
            a = 100 * np.array(accs)
            lines.append(f"| {label} | {a.mean():.1f} ± {a.std(ddof=1) if len(a) > 1 else 0:.1f} | "
                         f"{' / '.join(f'{v:.1f}' for v in a)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--only-seed", type=int, default=None, help="run this one seed (e.g. in a second process; "
                   "a later run with --seeds N reuses every finished stage)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per stage (default 20)")
    p.add_argument("--method", default="self-train", help="the method of every adaptation stage (default self-train)")
    p.add_argument("--out", default="runs/gradual", help="output folder (default runs/gradual)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--step", type=int, default=5, choices=[5, 10, 25],
                   help="degrees per intermediate domain (default 5: 10 domains of 1,250 images; Kumar et al. "
                        "used windows of 2,000 of 42,000 images, about 2.6 degrees)")
    p.add_argument("--rows", default="source,target,all,gradual", help="which rows (default all four)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    task = qianyi.load_task(SOURCE, TARGET)
    via = [load_via(v, task) for v in via_specs(args.step)]
    wanted = set(args.rows.split(","))
    print(task.describe(), "| via:", ", ".join(f"{d.name} ({len(d)})" for d in via), file=sys.stderr)
    out = Path(args.out)
    rows: dict[str, list[float]] = {"source model": [], "self-training on the target": [],
                                    "self-training on all unlabelled data": [], "gradual self-training": []}
    for seed in ([args.only_seed] if args.only_seed is not None else range(args.seeds)):
        cfg = TrainConfig(epochs=args.epochs, seed=seed, progress=False)
        src, _ = run("source-only", task, cfg, out=out / f"seed{seed}" / "source")
        rows["source model"].append(src.target_accuracy)
        start = replace(cfg, init_from=str(out / f"seed{seed}" / "source" / "model.pt"))
        for key, label, vias, mode, folder in (
                ("target", "self-training on the target", [], "gradual", "target"),
                ("all", "self-training on all unlabelled data", via, "all", f"all-{args.step}deg"),
                ("gradual", "gradual self-training", via, "gradual", f"gradual-{args.step}deg")):
            if key not in wanted:
                continue
            res, stages = run_via(args.method, task, vias, start, out=out / f"seed{seed}" / folder, mode=mode,
                                  track_target_test=True)
            rows[label].append(res.target_accuracy)
            print(f"seed {seed} {label}: {100 * res.target_accuracy:.1f}%", file=sys.stderr)
            if key == "gradual":
                print(stages_table(stages), file=sys.stderr)
    table = "\n".join(accuracy_table(rows))
    print(table)
    write_text(out / f"results-{args.step}deg.md", table + "\n")
    write_text(out / f"results-{args.step}deg.json", json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))

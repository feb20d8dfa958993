"""Where does the distance grow with depth? One network, two kinds of shift, every layer.

A source-only network is trained on MNIST (UCI 8x8 canvas of the mnist->digits task, one per seed;
finished runs are reused). For each network, the per-layer distance is measured between
  * a STYLE shift:    MNIST (source validation inputs) vs UCI digits (target test inputs);
  * a SEMANTIC shift: MNIST digits 0-4 vs MNIST digits 5-9 (both from the source validation split).
No label chooses anything; labels only split the semantic pair into its two halves.

    OMP_NUM_THREADS=1 QIANYI_DATA=../shared/data python benchmarks/depth_profile.py --seeds 3 --out runs/depth_profile
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import qianyi
from qianyi.cli import script_main  # noqa: E402
from qianyi._io import write_json, write_text
from qianyi.measure.profile import LayerProfile, layer_profile, plot_profiles
from qianyi.train import TrainConfig

METRICS = ("mk-mmd", "a-distance")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per profile (default 3)")
    ap.add_argument("--out", default="runs/depth_profile", help="folder for runs, tables and the plot")
    args = ap.parse_args()
    out = Path(args.out)
    task = qianyi.load_task("mnist", "digits")
    val_x, val_y = task.source_val.X, task.source_val.y
    shifts = {"style: MNIST vs UCI digits": (val_x, task.target_test.X),
              "semantic: digits 0-4 vs 5-9": (val_x[val_y < 5], val_x[val_y >= 5])}
    per_shift: dict[str, list[LayerProfile]] = {k: [] for k in shifts}
    for seed in range(args.seeds):
        _, fit = qianyi.run("source-only", task, TrainConfig(seed=seed, progress=False),
                            out=out / "runs" / f"source-only-seed{seed}")
        for name, (a, b) in shifts.items():
            per_shift[name].append(layer_profile(fit.model, a, b, METRICS, max_samples=700, seed=seed, label=name))
    mean = []
    for name, profs in per_shift.items():
        vals = {m: np.mean([p.values[m] for p in profs], axis=0).round(4).tolist() for m in METRICS}
        mean.append(LayerProfile(name, profs[0].layers, profs[0].dims, vals, profs[0].n_source, profs[0].n_target,
                                 {"seeds": args.seeds}))
    layers = mean[0].layers
    lines = [f"Per-layer distance, source-only network trained on MNIST (UCI canvas), mean over {args.seeds} seeds; "
             "MK-MMD² / proxy A-distance.", "",
             "| shift | " + " | ".join(layers) + " |", "|---|" + "---:|" * len(layers)]
    for p in mean:
        cells = [f"{p.values['mk-mmd'][i]:.3f} / {p.values['a-distance'][i]:.2f}" for i in range(len(layers))]
        lines.append(f"| {p.label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    write_text(out / "depth_profile.md", text + "\n")
    write_json(out / "depth_profile.json", [p.to_dict() for p in mean])
    plot_profiles(mean, out / "depth_profile.png", METRICS, title="distance by depth: style vs semantic shift")
    print(text)


if __name__ == "__main__":
    sys.exit(script_main(main))

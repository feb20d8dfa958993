"""Proxy-task transfer on the LSMS villages: asset wealth from satellite band histograms, with night lights
as the abundant proxy label (docs/proxy.md).

    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxy.py --threads 1

Two protocols, each over the sizes 50, 100, 300 and all labelled villages and ``--seeds`` seeds:
* in-country: 5-fold cross-validation over locations (a village surveyed in several years is in one fold);
* out-of-country: train on four countries, test on the fifth.
Writes OUT/rows.csv (one row per split, seed, size and method), OUT/proxy.md (the table) and
OUT/proxy-lsms.png (r² against the number of labels), and copies the PNG to docs/results/.
"""
from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from qianyi._io import atomic_write, write_text  # noqa: E402
from qianyi.cli import script_main  # noqa: E402
from qianyi import proxy as P  # noqa: E402

METHOD_LABELS = {"proxy+ridge": "proxy features + ridge (this recipe)", "ridge": "ridge on the histograms",
                 "network": "same network on the wealth labels", "proxy-value": "ridge on log night lights"}
#: The settings of the proxy network, fixed before any wealth label was looked at (not tuned).
SETTINGS = dict(hidden=(256, 64), steps=2000, batch_size=128, lr=1e-3, weight_decay=1e-4, dropout=0.1)


def _sizes(text: str) -> list[int | None]:
    return [None if s == "all" else int(s) for s in text.split(",")]


def _table(summary: list[dict], protocol: str, metric: str, sizes: list[str]) -> list[str]:
    head = "| method | " + " | ".join(f"n={s}" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for m in P.METHODS:
        cells = []
        for s in sizes:
            hit = [r for r in summary if r["protocol"] == protocol and str(r["n"]) == s and r["method"] == m]
            cells.append(f"{hit[0][metric]:.3f} ± {hit[0][metric + '_sd']:.3f}" if hit else "–")
        lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + " |")
    return lines


def _plot(summary: list[dict], sizes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a script, not the library: choosing a backend here touches nobody else
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = np.arange(len(sizes))
    for ax, (protocol, metric, title) in zip(axes, (
            ("in-country", "r2", "in-country (5-fold CV over locations): r²"),
            ("out-of-country", "pearson_r2", "out-of-country (leave one country out): squared Pearson r"))):
        for m in P.METHODS:
            rows = [next((r for r in summary if r["protocol"] == protocol and str(r["n"]) == s and r["method"] == m),
                         None) for s in sizes]
            mean = np.array([r[metric] if r else np.nan for r in rows])
            sd = np.array([r[metric + "_sd"] if r else np.nan for r in rows])
            ax.errorbar(xs, mean, yerr=sd, marker="o", capsize=3, label=METHOD_LABELS[m])
        ax.set_xticks(xs, [f"{s}" for s in sizes])
        ax.set_xlabel("labelled villages (wealth)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score on the held-out villages")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("LSMS asset wealth from band histograms; proxy = night lights (mean ± sd over splits x seeds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="data directory (default $QIANYI_DATA)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per split (default 3)")
    p.add_argument("--sizes", default="50,100,300,all", help="numbers of labelled villages (default 50,100,300,all)")
    p.add_argument("--protocols", default="in-country,out-of-country")
    p.add_argument("--steps", type=int, default=SETTINGS["steps"], help="gradient steps per network")
    p.add_argument("--out", default=str(ROOT / "runs" / "proxy"))
    p.add_argument("--docs", default="", help="copy the PNG here (the docs' figure: docs/results); default: no copy")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    villages = P.load_lsms(args.data_dir)
    proxy = P.log_nightlights(villages.nightlights)
    sizes = _sizes(args.sizes)
    settings = {**SETTINGS, "steps": args.steps}
    protocols = {"in-country": P.location_splits(villages, k=5, seed=0),
                 "out-of-country": P.country_splits(villages)}
    rows: list[dict] = []
    start = time.time()
    for protocol in args.protocols.split(","):
        for split in protocols[protocol]:
            got = P.proxy_curve(villages.X, villages.wealth, proxy, [split], sizes, seeds=range(args.seeds),
                                settings=settings, input_scaling="global",
                                progress=lambda msg: print(f"[{time.time() - start:6.0f}s] {protocol} {msg}",
                                                           flush=True))
            rows += [{"protocol": protocol, **r} for r in got]
            def write_rows(fh) -> None:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            atomic_write(out / "rows.csv", write_rows)
    summary = P.summarise(rows)
    labels = [str(s) if s is not None else "all" for s in sizes]
    md = [f"# Proxy-task transfer on LSMS villages ({len(villages)} villages, {args.seeds} seeds, "
          f"{time.time() - start:.0f} s)", "",
          "Command: `QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/proxy.py "
          f"{shlex.join(sys.argv[1:])}`", ""]
    for protocol, note in (("in-country", "5-fold CV over locations; 'all' = the whole pool, about 2,400 villages"),
                           ("out-of-country", "train on four countries, test on the fifth; 'all' = the four "
                                              "countries")):
        if protocol not in args.protocols:
            continue
        for metric, name in (("r2", "r² (1 − SSE/SST)"), ("pearson_r2", "squared Pearson r"),
                             ("spearman", "Spearman ρ")):
            md += [f"## {protocol}: {name}", "", f"{note}; mean ± sd over splits x seeds.", ""]
            md += _table(summary, protocol, metric, labels) + [""]
    write_text(out / "proxy.md", "\n".join(md))
    png = out / "proxy-lsms.png"
    _plot(summary, labels, png)
    if args.docs:
        Path(args.docs).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(args.docs) / png.name)
    print("\n".join(md))
    print(f"written: {out / 'rows.csv'}, {out / 'proxy.md'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))

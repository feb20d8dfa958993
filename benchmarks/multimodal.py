"""Cross-modal transfer, spoken digits -> handwritten digits, with modality-specific lower layers (issue 17).

EVALUATION ONLY — THIS SCRIPT SCORES ON TARGET TEST LABELS (the MNIST test split). Training sees the
labelled spoken digits (FSDD, all speakers) and unlabelled MNIST images, except in the rows marked
PAIRED: there the script also builds ``n`` (recording, image) pairs of the same digit from the labels
of BOTH sides (MNIST *train* labels) — a different, weakly supervised protocol, not unsupervised
adaptation.

Rows (each over ``--seeds``; the same task split for all):
- ``source-only``: one shared LeNet for both modalities (the baseline of docs/audio.md);
- ``multimodal`` with ``regulariser`` = none | mmd | coral | cmmd: own lower layers (convolutions) per
  modality, shared fc1 -> fc2 -> logits;
- PAIRED ``multimodal`` with ``pairs`` = n (regulariser none): plus the pair term.

Columns: MNIST test accuracy of the target branch (chance 10%); cross-modal retrieval precision@10:
each held-out spoken digit (the source validation split) retrieves the 10 MNIST test images of most
similar shared code (cosine, bottleneck ``fc2``), share of the same digit (chance ~10%); the source
branch's accuracy on the held-out recordings; seconds per run; and recall@10, the share of held-out
spoken digits with at least one image of the same digit among those 10 (chance ~65%).

    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/multimodal.py --seeds 3 \
        --max-samples 3000 --out runs/multimodal-bench
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qianyi.cli import script_main  # noqa: E402
from qianyi._io import write_json, write_text
from qianyi._report import markdown_table
from qianyi.data.tasks import load_task
from qianyi.methods.multimodal import (Multimodal, chance_precision, chance_recall, precision_at_k, recall_at_k,
                                      shared_codes)
from qianyi.methods.registry import get_method
from qianyi.nn.inference import accuracy
from qianyi.train import TrainConfig, run


def make_pairs(task, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (source train input, target train input) pairs of the same class, classes in turn. READS THE
    TARGET TRAIN LABELS: the paired protocol only."""
    rng = np.random.default_rng(10_000 + seed)
    ys, yt = np.asarray(task.source.y), np.asarray(task.target.y)
    classes = np.intersect1d(np.unique(ys), np.unique(yt))
    si, ti = [], []
    for k in range(n):
        c = classes[k % len(classes)]
        si.append(rng.choice(np.flatnonzero(ys == c)))
        ti.append(rng.choice(np.flatnonzero(yt == c)))
    return np.asarray(task.source.X)[si], np.asarray(task.target.X)[ti]


def one_run(task, row: str, seed: int, cfg: TrainConfig, out: Path, settings: dict) -> dict:
    done = out / "summary.json"
    # what the entry depends on: a folder of other settings (--epochs, --max-samples, pairs...) is not reused
    key = json.dumps({"task": task.name, "sizes": [len(task.source), len(task.target), len(task.target_test)],
                      "config": cfg.fingerprint(), "settings": settings}, sort_keys=True, default=str)
    if done.exists():
        entry = json.loads(done.read_text())
        if entry.get("key") is None:
            print(f"note: {done} records no settings (an earlier version of this script): reused as it is", flush=True)
        elif entry["key"] != key:
            raise SystemExit(f"{done} was made with other settings ({entry['key']}); use another --out, or delete "
                             "that folder to rerun it")
        return entry
    t0 = time.perf_counter()
    if row == "source-only":
        res, fit = run("source-only", task, cfg, out=out)
        entry = {"target_acc": res.target_accuracy, "p_at_10": None, "r_at_10": None,
                 "source_val_acc": res.source_accuracy}
    else:
        method = get_method("multimodal", **settings)
        assert isinstance(method, Multimodal)
        if settings.get("pairs"):
            method.attach_pairs(*make_pairs(task, settings["pairs"], seed))
        res, fit = run(method, task, cfg, out=out)
        backbone = fit.backbone
        queries = shared_codes(fit.method, backbone, task.source_val.X, "source")
        gallery = shared_codes(fit.method, backbone, task.target_test.X, "target")
        entry = {"target_acc": res.target_accuracy,
                 "p_at_10": precision_at_k(queries, task.source_val.y, gallery, task.target_test.y, k=10),
                 "p_chance": chance_precision(task.source_val.y, task.target_test.y),
                 "r_at_10": recall_at_k(queries, task.source_val.y, gallery, task.target_test.y, k=10),
                 "r_chance": chance_recall(task.source_val.y, task.target_test.y, k=10),
                 "source_val_acc": accuracy(fit.method.branch(backbone, "source"), task.source_val)}
    entry.update(row=row, seed=seed, seconds=time.perf_counter() - t0, key=key)
    write_json(done, entry)
    return entry


def fmt(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    m = 100 * float(np.mean(v))
    return f"{m:.1f}" if len(v) == 1 else f"{m:.1f} ± {100 * float(np.std(v, ddof=1)):.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="fsdd")
    p.add_argument("--target", default="mnist")
    p.add_argument("--max-samples", type=int, default=3000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--regularisers", default="none,mmd,coral,cmmd")
    p.add_argument("--pairs", default="10,100", help="numbers of pairs for the PAIRED rows ('' for none)")
    p.add_argument("--no-source-only", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/multimodal-bench")
    p.add_argument("--table-only", action="store_true", help="train nothing: tabulate the runs already finished")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    task = load_task(a.source, a.target, max_samples=a.max_samples)
    print(task.describe(), flush=True)
    rows: list[tuple[str, str, dict]] = [] if a.no_source_only else [("source-only", "unsupervised", {})]
    rows += [(f"multimodal, regulariser={r}", "unsupervised", {"regulariser": r})
             for r in a.regularisers.split(",") if r]
    rows += [(f"multimodal, pairs={n}", f"PAIRED ({n} pairs)", {"regulariser": "none", "pairs": int(n)})
             for n in a.pairs.split(",") if n]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in rows}
    for seed in range(a.seeds):  # seed 0 of every row first: a cut-short run still has a full column
        for name, _, settings in rows:
            folder = out / name.replace(", ", "_").replace("=", "-") / f"seed{seed}"
            if a.table_only and not (folder / "summary.json").exists():
                continue
            cfg = TrainConfig(epochs=a.epochs, seed=seed, progress=False)
            entry = one_run(task, name, seed, cfg, folder, settings)
            results[name].append(entry)
            p10 = "–" if entry["p_at_10"] is None else f"{100 * entry['p_at_10']:.1f}%"
            r10 = "–" if entry.get("r_at_10") is None else f"{100 * entry['r_at_10']:.1f}%"
            print(f"{name} seed {seed}: target {100 * entry['target_acc']:.1f}%  P@10 {p10}  R@10 {r10}  "
                  f"source-val {100 * entry['source_val_acc']:.1f}%  {entry['seconds']:.0f} s", flush=True)
    table = [[name, protocol, fmt([e["target_acc"] for e in results[name]]),
              fmt([e["p_at_10"] for e in results[name]]), fmt([e.get("r_at_10") for e in results[name]]),
              fmt([e["source_val_acc"] for e in results[name]]),
              f"{np.mean([e['seconds'] for e in results[name]]):.0f}", str(len(results[name]))]
             for name, protocol, _ in rows if results[name]]
    header = ["method", "protocol", "MNIST test acc. (%)", "P@10 audio->image (%)", "R@10 audio->image (%)",
              "source-val acc. (%)", "s / run", "seeds"]
    chance = next((e["p_chance"] for v in results.values() for e in v if e.get("p_chance") is not None), 0.1)
    r_chance = next((e["r_chance"] for v in results.values() for e in v if e.get("r_chance") is not None), None)
    r_text = "" if r_chance is None else f", recall@10 {100 * r_chance:.1f}%"
    text = (f"{task.describe()}\n\nTarget accuracy: chance 10%. Retrieval chance: precision@10 "
            f"{100 * chance:.1f}%{r_text}.\n\n"
            + markdown_table(header, table) + "\n\ncommand: python benchmarks/multimodal.py "
            + " ".join(sys.argv[1:] if argv is None else argv) + "\n")
    write_text(out / "results.md", text)
    write_json(out / "results.json", results)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))

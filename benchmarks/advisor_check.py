"""Does the advisor pick well? Compare its freeze depth and method with actually running the alternatives.

EVALUATION ONLY — THIS SCRIPT SCORES ON TARGET TEST LABELS. The advisor itself
(:func:`qianyi.measure.advisor.advise`) sees source labels and target inputs only; here every
alternative is trained and then scored once on the labelled target test split, to check whether the
advisor's choices are among the best two. Nothing here feeds back into the advisor.

For each pair:
1. ``advise`` trains a source network (source-only, ``--epochs``) and recommends freeze depth k*,
   method m* and adaptation layers.
2. Freeze alternatives: m* initialised from that source network with k = 0..K (K = groups below
   the logits minus one), everything else equal.
3. Method alternatives: source-only, DAN, DANN initialised from it with k* frozen (DAN on the
   advised adaptation layers).
Each alternative over ``--seeds`` seeds; target-test accuracy, mean over seeds.

    QIANYI_DATA=../shared/data python benchmarks/advisor_check.py --pairs 'mnist->digits' \
        'digits->mnist' --seeds 2 --epochs 10 --out runs/advisor_check
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from qianyi.cli import script_main  # noqa: E402
from qianyi._io import write_json, write_text
from qianyi.bench.runner import parse_pair
from qianyi.data.tasks import load_task
from qianyi._report import markdown_table
from qianyi.measure.advisor import advise
from qianyi.measure.report import load_weights_for
from qianyi.methods.registry import get_method
from qianyi.nn.inference import accuracy
from qianyi.train import RunStore, TrainConfig, run
from qianyi.train.store import fingerprint

METHODS = ("source-only", "dan", "dann")


def rank_of(choice, scores: dict) -> int:
    """1-based rank of ``choice`` among ``scores`` (higher is better; ties share the better rank)."""
    return 1 + sum(v > scores[choice] + 1e-12 for v in scores.values())


def check_pair(pair: str, seeds: list[int], epochs: int, steps: int | None, max_samples: int | None, out: Path) -> dict:
    s, t = parse_pair(pair)
    task = load_task(s, t, max_samples=max_samples)
    print(task.describe(), flush=True)
    cfg = TrainConfig(epochs=epochs, steps_per_epoch=steps, progress=False)
    t0 = time.perf_counter()
    adv = advise(task, config=cfg, out=out / "advice", log=lambda m: print(m, flush=True))
    advise_s = time.perf_counter() - t0
    print(adv.report(), flush=True)
    src = adv.source_model
    n_freeze = len(adv.profile.layers) - 2  # groups below the logits: k = 0 .. n_freeze - 1 leaves fc2 + logits free
    # EVALUATION: the advisor's source network scored on target test labels (checks the ATC estimate)
    source_net_acc = accuracy(load_weights_for(src, task), task.target_test)

    def score(method: str, freeze: int) -> float:
        accs = []
        for seed in seeds:
            hp = {"layers": tuple(adv.adapt_layers)} if method == "dan" and adv.adapt_layers else {}
            c = replace(cfg, seed=seed, init_from=src, freeze=freeze)
            store = RunStore(out / "runs")
            fp = fingerprint(get_method(method, **hp), c, task)
            res = store.get(fp)
            if res is None:
                rdir = store.path(fp)
                res, _ = run(method, task, c, out=rdir, **hp)
                (rdir / "checkpoint.pt").unlink(missing_ok=True)
                print("  " + res.summary(), flush=True)
            accs.append(res.target_accuracy)
        return float(np.mean(accs))

    freeze_scores = {k: score(adv.method, k) for k in range(max(n_freeze, adv.freeze + 1))}
    method_scores = {m: score(m, adv.freeze) for m in METHODS}
    row = {"pair": pair, "advised_freeze": adv.freeze, "advised_method": adv.method,
           "adapt_layers": adv.adapt_layers, "warning": adv.negative_transfer_warning,
           "atc_estimate": adv.atc_estimate, "source_network_target_acc": source_net_acc,
           "freeze_scores": freeze_scores, "method_scores": method_scores,
           "freeze_rank": rank_of(adv.freeze, freeze_scores), "method_rank": rank_of(adv.method, method_scores),
           "advise_seconds": advise_s, "seeds": seeds, "epochs": epochs,
           "steps_per_epoch": steps, "max_samples": max_samples}
    write_json(out / "check.json", row)
    return row


def table(rows: list[dict]) -> str:
    k_max = max(len(r["freeze_scores"]) for r in rows)
    head = ["pair", "advised k", *(f"k={k}" for k in range(k_max)), "rank of k", "advised method",
            *METHODS, "rank of method", "ATC est.", "source net"]
    body = []
    for r in rows:
        fs = {int(k): v for k, v in r["freeze_scores"].items()}
        body.append([r["pair"], r["advised_freeze"], *(100 * fs[k] if k in fs else None for k in range(k_max)),
                     f"{r['freeze_rank']} of {len(fs)}", r["advised_method"],
                     *(100 * r["method_scores"][m] for m in METHODS), f"{r['method_rank']} of {len(METHODS)}",
                     100 * r["atc_estimate"], 100 * r["source_network_target_acc"]])
    return (markdown_table(head, body, 1) + "\n\nTarget-test accuracy (%), mean over seeds "
            f"{rows[0]['seeds']} — EVALUATION ON TARGET TEST LABELS (the advisor never sees them). k = layer "
            "groups frozen (copied from the advisor's source network); methods run with the advised k. 'ATC est.' "
            "is the advisor's label-free estimate of the source network's target accuracy; 'source net' is that "
            "network's measured target-test accuracy.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", nargs="+", default=["mnist->digits", "digits->mnist", "digits->digits+rot30"],
                   help="SOURCE->TARGET pairs the advice is checked on")
    p.add_argument("--seeds", type=int, default=2, help="seeds per method and pair")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per run")
    p.add_argument("--steps-per-epoch", type=int, default=200, help="fixed, so every pair trains as long")
    p.add_argument("--max-samples", type=int, default=None, help="cap on samples per domain (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default="runs/advisor_check", help="folder for runs and the table (resumable)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    for pair in args.pairs:
        rows.append(check_pair(pair, list(range(args.seeds)), args.epochs, args.steps_per_epoch, args.max_samples,
                               out / pair.replace("->", "_to_").replace("+", "_")))
        write_text(out / "advisor_check.md", table(rows) + "\n")
    print(table(rows))
    hits = sum(r["freeze_rank"] <= 2 and r["method_rank"] <= 2 for r in rows)
    print(f"\nadvised freeze depth and method both within the best two: {hits} of {len(rows)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))

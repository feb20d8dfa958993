"""Co-training on two real views (UCI mfeat; FSDD): against source-only and each single-view self-training.

Tasks: ``mfeat?views=V1,V2&domain=A`` -> ``mfeat?views=V1,V2&domain=B`` (docs/cotraining.md: the split);
with ``--data fsdd``, speaker pairs ``fsdd?speaker=S&views=mel,mfcc`` -> ``fsdd?speaker=T&views=mel,mfcc``.
Rows, each over ``--seeds``, all with the engine's default settings for vectors (label-free: nothing
is chosen on target labels):

* source-only and oracle (ORACLE: target labels) on both views concatenated (the default MLP);
* ``cotrain trade_off=0``: the two view networks trained on the source only, probabilities averaged;
* ``cbst`` on both views concatenated (self-training without views);
* ``cotrain view=a`` / ``view=b``: self-training on one view (same network, schedule and thresholds);
* ``cotrain``: co-training.

Target-test accuracy is measured once per run, after the last epoch. For co-training, a per-round
table: how many pseudo-labels each view gave the other (label assignments during the round, from
the method's log) and — ORACLE, from a monitor on the labelled target TEST split, never read by
training — how many labels the rule would give there and how many of those are right.

    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/cotraining.py --threads 1 \
        --write docs/cotraining.md
    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/cotraining.py --data fsdd --threads 1 \
        --write docs/cotraining.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import qianyi
from qianyi.cli import script_main  # noqa: E402
from qianyi.data.domain import view_widths
from qianyi.methods.cotraining import pseudo_label_monitor
from qianyi.nn.inference import accuracy
from qianyi.train import TrainConfig, Trainer

START, END = "<!-- cotraining-results:start -->", "<!-- cotraining-results:end -->"
FSDD_START, FSDD_END = "<!-- cotraining-fsdd:start -->", "<!-- cotraining-fsdd:end -->"


def rows(split: int) -> list[tuple[str, str, dict]]:
    """(label, method, settings) of each row."""
    return [
        ("source-only (both views concatenated)", "source-only", {}),
        ("two view networks, source only (cotrain trade_off=0)", "cotrain", {"split": split, "trade_off": 0.0}),
        ("CBST self-training (both views concatenated)", "cbst", {}),
        ("self-training on view a only (cotrain view=a)", "cotrain", {"split": split, "view": "a"}),
        ("self-training on view b only (cotrain view=b)", "cotrain", {"split": split, "view": "b"}),
        ("**co-training** (cotrain)", "cotrain", {"split": split}),
        ("co-training, shared pool as in the paper (cotrain shared=true)", "cotrain", {"split": split, "shared": True}),
        ("ORACLE: trained on target labels (both views concatenated)", "oracle", {}),
    ]


def run_one(method: str, settings: dict, task: qianyi.TransferTask, seed: int, epochs: int | None) -> dict:
    m = qianyi.get_method(method, **settings)
    monitor = pseudo_label_monitor(m, task.target_test) if method == "cotrain" else None  # ORACLE: reports only
    cfg = TrainConfig(seed=seed, progress=False, **({"epochs": epochs} if epochs else {}))
    trainer = Trainer(m, cfg)
    t0 = time.perf_counter()
    fit = trainer.fit(task, monitor=monitor)
    out = {"acc": accuracy(fit.model, task.target_test), "seconds": time.perf_counter() - t0,
           "source_val": fit.history[-1]["source_val_acc"], "history": fit.history,
           "draws": trainer.config.steps_per_epoch * trainer.config.batch_size}
    if method == "cotrain":  # each view network's own accuracy (ORACLE, reports only)
        y = torch.as_tensor(task.target_test.y)
        net = fit.model.eval()
        with torch.no_grad():
            o = net(torch.as_tensor(task.target_test.X))
        out["view_acc"] = [float((o[f"logits_{v}"].argmax(1) == y).float().mean()) for v in "ab"]
    return out


def fmt(xs: list[float]) -> str:
    """Mean ± sample sd (ddof=1, as every qianyi table) of accuracies in [0, 1], in %; one value: the mean alone."""
    a = 100 * np.asarray(xs)
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def round_table(results: list[dict], n_test: int) -> list[str]:
    """Per round (epoch), mean over seeds: labels given during the round, agreement; ORACLE: test labels right."""
    lines = ["| round | a→b labels given | b→a labels given | views agree (target batches) | ORACLE: a's labels on "
             f"target test (of {n_test}): right / given | ORACLE: b's labels on target test: right / given |",
             "|---:|---:|---:|---:|---:|---:|"]
    for e in range(len(results[0]["history"])):
        hs = [r["history"][e] for r in results]
        mean = lambda k: float(np.mean([h.get(k, 0.0) for h in hs]))  # noqa: E731
        draws = results[0]["draws"]
        lines.append(f"| {e + 1} | {mean('a_to_b') * draws:.0f} | {mean('b_to_a') * draws:.0f} | "
                     f"{100 * mean('agree'):.1f}% | {mean('oracle_a_right') * n_test:.0f} / "
                     f"{mean('oracle_a_given') * n_test:.0f} | {mean('oracle_b_right') * n_test:.0f} / "
                     f"{mean('oracle_b_given') * n_test:.0f} |")
    return lines


FSDD_PAIRS = ("theo->yweweler", "jackson->nicolas", "nicolas->george")  # docs/audio.md's three pairs


def bench_task(task: qianyi.TransferTask, seeds: list[int], epochs: int | None,
               every: int = 1) -> tuple[list[str], dict[str, float]]:
    """Every row on one task: the markdown lines (table, gap, per-round table) and each row's mean accuracy."""
    (va, split), (vb, _) = view_widths(task.source.feature_names)
    print(f"task {task.name}: source {len(task.source)} + val {len(task.source_val)}, target {len(task.target)}, "
          f"target test {len(task.target_test)}; view a = {va} ({split} columns), view b = {vb}", file=sys.stderr)
    table, per_row = [], {}
    for label, method, settings in rows(split):
        res = [run_one(method, settings, task, s, epochs) for s in seeds]
        per_row[label] = res
        extra = f"a {fmt([r['view_acc'][0] for r in res])}, b {fmt([r['view_acc'][1] for r in res])}" \
            if "view_acc" in res[0] else ""
        seeds_text = " / ".join(f"{100 * r['acc']:.1f}" for r in res)
        table.append(f"| {label} | {fmt([r['acc'] for r in res])} | {seeds_text} "
                     f"| {fmt([r['source_val'] for r in res])} | {extra} | {np.mean([r['seconds'] for r in res]):.1f} |")
        print(table[-1], file=sys.stderr)
    means = {label: float(np.mean([r["acc"] for r in res])) for label, res in per_row.items()}
    labels = [r[0] for r in rows(split)]
    so, co, orc = means[labels[0]], means[labels[5]], means[labels[-1]]
    rounds = round_table(per_row[labels[5]], len(task.target_test))
    if every > 1:
        rounds = rounds[:2] + [line for e, line in enumerate(rounds[2:]) if e == 0 or (e + 1) % every == 0]
    out = [f"Task `{task.source.name}` → `{task.target.name}` (view a = `{va}`, {split} columns; view b = `{vb}`), "
           f"seeds {','.join(map(str, seeds))}, {len(task.target_test)} target test samples; engine defaults for "
           f"vectors (Adam, lr 0.002, {len(per_row[labels[0]][0]['history'])} epochs). Accuracy after the last epoch; ± the sample sd over the seeds.",
           "", "| run | target acc. (%) mean ± sd | per seed | source-val acc. (%) | ORACLE: each view network's "
           "target acc. (%) | seconds/run |", "|---|---:|---:|---:|---:|---:|", *table, "",
           f"Gap source-only → oracle: {100 * so:.1f} → {100 * orc:.1f}; co-training closes "
           f"{100 * (co - so) / max(1e-9, orc - so):.0f}% of it.", "",
           "Per round (an epoch) of co-training, mean over the seeds" + (f" (every {every}th round)" if every > 1 else "")
           + ":", "", *rounds]
    return out, means


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", choices=("mfeat", "fsdd"), default="mfeat",
                    help="mfeat (UCI Multiple Features, domains A -> B) or fsdd (spoken digits, speakers as domains; "
                         "views mel = the log-mel image, mfcc = MFCC statistics)")
    ap.add_argument("--views", default=None, help="the two views, view a first (default fou,kar for mfeat, mel,mfcc "
                                                  "for fsdd)")
    ap.add_argument("--by", default="5", help="mfeat: the mor column that splits each class into domains A and B "
                                              "(default 5)")
    ap.add_argument("--pairs", nargs="+", default=list(FSDD_PAIRS),
                    help=f"fsdd: speaker pairs SOURCE->TARGET (default {' '.join(FSDD_PAIRS)})")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default: the engine's default, 20)")
    ap.add_argument("--data-dir", default=None, help="data directory holding uci-mfeat/ or fsdd/ (default $QIANYI_DATA)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--write", default=None, help="markdown file whose results section (between the markers "
                                                  f"{START} and {END}, or for fsdd {FSDD_START} and {FSDD_END}) "
                                                  "is replaced by the tables")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    views = [v.strip() for v in (args.views or ("fou,kar" if args.data == "mfeat" else "mel,mfcc")).split(",")]
    if len(views) != 2:
        ap.error(f"--views needs two views, got {args.views!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.data == "mfeat":
        spec = f"mfeat?views={','.join(views)}&by={args.by}&domain="
        text = "\n".join(bench_task(qianyi.load_task(spec + "A", spec + "B", data_dir=args.data_dir), seeds,
                                    args.epochs)[0])
        start, end = START, END
    else:
        sections, summary = [], []
        for pair in args.pairs:
            s, sep, t = pair.partition("->")
            if not sep:
                ap.error(f"--pairs: {pair!r} is not SOURCE->TARGET (speaker names)")
            spec = f"&views={','.join(views)}"
            task = qianyi.load_task(f"fsdd?speaker={s}{spec}", f"fsdd?speaker={t}{spec}", data_dir=args.data_dir)
            lines, means = bench_task(task, seeds, args.epochs, every=5)
            sections += [f"#### {s} → {t}", "", *lines, ""]
            summary.append((pair, means))
        labels = list(summary[0][1])
        head = ["| run | " + " | ".join(p.replace("->", " → ") for p, _ in summary) + " | mean |",
                "|---|" + "---:|" * (len(summary) + 1)]
        body = [f"| {label} | " + " | ".join(f"{100 * m[label]:.1f}" for _, m in summary)
                + f" | {100 * np.mean([m[label] for _, m in summary]):.1f} |" for label in labels]
        text = "\n".join(["Target accuracy (%), mean over the seeds, per speaker pair:", "", *head, *body, "",
                          *sections]).rstrip()
        start, end = FSDD_START, FSDD_END
    print(text)
    if args.write:
        path = Path(args.write)
        doc = path.read_text()
        if start not in doc or end not in doc:
            ap.error(f"{path} has no results section (the markers {start} and {end})")
        head_, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        cmd = "QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/cotraining.py " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        path.write_text(f"{head_}{start}\nCommand: `{cmd}`\n\n{text}\n{end}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))

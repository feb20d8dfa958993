"""Side-by-side with skada for the methods both libraries have (DAN, Deep CORAL, DANN), in one run.

Same data (the qianyi task: same splits, scored on the same target test images), same network (the
qianyi LeNet backbone, seeded alike), same epochs, same batches (64 source + 64 target per step),
same optimiser (SGD, Nesterov momentum 0.9, weight decay 5e-4, lr 0.01 annealed as
0.01 / (1 + 10 p)^0.75 per step). Each library keeps its own definition of the method and its own
default trade-off (skada: reg=1 on the bottleneck; qianyi: the defaults in docs/methods.md). skada's
DANN domain classifier ends in a softmax over one output (constant 1, so DANN cannot train); it is
given the same architecture with a sigmoid head. Accuracy and wall time are reported as ratios.

skada lives only in this benchmark's own environment (never a qianyi dependency)::

    python3 -m venv benchmarks/.venv-skada
    benchmarks/.venv-skada/bin/pip install torch==2.13.0          # first: the CPU build pinned here
    benchmarks/.venv-skada/bin/pip install skada skorch mlxtend pillow matplotlib tqdm
    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 benchmarks/.venv-skada/bin/python benchmarks/skada_compare.py
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import qianyi  # noqa: E402
from qianyi.cli import script_main  # noqa: E402
from qianyi._io import write_json, write_text  # noqa: E402
from qianyi.nn import backbone_for  # noqa: E402
from qianyi.schedules import annealed_lr  # noqa: E402
from qianyi.train import TrainConfig, run  # noqa: E402
from qianyi.train.engine import seed_everything  # noqa: E402

METHODS = {"dan": "DAN", "coral": "DeepCoral", "dann": "DANN"}


class LogitsOnly(nn.Module):
    """The qianyi backbone as a plain module (skada hooks the bottleneck by name)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, X: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone(X).logits


class SigmoidDomainClassifier(nn.Module):
    """skada's DANN domain classifier (Linear-BN-ReLU-Linear behind gradient reversal), sigmoid head."""

    def __init__(self, num_features: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(num_features, 100), nn.BatchNorm1d(100), nn.ReLU(),
                                        nn.Linear(100, 1), nn.Sigmoid())
        self.alpha = alpha

    def forward(self, x: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        from skada.deep.modules import GradientReversalLayer

        return self.classifier(GradientReversalLayer.apply(x, self.alpha)).squeeze(-1)


def fit_skada(name: str, task, seed: int, epochs: int, batch_size: int) -> tuple[float, float]:
    import skada.deep as sd
    from skorch.callbacks import LRScheduler

    seed_everything(seed)  # the same initialisation as the qianyi engine's
    net = LogitsOnly(backbone_for(task.sample_shape, task.n_classes))
    feature_layer = f"backbone.groups.{net.backbone.feature_layer}"
    ns, nt = len(task.source), len(task.target)
    total = epochs * int(np.ceil(max(ns, nt) / batch_size))
    extra = {}
    if name == "dann":
        extra["domain_classifier"] = SigmoidDomainClassifier(net.backbone.feature_dim())
    est = getattr(sd, METHODS[name])(
        net, feature_layer, max_epochs=epochs, batch_size=batch_size, train_split=None, verbose=0,
        optimizer=torch.optim.SGD, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
        optimizer__weight_decay=5e-4,
        callbacks=[LRScheduler(policy=torch.optim.lr_scheduler.LambdaLR, step_every="batch",
                               lr_lambda=lambda k: annealed_lr(1.0, min(k / total, 1.0)))],
        **extra)
    X = np.concatenate([task.source.X, task.target.X]).astype(np.float32)
    y = np.concatenate([task.source.y, np.full(nt, -1)]).astype(np.int64)
    domain = np.concatenate([np.ones(ns), -np.ones(nt)]).astype(np.int64)  # skada: source > 0, target < 0
    t0 = time.perf_counter()
    est.fit({"X": X, "sample_domain": domain}, y)
    seconds = time.perf_counter() - t0
    Xt = task.target_test.X.astype(np.float32)
    pred = est.predict({"X": Xt, "sample_domain": -np.ones(len(Xt), dtype=np.int64)})
    return float((np.asarray(pred) == task.target_test.y).mean()), seconds


def fit_qianyi(name: str, task, seed: int, epochs: int, batch_size: int) -> tuple[float, float]:
    res, _ = run(name, task, TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, progress=False))
    print(f"qianyi {name} hyper-parameters: {res.hparams}", flush=True)
    return res.target_accuracy, res.train_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="mnist->digits")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-samples", type=int, default=3000)
    ap.add_argument("--out", default="runs/skada_compare")
    args = ap.parse_args()
    import skada

    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    s, t = args.pair.split("->")
    task = qianyi.load_task(s, t, max_samples=args.max_samples)
    print(task.describe(), flush=True)
    rows = []
    for name in args.methods.split(","):
        for seed in range(args.seeds):
            for lib, fit in (("qianyi", fit_qianyi), ("skada", fit_skada)):
                acc, secs = fit(name, task, seed, args.epochs, args.batch_size)
                rows.append({"method": name, "library": lib, "seed": seed, "accuracy": acc, "seconds": secs})
                print(json.dumps(rows[-1]), flush=True)
    lines = [f"{task.describe()}; {args.epochs} epochs, batches of {args.batch_size}+{args.batch_size}, "
             f"{args.seeds} seeds; qianyi {qianyi.__version__}, skada {skada.__version__}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s).", "",
             "| method | qianyi acc. (%) | skada acc. (%) | acc. ratio qianyi/skada | qianyi s | skada s "
             "| time ratio qianyi/skada |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in args.methods.split(","):
        a = {lib: np.array([r["accuracy"] for r in rows if r["method"] == name and r["library"] == lib])
             for lib in ("qianyi", "skada")}
        w = {lib: np.array([r["seconds"] for r in rows if r["method"] == name and r["library"] == lib])
             for lib in ("qianyi", "skada")}
        std = {k: f" ± {100 * v.std(ddof=1):.1f}" if len(v) > 1 else "" for k, v in a.items()}
        lines.append(f"| {METHODS[name]} | {100 * a['qianyi'].mean():.1f}{std['qianyi']} | "
                     f"{100 * a['skada'].mean():.1f}{std['skada']} | {a['qianyi'].mean() / a['skada'].mean():.2f} | "
                     f"{w['qianyi'].mean():.0f} | {w['skada'].mean():.0f} | {w['qianyi'].mean() / w['skada'].mean():.2f} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    write_json(out / "runs.json", rows)
    write_text(out / "results.md", text)
    print(text)


if __name__ == "__main__":
    sys.exit(script_main(main))

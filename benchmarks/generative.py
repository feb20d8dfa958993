"""Generative transfer experiments (issue 13; docs/generative.md).

1. ``cycada``: CyCADA on mnist -> mnist-m with the bench protocol (``qianyi bench``: 5,000 samples
   per domain, 20 epochs, 3 seeds, every validator recorded, so that the source-only and oracle runs
   of runs/bench-all/28px are reused when copied into the store); prints the bench table and the
   cycle reconstruction error (mean L1 on [0, 1] images, last epoch); copies seed 0's image grid.
2. ``bags-shoes``: DiscoGAN between Fashion-MNIST bags (class 8) and shoes (5 sandal, 7 sneaker,
   9 ankle boot), no pairs, through the engine (DiscoGAN's default generators, 25 epochs); the
   generated images are scored by a Fashion-MNIST classifier trained on real images (the engine's
   source-only LeNet) on held-out bags and shoes; prints the last epoch's reconstruction errors and
   discriminator accuracies; with --docs, copies seed 0's image grid there.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generative.py --part cycada --threads 1 --docs docs/results
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generative.py --part bags-shoes --threads 1 --docs docs/results
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import qianyi  # noqa: E402
from qianyi.cli import script_main  # noqa: E402
from qianyi.bench.runner import bench  # noqa: E402
from qianyi.data.builtin import FASHION_NAMES  # noqa: E402
from qianyi.data.domain import Domain, TransferTask  # noqa: E402
from qianyi.data.tasks import load_domain  # noqa: E402
from qianyi.methods.generative import GRID_FILE  # noqa: E402
from qianyi.nn.inference import predict_logits  # noqa: E402
from qianyi.train import TrainConfig  # noqa: E402
from qianyi.train.store import RunStore  # noqa: E402
from qianyi.train.translate import load_generator  # noqa: E402

BAG, SHOES = 8, (5, 7, 9)
#: DiscoGAN's epochs for bags <-> shoes (47 steps each): 25, as many as one CPU thread trains in under
#: ten minutes per seed with DiscoGAN's default (width-16, 4x4-bottleneck) generators.
BAGS_SHOES_EPOCHS = 25


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    a = scale * np.asarray(values)
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}" if len(a) > 1 else f"{a.mean():.{digits}f}"


def part_cycada(args: argparse.Namespace) -> None:
    out = Path(args.out) / "bench-gen" / "28px"
    res = bench(["cycada"], ["mnist->mnist-m"], seeds=args.seeds, out=out, max_samples=5000,
                config=TrainConfig(epochs=args.epochs, validators=("all",), progress=False))
    print(res.table())
    runs = sorted((r for r in res.runs if r.method == "cycada"), key=lambda r: r.seed)
    last = [r.history[-1] for r in runs]
    print("\ncycle reconstruction error (mean L1 on [0,1] images, last epoch's training batches):")
    print(f"  mnist -> mnist-m -> mnist: {mean_std([h['cycle_err_s'] for h in last], 1, 3)}")
    print(f"  mnist-m -> mnist -> mnist-m: {mean_std([h['cycle_err_t'] for h in last], 1, 3)}")
    print(f"  discriminator accuracy, last epoch: D_T {mean_std([h['d_t_acc'] for h in last])}%, "
          f"D_S {mean_std([h['d_s_acc'] for h in last])}%")
    if args.docs:
        grid = RunStore(out / "runs").path(runs[0].fingerprint) / GRID_FILE
        shutil.copy(grid, Path(args.docs) / "generative-mnist-mnistm.png")


def fashion_splits(n_gan: int, n_test: int, n_classifier: int) -> dict[str, np.ndarray | Domain]:
    """Disjoint parts of Fashion-MNIST: bags and shoes for the GAN, held-out bags and shoes to translate and
    score, and the other images (all ten classes) to train the scoring classifier."""
    d = load_domain("fashion")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(d))
    y = d.y[order]
    bags, shoes = order[y == BAG], order[np.isin(y, SHOES)]
    used = np.concatenate([bags[:n_gan + n_test], shoes[:n_gan + n_test]])
    rest = np.setdiff1d(order, used)
    rest = rng.permutation(rest)[:n_classifier]
    return {"bags": d.X[bags[:n_gan]], "shoes": d.X[shoes[:n_gan]],
            "test_bags": d.X[bags[n_gan:n_gan + n_test]], "test_shoes": d.X[shoes[n_gan:n_gan + n_test]],
            "test_shoe_labels": d.y[shoes[n_gan:n_gan + n_test]], "classifier": d.subset(rest, "fashion-real")}


def scoring_classifier(real: Domain, epochs: int, out: Path) -> tuple[torch.nn.Module, float]:
    """The engine's source-only LeNet on real Fashion-MNIST images (90% train, 10% validation); its
    accuracy on a held-out 20% of ``real``."""
    from qianyi.data.domain import stratified_split

    train, test = stratified_split(real.y, len(real), 0.2, 0)
    held_out = real.subset(test, "fashion-real-test")
    task = TransferTask.from_domains(real.subset(train), held_out, target_test=held_out)
    result, fit = qianyi.run("source-only", task, TrainConfig(epochs=epochs, progress=False), out=out)
    return fit.model, float(result.target_accuracy)


def diversity(X: np.ndarray, n: int = 200) -> float:
    """Mean L1 distance between pairs of the first ``n`` images: near 0 when a generator maps every input
    to one output (mode collapse); compare with the same number for real images."""
    Z = X[:n].reshape(min(n, len(X)), -1)
    return float(np.abs(Z[:, None, :] - Z[None, :, :]).mean())


def labels_of(net: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    return predict_logits(net, X, "cpu").argmax(1).numpy()


def part_bags_shoes(args: argparse.Namespace) -> None:
    parts = fashion_splits(args.n_gan, args.n_test, args.n_classifier)
    root = Path(args.out) / "bags-shoes"
    clf, clf_acc = scoring_classifier(parts["classifier"], args.classifier_epochs, root / "classifier")
    print(f"scoring classifier: source-only LeNet on {len(parts['classifier'])} real Fashion-MNIST images "
          f"(all classes), {args.classifier_epochs} epochs; accuracy on its held-out 20%: {100 * clf_acc:.1f}%")
    real_bag = float(np.mean(labels_of(clf, parts["test_bags"]) == BAG))
    real_shoe = float(np.mean(np.isin(labels_of(clf, parts["test_shoes"]), SHOES)))
    print(f"real held-out images: bags labelled bag {100 * real_bag:.1f}%, shoes labelled a shoe class "
          f"{100 * real_shoe:.1f}%")
    source = Domain(parts["bags"], np.full(len(parts["bags"]), BAG), "fashion-bags", class_names=FASHION_NAMES)
    target = Domain(parts["shoes"], None, "fashion-shoes")  # no labels: no pairs, nothing to score in training
    # one class: from_domains refuses it (no classifier to train); DiscoGAN trains none, so the task is
    # built directly: the last 10% of the bags are the (unused) source validation split
    k = len(source) - len(source) // 10
    task = TransferTask(source.subset(np.arange(k)), source.subset(np.arange(k, len(source))), target,
                        name="fashion-bags->fashion-shoes")
    rows, last = [], []
    for seed in range(args.seeds):
        cfg = TrainConfig(epochs=args.epochs, seed=seed, progress=False)
        started = time.perf_counter()
        _, fit = qianyi.run("discogan", task, cfg, out=root / f"discogan-seed{seed}")
        if seed == 0:
            print(f"DiscoGAN settings: {fit.method.hparams()}; {args.epochs} epochs")
        last.append(fit.history[-1])
        g_st, _ = load_generator(root / f"discogan-seed{seed}", "s2t")
        g_ts, _ = load_generator(root / f"discogan-seed{seed}", "t2s")
        with torch.no_grad():
            fake_shoes = g_st(torch.as_tensor(parts["test_bags"])).numpy()
            fake_bags = g_ts(torch.as_tensor(parts["test_shoes"])).numpy()
            to_shoe, to_bag = labels_of(clf, fake_shoes), labels_of(clf, fake_bags)
        shoe_share, bag_share = float(np.isin(to_shoe, SHOES).mean()), float((to_bag == BAG).mean())
        counts = np.bincount(to_shoe, minlength=10)
        rows.append((shoe_share, bag_share, diversity(fake_shoes), diversity(fake_bags)))
        print(f"seed {seed}: bag->shoe labelled a shoe class {100 * shoe_share:.1f}% "
              f"(sandal {counts[5]}, sneaker {counts[7]}, ankle boot {counts[9]} of {len(to_shoe)}); "
              f"shoe->bag labelled bag {100 * bag_share:.1f}%; diversity (mean pairwise L1) of generated shoes "
              f"{rows[-1][2]:.3f}, bags {rows[-1][3]:.3f}")
        h = last[-1]
        print(f"        last epoch: reconstruction error (mean L1) bags {h['cycle_err_s']:.3f}, shoes "
              f"{h['cycle_err_t']:.3f}; D_B (shoes) accuracy {100 * h['d_t_acc']:.1f}%, D_A (bags) "
              f"{100 * h['d_s_acc']:.1f}%; {time.perf_counter() - started:.0f} s")
    print("\n| direction | generated images labelled as the target category (%) |\n|---|---:|")
    print(f"| bag -> shoe (sandal/sneaker/ankle boot) | {mean_std([r[0] for r in rows])} |")
    print(f"| shoe -> bag | {mean_std([r[1] for r in rows])} |")
    print(f"\ndiversity (mean pairwise L1 between images; real: shoes {diversity(parts['test_shoes']):.3f}, bags "
          f"{diversity(parts['test_bags']):.3f}): generated shoes {np.mean([r[2] for r in rows]):.3f}, generated bags "
          f"{np.mean([r[3] for r in rows]):.3f}")
    print("last epoch (training batches): reconstruction error (mean L1 on [0,1] images) bag -> shoe -> bag "
          f"{mean_std([h['cycle_err_s'] for h in last], 1, 3)}, shoe -> bag -> shoe "
          f"{mean_std([h['cycle_err_t'] for h in last], 1, 3)}; discriminator accuracy D_B (shoes) "
          f"{mean_std([h['d_t_acc'] for h in last])}%, D_A (bags) {mean_std([h['d_s_acc'] for h in last])}%")
    print(f"\n{args.seeds} seed(s); {args.n_test} held-out images per direction; mean ± sample std over seeds.")
    if args.docs:
        shutil.copy(root / "discogan-seed0" / GRID_FILE, Path(args.docs) / "generative-bags-shoes.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--part", choices=("cycada", "bags-shoes", "all"), default="all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs (default: 20 for cycada, the bench protocol; {BAGS_SHOES_EPOCHS} for bags-shoes)")
    p.add_argument("--n-gan", type=int, default=3000, help="bags and shoes each for DiscoGAN's training")
    p.add_argument("--n-test", type=int, default=500, help="held-out bags and shoes each, translated and scored")
    p.add_argument("--n-classifier", type=int, default=20000, help="real images for the scoring classifier")
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--out", default="runs", help="runs go to OUT/bench-gen/28px and OUT/bags-shoes")
    p.add_argument("--docs", default="", help="copy the seed-0 image grids here (the docs' figures: docs/results); "
                                             "default: no copy")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("cycada", "all"):
        part_cycada(replace_epochs(args, 20))
    if args.part in ("bags-shoes", "all"):
        part_bags_shoes(replace_epochs(args, BAGS_SHOES_EPOCHS))


def replace_epochs(args: argparse.Namespace, default: int) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "epochs": args.epochs or default})


if __name__ == "__main__":
    sys.exit(script_main(main))

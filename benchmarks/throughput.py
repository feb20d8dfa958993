"""DA training cost as a ratio to plain source+target training (same network, same batches), and the
streamed loader's decoding rate against the training rate.

**Methods** (default mode). The baseline forwards the same source+target mini-batches through the same
network but adds no DA term (cross-entropy only), so each cost ratio (method seconds / baseline
seconds) is the cost of the method's own terms and modules. Every method (and the baseline) is first
run once for a few untimed warm-up steps; then the methods are timed in interleaved rounds (round r:
baseline and every method in an order shuffled with seed r, all with seed r, hence the same batches)
and the median per method is reported, because these machines are noisy. Two times per run: the
engine's wall-clock training time (``FitResult.train_seconds``: the steps only, not building the
network or the end-of-epoch scoring) and the CPU time of the same steps (this process and any loader
workers), which does not grow while other jobs hold the core; the cost ratio is given for both.

    python benchmarks/throughput.py --pair 'mnist->digits' --steps 200 --rounds 3 --threads 1
    python benchmarks/throughput.py --pair 'folder:F/amazon?size=64->folder:F/webcam?size=64' \\
        --backbone resnet18 --batch-size 32 --steps 20 --rounds 3 --threads 1

**Loader** (``--loader``, a streamed folder pair). Per round (its runs in an order shuffled with seed
r), for each ``--workers-list`` count: the engine's own batch generator (``qianyi.train.engine._batches``)
is iterated for ``--loader-steps`` steps without training (decode + resize + augment + collate of source
and target batches); for each ``--backbone``: the baseline trains ``--steps`` steps on the same images held
in memory (the same spec without ``stream=1``: the network's rate with free data), and end to end on
the streamed folder with each worker count (what a streamed run gets).

    python benchmarks/throughput.py --loader --backbone lenet,resnet18 --steps 20 --loader-steps 200 \\
        --rounds 3 --threads 1 --batch-size 32 \\
        --pair 'folder:F/amazon?size=64&stream=1->folder:F/webcam?size=64&stream=1'

**Image folder** (``--make-folder DIR``): writes an Office-31-style tree ``DIR/{amazon,webcam}/CLASS/*.jpg``
of coloured, upscaled digits (MNIST test set from ``$QIANYI_DATA/mnist`` when there, else sklearn's
8x8 digits), two visibly different domains, then exits.
"""
from __future__ import annotations

import argparse
import sys
import gzip
import math
import os
import platform
import random
import re
import resource
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import qianyi
from qianyi.cli import script_main  # noqa: E402
from qianyi._io import write_json, write_text
from qianyi.bench import parse_pair
from qianyi.data.lazy import is_lazy
from qianyi.methods import Batch, Method
from qianyi.nn.backbones import backbone_for
from qianyi.nn.resnet import NamedBackbone
from qianyi.train import TrainConfig, Trainer
from qianyi.train.engine import TrainData, _batches, resolve_device

#: The goal of issue 12 for alignment methods: DA step cost at most this times the no-DA step cost.
GOAL = 1.15


class SourceTargetCE(Method):
    """Baseline: forwards source and target together, minimises source cross-entropy only."""

    name = "source+target (no DA)"

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"cls": self.source_ce(batch)}


def cpu_now() -> float:
    """CPU seconds (user + system) of this process and of its finished, reaped children (loader workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class TimedTrainer(Trainer):
    """The engine's Trainer, also recording the CPU seconds of the training steps.

    ``cpu_seconds``: CPU time (this process, all its threads, plus loader workers once they have exited)
    spent in the training loop minus the end-of-epoch scoring. Unlike wall time it does not grow while
    other jobs hold the core, so on a shared machine it is the steadier measure of what a step costs.
    """

    cpu_seconds = 0.0
    _scoring = 0.0

    def _loop(self, *args, **kwargs) -> None:  # type: ignore[override]
        self._scoring = 0.0
        t = cpu_now()
        super()._loop(*args, **kwargs)
        self.cpu_seconds = cpu_now() - t - self._scoring

    def _end_epoch(self, *args, **kwargs) -> None:  # type: ignore[override]
        t = cpu_now()
        super()._end_epoch(*args, **kwargs)
        self._scoring += cpu_now() - t


# --- machine and setup notes ----------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, torch threads "
            f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def shuffled(jobs: list, r: int) -> list:
    """Round r's order: a permutation seeded by r, so no run always follows the same one (what ran just
    before changes the allocator's and the caches' state, which moved LeNet-64 steps by up to 20%)."""
    jobs = list(jobs)
    random.Random(r).shuffle(jobs)
    return jobs


def factory(name: str | None) -> Callable:
    return backbone_for if name in (None, "", "default") else NamedBackbone(name)


def label(name: str | None) -> str:
    return "qianyi default" if name in (None, "", "default") else name


# --- methods mode ---------------------------------------------------------------------------------

def run_methods(args: argparse.Namespace) -> str:
    backbones = [b for b in (args.backbone or "default").split(",") if b]
    if len(backbones) != 1:
        raise SystemExit("--backbone takes one name here (a list only with --loader)")
    bb = backbones[0]
    task = qianyi.load_task(*parse_pair(args.pair))
    if is_lazy(task.source.X) or is_lazy(task.target.X):
        print("note: a streamed pair: the times include the loader (--workers "
              f"{args.workers}); see --loader for the loader alone", flush=True)
    names = ["baseline"] + [m for m in args.methods.split(",") if m]

    def fit(n: str, steps: int, seed: int) -> tuple[float, float]:
        method = SourceTargetCE() if n == "baseline" else qianyi.get_method(n)
        cfg = TrainConfig(epochs=1, steps_per_epoch=steps, batch_size=args.batch_size, progress=False,
                          device=args.device, seed=seed, workers=args.workers)
        trainer = TimedTrainer(method, cfg, backbone_factory=factory(bb))
        return trainer.fit(task).train_seconds, trainer.cpu_seconds

    load0, t_all = loadavg(), time.perf_counter()
    if args.warmup_steps:
        for n in names:
            fit(n, args.warmup_steps, 0)
        print(f"warm-up: {args.warmup_steps} steps of each, {time.perf_counter() - t_all:.1f}s", flush=True)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in shuffled(names, r):
            t0 = time.perf_counter()
            wall_s, cpu_s = fit(n, args.steps, r)  # training steps only
            times[n].append(wall_s)
            cpu[n].append(cpu_s)
            print(f"round {r} {n:10s} {wall_s:.2f}s, CPU {cpu_s:.2f}s (wall with setup "
                  f"{time.perf_counter() - t0:.2f}s; load {loadavg()})", flush=True)
    samples = args.steps * 2 * args.batch_size
    med = statistics.median
    base, base_cpu = med(times["baseline"]), med(cpu["baseline"])
    rows = []
    for n in names:
        w, c = med(times[n]), med(cpu[n])
        rows.append({"method": n, "median_seconds": round(w, 3), "samples_per_s": round(samples / w),
                     "cost_ratio": round(w / base, 3),
                     "median_cpu_seconds": round(c, 3), "cpu_ms_per_step": round(1000 * c / args.steps, 2),
                     "cpu_samples_per_s": round(samples / c), "cpu_cost_ratio": round(c / base_cpu, 3),
                     "round_cpu_ratios": [round(a / b, 3) for a, b in zip(cpu[n], cpu["baseline"])],
                     "round_ratios": [round(a / b, 3) for a, b in zip(times[n], times["baseline"])]})
    device = str(resolve_device(args.device))
    wall = time.perf_counter() - t_all
    lines = [f"Cost of DA on {args.pair}, backbone {label(bb)}, {args.steps} steps of "
             f"{args.batch_size}+{args.batch_size} samples, median of {args.rounds} interleaved rounds "
             f"(after {args.warmup_steps} warm-up steps each), device {device}.",
             f"Machine: {machine()}. Load average {load0} at start, {loadavg()} at end; {wall:.0f}s in all.", "",
             f"| method | CPU ms/step | cost vs. no-DA, CPU time | per-round CPU ratios | <= {GOAL}x | "
             "wall s | samples/s (wall) | cost vs. no-DA, wall time |",
             "|---|---:|---:|---|:---:|---:|---:|---:|"]
    for row in rows:
        name = "source+target, no DA terms (baseline)" if row["method"] == "baseline" else row["method"]
        ok = "" if row["method"] == "baseline" else ("yes" if row["cpu_cost_ratio"] <= GOAL else "**no**")
        lines.append(f"| {name} | {row['cpu_ms_per_step']:.1f} | {row['cpu_cost_ratio']:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in row['round_cpu_ratios'])} | {ok} | "
                     f"{row['median_seconds']:.2f} | {row['samples_per_s']} | {row['cost_ratio']:.2f} |")
    text = "\n".join(lines)
    out = Path(args.out)
    write_text(out / "throughput.md", text + "\n")
    write_json(out / "throughput.json", {"pair": args.pair, "backbone": label(bb), "steps": args.steps,
                                         "batch_size": args.batch_size, "rounds": args.rounds,
                                         "warmup_steps": args.warmup_steps, "device": device, "machine": machine(),
                                         "rows": rows, "raw_seconds": times, "raw_cpu_seconds": cpu})
    return text


# --- loader mode ----------------------------------------------------------------------------------

def in_memory(spec: str) -> str:
    """The same folder spec read into memory: ``stream=1`` and ``augment=...`` dropped."""
    base, q, rest = spec.partition("?")
    shifts = ""
    m = re.search(r"\+", rest)
    if m:  # shifts follow the options (they are refused on streamed folders anyway)
        rest, shifts = rest[:m.start()], rest[m.start():]
    opts = [o for o in rest.split("&") if o and not o.startswith(("stream=", "augment="))] if q else []
    return base + ("?" + "&".join(opts) if opts else "") + shifts


def time_loader(task: qianyi.TransferTask, batch_size: int, steps: int, workers: int, seed: int,
                device: torch.device) -> tuple[float, float, float]:
    """(wall seconds for ``steps`` batches, wall seconds to the first batch, CPU seconds of this process and
    the loader workers) from the engine's batch generator, with no training."""
    data = TrainData.from_task(task)
    cfg = TrainConfig(epochs=1, steps_per_epoch=steps, batch_size=batch_size, progress=False, seed=seed,
                      workers=workers)
    c0, t0 = cpu_now(), time.perf_counter()
    gen = _batches(data, cfg, device, 0, steps)
    first = None
    n = 0
    for xs, ys, xt, yt in gen:
        if first is None:
            first = time.perf_counter() - t0
        n += 1
    total = time.perf_counter() - t0
    gen.close()  # the workers exit here, so their CPU time is counted
    cpu_s = cpu_now() - c0
    assert n == steps, (n, steps)
    return total, first or 0.0, cpu_s


def run_loader(args: argparse.Namespace) -> str:
    source, target = parse_pair(args.pair)
    stream_task = qianyi.load_task(source, target)
    if not (is_lazy(stream_task.source.X) and is_lazy(stream_task.target.X)):
        raise SystemExit("--loader needs a streamed folder pair, e.g. "
                         "'folder:A?size=64&stream=1->folder:B?size=64&stream=1'")
    t_load = time.perf_counter()
    mem_task = qianyi.load_task(in_memory(source), in_memory(target))
    t_load = time.perf_counter() - t_load
    n_images = sum(len(d) for d in (mem_task.source, mem_task.source_val, mem_task.target, mem_task.target_test)
                   if d is not None)
    workers = [int(w) for w in args.workers_list.split(",")]
    backbones = [b for b in (args.backbone or "default").split(",") if b]
    device = resolve_device(args.device)
    B, K = args.batch_size, args.steps
    KL = args.loader_steps or K  # the loader alone is cheap: iterate it longer, past the workers' start-up
    samples, loader_samples = K * 2 * B, KL * 2 * B
    med = statistics.median

    def train(bb: str, task: qianyi.TransferTask, w: int, seed: int, steps: int = K) -> tuple[float, float]:
        cfg = TrainConfig(epochs=1, steps_per_epoch=steps, batch_size=B, progress=False, device=args.device,
                          seed=seed, workers=w)
        trainer = TimedTrainer(SourceTargetCE(), cfg, backbone_factory=factory(bb))
        return trainer.fit(task).train_seconds, trainer.cpu_seconds

    load0, t_all = loadavg(), time.perf_counter()
    if args.warmup_steps:
        for bb in backbones:
            train(bb, mem_task, 0, 0, args.warmup_steps)
        time_loader(stream_task, B, min(K, args.warmup_steps), 0, 0, device)
    loader: dict[int, list[tuple[float, float, float]]] = {w: [] for w in workers}
    compute: dict[str, list[tuple[float, float]]] = {bb: [] for bb in backbones}
    e2e: dict[str, dict[int, list[tuple[float, float]]]] = {bb: {w: [] for w in workers} for bb in backbones}
    jobs = [("loader", None, w) for w in workers]
    for bb in backbones:
        jobs.append(("memory", bb, 0))
        if args.end_to_end:
            jobs += [("stream", bb, w) for w in workers]
    for r in range(args.rounds):
        for kind, bb, w in shuffled(jobs, r):
            if kind == "loader":
                loader[w].append(time_loader(stream_task, B, KL, w, r, device))
                t, f, c = loader[w][-1]
                print(f"round {r} loader workers={w}: {t:.2f}s (first batch {f:.2f}s), CPU {c:.2f}s; "
                      f"load {loadavg()}", flush=True)
            elif kind == "memory":
                compute[bb].append(train(bb, mem_task, 0, r))
                print(f"round {r} {label(bb)} train in memory: {compute[bb][-1][0]:.2f}s, "
                      f"CPU {compute[bb][-1][1]:.2f}s", flush=True)
            else:
                e2e[bb][w].append(train(bb, stream_task, w, r))
                print(f"round {r} {label(bb)} train streamed workers={w}: {e2e[bb][w][-1][0]:.2f}s, "
                      f"CPU {e2e[bb][w][-1][1]:.2f}s", flush=True)
    wall = time.perf_counter() - t_all

    lines = [f"Loader vs. training on {args.pair}: batches of {B}+{B} images; the loader alone for {KL} steps "
             f"({loader_samples} images), training for {K} steps ({samples} images); median of {args.rounds} "
             f"interleaved rounds, device {device}. Reading all "
             f"{n_images} images of the pair into memory took {t_load:.1f}s.",
             f"Machine: {machine()}. Load average {load0} at start, {loadavg()} at end; {wall:.0f}s in all.", "",
             "Loader alone (the engine's `_batches`: decode, resize, collate; no training). CPU = this process "
             "plus its loader workers:", "",
             "| loader workers | wall s | samples/s (wall) | first batch after (s) | wall ms/step | CPU ms/step | "
             "samples per CPU-second |", "|---:|---:|---:|---:|---:|---:|---:|"]
    rows: dict = {"loader": [], "train": []}
    for w in workers:
        t, f, c = (med([x[i] for x in loader[w]]) for i in range(3))
        rows["loader"].append({"workers": w, "median_seconds": round(t, 3), "samples_per_s": round(loader_samples / t),
                               "first_batch_seconds": round(f, 3), "median_cpu_seconds": round(c, 3),
                               "raw": loader[w]})
        lines.append(f"| {w} | {t:.2f} | {loader_samples / t:.0f} | {f:.2f} | {1000 * t / KL:.1f} | "
                     f"{1000 * c / KL:.1f} | {loader_samples / c:.0f} |")
    lines += ["", "Baseline training (source+target cross-entropy, no DA). In memory: the same images decoded "
              "once beforehand (the network's own rate); streamed: end to end through the loader with that many "
              "workers (CPU counts the workers too):", "",
              "| backbone | data | wall s | samples/s (wall) | wall ms/step | wall vs. in memory | CPU ms/step |",
              "|---|---|---:|---:|---:|---:|---:|"]
    decode_cpu = med([x[2] for x in loader[0]]) * K / KL if 0 in loader else None  # per K steps, as training
    for bb in backbones:
        tc, cc = med([x[0] for x in compute[bb]]), med([x[1] for x in compute[bb]])
        row = {"backbone": label(bb), "in_memory_seconds": round(tc, 3), "in_memory_cpu_seconds": round(cc, 3),
               "in_memory_samples_per_s": round(samples / tc), "raw_in_memory": compute[bb], "streamed": []}
        if decode_cpu:
            row["decode_cpu_over_train_cpu"] = round(decode_cpu / cc, 3)
        lines.append(f"| {label(bb)} | in memory | {tc:.2f} | {samples / tc:.0f} | {1000 * tc / K:.1f} | 1.00 | "
                     f"{1000 * cc / K:.1f} |")
        if args.end_to_end:
            for w in workers:
                te, ce = med([x[0] for x in e2e[bb][w]]), med([x[1] for x in e2e[bb][w]])
                row["streamed"].append({"workers": w, "median_seconds": round(te, 3),
                                        "median_cpu_seconds": round(ce, 3), "samples_per_s": round(samples / te),
                                        "raw": e2e[bb][w]})
                lines.append(f"| {label(bb)} | streamed, {w} worker(s) | {te:.2f} | {samples / te:.0f} | "
                             f"{1000 * te / K:.1f} | {te / tc:.2f}x | {1000 * ce / K:.1f} |")
        rows["train"].append(row)
    if decode_cpu:
        lines += ["", f"Decoding one step's {2 * B} images costs {1000 * decode_cpu / K:.1f} CPU-ms in one process "
                  f"({samples / decode_cpu:.0f} images per CPU-second, 0 workers); training one step in memory costs "
                  + ", ".join(f"{1000 * med([x[1] for x in compute[bb]]) / K:.1f} CPU-ms ({label(bb)})"
                              for bb in backbones)
                  + ". Loader workers needed to keep up, one free core each (ceil(decode / train CPU per step)): "
                  + ", ".join(f"{label(bb)} {math.ceil(decode_cpu / med([x[1] for x in compute[bb]]))}"
                              for bb in backbones) + "."]
    text = "\n".join(lines)
    out = Path(args.out)
    write_text(out / "loader.md", text + "\n")
    write_json(out / "loader.json", {"pair": args.pair, "steps": K, "loader_steps": KL, "batch_size": B,
                                     "rounds": args.rounds,
                                     "device": str(device), "machine": machine(), **rows})
    return text


# --- image folder ---------------------------------------------------------------------------------

def _digit_images() -> tuple[np.ndarray, np.ndarray, str]:
    """(n, h, w) uint8 digit images (0 = background) and labels: MNIST test set if available, else sklearn."""
    root = os.environ.get("QIANYI_DATA")
    mnist = Path(root) / "mnist" if root else None
    if mnist is not None and (mnist / "t10k-images-idx3-ubyte.gz").is_file():
        with gzip.open(mnist / "t10k-images-idx3-ubyte.gz") as fh:
            X = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(mnist / "t10k-labels-idx1-ubyte.gz") as fh:
            y = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)
        return X, y, f"MNIST test set ({mnist})"
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    return X, d.target.astype(np.int64), "scikit-learn load_digits (8x8)"


def make_folder(root: Path, per_class: int = 40, seed: int = 0, sizes: tuple[int, int] = (160, 200)) -> str:
    """Office-31-style ``root/{amazon,webcam}/CLASS/*.jpg``: disjoint digit images in two styles.

    amazon: ``sizes[0]`` px square (default 160), a coloured digit on a light, smoothly shaded background
    (JPEG quality 90). webcam: ``sizes[1]`` px (default 200), a light digit, rotated up to 15 degrees and
    blurred, on a dark noisy background (JPEG quality 75). Returns a line saying what was written.
    """
    from PIL import Image, ImageFilter

    X, y, what = _digit_images()
    rng = np.random.default_rng(seed)
    picks = {c: rng.permutation(np.flatnonzero(y == c)) for c in range(10)}
    for c in range(10):
        if len(picks[c]) < 2 * per_class:
            raise SystemExit(f"only {len(picks[c])} images of class {c} in {what}; lower --per-class")
    counts = {}
    for d, (dom, size) in enumerate(zip(("amazon", "webcam"), sizes)):
        n = 0
        for c in range(10):
            out = root / dom / str(c)
            out.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(picks[c][d * per_class:(d + 1) * per_class]):
                mask = Image.fromarray(X[i]).resize((size, size), Image.BICUBIC)
                if dom == "webcam":
                    mask = mask.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
                    mask = mask.filter(ImageFilter.GaussianBlur(1.5))
                a = np.asarray(mask, np.float32)[..., None] / 255.0
                if dom == "amazon":
                    fg = rng.uniform(0, 160, 3)
                    ramp = np.linspace(0.85, 1.0, size, dtype=np.float32)[:, None, None]
                    bg = rng.uniform(200, 255, 3) * ramp * np.ones((1, size, 1), np.float32)
                    quality = 90
                else:
                    fg = rng.uniform(170, 255, 3)
                    bg = rng.uniform(20, 80, 3) + rng.normal(0, 18, (size, size, 3))
                    quality = 75
                img = np.clip(bg * (1 - a) + fg * a, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(out / f"{dom}_{c}_{k:04d}.jpg", quality=quality)
                n += 1
        counts[dom] = n
    note = (f"Written by benchmarks/throughput.py --make-folder (seed {seed}) from the {what}: "
            f"amazon {counts['amazon']} images {sizes[0]}x{sizes[0]} (coloured digit on light shaded background, "
            f"JPEG q90), webcam {counts['webcam']} images {sizes[1]}x{sizes[1]} (light rotated blurred digit on "
            "dark noisy background, "
            "JPEG q75); the two domains use disjoint images.")
    (root / "README.txt").write_text(note + "\n")
    return note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="mnist->digits", help="SOURCE->TARGET pair to time (default mnist->digits)")
    ap.add_argument("--methods", default="ddc,dan,dann", help="comma-separated methods, each timed against the baseline (the same batches, cross-entropy only)")
    ap.add_argument("--backbone", default=None,
                    help="network: lenet, mlp, resnet18, resnet50 (default: qianyi's default for the data); "
                         "with --loader a comma-separated list")
    ap.add_argument("--steps", type=int, default=300, help="timed training steps per method and round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (methods interleaved, in an order shuffled per round; medians reported)")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps of each method first (0: none)")
    ap.add_argument("--batch-size", type=int, default=64, help="samples per domain per step")
    ap.add_argument("--workers", type=int, default=0, help="loader workers when the pair is a streamed folder")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--loader", action="store_true", help="measure the streamed loader against training instead")
    ap.add_argument("--workers-list", default="0,1,2", help="--loader: loader worker counts to measure")
    ap.add_argument("--loader-steps", type=int, default=None,
                    help="--loader: steps to iterate the loader alone (default: --steps)")
    ap.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                    help="--loader: skip the end-to-end streamed training runs")
    ap.add_argument("--make-folder", metavar="DIR", default=None,
                    help="write an Office-31-style image folder DIR/{amazon,webcam}/CLASS/*.jpg and exit")
    ap.add_argument("--per-class", type=int, default=40, help="--make-folder: images per class and domain")
    ap.add_argument("--image-px", default="160,200", help="--make-folder: image side of amazon,webcam in pixels")
    ap.add_argument("--out", default="runs/throughput", help="folder for the results (default runs/throughput)")
    args = ap.parse_args()
    if args.make_folder:
        sizes = tuple(int(v) for v in args.image_px.split(","))
        if len(sizes) != 2:
            raise SystemExit("--image-px takes two sides: AMAZON,WEBCAM (e.g. 160,200)")
        print(make_folder(Path(args.make_folder), args.per_class, sizes=sizes))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(run_loader(args) if args.loader else run_methods(args))


if __name__ == "__main__":
    sys.exit(script_main(main))

"""Layer transferability (Yosinski, Clune, Bengio & Lipson, "How transferable are features in deep
neural networks?", NIPS 2014), on the one training engine.

A labelled dataset is split into two tasks A and B (two halves of the classes: a *similar* pair;
or two different datasets: a *dissimilar* pair). Base networks are trained on A and on B. Then, for
each k, a network for B starts from the first k layer groups of a base network and trains the rest:

=========  ==========================================  =====================================
name       first k groups copied from                  copied groups during training on B
=========  ==========================================  =====================================
``BnB``    base B (selffer)                            frozen
``BnB+``   base B                                      fine-tuned
``AnB``    base A (transfer)                           frozen
``AnB+``   base A                                      fine-tuned
=========  ==========================================  =====================================

All networks are scored on B's test split. Every run is ``qianyi.run("source-only", ...)`` with
:class:`TrainConfig` ``init_from`` / ``init_layers`` / ``freeze`` — no separate training loop.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .._io import write_json, write_text
from ..data.domain import Domain, TransferTask, stratified_split
from ..errors import DataError
from ..nn.backbones import backbone_for
from .._report import markdown_table, save_figure, subplots
from ..methods.registry import get_method
from ..train.config import LAST, TrainConfig, normalise_seeds
from ..train.engine import caller_rng_kept
from ..train.result import MODEL_FILE, RunResult
from ..train.run import model_names, run, run_fingerprint
from ..train.store import finished, kept_folder, named_folder, short_slug, slug

CONDITIONS = ("BnB", "BnB+", "AnB", "AnB+")
BASE = "base"


@dataclass(frozen=True, eq=False)
class TaskData:
    """One labelled task of the protocol: a train and a test split of the same classes."""

    name: str
    train: Domain
    test: Domain

    def task(self) -> TransferTask:
        """The engine's view: train on ``train`` (source), score on ``test`` (the target test split)."""
        return TransferTask.from_domains(self.train, self.test, target_test=self.test, name=self.name)


@dataclass(frozen=True, eq=False)
class ProtocolPair:
    """Tasks A (the source of copied layers) and B (the task every network is scored on)."""

    name: str
    a: TaskData
    b: TaskData


def select_classes(domain: Domain, classes: Sequence[int], name: str, test_fraction: float = 0.2,
                   max_train: int | None = None, seed: int = 0) -> TaskData:
    """The samples of ``classes`` (re-indexed 0..len-1), split stratified into train/test; ``max_train`` caps train."""
    if domain.y is None:
        raise DataError(f"domain {domain.name!r} has no labels; the transferability protocol needs labelled tasks")
    classes = [int(c) for c in classes]
    bad = [c for c in classes if c < 0 or c >= domain.n_classes]
    if bad or len(classes) < 2:
        raise DataError(f"classes {classes} of {domain.name!r}: need at least two of 0..{domain.n_classes - 1}")
    keep = np.flatnonzero(np.isin(domain.y, classes))
    remap = np.full(domain.n_classes, -1)
    remap[classes] = np.arange(len(classes))
    names = tuple(domain.class_names[c] for c in classes) if domain.class_names else None
    # its own pool of samples (the classes chosen): a model trained on the other classes of the dataset never saw
    # these samples, so it may start a run on them (init_from checks the pool of its labelled source)
    sub = Domain(domain.X[keep], remap[domain.y[keep]], name, names, f"{domain.origin}{classes}", domain.style)
    train_idx, test_idx = stratified_split(sub.y, len(sub), test_fraction, seed)
    train = sub.subset(train_idx)
    if max_train is not None and len(train) > max_train:
        _, kept = stratified_split(train.y, len(train), max_train / len(train), seed + 1)
        train = train.subset(kept)
    return TaskData(name, train, sub.subset(test_idx, name=f"{name} (test)"))


def class_halves(domain: Domain, seed: int = 0) -> tuple[list[int], list[int]]:
    """A random half of the classes of ``domain`` and the other half (Yosinski et al.'s A/B split)."""
    perm = np.random.default_rng(seed).permutation(domain.n_classes)
    half = domain.n_classes // 2
    return sorted(perm[:half].tolist()), sorted(perm[half:].tolist())


def similar_pair(domain: Domain, seed: int = 0, max_train: int | None = None,
                 test_fraction: float = 0.2) -> ProtocolPair:
    """A and B = two random halves of the classes of one dataset (a similar pair)."""
    if domain.n_classes < 4:
        raise DataError(f"{domain.name!r} has {domain.n_classes} classes; the protocol splits a dataset's classes "
                        "into two tasks A and B of at least two classes each: give a dataset with at least 4 "
                        "classes (e.g. mnist, digits, fashion)")
    ca, cb = class_halves(domain, seed)
    a = select_classes(domain, ca, f"{domain.name}{ca}", test_fraction, max_train, seed)
    b = select_classes(domain, cb, f"{domain.name}{cb}", test_fraction, max_train, seed)
    return ProtocolPair(f"similar: {a.name} -> {b.name}", a, b)


def dissimilar_pair(other: Domain, b: TaskData, seed: int = 0, max_train: int | None = None,
                    test_fraction: float = 0.2) -> ProtocolPair:
    """A = as many random classes of another dataset as B has (e.g. Fashion-MNIST for digits)."""
    if other.sample_shape != b.train.sample_shape:
        raise DataError(f"{other.name!r} has samples of shape {other.sample_shape}, task B {b.name!r} has "
                        f"{b.train.sample_shape}; bring both to one canvas (qianyi.data.canvas) first")
    n_b = int(b.train.y.max()) + 1
    perm = np.random.default_rng(seed).permutation(other.n_classes)[:n_b]
    a = select_classes(other, sorted(perm.tolist()), f"{other.name}{sorted(perm.tolist())}", test_fraction,
                       max_train, seed)
    return ProtocolPair(f"dissimilar: {a.name} -> {b.name}", a, b)


@dataclass
class TransferabilityResult:
    """Accuracy on B's test split for every (pair, condition, k, seed); ``condition`` ``base`` is k = 0."""

    pairs: list[str]
    ks: list[int]
    layer_names: list[str]
    seeds: list[int]
    runs: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def accuracies(self, pair: str, condition: str, k: int = 0) -> np.ndarray:
        return np.array([r["accuracy"] for r in self.runs if r["pair"] == pair and r["condition"] == condition
                         and (condition == BASE or r["k"] == k)])

    def base(self, pair: str) -> float:
        return float(self.accuracies(pair, BASE).mean())

    def findings(self) -> dict[str, dict[str, float]]:
        """Per pair: AnB's drop from base B at the top k; mean AnB+ minus base over k; BnB's worst drop."""
        out = {}
        top = max(self.ks)
        for p in self.pairs:
            base = self.base(p)
            out[p] = {
                "base_accuracy": base,
                "anb_drop_at_top_k": base - float(self.accuracies(p, "AnB", top).mean()),
                "anb_drop_max": max(base - float(self.accuracies(p, "AnB", k).mean()) for k in self.ks),
                "anb_plus_minus_base": float(np.mean([self.accuracies(p, "AnB+", k).mean() for k in self.ks])) - base,
                "bnb_drop_max": max(base - float(self.accuracies(p, "BnB", k).mean()) for k in self.ks),
            }
        return out

    def table(self) -> str:
        def cell(a: np.ndarray) -> str:
            return f"{100 * a.mean():.1f} ± {100 * a.std(ddof=1):.1f}" if len(a) > 1 else f"{100 * a.mean():.1f}"
        blocks = []
        for p in self.pairs:
            rows = [["0 (base B)", "–", cell(self.accuracies(p, BASE)), "", "", ""]]
            for k in self.ks:
                rows.append([str(k), self.layer_names[k - 1], *(cell(self.accuracies(p, c, k)) for c in CONDITIONS)])
            blocks.append(f"{p}\n\n" + markdown_table(["k", "copied up to", *CONDITIONS], rows))
        f = self.findings()
        summary = markdown_table(
            ["pair", "base B (%)", "AnB drop at top k (pts)", "largest AnB drop (pts)", "AnB+ − base, mean over k (pts)",
             "largest BnB drop (pts)"],
            [[p, 100 * v["base_accuracy"], 100 * v["anb_drop_at_top_k"], 100 * v["anb_drop_max"],
              100 * v["anb_plus_minus_base"], 100 * v["bnb_drop_max"]] for p, v in f.items()], digits=1)
        return "\n\n".join(blocks + [summary, f"Accuracy (%) on B's test split, mean ± std over seeds {self.seeds}."])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "findings": self.findings()}

    def write(self, out: str | Path) -> dict[str, str]:
        out = Path(out)
        self.files = {"json": str(out / "transferability.json"), "md": str(out / "transferability.md"),
                      "png": str(out / "transferability.png")}
        write_text(self.files["md"], self.table() + "\n")
        self.plot(self.files["png"])
        write_json(self.files["json"], self.to_dict())
        return self.files

    def plot(self, path: str | Path) -> Path:
        """Like Yosinski et al.'s Fig. 2: accuracy against k, dots per seed, lines through the means."""
        style = {"BnB": ("#1f3fbf", "o"), "BnB+": ("#7fa6ff", "s"), "AnB": ("#c0122e", "D"), "AnB+": ("#ff8fa3", "^")}
        n = len(self.pairs)
        fig, axes = subplots(1, n + 1, figsize=(4.6 * (n + 1), 3.8), squeeze=False)
        jitter = {c: (i - 1.5) * 0.06 for i, c in enumerate(CONDITIONS)}
        for ax, p in zip(axes[0], self.pairs):
            b = self.accuracies(p, BASE)
            ax.scatter(np.zeros(len(b)), 100 * b, facecolors="white", edgecolors="black", zorder=3, label="base B")
            for c in CONDITIONS:
                color, marker = style[c]
                for k in self.ks:
                    a = self.accuracies(p, c, k)
                    ax.scatter(np.full(len(a), k + jitter[c]), 100 * a, color=color, marker=marker, s=14, alpha=0.6)
                ax.plot([0, *self.ks], [100 * b.mean(), *(100 * self.accuracies(p, c, k).mean() for k in self.ks)],
                        color=color, marker=marker, label=c)
            ax.set_xticks([0, *self.ks], ["0", *(f"{k}\n{self.layer_names[k - 1]}" for k in self.ks)], fontsize=8)
            ax.set_title(p, fontsize=9)
            ax.set_xlabel("layer k up to which groups are copied")
            ax.set_ylabel("top-1 accuracy on B (%)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        ax = axes[0][-1]
        for j, p in enumerate(self.pairs):  # the conditions' colours of the other panels; a line style per pair
            base, line = self.base(p), ["-", "--", ":", "-."][j % 4]
            for c in ("AnB", "AnB+"):
                ax.plot([0, *self.ks], [0.0, *(100 * (self.accuracies(p, c, k).mean() - base) for k in self.ks)],
                        color=style[c][0], marker=style[c][1], linestyle=line, label=f"{c} − base: {p.split(':')[0]}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks([0, *self.ks])
        ax.set_title("transfer relative to base B", fontsize=9)
        ax.set_xlabel("k")
        ax.set_ylabel("accuracy difference (points)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path)


@caller_rng_kept()  # building networks draws initial weights: not from the caller's generators
def transferability(pairs: Sequence[ProtocolPair], ks: Sequence[int] | None = None,
                    seeds: int | Sequence[int] = (0, 1, 2),
                    config: TrainConfig | None = None, out: str | Path | None = None,
                    log: Callable[[str], None] | None = print) -> TransferabilityResult:
    """Run the protocol: base A and base B, then BnB, BnB+, AnB, AnB+ for each k and seed.

    ``ks`` defaults to every layer group below the logits (the output layer is never copied, as in
    the paper). Every network keeps its last epoch: ``config`` must not choose epochs by a validator
    (``select``, ``validators``), which would read B's test inputs. Runs live in ``out/runs/TASK/CONDITION/kK/seedS`` and are reused when finished with
    the same settings, so a killed protocol resumes; a pair sharing task B with another reuses its runs.
    ``seeds``: a count N (seeds 0..N-1) or distinct seeds.
    """
    seeds = normalise_seeds(seeds, "transferability")
    if not pairs:
        raise DataError("transferability needs at least one pair of tasks A and B")
    base_cfg = config or TrainConfig()
    if base_cfg.select != LAST or base_cfg.validators:
        raise DataError(f"transferability keeps each network's last epoch: the only unlabelled data its runs hold is "
                        f"B's test split, which no choice of epoch may look at; give a TrainConfig with select='last' "
                        f"and no validators (got select={base_cfg.select!r}, validators={tuple(base_cfg.validators)!r})")
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise DataError(f"pair names must be unique, got {names}")
    shape = pairs[0].b.train.sample_shape
    groups = list(backbone_for(shape, 2).group_names)
    top = len(groups) - 1
    ks = sorted(set(ks)) if ks is not None else list(range(1, top + 1))
    if not ks or min(ks) < 1 or max(ks) > top:
        raise DataError(f"k counts copied layer groups and must be in 1..{top} ({groups[:top]}), got {list(ks)}")
    result = TransferabilityResult(names, list(ks), groups, seeds)
    with runs_root(out, "qianyi-transfer-") as root:
        for seed in seeds:
            for pair in pairs:
                if pair.a.train.sample_shape != shape or pair.b.train.sample_shape != shape:
                    raise DataError(f"pair {pair.name!r}: every task must have samples of shape {shape}")
                bases = {"A": _train(root, pair.a, BASE, 0, seed, base_cfg, None, log),
                         "B": _train(root, pair.b, BASE, 0, seed, base_cfg, None, log)}
                result.runs.append(_row(pair, BASE, 0, seed, bases["B"][0]))
                for k in ks:
                    for cond in CONDITIONS:
                        res, _ = _train(root, pair.b, cond, k, seed, base_cfg, (bases[cond[0]][1], pair.a.name
                                        if cond[0] == "A" else pair.b.name), log)
                        result.runs.append(_row(pair, cond, k, seed, res))
        if out is not None:
            result.write(out)
    return result


@contextlib.contextmanager
def runs_root(out: str | Path | None, prefix: str) -> Iterator[Path]:
    """Where an experiment's runs go: ``out`` (kept, so a rerun reuses them), or a temporary folder
    removed at the end when there is no ``out``."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def _row(pair: ProtocolPair, cond: str, k: int, seed: int, res: RunResult) -> dict[str, Any]:
    return {"pair": pair.name, "condition": cond, "k": k, "seed": seed, "accuracy": res.target_accuracy,
            "train_seconds": res.train_seconds}


def _train(root: Path, data: TaskData, cond: str, k: int, seed: int, base: TrainConfig,
           init: tuple[Path, str] | None, log: Callable[[str], None] | None) -> tuple[RunResult, Path]:
    """One network for task ``data`` through the engine; returns its result and model file."""
    rdir = named_folder(root / "runs", data.name)
    if init is not None:
        rdir = kept_folder(rdir, f"{cond}-from-{slug(init[1])}", f"{cond}-from-{short_slug(init[1])}")
    else:
        rdir = rdir / cond
    rdir = rdir / f"k{k}" / f"seed{seed}"
    cfg = replace(base, seed=seed, checkpoint_dir=None, init_from=str(init[0]) if init else None,
                  init_layers=k if init else None, freeze=k if init and not cond.endswith("+") else 0)
    return cached_run(rdir, "source-only", data.task(), cfg, None, log, f"{data.name} {cond} k={k} seed {seed}")


def cached_run(rdir: Path, method: str, task: TransferTask, cfg: TrainConfig, backbone: Any = None,
               log: Callable[[str], None] | None = None, label: str = "", **hparams: Any) -> tuple[RunResult, Path]:
    """``run(method, task, cfg)`` in ``rdir``, or the finished run already there with the same fingerprint
    (method, settings, data, network: :func:`qianyi.train.run.run_fingerprint`); returns its result and
    model file. A finished run keeps result.json + model.pt (its checkpoint is removed, as :func:`run` removes it,
    unless ``cfg.keep_checkpoint``); one recording other class or feature names is trained again."""
    done = finished(rdir, run_fingerprint(get_method(method, **hparams), cfg, task, backbone),
                    model_names(task, backbone))
    if done is None:
        done, _ = run(method, task, cfg, out=rdir, backbone=backbone, **hparams)
        if log:
            acc = "–" if done.target_accuracy is None else f"{100 * done.target_accuracy:.2f}%"
            log(f"  {label}: {acc} ({done.train_seconds:.0f}s)")
    return done, rdir / MODEL_FILE

"""The one training engine: every method trains through :meth:`Trainer.fit`.

A fit has four parts, each a method below: **build** (device, seed, backbone, the method's extra
modules, fine-tuning init and freezing, the method's named optimizers), **restore** (resume from
a checkpoint), **loop** (per step: draw a source and a target mini-batch, set the learning rates,
call the method's ``training_step``; per epoch: log, score the label-free validators, keep the
best weights, checkpoint) and **finish** (load the chosen weights). The engine receives only the
training view of a task (:class:`TrainData`): the target test split never enters it.

The settings a fit trains with are its config completed for the data (:meth:`TrainConfig.for_task`).
Batches come from arrays on the device, or from a streamed folder through a ``DataLoader``
(:func:`_batches`; the same batches either way). Under torchrun each process trains on its share
of every batch (:mod:`qianyi.train.distributed`); ``amp`` runs the steps under autocast.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..data.domain import Domain, TransferTask
from ..data.lazy import is_lazy
from ..errors import CheckpointError, ConfigError, DataError, QianyiWarning, TrainingError
from ..methods.base import Method, ParamGroup, StepContext
from ..nn.backbones import Backbone, backbone_for
from ..nn.inference import accuracy, predict_logits
from ..schedules import annealed_lr
from ..select import SelectionData, get_validator, score_all
from . import distributed
from .checkpoint import FILENAME, load_checkpoint, save_checkpoint
from .config import LAST, TrainConfig
from .health import TOP_SHARE_KEY, game_flags, spread_rows, top_class_share, winning
from . import store
from .store import code_digest, fingerprint as run_fingerprint
from .streams import BatchStream
from .weights import check_starting_model, load_initial_weights

#: ``monitor(model) -> {name: value}``: numbers recorded in each epoch's history row for reports only;
#: the engine never reads them (``qianyi.run`` uses it to log target-test accuracy, marked as oracle).
Monitor = Callable[[nn.Module], dict[str, float]]


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else CPU. A device that is not here is refused by name."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device {device!r} is not a device name; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: this torch sees no CUDA device (torch {torch.__version__}); "
                              "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: MPS is not available here; use --device cpu")
    return dev


#: Autocast dtypes of the mixed-precision modes.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def deterministic_kernels(on: bool = True) -> Iterator[None]:
    """Within: :func:`set_deterministic` (when ``on``); the global flags and ``CUBLAS_WORKSPACE_CONFIG`` are
    restored after, so one ``--deterministic`` run does not make the later runs of a process (a bench), or the
    processes it starts, deterministic too."""
    if not on:
        yield
        return
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")  # (the environment: subprocesses inherit it)
    set_deterministic()
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


def set_deterministic() -> None:
    """Deterministic CUDA kernels: cuDNN's deterministic algorithms, no autotuning, deterministic cuBLAS."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def caller_rng_kept() -> Iterator[None]:
    """Run a block that seeds the global generators (Python's, numpy's, torch's) and give the caller theirs back
    afterwards: a loop that draws between fits (a bootstrap) drew the same numbers after every fit."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@dataclass(frozen=True)
class TrainData:
    """What training may see: labelled source train and validation, the target train split.

    The target keeps its labels only for a method that declares ``uses_target_labels`` (the oracle).
    """

    source: Domain
    source_val: Domain
    target: Domain

    @classmethod
    def from_task(cls, task: TransferTask, with_target_labels: bool = False, method: str = "this method"
                  ) -> "TrainData":
        target = task.target if with_target_labels else task.target.replace(y=None)
        if with_target_labels and target.y is None and task.test_in_target:
            n = 0 if task.target_test is None else len(task.target_test)
            raise DataError(f"{method} trains on target labels, but the target's labels are those of its test set "
                            f"({task.test_in_target} of the {n} test samples are among the target's training "
                            f"samples: transductive), so they were dropped: trained on them, it would be scored on "
                            "labels it had learnt; for an oracle, leave out --target-test (target_test=) to hold out a test split of "
                            "the target, or give a test set of other samples")
        if with_target_labels and target.y is None:
            raise DataError(f"{method} trains on target labels, but target {task.target.name!r} has none")
        if with_target_labels:
            _refuse_test_labels(task, method)
        for what, d in (("source", task.source), ("target", task.target)):
            if len(d) < 2:
                raise DataError(f"the {what} training split of {task.name!r} has {len(d)} sample(s); training needs "
                                "at least 2 (batch norm normalises over a batch): give more data or a larger "
                                "--max-samples")
        return cls(task.source, task.source_val, target)

    def selection(self) -> SelectionData:
        """The validators' view: the same splits, the target without labels."""
        target = self.target if self.target.y is None else self.target.replace(y=None)
        return SelectionData(self.source, self.source_val, target)


@dataclass
class FitResult:
    #: The network that predicts (``method.inference_model(backbone)``), in eval mode.
    model: nn.Module
    method: Method
    history: list[dict[str, float]]
    selection: str
    train_seconds: float
    steps: int
    resumed_from_step: int = 0
    device: str = "cpu"
    selected_epoch: int = 0
    backbone: Backbone | None = None
    #: Label-free warnings about the game (:func:`qianyi.train.health.game_flags`).
    flags: list[str] = field(default_factory=list)
    #: The CPU thread counts the steps were trained with (two when a resume changed it).
    threads: list[int] = field(default_factory=list)
    #: The code digests (:func:`~qianyi.train.store.code_digest`) the steps were trained under, oldest first (more
    #: than one when the run resumed a checkpoint of other code).
    codes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """One short line (the dataclass's repr printed the whole network, the method's modules and the history);
        every field stays an attribute."""
        last = self.history[-1] if self.history else {}
        val = last.get("source_val_acc")
        return (f"FitResult({self.method.name!r}, {type(self.model).__name__}, epochs={len(self.history)}, "
                f"steps={self.steps}, selected_epoch={self.selected_epoch}"
                + (f", source_val_acc={val:.4f}" if isinstance(val, float) else "")
                + f", train_seconds={self.train_seconds:.1f}, device={self.device!r}"
                + (f", resumed_from_step={self.resumed_from_step}" if self.resumed_from_step else "")
                + (f", flags={len(self.flags)}" if self.flags else "") + ")")


def _other_code(made: str | None, now: str, method: str) -> str:
    """Which code made a checkpoint, said truly: qianyi's, the method's own (defined outside qianyi: a notebook cell,
    a plugin; :func:`~qianyi.train.store.code_digest` adds its hash after a ``+``) or both."""
    if not made:
        return f"other qianyi code (from before checkpoints recorded it; the code now is {now})"
    (base_made, plus, own_made), (base_now, _, own_now) = made.partition("+"), now.partition("+")
    if not plus and own_now and base_made != base_now:  # a qianyi from before it hashed a file-less method's code
        return (f"other qianyi code ({made}; the code now is {now}; that older code did not record method "
                f"{method!r}'s own code)")
    which = ("other qianyi code" if own_made == own_now else f"other code of method {method!r} (its own code changed)"
             if base_made == base_now else f"other code, of qianyi and of method {method!r}")
    return f"{which} ({made}; the code now is {now})"


@dataclass
class _Parts:
    """What :meth:`Trainer._build` makes: the live objects of one fit."""

    device: torch.device
    model: Backbone
    frozen: list[str]
    optimizers: dict[str, torch.optim.Optimizer]
    backbone_optimizers: frozenset[str]
    anchors: list[tuple[torch.Tensor, torch.Tensor]]
    scaler: Any = None  # fp16: torch.amp.GradScaler


@dataclass
class _Progress:
    """What changes while training and is checkpointed (with the weights, optimizers and RNG)."""

    step: int = 0
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"score": -math.inf, "epoch": 0, "model": None,
                                                          "method": None})
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def epoch_line(row: dict[str, float], epochs: int, label: str = "", discriminators: tuple[str, ...] = ()) -> str:
    """One epoch's history row as a readable line: loss terms, source validation accuracy, scores;
    a discriminator that is winning (``discriminators``: its history keys) is marked."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    for k, v in row.items():
        if k in ("epoch", "lr"):
            continue
        if k == TOP_SHARE_KEY:
            parts.append(f"target top class {100 * v:.0f}%")
            continue
        if k in discriminators and winning(v):
            parts.append(f"{k} {100 * v:.1f}% (discriminator wins)")
            continue
        if k.startswith("oracle_"):  # recorded for reports only (bench), never read by training or selection
            parts.append(f"[ORACLE {k[len('oracle_'):]} {100 * v:.1f}%]")
        elif k.endswith("_acc"):
            parts.append(f"{k} {100 * v:.1f}%")
        else:
            parts.append(f"{k.removeprefix('score_')} {v:.4g}")
    return (f"{label}: " if label else "") + "  ".join(parts)


def _whole(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"expected a count >= 0, got {v!r}")
    return int(v)


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"expected seconds >= 0, got {v!r}")
    return float(v)


def _rows(history: Any) -> list[dict[str, float]]:
    """A checkpoint's history rows, numbers checked; integer fields (the epoch) stay integers, as the run wrote
    them (a resumed run's result.json said epoch 1.0 where a run not resumed said 1)."""
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError("history is not a list of rows")
    def number(v: Any) -> float:
        return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else float(v)

    return [{str(k): number(v) for k, v in r.items()} for r in history]


def _best(best: Any) -> dict[str, Any]:
    if not isinstance(best, dict) or not {"score", "epoch", "model", "method"} <= set(best):
        raise ValueError("the best-epoch record is incomplete")
    float(best["score"]), _whole(best["epoch"])
    return best


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"]


#: What to do after a diverged run (a lower --lr or other --set values make another run, with its own checkpoint).
DIVERGED_ADVICE = ("Lower --lr or the method's weights (--set trade_off=...): that is another run, so give a new "
                   "--out (or delete the old folder's checkpoint.pt)")


def _batches(data: TrainData, cfg: TrainConfig, device: torch.device, start: int, total: int) -> Iterator[Batch]:
    """The (source x, source y, target x, target y or None) mini-batch of each step from ``start`` to ``total``.

    Step k's batch depends only on (seed, k) (:class:`BatchStream`), so a resumed run continues with the
    very batches it would have seen. Arrays in memory are moved to the device once and indexed there
    (the fast path); a streamed folder is decoded, with its augmentations, by a ``DataLoader`` over the
    steps (``config.workers`` processes, pinned memory on CUDA), with the same batches.
    """
    source, target = data.source, data.target
    if not (is_lazy(source.X) or is_lazy(target.X)):
        Xs, ys = torch.as_tensor(source.X).to(device), torch.as_tensor(source.y).to(device)
        Xt = torch.as_tensor(target.X).to(device)
        yt = torch.as_tensor(target.y).to(device) if target.y is not None else None
        streams = BatchStream(len(Xs), cfg.batch_size, cfg.seed, 1), BatchStream(len(Xt), cfg.batch_size, cfg.seed, 2)
        for step in range(start, total):  # under torchrun: this process's share of the step's batch
            si = distributed.shard(streams[0].indices(step), "source")
            ti = distributed.shard(streams[1].indices(step), "target")
            yield Xs[si], ys[si], Xt[ti], (yt[ti] if yt is not None else None)
        return
    loader = torch.utils.data.DataLoader(_StepBatches(source, target, cfg.batch_size, cfg.seed, distributed.world()),
                                         batch_size=None,
                                         sampler=range(start, total), num_workers=cfg.workers,
                                         pin_memory=device.type == "cuda",
                                         # its own generator: the loader never draws from the global RNG
                                         # (dropout and the methods' noise stay as in memory)
                                         generator=torch.Generator().manual_seed(cfg.seed))
    for xs, ys, xt, yt in loader:
        yield (xs.to(device, non_blocking=True), ys.to(device, non_blocking=True), xt.to(device, non_blocking=True),
               yt.to(device, non_blocking=True) if yt.numel() else None)


class _StepBatches(torch.utils.data.Dataset):
    """Item k = step k's batches (decoded and augmented; augmentations drawn from (seed, stream, k))."""

    def __init__(self, source: Domain, target: Domain, batch_size: int, seed: int,
                 world: tuple[int, int] = (0, 1)) -> None:
        self.source, self.target, self.seed, self.world = source, target, seed, world
        self.streams = (BatchStream(len(source), batch_size, seed, 1), BatchStream(len(target), batch_size, seed, 2))

    def _take(self, X: Any, index: torch.Tensor, stream: int, step: int) -> torch.Tensor:
        if is_lazy(X):
            return torch.from_numpy(X.train_batch(index.numpy(), np.random.default_rng([self.seed, stream, step])))
        return torch.as_tensor(X[index.numpy()])

    def __getitem__(self, step: int) -> tuple[torch.Tensor, ...]:
        si = distributed.shard(self.streams[0].indices(step), "source", *self.world)
        ti = distributed.shard(self.streams[1].indices(step), "target", *self.world)
        ys = torch.as_tensor(self.source.y[si.numpy()])
        yt = torch.as_tensor(self.target.y[ti.numpy()]) if self.target.y is not None else torch.empty(0, dtype=torch.long)
        return self._take(self.source.X, si, 1, step), ys, self._take(self.target.X, ti, 2, step), yt


def check_freeze(freeze: int, group_names: Sequence[str]) -> None:
    """Refuse ``freeze`` (the first layer groups kept fixed) when it is not below the number of groups: freezing
    them all, the network would not learn (dann would train its discriminator alone and report the start)."""
    if freeze > len(group_names):
        raise DataError(f"freeze={freeze} but the backbone has only {len(group_names)} layer groups {list(group_names)}")
    if freeze == len(group_names):
        raise DataError(f"freeze={freeze} freezes every layer group {list(group_names)}: the network would not learn; "
                        f"freeze at most {len(group_names) - 1}")


def _refuse_test_labels(task: TransferTask, method: str) -> None:
    """Refuse to train on the target's labels when its test split's samples are among them (a task built with
    ``TransferTask.from_domains(..., target_test=target)``; ``load_task`` drops such labels first): the oracle would
    be scored on labels it learnt. Compared as ``load_task`` compares (against chance), and only near-complete
    overlaps (the test split is the target, or the target lies inside it): a task's own held-out split of data
    whose samples recur shares some; partial overlaps are left to ``load_task``. Streamed sides are not compared."""
    from ..data.tasks import INSIDE_SHARE, _row_keys, _shared, transductive

    test, target = task.target_test, task.target
    if test is None or not len(test) or is_lazy(test.X) or is_lazy(target.X):
        return
    o = _shared(_row_keys(test.X), _row_keys(target.X))
    # (near all of the smaller side: a held-out split of data with recurring samples shares some by chance)
    if o.shared >= INSIDE_SHARE * min(len(test), len(target)) and transductive(o, len(test), len(target)):
        raise DataError(f"{method} trains on target labels, but {o.shared} of the {len(test)} target test samples of "
                        f"{task.name!r} are also target training samples, with their labels: it would be scored on "
                        "labels it had learnt. Give a test set of other samples, or leave target_test out (a held-out "
                        "split; qianyi.load_task drops such target labels itself)")


def check_network_settings(method: Method, config: TrainConfig) -> None:
    """Refuse the fine-tuning settings (``init_from``, ``freeze``, ``init_layers``, ``l2sp``) for a method that does
    not train the engine's network (its ``trains_own_network`` says what it trains instead: co-training's view
    networks, DiscoGAN's generators): they would act on a network it leaves as built, and be recorded as if used."""
    own = getattr(method, "trains_own_network", "")
    if not own:
        return
    network = [f for f, v in (("init_from", config.init_from), ("freeze", config.freeze),
                              ("init_layers", config.init_layers), ("l2sp", config.l2sp)) if v]
    if network:
        raise ConfigError(f"{method.name} does not train the engine's network (it trains {own}), so "
                          f"{', '.join(network)} (--{' --'.join(n.replace('_', '-') for n in network)}) "
                          f"{'does' if len(network) == 1 else 'do'} not apply to it; leave "
                          f"{'it' if len(network) == 1 else 'them'} out")


def build_network(factory: Callable[[tuple[int, ...], int], Backbone], shape: tuple[int, ...], n_classes: int,
                  counts: bool = False) -> Backbone:
    """The network a run trains: ``factory(shape, n_classes)``; qianyi's default (:func:`backbone_for`) also
    learns a transform of count vectors (``counts``: bag-of-words inputs)."""
    if factory is backbone_for:
        model = backbone_for(shape, n_classes, counts=counts)
        model.pretrained_groups = frozenset()  # qianyi's default networks start from random weights
        return model
    model = factory(shape, n_classes)
    if not _own_factory(factory):  # a factory of yours may load any weights into what it builds: trusted
        model.pretrained_groups = None
    return model


def _probe(model: Backbone, x: torch.Tensor, yours: bool) -> Any:
    """``model(x)``; for a network of ``yours``, torch's failure on inputs of another shape (a RuntimeError) as a
    DataError that keeps torch's error as its cause. Any other error in your forward (a typo, a NameError)
    propagates as it is, with its traceback."""
    if not yours:
        return model(x)
    try:
        return model(x)
    except RuntimeError as exc:
        raise DataError(f"your network fails on the task's inputs of shape {tuple(x.shape[1:])} "
                        f"({type(exc).__name__}: {str(exc)[:200]}); build its first layer for inputs of that "
                        "shape") from exc


def check_logits_width(logits: torch.Tensor, n_classes: int, class_names: Sequence[str] | None = None) -> None:
    """Refuse a network whose logits are not one per class: more would put probability on non-classes (and
    ``predict`` index past the class names), fewer fail mid-training with torch's bare IndexError."""
    if logits.ndim == 2 and logits.shape[1] == n_classes:
        return
    width = logits.shape[1] if logits.ndim == 2 else f"logits of shape {tuple(logits.shape[1:])} per sample, not"
    names = f" {list(class_names)[:10]}{' ...' if len(class_names) > 10 else ''}" if class_names else ""
    raise DataError(f"your network gives {width} logits per sample, but the task has {n_classes} classes{names}; "
                    f"give its last layer {n_classes} outputs (e.g. nn.Linear(in_features, {n_classes})), one per "
                    "class in order")


def _own_factory(factory: object) -> bool:
    """Whether ``factory`` is qianyi's (a named backbone, a text encoder): it knows which groups it pretrained."""
    from ..nn.resnet import NamedBackbone
    from ..nn.text import TextEncoder

    return isinstance(factory, (NamedBackbone, TextEncoder))


def custom_network_key(factory: Callable[[tuple[int, ...], int], Backbone], shape: Sequence[int],
                       n_classes: int) -> dict[str, str]:
    """What tells a network of your own apart in a run's fingerprint (a store reuses and a checkpoint resumes
    only the same network): a hash of its architecture (module tree as printed, parameter and buffer names,
    shapes and dtypes), and for a network instance (``factory.instance``, its weights the start) of its weights.
    A factory is called once for this with the caller's random generators kept."""
    instance = getattr(factory, "instance", None)
    if instance is None:
        with caller_rng_kept():
            net = factory(tuple(int(s) for s in shape), n_classes)
    else:
        net = instance
    state = net.state_dict()
    arch = hashlib.sha256(repr(net).encode())
    for name, value in state.items():
        arch.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
    key = {"name": "custom", "architecture": arch.hexdigest()[:16]}
    if instance is not None:
        weights = hashlib.sha256()
        for value in state.values():
            weights.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                           if value.dtype != torch.bool else value.detach().cpu().numpy().tobytes())
        key["weights"] = weights.hexdigest()[:16]
    return key


class Trainer:
    """Train a backbone on a :class:`TransferTask` with a method.

    >>> from qianyi import load_task, get_method, Trainer, TrainConfig
    >>> task = load_task("mnist", "digits")                            # doctest: +SKIP
    >>> fit = Trainer(get_method("dan"), TrainConfig(epochs=5)).fit(task)  # doctest: +SKIP
    """

    def __init__(self, method: Method, config: TrainConfig | None = None,
                 backbone_factory: Callable[[tuple[int, ...], int], Backbone] = backbone_for) -> None:
        method.check_hparams()
        if not method.trains_classifier and config is not None and config.select != "last":
            raise ConfigError(f"{method.name} trains no classifier, so a validator has nothing to tell its epochs "
                              f"apart by (every epoch would score alike, and the first, barely trained, be kept): "
                              f"leave out select={config.select!r} (--select); the run keeps its last epoch")
        #: Called with each epoch's history row once it is complete (experiment trackers).
        self.on_epoch: Callable[[dict[str, float]], None] | None = None
        #: Called once before the first step with the history rows of the checkpoint the fit resumes (empty when it
        #: starts afresh): a tracker logs what it lacks and drops what an interrupted run logged after the checkpoint.
        self.on_start: Callable[[list[dict[str, float]]], None] | None = None
        self.method = method
        #: The settings as given; a fit trains with them completed for its data (:meth:`TrainConfig.for_task`).
        self.base_config = config or TrainConfig()
        self.config = self.base_config
        self.backbone_factory = backbone_factory
        self._source_labels: np.ndarray | None = None

    def fingerprint(self, task: TransferTask) -> dict[str, Any]:
        fp = run_fingerprint(self.method, self.base_config.for_task(task), task)
        if distributed.world()[1] > 1:  # per-process losses and batch norm: not the one-process run
            fp["processes"] = distributed.world()[1]
        if self.backbone_factory is not backbone_for:  # a network of your own (the default's generation is in fp)
            fp["backbone"] = getattr(self.backbone_factory, "spec", None) or custom_network_key(
                self.backbone_factory, task.sample_shape, task.n_classes)
        return fp

    def fit(self, task: TransferTask, monitor: Monitor | None = None) -> FitResult:
        """Train on ``task`` (resuming from the checkpoint in ``config.checkpoint_dir`` if there is one) and return
        the model chosen by ``config.select``. The caller's global random generators are left as they were."""
        with caller_rng_kept():
            return self._fit(task, monitor)

    def reload(self, task: TransferTask, weights: Path, finished: Any) -> FitResult:
        """The :class:`FitResult` of a finished run of this trainer on ``task`` without training: the network is
        built as :meth:`fit` builds it and its predicting part loads ``weights`` (the run's model.pt); history,
        selection and flags are ``finished``'s (its :class:`~qianyi.train.result.RunResult`). The method's modules
        that only train (a discriminator) keep their initial weights: model.pt holds what predicts."""
        with caller_rng_kept():
            self.config = cfg = self.base_config.for_task(task)
            data = TrainData.from_task(task, with_target_labels=self.method.uses_target_labels,
                                       method=self.method.name)
            self._source_labels = data.source.y
            self.method.input_kind = text_kind(task)
            vocab = ((task.preprocessing or {}).get("text") or {}).get("vocab")
            with deterministic_kernels(cfg.deterministic):
                parts = self._build(data, task.n_classes, counts=bool((task.preprocessing or {}).get("counts")),
                                    vocab=vocab)
            net = self.method.inference_model(parts.model)
            try:
                net.load_state_dict(torch.load(weights, map_location=parts.device, weights_only=True))
            except Exception as exc:  # (its hash matched result.json: another network than this run builds)
                raise CheckpointError(f"{str(weights)!r} does not fit the network this run builds "
                                      f"({type(exc).__name__}); delete result.json beside it to train the run "
                                      "afresh") from None
            parts.model.eval()
            net.eval()
            spe = cfg.steps_per_epoch or math.ceil(max(len(data.source), len(data.target)) / cfg.batch_size)
            versions = finished.versions or {}
            threads = versions.get("threads")
            return FitResult(net, self.method, list(finished.history or []), finished.selection,
                             float(finished.train_seconds or 0.0), spe * cfg.epochs, finished.resumed_from_step,
                             str(parts.device), finished.selected_epoch or 0, parts.model, list(finished.flags or []),
                             threads if isinstance(threads, list) else [threads] if isinstance(threads, int) else [],
                             list(versions.get("codes") or ([versions["code"]] if versions.get("code") else [])))

    def _fit(self, task: TransferTask, monitor: Monitor | None) -> FitResult:
        self._resumed_threads = self._resumed_codes = None
        self.config = self.base_config.for_task(task)  # the data's defaults filled in
        distributed.init_from_env(self.config.device)  # under torchrun: join the process group
        data = TrainData.from_task(task, with_target_labels=self.method.uses_target_labels,
                                   method=self.method.name)
        self._source_labels = data.source.y
        self.method.input_kind = text_kind(task)  # views of token ids
        if self.method.input_kind is not None and self.method.not_for_text:
            raise DataError(f"{self.method.name} {self.method.not_for_text}, so it does not apply to text (token ids); "
                            "on text use an alignment method (dann, amn, dan, coral, cdan, ...) or self-training "
                            "(mean-teacher, cbst, adamatch: their views delete words)")
        if getattr(self.method, "needs_source_model", False) and not self.config.init_from and distributed.is_main():
            warnings.warn(f"{self.method.name} starts from a trained model, and none was given (init_from): its teacher "
                          "is the untrained network; use qianyi.run, which trains the starting model first",
                          QianyiWarning, stacklevel=2)
        check_network_settings(self.method, self.config)
        if not self.method.uses_target_labels:  # before anything trains: a start that saw the target's labels
            check_starting_model(self.config.init_from, task)
        vocab = ((task.preprocessing or {}).get("text") or {}).get("vocab")
        self._vocab = list(vocab) if vocab is not None else None  # in the checkpoint: --init-from it reads words
        with deterministic_kernels(self.config.deterministic):
            parts = self._build(data, task.n_classes, counts=bool((task.preprocessing or {}).get("counts")),
                                vocab=vocab)
            ckpt = Path(self.config.checkpoint_dir) / FILENAME if self.config.checkpoint_dir else None
            fingerprint = self.fingerprint(task)
            state = self._restore(ckpt, fingerprint, parts)
            resumed_from = state.step
            if self.on_start is not None:
                self.on_start(list(state.history))
            self._loop(data, parts, state, ckpt, fingerprint, monitor, task.name)
            return self._finish(parts, state, resumed_from)

    # -- build -----------------------------------------------------------------------------------
    def _build(self, data: TrainData, n_classes: int, counts: bool = False, vocab: Sequence[str] | None = None
               ) -> _Parts:
        cfg, method = self.config, self.method
        device = distributed.local_device(resolve_device(cfg.device))
        seed_everything(cfg.seed)
        shape = data.source.sample_shape
        model = build_network(self.backbone_factory, shape, n_classes, counts).to(device)
        copied = load_initial_weights(model, cfg.init_from, cfg.init_layers, vocab=vocab,
                                      frozen=model.group_names[:cfg.freeze]) if cfg.init_from else []
        if cfg.init_from and getattr(method, "needs_source_model", False) and len(copied) < len(model.group_names) \
                and distributed.is_main():
            warnings.warn(f"{method.name} starts from a trained model, and init_layers={cfg.init_layers} copies only "
                          f"{list(copied)}: its teacher (SHOT: its frozen classifier) has random "
                          f"{list(model.group_names[len(copied):])}; copy every group (leave --init-layers out)",
                          QianyiWarning, stacklevel=3)
        check_freeze(cfg.freeze, model.group_names)
        frozen = list(model.group_names[:cfg.freeze])
        known = getattr(model, "pretrained_groups", None)  # None: a network of your own (it may be pretrained)
        # (a group without parameters, such as a pooling layer, has nothing to keep fixed)
        raw = [g for g in frozen if g not in copied and g not in (known or ())
               and any(True for _ in model.groups[g].parameters())]
        if known is not None and raw:
            pretrained = ("--text vectors=minilm (a pretrained E) or --backbone minilm" if "E" in raw else
                          "--backbone resnet18/resnet50 or efficientnet-lite0 with --weights (ImageNet layers)")
            raise ConfigError(f"freeze={cfg.freeze} would keep {raw} fixed at their random initialisation: nothing "
                              "was copied or pretrained into them; give --init-from MODEL.pt (init_from) to copy "
                              f"them from a trained model, or pretrained layers ({pretrained}), or leave --freeze "
                              "out")
        for name in frozen:
            model.groups[name].requires_grad_(False)
        with torch.no_grad():  # the method builds its modules from the initialised backbone (a teacher copies it)
            model.eval()
            probe = _probe(model, torch.as_tensor(data.source.X[:2]).to(device), known is None)
            model.train()
        if known is None:  # a network of your own: its logits must be one per class
            check_logits_width(probe.logits, n_classes, data.source.class_names)
        method.input_shape = tuple(data.source.sample_shape)
        method.feature_names = tuple(data.source.feature_names) if data.source.feature_names else None
        method.setup(model, probe)
        method.to(device)
        distributed.broadcast_parameters(model, method)  # every process starts from process 0's weights
        groups: dict[str, ParamGroup] = {}
        for name in model.group_names:
            if name not in frozen:
                # the backbone's own multiplier (pretrained layers: lower), times --copied-lr-mult where copied
                groups[name] = {"params": list(model.groups[name].parameters()),
                                "lr_mult": getattr(model, "lr_mults", {}).get(name, 1.0)
                                * (cfg.copied_lr_mult if name in copied else 1.0)}
        optimizers, backbone_opts = self._optimizers(method.optimizers(groups), model)
        stepped = {id(p) for opt in optimizers.values() for g in opt.param_groups for p in g["params"]}
        idle = [n for n, p in method.named_parameters() if p.requires_grad and id(p) not in stepped]
        if idle and distributed.is_main():  # (a teacher or a frozen copy sets requires_grad False)
            warnings.warn(f"{method.name}: {len(idle)} trainable parameter(s) of the method's own modules are in no "
                          f"optimizer (e.g. {idle[0]!r}) and will keep their initial values; add them to a group "
                          "in optimizers(), or set requires_grad_(False) if they are meant to stay",
                          QianyiWarning, stacklevel=3)
        kept = [n for n in copied if n not in frozen]
        anchors = ([(p, p.detach().clone()) for n in kept for p in model.groups[n].parameters()]
                   + [(p, p.detach().clone()) for p in method.copies_of(kept)] if cfg.l2sp else [])
        anchored = {id(p) for p, _ in anchors}
        for opt in optimizers.values():  # L2-SP (Li et al. 2018): the anchored weights are pulled to w0, not also
            for group in opt.param_groups:  # to 0; weight decay stays on every other parameter (a method's copies too)
                if anchored and all(id(p) in anchored for p in group["params"]):
                    group["weight_decay"] = 0.0
        scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
        return _Parts(device, model, frozen, optimizers, backbone_opts, anchors, scaler)

    def _optimizers(self, spec: dict[str, list[ParamGroup]], model: Backbone
                    ) -> tuple[dict[str, torch.optim.Optimizer], frozenset[str]]:
        cfg = self.config
        backbone_ids = {id(p) for p in model.parameters()}
        out: dict[str, torch.optim.Optimizer] = {}
        moves_backbone = set()
        for name, groups in spec.items():
            groups = [g for g in ({**g, "params": list(g["params"])} for g in groups) if g["params"]]
            if not groups:
                raise DataError(f"{self.method.name}: optimizer {name!r} has no trainable parameters (are all the "
                                "layers it trains frozen? lower --freeze)")
            if any(id(p) in backbone_ids for g in groups for p in g["params"]):
                moves_backbone.add(name)
            kinds = {g.pop("optimizer", cfg.optimizer) for g in groups}  # a method may ask for its own kind
            if len(kinds) > 1 or not kinds <= {"sgd", "adam"}:
                raise ConfigError(f"{self.method.name}: optimizer {name!r} asks for {sorted(map(str, kinds))}; "
                                  "its parameter groups must agree on one of sgd, adam")
            if kinds == {"sgd"}:
                out[name] = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                            nesterov=cfg.momentum > 0)
            else:
                out[name] = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return out, frozenset(moves_backbone)

    # -- restore ---------------------------------------------------------------------------------
    def _restore(self, ckpt: Path | None, fingerprint: dict[str, Any], parts: _Parts) -> _Progress:
        if ckpt is None or not ckpt.exists():
            return _Progress()
        state = load_checkpoint(ckpt, fingerprint)
        try:  # a checkpoint is a user file: anything malformed in it is named, never a traceback
            parts.model.load_state_dict(state["model"])
            self.method.load_state_dict(state["method"])
            for name, opt in parts.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            progress = _Progress(_whole(state["step"]), _seconds(state["elapsed"]), _rows(state["history"]),
                                 _best(state["best"]), {str(k): float(v) for k, v in dict(state["sums"]).items()},
                                 {str(k): _whole(v) for k, v in dict(state["counts"]).items()})
            torch.set_rng_state(state["rng"])
            if parts.device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"])
            if parts.scaler is not None and "scaler" in state:
                parts.scaler.load_state_dict(state["scaler"])
            made, threads = state.get("code"), state.get("threads")
            codes = state.get("codes", [made or "unrecorded"])  # (a checkpoint that predates the list: its one code)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as exc:
            raise CheckpointError(f"checkpoint {str(ckpt)!r} is damaged or holds another network "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                                  "use another output folder, or delete the checkpoint to start afresh") from None
        if not (made is None or isinstance(made, str)) or not isinstance(codes, list) \
                or not all(isinstance(c, str) for c in codes):
            raise CheckpointError(f"checkpoint {str(ckpt)!r} is damaged (its code digests are "
                                  f"{made!r:.40} / {codes!r:.80}); use another output folder, or delete the "
                                  "checkpoint to start afresh")
        now = code_digest(self.method)
        if made != now and distributed.is_main() and not store.warned_other_code(str(ckpt)):
            warnings.warn(f"resuming {str(ckpt)!r} at step {progress.step}, checkpointed by "
                          f"{_other_code(made, now, self.method.name)}: the steps before it are that code's (the "
                          "run's result.json lists the code of its steps in versions.codes); delete the checkpoint "
                          "to train the run afresh",
                          QianyiWarning, stacklevel=2)
        self._resumed_codes = list(codes) if progress.step else None
        # the thread counts the checkpointed steps were made with (an int from checkpoints of one count)
        counts = [threads] if isinstance(threads, int) else threads if isinstance(threads, list) else None
        if counts and not all(isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in counts):
            raise CheckpointError(f"checkpoint {str(ckpt)!r} is damaged (its thread counts are {counts!r:.80}); use "
                                  "another output folder, or delete the checkpoint to start afresh")
        self._resumed_threads = [int(t) for t in counts] if counts and progress.step else None
        if progress.step and distributed.world()[1] > 1 and getattr(self.method, "memory_buffers", ()) \
                and distributed.is_main():
            warnings.warn(f"{self.method.name} keeps a memory of recent target predictions per process, and the "
                          "checkpoint holds process 0's: every process resumes with it, so this run will not equal "
                          "an uninterrupted one (one process: it does)", QianyiWarning, stacklevel=2)
        return progress

    def _checkpoint(self, ckpt: Path | None, fingerprint: dict[str, Any], parts: _Parts, state: _Progress) -> None:
        if ckpt is None:
            return
        distributed.average_buffers(parts.model, self.method)  # what is saved is what every process holds
        state.sums = distributed.average_values(state.sums)  # (the epoch means are linear in these)
        if not distributed.is_main():
            distributed.barrier()
            return
        blob = {"fingerprint": json.dumps(fingerprint, sort_keys=True), "code": code_digest(self.method),
                "step": state.step, "elapsed": state.elapsed,
                "model": parts.model.state_dict(), "method": self.method.state_dict(),
                "optimizers": {n: o.state_dict() for n, o in parts.optimizers.items()},
                "rng": torch.get_rng_state(), "history": state.history, "best": state.best,
                "sums": state.sums, "counts": state.counts,
                "threads": sorted({*(getattr(self, "_resumed_threads", None) or []), torch.get_num_threads()}),
                "codes": list(dict.fromkeys([*(getattr(self, "_resumed_codes", None) or []),
                                             code_digest(self.method)]))}
        if parts.device.type == "cuda":
            blob["cuda_rng"] = torch.cuda.get_rng_state()
        if parts.scaler is not None:
            blob["scaler"] = parts.scaler.state_dict()
        if getattr(self, "_vocab", None) is not None:
            blob["vocab"] = self._vocab
        save_checkpoint(ckpt, blob)
        distributed.barrier()

    # -- loop ------------------------------------------------------------------------------------
    def _loop(self, data: TrainData, parts: _Parts, state: _Progress, ckpt: Path | None,
              fingerprint: dict[str, Any], monitor: Monitor | None, label: str) -> None:
        from tqdm.auto import tqdm

        cfg, method, model, device = self.config, self.method, parts.model, parts.device
        spe = cfg.steps_per_epoch or math.ceil(max(len(data.source), len(data.target)) / cfg.batch_size)
        if state.step > spe * cfg.epochs:
            raise CheckpointError(f"the checkpoint in {cfg.checkpoint_dir!r} is at step {state.step}, beyond this "
                                  f"run's {spe * cfg.epochs} steps; delete it to start afresh")
        total, every = spe * cfg.epochs, cfg.checkpoint_every or spe
        made = getattr(self, "_resumed_threads", None) or []  # the thread counts the checkpointed steps were made with
        now = torch.get_num_threads()
        self._threads_used = sorted({*made, *([now] if state.step < total else [])})
        before = made[0] if len(made) == 1 else None  # (a checkpoint that mixes counts was warned about already)
        if before and before != now and state.step < total and device.type == "cpu" and distributed.is_main():
            # sums split over threads add in another order: another trajectory from here on
            warnings.warn(f"resuming {str(ckpt)!r} at step {state.step} with {now} CPU thread(s); it was "
                          f"checkpointed with {before}: the run will equal neither uninterrupted one (pass "
                          f"--threads {before} to continue it as it began)", QianyiWarning, stacklevel=2)
        small = {k: len(d) for k, d in (("source", data.source), ("target", data.target)) if len(d) < cfg.batch_size}
        if small and method.uses_source and method.uses_target and state.step < total and distributed.is_main():
            k, n = min(small.items(), key=lambda kv: kv[1])
            other = len(data.target if k == "source" else data.source)
            share = max(n, min(other, cfg.batch_size)) / (n + min(other, cfg.batch_size))
            warnings.warn(f"the {k} has {n} training samples, fewer than --batch-size {cfg.batch_size}: every step "
                          f"takes all {n} against {min(other, cfg.batch_size)} of the other domain, so a domain "
                          f"classifier's chance level is {100 * share:.0f}% (not 50%); --batch-size {n} gives "
                          "equal batches", QianyiWarning, stacklevel=2)
        batches = _batches(data, cfg, device, state.step, total)
        sync = distributed.average_gradients if distributed.world()[1] > 1 else None
        autocast = (torch.autocast(device.type, dtype=AMP_DTYPES[cfg.amp]) if cfg.amp != "off"
                    else contextlib.nullcontext())
        regularizer = self._regularizer(parts)
        # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI)
        show = cfg.progress and distributed.is_main()  # one progress display per run, not per process
        bar = tqdm(total=total, initial=state.step, disable=None if show else True, leave=False,
                   dynamic_ncols=True, desc=f"{method.name} {label} seed {cfg.seed}")
        t0, start_elapsed = time.perf_counter(), state.elapsed
        if show and 0 < state.step < total and ckpt is not None:
            tqdm.write(f"{method.name} {label} seed {cfg.seed}: resuming from step {state.step} of {total} ({ckpt})",
                       file=sys.stderr)
        model.train()
        method.train()
        try:  # a step that raises (Ctrl-C, a diverged loss) closes them too: the loader's workers stop, and with
            # them their share of the run folder's lock (a kept traceback held the suspended generator)
            for step in range(state.step, total):
                progress = step / total
                lr = annealed_lr(cfg.lr, progress) if cfg.lr_schedule == "anneal" else cfg.lr
                for opt in parts.optimizers.values():
                    for group in opt.param_groups:
                        base = group.get("base_lr")  # a method's own initial rate, scheduled alike
                        group["lr"] = (lr if base is None else base * lr / cfg.lr) * group.get("lr_mult", 1.0)
                for name in parts.frozen:  # frozen groups keep their batch-norm statistics too
                    model.groups[name].eval()
                xs, ys, xt, yt = next(batches)
                ctx = StepContext(model, method, xs if method.uses_source else None, ys if method.uses_source else None,
                                  xt if method.uses_target else None, yt, progress, step, parts.optimizers, regularizer,
                                  parts.backbone_optimizers, sync_gradients=sync, scaler=parts.scaler,
                                  steps_per_epoch=spe)
                try:
                    with autocast:
                        method.training_step(ctx)
                except (RuntimeError, ValueError) as exc:  # a diverged network fails inside torch: say so
                    self._check_finite(parts, step)
                    self._check_outputs(model, ctx, step, exc)
                    raise
                for k, values in ctx.logged.items():
                    state.sums[k] = state.sums.get(k, 0.0) + sum(values) / len(values)
                    state.counts[k] = state.counts.get(k, 0) + 1
                bar.update(1)
                state.step = step + 1
                state.elapsed = start_elapsed + time.perf_counter() - t0
                if state.step % spe == 0 or state.step % every == 0 or state.step == total:
                    self._check_finite(parts, state.step)
                if state.step % spe == 0:
                    self._end_epoch(data, parts, state, state.step // spe, lr, monitor)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in state.history[-1].items() if k not in ("epoch", "lr")})
                    if show:  # a line per epoch that stays (the bar does not)
                        tqdm.write(epoch_line(state.history[-1], cfg.epochs, f"{method.name} seed {cfg.seed}",
                                              method.discriminator_logs), file=sys.stderr)
                if state.step % every == 0 or state.step == total:
                    self._checkpoint(ckpt, fingerprint, parts, state)
        finally:
            bar.close()
            batches.close()

    def _check_finite(self, parts: _Parts, step: int) -> None:
        """Refuse to score, keep or checkpoint weights that are NaN or infinite (a diverged run)."""
        for owner, module in (("backbone", parts.model), (self.method.name, self.method)):
            for name, t in [*module.named_parameters(), *module.named_buffers()]:
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise TrainingError(f"{self.method.name}: {owner} weight {name!r} became NaN or infinite by step "
                                        f"{step}; the run diverged. {DIVERGED_ADVICE}")

    def _check_outputs(self, model: Backbone, ctx: StepContext, step: int, exc: Exception) -> None:
        """After an error in a step: if the network's outputs are not finite, it diverged (a user's setting)."""
        x = ctx.source_inputs if ctx.source_inputs is not None else ctx.target_inputs
        with torch.no_grad():
            was = model.training
            model.eval()
            finite = bool(torch.isfinite(model(x).logits).all())
            model.train(was)
        if not finite:
            raise TrainingError(f"{self.method.name}: the network's outputs became NaN or infinite at step {step} "
                                f"({type(exc).__name__} inside the step); the run diverged. Lower --lr or the "
                                "method's weights (--set trade_off=...)") from exc

    def _regularizer(self, parts: _Parts) -> Callable[[], dict[str, torch.Tensor]]:
        alpha, anchors = self.config.l2sp, parts.anchors
        if not anchors:
            return lambda: {}
        return lambda: {"l2sp": 0.5 * alpha * sum(((p - p0) ** 2).sum() for p, p0 in anchors)}

    def _end_epoch(self, data: TrainData, parts: _Parts, state: _Progress, epoch: int, lr: float,
                   monitor: Monitor | None) -> None:
        cfg, method = self.config, self.method
        means = distributed.average_values({k: state.sums[k] / state.counts[k] for k in state.sums})
        row: dict[str, float] = {"epoch": epoch, "lr": lr, **means}
        state.sums, state.counts = {}, {}
        distributed.average_buffers(parts.model, method)
        if not distributed.is_main():  # process 0 scores, selects and reports; the others only train
            state.history.append(row)
            return
        net = method.inference_model(parts.model)
        row["source_val_acc"] = accuracy(net, data.source_val, parts.device)
        X = data.target.X[spread_rows(len(data.target), cfg.selection_samples)]  # not a prefix: files sorted by class
        row[TOP_SHARE_KEY] = top_class_share(predict_logits(net, X, parts.device).argmax(1).numpy())
        recorded = list(cfg.validators) if cfg.score_every_epoch or cfg.select != LAST or epoch >= cfg.epochs else []
        names = list(dict.fromkeys(([cfg.select] if cfg.select != LAST else []) + recorded))
        if names:
            scores = score_all(net, data.selection(), names, device=parts.device, max_samples=cfg.selection_samples,
                               seed=cfg.seed)
            row.update({f"score_{k}": v for k, v in scores.items()})
        if monitor is not None:
            row.update(monitor(net))
        parts.model.train()
        method.train()
        state.history.append(row)
        if self.on_epoch is not None:
            self.on_epoch(row)
        if cfg.select != LAST:
            utility = get_validator(cfg.select).utility(row[f"score_{cfg.select}"])
            if not math.isfinite(utility) and distributed.is_main():  # (never the best: NaN > x is False)
                warnings.warn(f"validator {cfg.select!r} scored epoch {epoch} {row[f'score_{cfg.select}']!r}: that epoch "
                              "cannot be chosen (if no epoch scores, the run keeps its last)", QianyiWarning, stacklevel=2)
            if math.isfinite(utility) and utility > state.best["score"]:  # ties: the earliest epoch stays
                state.best = {"score": utility, "epoch": epoch, "model": copy.deepcopy(parts.model.state_dict()),
                              "method": copy.deepcopy(method.state_dict())}

    # -- finish ----------------------------------------------------------------------------------
    def _finish(self, parts: _Parts, state: _Progress, resumed_from: int) -> FitResult:
        cfg, method, model = self.config, self.method, parts.model
        epochs = cfg.epochs
        if cfg.select != LAST and state.best["model"] is not None:
            try:
                model.load_state_dict(state.best["model"])
                method.load_state_dict(state.best["method"])
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"the best-epoch weights in {cfg.checkpoint_dir!r}'s checkpoint are damaged "
                                      f"({type(exc).__name__}); delete the checkpoint to start afresh") from None
            chosen = int(state.best["epoch"])
            selection = f"best by validator {cfg.select!r} (epoch {chosen} of {epochs}); no target labels"
        else:
            chosen = epochs
            selection = f"last epoch ({epochs}); no target labels"
            if cfg.select != LAST:  # the validator was asked for and scored nothing: the rule stays its own
                selection = f"validator {cfg.select!r} scored no epoch: " + selection
        if method.uses_target_labels:
            selection = "ORACLE: trained on target labels; " + selection.replace("; no target labels", "")
        net = method.inference_model(model)
        model.eval()
        net.eval()
        source_top = top_class_share(np.asarray(self._source_labels)) if self._source_labels is not None else 0.0
        flags = game_flags(state.history, method.discriminator_logs, source_top, meaning=method.game_meaning,
                           advice=method.game_advice, check_collapse=method.trains_classifier, selected_epoch=chosen,
                           oracle=method.uses_target_labels, feature_game=method.feature_game,
                           gates=method.gate_logs)
        trained_now = [code_digest(method)] if resumed_from < state.step or not state.step else []
        codes = list(dict.fromkeys([*(getattr(self, "_resumed_codes", None) or []), *trained_now]))
        return FitResult(net, method, state.history, selection, state.elapsed, state.step, resumed_from,
                         str(parts.device), chosen, model, flags, list(getattr(self, "_threads_used", [])), codes)


def text_kind(task: TransferTask) -> str | None:
    """What a method's views of ``task``'s inputs are (:data:`qianyi.nn.augment.TEXT_KINDS`): None for images and
    vectors, "wordpiece" for a pre-trained model's WordPiece ids ([CLS] ... [SEP], kept by every view), else
    "text" (a fitted vocabulary's ids)."""
    from ..data.text import WORDPIECE

    text = (task.preprocessing or {}).get("text")
    if not text:
        return None
    return "wordpiece" if text.get("tokenizer") == WORDPIECE else "text"

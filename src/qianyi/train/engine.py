"""The one training engine: every method trains through :meth:`Trainer.fit`.

Per step: draw a source and a target mini-batch, forward them together (one batch, so batch
norm sees both domains, as in the reference implementations), hand the outputs to the method,
minimise the sum of its loss terms. Around that: the learning-rate annealing of Ganin et al.,
seeding, device choice, progress, atomic checkpoints and resume, and model selection that never
sees target labels.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data.domain import Domain, TransferTask
from ..errors import DataError, UnknownNameError
from ..methods.base import Batch, Method
from ..nn.backbones import Backbone, backbone_for
from ..schedules import annealed_lr
from .checkpoint import FILENAME, load_checkpoint, save_checkpoint

SELECTIONS = ("last", "source-val")


@dataclass
class TrainConfig:
    """Training settings shared by all methods. Defaults were chosen on source validation data only."""

    epochs: int = 20
    #: Mini-batch size per domain (a step sees ``batch_size`` source + ``batch_size`` target samples).
    batch_size: int = 64
    #: Steps per epoch; default: one pass over the larger training domain.
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: "anneal" (mu_0 / (1 + 10 p)^0.75, Ganin et al.) or "constant".
    lr_schedule: str = "anneal"
    seed: int = 0
    #: "last" (the final weights) or "source-val" (best source-validation accuracy; no target labels).
    select: str = "last"
    device: str | None = None
    #: Initialise the backbone from a saved model (``model.pt``/``checkpoint.pt`` of an earlier run).
    init_from: str | None = None
    #: Copy only the first k layer groups from ``init_from`` (None: all of them).
    init_layers: int | None = None
    #: Freeze the first k layer groups (weights and batch-norm statistics stay as initialised).
    freeze: int = 0
    #: Learning-rate multiplier for copied, unfrozen layers (e.g. 0.1: fine-tune gently).
    copied_lr_mult: float = 1.0
    #: L2-SP strength alpha: alpha/2 * ||w - w_0||^2 over copied layers (Li et al., ICML 2018).
    l2sp: float = 0.0
    checkpoint_dir: str | None = None
    #: Steps between checkpoints (default: every epoch).
    checkpoint_every: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise UnknownNameError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise UnknownNameError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in ("anneal", "constant"):
            raise UnknownNameError(f"lr_schedule must be 'anneal' or 'constant', got {self.lr_schedule!r}")
        for k in ("epochs", "batch_size"):
            if getattr(self, k) < 1:
                raise DataError(f"{k} must be at least 1, got {getattr(self, k)}")
        if self.freeze < 0 or (self.init_layers is not None and self.init_layers < 0):
            raise DataError("freeze and init_layers count layer groups and must be >= 0")
        if self.l2sp and not self.init_from:
            raise DataError("l2sp regularises towards initial weights: give init_from as well")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers (not where or how visibly they are computed)."""
        skip = {"device", "checkpoint_dir", "checkpoint_every", "progress"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class BatchStream:
    """An endless stream of shuffled mini-batches; batch ``k`` depends only on (seed, stream, k).

    That makes resuming exact: restoring the step counter restores the data order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, stream: int) -> None:
        self.n, self.seed, self.stream = n, seed, stream
        self.batch_size = min(batch_size, n)
        self.per_pass = max(1, n // self.batch_size)
        self._pass, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, k: int) -> torch.Tensor:
        p, i = divmod(k, self.per_pass)
        if p != self._pass:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stream * 7_919 + p)
            self._pass, self._perm = p, torch.randperm(self.n, generator=g)
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``X`` in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    X = torch.as_tensor(X)
    out = []
    for i in range(0, len(X), batch_size):
        out.append(model(X[i:i + batch_size].to(device)).logits.float().cpu())
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def predict_features(model: nn.Module, X: np.ndarray | torch.Tensor, layer: str = "features",
                     device: torch.device | str = "cpu", batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(flattened outputs of ``layer``, logits) of ``model`` on ``X`` in eval mode."""
    was_training = model.training
    model.eval()
    X = torch.as_tensor(X)
    feats, logits = [], []
    for i in range(0, len(X), batch_size):
        out = model(X[i:i + batch_size].to(device))
        feats.append(out.flat(layer).float().cpu())
        logits.append(out.logits.float().cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(logits)


def accuracy(model: nn.Module, domain: Domain, device: torch.device | str = "cpu") -> float:
    if domain.y is None:
        raise DataError(f"domain {domain.name!r} has no labels to score")
    pred = predict_logits(model, domain.X, device).argmax(1).numpy()
    return float((pred == domain.y).mean())


def load_initial_weights(model: Backbone, path: str | Path, layers: int | None = None) -> list[str]:
    """Copy the first ``layers`` layer groups (all if None) from a saved model into ``model``.

    ``path`` is a ``model.pt`` (a state dict) or ``checkpoint.pt`` written by qianyi, read with
    ``weights_only=True``. Returns the names of the groups copied.
    """
    from .checkpoint import load_checkpoint

    path = Path(path)
    if not path.exists():
        raise DataError(f"init_from: {str(path)!r} does not exist; point it at a model.pt or checkpoint.pt "
                        "written by `qianyi run --out DIR`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"init_from: {str(path)!r} cannot be read safely ({type(exc).__name__}: {exc}); only "
                        "plain state dicts are accepted") from exc
    if isinstance(state, dict) and "model" in state and "format" in state:
        state = load_checkpoint(path)["model"]
    if not isinstance(state, dict):
        raise DataError(f"init_from: {str(path)!r} holds no state dict")
    names = list(model.group_names[:layers] if layers is not None else model.group_names)
    own = model.state_dict()
    update = {}
    for name in names:
        keys = [k for k in own if k.startswith(f"groups.{name}.")]
        for k in keys:
            if k not in state:
                raise DataError(f"init_from: {str(path)!r} has no weights for layer group {name!r} ({k}); "
                                f"it was saved from another architecture")
            if state[k].shape != own[k].shape:
                raise DataError(f"init_from: layer group {name!r} has shape {tuple(state[k].shape)} in "
                                f"{str(path)!r} but {tuple(own[k].shape)} here ({k}); copy fewer layers "
                                "(init_layers) or use a matching input canvas")
            update[k] = state[k]
    own.update(update)
    model.load_state_dict(own)
    return names


@dataclass
class FitResult:
    model: Backbone
    method: Method
    history: list[dict[str, float]]
    selection: str
    train_seconds: float
    steps: int
    resumed_from_step: int = 0
    device: str = "cpu"
    extras: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Train a backbone on a :class:`TransferTask` with a method's loss terms.

    >>> from qianyi import load_task, get_method, Trainer, TrainConfig
    >>> task = load_task("mnist", "digits")                            # doctest: +SKIP
    >>> fit = Trainer(get_method("dan"), TrainConfig(epochs=5)).fit(task)  # doctest: +SKIP
    """

    def __init__(self, method: Method, config: TrainConfig | None = None,
                 backbone_factory: Callable[[tuple[int, ...], int], Backbone] = backbone_for) -> None:
        self.method = method
        self.config = config or TrainConfig()
        self.backbone_factory = backbone_factory

    def fingerprint(self, task: TransferTask) -> dict[str, Any]:
        return {"method": self.method.name, "hparams": json.loads(json.dumps(self.method.hparams())),
                "config": self.config.fingerprint(), "task": task.name, "sizes": [len(task.source), len(task.target)],
                "shape": list(task.sample_shape), "classes": task.n_classes}

    def fit(self, task: TransferTask) -> FitResult:
        cfg, method = self.config, self.method
        device = resolve_device(cfg.device)
        if method.uses_target_labels and task.target.y is None:
            raise DataError(f"method {method.name!r} trains on target labels, but target {task.target.name!r} has none")
        seed_everything(cfg.seed)
        model = self.backbone_factory(task.sample_shape, task.n_classes).to(device)
        with torch.no_grad():
            model.eval()
            probe = model(torch.as_tensor(task.source.X[:2]).to(device))
            model.train()
        method.setup(model, probe)
        method.to(device)
        copied = load_initial_weights(model, cfg.init_from, cfg.init_layers) if cfg.init_from else []
        frozen = list(model.group_names[:cfg.freeze])
        if cfg.freeze > len(model.group_names):
            raise DataError(f"freeze={cfg.freeze} but the backbone has only {len(model.group_names)} layer groups "
                            f"{list(model.group_names)}")
        for name in frozen:
            model.groups[name].requires_grad_(False)
        copied_params = [p for n in copied if n not in frozen for p in model.groups[n].parameters()]
        new_params = [p for n in model.group_names if n not in copied and n not in frozen
                      for p in model.groups[n].parameters()]
        anchors = [(p, p.detach().clone()) for p in copied_params] if cfg.l2sp else []
        params = [{"params": copied_params, "lr_mult": cfg.copied_lr_mult},
                  {"params": new_params},
                  {"params": [p for p in method.parameters() if p.requires_grad]}]
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                         weight_decay=cfg.weight_decay, nesterov=True)
        else:
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        Xs = torch.as_tensor(task.source.X).to(device)
        ys = torch.as_tensor(task.source.y).to(device)
        Xt = torch.as_tensor(task.target.X).to(device)
        yt = torch.as_tensor(task.target.y).to(device) if method.uses_target_labels else None
        spe = cfg.steps_per_epoch or math.ceil(max(len(Xs), len(Xt)) / cfg.batch_size)
        total = spe * cfg.epochs
        src_stream = BatchStream(len(Xs), cfg.batch_size, cfg.seed, stream=1)
        tgt_stream = BatchStream(len(Xt), cfg.batch_size, cfg.seed, stream=2)

        ckpt_path = Path(cfg.checkpoint_dir) / FILENAME if cfg.checkpoint_dir else None
        every = cfg.checkpoint_every or spe
        fingerprint = self.fingerprint(task)
        history: list[dict[str, float]] = []
        best: dict[str, Any] = {"score": -1.0, "epoch": 0, "model": None, "method": None}
        start, elapsed = 0, 0.0
        if ckpt_path is not None and ckpt_path.exists():
            state = load_checkpoint(ckpt_path, fingerprint)
            model.load_state_dict(state["model"])
            method.load_state_dict(state["method"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"])
            start, elapsed, history = int(state["step"]), float(state["elapsed"]), list(state["history"])
            best = state["best"]
            resumed_sums, resumed_n = dict(state.get("epoch_sums", {})), int(state.get("epoch_steps", 0))
        else:
            resumed_sums, resumed_n = {}, 0
        resumed_from = start

        def checkpoint(step: int) -> None:
            if ckpt_path is None:
                return
            state = {"fingerprint": json.dumps(fingerprint, sort_keys=True), "step": step,
                     "elapsed": elapsed + time.perf_counter() - t0, "model": model.state_dict(),
                     "method": method.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                     "history": history, "best": best, "epoch_sums": dict(sums), "epoch_steps": n_in_epoch}
            if device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state()
            save_checkpoint(ckpt_path, state)

        from tqdm.auto import tqdm

        # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI)
        bar = tqdm(total=total, initial=start, disable=None if cfg.progress else True, leave=False, dynamic_ncols=True,
                   desc=f"{method.name} {task.name} seed {cfg.seed}")
        sums: dict[str, float] = resumed_sums
        n_in_epoch = resumed_n
        t0 = time.perf_counter()
        model.train()
        method.train()
        corrupt = method.corrupt_inputs  # identity unless the method denoises (no RNG draw then)
        for step in range(start, total):
            progress = step / total
            lr = annealed_lr(cfg.lr, progress) if cfg.lr_schedule == "anneal" else cfg.lr
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            for name in frozen:  # frozen groups keep their batch-norm statistics too
                model.groups[name].eval()
            si, ti = src_stream.indices(step), tgt_stream.indices(step)
            out_s = out_t = None
            if method.uses_source and method.uses_target:
                out_s, out_t = model(corrupt(torch.cat([Xs[si], Xt[ti]]))).split(len(si))
            elif method.uses_source:
                out_s = model(corrupt(Xs[si]))
            else:
                out_t = model(corrupt(Xt[ti]))
            terms = method.loss(Batch(out_s, out_t, ys[si] if method.uses_source else None,
                                      yt[ti] if yt is not None else None, progress,
                                      Xs[si] if method.uses_source else None,
                                      Xt[ti] if method.uses_target else None))
            if anchors:
                terms["l2sp"] = 0.5 * cfg.l2sp * sum(((p - p0) ** 2).sum() for p, p0 in anchors)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method.name}: the loss became {loss.item()} at step {step} "
                                         f"(terms: { {k: float(v) for k, v in terms.items()} }); lower the "
                                         "learning rate or the method's trade_off")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_in_epoch += 1
            bar.update(1)
            if (step + 1) % spe == 0:
                epoch = (step + 1) // spe
                row = {"epoch": epoch, "lr": lr, **{k: v / n_in_epoch for k, v in sums.items()}}
                row["source_val_acc"] = accuracy(model, task.source_val, device)
                history.append(row)
                sums, n_in_epoch = {}, 0
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k not in ("epoch", "lr")})
                if cfg.select == "source-val" and row["source_val_acc"] > best["score"]:
                    best = {"score": row["source_val_acc"], "epoch": epoch,
                            "model": copy.deepcopy(model.state_dict()), "method": copy.deepcopy(method.state_dict())}
            if (step + 1) % every == 0 or step + 1 == total:
                checkpoint(step + 1)
        bar.close()
        train_seconds = elapsed + time.perf_counter() - t0

        if cfg.select == "source-val" and best["model"] is not None:
            model.load_state_dict(best["model"])
            method.load_state_dict(best["method"])
            selection = f"best source-validation accuracy (epoch {best['epoch']} of {cfg.epochs}); no target labels"
        else:
            selection = f"last epoch ({cfg.epochs}); no target labels"
        if method.uses_target_labels:
            selection = "ORACLE: trained on target labels; " + selection.replace("; no target labels", "")
        model.eval()
        return FitResult(model, method, history, selection, train_seconds, total, resumed_from, str(device))

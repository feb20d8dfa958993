"""Training settings shared by every method, and the command-line flags generated from them.

:class:`TrainConfig` is frozen: change a setting with ``dataclasses.replace(config, epochs=5)``,
which runs the same validation as the constructor. The CLI's training flags are made from the
fields below (their ``metadata``), so a new setting is one field here and appears everywhere.
"""
from __future__ import annotations

import argparse
import itertools
import math
import numbers
import re
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from ..data.domain import TransferTask

#: Experiment trackers a run can also log to (``log_to``), when their package is installed.
LOGGERS = ("tensorboard", "mlflow")
#: Checkpoint choices besides a validator name (``qianyi.select``): the last epoch's weights.
LAST = "last"


def _opt(help: str, cli: str | None = None, metavar: str | None = None, group: str = "training") -> dict[str, Any]:
    return {"help": help, "cli": cli, "metavar": metavar, "group": group}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings shared by all methods. Defaults were chosen on source validation data only."""

    epochs: int = field(default=20, metadata=_opt("epochs; an epoch is about one pass over the larger training "
                                                      "domain (ceil(n / batch) steps; each domain is reshuffled every "
                                                      "pass and its last partial batch left out)"))
    batch_size: int = field(default=64, metadata=_opt("mini-batch size per domain (a domain with fewer training samples comes whole at every step)"))
    steps_per_epoch: int | None = field(default=None, metadata=_opt("steps per epoch (default: one pass over the "
                                                                    "larger training domain; vectors: at least 500 "
                                                                    "updates in all)", metavar="N"))
    optimizer: str | None = field(default=None, metadata=_opt("sgd (Nesterov momentum) or adam (default: sgd for "
                                                              "images, adam for vectors)"))
    lr: float | None = field(default=None, metadata=_opt("initial learning rate (default: 0.01 for images, 0.002 "
                                                         "for vectors)"))
    momentum: float = field(default=0.9, metadata=_opt("SGD momentum"))
    weight_decay: float = field(default=5e-4, metadata=_opt("L2 weight decay"))
    lr_schedule: str = field(default="anneal", metadata=_opt("anneal (mu_0 / (1 + 10 p)^0.75, Ganin et al.) or "
                                                             "constant"))
    seed: int = field(default=0, metadata=_opt("random seed (weights, batches, noise)", cli=""))
    select: str = field(default=LAST, metadata=_opt(
        "which epoch's weights to keep: 'last', or the best by a label-free validator (`qianyi validators`: "
        "source-val, dev, iwv, snd, entropy, atc, rv); never target labels", metavar="NAME"))
    validators: tuple[str, ...] = field(default=(), metadata=_opt(
        "validators to record every epoch besides --select (comma-separated; 'all', alone or in the list, records "
        "every one), for reports", metavar="A,B"))
    score_every_epoch: bool = field(default=True, metadata=_opt("", cli=""))  # False: --validators only at the last
    # epoch when the last is kept (`qianyi select` reads no other; its CPU time 0.81x, docs/selection.md)
    selection_samples: int = field(default=1000, metadata=_opt(
        "samples per split (source train, source val, target train) the validators score each epoch", metavar="N"))
    amp: str = field(default="off", metadata=_opt("mixed precision: off, bf16 (autocast) or fp16 (autocast + "
                                                  "gradient scaling); for CUDA (bf16 also runs on CPU)"))
    deterministic: bool = field(default=False, metadata=_opt("deterministic CUDA kernels (cuDNN, cuBLAS): the same "
                                                             "seed gives the same numbers on a GPU, more slowly"))
    workers: int = field(default=0, metadata=_opt("loader worker processes for streamed image folders (stream=1); "
                                                 "the batches, and so the results, do not depend on it", metavar="N"))
    device: str | None = field(default=None, metadata=_opt("cpu, cuda, cuda:1 ... (default: cuda when present)"))
    init_from: str | None = field(default=None, metadata=_opt(
        "start from a saved model (DIR/model.pt of an earlier `qianyi run --out DIR`)", metavar="MODEL.pt",
        group="fine-tuning"))
    init_layers: int | None = field(default=None, metadata=_opt("copy only the first K layer groups", metavar="K",
                                                                group="fine-tuning"))
    freeze: int = field(default=0, metadata=_opt("freeze the first K layer groups: their weights and batch-norm "
                                                 "statistics stay, and they run in eval mode (no dropout)", metavar="K", group="fine-tuning"))
    copied_lr_mult: float = field(default=1.0, metadata=_opt("learning-rate multiplier for layers copied by --init-from "
                                                             "and not frozen (times the backbone's own, e.g. pretrained "
                                                             "--weights layers' 0.1)",
                                                             metavar="M", group="fine-tuning"))
    l2sp: float = field(default=0.0, metadata=_opt("L2-SP: alpha/2 ||w - w_0||^2 over copied layers, in place of "
                                                   "their weight decay (Li et al. 2018)", metavar="ALPHA", group="fine-tuning"))
    checkpoint_dir: str | None = field(default=None, metadata=_opt("", cli=""))
    checkpoint_every: int | None = field(default=None, metadata=_opt("steps between checkpoints (default: every "
                                                                     "epoch)", metavar="N"))
    keep_checkpoint: bool = field(default=False, metadata=_opt(
        "keep checkpoint.pt once the run has finished (by default it is deleted when result.json is written: "
        "a rerun reuses result.json and model.pt)"))
    progress: bool = field(default=True, metadata=_opt("", cli=""))
    log_to: tuple[str, ...] = field(default=(), metadata=_opt(
        "also log each epoch to tensorboard and/or mlflow (comma-separated; needs that package installed; "
        "TensorBoard files go to OUT/tensorboard)", metavar="A,B"))

    def __post_init__(self) -> None:
        from ..select.validators import available_validators

        names = available_validators()
        if self.select != LAST and self.select not in names:
            raise UnknownNameError(f"select must be 'last' or a validator ({', '.join(names)}), got {self.select!r}")
        for opt in ("validators", "log_to"):  # one string: the CLI's comma-separated form, not its letters
            value = getattr(self, opt)
            if isinstance(value, str):
                object.__setattr__(self, opt, tuple(v.strip() for v in value.split(",") if v.strip()))
        bad = [v for v in self.validators if v not in names and v != "all"]
        if bad:
            raise UnknownNameError(f"validators: unknown {bad}; choose from {', '.join(names)} or 'all'")
        vals = tuple(names) if "all" in self.validators else tuple(self.validators)  # 'all' among names: all
        object.__setattr__(self, "validators", vals)
        bad = [x for x in self.log_to if x not in LOGGERS]
        if bad:
            raise UnknownNameError(f"log_to: unknown {bad}; choose from {', '.join(LOGGERS)}")
        object.__setattr__(self, "log_to", tuple(self.log_to))
        if self.optimizer not in (None, "sgd", "adam"):
            raise UnknownNameError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.amp not in AMP_MODES:
            raise UnknownNameError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.lr_schedule not in ("anneal", "constant"):
            raise UnknownNameError(f"lr_schedule must be 'anneal' or 'constant', got {self.lr_schedule!r}")
        for k in ("epochs", "batch_size", "selection_samples"):  # (a validator compares samples: two at least)
            _check_int(k, getattr(self, k), 1 if k == "epochs" else 2)
        for k in ("steps_per_epoch", "checkpoint_every", "init_layers"):
            if getattr(self, k) is not None:
                _check_int(k, getattr(self, k), 0 if k == "init_layers" else 1)
        _check_int("freeze", self.freeze, 0)
        _check_int("workers", self.workers, 0, 256)
        object.__setattr__(self, "seed", check_seed("seed", self.seed))  # (a numpy integer: stored as an int)
        for k, top in (("lr", 100.0), ("momentum", 1.0), ("weight_decay", 100.0), ("copied_lr_mult", 1000.0),
                       ("l2sp", 1e6)):
            v = getattr(self, k)
            if v is None and k in DATA_DEFAULTS["image"]:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (k == "lr" and v == 0) or v > top:
                raise ConfigError(f"{k} must be a finite number {'> 0' if k == 'lr' else '>= 0'} and at most {top:g}, "
                                  f"got {v!r}")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be below 1, got {self.momentum}")
        if self.device is not None and not _DEVICE.fullmatch(str(self.device)):
            raise ConfigError(f"device {self.device!r} is not a device name; use cpu, cuda, cuda:N, mps or auto")
        if self.checkpoint_dir is not None and not str(self.checkpoint_dir).strip():
            raise ConfigError("checkpoint_dir is empty; give a folder name (or None for no checkpoints)")
        if self.l2sp and not self.init_from:
            raise ConfigError("l2sp regularises towards initial weights: give init_from as well")
        if self.init_layers is not None and not self.init_from:
            raise ConfigError(f"init_layers={self.init_layers} copies the first layer groups of a saved model: give "
                              "init_from (--init-from MODEL.pt) as well")
        if self.init_layers is not None and self.freeze > self.init_layers:  # (Yosinski's protocol freezes copies)
            raise ConfigError(f"freeze={self.freeze} would keep groups {self.init_layers + 1}..{self.freeze} fixed at their "
                              f"random initialisation (init_layers={self.init_layers} copies only the first "
                              f"{self.init_layers}); freeze at most {self.init_layers}")
        if self.init_layers == 0 and (self.l2sp or self.copied_lr_mult != 1.0):
            raise ConfigError("init_layers=0 copies no layer, so l2sp and copied_lr_mult (they act on copied layers) "
                              "would do nothing; leave them out, or copy some layers")

    def for_data(self, is_image: bool, n_source: int, n_target: int) -> "TrainConfig":
        """These settings with the data's defaults filled in (:data:`DATA_DEFAULTS`): what a run trains with.

        Vector data also gets at least :data:`MIN_VECTOR_UPDATES` updates: with a small domain, 20 passes
        of one or two mini-batches each would stop far from convergence (docs/vectors.md)."""
        fill = {k: v for k, v in DATA_DEFAULTS["image" if is_image else "vector"].items() if getattr(self, k) is None}
        if not is_image and self.steps_per_epoch is None:
            natural = math.ceil(max(n_source, n_target) / self.batch_size)
            if natural * self.epochs < MIN_VECTOR_UPDATES:
                fill["steps_per_epoch"] = math.ceil(MIN_VECTOR_UPDATES / self.epochs)
        return replace(self, **fill) if fill else self

    def for_task(self, task: "TransferTask") -> "TrainConfig":
        """:meth:`for_data` for ``task``'s inputs and training splits."""
        return self.for_data(task.is_image, len(task.source), len(task.target))

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers (not where or how visibly they are computed)."""
        skip = {"device", "checkpoint_dir", "checkpoint_every", "keep_checkpoint", "progress", "log_to", "workers"}
        fp = {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
              for f in fields(self) if f.name not in skip}
        for k, default in LATER_SETTINGS.items():  # at their defaults they leave earlier runs' fingerprints alone
            if fp.get(k) == default:
                del fp[k]
        if fp.get("l2sp"):  # since 2026-12-03 L2-SP replaces weight decay on the copied layers: not an older run
            fp["l2sp_form"] = 2
        if self.init_from:  # what the starting model is (its hash; the method and labelled source its run recorded):
            from .weights import starting_model_record  # in result.json; a run's key has its hash as init_from

            fp.update(starting_model_record(self.init_from))
        return fp


#: Training defaults by kind of input, chosen on source-validation accuracy only: images (LeNet,
#: Ganin et al.'s schedule) and feature vectors (Office-Caltech10 SURF and Amazon reviews, docs/vectors.md).
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "image": {"optimizer": "sgd", "lr": 0.01},
    "vector": {"optimizer": "adam", "lr": 0.002},
}
#: Mixed-precision modes (``amp``).
AMP_MODES = ("off", "bf16", "fp16")
#: Settings added after runs were first stored, with their defaults: left out of a fingerprint at those.
LATER_SETTINGS: dict[str, Any] = {"amp": "off", "deterministic": False, "score_every_epoch": True}
#: The least number of updates a vector task trains for by default (``steps_per_epoch`` is raised to reach it).
MIN_VECTOR_UPDATES = 500

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        why = " (batch norm needs two samples per batch)" if name == "batch_size" else ""
        raise ConfigError(f"{name} must be a whole number {span}{why}, got {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, leave_out: Sequence[str] = ()) -> None:
    """Add one flag per :class:`TrainConfig` field (except those a command sets itself, and the fields named in
    ``leave_out``: settings the command does not use), grouped."""
    groups: dict[str, Any] = {}
    for f in fields(TrainConfig):
        meta = f.metadata
        if meta.get("cli") == "" or f.name in leave_out:
            continue
        title = {"training": "training (same for every method)", "fine-tuning": "fine-tuning (with any method)"}
        g = groups.setdefault(meta["group"], parser.add_argument_group(title[meta["group"]]))
        default = f.default if f.default is not MISSING else None
        kind = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str,
                "float | None": float}.get(str(f.type), str)
        help_ = meta["help"] + (f" (default {default})" if default not in (None, (), "") else "")
        if str(f.type) == "bool":
            g.add_argument(_flag(f.name), action="store_true", help=meta["help"])
        elif f.name in ("validators", "log_to"):
            g.add_argument(_flag(f.name), default=default, metavar=meta["metavar"], help=help_,
                           type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()))
        else:
            g.add_argument(_flag(f.name), type=kind, default=default, metavar=meta["metavar"], help=help_)


def config_flags(config: TrainConfig, leave_out: Sequence[str] = ("validators", "log_to")) -> list[str]:
    """The command-line flags that give ``config`` (those of its settings that differ from the defaults):
    the inverse of :func:`config_from_args`, for a ``qianyi run`` line that repeats a run's settings."""
    out: list[str] = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.metadata.get("cli") == "" or f.name in leave_out or f.default is MISSING or value == f.default:
            continue
        if isinstance(value, bool):
            out += [_flag(f.name)] if value else []
        else:
            out += [_flag(f.name), ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)]
    return out


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` described by the flags :func:`add_config_arguments` added, plus ``overrides``."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if getattr(args, "no_progress", False):
        values["progress"] = False
    values.update(overrides)
    return TrainConfig(**values)


def share(text: str, zero: bool = False) -> float:
    """An argparse type: a share strictly between 0 and 1 (``zero``: 0 allowed too)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not ((0.0 <= value if zero else 0.0 < value) and value < 1.0):
        raise argparse.ArgumentTypeError(f"must be {'at least 0' if zero else 'above 0'} and below 1, got {text}")
    return value


def share_or_zero(text: str) -> float:
    """An argparse type: a share in [0, 1) (0: none)."""
    return share(text, zero=True)


def check_copied_lr_mult(config: "TrainConfig", methods: Sequence[str]) -> None:
    """Refuse ``copied_lr_mult`` when nothing will be copied: no ``init_from`` and no method that starts from a
    source stage of its own (self-training's teacher) among ``methods`` (``run``, ``bench``, ``select``; the
    commands that copy layers themselves, ``layers`` and ``transferability``, use it on their copies)."""
    if config.copied_lr_mult == 1.0 or config.init_from:
        return
    from ..methods.registry import available_methods

    known = available_methods()
    if not any(getattr(known.get(m), "needs_source_model", False) for m in methods):
        raise ConfigError(f"copied_lr_mult={config.copied_lr_mult} scales the learning rate of layers copied by "
                          "init_from (--init-from MODEL.pt), and none are: give --init-from as well, or leave it "
                          "out (pretrained --weights layers train at their own 0.1 already)")


#: The largest seed qianyi takes (numpy's legacy generators, ``np.random.seed``, take 0 .. 2**32 - 1): every
#: seed setting (``TrainConfig.seed``, ``--seed``, ``seeds=``, ``ProxyTransfer(random_state=)``) is checked against it.
SEED_MAX = 2 ** 32 - 1
#: ``load_task`` derives further seeds from its ``split_seed`` and takes split seeds up to ``SEED_MAX`` minus this.
SPLIT_SEED_RESERVE = 2


def check_seed(name: str, value: Any, reserve: int = 0) -> int:
    """``value`` as an int if it is a whole number from 0 to ``SEED_MAX - reserve``, else a :class:`ConfigError`
    naming ``name``. ``reserve``: how far the seed is counted up for further streams (a split seed:
    :data:`SPLIT_SEED_RESERVE`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= SEED_MAX - reserve:
        raise ConfigError(f"{name} must be a whole number between 0 and {SEED_MAX - reserve}, got {value!r}")
    return int(value)


#: The most seeds one call takes (each seed trains every run again): a count past it, e.g. a mistyped
#: ``--seeds 1000000000``, is refused before any list of seeds is built (one of 10^9 ints is tens of GB).
SEEDS_COUNT_MAX = 10_000


def normalise_seeds(seeds: Any, who: str, start: int = 0) -> list[int]:
    """The seeds ``seeds`` names: a count N (the seeds ``start`` .. ``start + N - 1``) or a sequence of distinct
    whole numbers, each from 0 to :data:`SEED_MAX`, at most :data:`SEEDS_COUNT_MAX` of them (a count, a ``range``
    or a generator is never listed past that). A bool, an empty sequence or a seed given twice (its runs
    would count twice in every mean and spread over seeds) is a :class:`ConfigError` naming ``who``."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"{who}: seeds={seeds!r}: give a count of at least 1 or a list of seeds")
        check_seed(f"{who}: the last seed ({start} + seeds - 1)", start + int(seeds) - 1)
        if seeds > SEEDS_COUNT_MAX:
            raise ConfigError(f"{who}: seeds={int(seeds)}: at most {SEEDS_COUNT_MAX:,} seeds at once (each seed "
                              "trains every run again); give fewer")
        return list(range(start, start + int(seeds)))
    if isinstance(seeds, (bool, str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"{who}: seeds={seeds!r}: give a count of at least 1 or a list of seeds (distinct whole "
                          f"numbers from 0 to {SEED_MAX})")
    values = list(itertools.islice(iter(seeds), SEEDS_COUNT_MAX + 1))  # (a huge range: its first ones only)
    if not values:
        raise ConfigError(f"{who}: seeds={seeds!r} is empty: give a count of at least 1 or a list of seeds")
    if len(values) > SEEDS_COUNT_MAX:
        raise ConfigError(f"{who}: seeds holds more than {SEEDS_COUNT_MAX:,} seeds: at most {SEEDS_COUNT_MAX:,} at "
                          "once (each seed trains every run again); give fewer")
    out = [check_seed(f"{who}: each of seeds", v) for v in values]
    seen: set[int] = set()
    for s in out:
        if s in seen:
            raise ConfigError(f"{who}: seed {s} is given twice in seeds={values!r}; give each seed once (its runs "
                              "would count twice in the mean and spread over seeds)")
        seen.add(s)
    return out


def _seed_type(text: str, reserve: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= SEED_MAX - reserve:
        raise argparse.ArgumentTypeError(f"must be between 0 and {SEED_MAX - reserve}, got {text}")
    return value


def seed_int(text: str) -> int:
    """An argparse type for ``--seed``: a whole number from 0 to :data:`SEED_MAX` (as :func:`check_seed`)."""
    return _seed_type(text, 0)


def split_seed_int(text: str) -> int:
    """An argparse type for a ``--split-seed`` given to ``load_task``: 0 to ``SEED_MAX - 2``, the range it takes."""
    return _seed_type(text, SPLIT_SEED_RESERVE)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--seeds``, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

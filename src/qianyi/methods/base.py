"""What a method is: named loss terms (and any extra modules) computed from one step's outputs.

The engine (:mod:`qianyi.train`) does everything else: batches, forward passes, optimiser,
schedules, seeding, checkpoints. A new method is one small file in this package (level 1)::

    @register
    class MyMethod(Method):
        '''One line. Paper reference. The loss as an equation.'''
        name = "my-method"
        def __init__(self, trade_off: float = 1.0):
            super().__init__()
            self.trade_off = trade_off
        def loss(self, batch):
            return {"cls": self.source_ce(batch), "align": self.trade_off * batch.ramp * ...}

Level 2 (games, teachers, alternating updates): a method that needs more overrides
:meth:`Method.training_step`, which receives a :class:`StepContext` — the step's inputs, the
schedule's progress, the model, and the method's named optimizers (declared by
:meth:`Method.optimizers`, built and scheduled by the engine) — and calls ``ctx.update(terms,
"name")`` once per update it makes. Extra state (an EMA teacher, a second classifier) lives in
modules the method registers in :meth:`Method.setup`, so the engine checkpoints and moves it with
the method. Random draws (augmented views, noise) use torch's global RNG, which the engine
checkpoints, so a resumed run draws the same numbers.

Hyper-parameters are the keyword arguments of ``__init__``, stored under the same names; the
CLI's ``--set name=value`` and the result files read them from the signature.
"""
from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
import contextlib
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.domain import TransferTask
from ..errors import ConfigError, DataError, TrainingError, UnknownNameError
from ..nn.backbones import Backbone, LayerOutputs
from ..schedules import adaptation_ramp


#: The widest layer a setting may ask for (a width of 10**12 would try to allocate terabytes).
MAX_WIDTH = 65536


def _is_number(v: Any, whole: bool) -> bool:
    return (isinstance(v, int) or (isinstance(v, float) and not whole)) and not isinstance(v, bool) \
        and math.isfinite(v)


def _check_value(v: Any, default: Any) -> tuple[bool, str]:
    """Whether ``v`` may replace ``default`` (same kind; numbers finite, >= 0; tuple items > 0), and what is wanted."""
    if isinstance(default, bool):
        return isinstance(v, bool), "true or false"
    if isinstance(default, (int, float)):
        whole = isinstance(default, int)
        return _is_number(v, whole) and v >= 0, f"a finite {'whole ' if whole else ''}number >= 0"
    if isinstance(default, str):
        return isinstance(v, str) and bool(v), "a non-empty name"
    if isinstance(default, (tuple, list)) and default:
        if all(isinstance(x, str) for x in default):
            return isinstance(v, (tuple, list)) and bool(v) and all(isinstance(x, str) and x for x in v), \
                "a non-empty list of names"
        whole = all(isinstance(x, int) for x in default)
        top = MAX_WIDTH if whole else math.inf  # whole numbers in a list are layer widths
        return isinstance(v, (tuple, list)) and bool(v) and all(_is_number(x, whole) and 0 < x <= top for x in v), \
            f"a non-empty list of {f'whole numbers from 1 to {MAX_WIDTH}' if whole else 'numbers > 0'}"
    return True, ""


@dataclass
class Batch:
    """What a method sees at one training step.

    ``source`` / ``target`` are the backbone's outputs on the two mini-batches (None for a domain
    the method does not use). ``target_labels`` is None unless the method declares
    ``uses_target_labels`` (the oracle). ``progress`` runs from 0 to 1 over training.
    ``source_inputs`` / ``target_inputs`` are the mini-batches themselves (for reconstruction terms).
    """

    source: LayerOutputs | None
    target: LayerOutputs | None
    source_labels: torch.Tensor | None
    target_labels: torch.Tensor | None
    progress: float
    source_inputs: torch.Tensor | None = None
    target_inputs: torch.Tensor | None = None
    #: The training step (0-based), for schedules counted in steps rather than in ``progress``.
    step: int = 0

    @property
    def ramp(self) -> float:
        """The adaptation-weight ramp 2 / (1 + exp(-10 p)) - 1 at this step."""
        return adaptation_ramp(self.progress)


#: A torch optimiser parameter group. Keys the engine reads besides torch's own: ``lr_mult`` scales the
#: scheduled learning rate; ``base_lr`` replaces the configured initial rate (the schedule scales it
#: alike); ``optimizer`` ("sgd" or "adam") overrides the configured kind for the optimizer holding the
#: group (a GAN's Adam beside the task network's SGD; torch's per-group ``betas`` then apply).
ParamGroup = dict[str, Any]


@dataclass
class StepContext:
    """What a level-2 method sees at one training step (built by the engine).

    ``source_inputs``/``target_inputs`` are the mini-batches, ``source_labels`` the source labels;
    ``target_labels`` is None unless the method declares ``uses_target_labels`` (the oracle).
    ``optimizers`` are the method's named optimizers (learning rates already set by the schedule).
    """

    model: Backbone
    method: "Method"
    source_inputs: torch.Tensor | None
    source_labels: torch.Tensor | None
    target_inputs: torch.Tensor | None
    target_labels: torch.Tensor | None
    progress: float
    step: int
    optimizers: dict[str, torch.optim.Optimizer]
    #: Extra terms the engine adds to every update that moves the backbone (L2-SP).
    regularizer: Callable[[], dict[str, torch.Tensor]] = field(default=lambda: {})
    #: Names of the optimizers that hold backbone parameters (the regulariser applies to their updates).
    backbone_optimizers: frozenset[str] = frozenset()
    #: Under torchrun: averages the gradients of the parameters an update steps, over the processes.
    sync_gradients: Callable[[list[torch.Tensor]], None] | None = None
    #: fp16 mixed precision: a ``torch.amp.GradScaler`` that scales each loss and unscales before the step.
    scaler: Any = None
    logged: dict[str, list[float]] = field(default_factory=dict)
    #: Steps in one epoch of this run (0 when unknown): ``step % steps_per_epoch == 0`` starts an epoch.
    steps_per_epoch: int = 0

    @property
    def ramp(self) -> float:
        """The adaptation-weight ramp 2 / (1 + exp(-10 p)) - 1 at this step."""
        return adaptation_ramp(self.progress)

    def forward(self, *inputs: torch.Tensor) -> tuple[LayerOutputs, ...]:
        """One forward pass of the concatenated ``inputs`` (batch norm sees them together), split back."""
        out = self.model(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
        parts = []
        for x in inputs[:-1]:
            head, out = out.split(len(x))
            parts.append(head)
        return (*parts, out)

    def batch(self, source: LayerOutputs | None, target: LayerOutputs | None) -> Batch:
        """The level-1 :class:`Batch` for outputs computed in this step."""
        return Batch(source, target, self.source_labels, self.target_labels, self.progress,
                     self.source_inputs, self.target_inputs, self.step)

    def update(self, terms: dict[str, torch.Tensor], optimizers: str | Sequence[str] | None = None) -> None:
        """Minimise the sum of ``terms`` with the named optimizers (all by default): zero every
        gradient, check that every term is finite, backpropagate, step the named ones.
        Each term is logged under its name (averaged per epoch)."""
        names = list(self.optimizers) if optimizers is None else [optimizers] if isinstance(optimizers, str) \
            else list(optimizers)
        unknown = [n for n in names if n not in self.optimizers]
        if unknown:
            raise KeyError(f"{self.method.name}: no optimizer {unknown}; it declared {list(self.optimizers)}")
        if self.backbone_optimizers.intersection(names):
            terms = {**terms, **self.regularizer()}
        terms = self._tensor_terms(terms, names)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            bad = {k: float(v.detach()) for k, v in terms.items() if not torch.isfinite(v).all()}
            raise TrainingError(f"{self.method.name}: loss term(s) {bad} became non-finite at step {self.step} "
                                f"(update of {', '.join(names)}); the run diverged. Lower --lr or the method's "
                                "weights (--set trade_off=...): that is another run, so give a new --out (or "
                                "delete the old folder's checkpoint.pt)")
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        dev = loss.device.type
        with torch.autocast(dev, enabled=False) if torch.is_autocast_enabled(dev) else contextlib.nullcontext():
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()  # (backward outside autocast)
        if self.sync_gradients is not None:
            self.sync_gradients([p for n in names for g in self.optimizers[n].param_groups for p in g["params"]])
        for n in names:
            if self.scaler is None:
                self.optimizers[n].step()
            else:  # skips the step if the scaled gradients overflowed, then adapts the scale
                self.scaler.step(self.optimizers[n])
        if self.scaler is not None:
            self.scaler.update()
        self.log(**{k: float(v.detach()) for k, v in terms.items()})

    def _tensor_terms(self, terms: dict[str, Any], names: list[str]) -> dict[str, torch.Tensor]:
        """``terms`` as tensors (a plain number is a constant term: logged, no gradient), or a clear error when
        nothing among them can be minimised."""
        bad = {k: type(v).__name__ for k, v in terms.items()
               if not isinstance(v, torch.Tensor) and (isinstance(v, bool) or not isinstance(v, numbers.Real))}
        bad.update({k: f"a tensor of shape {tuple(v.shape)}" for k, v in terms.items()
                    if isinstance(v, torch.Tensor) and v.numel() != 1})
        if bad:
            raise TrainingError(f"{self.method.name}: loss term(s) {bad} at step {self.step}; each term must be a "
                                "scalar tensor (reduce it with .mean() or .sum())")
        tensors = [v for v in terms.values() if isinstance(v, torch.Tensor)]
        if not any(v.requires_grad for v in tensors):
            raise TrainingError(f"{self.method.name}: no loss term with a gradient to minimise at step {self.step} "
                                f"(update of {', '.join(names)}; terms: {sorted(terms) or 'none'}); return at least one "
                                "tensor computed from the networks' outputs, or skip the update on that step")
        ref = tensors[0]
        return {k: v.reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=ref.dtype,
                                                                                 device=ref.device)
                for k, v in terms.items()}

    def log(self, **values: float) -> None:
        """Record numbers for the epoch's history row (averaged over the epoch)."""
        for k, v in values.items():
            self.logged.setdefault(k, []).append(float(v))


def frozen_groups(backbone: Backbone) -> list[str]:
    """The layer groups ``--freeze`` froze (no weight of theirs trains), for a method's copies of the backbone
    (a teacher, a fixed classifier) to keep frozen too: :func:`train_but_frozen`."""
    return [n for n in backbone.group_names if not any(p.requires_grad for p in backbone.groups[n].parameters())]


def train_but_frozen(network: Backbone, frozen: Sequence[str]) -> None:
    """``network`` in training mode but for the ``frozen`` groups, kept in eval mode as the engine keeps the
    backbone's (their batch-norm statistics stay, no dropout)."""
    network.train()
    for name in frozen:
        network.groups[name].eval()


def split_group(backbone: Backbone, split: str | None, method: str) -> str:
    """The layer group a method with two or three classifiers splits the network at: ``split``, or by default
    the group below the bottleneck (``..., split, bottleneck, logits``: ``fc1`` of the LeNet and the MLP,
    ``pool`` of a ResNet, ``E`` of the text networks)."""
    names = backbone.group_names
    chosen = split if split is not None else names[-3] if len(names) >= 3 else names[0]
    if chosen not in names[:-1]:
        raise UnknownNameError(f"{method}: split must be a layer group below the logits, one of {list(names[:-1])}; "
                               f"got {chosen!r}")
    return chosen


def fresh_head(backbone: Backbone, above: str) -> nn.Sequential:
    """A freshly initialised copy of the backbone's layer groups above ``above`` (a second classifier
    of the same architecture, as MCD's and MDD's). ``above`` must be a group below the logits."""
    import copy

    names = backbone.group_names
    if above not in names[:-1]:
        raise ConfigError(f"the layer group {above!r} must be one below the logits, one of {list(names[:-1])}")
    head = nn.Sequential(*[copy.deepcopy(backbone.groups[n]) for n in names[names.index(above) + 1:]])
    for m in head.modules():
        if m is not head and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return head.requires_grad_(True)  # a fresh copy trains, whatever --freeze did to the groups it copies


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`loss` (level 1) or
    :meth:`training_step` (level 2); see the module docstring."""

    name: ClassVar[str] = ""
    #: Raised when the method's training changes for the same settings (a loss term renormalised): part of a
    #: run's fingerprint from 2 on, so a stored run of the earlier form is never reused as a finished one.
    revision: ClassVar[int] = 1
    #: Which inputs the engine forwards and hands over.
    uses_source: ClassVar[bool] = True
    uses_target: ClassVar[bool] = True
    #: True only for the oracle: it trains on target labels, and results say so.
    uses_target_labels: ClassVar[bool] = False
    #: Candidate settings for label-free hyper-parameter selection (``qianyi select``); includes the default.
    grid: ClassVar[tuple[dict[str, Any], ...]] = ()
    #: Inclusive ranges of numeric settings, besides the rule every number follows (finite, >= 0).
    bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    #: History keys holding a discriminator's accuracy: near 100% they mean the game is lost
    #: (marked in the epoch line, flagged at the end of the run; :mod:`qianyi.train.health`).
    discriminator_logs: ClassVar[tuple[str, ...]] = ()
    #: What a winning discriminator means for this method, and what to change (the health flag's words).
    game_meaning: ClassVar[str] = "the domains were never confused"
    game_advice: ClassVar[str] = ("if the classifier learnt the source, raise trade_off (a stronger push on the encoder) "
                                  "or narrow the discriminator (hidden); if it failed too, lower trade_off: the "
                                  "reversed gradient is swamping the classifier (a weight that suits 10 classes may be "
                                  "too strong for many)")
    #: History keys holding the share of the target a confidence gate let into a pseudo-label or consistency
    #: term: near 0 over the run, that term was mostly off (flagged at the end of the run).
    gate_logs: ClassVar[tuple[str, ...]] = ()
    #: False for a method that leaves the classifier untrained (DiscoGAN): its predictions are not checked.
    trains_classifier: ClassVar[bool] = True
    #: False when the network it saves is not the backbone's (co-training's two views, multimodal's target
    #: branch): another method cannot start from it (``pretrain=``).
    saves_backbone: ClassVar[bool] = True
    #: What the method trains instead of the engine's network, e.g. "its two view networks" (co-training); "" when
    #: it trains that network. Non-empty: ``init_from``, ``freeze``, ``init_layers`` and ``l2sp`` are refused.
    trains_own_network: ClassVar[str] = ""
    #: The text encoder (``qianyi.nn.text.TEXT_ENCODERS``) this method brings on a text task when no
    #: backbone is given (AMN: its memory network); None: the task's default encoder.
    text_encoder: ClassVar[str | None] = None
    #: Settings added after runs of the method were stored, each with the value that behaves as before it
    #: existed: at that value it is left out of the run's fingerprint, so stored runs keep their keys
    #: (a killed run still resumes, a bench still reuses it).
    added_hparams: ClassVar[dict[str, Any]] = {}

    #: The shape of one input sample, e.g. (3, 28, 28); set by the engine before :meth:`setup`.
    input_shape: tuple[int, ...] | None = None
    #: The source's column names, set with ``input_shape`` (None for images or unnamed columns).
    feature_names: tuple[str, ...] | None = None
    #: Why the method cannot train on token ids, e.g. "reconstructs its inputs" (the engine then stops a text
    #: run with a DataError that says so); "" when it can.
    not_for_text: ClassVar[str] = ""
    #: ``"text"`` when the inputs are token ids (set by the engine): augmented views then delete words
    #: (:mod:`qianyi.nn.augment`) instead of adding noise; None otherwise.
    input_kind: str | None = None

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        """Build extra modules once the backbone is known (``sample_batch``: its outputs on a few inputs)."""

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named loss terms, weights applied; the engine minimises their sum and logs each."""
        raise NotImplementedError

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        """Named optimizers, each a list of parameter groups; the engine builds them with the configured
        optimiser and schedules their learning rates. ``backbone`` holds one group per trainable layer
        group of the backbone (frozen ones left out; copied ones carry their ``lr_mult``). Default: one
        optimizer, ``"main"``, over the backbone and every trainable parameter of the method."""
        own = [p for p in self.parameters() if p.requires_grad]
        return {"main": [*backbone.values(), *([{"params": own}] if own else [])]}

    def copies_of(self, groups: Sequence[str]) -> list[nn.Parameter]:
        """Parameters of the method's own that copy these copied backbone groups and stand for them in the
        network it returns (multimodal's target lower layers): L2-SP anchors them at their starting values, as
        the groups themselves. Default: none (a copy that plays another role, ADDA's target encoder, keeps its
        weight decay)."""
        return []

    def training_step(self, ctx: StepContext) -> None:
        """One training step. Default (level 1): forward source and target together, minimise
        :meth:`loss` with every optimizer."""
        source = target = None
        if self.uses_source and self.uses_target:
            source, target = ctx.forward(ctx.source_inputs, ctx.target_inputs)
        elif self.uses_source:
            (source,) = ctx.forward(ctx.source_inputs)
        else:
            (target,) = ctx.forward(ctx.target_inputs)
        ctx.update(self.loss(ctx.batch(source, target)))
        ctx.log(**self.__dict__.pop("_recorded", {}))

    def record(self, **values: float) -> None:
        """From :meth:`loss`: numbers to show beside the loss terms (e.g. a discriminator's accuracy),
        averaged per epoch into the history; they are not minimised."""
        self.__dict__.setdefault("_recorded", {}).update(values)

    def save_artefacts(self, out: Path, task: TransferTask) -> list[Path]:
        """After a run that writes a folder: files of the method's own (a generator's weights, image
        grids) written into ``out``; returns their paths. Default: none."""
        return []

    def inference_model(self, backbone: Backbone) -> nn.Module:
        """The network that predicts after (and during) training: the backbone, unless the method keeps
        another one (a mean teacher returns its teacher)."""
        return backbone

    @property
    def feature_game(self) -> bool:
        """Whether the classifier's own features play against a discriminator (a collapse may then be the encoder
        fooling it); a method whose discriminators judge something else (CyCADA's images) says no."""
        return bool(self.discriminator_logs)

    def network_spec(self) -> dict[str, Any] | None:
        """What rebuilds the predicting network when it is not of the backbone's architecture (co-training's
        two view networks): recorded in model.json (``architecture.backbone = "method"``) and read back by
        :meth:`saved_network`; None: the backbone's architecture."""
        return None

    def saved_network(self, architecture: dict[str, Any]) -> nn.Module:
        """The untrained predicting network a model.json ``architecture`` written from :meth:`network_spec` describes."""
        raise DataError(f"{self.name} saves no network of its own; its model.json describes the backbone")

    @staticmethod
    def source_ce(batch: Batch) -> torch.Tensor:
        """Cross-entropy of the source predictions: the supervised term every method keeps."""
        assert batch.source is not None and batch.source_labels is not None
        return F.cross_entropy(batch.source.logits, batch.source_labels)

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return " ".join(doc.split("\n\n")[0].split())  # the first paragraph, on one line

    @classmethod
    def hparam_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {k: p.default for k, p in sig.parameters.items()
                if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def check_hparams(self) -> None:
        """Refuse settings that cannot train, naming them: a value of the wrong type, a number that is
        NaN, infinite or negative, a width or multiplier that is not positive, one outside ``bounds``."""
        defaults = self.hparam_defaults()
        for k, v in self.hparams().items():
            d = defaults[k]
            ok, want = _check_value(v, d)
            if ok and k in self.bounds:
                lo, hi = self.bounds[k]
                ok, want = lo <= v <= hi, f"in [{lo}, {hi}]"
            if not ok:
                raise ConfigError(f"{self.name}: setting {k} must be {want}, got {v!r}")

    def fingerprint_hparams(self) -> dict[str, Any]:
        """:meth:`hparams` as a run's fingerprint holds them: without an ``added_hparams`` setting at its
        old-behaviour value."""
        return {k: v for k, v in self.hparams().items() if k not in self.added_hparams or self.added_hparams[k] != v}

    def hparams(self) -> dict[str, Any]:
        out = {}
        for k in self.hparam_defaults():
            if not hasattr(self, k):
                raise ConfigError(f"method {self.name!r} ({type(self).__module__}.{type(self).__qualname__}): "
                                  f"__init__ takes {k!r} but the instance has no attribute {k!r}; store each setting "
                                  f"under its own name (self.{k} = {k}): runs record and compare settings by name")
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())

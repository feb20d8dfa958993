"""Co-training across two views of the same samples (Blum & Mitchell, COLT 1998), with a related labelled domain."""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.domain import Domain, ViewOrderError, view_widths
from ..errors import ConfigError, DataError, QianyiWarning
from ..nn import Backbone, LayerOutputs
from ..nn.backbones import mlp
from ..nn.inference import evaluating
from .base import ParamGroup, StepContext
from .registry import register
from .self_training import MemoryBuffers, class_balanced_thresholds, growing_portion

#: Which view networks train and predict, by the ``view`` setting.
VIEW_MODES = {"both": (0, 1), "a": (0,), "b": (1,)}


class TwoViewNet(nn.Module):
    """Two view networks side by side: ``view_a`` reads the input columns ``[:split]`` only, ``view_b``
    the columns ``[split:]`` only (each an :func:`~qianyi.nn.mlp`).

    ``forward(x)`` returns :class:`LayerOutputs` like a backbone: ``view_a``/``view_b`` (each view's
    code), ``logits_a``/``logits_b`` (each view's logits), ``features`` (the codes of the predicting
    views, concatenated) and ``logits`` = :math:`\\log \\frac{1}{|V|}\\sum_{v \\in V} p_v(y|x^v)`, the
    log of the averaged class probabilities of the predicting views :math:`V` (``use``: both, or one).
    """

    def __init__(self, width: int, split: int, n_classes: int, use: tuple[int, ...] = (0, 1)) -> None:
        super().__init__()
        self.split, self.use = split, use
        self.view_a = mlp(split, n_classes)
        self.view_b = mlp(width - split, n_classes)

    def views(self, x: torch.Tensor) -> tuple[LayerOutputs, LayerOutputs]:
        """Each view network's outputs on its own columns of ``x`` (n, width)."""
        x = x.flatten(1)
        return self.view_a(x[:, :self.split]), self.view_b(x[:, self.split:])

    def forward(self, x: torch.Tensor) -> LayerOutputs:
        a, b = self.views(x)
        used = [(a, b)[v] for v in self.use]
        logp = torch.stack([F.log_softmax(o.logits.float(), 1) for o in used])
        return LayerOutputs(OrderedDict([
            ("view_a", a.features), ("view_b", b.features), ("logits_a", a.logits), ("logits_b", b.logits),
            ("features", torch.cat([o.features for o in used], 1)),
            ("logits", torch.logsumexp(logp, 0) - math.log(len(used))),
        ]), "features")


@register
class CoTraining(MemoryBuffers):
    r"""Co-training: two networks, each on its own view of the inputs, label the target for each other.

    The inputs are two views side by side, :math:`x = [x^a, x^b]` (``split`` = the width of
    :math:`x^a`; 0: half of the columns). Network :math:`f_a` reads only :math:`x^a`, :math:`f_b`
    only :math:`x^b` (:class:`TwoViewNet`). With :math:`p_v = \mathrm{softmax}(f_v(x^v))`,
    :math:`\hat y^v_j = \arg\max_c p_{v,jc}`, :math:`c^v_j = \max_c p_{v,jc}` on target sample
    :math:`j`, and :math:`m^v_j = \mathbb{1}[c^v_j \ge t^v_{\hat y^v_j}]` (view :math:`v` is confident):

    .. math::
        \mathcal{L} = \sum_{v \in \{a, b\}} \frac{1}{n_s}\sum_i \ell\big(f_v(x^{s,v}_i), y^s_i\big)
            + \lambda_p \frac{1}{n_t}\sum_j \Big[ m^b_j\,\ell\big(f_a(x^{t,a}_j), \hat y^b_j\big)
                                               + m^a_j\,\ell\big(f_b(x^{t,b}_j), \hat y^a_j\big) \Big]

    so each view's confident target predictions are labels for the OTHER view only. :math:`t^v_c` are
    CBST's class-balanced thresholds (:func:`~qianyi.methods.self_training.class_balanced_thresholds`):
    the most confident ``portion`` of the recent target samples view :math:`v` predicts as class
    :math:`c` — a stand-in for Blum & Mitchell's quota of :math:`p` positive and :math:`n` negative
    examples per round in the class ratio: the same share of each predicted class, so labels passed on
    follow the view's own (possibly skewed) predictions rather than a fixed quota per class. The portion grows linearly from ``start`` to ``end`` after
    ``warmup`` (both views train on the source alone before), and
    :math:`\lambda_p = \lambda\,(2/(1+e^{-10 q}) - 1)`, :math:`q` the progress since the warm-up,
    :math:`\lambda` = ``trade_off``. Prediction: :math:`\log \frac12 (p_a + p_b)`.

    ``view="a"`` (or ``"b"``) is the single-view baseline on the same network, schedule and
    thresholds: only :math:`f_a` trains, on its own confident labels (self-training, CBST's rule), and
    predicts alone.

    Departures from the paper: (1) there, both classifiers are retrained from scratch each round on a
    growing labelled pool to which each adds its most confident :math:`p + n` samples from a small
    random pool :math:`U'`; here a round is an epoch of the engine's mini-batches, labels are re-decided
    at every step from the current networks (nothing is added to a pool for good), thresholds are
    quantiles over a memory of the last ``memory`` target batches (checkpointed), and the pseudo-label
    loss is ramped in; (2) a view's labels train only the other view (in the paper they join the
    pool both train on); (3) the labelled data are a related domain's (the source), not the target's:
    the talk's car-usage case, where a related domain's labels start the target and a second view
    corrects them; (4) the combined prediction averages the views' probabilities (Blum & Mitchell
    multiply them). Labels are read from each network in eval mode (no dropout, batch-norm running
    statistics), so a :func:`pseudo_label_monitor` applies the very same rule.

    Logged per epoch (a round): ``a_to_b`` / ``b_to_a`` — the share of each target batch that view
    a / b labelled for the other (``pseudo_share`` with one view) — and ``agree``, the share of target
    samples on which the two views predict the same class (no labels needed).

    Settings: ``split`` (width of the first view; mfeat's ``fou`` is 76 —
    :func:`qianyi.data.mfeat.view_widths` reads it from the column names); ``view`` (``both``, ``a``,
    ``b``). The view networks are :func:`~qianyi.nn.mlp` (the default vector backbone) on their own
    columns; the engine's backbone is not trained, so ``--init-from``, ``--freeze``, ``--init-layers`` and
    ``--l2sp`` are refused.
    A saved run folder holds the :class:`TwoViewNet`'s weights and its settings (model.json):
    ``load_model(DIR)`` and ``qianyi predict`` rebuild it.

    Paper: Avrim Blum, Tom Mitchell. "Combining Labeled and Unlabeled Data with Co-Training". COLT 1998.

    Example:
        >>> import qianyi
        >>> task = qianyi.load_task("mfeat?views=fou,kar&domain=A", "mfeat?views=fou,kar&domain=B")  # doctest: +SKIP
        >>> result, fit = qianyi.run("cotrain", task, qianyi.TrainConfig(), split=76)  # doctest: +SKIP
    """

    name = "cotrain"
    saves_backbone = False  # it saves its two view networks
    trains_own_network = "its two view networks, built apart from it"
    not_for_text = "splits the input columns into two views (a text's token positions are not views of it)"
    memory_buffers = ("_conf", "_pred")
    grid = ({}, {"end": 0.8}, {"trade_off": 0.3})
    bounds = {"start": (0.0, 1.0), "end": (0.0, 1.0), "warmup": (0.0, 0.95)}

    def __init__(self, split: int = 0, view: str = "both", trade_off: float = 1.0, start: float = 0.2,
                 end: float = 0.5, warmup: float = 0.25, memory: int = 20, shared: bool = False) -> None:
        super().__init__()
        if view not in VIEW_MODES:
            raise ConfigError(f"cotrain: setting view must be one of {', '.join(VIEW_MODES)}, got {view!r}")
        if memory < 1:
            raise ConfigError(f"cotrain: setting memory (target batches the thresholds look back on) must be >= 1, "
                              f"got {memory}")
        self.split, self.view, self.trade_off = split, view, trade_off
        self.start, self.end, self.warmup, self.memory, self.shared = start, end, warmup, memory, shared

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        shape = self.input_shape
        if shape is None or len(shape) != 1:
            raise DataError(f"cotrain reads vectors holding two views side by side, got samples of shape {shape}")
        width = int(shape[0])
        split = self.split or width // 2
        # columns named VIEW_J (J a number, as mfeat?views= and fsdd?views= name them): say when the split cuts a
        # view or more than two are given; other names (radius_mean, radius_se) are the user's, and so is the split
        named_views = bool(self.feature_names) and all(str(c).rpartition("_")[2].isdigit() for c in self.feature_names)
        views: list[tuple[str, int]] = []
        if named_views:
            try:
                views = view_widths(self.feature_names)
            except ViewOrderError as exc:
                if not self.split:
                    raise
                warnings.warn(f"cotrain: {exc}; split={self.split} is used as given", QianyiWarning, stacklevel=2)
        if views:
            edges = np.cumsum([w for _, w in views])[:-1]
            listed = ", ".join(f"{v} ({w})" for v, w in views)
            if len(views) > 1 and split not in edges:
                said = "split=0 takes the first half of the columns" if not self.split else f"split={self.split} takes"
                warnings.warn(f"cotrain: {said} ({split} of {width}), which cuts a view; the views are {listed}: set "
                              f"split={views[0][1]} (the first view's width)", QianyiWarning, stacklevel=2)
            elif len(views) > 2:
                ends = np.cumsum([w for _, w in views])
                a = [v for (v, _), e in zip(views, ends) if e <= split]
                b = [v for (v, _), e in zip(views, ends) if e > split]
                warnings.warn(f"cotrain takes two views; the columns hold {len(views)} ({listed}), so view a is "
                              f"{' + '.join(a)} and view b {' + '.join(b)} (leave columns out with ?drop= to co-train "
                              "two of them)", QianyiWarning, stacklevel=2)
        if not 0 < split < width:
            raise ConfigError(f"cotrain: setting split (the width of the first view) must be from 1 to {width - 1} "
                              f"for inputs of {width} columns, got {self.split}")
        self.n_classes = int(sample_batch.logits.shape[1])
        self.net = TwoViewNet(width, split, self.n_classes, VIEW_MODES[self.view])
        self.register_buffer("_conf", torch.zeros(2, 0))
        self.register_buffer("_pred", torch.zeros(2, 0, dtype=torch.long))
        #: each view's thresholds at the last step (1: nothing selected yet), read by pseudo_label_monitor
        self.register_buffer("thresholds", torch.ones(2, self.n_classes))

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        return {"main": [{"params": [p for v in VIEW_MODES[self.view]
                                     for p in (self.net.view_a, self.net.view_b)[v].parameters()]}]}

    def inference_model(self, backbone: Backbone) -> nn.Module:
        return self.net

    def network_spec(self) -> dict[str, Any]:
        return {"split": int(self.net.split), "use": list(self.net.use)}

    def saved_network(self, architecture: dict[str, Any]) -> nn.Module:
        return TwoViewNet(int(architecture["sample_shape"][0]), int(architecture["split"]),
                          int(architecture["n_classes"]), tuple(int(v) for v in architecture["use"]))

    def portion(self, progress: float) -> float:
        return growing_portion(progress, self.warmup, self.start, self.end)

    @torch.no_grad()
    def labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each view's (confidence, predicted class) on ``x``, in eval mode: two (2, n) tensors."""
        with evaluating(self.net):
            a, b = self.net.views(x)
        conf, pred = torch.stack([a.logits.float().softmax(1), b.logits.float().softmax(1)]).max(2)
        return conf, pred

    def selected(self, conf: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(2, n) bool: where each view is confident enough, by its current class-balanced thresholds."""
        return torch.stack([conf[v] >= self.thresholds[v][pred[v]] for v in range(2)])

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xs is not None and ys is not None and xt is not None
        conf, pred = self.labels(xt)
        keep = self.memory * len(xt)
        self._conf = torch.cat([self._conf, conf], 1)[:, -keep:]
        self._pred = torch.cat([self._pred, pred], 1)[:, -keep:]
        a, b = self.net.views(torch.cat([xs, xt]))  # batch norm sees source and target together
        outs = [o.split(len(xs)) for o in (a, b)]  # [(source, target) of view a, of view b]
        active = VIEW_MODES[self.view]
        terms = {f"cls_{'ab'[v]}": F.cross_entropy(outs[v][0].logits, ys) for v in active}
        shares = torch.zeros(2)
        if ctx.progress >= self.warmup:
            portion = self.portion(ctx.progress)
            self.thresholds = torch.stack([class_balanced_thresholds(self._conf[v], self._pred[v], self.n_classes,
                                                                     portion) for v in range(2)])
            mask = self.selected(conf, pred).float()
            q = (ctx.progress - self.warmup) / max(1e-12, 1 - self.warmup)
            weight = self.trade_off * (2.0 / (1.0 + math.exp(-10 * q)) - 1.0)
            for v in active:
                teacher = 1 - v if len(active) == 2 else v  # co-training: the other view; alone: itself
                target, keep_t = pred[teacher], mask[teacher]
                if self.shared and teacher != v:  # the paper's pool: the other view's labels, and its own
                    other = keep_t.bool() & ((mask[v] == 0) | (conf[teacher] >= conf[v]))
                    target, keep_t = torch.where(other, pred[teacher], pred[v]), torch.maximum(keep_t, mask[v])
                ce = F.cross_entropy(outs[v][1].logits, target, reduction="none")
                terms[f"pseudo_{'ab'[v]}"] = weight * (keep_t * ce).mean()
            shares = mask.mean(1).cpu()
        if len(active) == 2:
            ctx.log(a_to_b=float(shares[0]), b_to_a=float(shares[1]))
            ctx.log(agree=float((pred[0] == pred[1]).float().mean()))
        else:
            ctx.log(pseudo_share=float(shares[active[0]]))
        ctx.update(terms)


def pseudo_label_audit(method: CoTraining, domain: Domain, device: torch.device | str = "cpu"
                       ) -> dict[str, float]:
    """How many labels ``method``'s rule would give on ``domain`` now (its current networks and
    thresholds), and — where ``domain`` is labelled — how many of them are right.

    Returns, for each view v that trains (a, b, or one of them): ``{v}_given``, the share of ``domain`` it labels, and (with
    labels) ``{v}_right``, the share of ``domain`` it labels rightly (``right / given`` is the
    precision). For reports on a labelled target TEST split only: nothing here reaches training.
    """
    X = torch.as_tensor(np.asarray(domain.X)).to(device)
    conf, pred = zip(*(method.labels(X[i:i + 1024]) for i in range(0, len(X), 1024)))
    c, p = torch.cat(conf, 1), torch.cat(pred, 1)
    mask = method.selected(c, p).cpu()
    out: dict[str, float] = {}
    for v in VIEW_MODES[method.view]:
        name = "ab"[v]
        out[f"{name}_given"] = float(mask[v].float().mean())
        if domain.y is not None:
            out[f"{name}_right"] = float(((p[v].cpu() == torch.as_tensor(domain.y)) & mask[v]).float().mean())
    return out


def pseudo_label_monitor(method: CoTraining, target_test: Domain) -> Callable[[nn.Module], dict[str, float]]:
    """A :data:`qianyi.train.engine.Monitor` for runs marked as evaluations: each epoch, what the rule
    would label on the labelled target TEST split and how much of it is right, under ``oracle_`` keys
    (shown as ORACLE, never read by training or selection)."""
    if target_test.y is None:
        raise DataError(f"pseudo_label_monitor needs a labelled target test split; {target_test.name!r} has no labels")

    def monitor(net: nn.Module) -> dict[str, float]:
        device = next(net.parameters()).device
        return {f"oracle_{k}": v for k, v in pseudo_label_audit(method, target_test, device).items()}
    return monitor

"""Self-training on the unlabelled target: class-balanced pseudo-labels (CBST, Zou et al. ECCV 2018) and
weak/strong consistency with relative thresholds and distribution alignment (AdaMatch, Berthelot et al.
ICLR 2022). Both can add the loss terms of an alignment method (``align="dann"``, ...)."""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nn import Backbone, LayerOutputs
from ..nn.augment import strong_view, weak_view
from ..nn.inference import evaluating
from .base import Batch, Method, StepContext
from .registry import available_methods, get_method, register


def class_balanced_thresholds(confidence: torch.Tensor, predicted: torch.Tensor, n_classes: int,
                              portion: float) -> torch.Tensor:
    r"""Per-class confidence thresholds that keep the most confident ``portion`` of the samples predicted
    as each class (CBST's :math:`\exp(-k_c)`, Zou et al. 2018, Algorithm 2): :math:`t_c` = the
    :math:`(1 - \text{portion})`-quantile of the confidences of the samples predicted as :math:`c`;
    a class nobody predicts gets threshold 1 (nothing selected).

    ``confidence`` (n,) max class probabilities, ``predicted`` (n,) their classes. Returns (n_classes,).
    """
    out = torch.ones(n_classes, dtype=confidence.dtype, device=confidence.device)
    for c in range(n_classes):
        conf = confidence[predicted == c]
        if len(conf):
            out[c] = torch.quantile(conf, 1.0 - portion, interpolation="higher")
    return out


def class_balanced_labels(p: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""CBST's pseudo-labels (Zou et al. 2018, eq. 6; the authors' ``label_selection``): the class whose probability
    clears its own threshold by the widest ratio, :math:`\hat y = \arg\max_c p_c / t_c`, kept when that ratio is
    at least 1. ``p`` (n, C) class probabilities, ``thresholds`` (C,). Returns (labels (n,), kept (n,) bool)."""
    ratio, label = (p / thresholds.clamp_min(1e-12)[None]).max(1)
    return label, ratio >= 1


@contextlib.contextmanager
def batch_norm_statistics_kept(model: torch.nn.Module) -> Iterator[None]:
    """Within: a training-mode forward pass normalises with its batch's statistics but leaves the batch-norm
    running statistics as they were (momentum 0), as AdaMatch's authors restore them after the source-only pass."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def check_pretrain(method: str, pretrain: str) -> str:
    """``pretrain`` of a method that starts from a trained model (``needs_source_model``): the method that
    trains that model, one that learns from the labelled source (and the unlabelled target)."""
    first = available_methods().get(pretrain)
    why = ""  # (the general rule; the reason when it is a method that leaves nothing to start from)
    if first is not None and (not first.trains_classifier or getattr(first, "shallow", False)):
        why = f" ({pretrain} trains no network classifier to start from)"
    elif first is not None and not first.saves_backbone:
        why = f" ({pretrain} saves no network of the backbone's to start from)"
    if first is None or first.uses_target_labels or getattr(first, "needs_source_model", False) or why:
        raise ConfigError(f"{method}: pretrain must be a method that trains a network classifier from the labelled "
                          f"source (and the unlabelled target): source-only, dann, dan, cdan, ...; got {pretrain!r}{why}")
    return pretrain


class MemoryBuffers(Method):
    """A method whose buffers named in ``memory_buffers`` grow while training (a memory of recent target
    predictions): loading a checkpoint takes each saved buffer's shape."""

    memory_buffers: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        for k in self.memory_buffers:
            if prefix + k in state_dict:
                # the saved shape, on the device this method lives on (checkpoints load on the CPU)
                setattr(self, k, torch.empty_like(state_dict[prefix + k], device=getattr(self, k).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def growing_portion(progress: float, warmup: float, start: float, end: float) -> float:
    """The share of each predicted class to pseudo-label: ``start`` at the end of the warm-up, growing
    linearly to ``end`` at the end of training."""
    q = (progress - warmup) / max(1e-12, 1 - warmup)
    return start + (end - start) * min(1.0, max(0.0, q))


class _Aligned(MemoryBuffers):
    """Shared part: an optional alignment method whose non-``cls`` terms are added to the step's loss."""

    align: str

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        self.aligner: Method | None = None
        if self.align != "none":
            aligner = get_method(self.align)
            if type(aligner).training_step is not Method.training_step or aligner.uses_target_labels:
                raise ConfigError(f"{self.name}: align must be a method defined by its loss terms (dann, cdan, dan, "
                                  f"jan, coral, dsan, ddc, mdd, ...), got {self.align!r}")
            aligner.setup(backbone, sample_batch)
            self.aligner = aligner

    def alignment(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.aligner is None:
            return {}
        terms = {k: v for k, v in self.aligner.loss(batch).items() if k != "cls"}
        self.record(**self.aligner.__dict__.pop("_recorded", {}))
        return terms


@register
class CBST(_Aligned):
    r"""CBST: class-balanced self-training; the most confident share of each predicted class becomes labels.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_i \ell\big(F(x^s_i), y^s_i\big)
            + \lambda_p\,\frac{1}{n_t}\sum_j \mathbb{1}\big[\max_c p_{jc} / t_c \ge 1\big]\,
              \ell\big(F(x^t_j), \hat y_j\big),
        \qquad \hat y_j = \arg\max_c p_{jc} / t_c

    with :math:`p_j` the network's class probabilities on the clean target sample :math:`j`, in eval mode
    and without gradient (the authors' labelling pass; the student then learns the label on the view) and
    :math:`t_c` the class-balanced threshold (:func:`class_balanced_thresholds`): among the recent
    target samples predicted as :math:`c`, the top ``portion`` by confidence are kept, so a class that
    is hard in the target still gets pseudo-labels instead of being swamped by easy classes. The label is
    the class whose probability clears its own threshold by the widest ratio (the paper's eq. 6 and the
    authors' ``label_selection``): a sample whose top class has a high threshold but whose second class clears
    its lower one is labelled with that second class. The
    portion grows linearly from ``start`` to ``end`` (the paper: 20% then +5% per round up to 50%);
    self-training starts after ``warmup`` of the training (source only before, the paper's source
    model), and its weight ramps as :math:`\lambda_p = \lambda\,(2/(1+e^{-10 q}) - 1)`, :math:`q` the
    progress since then. ``augment``: the student sees the target batch as a weak random view.

    Departure: the paper relabels the whole target set between rounds of retraining; here the
    thresholds are quantiles over a memory of the last ``memory`` target batches' predictions, updated
    every step (online rounds on the engine's batches; the memory is checkpointed). ``align`` adds the
    terms of an alignment method (e.g. ``dann``: DANN features + pseudo-labels). Logged: the share of
    the target batch that got a pseudo-label (``pseudo_share``) and the mean threshold.

    Paper: Yang Zou, Zhiding Yu, B. V. K. Vijaya Kumar, Jinsong Wang. "Unsupervised Domain Adaptation
    for Semantic Segmentation via Class-Balanced Self-Training". ECCV 2018.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("cbst", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=4))  # doctest: +SKIP
    """

    name = "cbst"
    revision = 2  # 2026-12-04: labels, thresholds and memory from the clean batch in eval mode (were: the view)
    memory_buffers = ("_conf", "_pred")
    grid = ({}, {"align": "dann"}, {"end": 0.8}, {"trade_off": 0.3})
    bounds = {"start": (0.0, 1.0), "end": (0.0, 1.0), "warmup": (0.0, 0.95), "memory": (1, 1 << 20)}

    def __init__(self, trade_off: float = 1.0, start: float = 0.2, end: float = 0.5, warmup: float = 0.25,
                 memory: int = 20, augment: bool = True, align: str = "none") -> None:
        super().__init__()
        self.trade_off, self.start, self.end, self.warmup = trade_off, start, end, warmup
        self.memory, self.augment, self.align = memory, augment, align

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        super().setup(backbone, sample_batch)
        self.n_classes = sample_batch.logits.shape[1]
        self.register_buffer("_conf", torch.zeros(0))
        self.register_buffer("_pred", torch.zeros(0, dtype=torch.long))

    def portion(self, progress: float) -> float:
        return growing_portion(progress, self.warmup, self.start, self.end)

    def training_step(self, ctx: StepContext) -> None:
        xs, xt = ctx.source_inputs, ctx.target_inputs
        assert xs is not None and xt is not None
        view = weak_view(xt, kind=self.input_kind) if self.augment else xt
        source, target = ctx.forward(xs, view)
        batch = ctx.batch(source, target)
        terms = {"cls": self.source_ce(batch), **self.alignment(batch)}
        with torch.no_grad(), evaluating(ctx.model):  # the labelling pass: clean inputs, eval mode
            p = ctx.model(xt).logits.float().softmax(1)
            conf, pred = p.max(1)
            keep = self.memory * len(xt)
            self._conf = torch.cat([self._conf, conf])[-keep:]
            self._pred = torch.cat([self._pred, pred])[-keep:]
        if ctx.progress >= self.warmup:
            thresholds = class_balanced_thresholds(self._conf, self._pred, self.n_classes, self.portion(ctx.progress))
            label, mask = class_balanced_labels(p, thresholds)
            mask = mask.float()
            q = (ctx.progress - self.warmup) / max(1e-12, 1 - self.warmup)
            weight = self.trade_off * (2.0 / (1.0 + math.exp(-10 * q)) - 1.0)
            ce = F.cross_entropy(target.logits, label, reduction="none")
            terms["pseudo"] = weight * (mask * ce).mean()
            ctx.log(pseudo_share=float(mask.mean()), threshold=float(thresholds[thresholds < 1].mean())
                    if bool((thresholds < 1).any()) else 1.0, pseudo_classes=float((thresholds < 1).float().mean()))
        ctx.update(terms)
        ctx.log(**self.__dict__.pop("_recorded", {}))


@register
class AdaMatch(_Aligned):
    r"""AdaMatch: pseudo-labels from weak target views train strong views, with a relative threshold and
    distribution alignment.

    Each step sees weak and strong views :math:`x^w, x^{st}` of the source and target batches.

    .. math::
        \mathcal{L} = \tfrac12\big[\ell(z^{s,w}, y^s) + \ell(z^{s,st}, y^s)\big]
            + \mu(p)\,\frac{1}{n_t}\sum_j \mathbb{1}\big[\max_c \tilde p_{jc} \ge c_\tau\big]\,
              \ell\big(z^{t,st}_j, \arg\max_c \tilde p_{jc}\big)

    * **random logit interpolation**: the source logits are :math:`z^s = \lambda z^s_{joint} +
      (1-\lambda) z^s_{alone}` with :math:`\lambda \sim U(0,1)` per entry, from one forward pass of
      source and target together and one of the source alone (batch norm sees both statistics; only the
      joint pass updates its running statistics, as the authors restore them after the source-only pass);
    * **distribution alignment**: :math:`\tilde p_j = \mathrm{normalise}(p_j \cdot \bar p^s / \bar p^t)`,
      :math:`p_j = \mathrm{softmax}(z^{t,w}_j)`, :math:`\bar p^s, \bar p^t` the batch means of the
      weak source and target predictions;
    * **relative confidence threshold**: :math:`c_\tau = \tau \cdot \frac{1}{n_s}\sum_i \max_c
      \mathrm{softmax}(z^{s,w}_i)_c`, :math:`\tau` = ``threshold`` (0.9, the paper's);
    * :math:`\mu(p) = \mu_{max}\,(\tfrac12 - \tfrac12\cos(\min(\pi, 2\pi p)))` (the paper's warm-up to
      its maximum at half of training), :math:`\mu_{max}` = ``trade_off`` (1, the paper's).

    Pseudo-labels carry no gradient. Departures from the authors' code: augmentations are tensor-level
    (:func:`qianyi.nn.augment.weak_view`, :func:`~qianyi.nn.augment.strong_view`: affine, colour jitter,
    cutout, noise) instead of RandAugment on PIL images; the target batch is as large as the source
    batch (theirs: 3 times); the alignment divides by this batch's means (theirs: running averages of
    them); the live network predicts (theirs: an EMA copy of the weights). ``align`` adds an alignment method's terms on the weak views.
    Logged: ``pseudo_share`` (target samples above the threshold) and ``threshold``.

    Paper: David Berthelot, Rebecca Roelofs, Kihyuk Sohn, Nicholas Carlini, Alex Kurakin. "AdaMatch: A
    Unified Approach to Semi-Supervised Learning and Domain Adaptation". ICLR 2022 (after FixMatch,
    Sohn et al., NeurIPS 2020).

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("adamatch", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=4))  # doctest: +SKIP
    """

    name = "adamatch"
    gate_logs = ("pseudo_share",)
    grid = ({}, {"align": "dann"}, {"threshold": 0.8}, {"trade_off": 3.0})
    bounds = {"threshold": (0.0, 1.0)}

    def __init__(self, trade_off: float = 1.0, threshold: float = 0.9, align: str = "none") -> None:
        super().__init__()
        self.trade_off, self.threshold, self.align = trade_off, threshold, align

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xs is not None and ys is not None and xt is not None
        ns, nt = len(xs), len(xt)
        k = self.input_kind
        xs_w, xs_st, xt_w, xt_st = (weak_view(xs, kind=k), strong_view(xs, kind=k), weak_view(xt, kind=k),
                                    strong_view(xt, kind=k))
        (joint,) = ctx.forward(torch.cat([xs_w, xs_st, xt_w, xt_st]))
        with batch_norm_statistics_kept(ctx.model):  # as the authors' code: only the joint pass moves them
            (alone,) = ctx.forward(torch.cat([xs_w, xs_st]))
        z_joint = joint.logits
        lam = torch.rand_like(alone.logits)
        z_s = lam * z_joint[:2 * ns] + (1 - lam) * alone.logits
        zs_w, zs_st = z_s[:ns], z_s[ns:]
        zt_w, zt_st = z_joint[2 * ns:2 * ns + nt], z_joint[2 * ns + nt:]
        terms = {"cls": 0.5 * (F.cross_entropy(zs_w, ys) + F.cross_entropy(zs_st, ys))}
        if self.aligner is not None:
            src_w, rest = joint.split(ns)
            _, rest = rest.split(ns)
            tgt_w, _ = rest.split(nt)
            terms.update(self.alignment(Batch(src_w, tgt_w, ys, None, ctx.progress, xs_w, xt_w, ctx.step)))
        with torch.no_grad():
            ps, pt = zs_w.float().softmax(1), zt_w.float().softmax(1)
            aligned = pt * (ps.mean(0) / pt.mean(0).clamp_min(1e-12))
            aligned = aligned / aligned.sum(1, keepdim=True)
            conf, pseudo = aligned.max(1)
            c_tau = self.threshold * ps.max(1).values.mean()
            mask = (conf >= c_tau).float()
        mu = self.trade_off * (0.5 - 0.5 * math.cos(min(math.pi, 2 * math.pi * ctx.progress)))
        terms["pseudo"] = mu * (mask * F.cross_entropy(zt_st, pseudo, reduction="none")).mean()
        ctx.update(terms)
        ctx.log(pseudo_share=float(mask.mean()), threshold=float(c_tau), **self.__dict__.pop("_recorded", {}))


@register
class SelfTrain(MemoryBuffers):
    r"""Self-training from a fixed teacher: the network a stage starts from labels the target; a student fits those labels.

    .. math::
        \mathcal{L} = \frac{1}{\sum_j \mathbb{1}[c_j \ge t]}\sum_j \mathbb{1}\big[c_j \ge t\big]\,
            \ell\big(F_\theta(a(x^t_j)), \hat y_j\big) + \beta\,\frac{1}{n_s}\sum_i \ell\big(F_\theta(x^s_i), y^s_i\big),
        \qquad \hat y_j = \arg\max_c F_{\theta_0}(x^t_j)_c,\ c_j = \max_c \mathrm{softmax}(F_{\theta_0}(x^t_j))_c

    (the mean over the kept target samples: the student fits the kept set, as Kumar et al. do).
    :math:`\theta_0` is the network the run starts from (its ``--init-from`` model; ``qianyi run``
    trains a source-only model first when none is given), frozen as the teacher (eval mode);
    :math:`\theta` starts from it. Labels are hard (label sharpening) and the least confident
    ``1 - keep`` of the target are dropped (:math:`t` = the (1 − keep)-quantile of the teacher's
    confidence over a memory of recent batches); :math:`a` is a weak random view when ``augment``, a
    strong one (:func:`~qianyi.nn.augment.strong_view`) when ``noisy`` — the noised student of Noisy
    Student (Xie, Luong, Hovy, Le, CVPR 2020: the teacher labels clean inputs, the student learns them
    through heavy augmentation, so that it can come to do better than its teacher);
    :math:`\beta` = ``source_weight`` (0: the target alone, as in gradual self-training). ``pretrain``: the
    method that trains the starting model when there is no ``--init-from`` (``source-only``, the paper's;
    or an alignment method, e.g. ``dann``: self-training then distils an adapted model's confident labels,
    a common two-stage recipe). Run through
    intermediate domains with ``--via`` (:mod:`qianyi.train.transitive`), each stage's teacher is the
    previous stage's model: gradual self-training. ``iterations`` > 1 repeats the last stage on the
    target, each student the next round's teacher (iterated self-training, as Noisy Student iterates):
    stages ``target-1`` ... then the run's folder itself.

    Paper: Ananya Kumar, Tengyu Ma, Percy Liang. "Understanding Self-Training for Gradual Domain
    Adaptation". ICML 2020 (hard pseudo-labels, the 10% least confident dropped, regularised student).

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("self-train", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=4))  # doctest: +SKIP
    """

    name = "self-train"
    added_hparams = {"pretrain": "source-only", "noisy": False, "iterations": 1}
    memory_buffers = ("_conf",)
    #: ``qianyi run`` trains a source model first when no --init-from is given (the teacher must know the task).
    needs_source_model = True
    grid = ({}, {"keep": 0.5}, {"source_weight": 1.0}, {"pretrain": "dann"}, {"noisy": True})
    bounds = {"keep": (0.01, 1.0), "memory": (1, 1 << 20)}  # (memory 0: x[-0:] kept every batch, unbounded)

    def __init__(self, keep: float = 0.9, source_weight: float = 0.0, augment: bool = True, memory: int = 20,
                 pretrain: str = "source-only", noisy: bool = False, iterations: int = 1) -> None:
        super().__init__()
        if int(iterations) != iterations or iterations < 1:
            raise ConfigError(f"self-train: iterations (teacher -> student rounds on the target) must be a whole number "
                              f">= 1, got {iterations!r}")
        self.iterations = int(iterations)
        self.keep, self.source_weight, self.augment, self.memory = keep, source_weight, augment, memory
        self.pretrain, self.noisy = check_pretrain(self.name, pretrain), noisy

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        import copy

        self.teacher = copy.deepcopy(backbone).requires_grad_(False)
        self.register_buffer("_conf", torch.zeros(0))

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xt is not None
        with torch.no_grad():
            self.teacher.eval()
            p = self.teacher(xt).logits.float().softmax(1)
            conf, pseudo = p.max(1)
            self._conf = torch.cat([self._conf, conf])[-self.memory * len(xt):]
            t = torch.quantile(self._conf, 1.0 - self.keep) if self.keep < 1 else self._conf.min()
            mask = (conf >= t).float()
        view = (strong_view(xt, kind=self.input_kind) if self.noisy else weak_view(xt, kind=self.input_kind)
                if self.augment else xt)
        terms: dict[str, torch.Tensor] = {}
        if self.source_weight and xs is not None and ys is not None:
            source, target = ctx.forward(xs, view)
            terms["cls"] = self.source_weight * F.cross_entropy(source.logits, ys)
        else:
            (target,) = ctx.forward(view)
        terms["pseudo"] = (mask * F.cross_entropy(target.logits, pseudo, reduction="none")).sum() / mask.sum().clamp_min(1)
        ctx.update(terms)
        ctx.log(pseudo_share=float(mask.mean()), teacher_confidence=float(conf.mean()))

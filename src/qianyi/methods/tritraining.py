"""Asymmetric tri-training (Saito, Ushiku, Harada, "Asymmetric Tri-training for Unsupervised Domain
Adaptation", ICML 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnknownNameError
from ..nn import Backbone, LayerOutputs
from ..nn.augment import weak_view
from ..nn.inference import evaluating
from .base import StepContext, fresh_head, split_group
from .registry import register
from .self_training import MemoryBuffers, class_balanced_thresholds, growing_portion

#: Which network predicts after training, by the ``predict`` setting.
PREDICTORS = ("ft", "f1")


def first_linear(head: nn.Module) -> nn.Linear:
    """The first linear layer of a classifier head (where tri-training's weight constraint applies)."""
    for m in head.modules():
        if isinstance(m, nn.Linear):
            return m
    raise UnknownNameError("this classifier head has no linear layer")


def weight_overlap(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    r""":math:`|W_1^\top W_2|`, the sum of the absolute entries of the product of two classifiers' first-layer
    weights (``torch.nn.Linear.weight``, (d_out, d_in) each): small when the two read the shared features
    through different directions, so that they label the target from different viewpoints (Saito et al.
    2017, eq. 2)."""
    return (w1 @ w2.T).abs().sum()


@register
class AsymmetricTriTraining(MemoryBuffers):
    r"""ATT: two classifiers label the target where they agree and are confident; a third learns the target from them.

    A shared network :math:`F` (the backbone's groups up to ``split``) feeds three classifiers: :math:`F_1`
    (the backbone's groups above ``split``), :math:`F_2` (a freshly initialised copy) label the target;
    :math:`F_t` (another fresh copy) is trained on those labels only and predicts. Each step:

    .. math::
        \mathcal{L} = \sum_{j=1,2}\Big[\frac{1}{n_s}\sum_i \ell(F_j(F(x^s_i)), y^s_i)
            + \frac{1}{|T|}\sum_{x \in T} \ell(F_j(F(x)), \hat y)\Big]
            + \lambda\,|W_1^\top W_2| + \frac{1}{|T|}\sum_{x \in T} \ell(F_t(F(x)), \hat y)

    with :math:`T` the target samples of the batch where :math:`F_1` and :math:`F_2` predict the same
    class :math:`\hat y`, at least one of them gives it probability :math:`c` above ``threshold``, and
    :math:`c` is among the most confident ``portion`` of such candidates predicted as :math:`\hat y`
    (CBST's class-balanced quota, :func:`~qianyi.methods.self_training.class_balanced_thresholds`, over a
    memory of the last ``memory`` target batches; the portion grows linearly from ``start`` to ``end``
    after the warm-up). The labels are decided in eval mode on the clean inputs and learned on them (or on
    a weak random view with ``augment``; the paper does not augment);
    :math:`W_1, W_2` the first-layer weights of :math:`F_1, F_2` (:func:`weight_overlap`), :math:`\lambda`
    = ``trade_off``. Before ``warmup`` (a share of training) no label is given: :math:`F`, :math:`F_1`,
    :math:`F_2` and :math:`F_t` all fit the source, the paper's pre-training. ``predict``: ``ft`` (the
    target-specific network) or ``f1``.

    Departures: labels are decided batch by batch from the current networks, and the growing quota
    stands for the paper's growing number of labelled candidates (:math:`N_t = k/20 \cdot n` at epoch
    :math:`k`, after :math:`N_{init}` ≈ 10% of the target); it is class-balanced, which the paper's is
    not (without a quota, the two labelling networks agreed with confidence on 85% of MNIST-M at the
    first labelling step and the target collapsed onto one class); the three losses are one update (the
    paper alternates mini-batches of :math:`S \cup T_l` for :math:`F, F_1, F_2` and of :math:`T_l` for
    :math:`F, F_t`). Defaults: :math:`\lambda` = 0.01 as in the paper; ``threshold`` 0.9; warm-up 0.25,
    ``start`` 0.2 and ``end`` 0.5 as ``cotrain``'s and ``cbst``'s.

    Inputs: source and target mini-batches (n, ...), source labels (n,); the classifiers read the output
    of layer group ``split``, by default the group below the bottleneck (``fc1`` of :func:`qianyi.nn.lenet`:
    (n, 256); ``pool`` of a ResNet; ``E`` of the text networks).

    Paper: Kuniaki Saito, Yoshitaka Ushiku, Tatsuya Harada. "Asymmetric Tri-training for Unsupervised
    Domain Adaptation". ICML 2017 (MNIST -> MNIST-M 94.0 with their network, 59.1 source-only).

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("att", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=4))  # doctest: +SKIP
    """

    name = "att"
    gate_logs = ("labelled_share",)
    memory_buffers = ("_conf", "_pred")
    grid = ({}, {"threshold": 0.95}, {"end": 1.0})
    bounds = {"threshold": (0.0, 1.0), "warmup": (0.0, 0.95), "start": (0.0, 1.0), "end": (0.0, 1.0),
              "memory": (1, 1 << 20)}

    def __init__(self, trade_off: float = 0.01, threshold: float = 0.9, warmup: float = 0.25, start: float = 0.2,
                 end: float = 0.5, memory: int = 20, split: str | None = None, augment: bool = False,
                 predict: str = "ft") -> None:
        super().__init__()
        if predict not in PREDICTORS:
            raise UnknownNameError(f"att: predict must be one of {', '.join(PREDICTORS)}, got {predict!r}")
        self.trade_off, self.threshold, self.warmup, self.split = trade_off, threshold, warmup, split
        self.start, self.end, self.memory = start, end, memory
        self.augment, self.predict = augment, predict

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        names = backbone.group_names
        self._split = split_group(backbone, self.split, "att")  # (self.split stays as asked: the run's record)
        self._above = names[names.index(self._split) + 1:]
        self.f2 = fresh_head(backbone, self._split)
        self.ft = fresh_head(backbone, self._split)
        self.n_classes = int(sample_batch.logits.shape[1])
        self.register_buffer("_conf", torch.zeros(0))  # the recent candidates' confidences and classes
        self.register_buffer("_pred", torch.zeros(0, dtype=torch.long))

    def _f1(self, backbone: Backbone) -> nn.Module:
        return nn.Sequential(*[backbone.groups[n] for n in self._above])

    def inference_model(self, backbone: Backbone) -> nn.Module:
        """``predict=ft``: the backbone with :math:`F_t` in place of its own classifier (a plain
        :class:`Backbone`, same layer names, so a saved model loads as any other); ``f1``: the backbone."""
        if self.predict == "f1":
            return backbone
        lower = [(n, backbone.groups[n]) for n in backbone.group_names[:len(backbone.group_names) - len(self._above)]]
        return Backbone(lower + list(zip(self._above, self.ft)), backbone.feature_layer)

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xs is not None and ys is not None and xt is not None
        f1 = self._f1(ctx.model)
        overlap = self.trade_off * weight_overlap(first_linear(f1).weight, first_linear(self.f2).weight)
        if ctx.progress < self.warmup:  # pre-training: every classifier fits the source
            (source,) = ctx.forward(xs)
            h = source[self._split]
            ctx.update({"cls": F.cross_entropy(source.logits, ys) + F.cross_entropy(self.f2(h), ys)
                        + F.cross_entropy(self.ft(h), ys), "overlap": overlap})
            return
        with torch.no_grad():  # labels from F1 and F2 on the clean target batch, in eval mode
            with evaluating(ctx.model, self.f2):
                h = ctx.model(xt)[self._split]
                p1, p2 = f1(h).float().softmax(1), self.f2(h).float().softmax(1)
            c1, y1 = p1.max(1)
            c2, y2 = p2.max(1)
            conf = torch.maximum(c1, c2)
            candidate = (y1 == y2) & (conf > self.threshold)
            keep = self.memory * len(xt)
            self._conf = torch.cat([self._conf, conf[candidate]])[-keep:]
            self._pred = torch.cat([self._pred, y1[candidate]])[-keep:]
            portion = growing_portion(ctx.progress, self.warmup, self.start, self.end)
            quota = class_balanced_thresholds(self._conf, self._pred, self.n_classes, portion)
            mask = (candidate & (conf >= quota[y1])).float()
        view = weak_view(xt, kind=self.input_kind) if self.augment else xt
        source, target = ctx.forward(xs, view)
        hs, ht = source[self._split], target[self._split]
        n = mask.sum().clamp_min(1)

        def pseudo(logits: torch.Tensor) -> torch.Tensor:
            return (mask * F.cross_entropy(logits, y1, reduction="none")).sum() / n

        ctx.update({"cls": F.cross_entropy(source.logits, ys) + F.cross_entropy(self.f2(hs), ys),
                    "pseudo": pseudo(target.logits) + pseudo(self.f2(ht)), "target_net": pseudo(self.ft(ht)),
                    "overlap": overlap})
        ctx.log(labelled_share=float(mask.mean()), candidates=float(candidate.float().mean()),
                agree=float((y1 == y2).float().mean()))

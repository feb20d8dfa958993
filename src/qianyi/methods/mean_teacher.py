"""Self-ensembling / mean teacher for domain adaptation (French, Mackiewicz, Fisher, "Self-ensembling
for visual domain adaptation", ICLR 2018; after Tarvainen & Valpola, NeurIPS 2017)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..nn import Backbone, LayerOutputs
from ..nn.augment import weak_view
from ..nn.layers import ema_update_
from .base import Method, StepContext, frozen_groups, train_but_frozen
from .registry import register


def self_ensembling_terms(p_student: torch.Tensor, p_teacher: torch.Tensor,
                          threshold: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    r"""``(consistency, balance, confident share)`` of self-ensembling on one target batch of class
    probabilities ``(n, K)``: :math:`\frac{1}{n}\sum_j m_j \frac{1}{K}\lVert p^S_j - p^T_j\rVert^2` and
    :math:`\bar m \sum_k \mathrm{BCE}(\bar p^S_k, 1/K)`, :math:`m_j = [\max_k p^T_{jk} > \tau]`, with the
    authors' normalisations (see :class:`MeanTeacher`)."""
    mask = (p_teacher.max(1).values > threshold).float()
    consistency = (mask * ((p_student - p_teacher) ** 2).mean(1)).mean()
    mean_p = p_student.float().mean(0)
    with torch.autocast(mean_p.device.type, enabled=False):  # binary_cross_entropy refuses CUDA autocast
        balance = F.binary_cross_entropy(mean_p, torch.full_like(mean_p, 1.0 / len(mean_p)), reduction="sum")
    return consistency, balance * mask.mean(), float(mask.mean())


@register
class MeanTeacher(Method):
    r"""Mean teacher: a student fits the source and agrees with an EMA teacher on confident target samples.

    .. math::

        L = \frac{1}{n_s}\sum_i \ell(f_S(a(x^s_i)), y^s_i)
            + \gamma\Big[\frac{1}{n_t}\sum_j m_j \,\frac{1}{K}\big\|f_S(a(x^t_j)) - f_T(a'(x^t_j))\big\|^2
            + \beta\, \bar m\, L_{bal}\Big],
        \qquad \theta_T \leftarrow \alpha\,\theta_T + (1-\alpha)\,\theta_S

    :math:`f_S, f_T` are the student's and teacher's softmax outputs, :math:`a, a'` independent random
    views (translation, intensity jitter, Gaussian noise; :func:`qianyi.nn.augment.weak_view`),
    :math:`m_j = [\max_k f_T(a'(x^t_j))_k > \tau]` the confidence mask, and
    :math:`\bar m = \frac{1}{n_t}\sum_j m_j` the share of confident samples and
    :math:`L_{bal} = \sum_k \mathrm{BCE}(\bar p_k, 1/K)` the class-balance loss on the mean student
    prediction :math:`\bar p` over the target batch. The normalisations are the authors' code's (the
    squared difference averaged over the K classes; the balance summed over classes and scaled by
    :math:`\bar m`), so that their weights mean here what they meant there. :math:`\gamma` = ``trade_off``,
    :math:`\beta` = ``balance``, :math:`\tau` = ``threshold`` (0.968, the paper's), :math:`\alpha` =
    ``decay`` (0.99, the paper's); :math:`\gamma` = 3 and :math:`\beta` = 0.005 are the authors' code's defaults. As in the paper, the student sees source and target in separate
    batches (batch norm normalises each domain with its own statistics) and the teacher's batch-norm
    statistics come from its own passes over target batches; only weights are averaged. The teacher
    is the model that predicts.

    Inputs: source and target mini-batches (n, ...), source labels (n,).

    Paper: G. French, M. Mackiewicz, M. Fisher, "Self-ensembling for visual domain adaptation",
    ICLR 2018; A. Tarvainen, H. Valpola, "Mean teachers are better role models", NeurIPS 2017.

    Example (the teacher that predicts is an average over the last few hundred steps, decay 0.99: a run of
    two epochs, 26 steps here, predicts with a teacher still mostly its random start)::

        >>> import qianyi
        >>> result, fit = qianyi.run("mean-teacher", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=10))  # doctest: +SKIP
    """

    name = "mean-teacher"
    gate_logs = ("confident",)
    revision = 2  # 2026-12-03: the authors' normalisations of the consistency and class-balance terms
    grid = ({"trade_off": 3.0}, {"trade_off": 1.0}, {"trade_off": 10.0}, {"trade_off": 3.0, "threshold": 0.9})

    def __init__(self, trade_off: float = 3.0, threshold: float = 0.968, decay: float = 0.99,
                 balance: float = 0.005, augment: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise DataError(f"mean-teacher: decay must be in [0, 1), got {decay}")
        if not 0.0 <= threshold < 1.0:
            raise DataError(f"mean-teacher: threshold is a probability in [0, 1), got {threshold}")
        self.trade_off, self.threshold, self.decay, self.balance = trade_off, threshold, decay, balance
        self.augment = augment

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        self.teacher = copy.deepcopy(backbone)
        self._frozen = frozen_groups(backbone)  # (before the teacher's own weights stop training)
        self.teacher.requires_grad_(False)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return weak_view(x, kind=self.input_kind) if self.augment else x

    def training_step(self, ctx: StepContext) -> None:
        xs, xt = ctx.source_inputs, ctx.target_inputs
        assert xs is not None and xt is not None
        # separate passes: batch norm normalises each domain with its own statistics (the paper's two paths)
        (source,), (target,) = ctx.forward(self.view(xs)), ctx.forward(self.view(xt))
        with torch.no_grad():  # the teacher's batch-norm statistics come from target batches only
            train_but_frozen(self.teacher, self._frozen)  # groups --freeze froze keep their statistics
            p_teacher = self.teacher(self.view(xt)).logits.softmax(1)
        consistency, balance, confident = self_ensembling_terms(target.logits.softmax(1), p_teacher, self.threshold)
        ctx.update({"cls": self.source_ce(ctx.batch(source, target)),
                    "consistency": self.trade_off * consistency, "balance": self.trade_off * self.balance * balance})
        ctx.log(confident=confident)
        ema_update_(self.teacher, ctx.model, self.decay)

    def inference_model(self, backbone: Backbone) -> nn.Module:
        return self.teacher

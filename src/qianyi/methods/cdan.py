"""CDAN and CDAN+E: Conditional Domain Adversarial Networks (Long, Cao, Wang, Jordan, "Conditional
Adversarial Domain Adaptation", NeurIPS 2018)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nn import Backbone, DomainDiscriminator, LayerOutputs, grad_reverse
from ..schedules import adaptation_ramp
from .base import Batch, Method
from .registry import register


def multilinear_map(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    r"""The multilinear map :math:`T_\otimes(f, g) = f \otimes g`, the outer product of each row of
    ``f`` (n, d) with the same row of ``g`` (n, C), flattened to (n, d * C): entry ``[i, a * C + b]``
    is ``f[i, a] * g[i, b]`` (Long et al. 2018, eq. 4)."""
    return torch.bmm(f.unsqueeze(2), g.unsqueeze(1)).reshape(len(f), -1)


class RandomizedMultilinearMap(nn.Module):
    r"""The randomised multilinear map :math:`T_\odot(f, g) = \frac{1}{\sqrt{d}} (R_f f) \odot (R_g g)`
    (Long et al. 2018, eq. 5): :math:`R_f` (d x d_f) and :math:`R_g` (d x C) are drawn once from a
    standard Gaussian and never trained; its inner products approximate those of :math:`f \otimes g`
    in expectation. ``(n, d_f), (n, C) -> (n, d)``."""

    def __init__(self, d_f: int, n_classes: int, dim: int = 1024) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("R_f", torch.randn(dim, d_f))
        self.register_buffer("R_g", torch.randn(dim, n_classes))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (f @ self.R_f.T) * (g @ self.R_g.T) / math.sqrt(self.dim)


def prediction_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of class probabilities ``p`` (n, C), in nats."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(1)


@register
class CDAN(Method):
    r"""CDAN: a domain discriminator on the multilinear map of features and class predictions.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(x_i^s), y_i^s\big) + \mathcal{L}_d,
        \qquad
        \mathcal{L}_d = -\frac{1}{\sum_k w_k}\Big[\sum_{i=1}^{n_s} w_i \log \sigma\big(D(R(h_i^s))\big)
            + \sum_{j=1}^{n_t} w_j \log\big(1 - \sigma(D(R(h_j^t)))\big)\Big],
        \qquad h = T(f, g)

    :math:`f` = ``features`` (the bottleneck), :math:`g = \mathrm{softmax}(F(x))` the class
    prediction, :math:`T` the multilinear map :math:`f \otimes g` (flattened outer product,
    :func:`multilinear_map`) or, when :math:`d_f \cdot C` > ``max_dim``, the randomised map
    :math:`\frac{1}{\sqrt{d}}(R_f f)\odot(R_g g)` with :math:`d` = ``random_dim``
    (:class:`RandomizedMultilinearMap`). :math:`D` is a domain discriminator (MLP, source = 1, target
    = 0), :math:`R` gradient reversal with coefficient :math:`\lambda_p = \lambda(2/(1+e^{-10p}) - 1)`
    (:math:`\lambda` = ``trade_off``, :math:`p` the fraction of training done), as in DANN. CDAN
    weighs every sample alike (:math:`w = 1`); ``entropy=True`` (registered as ``cdan+e``) is
    entropy conditioning: :math:`w = 1 + e^{-H(g)}`, normalised to sum to one within the source and
    within the target batch, so confident predictions (easy to transfer) count more.

    As in the authors' code, :math:`g` enters the map without a gradient (the classifier is trained
    by the source loss; the features by the reversed discriminator gradient). :math:`\lambda` scales the
    reversed gradient only, as the paper writes the game (:math:`\min_D \mathcal{L}_d`,
    :math:`\min_F \ell - \lambda \mathcal{L}_d`); the authors' code multiplies the whole transfer loss by
    :math:`\lambda`, which scales the discriminator's own step too. More details of the
    authors' code are settings:

    * ``entropy_grad`` (CDAN+E only): the entropy weights are not constants; a gradient flows back
      through :math:`H(g)` reversed like the features' (the normalisers stay constants). Since every
      per-sample loss :math:`\ell_i` is positive, this pushes each prediction to lower entropy, with
      weight :math:`\lambda_p \ell_i e^{-H_i} / \sum w`: an entropy minimisation that favours the
      samples the discriminator cannot place. ``False`` keeps the weights constants of the step.
    * ``warmup``: the share of training that is source-only before the discriminator plays (the
      authors' digit script trains one epoch on the source first, ``start_epoch = 1``); the ramp
      :math:`\lambda_p` then runs over the rest, :math:`p' = (p - \text{warmup}) / (1 - \text{warmup})`.
    * ``ramp_steps``: the ramp counted in steps, :math:`p' = \text{step} / \text{ramp\_steps}`, whatever
      the run's length (the authors' code: 10,000 iterations); 0 keeps it over the run's progress.

    Defaults: :math:`\lambda` = 0.3 (CDAN+E: 3), chosen by ``qianyi select`` (DEV, the grid {1, 0.3, 3},
    the four bench pairs; a search prompted by the λ = 1 rows falling below DANN on target labels;
    docs/methods.md); the ramp is the paper's; ``max_dim`` 4096 and ``random_dim``
    1024 are the authors' code's, and so is the discriminator of their digit experiments: two hidden
    layers of 500 (``hidden``), ReLU and dropout 0.5 (``dropout``), no batch norm.

    Inputs: source and target ``features`` (n, d) and logits (n, C); source labels (n,); the
    training progress :math:`p`.

    Paper: Mingsheng Long, Zhangjie Cao, Jianmin Wang, Michael I. Jordan. "Conditional Adversarial
    Domain Adaptation". NeurIPS 2018.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("cdan+e", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "cdan"
    discriminator_logs = ("domain_acc",)
    grid = tuple({"trade_off": v} for v in (1.0, 0.3, 3.0))

    bounds = {"warmup": (0.0, 0.9), "dropout": (0.0, 0.9), "random_dim": (1, 1 << 16)}
    added_hparams = {"entropy_grad": False, "warmup": 0.0, "ramp_steps": 0}

    def __init__(self, trade_off: float = 0.3, entropy: bool = False, hidden: tuple[int, ...] = (500, 500),
                 dropout: float = 0.5, max_dim: int = 4096, random_dim: int = 1024, entropy_grad: bool = False,
                 warmup: float = 0.0, ramp_steps: int = 0) -> None:
        super().__init__()
        self.trade_off, self.entropy, self.hidden, self.dropout = trade_off, entropy, tuple(hidden), dropout
        self.max_dim, self.random_dim = max_dim, random_dim
        self.entropy_grad, self.warmup, self.ramp_steps = entropy_grad, warmup, ramp_steps
        self.discriminator: DomainDiscriminator | None = None
        self.random_map: RandomizedMultilinearMap | None = None

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        d_f, n_classes = sample_batch.flat("features").shape[1], sample_batch.logits.shape[1]
        if d_f * n_classes > self.max_dim:
            self.random_map = RandomizedMultilinearMap(d_f, n_classes, self.random_dim)
            d_in = self.random_dim
        else:
            d_in = d_f * n_classes
        self.discriminator = DomainDiscriminator(d_in, self.hidden, batch_norm=False, dropout=self.dropout)

    def conditioned(self, out: LayerOutputs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, g)``: the discriminator's input for a batch and its class probabilities (no gradient)."""
        f, g = out.flat("features"), out.logits.softmax(1).detach()
        return (multilinear_map(f, g) if self.random_map is None else self.random_map(f, g)), g

    def check_hparams(self) -> None:
        super().check_hparams()
        if self.entropy != (self.name == "cdan+e"):
            raise ConfigError(f"{self.name}: entropy={self.entropy} would make it {'cdan+e' if self.entropy else 'cdan'}; "
                              "run that method instead")
        if self.entropy_grad and not self.entropy:
            raise ConfigError(f"{self.name}: entropy_grad=True needs the entropy weights (use cdan+e)")
        if self.ramp_steps and self.warmup:
            raise ConfigError(f"{self.name}: ramp_steps (a ramp counted in steps) and warmup (a share of the run) "
                              "do not combine; set one of them")

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        assert batch.source is not None and batch.target is not None and self.discriminator is not None
        if batch.progress < self.warmup:  # source-only first; the discriminator waits
            return {"cls": self.source_ce(batch)}
        p = batch.step / self.ramp_steps if self.ramp_steps else (batch.progress - self.warmup) / (1.0 - self.warmup)
        coeff = self.trade_off * adaptation_ramp(p)
        (hs, gs), (ht, gt) = self.conditioned(batch.source), self.conditioned(batch.target)
        d = self.discriminator(grad_reverse(torch.cat([hs, ht]), coeff))
        domain = torch.cat([torch.ones(len(hs)), torch.zeros(len(ht))]).to(d)
        if self.entropy:
            if self.entropy_grad:  # H(g) with its gradient, reversed like the features'
                gs, gt = batch.source.logits.softmax(1), batch.target.logits.softmax(1)
            hs_, ht_ = prediction_entropy(gs), prediction_entropy(gt)
            if self.entropy_grad:
                hs_, ht_ = grad_reverse(hs_, coeff), grad_reverse(ht_, coeff)
            ws, wt = 1.0 + torch.exp(-hs_), 1.0 + torch.exp(-ht_)
            w = torch.cat([ws / ws.sum().detach(), wt / wt.sum().detach()])
            adv = (w * F.binary_cross_entropy_with_logits(d, domain, reduction="none")).sum() / w.sum().detach()
        else:
            adv = F.binary_cross_entropy_with_logits(d, domain)
        self.record(domain_acc=float(((d.detach() > 0).float() == domain).float().mean()))  # ~0.5 when aligned
        return {"cls": self.source_ce(batch), "domain": adv}


@register
class CDANE(CDAN):
    r"""CDAN+E: CDAN whose discriminator loss weighs each sample by 1 + exp(-entropy of its prediction).

    Entropy conditioning, :math:`w = 1 + e^{-H(g)}` normalised per domain (see :class:`CDAN`).
    Default :math:`\lambda` = 3, chosen by ``qianyi select cdan+e`` (DEV, the grid {1, 0.3, 3}, the
    four bench pairs; a search prompted by the λ = 1 row falling below DANN on target labels;
    docs/methods.md).

    Paper: Mingsheng Long, Zhangjie Cao, Jianmin Wang, Michael I. Jordan. "Conditional Adversarial
    Domain Adaptation". NeurIPS 2018.
    """

    name = "cdan+e"

    def __init__(self, trade_off: float = 3.0, entropy: bool = True, hidden: tuple[int, ...] = (500, 500),
                 dropout: float = 0.5, max_dim: int = 4096, random_dim: int = 1024, entropy_grad: bool = False,
                 warmup: float = 0.0, ramp_steps: int = 0) -> None:
        super().__init__(trade_off, entropy, hidden, dropout, max_dim, random_dim, entropy_grad, warmup, ramp_steps)

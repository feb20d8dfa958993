"""ADDA: Adversarial Discriminative Domain Adaptation (Tzeng, Hoffman, Saenko, Darrell, CVPR 2017)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..nn import Backbone, DomainDiscriminator, LayerOutputs
from .base import Method, ParamGroup, StepContext, frozen_groups, train_but_frozen
from .registry import register


@register
class ADDA(Method):
    r"""ADDA: an untied target encoder, started from the source encoder, learns to fool a domain discriminator.

    Two stages in one run. While the progress :math:`p` < ``pretrain``, the backbone (source encoder
    :math:`M_s` = the groups up to ``features``, classifier :math:`C` = the groups above) fits the
    source, :math:`\min_{M_s, C} \frac{1}{n_s}\sum_i \ell(C(M_s(x^s_i)), y^s_i)`. Then a target
    encoder :math:`M_t` is initialised from :math:`M_s` (its own weights, untied), :math:`M_s` and
    :math:`C` stay fixed, and each step makes two updates, the GAN game with inverted labels:

    .. math::
        \min_D\ \mathcal{L}_{adv_D} = -\frac{1}{n_s + n_t}\Big[\sum_i \log D(M_s(x^s_i))
            + \sum_j \log\big(1 - D(M_t(x^t_j))\big)\Big],
        \qquad
        \min_{M_t}\ \mathcal{L}_{adv_M} = -\frac{1}{n_t}\sum_j \log D(M_t(x^t_j))
            + \frac{\alpha}{2}\,\|\theta_{M_t} - \theta_{M_s}\|^2

    :math:`D` is an MLP on the encoder outputs (``hidden`` widths, ReLU, no batch norm; the paper's
    500-500 for digits) with a logistic output (source = 1). The target network that predicts is
    :math:`C \circ M_t`. Guards against the game's known failures: the inverted-label loss (the
    paper's; it keeps the encoder's gradient strong while :math:`D` is winning); :math:`D` skips its
    update on a batch it already separates better than ``max_d_acc`` (a discriminator that wins at
    once leaves the encoder nothing to learn from); and ``anchor`` (:math:`\alpha`, default 0: off)
    holds :math:`M_t` near :math:`M_s` against drift. Logged per epoch: ``d_loss``, ``g_loss``, the
    discriminator's accuracy ``domain_acc`` (0.5: the domains are confused; about 1: the
    discriminator wins), the share of skipped discriminator updates ``d_skipped``, and the drift
    :math:`\|\theta_{M_t} - \theta_{M_s}\| / \|\theta_{M_s}\|`.

    Departures: one run holds both stages (``pretrain`` = 0.5 of the epochs trains the source,
    with the run's optimiser and learning-rate schedule, as do the adversarial updates; the paper
    trains each stage with Adam). The discriminator's loss is the binary cross-entropy over the
    pooled batch (the paper's sum of the two domains' means, halved, when :math:`n_s = n_t`). Batch norm
    in :math:`M_t` normalises target batches with their own statistics. :math:`M_s` stays in training
    mode while it encodes the source for :math:`D` (no gradient; its dropout, if any, stays on, and its
    batch-norm statistics keep following source batches; :math:`M_s` no longer predicts).

    Inputs: source and target mini-batches (n, ...); source labels (n,); encoder outputs
    ``features`` (n, d).

    Paper: Eric Tzeng, Judy Hoffman, Kate Saenko, Trevor Darrell. "Adversarial Discriminative Domain
    Adaptation". CVPR 2017 (MNIST->USPS 89.4, USPS->MNIST 90.1 with LeNet).

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("adda", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=4))  # doctest: +SKIP
    """

    name = "adda"
    discriminator_logs = ("domain_acc",)
    game_advice = "lower max_d_acc (its updates pause sooner) or narrow the discriminator (hidden)"
    grid = ({"pretrain": 0.5}, {"pretrain": 0.5, "anchor": 0.01}, {"pretrain": 0.5, "max_d_acc": 1.0},
            {"pretrain": 0.3})
    bounds = {"pretrain": (0.05, 0.95), "max_d_acc": (0.5, 1.0)}

    def __init__(self, pretrain: float = 0.5, hidden: tuple[int, ...] = (500, 500), max_d_acc: float = 0.95,
                 anchor: float = 0.0) -> None:
        super().__init__()
        self.pretrain, self.hidden, self.max_d_acc, self.anchor = pretrain, tuple(hidden), max_d_acc, anchor

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        names = backbone.group_names
        if backbone.feature_layer not in names[:-1]:
            raise DataError(f"adda: the feature layer {backbone.feature_layer!r} must be below the logits; "
                            f"this backbone has {list(names)}")
        self._encoder = names[:names.index(backbone.feature_layer) + 1]
        self._frozen = frozen_groups(backbone)  # --freeze: M_t, the network that predicts, keeps them frozen too
        self.target_net = copy.deepcopy(backbone)  # M_t (+ a copy of C); weights set from M_s at the switch
        for n in names[len(self._encoder):]:
            self.target_net.groups[n].requires_grad_(False)
        self.discriminator = DomainDiscriminator(sample_batch.flat("features").shape[1], self.hidden, batch_norm=False)
        self.register_buffer("started", torch.tensor(False))

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        target = [{**group, "params": list(self.target_net.groups[n].parameters())}
                  for n, group in backbone.items() if n in self._encoder]  # frozen groups stay frozen
        if not target:
            raise DataError("adda: every encoder layer is frozen, so the target encoder cannot learn; lower --freeze")
        return {"source": list(backbone.values()), "target": target,
                "discriminator": [{"params": list(self.discriminator.parameters())}]}

    def encode(self, net: Backbone, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output (the ``features`` group), flattened to (n, d); the classifier is not run."""
        for n in self._encoder:
            x = net.groups[n](x)
        return x.reshape(len(x), -1)

    def _encoder_params(self, net: Backbone) -> list[torch.Tensor]:
        return [p for n in self._encoder for p in net.groups[n].parameters()]

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xs is not None and ys is not None and xt is not None
        if ctx.progress < self.pretrain:  # stage 1: M_s and C fit the source
            (source,) = ctx.forward(xs)
            ctx.update({"cls": F.cross_entropy(source.logits, ys)}, "source")
            return
        if not bool(self.started):  # stage 2 starts: M_t <- M_s (and C's copy)
            self.target_net.load_state_dict(ctx.model.state_dict())
            self.started.fill_(True)
        with torch.no_grad():
            fs = self.encode(ctx.model, xs)  # M_s is fixed
        train_but_frozen(self.target_net, self._frozen)  # frozen groups keep their batch-norm statistics
        ft = self.encode(self.target_net, xt)
        d = self.discriminator(torch.cat([fs, ft.detach()]))
        domain = torch.cat([torch.ones(len(fs)), torch.zeros(len(ft))]).to(d)
        d_acc = float(((d.detach() > 0).float() == domain).float().mean())
        if d_acc <= self.max_d_acc:
            ctx.update({"d_loss": F.binary_cross_entropy_with_logits(d, domain)}, "discriminator")
        else:
            ctx.log(d_loss=float(F.binary_cross_entropy_with_logits(d.detach(), domain)))
        terms = {"g_loss": F.binary_cross_entropy_with_logits(self.discriminator(ft), torch.ones_like(d[:len(ft)]))}
        mt, ms = self._encoder_params(self.target_net), self._encoder_params(ctx.model)
        if self.anchor:
            terms["anchor"] = 0.5 * self.anchor * sum(((a - b.detach()) ** 2).sum() for a, b in zip(mt, ms))
        ctx.update(terms, "target")
        with torch.no_grad():
            drift = sum(((a - b) ** 2).sum() for a, b in zip(mt, ms)) ** 0.5 / sum((b ** 2).sum() for b in ms) ** 0.5
        ctx.log(domain_acc=d_acc, d_skipped=float(d_acc > self.max_d_acc), drift=float(drift))

    def inference_model(self, backbone: Backbone) -> nn.Module:
        return self.target_net if bool(self.started) else backbone

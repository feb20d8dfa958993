"""SHOT: source hypothesis transfer with information maximisation and clustered pseudo-labels (Liang, Hu,
Feng, ICML 2020)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..nn import Backbone, LayerOutputs
from ..nn.inference import evaluating
from .base import ParamGroup, StepContext
from .registry import register
from .self_training import MemoryBuffers, check_pretrain

_EPS = 1e-5


def cluster_labels(features: torch.Tensor, probs: torch.Tensor, rounds: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    r"""SHOT's self-supervised pseudo-labels: class centroids in feature space, each sample labelled by the nearest.

    .. math::
        c^{(0)}_k = \frac{\sum_i p_{ik}\,\hat g_i}{\sum_i p_{ik}},\quad
        \hat y_i = \arg\min_k d(\hat g_i, c_k),\quad
        c^{(r+1)}_k = \frac{\sum_i \mathbb{1}[\hat y_i = k]\,\hat g_i}{\sum_i \mathbb{1}[\hat y_i = k]}

    with :math:`\hat g_i` the features with a constant 1 appended, L2-normalised, and :math:`d` the cosine
    distance (Liang et al. 2020, eqs. 4-6 and their code). ``rounds`` refinements with hard labels follow
    the soft start; a class that no sample predicts (argmax) is no candidate (the authors' code), and
    neither is one that no sample is assigned to in a refinement (a departure: the authors' code keeps it,
    its zero centroid gives NaN distances and every sample that class). ``features`` (n, d), ``probs`` (n, K) the classifier's
    probabilities. Returns the last centroids (K, d + 1) and the labels (n,).
    """
    if features.ndim != 2 or probs.ndim != 2 or len(features) != len(probs) or not len(features):
        raise ConfigError(f"cluster_labels: features (n, d) and probabilities (n, K) for the same n > 0 samples, "
                          f"got {tuple(features.shape)} and {tuple(probs.shape)}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"cluster_labels: rounds must be a whole number >= 0 (refinements after the soft start), "
                          f"got {rounds!r}")
    g = F.normalize(torch.cat([features, features.new_ones(len(features), 1)], 1), dim=1)
    weights, present = probs, F.one_hot(probs.argmax(1), probs.shape[1]).sum(0) > 0
    for r in range(rounds + 1):
        centroids = weights.T @ g / weights.sum(0).clamp_min(_EPS)[:, None]
        similarity = g @ F.normalize(centroids, dim=1).T
        labels = similarity.masked_fill(~present, float("-inf")).argmax(1)
        if r < rounds:
            weights = F.one_hot(labels, probs.shape[1]).to(g.dtype)
            present = weights.sum(0) > 0
    return centroids, labels


@register
class SHOT(MemoryBuffers):
    r"""SHOT: the classifier (hypothesis) stays fixed; the features learn to fit it on the target alone.

    .. math::
        \mathcal{L} = \underbrace{\frac{1}{n}\sum_j H(p_j)}_{\text{each prediction confident}}
            - \underbrace{H(\bar p)}_{\text{predictions diverse}}
            + \beta\,\frac{1}{n}\sum_j \ell\big(h(g_\theta(x^t_j)), \hat y_j\big),
        \qquad p_j = \mathrm{softmax}(h(g_\theta(x^t_j))),\ \bar p = \frac{1}{n}\sum_j p_j

    :math:`h` is the classifier of the model the run starts from (the backbone's groups above its features,
    frozen: the source hypothesis); :math:`g_\theta` (the groups up to the features) starts from that model
    and is the only part trained; no source data is read. :math:`\hat y_j` are
    :func:`cluster_labels`: centroids of the target features weighted by the predictions, refined once with
    hard labels, each sample labelled by the nearest (cosine). As in the paper the labels come from the
    network as it was at the start of the epoch (a copy refreshed each epoch, in eval mode); one
    departure: the engine's epoch spans the larger domain (and a vector run's 500 updates at least),
    while the paper refreshes once per pass over the target, so when the source is the larger domain the
    copy is refreshed less often than there (a pass over the target takes ceil(n_t / batch) steps); the centroids
    are placed by a memory of that copy's outputs on the last ``memory`` target batches rather than the
    whole target set (early in an epoch the memory still holds the previous epochs' copies' outputs).
    :math:`\beta` = ``trade_off`` (0: SHOT-IM, information maximisation alone); ``entropy`` and
    ``diversity`` weigh the first two terms (1 and 1 in the paper).

    ``pretrain``: the method that trains the starting model when there is no ``--init-from`` (the paper's:
    ``source-only``; or an alignment method, e.g. ``dann``). Departures: the source model is the run's own
    backbone trained as ``pretrain`` trains it (the paper's adds batch norm and weight norm to the
    bottleneck and classifier, and label smoothing); the centroids' memory (above). Defaults: :math:`\beta` = 0.1, the authors' digit setting (0.3 for their object tasks).

    Paper: Jian Liang, Dapeng Hu, Jiashi Feng. "Do We Really Need to Access the Source Data? Source Hypothesis
    Transfer for Unsupervised Domain Adaptation". ICML 2020.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("shot", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=4))  # doctest: +SKIP
    """

    name = "shot"
    uses_source = False
    #: ``qianyi run`` trains a source model first when no --init-from is given (the hypothesis to transfer).
    needs_source_model = True
    memory_buffers = ("_feat", "_prob")
    grid = ({}, {"trade_off": 0.3}, {"trade_off": 0.0})

    def __init__(self, trade_off: float = 0.1, entropy: float = 1.0, diversity: float = 1.0, memory: int = 40,
                 pretrain: str = "source-only") -> None:
        super().__init__()
        if int(memory) != memory or memory < 1:
            raise ConfigError(f"shot: memory (target batches whose features place the centroids) must be a whole "
                              f"number >= 1, got {memory!r}")
        self.trade_off, self.entropy, self.diversity, self.memory = trade_off, entropy, diversity, int(memory)
        self.pretrain = check_pretrain(self.name, pretrain)

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        names = backbone.group_names
        self._hypothesis = names[names.index(backbone.feature_layer) + 1:]
        for n in self._hypothesis:  # the source hypothesis: no gradient, no update
            backbone.groups[n].requires_grad_(False)
        self.labeller = copy.deepcopy(backbone).requires_grad_(False)
        self.register_buffer("_feat", torch.zeros(0))
        self.register_buffer("_prob", torch.zeros(0))

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        features = [g for n, g in backbone.items() if n not in self._hypothesis]
        if not features:
            raise ConfigError("shot: every layer group below the classifier is frozen, so nothing can adapt; "
                              "lower --freeze")
        return {"features": features}

    def training_step(self, ctx: StepContext) -> None:
        xt = ctx.target_inputs
        assert xt is not None
        pseudo = self.pseudo_labels(ctx, xt) if self.trade_off else None  # SHOT-IM (trade_off 0): no labels
        for n in self._hypothesis:  # and no dropout or batch-norm statistics moving in it
            ctx.model.groups[n].eval()
        (target,) = ctx.forward(xt)
        p = target.logits.float().softmax(1)
        mean = p.mean(0)
        terms = {"ent": self.entropy * -(p * torch.log(p + _EPS)).sum(1).mean(),
                 "div": self.diversity * (mean * torch.log(mean + _EPS)).sum()}
        if pseudo is not None:
            terms["pseudo"] = self.trade_off * F.cross_entropy(target.logits, pseudo)
        ctx.update(terms)

    @torch.no_grad()
    def pseudo_labels(self, ctx: StepContext, xt: torch.Tensor) -> torch.Tensor:
        """The batch's :func:`cluster_labels` from this epoch's copy of the network (refreshed at the epoch's
        first step) over the memory of its outputs; logs how often they agree with the copy's predictions."""
        if ctx.steps_per_epoch and ctx.step % ctx.steps_per_epoch == 0:  # the labels of this epoch's network
            self.labeller.load_state_dict(ctx.model.state_dict())
        with evaluating(self.labeller):
            out = self.labeller(xt)
        keep = self.memory * len(xt)
        feat = out.features.flatten(1).float()
        self._feat = torch.cat([self._feat.view(-1, feat.shape[1]), feat])[-keep:]
        self._prob = torch.cat([self._prob.view(-1, out.logits.shape[1]), out.logits.float().softmax(1)])[-keep:]
        _, labels = cluster_labels(self._feat, self._prob)
        pseudo = labels[-len(xt):]
        ctx.log(agree=float((pseudo == out.logits.argmax(1)).float().mean()),
                clusters=float(torch.unique(labels).numel()))
        return pseudo

"""Multimodal transfer with shared upper layers (issue 17): each modality keeps its own lower layers, the
upper layers are one network, and a regulariser pulls the two modalities' shared codes together."""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..distances import coral, lmmd2, mk_mmd2
from ..errors import ConfigError, DataError
from ..nn import Backbone, LayerOutputs, predict_features
from .base import ParamGroup, StepContext
from .registry import register
from .self_training import MemoryBuffers, class_balanced_thresholds, growing_portion

#: The regularisers between the two modalities' shared codes, by the ``regulariser`` setting.
REGULARISERS = ("none", "mmd", "coral", "cmmd")
#: The two modalities: the labelled source one and the unlabelled target one.
MODALITIES = ("source", "target")


def _first_shared(names: tuple[str, ...], feature_layer: str, shared_from: str) -> int:
    """Index of the first shared layer group. ``auto``: ``fc1`` when something lies below it (LeNet: the
    convolutions are modality-specific), else the bottleneck (an MLP: ``fc1`` is modality-specific)."""
    if shared_from == "auto":
        if "fc1" in names and names.index("fc1") > 0:
            return names.index("fc1")
        shared_from = feature_layer
    if shared_from not in names[1:]:
        raise ConfigError(f"multimodal: setting shared_from must name a layer group above the first one, one of "
                          f"{list(names[1:])} (or auto), got {shared_from!r}")
    return names.index(shared_from)


@register
class Multimodal(MemoryBuffers):
    r"""Multimodal shared layers: modality-specific lower layers, shared upper layers, codes pulled together.

    The network :math:`F = h \circ g` of the engine is split at ``shared_from``: the source modality
    reads :math:`F_s = h \circ g_s` and the target modality :math:`F_t = h \circ g_t`, with lower layers
    :math:`g_s` (the engine's backbone's) and :math:`g_t` (the method's own, a copy of :math:`g_s` at the
    start, trained apart) and shared upper layers :math:`h` (``fc1 -> fc2 = features -> logits`` on
    LeNet). With :math:`z^l` the output of shared layer :math:`l` (``layers``, default the bottleneck):

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_i \ell\big(F_s(x^s_i), y^s_i\big)
            + \lambda_p \sum_{l} R\big(\{z^l(x^s_i)\}_i, \{z^l(x^t_j)\}_j\big)
            + \mu\,\frac{1}{n_p}\sum_k \Big\| \frac{z(a_k)}{\|z(a_k)\|} - \frac{z(b_k)}{\|z(b_k)\|} \Big\|^2

    :math:`R` = ``regulariser``: ``mmd`` (multi-kernel MMD, DAN's biased estimate,
    :func:`~qianyi.distances.mk_mmd2`), ``coral`` (:func:`~qianyi.distances.coral`), ``cmmd``
    (class-conditional: LMMD, :func:`~qianyi.distances.lmmd2`, between the source codes with their
    labels and the target codes that carry a confident pseudo-label — CBST's class-balanced
    thresholds over the last ``memory`` target batches, the most confident ``portion`` of each predicted
    class, from ``warmup`` on; :func:`~qianyi.methods.self_training.class_balanced_thresholds`) or
    ``none`` (the two branches meet only through :math:`h`). :math:`\lambda_p = \lambda\,(2/(1+e^{-10p})-1)`,
    :math:`\lambda` = ``trade_off``. The last term exists only in the **paired** protocol (``pairs`` > 0):
    :math:`(a_k, b_k)` are known pairs of a source and a target input of the same concept (a spoken
    and a written digit), attached with :meth:`attach_pairs` (Python only; a different, weakly
    supervised protocol: somebody matched the pairs), :math:`z` the bottleneck, :math:`\mu` =
    ``pair_weight``; each step draws ``min(pairs, 32)`` of them.

    Prediction (``inference_model``, ``model.pt``, ``qianyi predict``, validators): the **target
    branch** :math:`F_t`, a network with the very architecture and layer names of the engine's backbone,
    so a saved model loads with :func:`~qianyi.train.load_model` and predicts target-modality inputs
    with no extra argument. The source branch is :meth:`branch` (``"source"``); the epoch history's
    ``source_val_acc`` (and source-based validators) read the target branch on source inputs, which
    means little here: the source branch's training accuracy is logged as ``source_acc``.

    Batch norm: each lower branch normalises its own modality; the shared layers see both together.
    ``--freeze k`` freezes the first k groups of both branches; ``--init-from`` weights start both.

    Idea: Ngiam, Khosla, Kim, Nam, Lee, Ng. "Multimodal Deep Learning". ICML 2011 (shared
    representation across modalities); Long, Cao, Wang, Jordan. DAN, ICML 2015 (the MMD term); Sun &
    Saenko. Deep CORAL, 2016; Zhu et al. DSAN/LMMD, TNNLS 2020; Zou et al. CBST, ECCV 2018.

    Example:
        >>> import qianyi
        >>> task = qianyi.load_task("fsdd", "mnist", max_samples=3000)  # doctest: +SKIP
        >>> result, fit = qianyi.run("multimodal", task, qianyi.TrainConfig(), regulariser="mmd")  # doctest: +SKIP
    """

    name = "multimodal"
    saves_backbone = False  # it saves the target branch
    memory_buffers = ("_conf", "_pred")
    grid = ({}, {"regulariser": "coral"}, {"regulariser": "cmmd"}, {"trade_off": 0.3})
    bounds = {"start": (0.0, 1.0), "end": (0.0, 1.0), "warmup": (0.0, 0.95)}

    def __init__(self, regulariser: str = "mmd", trade_off: float = 1.0, layers: tuple[str, ...] = ("features",),
                 shared_from: str = "auto", start: float = 0.2, end: float = 0.5, warmup: float = 0.25,
                 memory: int = 20, pairs: int = 0, pair_weight: float = 1.0) -> None:
        super().__init__()
        if regulariser not in REGULARISERS:
            raise ConfigError(f"multimodal: setting regulariser must be one of {', '.join(REGULARISERS)}, "
                              f"got {regulariser!r}")
        if memory < 1:
            raise ConfigError(f"multimodal: setting memory (target batches the thresholds look back on) must be >= 1, "
                              f"got {memory}")
        self.regulariser, self.trade_off, self.layers = regulariser, trade_off, tuple(layers)
        self.shared_from, self.start, self.end, self.warmup, self.memory = shared_from, start, end, warmup, memory
        self.pairs, self.pair_weight = pairs, pair_weight
        self._pair_data: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- building --------------------------------------------------------------------------------
    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        if not isinstance(backbone, Backbone):
            raise ConfigError("multimodal needs a backbone of named layer groups (qianyi.nn.Backbone)")
        names = backbone.group_names
        self.n_lower = _first_shared(names, backbone.feature_layer, self.shared_from)
        shared = names[self.n_lower:]
        bad = [l for l in self.layers if (backbone.feature_layer if l == "features" else l) not in shared]
        if bad:
            raise ConfigError(f"multimodal: setting layers must name shared layer groups, of {['features', *shared]}; "
                              f"{bad} {'is' if len(bad) == 1 else 'are'} not shared (shared_from={self.shared_from})")
        self.n_classes = int(sample_batch.logits.shape[1])
        # the target modality's own lower layers: separate parameters, starting from the source's values
        self.target_lower = nn.ModuleDict(OrderedDict((n, copy.deepcopy(backbone.groups[n]))
                                                      for n in names[:self.n_lower]))
        self.register_buffer("_conf", torch.zeros(0))
        self.register_buffer("_pred", torch.zeros(0, dtype=torch.long))
        if self.pairs and self._pair_data is None:
            raise ConfigError(f"multimodal: pairs={self.pairs} needs the pairs themselves: call "
                              "method.attach_pairs(source_inputs, target_inputs) before training (Python API)")
        if self._pair_data is not None:
            a, b = self._pair_data
            shape = tuple(getattr(self, "input_shape", None) or a.shape[1:])
            if tuple(a.shape[1:]) != shape or tuple(b.shape[1:]) != shape:
                raise DataError(f"multimodal: attach_pairs got source inputs of shape {tuple(a.shape[1:])} and target "
                                f"inputs of shape {tuple(b.shape[1:])}; the task's samples are {shape}: pass pairs "
                                "in the task's input form (e.g. task.source.X[idx], task.target.X[idx])")
            self.register_buffer("_pair_s", a, persistent=False)  # moved with the method, not checkpointed
            self.register_buffer("_pair_t", b, persistent=False)

    def train(self, mode: bool = True) -> "Multimodal":
        """As ``nn.Module.train``, but the target lower groups that ``--freeze`` froze (copies of frozen groups: no
        weight trains) stay in eval mode, keeping their batch-norm statistics as the engine keeps the backbone's."""
        super().train(mode)
        if mode:
            for m in getattr(self, "target_lower", {}).values():
                params = list(m.parameters())
                if params and not any(p.requires_grad for p in params):
                    m.eval()
        return self

    def attach_pairs(self, source_inputs: np.ndarray | torch.Tensor, target_inputs: np.ndarray | torch.Tensor
                     ) -> "Multimodal":
        """The paired protocol: ``source_inputs[k]`` and ``target_inputs[k]`` show the same concept
        (``pairs`` of them). Call before training, and again with the same pairs to resume."""
        a, b = torch.as_tensor(np.asarray(source_inputs)).float(), torch.as_tensor(np.asarray(target_inputs)).float()
        if len(a) != len(b) or len(a) != self.pairs or len(a) == 0:
            raise DataError(f"multimodal: attach_pairs needs pairs={self.pairs} source and as many target inputs "
                            f"(set pairs to their number), got {len(a)} and {len(b)}")
        self._pair_data = (a, b)
        return self

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        """One optimizer; each target lower group learns like the backbone's group of the same name
        (left out where that one is frozen)."""
        own = [{**{k: v for k, v in backbone[n].items() if k != "params"}, "params": list(m.parameters())}
               for n, m in self.target_lower.items() if n in backbone]
        return {"main": [*backbone.values(), *own]}

    def copies_of(self, groups: Sequence[str]) -> list[nn.Parameter]:
        """The target lower layers copying these groups: the branch that predicts (L2-SP anchors them too)."""
        return [p for n in groups if n in self.target_lower for p in self.target_lower[n].parameters()]

    def branch(self, backbone: Backbone, modality: str = "target") -> Backbone:
        """The network of one modality: its own lower layers and the shared upper ones (same group names as
        ``backbone``; its modules are ``backbone``'s and the method's, not copies)."""
        if modality not in MODALITIES:
            raise ConfigError(f"multimodal: modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        if modality == "source":
            return backbone
        groups = [(n, self.target_lower[n] if i < self.n_lower else m)
                  for i, (n, m) in enumerate(backbone.groups.items())]
        net = Backbone(groups, backbone.feature_layer)
        net.training = backbone.training  # the flag only: the modules keep their own modes
        return net

    def inference_model(self, backbone: Backbone) -> nn.Module:
        return self.branch(backbone, "target")

    # -- training --------------------------------------------------------------------------------
    def forward_modalities(self, backbone: Backbone, source: list[torch.Tensor], target: list[torch.Tensor]
                           ) -> list[LayerOutputs]:
        """Outputs for each batch in ``source`` (source lower layers) and ``target`` (target lower layers),
        in that order: each branch's lower layers see its modality's batches together, the shared layers
        see all of them together (one batch-norm statistic)."""
        names = backbone.group_names
        lows = []
        for inputs, modules in ((source, backbone.groups), (target, self.target_lower)):
            x, out = torch.cat(inputs), OrderedDict()
            for n in names[:self.n_lower]:
                x = modules[n](x)
                out[n] = x
            lows.append(out)
        x = torch.cat([lows[0][names[self.n_lower - 1]], lows[1][names[self.n_lower - 1]]])
        up = OrderedDict()
        for n in names[self.n_lower:]:
            x = backbone.groups[n](x)
            up[n] = x
        n_s = sum(len(t) for t in source)
        parts: list[LayerOutputs] = []
        for side, (lo, offset, pieces) in enumerate(((lows[0], 0, source), (lows[1], n_s, target))):
            start_low = 0
            for t in pieces:
                k = len(t)
                rows = OrderedDict((n, v[start_low:start_low + k]) for n, v in lo.items())
                rows.update((n, v[offset + start_low:offset + start_low + k]) for n, v in up.items())
                parts.append(LayerOutputs(rows, backbone.feature_layer))
                start_low += k
        return parts

    def portion(self, progress: float) -> float:
        return growing_portion(progress, self.warmup, self.start, self.end)

    def regularise(self, s: LayerOutputs, t: LayerOutputs, source_labels: torch.Tensor,
                   target_mask: torch.Tensor | None = None, target_labels: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """:math:`\\sum_l R(z^l_s, z^l_t)` (without the weight). ``cmmd`` reads the target's confident
        pseudo-labels (``target_mask``, ``target_labels``: the training pass's own predictions, dropout on, as
        DSAN weights LMMD with them; no second pass in eval mode); with none selected it is 0."""
        total = s.logits.new_zeros(())
        for layer in self.layers:
            zs, zt = s.flat(layer).float(), t.flat(layer).float()
            if self.regulariser == "mmd":
                total = total + mk_mmd2(zs, zt, estimator="biased")
            elif self.regulariser == "coral":
                total = total + coral(zs, zt)
            elif self.regulariser == "cmmd":
                if target_mask is None or target_labels is None or not bool(target_mask.any()):
                    continue
                keep = target_mask.bool()
                probs = F.one_hot(target_labels[keep], self.n_classes).to(zs.dtype)
                total = total + lmmd2(zs, zt[keep], source_labels, probs)
        return total

    def training_step(self, ctx: StepContext) -> None:
        xs, ys, xt = ctx.source_inputs, ctx.source_labels, ctx.target_inputs
        assert xs is not None and ys is not None and xt is not None
        model = ctx.model
        paired = self._pair_data is not None and self.pairs > 0 and self.pair_weight > 0
        if paired:
            idx = torch.randperm(self.pairs, device=xs.device)[:min(self.pairs, 32)]  # torch's RNG: checkpointed
            s, ps, t, pt = self.forward_modalities(model, [xs, self._pair_s[idx]], [xt, self._pair_t[idx]])
        else:
            s, t = self.forward_modalities(model, [xs], [xt])
        terms = {"cls": F.cross_entropy(s.logits, ys)}
        ctx.log(source_acc=float((s.logits.argmax(1) == ys).float().mean()))
        mask = pred = None
        if self.regulariser == "cmmd":
            with torch.no_grad():
                conf, pred = t.logits.float().softmax(1).max(1)
                keep = self.memory * len(xt)
                self._conf = torch.cat([self._conf, conf])[-keep:]
                self._pred = torch.cat([self._pred, pred])[-keep:]
            if ctx.progress >= self.warmup:
                thresholds = class_balanced_thresholds(self._conf, self._pred, self.n_classes,
                                                       self.portion(ctx.progress))
                mask = conf >= thresholds[pred]
                ctx.log(pseudo_share=float(mask.float().mean()))
        if self.regulariser != "none" and self.trade_off > 0:
            terms[self.regulariser] = self.trade_off * ctx.ramp * self.regularise(s, t, ys, mask, pred)
        if paired:
            za, zb = F.normalize(ps.features.float(), dim=1), F.normalize(pt.features.float(), dim=1)
            terms["pair"] = self.pair_weight * ((za - zb) ** 2).sum(1).mean()
        ctx.update(terms)


# -- cross-modal retrieval ---------------------------------------------------------------------------
def shared_codes(method: Multimodal, backbone: Backbone, X: np.ndarray | torch.Tensor, modality: str,
                 layer: str = "features", device: torch.device | str = "cpu") -> torch.Tensor:
    """The shared code (output of ``layer``) of inputs ``X`` of ``modality`` (``source`` or ``target``),
    in eval mode: (n, d)."""
    feats, _ = predict_features(method.branch(backbone, modality), X, layer, device)
    return feats


def _retrieve(name: str, queries: torch.Tensor | np.ndarray, query_labels: np.ndarray | torch.Tensor,
              gallery: torch.Tensor | np.ndarray, gallery_labels: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """(m, k) booleans: whether each query's j-th retrieved gallery item (by cosine similarity, ties to the
    lower gallery index) has the query's label. Checks the inputs and names ``name`` in its errors."""
    Q, G = torch.as_tensor(np.asarray(queries), dtype=torch.float64), torch.as_tensor(np.asarray(gallery),
                                                                                       dtype=torch.float64)
    yq, yg = np.asarray(query_labels), np.asarray(gallery_labels)
    if Q.ndim != 2 or G.ndim != 2 or Q.shape[1] != G.shape[1]:
        raise DataError(f"{name}: queries and gallery must be (m, d) and (n, d) with one d, got "
                        f"{tuple(Q.shape)} and {tuple(G.shape)}")
    if len(yq) != len(Q) or len(yg) != len(G):
        raise DataError(f"{name}: one label per row, got {len(yq)} labels for {len(Q)} queries and "
                        f"{len(yg)} for {len(G)} gallery items")
    if not 1 <= k <= len(G):
        raise DataError(f"{name}: k must be from 1 to the gallery size {len(G)}, got {k}")
    sim = F.normalize(Q, dim=1) @ F.normalize(G, dim=1).T  # (m, n) cosine similarities
    # a stable sort on -sim keeps the lower index first among equal similarities
    top = torch.sort(-sim, dim=1, stable=True).indices[:, :k].numpy()
    return yg[top] == yq[:, None]


def precision_at_k(queries: torch.Tensor | np.ndarray, query_labels: np.ndarray | torch.Tensor,
                   gallery: torch.Tensor | np.ndarray, gallery_labels: np.ndarray | torch.Tensor,
                   k: int = 10) -> float:
    r"""Cross-modal retrieval precision@k: each query (a code of one modality) retrieves the ``k`` gallery
    items (codes of the other modality) of highest cosine similarity;

    .. math::
        P@k = \frac{1}{|Q|}\sum_{q \in Q} \frac{1}{k}\,\big|\{g \in \mathrm{top}_k(q) : y_g = y_q\}\big|,

    the mean share of the retrieved items of the query's class (chance: the share of the gallery in the
    query's class; 10% for ten balanced digits). Ties in similarity go to the lower gallery index.

    ``queries`` (m, d), ``query_labels`` (m,), ``gallery`` (n, d), ``gallery_labels`` (n,), k <= n.

    >>> q = torch.tensor([[1.0, 0.0]]); g = torch.tensor([[2.0, 0.1], [0.0, 1.0], [1.0, 0.0]])
    >>> precision_at_k(q, [0], g, [0, 1, 1], k=2)
    0.5
    """
    return float(_retrieve("precision_at_k", queries, query_labels, gallery, gallery_labels, k).mean())


def recall_at_k(queries: torch.Tensor | np.ndarray, query_labels: np.ndarray | torch.Tensor,
                gallery: torch.Tensor | np.ndarray, gallery_labels: np.ndarray | torch.Tensor,
                k: int = 10) -> float:
    r"""Cross-modal retrieval recall@k as in class-level retrieval and metric learning (Song et al., CVPR
    2016, "Recall@K"): the share of queries with at least one item of their class among the ``k`` gallery
    items of highest cosine similarity,

    .. math::
        R@k = \frac{1}{|Q|}\sum_{q \in Q} \mathbb{1}\big[\exists\, g \in \mathrm{top}_k(q) : y_g = y_q\big].

    (The other reading, the share of *all* same-class gallery items retrieved, is at most k / |class| —
    11% for 10 of the ~90 MNIST test images of a digit — and says little.) Chance: :func:`chance_recall`.
    Same inputs and tie rule as :func:`precision_at_k`.

    >>> q = torch.tensor([[1.0, 0.0]]); g = torch.tensor([[2.0, 0.1], [0.0, 1.0], [1.0, 0.0]])
    >>> recall_at_k(q, [0], g, [0, 1, 1], k=1), recall_at_k(q, [0], g, [0, 1, 1], k=2)
    (0.0, 1.0)
    """
    return float(_retrieve("recall_at_k", queries, query_labels, gallery, gallery_labels, k).any(axis=1).mean())


def chance_precision(query_labels: np.ndarray, gallery_labels: np.ndarray) -> float:
    """The precision@k of a random ranking: the mean, over queries, of the gallery's share of the query's class."""
    yg = np.asarray(gallery_labels)
    return float(np.mean([np.mean(yg == y) for y in np.asarray(query_labels)]))


def chance_recall(query_labels: np.ndarray, gallery_labels: np.ndarray, k: int = 10) -> float:
    """The recall@k of a random ranking: the mean, over queries, of the chance that ``k`` gallery items
    drawn without replacement include one of the query's class, 1 - C(n - n_c, k) / C(n, k)."""
    yg = np.asarray(gallery_labels)
    n = len(yg)
    if not 1 <= k <= n:
        raise DataError(f"chance_recall: k must be from 1 to the gallery size {n}, got {k}")

    def miss(c: int) -> float:  # P(no item of a class of size c among k drawn)
        return float(np.prod([(n - c - i) / (n - i) for i in range(k)])) if n - c >= k else 0.0
    return float(np.mean([1.0 - miss(int(np.sum(yg == y))) for y in np.asarray(query_labels)]))


__all__ = ["MODALITIES", "Multimodal", "REGULARISERS", "chance_precision", "chance_recall", "precision_at_k",
           "recall_at_k", "shared_codes"]

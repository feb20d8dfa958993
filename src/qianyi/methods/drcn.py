"""DRCN: Deep Reconstruction-Classification Networks (Ghifary, Kleijn, Zhang, Balduzzi, Li, "Deep
Reconstruction-Classification Networks for Unsupervised Domain Adaptation", ECCV 2016)."""
from __future__ import annotations

import torch

from ..errors import DataError, UnknownNameError
from ..nn import Backbone, LayerOutputs
from .base import Batch, Method, ParamGroup, StepContext
from .reconstruction import Decoder, mse
from .registry import register

RECONSTRUCT = ("target", "both")
SCHEMES = ("alternate", "joint")


@register
class DRCN(Method):
    r"""DRCN: a shared encoder with two heads, a labeller for the source and a decoder for the target.

    The paper trains two objectives in turn, each with its own updates (``scheme="alternate"``, the
    default). Its Algorithm 1 alternates whole passes (classification updates over the source batches,
    then reconstruction updates over the target batches); here the alternation is per step, on the
    engine's paired batches: a classification update of encoder and labeller on a source batch, then a
    reconstruction update of encoder and decoder on a target batch:

    .. math::

        \min_{\Theta_{enc}, \Theta_{lab}} \frac{1}{n_s}\sum_i \ell\big(f_{lab}(f_{enc}(x^s_i)), y^s_i\big),
        \qquad
        \min_{\Theta_{enc}, \Theta_{dec}} \lambda_r \frac{1}{n_t\,k}\sum_j
            \big\| x^t_j - f_{dec}(f_{enc}(\tilde x^t_j)) \big\|^2

    with :math:`\tilde x` the input with each value zeroed with probability ``noise`` (denoising;
    the decoder restores the clean input), :math:`k` the number of values of an input (784 for a
    28×28 grey image) and :math:`\lambda_r` = ``trade_off``. The reconstruction term is thus the mean
    squared error per input value (as a Keras ``mse`` loss computes it); the paper writes the squared
    norm per sample, k times larger, without saying how its implementation normalised it. Its weights
    :math:`\lambda L_c` and :math:`(1-\lambda) L_r` with :math:`\lambda = 0.7` correspond, up to a
    learning-rate scale and that normalisation, to ``trade_off`` = 0.3 / 0.7 = 3/7 (the default). ``scheme="joint"`` instead
    minimises :math:`L_c + \lambda_r L_r` in one update (the earlier qianyi variant).

    Settings: ``reconstruct="both"`` also reconstructs the source (DRCN_st); ``layer`` names the layer
    group the decoder reads (default the bottleneck ``features``; the paper's decoder reads the first
    dense layer, ``fc1`` on :func:`qianyi.nn.lenet`).

    Inputs: source and target images or vectors (n, ...) and source labels (n,); the decoder is
    built from the backbone (:class:`qianyi.methods.reconstruction.Decoder`).

    Paper: M. Ghifary, W. B. Kleijn, M. Zhang, D. Balduzzi, W. Li, "Deep Reconstruction-Classification
    Networks for Unsupervised Domain Adaptation", ECCV 2016.

    Example::

        >>> import qianyi
        >>> result, fit = qianyi.run("drcn", qianyi.load_task("digits", "digits+rot30"), qianyi.TrainConfig(epochs=2))  # doctest: +SKIP
    """

    name = "drcn"
    not_for_text = "reconstructs its inputs"
    grid = ({"scheme": "alternate", "trade_off": 3 / 7}, {"scheme": "alternate", "trade_off": 1.0},
            {"scheme": "alternate", "trade_off": 0.1}, {"scheme": "joint", "trade_off": 0.1, "reconstruct": "both"})

    def __init__(self, trade_off: float = 3 / 7, reconstruct: str = "target", layer: str = "features",
                 noise: float = 0.3, scheme: str = "alternate") -> None:
        super().__init__()
        if reconstruct not in RECONSTRUCT:
            raise UnknownNameError(f"drcn: reconstruct must be one of {RECONSTRUCT}, got {reconstruct!r}")
        if scheme not in SCHEMES:
            raise UnknownNameError(f"drcn: scheme must be one of {SCHEMES}, got {scheme!r}")
        if not 0.0 <= noise < 1.0:
            raise DataError(f"drcn: noise is the fraction of input values zeroed, in [0, 1); got {noise}")
        self.trade_off, self.reconstruct, self.layer, self.noise = trade_off, reconstruct, layer, noise
        self.scheme = scheme

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-masking noise (training only; torch's global RNG, which the engine checkpoints)."""
        if self.noise == 0.0:
            return x
        return x * (torch.rand_like(x) >= self.noise)

    def setup(self, backbone: Backbone, sample_batch: LayerOutputs) -> None:
        if self.layer == "logits":
            raise UnknownNameError("drcn: layer must be a hidden layer group, not 'logits'; "
                                   f"choose one of {list(sample_batch.names[:-1])} or 'features'")
        code = sample_batch.flat(self.layer)  # names an unknown layer with the backbone's list
        self.decoder = Decoder(code.shape[1], backbone, sample_batch)
        names = backbone.group_names
        layer = backbone.feature_layer if self.layer == "features" else self.layer
        self._encoder_groups = names[:names.index(layer) + 1]

    def optimizers(self, backbone: dict[str, ParamGroup]) -> dict[str, list[ParamGroup]]:
        if self.scheme == "joint":
            return super().optimizers(backbone)
        encoder = [g for n, g in backbone.items() if n in self._encoder_groups]
        return {"classify": list(backbone.values()),
                "reconstruct": [*encoder, {"params": list(self.decoder.parameters())}]}

    def reconstruction(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return mse(x, self.decoder(code, x))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The joint scheme's objective (inputs were corrupted by :meth:`training_step`)."""
        assert batch.source is not None and batch.target is not None and batch.target_inputs is not None
        rec = self.reconstruction(batch.target_inputs, batch.target.flat(self.layer))
        if self.reconstruct == "both":
            assert batch.source_inputs is not None
            rec = rec + self.reconstruction(batch.source_inputs, batch.source.flat(self.layer))
        return {"cls": self.source_ce(batch), "recon": self.trade_off * rec}

    def training_step(self, ctx: StepContext) -> None:
        xs, xt = ctx.source_inputs, ctx.target_inputs
        assert xs is not None and xt is not None
        if self.scheme == "joint":  # one update; both pathways see corrupted inputs
            source, target = ctx.forward(self.corrupt(xs), self.corrupt(xt))
            ctx.update(self.loss(ctx.batch(source, target)))
            return
        (source,) = ctx.forward(xs)
        ctx.update({"cls": self.source_ce(ctx.batch(source, None))}, "classify")
        clean = torch.cat([xs, xt]) if self.reconstruct == "both" else xt
        (out,) = ctx.forward(self.corrupt(clean))
        ctx.update({"recon": self.trade_off * self.reconstruction(clean, out.flat(self.layer))}, "reconstruct")

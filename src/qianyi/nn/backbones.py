"""Backbones made of NAMED layer groups, so "adapt at fc2" and "freeze up to conv2" mean one thing everywhere.

A backbone's forward always returns :class:`LayerOutputs` (train and eval mode alike): the output
of every group, in order; ``features`` is the last group before ``logits``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import ItemsView, Iterator, KeysView, Sequence, ValuesView

import torch
from torch import nn

from ..errors import DataError, UnknownNameError


class LayerOutputs:
    """Outputs of each named layer group for one batch. Fully connected outputs are (n, d).

    Read like a read-only mapping of the group names, in order: ``out["fc1"]``, ``list(out)``, ``out.items()``,
    ``dict(out)``; ``"features"`` also names the bottleneck in ``out["features"]``, ``in`` and ``get``.
    """

    __slots__ = ("_layers", "_feature_layer")

    def __init__(self, layers: "OrderedDict[str, torch.Tensor]", feature_layer: str) -> None:
        self._layers = layers
        self._feature_layer = feature_layer

    @property
    def logits(self) -> torch.Tensor:
        return self._layers["logits"]

    @property
    def features(self) -> torch.Tensor:
        """The representation the classifier reads (the bottleneck)."""
        return self._layers[self._feature_layer]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._layers)

    def __getitem__(self, name: str) -> torch.Tensor:
        """Output of layer group ``name`` (``"features"`` names the bottleneck)."""
        if name == "features":
            name = self._feature_layer
        try:
            return self._layers[name]
        except KeyError:
            raise UnknownNameError(f"no layer group {name!r}; this backbone has {list(self._layers)}") from None

    def __iter__(self) -> Iterator[str]:
        """The group names, in order (``list(out)``, ``dict(out)``)."""
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __contains__(self, name: object) -> bool:
        """Whether ``out[name]`` gives an output: a group name or ``"features"``."""
        return name == "features" or name in self._layers

    def keys(self) -> KeysView[str]:
        return self._layers.keys()

    def values(self) -> ValuesView[torch.Tensor]:
        return self._layers.values()

    def items(self) -> ItemsView[str, torch.Tensor]:
        return self._layers.items()

    def get(self, name: str, default: torch.Tensor | None = None) -> torch.Tensor | None:
        """``out[name]``, or ``default`` when there is no such layer group."""
        return self[name] if name in self else default

    def flat(self, name: str) -> torch.Tensor:
        """Layer ``name``'s output flattened to (n, d)."""
        t = self[name]
        return t.reshape(len(t), -1)

    def split(self, n_first: int) -> tuple["LayerOutputs", "LayerOutputs"]:
        """Split a forward of a concatenated batch into its first ``n_first`` rows and the rest."""
        a = OrderedDict((k, v[:n_first]) for k, v in self._layers.items())
        b = OrderedDict((k, v[n_first:]) for k, v in self._layers.items())
        return LayerOutputs(a, self._feature_layer), LayerOutputs(b, self._feature_layer)


class Backbone(nn.Module):
    """A sequence of named layer groups ending in ``logits``."""

    def __init__(self, groups: Sequence[tuple[str, nn.Module]], feature_layer: str | None = None) -> None:
        super().__init__()
        names = [n for n, _ in groups]
        if not names or names[-1] != "logits":
            raise ValueError(f"a backbone's last layer group must be named 'logits', got {names}")
        self.groups = nn.ModuleDict(OrderedDict(groups))
        self.feature_layer = feature_layer or names[-2]

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.groups.keys())

    def forward(self, x: torch.Tensor) -> LayerOutputs:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, module in self.groups.items():
            x = module(x)
            out[name] = x
        return LayerOutputs(out, self.feature_layer)

    def group_index(self, name: str) -> int:
        names = self.group_names
        if name not in names:
            raise UnknownNameError(f"no layer group {name!r}; this backbone has {list(names)}")
        return names.index(name)

    def feature_dim(self, name: str | None = None) -> int:
        """Width of a fully connected group's output (of the feature layer by default)."""
        module = self.groups[name or self.feature_layer]
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UnknownNameError(f"layer group {name!r} has no linear layer; run a forward to see its shape")
        return linears[-1].out_features


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


def _fc_block(d_in: int, d_out: int, dropout: float = 0.0, flatten: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    layers += [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


#: The smallest image side :func:`lenet` accepts (two 2x2 poolings must leave at least one pixel).
LENET_MIN_SIZE = 4


def lenet(in_channels: int, size: int | tuple[int, int], n_classes: int, widths: tuple[int, int] = (32, 64),
          hidden: tuple[int, int] = (256, 128), dropout: float = 0.5) -> Backbone:
    """LeNet-style CNN: conv1, conv2 (3x3 conv, BN, ReLU, 2x2 max-pool), fc1, fc2 (bottleneck), logits.

    3x3 padded convolutions make one architecture fit 8x8 UCI digits and 28x28 images alike.
    ``size`` is the image side (or (height, width)).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if min(h, w) < LENET_MIN_SIZE:
        raise DataError(f"images of {h}x{w} pixels are too small for the LeNet backbone (at least "
                        f"{LENET_MIN_SIZE}x{LENET_MIN_SIZE}); enlarge them (folder:DIR?size=N) or give vectors")
    return Backbone([
        ("conv1", _conv_block(in_channels, widths[0])),
        ("conv2", _conv_block(widths[0], widths[1])),
        ("fc1", _fc_block(widths[1] * (h // 4) * (w // 4), hidden[0], dropout, flatten=True)),
        ("fc2", _fc_block(hidden[0], hidden[1])),
        ("logits", nn.Linear(hidden[1], n_classes)),
    ])


def mlp(in_features: int, n_classes: int, hidden: tuple[int, int] = (256, 128), dropout: float = 0.5,
        input_dropout: float = 0.0, batch_norm: bool = True) -> Backbone:
    """MLP for feature vectors: fc1, fc2 (bottleneck), logits. ``input_dropout`` drops input features
    (in fc1, before its linear layer) while training."""
    fc1 = _fc_block(in_features, hidden[0], dropout, flatten=True)
    fc2 = _fc_block(hidden[0], hidden[1])
    if not batch_norm:
        fc1 = nn.Sequential(*[m for m in fc1 if not isinstance(m, nn.BatchNorm1d)])
        fc2 = nn.Sequential(*[m for m in fc2 if not isinstance(m, nn.BatchNorm1d)])
    if input_dropout:
        fc1 = nn.Sequential(nn.Dropout(input_dropout), *fc1)
    return Backbone([
        ("fc1", fc1),
        ("fc2", fc2),
        ("logits", nn.Linear(hidden[1], n_classes)),
    ])


#: The default network for sparse count vectors (bag-of-words, visual-word histograms: the inputs that
#: get the L2 row transform, ``preprocessing["counts"]``): wider than :func:`mlp`'s defaults and with
#: half of the input features dropped while training; chosen on source-validation accuracy on
#: Office-Caltech10 SURF + Amazon (docs/vectors.md, third round). Dense vectors keep :func:`mlp`.
VECTOR_MLP = {"hidden": (512, 256), "input_dropout": 0.5}


def vector_mlp(in_features: int, n_classes: int) -> Backbone:
    """The default network for sparse count vectors: :func:`mlp` with :data:`VECTOR_MLP` (fc1 512 with
    input dropout 0.5 and dropout 0.5, fc2 256 = the bottleneck, logits)."""
    return mlp(in_features, n_classes, **VECTOR_MLP)


#: The generation of the default networks :func:`backbone_for` builds, per kind of input. Runs are
#: stored by a fingerprint that carries it (from 2 on), so a change to a default network must bump
#: its kind's number: otherwise finished runs of the old network would be reused as if they were of
#: the new one (tests/test_hostile.py fails on any change of the default networks' shapes until it is
#: bumped). Sparse counts 2: :func:`vector_mlp` (was :func:`mlp`'s defaults, 256 -> 128).
DEFAULT_BACKBONE_VERSION = {"images": 1, "vectors": 1, "counts": 2}


def _kind(sample_shape: Sequence[int], counts: bool) -> str:
    return "images" if len(sample_shape) == 3 else ("counts" if counts else "vectors")


def default_network_generation(sample_shape: Sequence[int], counts: bool = False) -> int:
    """The generation of the default network for samples of ``sample_shape`` (images: (c, h, w));
    ``counts``: vectors of sparse counts (``task.preprocessing["counts"]``)."""
    return DEFAULT_BACKBONE_VERSION[_kind(sample_shape, counts)]


def default_network(sample_shape: Sequence[int], n_classes: int, generation: int = 1) -> Backbone:
    """The default network of ``generation`` for ``sample_shape``, as recorded in a model.json, so that a
    saved model loads into the network it was trained on (vectors: 1 = :func:`mlp`, 2 = :func:`vector_mlp`)."""
    if len(sample_shape) == 1 and generation in (1, 2):
        return backbone_for(sample_shape, n_classes, counts=generation == 2)
    if len(sample_shape) == 3 and generation == 1:
        return backbone_for(sample_shape, n_classes)
    raise DataError(f"no default network of generation {generation} for samples of shape {tuple(sample_shape)}; "
                    "this model was saved by a newer qianyi: upgrade qianyi")


def backbone_for(sample_shape: Sequence[int], n_classes: int, counts: bool = False) -> Backbone:
    """The default backbone for a task's inputs: :func:`lenet` for images, :func:`mlp` for vectors,
    :func:`vector_mlp` for vectors of sparse counts (``counts``, ``task.preprocessing["counts"]``)."""
    if len(sample_shape) == 3:
        c, h, w = sample_shape
        return lenet(c, (h, w), n_classes)
    if len(sample_shape) == 1:
        return (vector_mlp if counts else mlp)(int(sample_shape[0]), n_classes)
    raise DataError(f"no default backbone for samples of shape {tuple(sample_shape)}; give vectors (n, d) or "
                    "images (n, c, h, w)")


def require_backbone(model: object, who: str, groups: bool = True) -> "Backbone":
    """``model`` as a network for ``who``: a saved model (:func:`qianyi.load_model`) gives its network; with
    ``groups``, a plain module without named layer groups is refused with what to do."""
    network = getattr(model, "network", None)
    if not isinstance(model, nn.Module) and isinstance(network, nn.Module):
        model = network  # a SavedModel
    if isinstance(model, nn.Module) and (hasattr(model, "group_names") or not groups):
        return model  # type: ignore[return-value]
    if isinstance(model, nn.Module):
        parts = [name for name, child in model.named_children() if hasattr(child, "group_names")]
        if parts:  # e.g. co-training's two view networks: each is a backbone
            raise DataError(f"{who}: a {type(model).__name__} has no named layer groups of its own; give one of "
                            f"its networks that has them: {', '.join('.' + p for p in parts)} "
                            f"(e.g. model.{parts[0]}, or saved_model.network.{parts[0]})"
                            + (f"; view_a reads the input columns [:{model.split}], view_b [{model.split}:]"
                               if isinstance(getattr(model, "split", None), int) else ""))
        raise DataError(f"{who}: a {type(model).__name__} has no named layer groups; wrap it with "
                        "qianyi.nn.as_backbone(module) first, which runs its children in order with nothing "
                        "between them (its own forward is not run: F.relu or torch.flatten written in forward "
                        "must become modules, nn.ReLU() or nn.Flatten(), e.g. in an nn.Sequential)")
    raise DataError(f"{who}: give a network (a qianyi Backbone, or a saved model from qianyi.load_model), "
                    f"got {type(model).__name__}")


def as_backbone(module: nn.Module, names: Sequence[str] | None = None, flatten_logits: bool = False,
                feature_layer: str | None = None, example_input: "torch.Tensor | None" = None,
                children_in_order: bool = False) -> Backbone:
    """Any network as a :class:`Backbone`: its children, in order, become named layer groups.

    ``module`` is an ``nn.Sequential``, or a module whose ``forward`` runs its children one after another with
    nothing between them (a torchvision ResNet with ``flatten_logits=True``, which flattens before the last
    child). Its own ``forward`` is never called: ``F.relu``, ``torch.flatten`` or a skip connection written in
    it would be lost, so a module with a ``forward`` of its own is refused unless checked or confirmed:
    ``example_input`` (one batch of inputs) runs the module and its chained children in eval mode and refuses
    the module if they differ; ``children_in_order=True`` says its forward is its children in order (unchecked).
    Group names are ``names`` or the children's own names; the last group is renamed ``logits`` and the
    one before it is ``features`` (or ``feature_layer``), so methods that address layers by role
    (``features``, ``logits``) work on it, and ``--freeze K`` / ``init_layers`` count its groups.

    >>> net = as_backbone(nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 3)), ["fc", "act", "out"])
    >>> net.group_names
    ('fc', 'act', 'logits')
    """
    children = list(module.named_children())
    if len(children) < 2:
        raise UnknownNameError(f"{type(module).__name__} has {len(children)} child module(s); a backbone needs at "
                               "least two (a feature part and a classifier): wrap them in an nn.Sequential")
    if names is not None and len(names) != len(children):
        raise UnknownNameError(f"{len(names)} names for {len(children)} child modules of {type(module).__name__}")
    labels = [str(n) for n in names] if names is not None else [n for n, _ in children]
    labels[-1] = "logits"
    groups = [(n, m) for n, (_, m) in zip(labels, children)]
    if flatten_logits:
        groups[-1] = ("logits", nn.Sequential(nn.Flatten(), groups[-1][1]))
    if len(set(labels)) != len(labels):
        raise UnknownNameError(f"layer group names must be unique, got {labels}")
    backbone = Backbone(groups, feature_layer)
    own_forward = type(module).forward not in (nn.Sequential.forward, nn.Module.forward)
    if example_input is not None:
        _check_chain(module, backbone, example_input, [n for n, _ in children])
    elif own_forward and not children_in_order:
        raise DataError(
            f"as_backbone: {type(module).__name__} has a forward of its own, which a backbone never runs: it "
            f"runs the children {', '.join(n for n, _ in children)} one after another, so anything forward does "
            "between them (F.relu, torch.flatten, a skip connection) would be silently lost. Pass "
            "example_input=<one batch of inputs> to check that the chained children give the module's outputs, "
            "or children_in_order=True if its forward is exactly its children in order; otherwise rebuild it as "
            "an nn.Sequential with those steps as modules (nn.ReLU(), nn.Flatten())")
    return backbone


def _check_chain(module: nn.Module, backbone: Backbone, example: object, children: list[str]) -> None:
    """Refuse ``backbone`` (``module``'s children chained) unless it gives ``module``'s outputs on ``example``
    (in eval mode, without gradients; every submodule's train/eval mode is put back after)."""
    name = type(module).__name__
    param = next(module.parameters(), None)
    x = torch.as_tensor(example) if not isinstance(example, torch.Tensor) else example
    if param is not None:
        x = x.to(param.device)
        if x.is_floating_point():
            x = x.to(param.dtype)
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            try:
                want = module(x)
            except Exception as exc:
                raise DataError(f"as_backbone: {name} fails on example_input of shape {tuple(x.shape)} "
                                f"({type(exc).__name__}: {str(exc)[:200]}); give one batch of its inputs") from None
            try:
                got = backbone(x).logits
            except Exception as exc:
                raise DataError(
                    f"as_backbone: {name}'s children ({', '.join(children)}) chained one after another fail on "
                    f"example_input ({type(exc).__name__}: {str(exc)[:200]}), so its forward does more between "
                    "them (e.g. torch.flatten); rebuild it as an nn.Sequential with those steps as modules "
                    "(nn.Flatten(), nn.ReLU()), or try flatten_logits=True if it flattens before its last child "
                    "only") from None
    finally:
        for m, mode in modes:
            m.training = mode
    if not isinstance(want, torch.Tensor):
        raise DataError(f"as_backbone: {name} returns a {type(want).__name__}, not a tensor of logits; a backbone "
                        "ends in the logits: wrap the part that gives them in an nn.Sequential")
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
        gap = (want - got).abs().max().item() if want.shape == got.shape else None
        differ = f"largest difference {gap:.3g}" if gap is not None else \
            f"shapes {tuple(want.shape)} and {tuple(got.shape)}"
        raise DataError(
            f"as_backbone: {name}'s children ({', '.join(children)}) chained one after another do not give "
            f"{name}'s outputs on example_input ({differ}): its forward does something between them (e.g. "
            "F.relu or a skip connection) that a backbone would silently lose; rebuild it as an nn.Sequential "
            "with those steps as modules (nn.ReLU(), nn.Flatten())")


class LogitsOnly(nn.Module):
    """``backbone`` with a forward that returns the logits tensor alone, for what needs a plain tensor out:
    ``torch.jit.trace``, ``torch.export`` (both tested), ``nn.Sequential(LogitsOnly(net), nn.Softmax(1))``;
    ONNX export is untested (it needs the ``onnx`` and ``onnxscript`` packages).

    >>> deployable = LogitsOnly(qianyi.load_model(DIR).network).eval()   # doctest: +SKIP
    >>> torch.jit.trace(deployable, example_batch)                        # doctest: +SKIP
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).logits


def copy_pretrained(model: "Backbone", state: dict[str, torch.Tensor], mapping: dict[str, str], name: str,
                    where: str, not_ours: str, stem: str, classifier: str, corrupt: str) -> None:
    """Copy a pretrained file's tensors into ``model`` by ``mapping`` (file key -> model key), strictly.

    Keys under ``classifier`` (the ImageNet head) are ignored; a missing, unexpected or mis-shaped tensor is a
    :class:`DataError` that names ``where`` and the key and ends with ``not_ours`` (what file to give); a
    non-finite one ends with ``corrupt``. A grey ``stem`` convolution gets the RGB filters summed over their
    input channels (scaled for other widths). Files saved from ``nn.DataParallel`` (``module.``) are read too.
    """
    own = model.state_dict()
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    for src, key in mapping.items():
        if src not in state:
            if src.endswith("num_batches_tracked"):  # older files lack the counters
                continue
            raise DataError(f"{where} has no tensor {src!r}; {not_ours}")
        t, want = state[src], own[key]
        if src == stem and t.shape != want.shape and t.dim() == 4 and t.shape[1] == 3 \
                and t.shape[0] == want.shape[0] and t.shape[2:] == want.shape[2:]:
            t = t.sum(1, keepdim=True).repeat(1, want.shape[1], 1, 1) / want.shape[1]
        if t.shape != want.shape:
            raise DataError(f"{where}: tensor {src!r} has shape {tuple(t.shape)} but {name} needs "
                            f"{tuple(want.shape)}; {not_ours}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise DataError(f"{where}: tensor {src!r} holds NaN or infinite values; the file is corrupt: {corrupt}")
        own[key] = t.to(want.dtype)
    extra = [k for k in state if k not in mapping and not k.startswith(classifier)]
    if extra:
        raise DataError(f"{where} holds {len(extra)} tensor(s) {name} does not have (first: {extra[0]!r}); "
                        f"{not_ours}")
    model.load_state_dict(own)


def mark_pretrained(model: "Backbone", spec: dict, groups: Sequence[str], lr_mult: float,
                    digest: str | None) -> "Backbone":
    """Record on a named network what rebuilds it (``spec``, with the weights' SHA-256 when ``digest``) and, with
    weights, which ``groups`` are pretrained and learn at ``lr_mult`` x the learning rate (the others at 1x)."""
    model.spec = {**spec, **({"pretrained_sha256": digest} if digest is not None else {})}
    model.lr_mults = {n: lr_mult if n in groups else 1.0 for n in model.group_names} if digest is not None else {}
    model.pretrained_groups = frozenset(groups if digest is not None else ())
    return model

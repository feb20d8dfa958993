"""Networks: backbones with named layer groups, gradient reversal, domain discriminators."""
from .backbones import Backbone, LayerOutputs, backbone_for, lenet, mlp
from .layers import DomainDiscriminator, GradientReversal, grad_reverse

__all__ = ["Backbone", "DomainDiscriminator", "GradientReversal", "LayerOutputs", "backbone_for", "grad_reverse",
           "lenet", "mlp"]

"""Networks: backbones with named layer groups, gradient reversal, domain discriminators, EMA, inference."""
from .backbones import Backbone, LayerOutputs, LogitsOnly, as_backbone, backbone_for, lenet, mlp
from .inference import accuracy, predict_features, predict_logits
from .layers import DomainDiscriminator, GradientReversal, ema_update_, grad_reverse

__all__ = ["Backbone", "DomainDiscriminator", "GradientReversal", "LayerOutputs", "LogitsOnly", "accuracy", "as_backbone",
           "backbone_for",
           "ema_update_", "grad_reverse", "lenet", "mlp", "predict_features", "predict_logits"]

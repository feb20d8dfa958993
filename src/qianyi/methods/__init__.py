"""Transfer methods, each a small module adding its loss terms (or its training step) to the one engine."""
from .base import Batch, Method, ParamGroup, StepContext
from .registry import METHODS, available_methods, get_method, register

__all__ = ["Batch", "METHODS", "Method", "ParamGroup", "StepContext", "available_methods", "get_method", "register"]

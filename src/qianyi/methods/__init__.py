"""Transfer methods, each a small module adding its loss terms to the one engine."""
from .base import Batch, Method
from .registry import METHODS, available_methods, get_method, register

__all__ = ["Batch", "METHODS", "Method", "available_methods", "get_method", "register"]

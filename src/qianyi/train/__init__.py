"""The one training engine and single runs."""
from .checkpoint import load_checkpoint, save_checkpoint
from .engine import BatchStream, FitResult, TrainConfig, Trainer, accuracy, predict_logits, resolve_device
from .run import RunResult, run

__all__ = ["BatchStream", "FitResult", "RunResult", "TrainConfig", "Trainer", "accuracy", "load_checkpoint",
           "predict_logits", "resolve_device", "run", "save_checkpoint"]

"""The one training engine and single runs."""
from ..nn.inference import accuracy, predict_features, predict_logits
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .engine import FitResult, Trainer, TrainData, resolve_device
from .result import RunResult
from .run import run
from .store import RunStore
from .streams import BatchStream
from .transitive import run_via
from .weights import load_initial_weights

__all__ = ["BatchStream", "FitResult", "RunResult", "RunStore", "TrainConfig", "TrainData", "Trainer", "accuracy",
           "load_checkpoint", "load_initial_weights", "predict_features", "predict_logits", "resolve_device", "run",
           "run_via", "save_checkpoint"]

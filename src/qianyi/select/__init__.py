"""Label-free model selection: scores that rank trained models without target labels."""
from .validators import dev_details, dev_score, source_val_accuracy

__all__ = ["dev_details", "dev_score", "source_val_accuracy"]

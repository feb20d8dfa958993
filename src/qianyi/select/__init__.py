"""Label-free model selection: validators that rank trained models without target labels.

A validator sees only :class:`SelectionData` (labelled source train and validation, unlabelled
target train split) through a :class:`Predictions` computed from it; see :mod:`.validators`.
"""
from .data import Predictions, SelectionData, SplitOutputs
from .validators import (VALIDATORS, Validator, atc_from_probs, available_validators, dev_details, get_validator,
                         register_validator, score_all)

__all__ = ["VALIDATORS", "Predictions", "SelectionData", "SplitOutputs", "Validator", "atc_from_probs",
           "available_validators", "dev_details", "get_validator", "register_validator", "score_all"]

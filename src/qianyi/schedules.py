"""Schedules shared by the engine and the methods (Ganin et al., JMLR 2016, section 5.2.2)."""
from __future__ import annotations

import math


def adaptation_ramp(progress: float, gamma: float = 10.0) -> float:
    """Adaptation weight lambda_p = 2 / (1 + exp(-gamma * p)) - 1, rising from 0 to ~1 over training."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def annealed_lr(lr0: float, progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Learning rate mu_p = mu_0 / (1 + alpha * p) ** beta."""
    return lr0 / (1.0 + alpha * progress) ** beta

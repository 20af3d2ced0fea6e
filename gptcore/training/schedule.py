"""The learning-rate schedule: linear warmup, then cosine decay or a constant rate with a linear warm-down.

``progress`` (0 to 1) is how far the run is; a time-budgeted run measures it by the clock, so its
warm-down ends when the budget does.
"""

from __future__ import annotations

import math

from ..config import TrainConfig


def learning_rate(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_iters`` steps, then cosine or constant-then-linear decay to min_lr."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    min_lr = cfg.lr * cfg.min_lr_ratio
    progress = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "cosine":
        return min_lr + (cfg.lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    start = 1.0 - cfg.warmdown_frac
    if progress <= start:
        return cfg.lr
    return cfg.lr + (min_lr - cfg.lr) * (progress - start) / max(cfg.warmdown_frac, 1e-9)

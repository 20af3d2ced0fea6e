"""Model construction from a config, and the exact parameter count."""

from __future__ import annotations

import torch.nn as nn

from ..config import ModelConfig
from .bigram import Bigram
from .gpt import GPT
from .kv_cache import KVCache


def build_model(config: ModelConfig) -> nn.Module:
    return Bigram(config) if config.arch == "bigram" else GPT(config)


def count_parameters(model: nn.Module) -> int:
    """Every trainable scalar, counted once (a tied matrix once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["GPT", "Bigram", "KVCache", "build_model", "count_parameters"]

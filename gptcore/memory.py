"""How much memory a config needs, estimated from its sizes before anything is allocated.

A config that cannot fit is refused with the estimate and the limit in one sentence, instead of an
allocator error (or a machine swapping to death) after minutes of work. The estimate is deliberately
rough, on the high side: weights, gradients and the two AdamW moments in float32, plus the activations a
training step keeps for its backward pass; for inference, the weights and a full key-value cache.
"""

from __future__ import annotations

import os

import torch

from .config import ModelConfig, RunConfig, TrainConfig
from .device import resolve_device
from .errors import ConfigError

FLOAT_BYTES = 4
ID_BYTES = 8  # token ids are int64


def parameter_count(m: ModelConfig) -> int:
    """The exact number of trainable scalars ``build_model(m)`` allocates (a test checks it)."""
    V, C, L = m.vocab_size, m.n_embd, m.n_layer
    if m.arch == "bigram":
        return V * V
    bias = 1 if m.bias else 0
    norm = C * (1 + bias)
    block = 2 * norm + (C * 3 * C + 3 * C * bias) + (C * C + C * bias) + (C * 4 * C + 4 * C * bias) \
        + (4 * C * C + C * bias)
    total = V * C + L * block + (norm if m.norm == "pre" else 0)
    total += m.block_size * C if m.pos_emb == "learned" else 0  # rope's angles are computed, not learned
    total += 0 if m.tie_embeddings else V * C
    return total


def estimate_bytes(m: ModelConfig, t: TrainConfig | None = None) -> int:
    """Bytes for training with ``t`` (weights, gradients, optimizer moments, kept activations, logits), or
    for inference at batch 1 when ``t`` is None (weights and a full key-value cache)."""
    params = parameter_count(m)
    if t is None:
        return FLOAT_BYTES * (params + 2 * m.n_layer * m.block_size * m.n_embd)
    tokens = t.batch_size * m.block_size
    per_layer = 16 * m.n_embd + 2 * m.n_head * m.block_size  # activations and attention weights per token
    activations = tokens * (m.n_layer * per_layer + 3 * m.vocab_size)
    batches = 2 * ID_BYTES * tokens * t.grad_accum  # a step's micro-batches (inputs and targets) are drawn first
    return FLOAT_BYTES * (4 * params + activations) + batches


def memory_limit(device: torch.device) -> int:
    """What one process may use: the GPU's memory on CUDA, the machine's RAM otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def human_bytes(n: int | float) -> str:
    """``n`` bytes in decimal units; an integer of any size (an estimate for absurd sizes) stays exact
    until it is small enough to print."""
    if n >= 10**18:
        return f"{int(n) // 10**15:,} PB"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000
    return f"{n:,.1f} PB"


def check_fits(config: RunConfig | ModelConfig, device: str | torch.device = "cpu", training: bool = True) -> None:
    """Raise ConfigError when ``config`` would need more memory than ``device`` has (training a run config,
    or inference for a model config or ``training=False``)."""
    device = resolve_device(device)
    model = config.model if isinstance(config, RunConfig) else config
    train = config.train if isinstance(config, RunConfig) and training else None
    need, limit = estimate_bytes(model, train), memory_limit(device)
    if need > limit:
        what = "training this model" if train is not None else "this model"
        raise ConfigError(f"{what} needs about {human_bytes(need)} of memory ({parameter_count(model):,} parameters"
                          + (f", batch {train.batch_size}x{model.block_size}" if train is not None else "")
                          + (f" in {train.grad_accum:,} micro-batches" if train is not None and train.grad_accum > 1 else "")
                          + f"); the limit on {device.type} is {human_bytes(limit)}")

"""One optimisation step, shared by the trainer and the benchmark so the benchmark times the trainer."""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ..device import autocast


def train_step(
    model: nn.Module,
    optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast_dtype: torch.dtype,
    grad_clip: float,
    on_backward: Callable[[nn.Module], None] | None = None,
) -> torch.Tensor:
    """Forward under autocast on the batch's device, backward, clip, optimizer step; returns the batch
    loss as a 0-d tensor still on the device (reading it forces a GPU sync, so the caller decides when)."""
    return accumulated_step(model, optimizer, [(x, y)], autocast_dtype, grad_clip, on_backward)


def accumulated_step(
    model: nn.Module,
    optimizer,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    autocast_dtype: torch.dtype,
    grad_clip: float,
    on_backward: Callable[[nn.Module], None] | None = None,
) -> torch.Tensor:
    """One step over several micro-batches (gradient accumulation): each loss is scaled by 1/len(batches)
    so the gradient is the mean over them, as one batch of them all would give. A DistributedDataParallel
    model averages gradients across processes only at the last micro-batch (``no_sync`` before it).
    Returns the mean loss, detached, on the device."""
    total = None
    for i, (x, y) in enumerate(batches):
        last = i == len(batches) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(x.device, autocast_dtype):
                _, loss = model(x, y)
            (loss / len(batches)).backward()
        total = loss.detach() if total is None else total + loss.detach()
    if on_backward is not None:
        on_backward(model)
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / len(batches)

"""One optimisation step, shared by the trainer and the benchmark so the benchmark times the trainer."""

from __future__ import annotations

from typing import Callable

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
    with autocast(x.device, autocast_dtype):
        _, loss = model(x, y)
    loss.backward()
    if on_backward is not None:
        on_backward(model)
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()

"""What a checkpoint's metrics.json says about its run: one schema, written while training and at the end."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import RunConfig
from ..models import count_parameters

VAL_LOSS_DEFINITION = ("mean cross-entropy over the whole validation split (last 10%), "
                       "non-overlapping windows of block_size, float32")


def run_metrics(model: nn.Module, config: RunConfig, *, val_loss: float | None, best_step: int, tokens_seen: int,
                wall: float, history: list[dict], status: str, command: str, corpus: str, device: str,
                val_nats_per_char: float | None = None) -> dict:
    """``val_loss`` is the whole-split loss of the kept weights per token, and ``val_nats_per_char`` the same
    total per character of the validation text (both None while the run is going on);
    ``status`` is "training", "finished" or "stopped"."""
    return {
        "val_loss": val_loss,
        "val_loss_definition": VAL_LOSS_DEFINITION,
        "val_nats_per_char": val_nats_per_char,
        "tokenizer": config.train.tokenizer,
        "params": count_parameters(model),
        "best_step": best_step,
        "steps": history[-1]["step"] if history else 0,
        "tokens_seen": tokens_seen,
        "wall_time_s": round(wall, 2),
        "tokens_per_sec": round(tokens_seen / wall, 1) if wall else None,
        "status": status,
        "command": command,
        "corpus": corpus,
        "device": device,
        "torch": torch.__version__,
        "history": history,
        "config": config.to_dict(),
    }

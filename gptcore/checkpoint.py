"""The checkpoint directory: what files a model is saved as, and loading them back onto any device.

Layout of a checkpoint directory:
  model.pt        tensors only, plus a sha256 of them, loaded with ``weights_only=True``
  config.json     the run config (model and training)
  tokenizer.json  the tokenizer, with its "type"
  metrics.json    validation loss, parameter count, tokens seen, wall time, the command, the curve
  draft.pt        (optional) the n-gram table that speeds up sampling (gptcore/inference/draft.py)
  train_state.pt  (optional) optimizer and RNG state of the latest step, for ``--resume``

Weights are stored from the CPU (``gptcore.storage``), so the files do not depend on the device that
trained them, and load onto whatever device the caller names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .config import RunConfig
from .device import resolve_device
from .errors import CheckpointError
from .inference.draft import NgramDraft
from .models import build_model
from .storage import load_tensors, read_json, save_tensors, write_json
from .tokenizers import Tokenizer, load_tokenizer

WEIGHTS, CONFIG, TOKENIZER, METRICS, DRAFT, TRAIN_STATE = (
    "model.pt", "config.json", "tokenizer.json", "metrics.json", "draft.pt", "train_state.pt",
)
# what a checkpoint ships with; TRAIN_STATE only serves --resume and is git-ignored
SHIPPED_FILES = (WEIGHTS, CONFIG, TOKENIZER, METRICS, DRAFT)


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: Tokenizer
    config: RunConfig
    metrics: dict
    path: Path
    draft: NgramDraft | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, config: RunConfig, tokenizer: Tokenizer,
                    metrics: dict) -> None:
    """Write (or overwrite) a checkpoint; each file is replaced atomically, weights first.

    Weights are stored in ``config.train.save_dtype`` and loaded back as float32.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS, model.state_dict(), getattr(torch, config.train.save_dtype))
    write_json(directory / CONFIG, config.to_dict())
    tokenizer.save(directory / TOKENIZER)
    write_json(directory / METRICS, metrics)


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint for inference (eval mode) onto ``device``, with a clear CheckpointError for any
    problem with its files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    try:
        config = RunConfig.from_dict(read_json(directory / CONFIG))
        config.model.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG} is not a valid run config ({e})") from None
    tokenizer = load_tokenizer(directory / TOKENIZER)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CheckpointError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model expects {config.model.vocab_size}"
        )
    model = build_model(config.model)
    try:
        model.load_state_dict(load_tensors(directory / WEIGHTS))
    except RuntimeError as e:
        raise CheckpointError(f"weights do not match the config in {directory}: {str(e).splitlines()[0]}") from None
    model.to(resolve_device(device)).eval()
    metrics = read_json(directory / METRICS) if (directory / METRICS).exists() else {}
    draft = NgramDraft.load(directory / DRAFT) if (directory / DRAFT).exists() else None
    if draft is not None and draft.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"{directory / DRAFT} was fit on {draft.vocab_size} tokens, not {tokenizer.vocab_size}")
    return Checkpoint(model, tokenizer, config, metrics, directory, draft)

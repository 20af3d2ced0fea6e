"""Checkpoints: one directory per model, every file written atomically, weights verified on load.

Layout of a checkpoint directory:
  model.pt        tensors only, plus a sha256 of them, loaded with ``weights_only=True``
  config.json     the run config (model and training)
  tokenizer.json  the character vocabulary
  metrics.json    validation loss, parameter count, tokens seen, wall time, the command, the curve
  draft.pt        (optional) the n-gram table that speeds up sampling (gptcore/draft.py)
  train_state.pt  (optional) optimizer and RNG state of the latest step, for ``--resume``
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .config import RunConfig
from .errors import CheckpointError
from .tokenizer import CharTokenizer

if TYPE_CHECKING:
    from .draft import NgramDraft

WEIGHTS, CONFIG, TOKENIZER, METRICS, DRAFT, TRAIN_STATE = (
    "model.pt", "config.json", "tokenizer.json", "metrics.json", "draft.pt", "train_state.pt",
)
# what a checkpoint ships with; TRAIN_STATE only serves --resume and is git-ignored
SHIPPED_FILES = (WEIGHTS, CONFIG, TOKENIZER, METRICS, DRAFT)
FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: Path, obj) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def safe_torch_load(path: Path) -> dict:
    """``torch.load`` that never unpickles arbitrary objects and turns damage into CheckpointError."""
    if not Path(path).is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is truncated or damaged ({first[:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a gptcore state")
    return obj


def save_weights(path: Path, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Save tensors (floating ones cast to ``dtype`` if given) with a checksum of what is stored."""
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in state.items()}
    atomic_torch_save(path, {"format": FORMAT_VERSION, "sha256": tensors_digest(state), "tensors": state})


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    obj = safe_torch_load(path)
    if obj.get("format") != FORMAT_VERSION or "tensors" not in obj:
        raise CheckpointError(f"{path} is not a gptcore weights file (format {obj.get('format')!r})")
    if tensors_digest(obj["tensors"]) != obj.get("sha256"):
        raise CheckpointError(f"{path} failed its checksum: the weights were modified or damaged")
    return obj["tensors"]


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object")
    return data


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: CharTokenizer
    config: RunConfig
    metrics: dict
    path: Path
    draft: "NgramDraft | None" = None

    @property
    def name(self) -> str:
        return self.path.name


def save_checkpoint(
    directory: Path, model: nn.Module, config: RunConfig, tokenizer: CharTokenizer, metrics: dict
) -> None:
    """Write (or overwrite) a checkpoint; each file is replaced atomically, weights first.

    Weights are stored in ``config.train.save_dtype`` and loaded back as float32.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(directory / WEIGHTS, model.state_dict(), getattr(torch, config.train.save_dtype))
    write_json(directory / CONFIG, config.to_dict())
    tokenizer.save(directory / TOKENIZER)
    write_json(directory / METRICS, metrics)


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint for inference (eval mode), with a clear CheckpointError for any problem."""
    from .draft import NgramDraft
    from .models import build_model

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    try:
        config = RunConfig.from_dict(read_json(directory / CONFIG))
        config.model.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG} is not a valid run config ({e})") from None
    tokenizer = CharTokenizer.load(directory / TOKENIZER)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CheckpointError(
            f"tokenizer has {tokenizer.vocab_size} characters but the model expects {config.model.vocab_size}"
        )
    model = build_model(config.model)
    try:
        model.load_state_dict(load_weights(directory / WEIGHTS))
    except RuntimeError as e:
        raise CheckpointError(f"weights do not match the config in {directory}: {str(e).splitlines()[0]}") from None
    model.eval()
    metrics = read_json(directory / METRICS) if (directory / METRICS).exists() else {}
    draft = NgramDraft.load(directory / DRAFT) if (directory / DRAFT).exists() else None
    if draft is not None and draft.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"{directory / DRAFT} was fit on {draft.vocab_size} tokens, not {tokenizer.vocab_size}")
    return Checkpoint(model, tokenizer, config, metrics, directory, draft)

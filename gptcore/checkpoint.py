"""The checkpoint directory: what files a model is saved as, and loading them back onto any device.

Layout of a checkpoint directory:
  model.safetensors  the weights, with a sha256 of them in its metadata (checkpoints written before
                  safetensors have model.pt instead: torch's format, loaded with ``weights_only=True``)
  model-2.safetensors, model-3.safetensors, ...  (only when a save bounds the size of a file, as for a
                  Hugging Face Space's 10 MB) the rest of the weights, each file with its own sha256
  config.json     the run config (model and training)
  tokenizer.json  the tokenizer, with its "type"
  metrics.json    validation loss, parameter count, tokens seen, wall time, the command, the curve
  draft.pt        (optional) the n-gram table that speeds up sampling (gptcore/inference/draft.py)
  manifest.json   every file above with its sha256, replaced last (see below)
  train_state.pt  (optional) optimizer and RNG state of the latest step, for ``--resume``

A checkpoint changes as a whole (``gptcore.storage.commit_files``): new files are staged, the manifest is
replaced in one rename, then the staged files are renamed into place, and a reader follows the manifest.
A crash at any point leaves the previous checkpoint or the new one, never new weights beside old metrics.
Checkpoints written before manifests existed (the shipped ones) load as their files are.

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
from .memory import check_fits, parameter_count
from .models import build_model
from .storage import (MANIFEST, commit_files, json_bytes, load_tensors, read_json, resolve_files,  # noqa: F401
                      safetensors_parts, tensors_bytes)  # (MANIFEST: part of the layout)
from .tokenizers import Tokenizer, load_tokenizer

WEIGHTS, CONFIG, TOKENIZER, METRICS, DRAFT, TRAIN_STATE = (
    "model.safetensors", "config.json", "tokenizer.json", "metrics.json", "draft.pt", "train_state.pt",
)
LEGACY_WEIGHTS = "model.pt"  # the weights of checkpoints written before safetensors
MAX_WEIGHT_FILES = 16  # model.safetensors and its further parts, when a save bounds the size of each
WEIGHT_PARTS = tuple(f"model-{i}.safetensors" for i in range(2, MAX_WEIGHT_FILES + 1))
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
                    metrics: dict, max_file_bytes: int | None = None) -> None:
    """Write (or overwrite) a checkpoint as one change.

    Weights are stored in ``config.train.save_dtype`` and loaded back as float32; with ``max_file_bytes``, in
    as many files as keep each under that size (:data:`WEIGHT_PARTS`).
    """
    try:
        parts = safetensors_parts(model.state_dict(), getattr(torch, config.train.save_dtype), max_file_bytes)
    except ValueError as e:
        raise CheckpointError(f"the weights cannot be saved in files under {max_file_bytes:,} bytes: {e}") from None
    if len(parts) > MAX_WEIGHT_FILES:
        raise CheckpointError(f"the weights would take {len(parts)} files of under {max_file_bytes:,} bytes; "
                              f"a checkpoint has at most {MAX_WEIGHT_FILES}")
    weights = dict(zip((WEIGHTS,) + WEIGHT_PARTS, parts))
    commit_files(directory, {
        **weights,
        CONFIG: json_bytes(config.to_dict()),
        TOKENIZER: json_bytes(tokenizer.to_dict()),
        METRICS: json_bytes(metrics),
    }, remove=(LEGACY_WEIGHTS, *(n for n in WEIGHT_PARTS if n not in weights)))  # an older save's are superseded


def save_metrics(directory: str | os.PathLike, metrics: dict) -> None:
    """Replace a checkpoint's metrics.json (as a change of the whole checkpoint)."""
    commit_files(directory, {METRICS: json_bytes(metrics)})


def save_draft(directory: str | os.PathLike, draft: NgramDraft) -> None:
    """Store (or replace) a checkpoint's n-gram draft."""
    commit_files(directory, {DRAFT: tensors_bytes(draft.tensors())})


def weights_file(directory: str | os.PathLike, files: dict[str, Path] | None = None) -> Path:
    """The weights file a checkpoint directory holds: model.safetensors, or an older checkpoint's model.pt.
    ``files``: the directory's :func:`resolve_files`, when the caller has it already."""
    directory = Path(directory)
    files = resolve_files(directory) if files is None else files
    for name in (WEIGHTS, LEGACY_WEIGHTS):
        if name in files:
            return files[name]
    legacy = directory / LEGACY_WEIGHTS
    return legacy if legacy.exists() and not (directory / WEIGHTS).exists() else directory / WEIGHTS


def weights_files(directory: str | os.PathLike, files: dict[str, Path] | None = None) -> list[Path]:
    """Every file of a checkpoint's weights: :func:`weights_file`, then the further parts of a save that bounded
    its files' size (those its manifest names or, without a manifest, those in the directory)."""
    directory = Path(directory)
    files = resolve_files(directory) if files is None else files
    first = weights_file(directory, files)
    if first.name == LEGACY_WEIGHTS:
        return [first]
    if files:
        return [first] + [files[n] for n in WEIGHT_PARTS if n in files]
    return [first] + [directory / n for n in WEIGHT_PARTS if (directory / n).exists()]


def checkpoint_files(directory: str | os.PathLike) -> list[Path]:
    """The files a checkpoint ships with (weights, config, tokenizer, metrics, draft), those that exist."""
    directory = Path(directory)
    return weights_files(directory) + [directory / n for n in SHIPPED_FILES[1:] if (directory / n).exists()]


def load_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The tensors of every weights file, each file checked (checksum, finite numbers); a tensor stored twice is
    a CheckpointError."""
    tensors: dict[str, torch.Tensor] = {}
    for path in paths:
        part = load_tensors(path)
        check_finite(part, path)
        again = sorted(tensors.keys() & part.keys())
        if again:
            raise CheckpointError(f"{path} holds {again[0]} again: the weights files belong to different saves")
        tensors.update(part)
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Refuse weights holding NaN or infinity (CheckpointError naming the tensor): such a model loads, then
    fails or writes nonsense at every use, so it is refused once, here."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source} holds NaN or infinite numbers in {name}: the model cannot be used")


def check_tied(tensors: dict[str, torch.Tensor], config: RunConfig, source: str | os.PathLike) -> None:
    """A config that ties the output head to the token embedding must come with equal stored copies of them
    (as every tied checkpoint is saved); otherwise loading would silently keep one and drop the other."""
    head, embedding = tensors.get("lm_head.weight"), tensors.get("tok_emb.weight")
    if config.model.tie_embeddings and head is not None and embedding is not None and not torch.equal(head, embedding):
        raise CheckpointError(f"{source}: the config ties lm_head to tok_emb (tie_embeddings) but the stored "
                              f"weights differ: the config does not belong to these weights")


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint for inference (eval mode) onto ``device``, with a clear CheckpointError for any
    problem with its files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    files = resolve_files(directory)
    path = lambda name: files.get(name, directory / name)  # noqa: E731
    device = resolve_device(device)  # a device this machine lacks is the caller's mistake, not the checkpoint's
    try:
        config = RunConfig.from_dict(read_json(path(CONFIG)))
        config.model.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG} is not a valid run config ({e})") from None
    check_fits(config.model, device, training=False)
    tokenizer = load_tokenizer(path(TOKENIZER))
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CheckpointError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model expects {config.model.vocab_size}"
        )
    weights = weights_files(directory, files)
    tensors = load_weights(weights)
    check_tied(tensors, config, weights[0])
    stored = sum(t.numel() for name, t in tensors.items()
                 if not (config.model.tie_embeddings and name == "lm_head.weight"))
    needed = parameter_count(config.model)
    if stored != needed:  # checked before allocating a model the file cannot fill
        raise CheckpointError(f"weights do not match the config in {directory}: its weights "
                              f"({', '.join(w.name for w in weights)}) hold {stored:,} numbers, the config needs "
                              f"{needed:,}")
    model = build_model(config.model)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(f"weights do not match the config in {directory}: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    metrics = read_json(path(METRICS)) if path(METRICS).exists() else {}
    draft = NgramDraft.load(path(DRAFT)) if path(DRAFT).exists() else None
    if draft is not None and draft.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"{directory / DRAFT} was fit on {draft.vocab_size} tokens, not {tokenizer.vocab_size}")
    return Checkpoint(model, tokenizer, config, metrics, directory, draft)

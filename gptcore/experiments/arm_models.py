"""The weights of one seed per ablation arm, kept beside a study's results so that they can be opened.

A study records each run's losses and deletes its checkpoint. With ``ablate --keep-models`` the first seed of
every arm keeps its best checkpoint (the one whose whole-split loss the study records) in
``<out>/models/<run key>/``, weights stored in float16 so that every file stays under the 10 MB a Hugging Face
Space takes without Git LFS. The key is the run's exact config, so the base model that several studies share is
kept once. The kept model's metrics.json holds its own whole-split loss (of the float16 weights) beside the
loss the study recorded for that run. The n-gram draft is left out: it depends on the corpus only, and
sampling without it gives the same text distribution.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..checkpoint import METRICS, WEIGHTS, load_checkpoint, save_checkpoint
from ..config import RunConfig
from ..data import Corpus
from ..errors import CheckpointError
from ..evaluate import split_loss
from ..memory import parameter_count
from ..storage import resolve_files

MODELS_DIR = "models"
MAX_FILE_BYTES = 10_000_000  # a Space takes files up to 10 MB without Git LFS
KEPT_DTYPE = "float16"
FLOAT16_BYTES = 2


def model_dir(out_dir: str | Path, key: str) -> Path:
    """Where the kept model of the run with key ``key`` (``ablate._run_key``) lives."""
    return Path(out_dir) / MODELS_DIR / key


def has_model(directory: Path) -> bool:
    """Whether ``directory`` holds a complete kept model (its checkpoint's manifest names weights and metrics)."""
    try:
        files = resolve_files(directory)
    except CheckpointError:
        return False
    return WEIGHTS in files and METRICS in files


def kept_bytes(config: RunConfig) -> int:
    """The size of the kept weights file, less its small header."""
    return parameter_count(config.model) * FLOAT16_BYTES


def too_big_to_keep(config: RunConfig) -> str | None:
    """Why the model of ``config`` cannot be kept as files under :data:`MAX_FILE_BYTES`, or None."""
    size = kept_bytes(config)
    if size < MAX_FILE_BYTES:
        return None
    return (f"its weights would be {size / 1e6:.1f} MB in {KEPT_DTYPE}, over the {MAX_FILE_BYTES / 1e6:.0f} MB "
            f"a file may have")


def keep_model(work_dir: Path, destination: Path, corpus: Corpus, recorded_val_loss: float | None,
               kept_by: str) -> dict:
    """Store the best checkpoint of the finished run in ``work_dir`` at ``destination`` in float16 and return
    its metrics: the whole-split loss of the stored weights (measured on them, after the float16 rounding),
    the loss of the run as trained (``trained_val_loss``) and the loss the study recorded for that run and seed
    (the same unless the run was trained again on another machine)."""
    checkpoint = load_checkpoint(work_dir)
    config = RunConfig(checkpoint.config.model, dataclasses.replace(checkpoint.config.train, save_dtype=KEPT_DTYPE))
    save_checkpoint(destination, checkpoint.model, config, checkpoint.tokenizer, {})
    stored = load_checkpoint(destination)
    metrics = {key: value for key, value in checkpoint.metrics.items() if key not in ("command", "corpus")}
    metrics.update({
        "val_loss": split_loss(stored.model, corpus.val, config.model.block_size),
        "val_loss_definition": "mean cross-entropy over the whole validation split of these (float16) weights, "
                               "non-overlapping windows of block_size, float32",
        "trained_val_loss": checkpoint.metrics.get("val_loss"),
        "recorded_val_loss": recorded_val_loss,
        "seed": config.train.seed,
        "kept_by": kept_by,
    })
    save_checkpoint(destination, checkpoint.model, config, checkpoint.tokenizer, metrics)
    return metrics

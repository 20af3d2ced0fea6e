"""The weights of one seed per ablation arm, kept beside a study's results so that they can be opened.

A study records each run's losses and deletes its checkpoint. With ``ablate --keep-models`` the first seed of every
arm keeps its best checkpoint (the one whose whole-split loss the study records) in
``<out>/models/<study>-<arm>/``, weights stored in float16, in as many files as keep every file under the 10 MB a
Hugging Face Space takes without Git LFS. A model is found by its run's exact config (:mod:`.run_identity`), so the base model
that several studies share is kept once, under the name of the study that kept it first. The kept model's
metrics.json holds its own whole-split loss (of the float16 weights) beside the loss the study recorded for that
run. The n-gram draft is left out: it depends on the corpus only, and sampling without it gives the same text
distribution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..bounded import read_json_file
from ..checkpoint import CONFIG, MAX_WEIGHT_FILES, METRICS, WEIGHTS, load_checkpoint, save_checkpoint
from ..config import RunConfig
from ..data import Corpus
from ..errors import CheckpointError, GptcoreError
from ..evaluate import nats_per_char, split_loss
from ..memory import human_bytes, parameter_count
from ..models import build_model
from ..storage import resolve_files, size_groups
from .run_identity import config_key

MODELS_DIR = "models"
MAX_FILE_BYTES = 10_000_000  # a Space takes files up to 10 MB without Git LFS
KEPT_DTYPE = "float16"
FLOAT16_BYTES = 2


def model_dir(out_dir: str | Path, study: str, arm: str) -> Path:
    """Where the model kept for ``study``'s ``arm`` is written."""
    return Path(out_dir) / MODELS_DIR / f"{study}-{arm}"


def has_model(directory: Path) -> bool:
    """Whether ``directory`` holds a complete kept model (its checkpoint's manifest names weights and metrics)."""
    try:
        files = resolve_files(directory)
    except (CheckpointError, OSError):
        return False
    return WEIGHTS in files and METRICS in files


def find_model(out_dir: str | Path, config: RunConfig | dict) -> Path | None:
    """The kept model in ``out_dir`` of the run with this config (whichever study kept it), or None."""
    wanted = config_key(config.to_dict() if isinstance(config, RunConfig) else config)
    try:
        candidates = sorted(p for p in (Path(out_dir) / MODELS_DIR).iterdir() if p.is_dir())
    except OSError:
        return None
    for directory in candidates:
        try:
            found = config_key(read_json_file(directory / CONFIG))
        except GptcoreError:
            continue
        if found == wanted and has_model(directory):
            return directory
    return None


def kept_bytes(config: RunConfig) -> int:
    """The size of the kept weights, less their files' small headers."""
    return parameter_count(config.model) * FLOAT16_BYTES


def too_big_to_keep(config: RunConfig) -> str | None:
    """Why the model of ``config`` cannot be kept in files under :data:`MAX_FILE_BYTES` each, or None."""
    with torch.device("meta"):  # the tensors' shapes, without their memory
        stored = build_model(config.model).state_dict()
    try:
        files = len(size_groups({name: t.numel() * FLOAT16_BYTES for name, t in stored.items()}, MAX_FILE_BYTES))
    except ValueError as e:
        return f"in {KEPT_DTYPE}, {e}"
    if files > MAX_WEIGHT_FILES:
        return (f"its weights would take {files} files of under {human_bytes(MAX_FILE_BYTES)}, more than a "
                f"checkpoint has ({MAX_WEIGHT_FILES})")
    return None


def keep_model(work_dir: Path, destination: Path, corpus: Corpus, recorded_val_loss: float | None,
               kept_by: str) -> dict:
    """Store the best checkpoint of the finished run in ``work_dir`` at ``destination`` in float16 and return
    its metrics: the whole-split loss of the stored weights (measured on them, after the float16 rounding),
    the loss of the run as trained (``trained_val_loss``) and the loss the study recorded for that run and seed
    (the same unless the run was trained again on another machine)."""
    checkpoint = load_checkpoint(work_dir)
    config = RunConfig(checkpoint.config.model, dataclasses.replace(checkpoint.config.train, save_dtype=KEPT_DTYPE))
    save_checkpoint(destination, checkpoint.model, config, checkpoint.tokenizer, {}, MAX_FILE_BYTES)
    stored = load_checkpoint(destination)
    metrics = {key: value for key, value in checkpoint.metrics.items() if key not in ("command", "corpus")}
    loss = split_loss(stored.model, corpus.val, config.model.block_size)
    metrics.update({
        "val_loss": loss,
        "val_nats_per_char": nats_per_char(loss, corpus.val, checkpoint.tokenizer),
        "val_loss_definition": "mean cross-entropy over the whole validation split of these (float16) weights, "
                               "non-overlapping windows of block_size, float32",
        "trained_val_loss": checkpoint.metrics.get("val_loss"),
        "recorded_val_loss": recorded_val_loss,
        "seed": config.train.seed,
        "kept_by": kept_by,
    })
    save_checkpoint(destination, checkpoint.model, config, checkpoint.tokenizer, metrics, MAX_FILE_BYTES)
    return metrics


@dataclass(frozen=True)
class ArmModel:
    """One arm of a study and the model kept for it: ``path`` None says why not in ``missing``."""

    arm: str
    label: str
    seed: int
    path: Path | None
    val_loss: float | None = None  # whole-split loss of the kept (float16) weights
    recorded_val_loss: float | None = None  # the study's record of the same run
    missing: str = ""
    arch: str = "gpt"  # the model's kind, as the run's config names it (a bigram has no attention to look at)


def arm_models(results_dir: str | Path, results: dict, seed: int) -> list[ArmModel]:
    """For every arm of a study's validated ``results`` (read from ``results_dir``): the model kept for its run
    of ``seed``, with its losses, or why there is none."""
    out = []
    for arm in results["arms"]:
        run = next((r for r in arm["runs"] if r.get("seed") == seed and "config" in r), None)
        arch = _arch(run)
        path = None if run is None else find_model(results_dir, run["config"])
        if path is None:
            out.append(ArmModel(arm["name"], arm["label"], seed, None, missing=_why_missing(results, run), arch=arch))
            continue
        try:
            metrics = read_json_file(path / METRICS)
        except GptcoreError:
            metrics = {}
        out.append(ArmModel(arm["name"], arm["label"], seed, path, _number(metrics.get("val_loss")),
                            _number(run.get("val_loss")), arch=arch))
    return out


def _arch(run: dict | None) -> str:
    """The model kind a recorded run's config names ("gpt" where it names none)."""
    config = run.get("config") if run else None
    model = config.get("model") if isinstance(config, dict) else None
    return str(model.get("arch", "gpt")) if isinstance(model, dict) else "gpt"


def _why_missing(results: dict, run: dict | None) -> str:
    if run is None:
        return "its first seed has not been trained yet"
    try:
        reason = too_big_to_keep(RunConfig.from_dict(run["config"]))
    except (GptcoreError, TypeError, ValueError):
        return "its recorded config is not readable"
    if reason is not None:
        return f"not kept: {reason}"
    steps = results.get("budget", {}).get("max_iters")
    return (f"not kept; `python -m gptcore ablate --study {results.get('study')} --max-iters {steps} "
            f"--seeds 1 --keep-models --out <this results folder>` keeps it")


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

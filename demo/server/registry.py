"""The checkpoints the app can use: shipped ones, the ablation arms' kept models, those trained in the app, and
those a session uploaded.

Directories are rescanned on every call (a listdir is cheap) so a run that finishes in the Train tab, or a
shipped checkpoint that a background run rewrites, shows up without a restart. Loaded models are cached by
the modification time of their files, so a rewritten checkpoint is reloaded instead of served stale, and
only the most recently used few stay in memory.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING, Sequence

from gptcore.bounded import read_json_file
from gptcore.errors import CheckpointError, GptcoreError

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint

# gptcore.checkpoint's file names; repeated here (and checked by a test) because importing that module
# imports torch, which would add two seconds to the app's start-up before the first page is served
CONFIG, WEIGHTS, LEGACY_WEIGHTS, METRICS, MANIFEST = (
    "config.json", "model.safetensors", "model.pt", "metrics.json", "manifest.json")

TRAINED_PREFIX, UPLOADED_PREFIX = "trained/", "uploaded/"
ARM_MODELS = "models"  # gptcore.experiments.arm_models.MODELS_DIR: in a results folder, one model per arm
_SKIP_DIRS = {"ablations", "uploads", "downloads"}
MAX_LOADED = 8  # models kept in memory; uploads from many sessions must not fill the server's RAM


@dataclass(frozen=True)
class Entry:
    """One selectable checkpoint: ``name`` is what the pickers and the API use."""

    name: str
    path: Path
    trained_in_app: bool

    def arch(self) -> str | None:
        """The architecture from config.json without loading weights (None if unreadable)."""
        try:
            return read_json_file(self.path / CONFIG)["model"]["arch"]
        except (GptcoreError, KeyError, TypeError):
            return None

    def has_attention(self) -> bool:
        """Whether the attention views can open it: a GPT, or a model whose config cannot be read yet (loading
        it says what is wrong)."""
        return self.arch() in ("gpt", None)


def _looks_like_checkpoint(path: Path) -> bool:
    # a directory holding any checkpoint file is listed, so a damaged one gets a clear error, not silence
    return path.is_dir() and path.name not in _SKIP_DIRS and any((path / f).exists() for f in (CONFIG, WEIGHTS, LEGACY_WEIGHTS))


def _finished(path: Path) -> bool:
    """An app run is offered once its trainer has written the final metrics, and only if it learned something:
    a run stopped before its first step holds the random initial weights."""
    try:
        metrics = read_json_file(path / METRICS)
        return metrics.get("status") in ("finished", "stopped", "diverged") and metrics.get("steps", 0) > 0
    except (GptcoreError, AttributeError, TypeError):
        return False


class ModelRegistry:
    def __init__(self, checkpoints_dir: Path, runs_dir: Path, default: str = "shakespeare-char",
                 torch_threads: int | None = 1, device: str = "auto", results_dirs: Sequence[Path] = ()):
        """``results_dirs``: ablation results folders whose kept arm models (``<folder>/models/*``) are listed."""
        self.checkpoints_dir, self.runs_dir, self.default_name = Path(checkpoints_dir), Path(runs_dir), default
        self.results_dirs = [Path(d) for d in results_dirs]
        self.torch_threads = torch_threads
        self.device_setting = device
        self._device = None
        self._configured = False
        self._cache: OrderedDict[str, tuple[tuple, "Checkpoint"]] = OrderedDict()  # by folder; views share it
        self.uploads_dir: Path | None = None
        self._lock = threading.Lock()

    def for_session(self, session: str | None) -> "ModelRegistry":
        """This registry as one browser session sees it: with the models that session uploaded (stored under
        ``runs_dir/uploads/<a hash of the session>``). It shares the loaded models and the device."""
        view = copy.copy(self)
        view.uploads_dir = uploads_dir(self.runs_dir, session) if session else None
        return view

    def entries(self) -> list[Entry]:
        """Shipped checkpoints (the default first), the ablation arms' models, then app-trained ones, newest
        first, then this session's uploads."""
        shipped = sorted((p for p in _children(self.checkpoints_dir) if _looks_like_checkpoint(p)),
                         key=lambda p: (p.name != self.default_name, p.name))
        arms = [p for d in self.results_dirs for p in sorted(_children(d / ARM_MODELS)) if _looks_like_checkpoint(p)]
        trained = sorted((p for p in _children(self.runs_dir) if _looks_like_checkpoint(p) and _finished(p)),
                         key=lambda p: p.name, reverse=True)
        uploaded = sorted(p for p in _children(self.uploads_dir) if _looks_like_checkpoint(p)) if self.uploads_dir else []
        return ([Entry(p.name, p, False) for p in shipped] + [Entry(arm_model_name(p), p, False) for p in arms]
                + [Entry(TRAINED_PREFIX + p.name, p, True) for p in trained]
                + [Entry(UPLOADED_PREFIX + p.name, p, False) for p in uploaded])

    def names(self, attention_only: bool = False) -> list[str]:
        """Picker choices; ``attention_only`` leaves out models without attention (the bigram)."""
        return [e.name for e in self.entries() if not attention_only or e.has_attention()]

    def default(self, attention_only: bool = False) -> str | None:
        names = self.names(attention_only)
        return names[0] if names else None

    def entry(self, name: str | None) -> Entry:
        entries = self.entries()
        for e in entries:
            if e.name == name:
                return e
        available = ", ".join(e.name for e in entries) or "none yet (train one in the Train tab)"
        if not name:
            raise CheckpointError(f"choose a checkpoint; available: {available}")
        raise CheckpointError(f"unknown checkpoint {name!r:.80}; available: {available}")

    def get(self, name: str | None) -> "Checkpoint":
        """The loaded checkpoint, from the cache unless its files changed; CheckpointError if unusable."""
        entry = self.entry(name)
        stamp = _stamp(entry.path)
        with self._lock:
            cached = self._cache.get(str(entry.path))
            if cached and cached[0] == stamp:
                self._cache.move_to_end(str(entry.path))
                return cached[1]
            from gptcore.checkpoint import load_checkpoint

            self._configure_torch()
            checkpoint = load_checkpoint(entry.path, self.device())
            self._cache[str(entry.path)] = (stamp, checkpoint)
            while len(self._cache) > MAX_LOADED:
                self._cache.popitem(last=False)
            return checkpoint


    def device(self):
        """The torch device every model of this server runs on: the best one found at the first call
        (``auto``) unless the settings name one."""
        if self._device is None:
            from gptcore.device import resolve_device

            self._device = resolve_device(self.device_setting)
        return self._device

    def device_label(self) -> str:
        from gptcore.device import describe

        return describe(self.device())

    def _configure_torch(self) -> None:
        """Give the server's torch one intra-op thread (by default).

        Sampling is batch-1 work that a second thread barely speeds up, but two threads that contend with
        a training process (or with each other, across concurrent requests) slow generation many times over (docs/speed.md).
        """
        if not self._configured and self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        self._configured = True


def arm_model_name(path: Path) -> str:
    """The name a kept arm model is listed under: ``<results folder>/<study>-<arm>``."""
    return f"{path.parent.parent.name}/{path.name}"


def uploads_dir(runs_dir: Path, session: str) -> Path:
    """Where one session's uploads live: named by a hash, so a session id never becomes a path."""
    return runs_dir / "uploads" / hashlib.sha256(session.encode()).hexdigest()[:24]


def _children(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _stamp(path: Path) -> tuple:
    out = []
    for f in (WEIGHTS, LEGACY_WEIGHTS, CONFIG, MANIFEST):
        try:
            st = (path / f).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)

"""Where the app finds checkpoints and results, and the limits that keep a public server fair.

Every path can be moved with an environment variable so tests (and Spaces) can point the app elsewhere
without code changes; the limits live here so the UI, the API checks and docs/app.md quote one number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def _env_count(name: str, default: int, most: int | None = None) -> int:
    """A whole number from 1 (to ``most``) set by the host, refused in one sentence that names the setting."""
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip().isdigit() or not 1 <= int(value) <= (most or int(value)):
        upto = f" to {most:,}" if most else ""
        raise ValueError(f"{name} must be a whole number from 1{upto}, got {value!r:.40}")
    return int(value)


def _max_new_tokens() -> int:
    from gptcore.inference.sampling import MAX_NEW_TOKENS  # the library's own bound, which the app cannot pass

    return _env_count("GPTCORE_MAX_NEW_TOKENS", 2000, MAX_NEW_TOKENS)


DOWNLOADS = "downloads"  # the folder of download zips in the runs directory, the one Gradio may serve


@dataclass(frozen=True)
class Limits:
    """Caps on what one visitor can ask for."""

    max_new_tokens: int = field(default_factory=_max_new_tokens)
    max_temperature: float = 2.0
    max_top_k: int = 200
    max_prompt_chars: int = 10_000
    max_attention_text_chars: int = 10_000
    max_train_seconds: float = 600.0
    min_train_seconds: float = 5.0
    max_train_iters: int = 100_000
    min_train_iters: int = 10
    max_upload_bytes: int = 5_000_000  # decimal units, as gptcore.memory.human_bytes states them
    max_model_upload_bytes: int = 50_000_000
    upload_check_memory_bytes: int = 2_000_000_000  # what checking one upload may allocate (demo/server/upload_child)
    upload_check_seconds: float = 120.0
    max_n_layer: int = 8
    max_n_head: int = 16
    max_n_embd: int = 512
    max_block_size: int = 256
    max_lr: float = 0.1
    # generations that run at once, beyond which they wait in Gradio's queue (which shows the visitor their
    # place): one per two cores, since more threads fighting over the cores and Python's lock slow every stream
    generate_concurrency: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    view_concurrency: int = 2  # the Attention and Inside tabs' views and APIs, all together
    queue_size: int = 50  # events waiting beyond this are told at once that the queue is full
    stream_interval_s: float = 0.05  # at most ~20 text updates per second

    def views_queue(self) -> dict:
        """The event arguments that put a view in the one queue all Attention and Inside views share."""
        return {"concurrency_limit": self.view_concurrency, "concurrency_id": "model-views"}


@dataclass(frozen=True)
class AppSettings:
    """Paths the app reads and writes.

    ``checkpoints_dir``: shipped checkpoints, one sub-directory each (``GPTCORE_CHECKPOINTS``).
    ``runs_dir``: checkpoints trained in the app (``GPTCORE_APP_RUNS``; git-ignored ``runs/app``).
    ``ablations_dir``: ``<study>.json`` results of the ablation studies (``GPTCORE_ABLATIONS``).
    """

    checkpoints_dir: Path = field(default_factory=lambda: _env_path("GPTCORE_CHECKPOINTS", REPO_ROOT / "checkpoints"))
    runs_dir: Path = field(default_factory=lambda: _env_path("GPTCORE_APP_RUNS", REPO_ROOT / "runs" / "app"))
    # corpora made by `gptcore prepare`, one directory each, offered in the Train tab (GPTCORE_CORPORA)
    corpora_dir: Path = field(default_factory=lambda: _env_path("GPTCORE_CORPORA", REPO_ROOT / "runs" / "corpora"))
    ablations_dir: Path = field(default_factory=lambda: _env_path(
        "GPTCORE_ABLATIONS", _env_path("GPTCORE_CHECKPOINTS", REPO_ROOT / "checkpoints") / "ablations"))
    # the model every picker opens on (GPTCORE_DEFAULT_CHECKPOINT)
    default_checkpoint: str = field(default_factory=lambda: os.environ.get("GPTCORE_DEFAULT_CHECKPOINT",
                                                                           "shakespeare-char"))
    torch_threads: int = field(default_factory=lambda: _env_count("GPTCORE_APP_THREADS", 1))
    # where models run: auto picks CUDA, then Apple MPS, then the CPU (GPTCORE_DEVICE)
    device: str = field(default_factory=lambda: os.environ.get("GPTCORE_DEVICE", "auto"))
    limits: Limits = field(default_factory=Limits)

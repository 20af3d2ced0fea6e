"""The training state saved at every evaluation, so that ``--resume`` continues exactly where a run
stopped: weights, optimizer, both random generators, counters, the elapsed time and the curve.

The elapsed time matters as much as the weights: a time-budgeted run paces its schedule by it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from ..bounded import check_plain
from ..errors import CheckpointError
from ..storage import atomic_torch_save, safe_torch_load

MAX_HISTORY_VALUES = 10_000_000  # the evaluations of a run: a few numbers each, written to metrics.json


@dataclass
class TrainState:
    model: dict
    optimizer: dict | list
    sampler_rng: torch.Tensor
    torch_rng: torch.Tensor
    step: int = 0
    best_val: float = math.inf
    best_step: int = -1
    tokens_seen: int = 0
    elapsed: float = 0.0
    history: list[dict] = field(default_factory=list)
    cuda_rng: torch.Tensor | None = None  # the GPU's generator (dropout there), when training on CUDA
    # with several processes (torchrun): every process's CPU and GPU generators, by rank, so that resuming
    # with the same number of processes continues each one's dropout masks exactly
    rank_rngs: list | None = None

    def save(self, path: str | os.PathLike) -> None:
        atomic_torch_save(path, {name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainState":
        """Read a saved state; a missing key or a value of the wrong kind is a CheckpointError naming it."""
        raw = safe_torch_load(path)
        kinds = {"model": dict, "optimizer": (dict, list), "sampler_rng": torch.Tensor, "torch_rng": torch.Tensor,
                 "step": int, "best_val": (int, float), "best_step": int, "tokens_seen": int,
                 "elapsed": (int, float), "history": list}
        for key, kind in kinds.items():
            if key not in raw:
                raise CheckpointError(f"{path} is not a training state: it has no {key!r}")
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                raise CheckpointError(f"{path}: {key!r} has the wrong type ({type(raw[key]).__name__})")
        check_plain(raw["history"], f"{path}: 'history'", max_depth=3, max_nodes=MAX_HISTORY_VALUES)
        cuda_rng = raw.get("cuda_rng")
        rank_rngs = raw.get("rank_rngs")
        return cls(**{key: raw[key] for key in kinds}, cuda_rng=cuda_rng if isinstance(cuda_rng, torch.Tensor) else None,
                   rank_rngs=rank_rngs if isinstance(rank_rngs, list) else None)

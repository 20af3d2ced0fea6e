"""What makes two runs the same run: their configs compared without the settings that change where or how a run
ran, not what it computed (device, threads, attention kernel, the dtype its weights are stored in).

Studies use it to reuse a run another study trained, and to find the model kept for a run.
"""

from __future__ import annotations

import hashlib
import json

from ..config import RunConfig
from ..errors import ConfigError


def normalized(config: dict) -> dict | None:
    """A recorded run config with the settings added since it was written at their defaults, so that
    older results still match the runs they describe; None if it is not a run config."""
    try:
        out = RunConfig.from_dict(config).to_dict()
    except (ConfigError, TypeError, ValueError):
        return None
    out["train"]["device"] = "auto"  # where a run ran, and on how many threads, does not change what it is
    out["train"]["threads"] = None
    out["train"]["save_dtype"] = "float32"  # nor the precision its weights were stored in afterwards
    out["model"]["attention"] = "auto"  # nor which kernel computed the attention: each computes the same function
    return out


def config_key(config: dict) -> str:
    """A run's config as a string that is equal for the same run."""
    return json.dumps(normalized(config), sort_keys=True)


def run_key(config: RunConfig) -> str:
    """The short name of a run's exact config, the suffix of its work directory (shared by studies)."""
    return hashlib.sha256(config_key(config.to_dict()).encode()).hexdigest()[:16]

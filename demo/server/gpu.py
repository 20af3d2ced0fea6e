"""Running on Hugging Face's ZeroGPU hardware, where a GPU is lent per request.

On ZeroGPU a function gets the GPU only while it runs under ``spaces.GPU``, in a forked worker that
receives its arguments pickled: so the functions handed to :func:`on_gpu` take plain values (the session
id, the request's fields), never the registry. Everywhere else ``spaces.GPU`` returns the function
unchanged (the package says so itself), and without the package installed :func:`on_gpu` does the same.
Live training runs in a process of its own, which ZeroGPU does not lend a GPU to: there it runs on the CPU.
"""

from __future__ import annotations

import os
from typing import Callable


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (which sets SPACES_ZERO_GPU)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def on_gpu(fn: Callable, seconds: int) -> Callable:
    """``fn`` with a GPU lent for at most ``seconds`` per call on ZeroGPU; ``fn`` itself anywhere else."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=seconds)(fn)


def training_device(server_device: str) -> str:
    """Where live training runs: the server's device, except on ZeroGPU, whose GPU is only lent to requests."""
    return "cpu" if on_zero_gpu() else server_device

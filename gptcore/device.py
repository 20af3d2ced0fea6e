"""Where tensors live: choosing a device, autocast on it, and moving batches there.

One place decides these so that training, evaluation, sampling, the benchmark and the app agree.
``auto`` picks CUDA, then Apple's MPS, then the CPU. Autocast uses bfloat16 where the device supports it
natively (CPUs with AVX-512's or AMX's bfloat16, CUDA from Ampere on, MPS on recent macOS) and otherwise runs
in float32, rather than switching to float16, which would need loss scaling to train safely.
"""

from __future__ import annotations

import contextlib
import functools
from typing import ContextManager

import torch

from .config import device_kind
from .errors import ConfigError



def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device types this machine can run on, best first (the CPU is always last)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if mps_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """A concrete device for a setting: ``auto`` (or None) is the best available; an absent one is an error."""
    if isinstance(name, torch.device):
        return name
    name = "auto" if name is None else str(name).strip().lower()
    kind = device_kind(name)
    if kind == "auto":
        return torch.device(available_devices()[0])
    if kind not in available_devices():
        raise ConfigError(f"device {name!r} is not available on this machine; available: "
                          f"{', '.join(available_devices())}")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"bad device {name!r}: {e}") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def describe(device: torch.device) -> str:
    """A short human name, e.g. ``cuda (NVIDIA H100 80GB HBM3)``, ``cpu`` or ``mps``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


@functools.lru_cache(maxsize=1)
def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic of its own (AVX-512's or AMX's, as oneDNN reports it).
    Elsewhere (AVX2 machines, most laptops) torch emulates bfloat16, several times slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bfloat16_supported(device: torch.device) -> bool:
    """Whether computing in bfloat16 on ``device`` pays: natively supported, not emulated."""
    if device.type == "cpu":
        return cpu_computes_bfloat16()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "mps":
        try:
            torch.ones(1, dtype=torch.bfloat16, device=device).sum().item()
            return True
        except (RuntimeError, TypeError):
            return False
    return False


def compute_dtype(device: torch.device, requested: str | torch.dtype) -> torch.dtype:
    """The autocast dtype used for ``requested`` on ``device``: bfloat16 where supported, else float32."""
    dtype = getattr(torch, requested) if isinstance(requested, str) else requested
    if dtype == torch.bfloat16 and not bfloat16_supported(device):
        return torch.float32
    return dtype


def autocast(device: torch.device, dtype: torch.dtype) -> ContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a CPU batch to ``device``: through pinned memory and a non-blocking copy on CUDA, so the copy
    overlaps the work already queued on the GPU."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (for honest timings; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()

"""File I/O every other module shares: atomic writes, JSON objects, and checksummed tensor files.

Kept apart from the checkpoint format (``gptcore.checkpoint``) so that the tokenizer, the n-gram draft,
the ablation results and the benchmark can write files without depending on models or checkpoints.
Every write goes to a temporary file in the target's directory and is renamed over it, so a crash
mid-write leaves the previous file readable. Tensor files are always read with ``weights_only=True``
onto the CPU; callers move tensors where they need them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError

TENSORS_FORMAT = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``; anything else (missing, not JSON, not an object) is a CheckpointError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object")
    return data


def write_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def safe_torch_load(path: str | os.PathLike) -> dict:
    """``torch.load`` onto the CPU that never unpickles arbitrary objects and turns damage into
    CheckpointError."""
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


def save_tensors(path: str | os.PathLike, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Save tensors (floating ones cast to ``dtype`` if given) on the CPU, with a checksum of what is stored.

    Moving to the CPU first makes the file the same whatever device the tensors lived on."""
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in state.items()}
    atomic_torch_save(path, {"format": TENSORS_FORMAT, "sha256": tensors_digest(state), "tensors": state})


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors saved by :func:`save_tensors`, on the CPU, after checking their checksum."""
    obj = safe_torch_load(path)
    if obj.get("format") != TENSORS_FORMAT or not isinstance(obj.get("tensors"), dict):
        raise CheckpointError(f"{path} is not a gptcore tensor file (format {obj.get('format')!r})")
    if tensors_digest(obj["tensors"]) != obj.get("sha256"):
        raise CheckpointError(f"{path} failed its checksum: the file was modified or damaged")
    return obj["tensors"]

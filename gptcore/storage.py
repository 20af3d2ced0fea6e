"""File I/O every other module shares: atomic writes, JSON objects, and checksummed tensor files.

Tensor files come in two formats, both checked against a sha256 of their tensors: ``.safetensors``
(model weights: the format the Hugging Face ecosystem reads, which holds raw tensors and no code at all)
and torch's own (``.pt``, for the n-gram draft, training state and weights saved before safetensors).

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
import secrets
import tempfile
from pathlib import Path
from typing import Iterator

import safetensors
import safetensors.torch
import torch

from .bounded import MAX_JSON_BYTES, read_json_file
from .errors import CheckpointError, GptcoreError
from .memory import human_bytes

TENSORS_FORMAT = 1


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_temp_file(path: Path) -> tuple[int, str]:
    """A new file beside ``path``, opened for writing, with the permissions the process's umask gives a new
    file (mkstemp's are 0600, and reading the umask means setting it)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path.name}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, torch_bytes(obj))


def json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` as a directory this process can create or write, checked by trying (a probe directory made
    and removed at once), so a GptcoreError says which path and why before any work rather than a
    PermissionError after it. Nothing is left behind; ``path`` itself is not created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GptcoreError(f"{what} {path} is not a directory (a file has that name)")
    _check_writable(path, what, path)
    return path


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """``path`` as a file this process can write: not a directory, in a directory it can create or write."""
    path = Path(path)
    if path.is_dir():
        raise GptcoreError(f"{what} {path} is a directory; it should name a file")
    _check_writable(path.parent, what, path)
    return path


def _check_writable(directory: Path, what: str, shown: Path) -> None:
    existing = next((p for p in (directory, *directory.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise GptcoreError(f"{what} {shown}: {existing} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".gptcore-write-check-"))
    except OSError as e:
        where = "" if existing == shown else f" (in {existing})"
        raise GptcoreError(f"{what} {shown} cannot be written{where}: {e.strerror or type(e).__name__}") from None


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from ``path``, bounded in size and depth (:mod:`gptcore.bounded`); anything else (missing,
    not JSON, too large or deep, not an object) is a CheckpointError naming the file."""
    data = read_json_file(path, max_bytes)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object")
    return data


def write_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_bytes(path, json_bytes(data))


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _first_line(e: Exception) -> str:
    """An exception's first line, cut short, for a message about a file that would not load."""
    return (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)[:200]


def safe_torch_load(path: str | os.PathLike) -> dict:
    """``torch.load`` onto the CPU that never unpickles arbitrary objects and turns damage into
    CheckpointError."""
    if not Path(path).is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler met something other than plain data
        if "Weights only load failed" in str(e):
            raise CheckpointError(f"{path} holds objects other than tensors and plain data (code, or classes "
                                  "gptcore does not load): refused without running them") from None
        raise CheckpointError(f"{path} is truncated or damaged ({_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - damaged bytes can surface as almost any exception type
        raise CheckpointError(f"{path} is truncated or damaged ({_first_line(e)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a gptcore state")
    return obj


def _stored(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The tensors as they are stored: floating ones cast to ``dtype`` if given, on the CPU, each its own
    contiguous copy (tied weights become two equal tensors). Moving to the CPU first makes the file the same
    whatever device the tensors lived on."""
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous().clone()
            for k, v in state.items()}


def tensors_bytes(state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> bytes:
    """A torch tensor file's bytes, with a checksum of what is stored."""
    state = _stored(state, dtype)
    return torch_bytes({"format": TENSORS_FORMAT, "sha256": tensors_digest(state), "tensors": state})


def _safetensors(stored: dict[str, torch.Tensor]) -> bytes:
    """A ``.safetensors`` file's bytes, with the checksum of its tensors in its metadata."""
    return safetensors.torch.save(stored, metadata={"format": "gptcore", "sha256": tensors_digest(stored)})


HEADER_ROOM = 1 << 16  # bytes a part leaves for its header: names, shapes, offsets and the checksum


def size_groups(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """The names, in name order, cut into consecutive groups whose sizes add up to at most ``max_bytes`` less
    :data:`HEADER_ROOM`; ValueError naming a tensor too big for a file of its own."""
    budget = max_bytes - HEADER_ROOM
    groups: list[list[str]] = [[]]
    used = 0
    for name in sorted(sizes):
        if sizes[name] > budget:
            raise ValueError(f"{name} alone is {human_bytes(sizes[name])}, more than the {human_bytes(budget)} a "
                             f"file of {human_bytes(max_bytes)} holds besides its header")
        if groups[-1] and used + sizes[name] > budget:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += sizes[name]
    return groups


def safetensors_parts(state: dict[str, torch.Tensor], dtype: torch.dtype | None = None,
                      max_bytes: int | None = None) -> list[bytes]:
    """The tensors as one ``.safetensors`` file's bytes or, with ``max_bytes``, as several files each under that
    size (:func:`size_groups`), each with the checksum of its own tensors."""
    stored = _stored(state, dtype)
    if max_bytes is None:
        return [_safetensors(stored)]
    groups = size_groups({name: t.numel() * t.element_size() for name, t in stored.items()}, max_bytes)
    return [_safetensors({name: stored[name] for name in group}) for group in groups]


def save_tensors(path: str | os.PathLike, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    atomic_write_bytes(path, tensors_bytes(state, dtype))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors saved by :func:`save_tensors` or as :func:`safetensors_parts`, on the CPU, after checking
    their checksum. The format is told by the content (torch's files are zip archives), not the name."""
    if not is_zip(Path(path)):
        tensors, digest = _read_safetensors(Path(path))
    else:
        obj = safe_torch_load(path)
        if obj.get("format") != TENSORS_FORMAT or not isinstance(obj.get("tensors"), dict):
            raise CheckpointError(f"{path} is not a gptcore tensor file (format {obj.get('format')!r})")
        tensors, digest = obj["tensors"], obj.get("sha256")
    if tensors_digest(tensors) != digest:
        raise CheckpointError(f"{path} failed its checksum: the file was modified or damaged")
    return tensors


def is_zip(path: Path) -> bool:
    """Whether a file starts as a zip archive does (torch.save writes one; so does a zipped folder)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # noqa: BLE001 - a damaged header can surface as several exception types
        raise CheckpointError(f"{path} is truncated or damaged ({_first_line(e)})") from None
    if metadata.get("format") != "gptcore":
        raise CheckpointError(f"{path} is a safetensors file without gptcore's checksum (format "
                              f"{metadata.get('format')!r})")
    return tensors, metadata.get("sha256")


# A set of files replaced as one change -------------------------------------------------------------

MANIFEST = "manifest.json"
_STAGED = ".{}.staged"


def file_chunks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    """A file's bytes in chunks of ``size`` (the last may be shorter): shards can be larger than memory."""
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def file_sha256(path: Path) -> str:
    """A file's sha256, read in chunks."""
    h = hashlib.sha256()
    for chunk in file_chunks(path):
        h.update(chunk)
    return h.hexdigest()


def _sha256_file(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def _read_manifest(directory: Path) -> dict[str, str] | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    files = read_json(path).get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"{path} is damaged: it should name each file with its sha256")
    return files


def resolve_files(directory: str | os.PathLike) -> dict[str, Path]:
    """Where each file of ``directory``'s set is, as its manifest describes it: the file itself, or, after a
    change was interrupted between its commit and its last rename, the staged copy that the manifest
    names. Empty for a directory without a manifest (older checkpoints): its files are read as they are.
    A file that matches neither is a CheckpointError."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    out: dict[str, Path] = {}
    for name, digest in (manifest or {}).items():
        for candidate in (directory / name, directory / _STAGED.format(name)):
            if _sha256_file(candidate) == digest:
                out[name] = candidate
                break
        else:
            raise CheckpointError(f"{directory / name} does not match {directory / MANIFEST}: the file was "
                                  f"modified or damaged")
    return out


def commit_files(directory: str | os.PathLike, contents: dict[str, bytes], remove: tuple[str, ...] = ()) -> None:
    """Replace several files of ``directory`` as one change: a reader going through
    :func:`resolve_files` sees the whole old set or the whole new set, whenever a crash happens.
    ``remove`` names files that leave the set (deleted once the new set is in place).

    Each new file is first written under a staged name; then the manifest (every file of the set with its
    sha256) is replaced by one rename, which is the moment the change happens; then each staged file is
    renamed into place. A change that was interrupted after its manifest is finished first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    current = resolve_files(directory)
    for name, path in current.items():  # finish an interrupted change
        if path.name != name:
            os.replace(path, directory / name)
    for leftover in directory.glob(_STAGED.format("*")):  # a change that never reached its manifest
        leftover.unlink()
    manifest = dict(_read_manifest(directory) or {})  # resolve_files checked every file against these digests
    for name in remove:
        manifest.pop(name, None)
    for name, data in contents.items():
        atomic_write_bytes(directory / _STAGED.format(name), data)
        manifest[name] = hashlib.sha256(data).hexdigest()
    write_json(directory / MANIFEST, {"format": 1, "files": dict(sorted(manifest.items()))})
    for name in contents:
        os.replace(directory / _STAGED.format(name), directory / name)
    for name in remove:
        (directory / name).unlink(missing_ok=True)

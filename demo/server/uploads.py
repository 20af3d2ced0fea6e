"""Models that visitors bring and take away: a checkpoint zip or a nanoGPT ckpt.pt in, a checkpoint zip out.

Uploads are hostile until proven otherwise. A zip may only hold a checkpoint's own file names (in at
most one folder), no links, nothing above its folder, and no more than a fixed number of bytes once
unpacked, counted while reading rather than trusted from the zip's header (a zip bomb lies there). The
files are then loaded the way every checkpoint is (safetensors or ``weights_only`` tensors, JSON,
checksums), so nothing in them runs. A nanoGPT checkpoint is converted by ``gptcore import-nanogpt``'s
code, whose vocabulary reader builds plain data only. Everything is unpacked into a scratch folder of
the app's runs directory and moved into place only once it loads.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from gptcore.errors import CheckpointError, GptcoreError
from gptcore.memory import human_bytes

# the files of a checkpoint directory (gptcore.checkpoint's names); a zipped run folder also holds the
# manifest, the training state and maybe its snapshots, which are accepted and left out (the model loads
# without them, and an upload's replay is not offered)
# (repeated, and held to gptcore's by a test: importing gptcore.checkpoint imports torch, slowing the app's start)
WEIGHT_PARTS = {f"model-{i}.safetensors" for i in range(2, 17)}  # the rest of weights saved in bounded files
CHECKPOINT_FILES = {"model.safetensors", "model.pt", "config.json", "tokenizer.json", "metrics.json",
                    "draft.pt"} | WEIGHT_PARTS
LEFT_OUT = {"manifest.json", "train_state.pt", "snapshots.pt"}
MAX_UNPACKED_BYTES = 200_000_000
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(GptcoreError):
    """An upload that is refused, with the reason in one sentence."""


def model_name(requested: str | None, fallback: str) -> str:
    """A safe folder name: letters, digits, dot, dash and underscore, at most 40 characters."""
    name = _NAME.sub("-", (requested or "").strip()).strip(".-")[:40] or _NAME.sub("-", fallback).strip(".-")[:40]
    if not name:
        raise UploadError("give the model a name (letters, digits, dots, dashes)")
    return name


def _is_torch_file(archive: zipfile.ZipFile) -> bool:
    """torch.save writes a zip too: one folder holding data.pkl (a nanoGPT ckpt.pt is one)."""
    return any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist())


def _checkpoint_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The zip's checkpoint files by name, after refusing anything else in it."""
    members: dict[str, zipfile.ZipInfo] = {}
    folders = set()
    for info in archive.infolist():
        name = info.filename
        if info.is_dir():
            continue
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UploadError(f"the zip holds a link ({name!r:.80}): only plain files are accepted")
        parts = name.split("/")
        if (name.startswith("/") or "\\" in name or ".." in parts or len(parts) > 2
                or parts[-1] not in CHECKPOINT_FILES | LEFT_OUT):
            raise UploadError(f"the zip holds {name!r:.80}: a checkpoint zip holds only "
                              f"{', '.join(sorted(CHECKPOINT_FILES - WEIGHT_PARTS))} (and model-2.safetensors to "
                              f"model-16.safetensors), at its top or in one folder")
        folders.add(parts[0] if len(parts) == 2 else "")
        if parts[-1] in CHECKPOINT_FILES:
            members[parts[-1]] = info
    if len(folders) > 1:
        raise UploadError("the zip holds several folders: upload one checkpoint at a time")
    if "config.json" not in members:
        raise UploadError("the zip has no config.json: it is not a gptcore checkpoint (zip the checkpoint's folder)")
    return members


def _unpack(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], dest: Path) -> None:
    """Write the members into ``dest``, counting the bytes actually inflated (a zip's sizes can lie)."""
    total = 0
    for name, info in members.items():
        with archive.open(info) as src, open(dest / name, "wb") as out:
            while chunk := src.read(1 << 20):
                total += len(chunk)
                if total > MAX_UNPACKED_BYTES:
                    raise UploadError(f"the zip unpacks to more than {human_bytes(MAX_UNPACKED_BYTES)}: refused")
                out.write(chunk)


def add_model(files: list[str | os.PathLike], name: str | None, dest_root: Path, max_bytes: int) -> Path:
    """Check and store one uploaded model under ``dest_root/<name>``; returns its folder.

    ``files``: a checkpoint zip, or nanoGPT's ckpt.pt with its meta.pkl."""
    from gptcore.checkpoint import load_checkpoint  # (imported here: torch stays out of the app's start-up)
    from gptcore.interop.nanogpt import import_nanogpt
    from gptcore.storage import is_zip

    paths = [Path(f) for f in files or []]
    if not paths:
        raise UploadError("choose a file: a gptcore checkpoint zip, or nanoGPT's ckpt.pt with its meta.pkl")
    for p in paths:
        if p.stat().st_size > max_bytes:
            raise UploadError(f"{p.name} is {human_bytes(p.stat().st_size)}; the limit is {human_bytes(max_bytes)}")
    zips = [p for p in paths if is_zip(p)]
    pickles = [p for p in paths if p not in zips]
    if len(zips) != 1 or len(pickles) > 1:
        raise UploadError("upload one checkpoint zip, or nanoGPT's ckpt.pt and meta.pkl together")
    dest_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".upload-", dir=dest_root))
    try:
        with zipfile.ZipFile(zips[0]) as archive:
            nanogpt = _is_torch_file(archive)
            fallback = Path(zips[0]).stem
            if nanogpt:
                meta = pickles[0] if pickles else None
                if meta is None:
                    raise UploadError("a nanoGPT ckpt.pt needs its meta.pkl (the character vocabulary) beside it")
                import_nanogpt(zips[0], scratch / "model", meta)
            else:
                if pickles:
                    raise UploadError(f"{pickles[0].name} is not needed with a gptcore checkpoint zip")
                members = _checkpoint_members(archive)
                (scratch / "model").mkdir()
                _unpack(archive, members, scratch / "model")
                fallback = next(iter({i.filename.split("/")[0] for i in members.values() if "/" in i.filename}),
                                fallback)
        load_checkpoint(scratch / "model")  # everything a picker will do with it works, or it is refused here
        target = dest_root / model_name(name, fallback)
        if target.exists():
            raise UploadError(f"a model named {target.name!r} is already uploaded: choose another name")
        os.replace(scratch / "model", target)
        return target
    except zipfile.BadZipFile as e:
        raise UploadError(f"the file is not a readable zip ({e})") from None
    except CheckpointError as e:
        raise UploadError(f"the upload is not a usable model: {e}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def zip_checkpoint(directory: Path, out_dir: Path) -> Path:
    """A zip of the checkpoint's files in one folder named after it, which ``gptcore`` and the upload load."""
    from gptcore.checkpoint import checkpoint_files

    out_dir.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(dir=out_dir)) / f"{directory.name}.zip"  # concurrent downloads never collide
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in checkpoint_files(directory):
            name = path.name.removeprefix(".").removesuffix(".staged")  # a file a manifest names in its staged place
            archive.write(path, f"{directory.name}/{name}")
    return target

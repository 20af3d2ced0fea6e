"""Token shards: a corpus tokenized once (``gptcore prepare``) into flat files of token ids, read in place.

A prepared corpus is a directory: ``tokenizer.json``, ``manifest.json`` and shard files, each a flat array
of little-endian uint16 ids (uint32 when the vocabulary needs it), one split per shard. The manifest lists
every shard with its split, its token, byte and character counts and its sha256, so a damaged shard is
found before training reads it.

A split is the concatenation of its shards, read through :class:`ShardSet`, which answers the only two
questions training and evaluation ask of a token sequence: its length, and the windows at some positions.
Windows are read with ``os.pread`` rather than memory-mapped: pages of a mapped file count towards the
process's resident memory as they are touched, so over a long run a mapped gigabyte corpus would show up
as a gigabyte of memory, while reads keep the process's memory the same whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .bounded import short_repr
from .config import is_int
from .errors import CheckpointError, GptcoreError
from .storage import file_chunks, read_json

MANIFEST, TOKENIZER_FILE = "manifest.json", "tokenizer.json"
SHARD_NAME = re.compile(r"(train|val)-\d{5,}\.bin")  # what gptcore prepare names its shards
FORMAT = 1
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def is_count(value) -> bool:
    return is_int(value) and value >= 0


def dtype_for(vocab_size: int) -> str:
    """The smallest shard dtype that holds every id of the vocabulary."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


@dataclass(frozen=True)
class Shard:
    file: str
    split: str  # "train" or "val"
    tokens: int
    bytes: int  # UTF-8 bytes of the text it holds
    chars: int  # characters of the text it holds
    sha256: str

    @classmethod
    def from_dict(cls, data: dict) -> "Shard":
        """A manifest's shard entry, checked: a file name ``gptcore prepare`` writes (so no path leads
        outside the corpus directory), a known split, and counts that are integers of at least zero."""
        name = data["file"]
        if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
            raise ValueError(f"shard file {short_repr(name, 60)} is not a name gptcore prepare writes")
        if data["split"] not in ("train", "val"):
            raise ValueError(f"shard {name} has split {short_repr(data['split'], 40)}, not train or val")
        for key in ("tokens", "bytes", "chars"):
            if not is_count(data[key]):
                raise ValueError(f"shard {name} has {key} {short_repr(data[key], 40)}: counts are integers >= 0")
        if not isinstance(data["sha256"], str):
            raise ValueError(f"shard {name} has no sha256")
        return cls(name, data["split"], data["tokens"], data["bytes"], data["chars"], data["sha256"])


class ShardSet:
    """One split of a prepared corpus as a single sequence of token ids, read from its shards on demand."""

    def __init__(self, directory: Path, shards: list[Shard], dtype: str):
        self.directory, self.listed, self.dtype = Path(directory), shards, DTYPES[dtype]
        self.shards = [s for s in shards if s.tokens > 0]
        self.offsets = np.cumsum([0] + [s.tokens for s in self.shards])  # where each shard starts
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def chars(self) -> int:
        return sum(s.chars for s in self.shards)

    def _fd(self, i: int) -> int:
        if i not in self._fds:
            self._fds[i] = os.open(self.directory / self.shards[i].file, os.O_RDONLY)
        return self._fds[i]

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens start .. start + length - 1 of the split (possibly spanning shards)."""
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"tokens {start}..{start + length} are outside a split of {len(self)}")
        parts, position, end = [], start, start + length
        while position < end:
            i = int(np.searchsorted(self.offsets, position, side="right")) - 1
            local = position - int(self.offsets[i])
            count = min(end, int(self.offsets[i + 1])) - position
            size = self.dtype.itemsize
            data = os.pread(self._fd(i), count * size, local * size)
            if len(data) != count * size:
                raise CheckpointError(f"{self.directory / self.shards[i].file} is shorter than its manifest says")
            parts.append(np.frombuffer(data, dtype=self.dtype))
            position += count
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def windows(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """(len(starts), length) int64 ids: the tokens from each start."""
        rows = [self.read(int(s), length) for s in starts.tolist()]
        return torch.from_numpy(np.stack(rows).astype(np.int64)) if rows else torch.empty(0, length, dtype=torch.long)

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` tokens (or all, if fewer), as int64."""
        return torch.from_numpy(self.read(0, min(n, len(self))).astype(np.int64))

    def bincount(self, minlength: int) -> np.ndarray:
        """How often each id occurs in the split, read shard by shard."""
        counts = np.zeros(minlength, dtype=np.int64)
        chunk = 1 << 24
        for start in range(0, len(self), chunk):
            counts += np.bincount(self.read(start, min(chunk, len(self) - start)), minlength=minlength)[:minlength]
        return counts

    def verify(self, vocab_size: int) -> None:
        """Each shard's size and sha256 against the manifest, and its ids against the vocabulary, in one read
        of each shard: a CheckpointError naming a damaged one, or one whose ids the model has no row for."""
        for shard in self.listed:
            path = self.directory / shard.file
            if not path.is_file():
                raise CheckpointError(f"shard {path} is missing")
            if path.stat().st_size != shard.tokens * self.dtype.itemsize:
                raise CheckpointError(f"shard {path} has {path.stat().st_size:,} bytes; the manifest says "
                                      f"{shard.tokens:,} tokens of {self.dtype.itemsize} bytes")
            digest, top = self._scan(path)
            if digest != shard.sha256:
                raise CheckpointError(f"shard {path} failed its checksum: the file was modified or damaged; "
                                      f"rerun gptcore prepare into a new directory")
            if top >= vocab_size:
                raise CheckpointError(f"shard {path} holds token id {top:,}, but the corpus's vocabulary has "
                                      f"{vocab_size:,} tokens: it does not fit its tokenizer or any model of it")

    def _scan(self, path: Path) -> tuple[str, int]:
        """(sha256, largest id) of a shard file, read once in chunks."""
        h, top = hashlib.sha256(), -1
        for chunk in file_chunks(path):  # 4 MiB: a multiple of every dtype's size
            h.update(chunk)
            top = max(top, int(np.frombuffer(chunk, dtype=self.dtype).max()))
        return h.hexdigest(), top

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def take_windows(data, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Windows of ``length`` tokens at ``starts`` from a token tensor or a :class:`ShardSet`."""
    if isinstance(data, ShardSet):
        return data.windows(starts, length)
    return data[starts[:, None] + torch.arange(length)]


def read_manifest(directory: str | os.PathLike) -> dict:
    """A prepared corpus's manifest, checked for the keys training relies on."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise GptcoreError(f"{directory} is not a prepared corpus (no {MANIFEST}); make one with gptcore prepare")
    manifest = read_json(path)
    if manifest.get("format") != FORMAT or manifest.get("dtype") not in DTYPES:
        raise CheckpointError(f"{path} is not a prepared-corpus manifest this gptcore reads")
    vocab = manifest.get("vocab_size")
    if not is_count(vocab) or not 1 <= vocab <= np.iinfo(DTYPES[manifest["dtype"]]).max + 1:
        raise CheckpointError(f"{path} gives vocab_size {short_repr(vocab, 40)}, which its {manifest['dtype']} "
                              f"shards cannot hold")
    if not manifest.get("complete"):
        raise GptcoreError(f"{directory} is only partly prepared: rerun the same gptcore prepare command to finish it")
    return manifest


def open_splits(directory: str | os.PathLike, verify: bool = True) -> tuple[ShardSet, ShardSet, dict]:
    """(train, val, manifest) of a prepared corpus; with ``verify``, every shard's checksum is checked first."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        shards = [Shard.from_dict(s) for s in manifest["shards"]]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / MANIFEST} lists a shard it cannot describe ({e})") from None
    if len({s.file for s in shards}) != len(shards):
        raise CheckpointError(f"{directory / MANIFEST} lists a shard twice")
    splits = tuple(ShardSet(directory, [s for s in shards if s.split == name], manifest["dtype"])
                   for name in ("train", "val"))
    totals = manifest.get("tokens")
    if totals is not None and totals != {"train": len(splits[0]), "val": len(splits[1])}:
        raise CheckpointError(f"{directory / MANIFEST}: its token totals {short_repr(totals, 80)} are not the sums "
                              f"of its shards ({len(splits[0]):,} and {len(splits[1]):,})")
    if verify:
        for split in splits:
            split.verify(manifest["vocab_size"])
    return splits[0], splits[1], manifest

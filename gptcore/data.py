"""Finding the corpus, splitting it, and sampling training batches reproducibly."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .errors import DataUnavailableError, GptcoreError
from .shards import ShardSet, TOKENIZER_FILE, open_splits, take_windows
from .storage import atomic_write_bytes
from .tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SIZE = 1_115_394
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DATA_ENV = "GPTCORE_DATA"
TRAIN_FRACTION = 0.9


def cache_dir() -> Path:
    return Path(os.environ.get("GPTCORE_CACHE", Path.home() / ".cache" / "gptcore"))


def _is_canonical(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size != SHAKESPEARE_SIZE:
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == SHAKESPEARE_SHA256


def download_shakespeare(dest: Path, url: str = SHAKESPEARE_URL, timeout: float = 30.0) -> Path:
    """Download the canonical Tiny Shakespeare once, verify size and sha256, then move it into place."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except OSError as e:
        raise DataUnavailableError(
            f"could not download Tiny Shakespeare from {url} ({e}). Provide a local copy with "
            f"--data PATH or the {DATA_ENV} environment variable."
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if len(payload) != SHAKESPEARE_SIZE or digest != SHAKESPEARE_SHA256:
        raise DataUnavailableError(
            f"downloaded file does not match Tiny Shakespeare (size {len(payload)}, sha256 {digest}); "
            f"expected {SHAKESPEARE_SIZE} bytes, sha256 {SHAKESPEARE_SHA256}"
        )
    atomic_write_bytes(dest, payload)
    return dest


def resolve_corpus(path: str | os.PathLike | None = None) -> Path:
    """The corpus to use: an explicit path, else $GPTCORE_DATA, else the cached or downloaded Shakespeare."""
    given = path or os.environ.get(DATA_ENV)
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            source = "--data" if path else DATA_ENV
            raise DataUnavailableError(f"corpus file not found: {p} (from {source})")
        return p
    cached = cache_dir() / "tinyshakespeare.txt"
    if _is_canonical(cached):
        return cached
    return download_shakespeare(cached)


def read_corpus(path: Path) -> str:
    """Read a UTF-8 text file, with a clear error for anything else."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GptcoreError(f"corpus {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise GptcoreError(f"cannot read corpus {path}: {e.strerror}") from None
    if len(text) < 2:
        raise GptcoreError(f"corpus {path} is too short to train on ({len(text)} characters)")
    return text


def split_point(n: int) -> int:
    return int(n * TRAIN_FRACTION)


def make_tokenizer(text: str, recipe: TrainConfig | None = None) -> Tokenizer:
    """The tokenizer a run's config asks for: by default the characters of the whole ``text``; with
    ``tokenizer=bpe``, byte-level BPE learned from the training part only, so the validation text stays unseen."""
    if recipe is not None and recipe.tokenizer == "bpe":
        return BPETokenizer.train(text[:split_point(len(text))], recipe.bpe_vocab_size)
    return CharTokenizer.from_text(text)


@dataclass
class Corpus:
    """A tokenized corpus split into train (the first 90% of its characters) and validation (the last 10%).

    The split is made on the text, before tokenizing, so every tokenizer is evaluated on the same
    validation text (compare them in nats per character: :func:`gptcore.evaluate.nats_per_char`)."""

    tokenizer: Tokenizer
    train: torch.Tensor | ShardSet  # a tensor of ids in memory, or the shards of a prepared corpus
    val: torch.Tensor | ShardSet
    source: str

    @classmethod
    def from_text(cls, text: str, source: str = "<text>", tokenizer: Tokenizer | None = None,
                  recipe: TrainConfig | None = None) -> "Corpus":
        """``tokenizer``: the one to use (a checkpoint's); without it, one is made by ``recipe`` (:func:`make_tokenizer`)."""
        tokenizer = tokenizer or make_tokenizer(text, recipe)
        cut = split_point(len(text))
        train, val = (torch.tensor(tokenizer.encode(part), dtype=torch.long) for part in (text[:cut], text[cut:]))
        return cls(tokenizer, train, val, source)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, tokenizer: Tokenizer | None = None,
             recipe: TrainConfig | None = None) -> "Corpus":
        """A text file (tokenized here), or a directory prepared by ``gptcore prepare`` (its own tokenizer and
        split; a ``tokenizer`` given must be the same one)."""
        if path is not None and Path(path).expanduser().is_dir():
            return cls.from_prepared(Path(path).expanduser(), tokenizer)
        p = resolve_corpus(path)
        return cls.from_text(read_corpus(p), source=str(p), tokenizer=tokenizer, recipe=recipe)

    @classmethod
    def from_prepared(cls, directory: Path, tokenizer: Tokenizer | None = None) -> "Corpus":
        """A prepared corpus, read from its shards on demand (its shards' checksums are checked first)."""
        train, val, manifest = open_splits(directory)
        own = load_tokenizer(directory / TOKENIZER_FILE)
        if own.vocab_size != manifest["vocab_size"]:
            raise GptcoreError(f"{directory}: its tokenizer has {own.vocab_size:,} tokens but its manifest says "
                               f"{manifest['vocab_size']:,}")
        if tokenizer is not None and tokenizer.to_dict() != own.to_dict():
            raise GptcoreError(f"{directory} was prepared with another tokenizer than this checkpoint's")
        return cls(own, train, val, str(directory))


class BatchSampler:
    """Random (input, target) windows from a token tensor, driven by its own seeded generator.

    The generator state is part of a training checkpoint, so a resumed run sees the same batches.
    """

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, seed: int):
        if len(data) <= block_size:
            raise GptcoreError(
                f"the training text ({len(data)} tokens) must be longer than block_size ({block_size})"
            )
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self, keep: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next (inputs, targets); with ``keep=False`` the batch is drawn (the generator moves on exactly
        as for a kept one) but not read: another process of a distributed run trains on it."""
        starts = torch.randint(len(self.data) - self.block_size, (self.batch_size,), generator=self.generator)
        if not keep:
            return None
        windows = take_windows(self.data, starts, self.block_size + 1)
        return windows[:, :-1], windows[:, 1:]

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

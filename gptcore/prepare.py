"""``gptcore prepare``: stream a corpus of any size into token shards (:mod:`gptcore.shards`), once.

The text is read in pieces of about ``total / 400`` bytes (between 1 KiB and 4 MiB), cut at line ends; every
twentieth piece goes to the validation split, so the split is spread over the whole corpus and the same
inputs always give the same split. The corpus is never in memory at once: only the current piece and the
shards being filled are.

The input can also be a Hugging Face dataset, ``hf:NAME`` (a hub dataset such as ``hf:Skylion007/openwebtext``,
or a local directory of data files), streamed with the optional ``datasets`` library: each record (a
document) is a piece, so every twentieth document is validation text.

The tokenizer is trained or loaded first and saved beside the shards: ``char`` (every character of the
corpus, found by a first pass), ``bpe`` (byte-level BPE learned from the first ``bpe_sample_mb`` of
training text), or a tokenizer file. Shards are written whole (to a temporary name, then renamed) and the
manifest is rewritten after each, with the number of pieces done, so running the same command again
after an interruption continues where it stopped.
"""

from __future__ import annotations

import codecs
import glob
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import GptcoreError
from .shards import DTYPES, FORMAT, MANIFEST, SHARD_NAME, TOKENIZER_FILE, dtype_for
from .storage import atomic_write_bytes, check_output_dir, file_sha256, read_json, write_json
from .tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

VAL_EVERY = 20  # every 20th piece is validation text: 5%
MAX_SAMPLE_MB = 100_000.0
MIN_PIECE, MAX_PIECE = 1 << 10, 4 << 20


@dataclass(frozen=True)
class PrepareConfig:
    """What a prepared directory was made from; a rerun must ask for the same to continue it."""

    inputs: tuple[str, ...]
    tokenizer: str = "bpe"  # "char", "bpe", or the path of a tokenizer.json
    bpe_vocab_size: int = 4096
    bpe_sample_mb: float = 20.0
    shard_tokens: int = 1 << 24
    hf_split: str = "train"  # with an hf: input: the dataset's split and the field holding the text
    hf_field: str = "text"

    def validate(self) -> "PrepareConfig":
        if not math.isfinite(self.bpe_sample_mb) or not 0 < self.bpe_sample_mb <= MAX_SAMPLE_MB:
            raise GptcoreError(f"--bpe-sample-mb must be a number above 0 and at most {MAX_SAMPLE_MB:,}, got "
                               f"{self.bpe_sample_mb}")
        if not 1024 <= self.shard_tokens <= 1 << 31:
            raise GptcoreError(f"--shard-tokens must be from 1024 to {1 << 31:,}, got {self.shard_tokens}")
        if self.tokenizer not in ("char", "bpe") and Path(self.tokenizer).is_dir():
            raise GptcoreError(f"--tokenizer {self.tokenizer} is a directory; give char, bpe or a tokenizer.json file")
        return self


HF_PREFIX = "hf:"


def hf_pieces(name: str, split: str, field: str) -> Iterator[tuple[str, int]]:
    """A streamed Hugging Face dataset's records, each one's ``field`` a piece (ending with a newline)."""
    try:
        import datasets
    except ImportError:
        raise GptcoreError("an hf: input needs the datasets library: pip install datasets") from None
    try:
        for record in datasets.load_dataset(name, split=split, streaming=True):
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise GptcoreError(f"dataset {name!r} has no text field {field!r} (its fields: "
                                   f"{', '.join(record) if isinstance(record, dict) else '?'}); use --hf-field")
            text = text if text.endswith("\n") else text + "\n"
            yield text, len(text.encode("utf-8"))
    except GptcoreError:
        raise
    except Exception as e:  # noqa: BLE001 - network, missing dataset, bad files: one clear line
        raise GptcoreError(f"cannot stream dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def is_hf(config: PrepareConfig) -> bool:
    return len(config.inputs) == 1 and config.inputs[0].startswith(HF_PREFIX)


def source_pieces(config: PrepareConfig, files: list[Path], size: int) -> Iterator[tuple[str, int]]:
    if is_hf(config):
        return hf_pieces(config.inputs[0][len(HF_PREFIX):], config.hf_split, config.hf_field)
    return text_pieces(files, size)


def input_files(specs: tuple[str, ...] | list[str]) -> list[Path]:
    """The files named by paths, globs and directories (searched recursively), sorted, each once."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            raise GptcoreError(f"--input {spec}: no such file, directory or matching files")
        found += matches
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not sum(p.stat().st_size for p in unique):
        raise GptcoreError("the input files are empty")
    return unique


def piece_size(total_bytes: int) -> int:
    return max(MIN_PIECE, min(MAX_PIECE, total_bytes // 400))


def text_pieces(files: list[Path], size: int) -> Iterator[tuple[str, int]]:
    """(text, bytes read) of about ``size`` bytes each, cut after a newline where there is one, across
    files; invalid UTF-8 becomes U+FFFD. A file's last piece ends with its end."""
    for path in files:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        carry = b""
        with open(path, "rb") as f:
            while True:
                block = f.read(size)
                data = carry + block
                if not block:
                    if data:
                        yield decoder.decode(data, final=True), len(data)
                    break
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    cut = len(data) if len(data) >= size else 0
                if cut:
                    yield decoder.decode(data[:cut]), cut
                carry = data[cut:]


def _is_val(index: int) -> bool:
    return index % VAL_EVERY == VAL_EVERY - 1


def streamed_tokenizer(config: PrepareConfig, files: list[Path], size: int) -> Tokenizer:
    """The tokenizer ``config`` asks for, made from the streamed pieces (``gptcore.data.make_tokenizer`` does
    the same for a text held in memory)."""
    if config.tokenizer == "char":
        chars: set[str] = set()
        for text, _ in source_pieces(config, files, size):
            chars.update(text)
        return CharTokenizer(sorted(chars))
    if config.tokenizer == "bpe":
        budget = int(config.bpe_sample_mb * 1e6)

        def sample() -> Iterator[str]:
            seen = 0
            for i, (text, n) in enumerate(source_pieces(config, files, size)):
                if seen >= budget:
                    return
                if not _is_val(i):
                    seen += n
                    yield text

        return BPETokenizer.train(sample(), config.bpe_vocab_size)
    return load_tokenizer(config.tokenizer)


class _Split:
    """The tokens of one split waiting to be written as a shard."""

    def __init__(self, name: str):
        self.name, self.ids, self.bytes, self.chars, self.count = name, [], 0, 0, 0

    def add(self, ids: list[int], n_bytes: int, n_chars: int) -> None:
        self.ids.append(np.asarray(ids, dtype=np.int64))
        self.count += len(ids)
        self.bytes += n_bytes
        self.chars += n_chars


def check_only_ours(out: Path) -> None:
    """Refuse an output directory holding any file this command did not write: prepare continues its own
    earlier run there, and would otherwise overwrite a user's tokenizer.json or shard of the same name."""
    if not out.is_dir():
        return
    ours = (out / MANIFEST).is_file()
    for path in sorted(out.iterdir()):
        leftover = path.name.startswith(".") and path.name.endswith(".tmp")  # an interrupted atomic write
        if leftover or (ours and (path.name in (MANIFEST, TOKENIZER_FILE) or SHARD_NAME.fullmatch(path.name))):
            continue
        why = "which gptcore prepare did not write" if ours else "and no earlier gptcore prepare run"
        raise GptcoreError(f"--out {out} holds {path.name}, {why}: choose a new or empty directory")


def prepare(config: PrepareConfig, out: str | os.PathLike, progress: bool = True) -> dict:
    """Tokenize ``config.inputs`` into shards in ``out`` (continuing an interrupted run); returns the manifest."""
    config.validate()
    out = check_output_dir(out)
    check_only_ours(out)
    if is_hf(config):
        files, total, size = [], None, 0  # one record a piece
    else:
        files = input_files(config.inputs)
        total = sum(p.stat().st_size for p in files)
        size = piece_size(total)
    manifest, tokenizer = _start_or_continue(config, out, files, size)
    if manifest.get("complete"):
        return manifest
    _tokenize_pieces(config, out, files, size, manifest, tokenizer, total, progress)
    if not any(s["split"] == "val" for s in manifest["shards"]):
        unit = "records" if is_hf(config) else f"pieces of {size:,} bytes"
        raise GptcoreError(f"the corpus is too small for a validation split ({manifest['bytes_done']:,} bytes, "
                           f"fewer than {VAL_EVERY} {unit})")
    manifest.update(pieces_done=None, complete=True,
                    tokens={name: sum(s["tokens"] for s in manifest["shards"] if s["split"] == name)
                            for name in ("train", "val")})
    write_json(out / MANIFEST, manifest)
    return manifest


def _start_or_continue(config: PrepareConfig, out: Path, files: list[Path], size: int) -> tuple[dict, Tokenizer | None]:
    """The manifest and tokenizer of an earlier run of the same command (no tokenizer if that run is complete),
    or new ones (the tokenizer learned from the inputs' training pieces)."""
    recorded = {**asdict(config), "inputs": [str(p) for p in files] or list(config.inputs), "piece_bytes": size}
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        manifest = read_json(manifest_path)
        if manifest.get("config") != recorded:
            raise GptcoreError(f"{out} holds a corpus prepared from other inputs or settings; choose a new --out")
        return manifest, None if manifest.get("complete") else load_tokenizer(out / TOKENIZER_FILE)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = streamed_tokenizer(config, files, size)
    tokenizer.save(out / TOKENIZER_FILE)
    manifest = {"format": FORMAT, "config": recorded, "tokenizer": TOKENIZER_FILE, "tokenizer_type":
                tokenizer.type_name, "vocab_size": tokenizer.vocab_size, "dtype": dtype_for(tokenizer.vocab_size),
                "val_every": VAL_EVERY, "shards": [], "pieces_done": 0, "bytes_done": 0, "complete": False}
    write_json(manifest_path, manifest)
    return manifest, tokenizer


def _tokenize_pieces(config: PrepareConfig, out: Path, files: list[Path], size: int, manifest: dict,
                     tokenizer: Tokenizer, total: int | None, progress: bool) -> None:
    """Encode every piece not yet done into the train or validation split, writing a shard (and the manifest,
    so that a rerun continues from there) each time the training split fills one."""
    from tqdm import tqdm

    dtype = DTYPES[manifest["dtype"]]
    splits = {"train": _Split("train"), "val": _Split("val")}
    skip = manifest["pieces_done"]
    bar = tqdm(total=total, initial=manifest["bytes_done"], unit="B", unit_scale=True, unit_divisor=1024,
               desc="prepare", disable=not progress, dynamic_ncols=True)
    try:
        for index, (text, n_bytes) in enumerate(source_pieces(config, files, size)):
            if index < skip:
                continue
            splits["val" if _is_val(index) else "train"].add(tokenizer.encode(text, "replace"), n_bytes, len(text))
            bar.update(n_bytes)
            manifest["bytes_done"] += n_bytes
            if splits["train"].count >= config.shard_tokens:
                _write_shards(out, splits, manifest, dtype)
                manifest["pieces_done"] = index + 1
                write_json(out / MANIFEST, manifest)
        _write_shards(out, splits, manifest, dtype)
    finally:
        bar.close()


def _write_shards(out: Path, splits: dict[str, "_Split"], manifest: dict, dtype) -> None:
    """Each split's pending tokens as a new shard, recorded in ``manifest``; the splits start empty again."""
    for split in list(splits.values()):
        if not split.count:
            continue
        name = f"{split.name}-{sum(s['split'] == split.name for s in manifest['shards']):05d}.bin"
        ids = np.concatenate(split.ids)
        atomic_write_bytes(out / name, ids.astype(dtype).tobytes())
        manifest["shards"].append({"file": name, "split": split.name, "tokens": split.count, "bytes": split.bytes,
                                   "chars": split.chars, "sha256": file_sha256(out / name), "max_id": int(ids.max())})
        splits[split.name] = _Split(split.name)

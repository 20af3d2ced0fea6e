"""GPT-2's BPE vocabulary (``encoder.json`` and ``vocab.bpe``, as OpenAI published them) as our BPETokenizer.

GPT-2's files write each token as a string in which every byte has been replaced by a printable
character (``bytes_to_unicode`` below: printable bytes stand for themselves, the other 68 get the
characters from U+0100 on), list the merges in the order they were learned, and number the 256 bytes
first, then one id per merge, then ``<|endoftext|>``. That is our byte-level BPE with the bytes in
another order, which :class:`BPETokenizer` takes as ``byte_ids``; the loader checks the layout rather
than assume it. Only JSON and text are read: nothing in the files can run.

GPT-2 cuts text with a regular expression using Unicode letter and number classes (``\\p{L}``,
``\\p{N}``), which Python's ``re`` lacks; :data:`GPT2_PATTERN` uses ``re``'s nearest classes, so
characters that are numbers but not decimal digits (such as ``²``) may be cut differently from GPT-2.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..bounded import read_bounded, read_json_file
from ..errors import CheckpointError
from ..tokenizers import BPETokenizer
from ..tokenizers.bpe import GPT2_PATTERN

MAX_FILE_BYTES = 20 * 2**20


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _require(path: Path) -> Path:
    """``path``, refused in GPT-2's terms when it is missing or too large (the readers bound it again)."""
    if not path.is_file():
        raise CheckpointError(f"the GPT-2 vocabulary needs {path.name}, not found in {path.parent}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path} is too large for a GPT-2 vocabulary file")
    return path


def read_gpt2_vocab(directory: str | os.PathLike, vocab_size: int | None = None) -> BPETokenizer:
    """GPT-2's tokenizer from ``directory``/encoder.json and vocab.bpe; ``vocab_size`` pads it to a model's
    (nanoGPT rounds 50,257 up to 50,304)."""
    directory = Path(directory)
    encoder = read_json_file(_require(directory / "encoder.json"), MAX_FILE_BYTES)
    if not isinstance(encoder, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in encoder.items()):
        raise CheckpointError(f"{directory / 'encoder.json'} should map token strings to ids")
    text = read_bounded(_require(directory / "vocab.bpe"), MAX_FILE_BYTES).decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line and not line.startswith("#version")]
    table = bytes_to_unicode()
    try:
        byte_ids = [encoder[table[b]] for b in range(256)]
        merges = []
        for rank, line in enumerate(lines):
            a, b = line.split(" ")
            if encoder.get(a + b) != 256 + rank:
                raise CheckpointError(f"vocab.bpe merge {rank} ({line!r}) is not id {256 + rank} in encoder.json: "
                                      "not GPT-2's layout")
            merges.append((encoder[a], encoder[b]))
    except KeyError as e:
        raise CheckpointError(f"encoder.json has no id for {e.args[0]!r}, which vocab.bpe uses") from None
    except ValueError:
        raise CheckpointError(f"{directory / 'vocab.bpe'} should hold one merge per line: two tokens and a space") from None
    specials = {i: s for s, i in encoder.items() if i >= 256 + len(merges)}
    size = max([256 + len(merges), *(i + 1 for i in specials), vocab_size or 0])
    try:
        return BPETokenizer(merges, GPT2_PATTERN, byte_ids, size, specials)
    except ValueError as e:
        raise CheckpointError(f"the GPT-2 vocabulary in {directory} is inconsistent: {e}") from None

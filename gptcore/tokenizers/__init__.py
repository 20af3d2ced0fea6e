"""Tokenizers behind one interface (:class:`Tokenizer`), saved and loaded by their ``"type"``."""

from __future__ import annotations

import os
from pathlib import Path

from ..bounded import cut
from ..errors import CheckpointError
from ..storage import read_json
from .base import UNKNOWN_POLICIES, Tokenizer
from .bpe import BPETokenizer
from .char import CharTokenizer

TOKENIZER_TYPES: dict[str, type[Tokenizer]] = {CharTokenizer.type_name: CharTokenizer,
                                               BPETokenizer.type_name: BPETokenizer}


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """The tokenizer a saved JSON object describes; ValueError if its type or content is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a tokenizer must be a JSON object")
    kind = data.get("type")
    if kind not in TOKENIZER_TYPES:
        raise ValueError(f"unsupported tokenizer type {kind!r}; known: {', '.join(TOKENIZER_TYPES)}")
    return TOKENIZER_TYPES[kind].from_dict(data)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer file, with a CheckpointError naming the file for anything wrong with it."""
    if not Path(path).exists():
        raise CheckpointError(f"tokenizer file not found: {path}")
    data = read_json(path)  # bounded in size and depth, a CheckpointError naming the file
    try:
        return tokenizer_from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise CheckpointError(f"tokenizer file {path} is damaged: {cut(str(e), 300)}") from None


__all__ = ["Tokenizer", "CharTokenizer", "BPETokenizer", "UNKNOWN_POLICIES", "TOKENIZER_TYPES", "load_tokenizer",
           "tokenizer_from_dict"]

"""Tokenizers behind one interface (:class:`Tokenizer`), saved and loaded by their ``"type"``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CheckpointError
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
    try:
        return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CheckpointError(f"tokenizer file not found: {path}") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"tokenizer file {path} is damaged: {e}") from None


__all__ = ["Tokenizer", "CharTokenizer", "BPETokenizer", "UNKNOWN_POLICIES", "TOKENIZER_TYPES", "load_tokenizer",
           "tokenizer_from_dict"]

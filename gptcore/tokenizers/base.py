"""The tokenizer interface: what the data pipeline, checkpoints, sampling and the app may rely on.

Every tokenizer maps text to ids and back, knows its vocabulary size, gives the text piece of each id
(for attention labels and probability charts), and saves itself as a JSON object whose ``"type"`` says
which class reads it back (``gptcore.tokenizers.tokenizer_from_dict``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from typing import Iterable

from ..storage import atomic_write_text

UNKNOWN_POLICIES = ("strict", "replace", "drop")


class Tokenizer(ABC):
    type_name: str = ""  # the "type" field of the saved JSON

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids; every id lies in [0, vocab_size)."""

    @abstractmethod
    def encode(self, text: str, policy: str = "strict") -> list[int]:
        """Ids of ``text``. ``policy`` says what to do with text the vocabulary cannot express:
        ``strict`` raises UnknownCharactersError, ``replace`` substitutes a space, ``drop`` removes it."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``."""

    @abstractmethod
    def piece(self, token: int) -> str:
        """The text piece one id stands for, for display."""

    @abstractmethod
    def to_dict(self) -> dict:
        """A JSON-ready description holding ``"type": self.type_name``."""

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters of ``text`` the vocabulary cannot express (none for a byte-level tokenizer)."""
        return []

    def clean(self, text: str, policy: str = "strict") -> str:
        """``text`` after the unknown-character policy: what :meth:`encode` will actually encode."""
        if policy not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown-character policy must be one of {UNKNOWN_POLICIES}, got {policy!r}")
        return text

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

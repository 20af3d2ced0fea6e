"""The tokenizer interface: what the data pipeline, checkpoints, sampling and the app may rely on.

Every tokenizer maps text to ids and back, knows its vocabulary size, gives the text piece of each id
(for attention labels and probability charts), and saves itself as a JSON object whose ``"type"`` says
which class reads it back (``gptcore.tokenizers.tokenizer_from_dict``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from typing import Iterable, Iterator

from ..errors import UnknownCharactersError
from ..storage import atomic_write_text

UNKNOWN_POLICIES = ("strict", "replace", "drop")


def visible_piece(piece: str) -> str:
    """A token's text with printable stand-ins for whitespace and control characters, for chart axes and labels."""
    return "".join({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "\\r"}.get(c, c if c.isprintable() else repr(c)[1:-1])
                   for c in piece)


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
        """Distinct characters of ``text`` the vocabulary cannot express, in order of appearance."""
        return []

    def clean(self, text: str, policy: str = "strict", replacement: str = " ") -> str:
        """``text`` after the unknown-character policy, what :meth:`encode` will actually encode: ``strict``
        raises :class:`UnknownCharactersError` naming them, ``replace`` puts ``replacement`` in their place
        (when it is itself known), ``drop`` removes them."""
        if policy not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown-character policy must be one of {UNKNOWN_POLICIES}, got {policy!r}")
        found = self.unknown_chars(text)
        if not found:
            return text
        if policy == "strict":
            raise UnknownCharactersError(found)
        unknown = set(found)
        keep = replacement if policy == "replace" and not self.unknown_chars(replacement) else ""
        return "".join(keep if c in unknown else c for c in text)

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """The text of ``ids`` as they arrive, in pieces that never split a character."""
        for i in ids:
            yield self.piece(i)

    def char_counts(self) -> list[int]:
        """How many characters of text each id stands for, by id: what turns a loss per token into a
        loss per character (:func:`gptcore.evaluate.nats_per_char`)."""
        return [len(self.piece(i)) for i in range(self.vocab_size)]

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

"""Character-level tokenizer: one id per distinct character of the training corpus."""

from __future__ import annotations

from typing import Iterable

from .base import Tokenizer


class CharTokenizer(Tokenizer):
    """Maps characters to ids in sorted order, as in the tutorial, so ids are stable across runs.

    Characters outside the vocabulary follow the policy of :meth:`Tokenizer.clean`.
    """

    type_name = "char"

    def __init__(self, chars: list[str]):
        if not chars:
            raise ValueError("a tokenizer needs at least one character")
        if len(set(chars)) != len(chars) or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("vocabulary must be distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        return cls(data["chars"])

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters of ``text`` outside the vocabulary, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str, policy: str = "strict") -> list[int]:
        return [self.stoi[c] for c in self.clean(text, policy)]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def piece(self, token: int) -> str:
        return self.chars[int(token)]

    def to_dict(self) -> dict:
        return {"type": self.type_name, "chars": self.chars}
